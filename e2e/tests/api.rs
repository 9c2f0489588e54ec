//! The palisade.dev API against a real kube-apiserver: the CRDs install, `kubectl explain`
//! teaches the schema, every example is accepted, and invalid objects are refused at
//! admission with a message naming the field.

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use palisade_e2e::ControlPlane;
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "AppArmorProfile" => "apparmorprofiles",
        "SeccompProfile" => "seccompprofiles",
        "NodeProfileStatus" => "nodeprofilestatuses",
        "ProfileBinding" => "profilebindings",
        other => panic!("unknown kind {other}"),
    };
    let version = if kind == "NodeProfileStatus" {
        palisade_domain::NODE_STATUS_VERSION
    } else {
        "v1alpha1"
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("palisade.dev", version, kind), plural)
}

async fn create(client: &kube::Client, obj: &Value) -> Result<(), kube::Error> {
    let kind = obj["kind"].as_str().unwrap();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource(kind)),
        None => Api::all_with(client.clone(), &resource(kind)),
    };
    let obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    api.create(&PostParams::default(), &obj).await.map(|_| ())
}

fn aap(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name}, "spec": spec})
}

fn sp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name}, "spec": spec})
}

fn pbind(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn sp_rule(rule: Value) -> Value {
    sp("bad", json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
}

#[tokio::test]
async fn crds_install_explain_examples_and_admission() {
    let cp = ControlPlane::start_temp().await.expect("control plane starts");
    let client = cp.client().await.unwrap();

    // The four kinds are served (profiles and reports cluster-scoped, bindings namespaced).
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery.get("palisade.dev").expect("palisade.dev served");
    let served = |version: &str| {
        let mut kinds: Vec<String> = group
            .versioned_resources(version)
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect();
        kinds.sort();
        kinds
    };
    assert_eq!(
        served("v1alpha1"),
        ["AppArmorProfile", "ProfileBinding", "SeccompProfile"]
    );
    assert_eq!(
        served("v1alpha2"),
        ["NodeProfileStatus"],
        "node reports moved to v1alpha2"
    );

    // kubectl explain shows our descriptions (the API server publishes a new CRD's
    // OpenAPI shortly after it is Established, so allow it a few seconds).
    let explain = |what: &str| {
        let mut last = String::new();
        for _ in 0..50 {
            let out = cp.kubectl(&["explain", what]).unwrap();
            if out.status.success() {
                // kubectl wraps lines: compare with the white space folded.
                return String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("kubectl explain {what}: {last}");
    };
    let text = explain("seccompprofile.spec.syscalls.args");
    assert!(text.contains("`value` is the mask"), "{text}");
    assert!(explain("aap.spec.abstract.filesystem.denyPaths").contains("Paths always denied"));

    // Every example is accepted as written (the pod too: its profile fields are real).
    let out = cp
        .kubectl(&[
            "apply",
            "-f",
            &palisade_e2e::controlplane::repo_root()
                .join("examples")
                .display()
                .to_string(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "examples rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cp.kubectl(&["get", "sp,aap", "-o", "name"]).unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "seccompprofile.palisade.dev/web-server",
        "seccompprofile.palisade.dev/base-runtime",
        "apparmorprofile.palisade.dev/web-server",
        "apparmorprofile.palisade.dev/log-shipper",
    ] {
        assert!(names.contains(expected), "{expected} missing from {names}");
    }

    // One invalid object per CEL rule and enum: refused, naming the field and the reason.
    let table: Vec<(Value, &str)> = vec![
        (
            aap("both", json!({"policy": "profile both {}", "abstract": {}})),
            "exactly one of spec.policy and spec.abstract must be set",
        ),
        (
            aap("neither", json!({})),
            "exactly one of spec.policy and spec.abstract must be set",
        ),
        (
            aap(
                "relpath",
                json!({"abstract": {"filesystem": {"readOnlyPaths": ["etc/x"]}}}),
            ),
            "spec.abstract.filesystem.readOnlyPaths[0]: Invalid value",
        ),
        (
            aap(
                "quote",
                json!({"abstract": {"filesystem": {"denyPaths": ["/x\" rw,"]}}}),
            ),
            "must be an absolute path without control characters",
        ),
        (
            aap(
                "newline",
                json!({"abstract": {"executable": {"allowedExecutables": ["/bin/sh\n/etc/shadow"]}}}),
            ),
            "spec.abstract.executable.allowedExecutables[0]",
        ),
        (aap("unconfined", json!({"abstract": {}})), "metadata.name is reserved"),
        (
            aap("mode", json!({"abstract": {}, "mode": "Audit"})),
            "spec.mode: Unsupported value: \"Audit\"",
        ),
        (
            aap("state", json!({"abstract": {}, "state": "Off"})),
            "spec.state: Unsupported value: \"Off\"",
        ),
        (
            aap(
                "cap",
                json!({"abstract": {"capability": {"allowedCapabilities": ["CAP_SYS_ADMIN"]}}}),
            ),
            "spec.abstract.capability.allowedCapabilities[0]: Unsupported value",
        ),
        (
            aap("huge", json!({"policy": "x".repeat(262_145)})),
            "spec.policy: Too long",
        ),
        (
            aap(&"a".repeat(201), json!({"abstract": {}})),
            "metadata.name must be at most 200",
        ),
        (
            sp("action", json!({"defaultAction": "SCMP_ACT_MAYBE"})),
            "spec.defaultAction: Unsupported value",
        ),
        (sp("noaction", json!({})), "spec.defaultAction: Required value"),
        (
            sp(
                "arch",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}),
            ),
            "spec.architectures[0]: Unsupported value",
        ),
        (
            sp("flag", json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["TSYNC"]})),
            "spec.flags[0]: Unsupported value",
        ),
        (
            sp(
                "selector-op",
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "Bogus"}]}}),
            ),
            "spec.nodeSelector.matchExpressions[0].operator: Unsupported value: \"Bogus\"",
        ),
        (
            aap(
                "selector-values",
                json!({"abstract": {}, "nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In"}]}}),
            ),
            "In and NotIn need at least one value",
        ),
        (
            sp(
                "listener",
                json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "run/x.sock"}),
            ),
            "listenerPath must be an absolute path",
        ),
        (
            sp_rule(json!({"names": [], "action": "SCMP_ACT_ERRNO"})),
            "spec.syscalls[0].names: Invalid value",
        ),
        (
            sp_rule(json!({"names": [""], "action": "SCMP_ACT_ERRNO"})),
            "spec.syscalls[0].names[0]",
        ),
        (
            sp_rule(json!({"names": ["Mkdir"], "action": "SCMP_ACT_ERRNO"})),
            "spec.syscalls[0].names[0]: Invalid value: \"Mkdir\": spec.syscalls[0].names[0] in body should match '^[a-z0-9_]+$'",
        ),
        (
            sp_rule(json!({"names": ["mkdir"], "action": "ERRNO"})),
            "spec.syscalls[0].action: Unsupported value",
        ),
        (
            sp_rule(
                json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}),
            ),
            "spec.syscalls[0].args[0].index: Invalid value: 6",
        ),
        (
            sp_rule(
                json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": (0..7).map(|i| json!({"index": i % 6, "value": 0, "op": "SCMP_CMP_EQ"})).collect::<Vec<_>>()}),
            ),
            "spec.syscalls[0].args: Too many: 7: must have at most 6 items",
        ),
        (
            sp_rule(
                json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_MATCHES"}]}),
            ),
            "spec.syscalls[0].args[0].op: Unsupported value",
        ),
        (
            sp("Bad.Name", json!({"defaultAction": "SCMP_ACT_ALLOW"})),
            "metadata.name",
        ),
        (
            pbind(
                "neither",
                json!({"profileRef": {"kind": "SeccompProfile", "name": "x"}}),
            ),
            "spec: set image, selector or both",
        ),
        (
            pbind(
                "path",
                json!({"profileRef": {"kind": "SeccompProfile", "name": "../x"}, "image": "*"}),
            ),
            "spec.profileRef.name",
        ),
        (
            pbind(
                "selinux",
                json!({"profileRef": {"kind": "SelinuxProfile", "name": "x"}, "image": "*"}),
            ),
            "spec.profileRef.kind: Unsupported value",
        ),
        (
            pbind(
                "operator",
                json!({"profileRef": {"kind": "SeccompProfile", "name": "x"},
                       "selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}),
            ),
            "spec.selector.matchExpressions[0].operator: Unsupported value",
        ),
    ];
    let mut failures = vec![];
    for (obj, expected) in &table {
        match create(&client, obj).await {
            Ok(()) => failures.push(format!("{} {} was accepted", obj["kind"], obj["metadata"]["name"])),
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(expected) => {}
            Err(other) => failures.push(format!(
                "{} {}: expected {expected:?}, got {other}",
                obj["kind"], obj["metadata"]["name"]
            )),
        }
    }
    assert!(failures.is_empty(), "admission table:\n{}", failures.join("\n"));
}

