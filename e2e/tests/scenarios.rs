//! Scenarios across the operator and agents on the local control plane: each test names
//! what it proves and fails if that breaks. Nodes are simulated (see palisade_e2e::cluster).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use palisade_domain::{
    AppArmorProfile, NodeCapabilities, NodeProfileState, NodeProfileStatus, ProfileKind, SeccompProfile,
};
use palisade_e2e::cluster::{apply_json, metric_sum, scrape_metrics, wait_condition, wait_events, wait_installed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

fn seccomp(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name}, "spec": spec})
}

fn apparmor(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name}, "spec": spec})
}

async fn label_node(client: &kube::Client, node: &str, labels: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .unwrap();
}

async fn files_on(cluster: &Cluster, file: &str, expected: &[&str]) {
    wait_for(&format!("{file} exactly on {expected:?}"), T, || async {
        let on: Vec<&str> = NODES
            .iter()
            .copied()
            .filter(|n| cluster.seccomp_files(n).contains(&file.to_string()))
            .collect();
        Ok((on == expected).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_rejected_profile_never_reaches_a_node_while_valid_ones_install() {
    let (cluster, client, sp, aap) = Cluster::started(Options::default()).await.unwrap();
    apply_json(
        &client,
        apparmor(
            "broken",
            json!({"policy": "profile broken {\n  /tmp/** rw,\n  /bin/sh rwx,\n}\n"}),
        ),
    )
    .await
    .unwrap();
    // flags=(complain) with mode Enforce would load in complain mode on a real kernel.
    apply_json(
        &client,
        apparmor(
            "sneaky",
            json!({"mode": "Enforce", "policy": "include <tunables/global>\nprofile sneaky flags=(complain) {\n  /tmp/** r,\n}\n"}),
        ),
    )
    .await
    .unwrap();
    apply_json(
        &client,
        apparmor(
            "fine",
            json!({"abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}}),
        ),
    )
    .await
    .unwrap();
    apply_json(
        &client,
        seccomp(
            "typo",
            json!({"syscalls": [{"names": ["mkdirr"], "action": "SCMP_ACT_ERRNO"}]}),
        ),
    )
    .await
    .unwrap();

    let status = wait_condition(&aap, "broken", "Accepted", "False").await.unwrap();
    let accepted = status.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert!(
        accepted.message.contains("line 3"),
        "the parser's line number is shown: {}",
        accepted.message
    );
    let status = wait_condition(&aap, "sneaky", "Accepted", "False").await.unwrap();
    let accepted = status.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert!(
        accepted.message.contains("spec.policy line 2: flags=(complain)"),
        "the contradicting flag and its line are named: {}",
        accepted.message
    );
    // A name libseccomp does not know is accepted as runc accepts it (skipped), never
    // silently: a warning condition names it, and says that this deny fails open.
    let status = wait_condition(&sp, "typo", "SyscallsIgnored", "True").await.unwrap();
    let warning = status.conditions.iter().find(|c| c.type_ == "SyscallsIgnored").unwrap();
    assert_eq!(warning.reason, "DenyFailsOpen", "{warning:?}");
    assert!(
        warning.message.contains("mkdirr") && warning.message.contains("Unknown to the operator's libseccomp"),
        "{}",
        warning.message
    );
    assert_eq!(status.ignored_syscalls[0].names, ["mkdirr"]);
    assert_eq!(status.conditions[0].status, "True", "accepted: {:?}", status.conditions);
    let events = wait_events(&client, "DenyFailsOpen", "typo").await.unwrap();
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));

    wait_installed(&aap, "fine", 3).await.unwrap();
    for node in NODES {
        assert!(cluster.apparmor_loaded(node).contains_key("fine"));
        assert!(
            !cluster.apparmor_loaded(node).contains_key("broken"),
            "a rejected profile reached {node}"
        );
        assert!(
            !cluster.apparmor_loaded(node).contains_key("sneaky"),
            "a rejected profile reached {node}"
        );
    }
    wait_installed(&sp, "typo", 3).await.unwrap();
    for node in NODES {
        let file = std::fs::read_to_string(cluster.seccomp_dir(node).join("typo.json")).unwrap();
        assert!(file.contains("\"mkdirr\""), "{node}: the file keeps the user's name");
    }

    // Fixing it is a new generation that gets accepted and installed.
    apply_json(
        &client,
        apparmor(
            "broken",
            json!({"policy": "profile broken {\n  /tmp/** rw,\n  /bin/sh rix,\n}\n"}),
        ),
    )
    .await
    .unwrap();
    wait_installed(&aap, "broken", 3).await.unwrap();
    assert!(cluster.apparmor_loaded("node-2").contains_key("broken"));
}

#[tokio::test]
async fn node_selector_and_node_labels_move_profiles_on_and_off_nodes() {
    let (cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    label_node(&client, "node-1", json!({"role": "web"})).await;
    apply_json(
        &client,
        seccomp("web-only", json!({"nodeSelector": {"matchLabels": {"role": "web"}}})),
    )
    .await
    .unwrap();
    files_on(&cluster, "web-only.json", &["node-1"]).await;
    let status = wait_installed(&sp, "web-only", 1).await.unwrap();
    assert_eq!(status.nodes.unwrap().targeted, 1, "targets 1 of 3 nodes");

    label_node(&client, "node-1", json!({"role": null})).await;
    label_node(&client, "node-2", json!({"role": "web"})).await;
    files_on(&cluster, "web-only.json", &["node-2"]).await;

    // Changing the selector itself works the same way.
    apply_json(
        &client,
        seccomp(
            "web-only",
            json!({"nodeSelector": {"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}}),
        ),
    )
    .await
    .unwrap();
    files_on(&cluster, "web-only.json", &["node-0", "node-1"]).await;
}

#[tokio::test]
async fn deletion_waits_for_pods_that_use_the_profile() {
    let (cluster, client, sp, aap) = Cluster::started(Options::default()).await.unwrap();
    apply_json(&client, seccomp("held", json!({}))).await.unwrap();
    apply_json(&client, apparmor("held-aa", json!({"abstract": {}})))
        .await
        .unwrap();
    wait_installed(&sp, "held", 3).await.unwrap();
    wait_installed(&aap, "held-aa", 3).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user", "annotations": {"container.apparmor.security.beta.kubernetes.io/c": "localhost/held-aa"}},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "busybox",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/held.json"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for("activeWorkloads = 1", T, || async {
        Ok((sp.get("held").await?.status.unwrap().active_workloads == 1).then_some(()))
    })
    .await
    .unwrap();

    sp.delete("held", &DeleteParams::default()).await.unwrap();
    aap.delete("held-aa", &DeleteParams::default()).await.unwrap();
    let status = wait_condition(&sp, "held", "Deleting", "True").await.unwrap();
    let held = status.conditions.iter().find(|c| c.type_ == "Deleting").unwrap();
    assert_eq!(held.reason, "InUse");
    assert!(held.message.contains("default/user"), "{}", held.message);
    wait_condition(&aap, "held-aa", "Deleting", "True").await.unwrap();
    // The operator looks at a held deletion again every few seconds: once it has, and the
    // pod still exists, the profile must still be there.
    let reconciles = || async {
        let mut total = 0.0;
        for port in &cluster.operator_ports {
            if let Ok(text) = scrape_metrics(*port).await {
                total += metric_sum(&text, "palisade_operator_reconciles_total{kind=\"seccomp\"}");
            }
        }
        total
    };
    let before = reconciles().await;
    wait_for("the operator re-checks the held deletion", T, || async {
        Ok((reconciles().await > before).then_some(()))
    })
    .await
    .unwrap();
    assert!(sp.get_opt("held").await.unwrap().is_some(), "held while the pod exists");
    files_on(&cluster, "held.json", &NODES).await;
    assert!(cluster.apparmor_loaded("node-0").contains_key("held-aa"));

    pods.delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for("the profiles are gone", T, || async {
        Ok((sp.get_opt("held").await?.is_none() && aap.get_opt("held-aa").await?.is_none()).then_some(()))
    })
    .await
    .unwrap();
    files_on(&cluster, "held.json", &[]).await;
    wait_for("held-aa unloaded", T, || async {
        Ok(NODES
            .iter()
            .all(|n| !cluster.apparmor_loaded(n).contains_key("held-aa"))
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_node_without_apparmor_reports_unsupported_and_keeps_serving_seccomp() {
    let (_cluster, client, sp, aap) = Cluster::started(Options {
        without_apparmor: vec![2],
        ..Options::default()
    })
    .await
    .unwrap();
    apply_json(&client, apparmor("aa", json!({"abstract": {}})))
        .await
        .unwrap();
    apply_json(&client, seccomp("sc", json!({}))).await.unwrap();
    wait_for("aa installed on 2, unsupported on 1", T, || async {
        let n = aap.get("aa").await?.status.and_then(|s| s.nodes).unwrap_or_default();
        Ok(((n.targeted, n.installed, n.unsupported) == (3, 2, 1)).then_some(()))
    })
    .await
    .unwrap();
    let status = wait_condition(&aap, "aa", "Ready", "True").await.unwrap();
    assert_eq!(
        status.nodes.unwrap().failed,
        0,
        "Unsupported is not a failure and does not block Ready"
    );
    wait_for("sc installed on all 3", T, || async {
        let n = sp.get("sc").await?.status.and_then(|s| s.nodes).unwrap_or_default();
        Ok((n.installed == 3).then_some(()))
    })
    .await
    .unwrap();
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let report = nps.get("node-2").await.unwrap().status.unwrap();
    assert!(!report.capabilities.apparmor && report.capabilities.seccomp);
    let why = report.capabilities.apparmor_reason.clone().unwrap_or_default();
    assert!(why.contains("not enabled"), "{why}");
    assert!(
        report.exceptions.iter().all(|e| e.name != "aa"),
        "a kind the node cannot enforce is told by its capability, not entry by entry"
    );
    let standing = palisade_e2e::node_standing(&client, "node-2").await.unwrap();
    assert_eq!(
        standing[&(ProfileKind::AppArmorProfile, "aa".to_string())].state,
        NodeProfileState::Unsupported
    );
}

/// A node's report once it names its kernel `kernel`.
async fn capabilities_with_kernel(nps: &Api<NodeProfileStatus>, node: &str, kernel: &str) -> NodeCapabilities {
    wait_for(&format!("{node} reports kernel {kernel}"), T, || async {
        let caps = nps.get_opt(node).await?.and_then(|o| o.status).map(|s| s.capabilities);
        Ok(caps.filter(|c| c.kernel_version.as_deref() == Some(kernel)))
    })
    .await
    .unwrap()
}

/// The AppArmor ABIs the agents' include directory offers (the host's, as on a real node).
fn abi_files() -> Vec<String> {
    let mut abi: Vec<String> = std::fs::read_dir("/etc/apparmor.d/abi")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    abi.sort();
    abi
}

#[tokio::test]
async fn each_node_reports_what_it_can_enforce_and_status_shows_it_beside_the_node() {
    use palisade_e2e::cluster::{SIMULATED_FEATURES, SIMULATED_RUNTIME, simulated_feature_names};
    let (mut cluster, client, _, _) = Cluster::started(Options {
        nodes: 2,
        without_apparmor: vec![1],
        ..Options::default()
    })
    .await
    .unwrap();
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let proc = |node: &str| cluster.node_dir(node).join("proc/sys/kernel");
    let kernel = std::fs::read_to_string(proc("node-0").join("osrelease")).unwrap();
    let actions = std::fs::read_to_string(proc("node-0").join("seccomp/actions_avail")).unwrap();

    // What each simulated node has: its kernel's release and seccomp actions, its
    // apparmorfs features, the include directory's ABIs, the runtime its Node names.
    let c0 = capabilities_with_kernel(&nps, "node-0", kernel.trim()).await;
    let features = simulated_feature_names(&std::fs::read_to_string(SIMULATED_FEATURES).unwrap());
    assert!(
        features.iter().any(|f| f == "file") && features.len() > 5,
        "{features:?}"
    );
    assert_eq!(c0.apparmor_features, features);
    assert_eq!(c0.apparmor_abi, abi_files());
    assert!(c0.apparmor_abi.iter().any(|a| a == "3.0"), "{:?}", c0.apparmor_abi);
    assert_eq!(c0.seccomp_actions, actions.split_whitespace().collect::<Vec<_>>());
    assert!(c0.seccomp_actions.iter().any(|a| a == "errno"));
    assert_eq!(c0.container_runtime.as_deref(), Some(SIMULATED_RUNTIME));
    assert!(c0.apparmor && c0.apparmor_parser_version.is_some(), "{c0:?}");
    // The node without AppArmor has no features directory: none claimed.
    let c1 = capabilities_with_kernel(&nps, "node-1", kernel.trim()).await;
    assert!(!c1.apparmor && c1.apparmor_features.is_empty(), "{c1:?}");

    // The runtime is upgraded (the kubelet reports it on the Node): the report follows.
    let nodes: Api<Node> = Api::all(client.clone());
    let info = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-0"},
                      "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://2.1.9"}}});
    nodes
        .patch_status("node-0", &PatchParams::apply("palisade-e2e"), &Patch::Apply(info))
        .await
        .unwrap();
    wait_for("node-0 reports the new runtime", T, || async {
        let caps = nps.get("node-0").await?.status.unwrap_or_default().capabilities;
        Ok((caps.container_runtime.as_deref() == Some("containerd://2.1.9")).then_some(()))
    })
    .await
    .unwrap();
    // node-1 boots another kernel, one without user notification or logging: its agent
    // starts again and says so.
    std::fs::write(proc("node-1").join("osrelease"), "7.2.13-amd64\n").unwrap();
    std::fs::write(
        proc("node-1").join("seccomp/actions_avail"),
        "kill_process kill_thread trap errno trace allow\n",
    )
    .unwrap();
    cluster.kill_agent("node-1");
    cluster.start_agent("node-1").unwrap();
    let c1 = capabilities_with_kernel(&nps, "node-1", "7.2.13-amd64").await;
    assert_eq!(
        c1.seccomp_actions,
        ["kill_process", "kill_thread", "trap", "errno", "trace", "allow"]
    );

    // A profile of each kind on both nodes.
    apply_json(&client, apparmor("caps-aa", json!({"abstract": {}})))
        .await
        .unwrap();
    apply_json(&client, seccomp("caps-sc", json!({}))).await.unwrap();
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    wait_condition(&aap, "caps-aa", "Ready", "True").await.unwrap();
    wait_installed(&Api::<SeccompProfile>::all(client.clone()), "caps-sc", 2)
        .await
        .unwrap();
    // kubectl shows kernel and runtime per node beside the counts.
    let table = cluster.cp.kubectl_ok(&["get", "nps"]).unwrap();
    println!("$ kubectl get nps\n{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert!(header.contains(&"KERNEL") && header.contains(&"RUNTIME"), "{table}");
    let line = |node: &str| table.lines().find(|l| l.starts_with(node)).unwrap().to_string();
    assert!(
        line("node-0").contains(kernel.trim()) && line("node-0").contains("containerd://2.1.9"),
        "{table}"
    );
    assert!(
        line("node-1").contains("7.2.13-amd64") && line("node-1").contains(SIMULATED_RUNTIME),
        "{table}"
    );
    // palisade status shows them beside each node, and carries them all in JSON.
    let (ok, text, err) = cluster.palisade(&["status", "caps-aa"]);
    assert!(ok, "{err}");
    println!("$ palisade status caps-aa\n{text}");
    let parser = c0.apparmor_parser_version.clone().unwrap();
    let want = format!(
        "  node-0 Installed [kernel {}, containerd://2.1.9, apparmor_parser {parser}, abi {}]\n",
        kernel.trim(),
        c0.apparmor_abi.join(" ")
    );
    assert!(text.contains(&want), "{want:?} in\n{text}");
    let want = format!("  node-1 Unsupported [kernel 7.2.13-amd64, {SIMULATED_RUNTIME}]: AppArmor is not enabled");
    assert!(text.contains(&want), "{want:?} in\n{text}");
    let (ok, json, err) = cluster.palisade(&["status", "caps-sc", "-o", "json"]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let on = |node: &str| {
        rows[0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .unwrap()["capabilities"]
            .clone()
    };
    assert_eq!(
        on("node-0"),
        serde_json::to_value(&capabilities_with_kernel(&nps, "node-0", kernel.trim()).await).unwrap()
    );
    assert_eq!(on("node-1")["kernelVersion"], "7.2.13-amd64");
    assert_eq!(
        on("node-1")["seccompActions"],
        json!(["kill_process", "kill_thread", "trap", "errno", "trace", "allow"])
    );
    assert_eq!(on("node-0")["apparmorFeatures"], json!(features));
}

#[tokio::test]
async fn agents_repair_drift_restart_cleanly_remove_orphans_and_never_touch_foreign_profiles() {
    let (mut cluster, client, sp, aap) = Cluster::started(Options {
        drift_interval: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    apply_json(&client, seccomp("keep", json!({}))).await.unwrap();
    apply_json(&client, seccomp("orphan", json!({}))).await.unwrap();
    apply_json(&client, apparmor("aa", json!({"abstract": {}})))
        .await
        .unwrap();
    wait_installed(&sp, "keep", 3).await.unwrap();
    wait_installed(&sp, "orphan", 3).await.unwrap();
    wait_installed(&aap, "aa", 3).await.unwrap();

    // Drift: a deleted file, an edited file, an unloaded profile — all repaired.
    let good = std::fs::read(cluster.seccomp_dir("node-0").join("keep.json")).unwrap();
    std::fs::remove_file(cluster.seccomp_dir("node-0").join("keep.json")).unwrap();
    std::fs::write(
        cluster.seccomp_dir("node-1").join("keep.json"),
        b"{\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
    )
    .unwrap();
    let profiles = cluster.node_dir("node-2").join("apparmorfs/profiles");
    std::fs::write(&profiles, b"").unwrap();
    wait_for("drift repaired", T, || async {
        let a = std::fs::read(cluster.seccomp_dir("node-0").join("keep.json")).ok() == Some(good.clone());
        let b = std::fs::read(cluster.seccomp_dir("node-1").join("keep.json")).ok() == Some(good.clone());
        let c = cluster.apparmor_loaded("node-2").contains_key("aa");
        Ok((a && b && c).then_some(()))
    })
    .await
    .unwrap();

    // Orphans: a profile deleted while the agent was down is removed when it comes back,
    // and nothing else is touched.
    cluster.kill_agent("node-0");
    sp.delete("orphan", &DeleteParams::default()).await.unwrap();
    wait_for("orphan gone from the API", T, || async {
        Ok(sp.get_opt("orphan").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    std::fs::write(
        cluster.seccomp_dir("node-0").join(".palisade-tmp-keep.json-999"),
        b"half a fil",
    )
    .unwrap();
    assert!(cluster.seccomp_files("node-0").contains(&"orphan.json".to_string()));
    cluster.start_agent("node-0").unwrap();
    wait_for("orphan and crash leftovers removed on node-0", T, || async {
        Ok((cluster.seccomp_files("node-0") == ["keep.json"]).then_some(()))
    })
    .await
    .unwrap();

    // A profile loaded on a node but not Palisade's is never replaced: Error on that node.
    let mut text = std::fs::read_to_string(&profiles).unwrap();
    text.push_str("foreign (enforce)\n");
    std::fs::write(&profiles, &text).unwrap();
    apply_json(&client, apparmor("foreign", json!({"abstract": {}})))
        .await
        .unwrap();
    let status = wait_for("foreign fails on node-2 only", T, || async {
        let s = aap.get("foreign").await?.status.unwrap_or_default();
        let n = s.nodes.unwrap_or_default();
        Ok((n.installed == 2 && n.failed == 1).then_some(s))
    })
    .await
    .unwrap();
    let failures = aap.get("foreign").await.unwrap().status.unwrap().failures;
    assert_eq!(failures[0].node, "node-2");
    assert!(failures[0].message.contains("not managed by Palisade"), "{status:?}");
    assert_eq!(
        cluster.apparmor_loaded("node-2").get("foreign").map(String::as_str),
        Some("enforce")
    );
    // The agent told the profile's owner, once, with an Event.
    let failed = wait_events(&client, "InstallFailed", "foreign").await.unwrap();
    assert!(
        failed[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .starts_with("node node-2: "),
        "{:?}",
        failed[0].note
    );
}

#[tokio::test]
async fn node_deletion_and_addition_update_counts() {
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    // The garbage collector of a real cluster, so a deleted Node takes its report along.
    cluster.cp.start_garbage_collector().unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    apply_json(&client, seccomp("everywhere", json!({}))).await.unwrap();
    wait_installed(&sp, "everywhere", 3).await.unwrap();
    let counts = || async {
        sp.get("everywhere")
            .await
            .map(|p| p.status.and_then(|s| s.nodes).unwrap_or_default())
    };

    cluster.delete_node("node-2").await.unwrap();
    wait_for("node-2 stops counting", T, || async {
        Ok((counts().await?.targeted == 2).then_some(()))
    })
    .await
    .unwrap();
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let owner = nps.get("node-1").await.unwrap().metadata.owner_references.unwrap();
    assert_eq!((owner[0].kind.as_str(), owner[0].name.as_str()), ("Node", "node-1"));
    // Nothing leaks when nodes come and go: node-2's report goes with its Node.
    wait_for("node-2's NodeProfileStatus garbage-collected", T, || async {
        Ok(nps.get_opt("node-2").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    assert!(
        nps.get_opt("node-1").await.unwrap().is_some(),
        "only the deleted node's"
    );

    cluster.add_node("node-3", true, Default::default()).await.unwrap();
    wait_for("the new node gets everything", T, || async {
        let c = counts().await?;
        Ok(
            (c.targeted == 3 && c.installed == 3 && cluster.seccomp_files("node-3") == ["everywhere.json"])
                .then_some(()),
        )
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn inheritance_changes_propagate_to_children() {
    let (cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    apply_json(
        &client,
        seccomp(
            "base",
            json!({"syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}),
        ),
    )
    .await
    .unwrap();
    apply_json(&client, seccomp("child", json!({"baseProfileName": "base"})))
        .await
        .unwrap();
    wait_installed(&sp, "child", 3).await.unwrap();
    let child = || std::fs::read_to_string(cluster.seccomp_dir("node-1").join("child.json")).unwrap_or_default();
    assert!(child().contains("ptrace"), "{}", child());

    apply_json(
        &client,
        seccomp(
            "base",
            json!({"syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}),
        ),
    )
    .await
    .unwrap();
    wait_for("child follows its base", T, || async {
        Ok((child().contains("kexec_load") && !child().contains("ptrace")).then_some(()))
    })
    .await
    .unwrap();

    // A cycle is refused, naming the profiles, and the installed child stays as it was.
    apply_json(&client, seccomp("base", json!({"baseProfileName": "child"})))
        .await
        .unwrap();
    let status = wait_condition(&sp, "child", "Accepted", "False").await.unwrap();
    assert!(
        status.conditions[0]
            .message
            .contains("inheritance cycle child -> base -> child"),
        "{:?}",
        status.conditions
    );
    assert!(child().contains("kexec_load"));
}

#[tokio::test]
async fn the_standby_operator_takes_over_when_the_leader_dies() {
    let (mut cluster, client, sp, _) = Cluster::started(Options {
        operators: 2,
        ..Options::default()
    })
    .await
    .unwrap();
    apply_json(&client, seccomp("before", json!({}))).await.unwrap();
    wait_installed(&sp, "before", 3).await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "palisade-system");
    let before_kill = leases.get("palisade-operator").await.unwrap().spec.unwrap();
    let holder = before_kill.holder_identity.clone().unwrap();
    let leader: usize = holder.trim_start_matches("operator-").parse().unwrap();
    cluster.kill_operator(leader);

    apply_json(&client, seccomp("after", json!({}))).await.unwrap();
    wait_installed(&sp, "after", 3).await.unwrap();
    let after = leases.get("palisade-operator").await.unwrap().spec.unwrap();
    assert_eq!(after.holder_identity, Some(format!("operator-{}", 1 - leader)));
    assert_eq!(
        after.lease_transitions,
        before_kill.lease_transitions.map(|t| t + 1),
        "one takeover"
    );
    // The standby waited out a full lease after the dead leader's last renewal (it judges
    // by when it saw the Lease change): it never took a Lease that could still be live.
    // (The renewal read before the kill is the last one or an earlier one: a lower bound.)
    let renewed = before_kill.renew_time.unwrap().0;
    let waited = after.acquire_time.unwrap().0.duration_since(renewed);
    assert!(
        waited >= k8s_openapi::jiff::SignedDuration::from_secs(14),
        "took over {waited:?} after a renewal, within the 15 s lease"
    );
    println!("standby took over {waited:?} after the leader's renewal");
}

/// The accepted-content handoff: the digest the operator accepts is the digest of the file
/// every agent writes and reports; a base edit that makes a child invalid never reaches a
/// node (agents wait, saying why, and keep the accepted content); fixing the base moves
/// every node to the newly accepted content.
#[tokio::test]
async fn a_base_edit_that_makes_a_child_invalid_never_reaches_a_node() {
    let (cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let base = |syscall: &str| {
        seccomp(
            "gate-base",
            json!({"syscalls": [{"names": [syscall], "action": "SCMP_ACT_ERRNO"}]}),
        )
    };
    apply_json(&client, base("ptrace")).await.unwrap();
    apply_json(&client, seccomp("gate-child", json!({"baseProfileName": "gate-base"})))
        .await
        .unwrap();
    let status = wait_installed(&sp, "gate-child", 3).await.unwrap();
    let accepted = status.accepted.clone().expect("the accepted content is published");
    assert_eq!(
        accepted.bases,
        vec!["gate-base".to_string()],
        "the resolved chain is named"
    );
    let on_node = |node: &str| std::fs::read(cluster.seccomp_dir(node).join("gate-child.json")).unwrap_or_default();
    let key = (ProfileKind::SeccompProfile, "gate-child".to_string());
    for node in NODES {
        assert_eq!(
            palisade_domain::digest(&on_node(node)),
            accepted.digest,
            "{node}: the file is the accepted content"
        );
        let reported = palisade_e2e::node_standing(&client, node).await.unwrap()[&key].clone();
        assert!(
            reported.state == NodeProfileState::Installed && reported.current,
            "{node}: the agent's installed set vouches for the operator's digest: {reported:?}"
        );
    }

    // The base now adds an architecture libseccomp cannot put in one filter with x86_64
    // (s390x is big-endian; runc refuses such a profile too): the base and its child are
    // refused. Agents render the child differently, see that the operator has not
    // accepted that content, and wait.
    let mut broken = base("setns");
    broken["spec"]["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_S390X"]);
    apply_json(&client, broken).await.unwrap();
    let status = wait_condition(&sp, "gate-child", "Accepted", "False").await.unwrap();
    assert_eq!(
        status.accepted.as_ref(),
        Some(&accepted),
        "the last accepted content stays published"
    );
    for node in NODES {
        let why = wait_for(&format!("{node} holds gate-child back"), T, || async {
            // Not installed at the new content: listed among the node's exceptions.
            let report = nps.get(node).await?.status.unwrap_or_default();
            let reported = report.exceptions.into_iter().find(|e| e.name == "gate-child");
            Ok(reported
                .filter(|e| e.state == NodeProfileState::Pending)
                .map(|e| e.message))
        })
        .await
        .unwrap();
        assert!(
            why.contains("waiting for the operator to accept this content")
                && why.contains("keeping the accepted content"),
            "{node}: {why}"
        );
        assert_eq!(
            palisade_domain::digest(&on_node(node)),
            accepted.digest,
            "{node}: unvalidated content never reached the node"
        );
        assert!(!String::from_utf8_lossy(&on_node(node)).contains("setns"));
    }

    // Fixed: the child's new content is accepted and installed everywhere.
    apply_json(&client, base("kexec_load")).await.unwrap();
    let fixed = wait_for("the child's new content accepted and installed", T, || async {
        let p = sp.get("gate-child").await?;
        let status = p.status.unwrap_or_default();
        Ok(status
            .accepted
            .filter(|a| a.digest != accepted.digest)
            .filter(|_| status.nodes.is_some_and(|n| n.installed == 3)))
    })
    .await
    .unwrap();
    for node in NODES {
        assert_eq!(palisade_domain::digest(&on_node(node)), fixed.digest, "{node}");
        assert!(String::from_utf8_lossy(&on_node(node)).contains("kexec_load"));
    }
}

/// A profile whose nodeSelector matches no node says so: Ready=False, NoMatchingNodes, and
/// a Warning Event. Labelling a node to match makes it Ready there.
#[tokio::test]
async fn a_profile_that_targets_no_node_says_so() {
    let (_cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    apply_json(
        &client,
        seccomp("nowhere", json!({"nodeSelector": {"matchLabels": {"pool": "gpu"}}})),
    )
    .await
    .unwrap();
    let status = wait_condition(&sp, "nowhere", "Ready", "False").await.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "NoMatchingNodes", "{ready:?}");
    let events = wait_events(&client, "NoMatchingNodes", "nowhere").await.unwrap();
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    label_node(&client, "node-2", json!({"pool": "gpu"})).await;
    wait_installed(&sp, "nowhere", 1).await.unwrap();
}

/// Objects written by an earlier version carry the finalizer `seccompprofiles.palisade.dev`
/// (which the API server warns about): the operator moves them to `palisade.dev/in-use`,
/// and deletion still completes.
#[tokio::test]
async fn the_legacy_finalizer_name_is_migrated() {
    let (cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    let mut old = seccomp("legacy", json!({}));
    old["metadata"]["finalizers"] = json!(["seccompprofiles.palisade.dev"]);
    apply_json(&client, old).await.unwrap();
    wait_for("the finalizer migrated", T, || async {
        let p = sp.get("legacy").await?;
        Ok((p.metadata.finalizers == Some(vec!["palisade.dev/in-use".to_string()])).then_some(()))
    })
    .await
    .unwrap();
    wait_installed(&sp, "legacy", 3).await.unwrap();
    sp.delete("legacy", &DeleteParams::default()).await.unwrap();
    wait_for("legacy is deleted", T, || async {
        Ok(sp.get_opt("legacy").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    files_on(&cluster, "legacy.json", &[]).await;
}
