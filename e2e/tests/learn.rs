//! Learning across the API: agents read audit records, report what they learned in their
//! NodeProfileStatus, the operator merges it into the profile's status, and `palisade
//! learn` shows and applies it.
//!
//! What is simulated: the nodes (agents on this machine, as in every e2e test) and auditd,
//! whose log is a file this test appends records to. The records have the text a real
//! kernel writes (see domain/src/learn/fixtures/, captured on the real node); the real-node
//! suite learns from a real kernel's records.

use std::io::Write as _;
use std::time::Duration;

use kube::Api;
use palisade_domain::NodeProfileStatus;
use palisade_e2e::audit::{SimulatedAudit, record};
use palisade_e2e::cluster::{apply_json, learning_rbac, wait_condition, wait_installed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::{Value, json};

const POLICY: &str =
    "#include <tunables/global>\n\nprofile learn-e2e flags=(attach_disconnected,mediate_deleted) {\n}\n";

fn allowed(serial: u64, fields: &str) -> String {
    record("AVC", serial, &format!("apparmor=\"ALLOWED\" {fields}"))
}

#[tokio::test]
async fn nodes_learn_the_operator_merges_and_learn_applies_once() {
    let SimulatedAudit { dir: _dir, log, .. } = SimulatedAudit::new().unwrap();
    let (cluster, client, _, api) = Cluster::started(Options {
        nodes: 2,
        agent_args: vec!["--learn".into(), "--audit-log".into(), log.display().to_string()],
        ..Options::default()
    })
    .await
    .unwrap();
    apply_json(
        &client,
        json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": "learn-e2e"},
            "spec": {"mode": "Complain", "policy": POLICY},
        }),
    )
    .await
    .unwrap();
    wait_installed(&api, "learn-e2e", 2).await.unwrap();
    // Both agents learn for it before the records come (an empty report each).
    wait_for("both nodes learning", Duration::from_secs(60), || async {
        let p = api.get("learn-e2e").await?;
        Ok(p.status
            .and_then(|s| s.learning)
            .filter(|l| l.nodes == 2 && l.new_permissions == 0))
    })
    .await
    .unwrap();

    // An agent learns a profile only from records of pods on its node that use it: a pod on
    // each node (no kubelet runs them; their spec is what counts). The agents list no pods:
    // the operator publishes each node's in its report, which the agents read with the
    // chart's learning RBAC (`learning.enabled` adds `get` on reports, and nothing on pods).
    let mut objects = learning_rbac("palisade-agent-learning-e2e");
    for node in ["node-0", "node-1"] {
        objects.push(json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("app-{node}"), "namespace": "default"},
               "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1",
                   "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "learn-e2e"}}}]}}));
    }
    cluster.apply_list("learning-pods", &objects).unwrap();
    // Each node's report lists its own pod, and only that.
    let reports: Api<NodeProfileStatus> = Api::all(client.clone());
    for node in ["node-0", "node-1"] {
        let pods = wait_for(
            "the operator to publish the node's learning pods",
            Duration::from_secs(60),
            || async {
                let pods = reports.get(node).await?.spec.learning_pods;
                Ok((!pods.is_empty()).then_some(pods))
            },
        )
        .await
        .unwrap();
        let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, [format!("default/app-{node}")], "{node}");
        assert_eq!(pods[0].apparmor, ["learn-e2e"]);
    }

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let p = r#"profile="learn-e2e" pid=4242 comm="app""#;
    for (serial, fields) in [
        (101, format!(r#"operation="open" class="file" {p} name="/etc/app/app.conf" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#)),
        (102, format!(r#"operation="mknod" class="file" {p} name="/run/app.pid" requested_mask="c" denied_mask="c" fsuid=0 ouid=0"#)),
        (103, format!(r#"operation="open" class="file" {p} name="/run/app.pid" requested_mask="w" denied_mask="w" fsuid=0 ouid=0"#)),
        (104, format!(r#"operation="capable" class="cap" {p} capability=10 capname="net_bind_service""#)),
        (105, format!(r#"operation="create" class="net" {p} family="inet" sock_type="stream" protocol=6 requested_mask="create" denied_mask="create""#)),
        (106, format!(r#"operation="open" class="file" {p} name="/proc/4242/status" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#)),
        // Not the workload's: the runtime before its exec, and another profile.
        (107, r#"operation="open" class="file" profile="learn-e2e" pid=4240 comm="runc:[2:INIT]" name="/proc/self/fd/" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#.to_string()),
        (108, r#"operation="open" class="file" profile="someone-else" pid=1 comm="x" name="/etc/shadow" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#.to_string()),
    ] {
        f.write_all(allowed(serial, &fields).as_bytes()).unwrap();
    }
    f.flush().unwrap();

    // Both nodes report the same records: one suggestion each, seen on two nodes.
    let learning = wait_for("the merged learning", Duration::from_secs(60), || async {
        let p = api.get("learn-e2e").await?;
        Ok(p.status
            .and_then(|s| s.learning)
            .filter(|l| l.nodes == 2 && l.new_permissions == 5 && l.suggestions.iter().all(|s| s.node_count == 2)))
    })
    .await
    .unwrap();
    let rules: Vec<&str> = learning.suggestions.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "capability net_bind_service,",
            "network inet stream,",
            "owner /etc/app/app.conf r,",
            "owner /run/app.pid w,",
            "owner @{PROC}/@{pid}/status r,",
        ]
    );
    let pid_file = &learning.suggestions[3];
    assert_eq!(pid_file.count, 4, "created and opened, on two nodes");
    assert!(learning.last_new_at.is_some());

    // The diff, without changing anything.
    let (ok, out, err) = cluster.palisade(&["learn", "learn-e2e"]);
    assert!(ok, "{err}");
    assert!(out.contains("5 new permission(s) seen on 2 node(s)"), "{out}");
    assert!(out.contains("+   owner /run/app.pid w,"), "{out}");
    assert!(out.contains("+   # learned by palisade"), "{out}");
    assert!(out.contains("Nothing changed"), "{out}");
    assert_eq!(api.get("learn-e2e").await.unwrap().spec.policy.as_deref(), Some(POLICY));

    // --apply writes the rules inside the profile block, and stays in Complain mode.
    let (ok, out, err) = cluster.palisade(&["learn", "learn-e2e", "--apply"]);
    assert!(ok, "{out}{err}");
    let applied = api.get("learn-e2e").await.unwrap();
    let policy = applied.spec.policy.clone().unwrap();
    assert!(policy.starts_with(POLICY.trim_end_matches("}\n")), "{policy}");
    for r in [
        "capability net_bind_service,",
        "network inet stream,",
        "owner /run/app.pid w,",
    ] {
        assert!(policy.contains(&format!("\n  {r}\n")), "{r} in {policy}");
    }
    assert!(policy.trim_end().ends_with('}'));
    assert_eq!(applied.spec.mode, palisade_domain::AppArmorMode::Complain);
    // The operator accepts what learn wrote (the real parser checks it).
    wait_condition(&api, "learn-e2e", "Accepted", "True").await.unwrap();

    // Idempotent: the same rules again change nothing.
    let (ok, out, _) = cluster.palisade(&["learn", "learn-e2e", "--apply", "-o", "json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"], false, "{out}");
    let again = api.get("learn-e2e").await.unwrap();
    assert_eq!(
        again.metadata.generation, applied.metadata.generation,
        "the spec was not written"
    );
    assert_eq!(again.spec.policy, applied.spec.policy);

    // New content starts learning afresh: the old records were made under other rules.
    wait_for(
        "learning to restart for the new content",
        Duration::from_secs(60),
        || async {
            let p = api.get("learn-e2e").await?;
            let s = p.status.unwrap_or_default();
            let fresh = s
                .accepted
                .is_some_and(|a| a.generation == p.metadata.generation.unwrap_or(0))
                && s.learning.is_none_or(|l| l.new_permissions == 0);
            Ok(fresh.then_some(()))
        },
    )
    .await
    .unwrap();

    // --enforce leaves Complain mode; nothing is learned in Enforce mode.
    let (ok, out, err) = cluster.palisade(&["learn", "learn-e2e", "--apply", "--enforce"]);
    assert!(ok, "{out}{err}");
    assert!(out.to_lowercase().contains("switched to enforce"), "{out}");
    let p = api.get("learn-e2e").await.unwrap();
    assert_eq!(p.spec.mode, palisade_domain::AppArmorMode::Enforce);
    assert_eq!(p.spec.policy.as_deref(), Some(policy.as_str()));
    wait_for("the learning status to go", Duration::from_secs(60), || async {
        let p = api.get("learn-e2e").await?;
        Ok(p.status.filter(|s| s.learning.is_none()).map(|_| ()))
    })
    .await
    .unwrap();

    // A missing profile is an error naming it.
    let (ok, _, err) = cluster.palisade(&["learn", "nope"]);
    assert!(!ok);
    assert!(err.contains("no AppArmorProfile or SeccompProfile named nope"), "{err}");
}
