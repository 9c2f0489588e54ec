//! Scenarios across the operator and agents on the local control plane: each test names
//! what it proves and fails if that breaks. Nodes are simulated (see palisade_e2e::cluster).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use palisade_crds::{AppArmorProfile, NodeProfileState, NodeProfileStatus, SeccompProfile};
use palisade_e2e::cluster::{apply_json, wait_condition, wait_installed};
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
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let client = cluster.cp.client().await.unwrap();
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    let sp: Api<SeccompProfile> = Api::all(client.clone());
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
    let status = wait_condition(&sp, "typo", "Accepted", "False").await.unwrap();
    assert!(
        status.conditions[0].message.contains("unknown syscall \"mkdirr\""),
        "{:?}",
        status.conditions
    );

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
        assert!(!cluster.seccomp_files(node).contains(&"typo.json".to_string()));
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
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
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
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
    let cluster = Cluster::start(Options {
        without_apparmor: vec![2],
        ..Options::default()
    })
    .await
    .unwrap();
    let client = cluster.cp.client().await.unwrap();
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    let sp: Api<SeccompProfile> = Api::all(client.clone());
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
    let entry = report.profiles.iter().find(|p| p.name == "aa").unwrap();
    assert_eq!(entry.state, NodeProfileState::Unsupported);
    assert!(entry.message.contains("not enabled"), "{}", entry.message);
}

#[tokio::test]
async fn agents_repair_drift_restart_cleanly_remove_orphans_and_never_touch_foreign_profiles() {
    let mut cluster = Cluster::start(Options {
        drift_interval: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
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
    let status = wait_condition(&aap, "foreign", "Ready", "False").await;
    let status = match status {
        Ok(s) => s,
        Err(_) => aap.get("foreign").await.unwrap().status.unwrap(),
    };
    wait_for("foreign fails on node-2 only", T, || async {
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
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let failed = wait_for("an InstallFailed Event", T, || async {
        let list = events.list(&Default::default()).await?;
        let hits: Vec<_> = list
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("InstallFailed")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("foreign")
            })
            .collect();
        Ok((!hits.is_empty()).then_some(hits))
    })
    .await
    .unwrap();
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
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
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
    let mut cluster = Cluster::start(Options {
        operators: 2,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    apply_json(&client, seccomp("before", json!({}))).await.unwrap();
    wait_installed(&sp, "before", 3).await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "palisade-system");
    let holder = leases
        .get("palisade-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let leader: usize = holder.trim_start_matches("operator-").parse().unwrap();
    cluster.kill_operator(leader);
    let killed = std::time::Instant::now();

    apply_json(&client, seccomp("after", json!({}))).await.unwrap();
    wait_installed(&sp, "after", 3).await.unwrap();
    let took = killed.elapsed();
    let holder = leases
        .get("palisade-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_eq!(holder, format!("operator-{}", 1 - leader));
    assert!(
        took < Duration::from_secs(15 + 10),
        "took over within the lease duration (15 s) plus one renew: {took:?}"
    );
}