/// Upgrading from v1alpha1 reports: an object stored at v1alpha1 (one entry per profile) is
/// read at v1alpha2, v1alpha1 is no longer served, and the agent's first report (a
/// server-side apply of its status, as the agent writes it) leaves no old field behind.
#[tokio::test]
async fn node_reports_stored_at_v1alpha1_are_read_and_rewritten_at_v1alpha2() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::{conditions, wait::await_condition};

    let cp = ControlPlane::start_temp().await.expect("control plane starts");
    let client = cp.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let install = |crd: CustomResourceDefinition| {
        let crds = crds.clone();
        async move {
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(&name, &PatchParams::apply("palisade-e2e").force(), &Patch::Apply(&crd))
                .await
                .unwrap();
            await_condition(crds, &name, conditions::is_crd_established())
                .await
                .unwrap();
        }
    };
    // The previous release's CRD: v1alpha1 served and stored.
    let mut old = palisade_domain::node_profile_status_crd();
    for v in &mut old.spec.versions {
        v.served = true;
        v.storage = v.name == "v1alpha1";
    }
    install(old).await;
    let v1 = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("palisade.dev", "v1alpha1", "NodeProfileStatus"),
        "nodeprofilestatuses",
    );
    let old_api: Api<DynamicObject> = Api::all_with(client.clone(), &v1);
    let mut created = None;
    for _ in 0..50 {
        // The API server serves a just-changed version a moment after it is Established.
        let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1",
            "kind": "NodeProfileStatus", "metadata": {"name": "node-1"}, "spec": {}}))
        .unwrap();
        match old_api.create(&PostParams::default(), &obj).await {
            Ok(o) => {
                created = Some(o);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    assert!(created.is_some(), "a v1alpha1 object is created under the old CRD");
    let old_status = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "NodeProfileStatus",
        "metadata": {"name": "node-1"},
        "status": {"agentVersion": "0.1.0", "capabilities": {"seccomp": true},
            "profiles": [{"kind": "SeccompProfile", "name": "web", "uid": "u", "generation": 1,
                          "digest": "d", "state": "Installed"}]}});
    old_api
        .patch_status(
            "node-1",
            &PatchParams::apply("palisade-agent/node-1").force(),
            &Patch::Apply(&old_status),
        )
        .await
        .unwrap();

    // Upgrade: the CRD as this release ships it.
    install(palisade_domain::node_profile_status_crd()).await;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("NodeProfileStatus"));
    let mut read = None;
    for _ in 0..50 {
        if let Ok(o) = api.get("node-1").await {
            read = Some(o);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let read = read.expect("the old object is read at v1alpha2");
    assert_eq!(read.types.as_ref().unwrap().api_version, "palisade.dev/v1alpha2");
    let typed: palisade_domain::NodeProfileStatus =
        serde_json::from_value(serde_json::to_value(&read).unwrap()).unwrap();
    let status = typed.status.unwrap_or_default();
    assert_eq!(
        (status.installed.seccomp.count, status.exceptions.len()),
        (0, 0),
        "an old report vouches for nothing: its node counts as pending until its agent reports again"
    );
    let mut served_old = false;
    for _ in 0..25 {
        served_old = old_api.get("node-1").await.is_ok();
        if !served_old {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!served_old, "v1alpha1 is no longer served");

    // The upgraded agent's first report replaces the old status.
    let mut set = palisade_domain::InstalledSet::default();
    set.add(palisade_domain::installed_key(
        palisade_domain::ProfileKind::SeccompProfile,
        "u",
        "d",
    ));
    let new_status = json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
        "metadata": {"name": "node-1"},
        "status": {"agentVersion": "0.2.0", "capabilities": {"seccomp": true},
            "installed": {"seccomp": set.summary()}}});
    api.patch_status(
        "node-1",
        &PatchParams::apply("palisade-agent/node-1").force(),
        &Patch::Apply(&new_status),
    )
    .await
    .unwrap();
    let raw = cp
        .kubectl_ok(&["get", "nodeprofilestatuses.palisade.dev", "node-1", "-o", "json"])
        .unwrap();
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert!(raw["status"].get("profiles").is_none(), "{raw}");
    assert_eq!(raw["status"]["installed"]["seccomp"]["count"], 1);
    assert_eq!(raw["apiVersion"], "palisade.dev/v1alpha2");
}
