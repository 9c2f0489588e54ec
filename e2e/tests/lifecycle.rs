//! Lifecycle scenarios on the local control plane (operator + 3 simulated nodes): modes,
//! disable and re-enable, a hundred profiles at once, an operator restart, and an object the
//! operator cannot read. Each test names what it proves and fails if that breaks.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use palisade_domain::{AppArmorProfile, SeccompProfile};
use palisade_e2e::cluster::{apply_json, metric_sum, scrape_metrics, wait_events, wait_installed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(90);
const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

fn seccomp(name: &str) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name},
           "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}})
}

fn apparmor(name: &str, mode: &str) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name},
           "spec": {"mode": mode, "abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}}})
}

async fn modes_are(cluster: &Cluster, name: &str, mode: Option<&str>) {
    wait_for(&format!("{name} loaded as {mode:?} on every node"), T, || async {
        Ok(NODES
            .iter()
            .all(|n| cluster.apparmor_loaded(n).get(name).map(String::as_str) == mode)
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn complain_and_enforce_load_as_asked_and_switch_in_place() {
    let (cluster, client, _, aap) = Cluster::started(Options::default()).await.unwrap();
    apply_json(&client, apparmor("audit-me", "Complain")).await.unwrap();
    apply_json(&client, apparmor("lock-me", "Enforce")).await.unwrap();
    wait_installed(&aap, "audit-me", 3).await.unwrap();
    wait_installed(&aap, "lock-me", 3).await.unwrap();
    modes_are(&cluster, "audit-me", Some("complain")).await;
    modes_are(&cluster, "lock-me", Some("enforce")).await;

    // Complain → Enforce is a new generation, replaced on every node without an unload.
    apply_json(&client, apparmor("audit-me", "Enforce")).await.unwrap();
    modes_are(&cluster, "audit-me", Some("enforce")).await;
    let status = wait_installed(&aap, "audit-me", 3).await.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    // And back.
    apply_json(&client, apparmor("audit-me", "Complain")).await.unwrap();
    modes_are(&cluster, "audit-me", Some("complain")).await;
    modes_are(&cluster, "lock-me", Some("enforce")).await;
}

#[tokio::test]
async fn disable_removes_everywhere_and_re_enable_puts_it_back() {
    let (cluster, client, sp, aap) = Cluster::started(Options::default()).await.unwrap();
    apply_json(&client, seccomp("pausable")).await.unwrap();
    apply_json(&client, apparmor("pausable", "Enforce")).await.unwrap();
    wait_installed(&sp, "pausable", 3).await.unwrap();
    wait_installed(&aap, "pausable", 3).await.unwrap();

    let disable = Patch::Merge(json!({"spec": {"state": "Disabled"}}));
    sp.patch("pausable", &PatchParams::default(), &disable).await.unwrap();
    aap.patch("pausable", &PatchParams::default(), &disable).await.unwrap();
    wait_for("files and profiles gone from every node", T, || async {
        Ok(NODES
            .iter()
            .all(|n| cluster.seccomp_files(n).is_empty() && !cluster.apparmor_loaded(n).contains_key("pausable"))
            .then_some(()))
    })
    .await
    .unwrap();
    wait_for("Ready=True with reason Disabled", T, || async {
        let p = sp.get("pausable").await?;
        let status = p.status.unwrap_or_default();
        Ok(status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Disabled")
            .then_some(()))
    })
    .await
    .unwrap();

    let enable = Patch::Merge(json!({"spec": {"state": "Enabled"}}));
    sp.patch("pausable", &PatchParams::default(), &enable).await.unwrap();
    aap.patch("pausable", &PatchParams::default(), &enable).await.unwrap();
    wait_installed(&sp, "pausable", 3).await.unwrap();
    wait_installed(&aap, "pausable", 3).await.unwrap();
    for n in NODES {
        assert_eq!(cluster.seccomp_files(n), ["pausable.json"]);
        assert_eq!(
            cluster.apparmor_loaded(n).get("pausable").map(String::as_str),
            Some("enforce")
        );
    }
}

#[tokio::test]
async fn a_hundred_profiles_at_once_all_become_ready_on_every_node() {
    let (cluster, client, _, _) = Cluster::started(Options::default()).await.unwrap();
    let mut items: Vec<serde_json::Value> = (0..50).map(|i| seccomp(&format!("bulk-{i}"))).collect();
    items.extend((0..50).map(|i| apparmor(&format!("bulk-{i}"), "Enforce")));
    cluster.apply_list("hundred", &items).unwrap();

    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    wait_for(
        "100 profiles installed on 3 nodes each",
        Duration::from_secs(240),
        || async {
            let mut done = 0;
            for p in sp.list(&ListParams::default()).await?.items {
                done += (p.status.and_then(|s| s.nodes).map(|n| n.installed) == Some(3)) as usize;
            }
            for p in aap.list(&ListParams::default()).await?.items {
                done += (p.status.and_then(|s| s.nodes).map(|n| n.installed) == Some(3)) as usize;
            }
            Ok((done == 100).then_some(()))
        },
    )
    .await
    .unwrap();
    for n in NODES {
        assert_eq!(cluster.seccomp_files(n).len(), 50, "{n}");
        assert_eq!(cluster.apparmor_loaded(n).len(), 50, "{n}");
    }
}

/// Every profile's resourceVersion, to tell whether anything was written to it.
async fn versions(client: &kube::Client) -> BTreeMap<String, String> {
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    let mut out = BTreeMap::new();
    for p in sp.list(&ListParams::default()).await.unwrap().items {
        out.insert(
            format!("sp/{}", p.metadata.name.unwrap()),
            p.metadata.resource_version.unwrap(),
        );
    }
    for p in aap.list(&ListParams::default()).await.unwrap().items {
        out.insert(
            format!("aap/{}", p.metadata.name.unwrap()),
            p.metadata.resource_version.unwrap(),
        );
    }
    out
}

async fn agent_operations(cluster: &Cluster) -> f64 {
    let mut total = 0.0;
    for agent in cluster.agents.values() {
        let text = scrape_metrics(agent.metrics_port).await.unwrap();
        total += metric_sum(&text, "palisade_agent_operations_total");
    }
    total
}

/// An object that does not parse as this version reads its kind (a `defaultAction` only a
/// newer CRD allows: the test loosens the installed CRD, as an upgrade that applies the CRDs
/// before the operator would) reaches the reconciler: it gets Accepted=False with reason
/// InvalidObject and a Warning Event, and it stalls nothing: a profile created after it is
/// installed everywhere, no node holds anything of it, and once fixed it is installed too.
#[tokio::test]
async fn an_object_that_does_not_parse_gets_a_status_and_stalls_nothing() {
    use kube::api::DynamicObject;
    let (cluster, client, sp, _) = Cluster::started(Options::default()).await.unwrap();
    apply_json(&client, seccomp("before")).await.unwrap();
    wait_installed(&sp, "before", 3).await.unwrap();

    let loosen = json!([{"op": "remove",
        "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/defaultAction/enum"}]);
    cluster
        .cp
        .kubectl_ok(&[
            "patch",
            "crd",
            "seccompprofiles.palisade.dev",
            "--type=json",
            "-p",
            &loosen.to_string(),
        ])
        .unwrap();
    let mut future = seccomp("future");
    future["spec"]["defaultAction"] = json!("SCMP_ACT_FUTURE");
    wait_for("the API server to take the loosened schema", T, || async {
        Ok(apply_json(&client, future.clone()).await.ok())
    })
    .await
    .unwrap();

    let raw: Api<DynamicObject> = Api::all_with(client.clone(), &kube::core::ApiResource::erase::<SeccompProfile>(&()));
    let accepted = wait_for("future: Accepted=False, InvalidObject", T, || async {
        let o = raw.get("future").await?;
        let conditions = o.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        Ok(conditions
            .into_iter()
            .find(|c| c["type"] == "Accepted" && c["status"] == "False" && c["reason"] == "InvalidObject"))
    })
    .await
    .unwrap();
    let message = accepted["message"].as_str().unwrap();
    assert!(message.contains("SCMP_ACT_FUTURE"), "{message}");
    let events = wait_events(&client, "InvalidObject", "future").await.unwrap();
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));

    apply_json(&client, seccomp("after")).await.unwrap();
    wait_installed(&sp, "after", 3).await.unwrap();
    for n in NODES {
        assert_eq!(cluster.seccomp_files(n), ["after.json", "before.json"], "{n}");
    }
    apply_json(&client, seccomp("future")).await.unwrap();
    wait_installed(&sp, "future", 3).await.unwrap();
}

#[tokio::test]
async fn an_operator_restart_does_no_duplicate_work_and_state_converges() {
    let (mut cluster, client, sp, aap) = Cluster::started(Options::default()).await.unwrap();
    for i in 0..3 {
        apply_json(&client, seccomp(&format!("steady-{i}"))).await.unwrap();
        apply_json(&client, apparmor(&format!("steady-{i}"), "Enforce"))
            .await
            .unwrap();
    }
    for i in 0..3 {
        wait_installed(&sp, &format!("steady-{i}"), 3).await.unwrap();
        wait_installed(&aap, &format!("steady-{i}"), 3).await.unwrap();
    }
    // Ready at once is written without delay (only progress-only writes are spaced), so
    // every status is final here.
    let before = versions(&client).await;
    let ops_before = agent_operations(&cluster).await;
    assert!(ops_before >= 18.0, "18 installs happened: {ops_before}");

    cluster.kill_operator(0);
    cluster.start_operator(0).unwrap();

    // The new operator works: a profile applied now becomes Ready everywhere.
    apply_json(&client, seccomp("after-restart")).await.unwrap();
    wait_installed(&sp, "after-restart", 3).await.unwrap();
    // The restarted operator reconciled every profile at least once (its start-up pass).
    wait_for(
        "the restarted operator looked at all 7 profiles",
        Duration::from_secs(60),
        || async {
            let text = scrape_metrics(cluster.operator_ports[0]).await?;
            Ok((metric_sum(&text, "palisade_operator_reconciles_total") >= 7.0).then_some(()))
        },
    )
    .await
    .unwrap();

    // No duplicate work: it re-validated and re-aggregated every profile, but wrote none of
    // them (same deterministic status), and agents installed only the new one.
    let mut after = versions(&client).await;
    after.remove("sp/after-restart");
    assert_eq!(after, before, "no profile was written by the restarted operator");
    let ops_after = agent_operations(&cluster).await;
    assert_eq!(
        ops_after - ops_before,
        3.0,
        "one install per node, for the new profile only"
    );
}

/// The heartbeat has its own task: an agent stuck in a sync (an `apparmor_parser` that takes
/// five times the heartbeat lease to load a profile) stays live, so its node stays
/// targeted and its profiles stay Ready meanwhile.
#[tokio::test]
async fn a_long_sync_never_makes_a_live_node_look_dead() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("parser-hangs");
    let parser = scratch.path().join("slow-parser");
    let real = which("apparmor_parser");
    std::fs::write(
        &parser,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --replace \"*) touch '{}'; sleep 30;; esac\nexec '{}' \"$@\"\n",
            marker.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&parser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_cluster, client, sp, _) = Cluster::started(Options {
        nodes: 1,
        agent_args: vec![
            "--apparmor-parser".into(),
            parser.display().to_string(),
            "--lease-duration".into(),
            "6".into(),
            "--parser-timeout".into(),
            "120".into(),
        ],
        ..Options::default()
    })
    .await
    .unwrap();
    apply_json(&client, seccomp("alive")).await.unwrap();
    wait_installed(&sp, "alive", 1).await.unwrap();

    apply_json(&client, apparmor("slow", "Enforce")).await.unwrap();
    wait_for("the agent's parser hangs", Duration::from_secs(60), || async {
        Ok(marker.exists().then_some(()))
    })
    .await
    .unwrap();
    // Six renewals (two lease durations) while the sync is stuck in the parser.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "palisade-system");
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    wait_for(
        "six heartbeats during the stuck sync",
        Duration::from_secs(25),
        || async {
            let lease = leases.get("palisade-agent-node-0").await?;
            let mut seen = seen.lock().unwrap();
            if let Some(t) = lease.spec.and_then(|s| s.renew_time) {
                seen.insert(t.0.to_string());
            }
            Ok((seen.len() >= 6).then_some(()))
        },
    )
    .await
    .unwrap();
    assert!(marker.exists());
    let status = sp.get("alive").await.unwrap().status.unwrap();
    assert_eq!(
        status.nodes.map(|n| n.targeted),
        Some(1),
        "the node stayed live: {status:?}"
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{status:?}"
    );
}

fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}
