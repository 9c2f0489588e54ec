//! Palisade end to end on the local control plane: the real operator and three agents
//! (simulated nodes; the AppArmor kernel interface is simulated, the parser is real).

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use palisade_domain::AppArmorProfile;
use palisade_e2e::cluster::{examples_dir, wait_installed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn examples_install_on_every_node_update_and_removal() {
    let (cluster, _, sp, aap) = Cluster::started(Options::default()).await.expect("cluster starts");
    cluster.apply(&examples_dir()).unwrap();

    // Every example profile becomes Ready on all three nodes.
    for name in ["web-server", "base-runtime"] {
        wait_installed(&sp, name, 3).await.unwrap();
        let p = sp.get(name).await.unwrap();
        let status = p.status.unwrap();
        assert_eq!(status.nodes.unwrap().installed, 3);
        assert_eq!(
            status.localhost_profile.as_deref(),
            Some(format!("palisade/{name}.json").as_str())
        );
    }
    for name in ["web-server", "log-shipper"] {
        wait_installed(&aap, name, 3).await.unwrap();
    }
    for node in ["node-0", "node-1", "node-2"] {
        assert_eq!(cluster.seccomp_files(node), ["base-runtime.json", "web-server.json"]);
        let loaded = cluster.apparmor_loaded(node);
        assert_eq!(
            loaded.get("web-server").map(String::as_str),
            Some("enforce"),
            "{node}: {loaded:?}"
        );
        assert_eq!(
            loaded.get("log-shipper").map(String::as_str),
            Some("complain"),
            "{node}: {loaded:?}"
        );
        // The file is the inherited, rendered OCI profile: base rules are in it.
        let text = std::fs::read_to_string(cluster.seccomp_dir(node).join("web-server.json")).unwrap();
        let oci: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(oci["syscalls"].to_string().contains("exit_group") && oci.get("baseProfileName").is_none());
    }

    // An update replaces the old content on every node.
    sp.patch(
        "base-runtime",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}}),
        ),
    )
    .await
    .unwrap();
    wait_for("the new base on every node", T, || async {
        let all = ["node-0", "node-1", "node-2"].iter().all(|n| {
            let text = std::fs::read_to_string(cluster.seccomp_dir(n).join("base-runtime.json")).unwrap_or_default();
            !text.contains("openat")
        });
        Ok(all.then_some(()))
    })
    .await
    .unwrap();

    // Disabling removes it from every node; the others stay.
    aap.patch(
        "web-server",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"state": "Disabled"}})),
    )
    .await
    .unwrap();
    wait_for("web-server unloaded everywhere", T, || async {
        Ok(["node-0", "node-1", "node-2"]
            .iter()
            .all(|n| !cluster.apparmor_loaded(n).contains_key("web-server"))
            .then_some(()))
    })
    .await
    .unwrap();
    assert!(cluster.apparmor_loaded("node-1").contains_key("log-shipper"));
}

/// A rule class some nodes' kernels do not mediate (the real parser's judgement, for
/// simulated kernels: node-2's claims dbus mediation, the others' do not): the profile loads
/// everywhere, the nodes that leave dbus out name it in their reports, and the profile's
/// `RulesNotEnforced` warning names exactly them; it follows a node's kernel upgrade.
#[tokio::test]
async fn rule_classes_a_kernel_cannot_enforce_are_named_per_node() {
    use palisade_domain::{CONDITION_RULES_NOT_ENFORCED, NodeProfileStatus};
    let mut cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    cluster
        .set_kernel_features("node-2", "dbus {mask {acquire send receive\n}\n}\n")
        .unwrap();
    let client = cluster.cp.client().await.unwrap();
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let policy = "abi <abi/3.0>,\nprofile talks-dbus {\n  file,\n  dbus send bus=system,\n}\n";
    palisade_e2e::cluster::apply_json(
        &client,
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
               "metadata": {"name": "talks-dbus"}, "spec": {"policy": policy}}),
    )
    .await
    .unwrap();
    wait_installed(&aap, "talks-dbus", 3).await.unwrap();
    let warning = |p: &AppArmorProfile| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_RULES_NOT_ENFORCED))
            .map(|c| c.message.clone())
    };
    let message = wait_for("the warning names node-0 and node-1", T, || async {
        Ok(warning(&aap.get("talks-dbus").await?).filter(|m| m.contains("node-1")))
    })
    .await
    .unwrap();
    assert_eq!(
        message,
        "installed on 2/3 targeted nodes with rule classes left out (not mediated by the node's kernel, or not in the policy's declared ABI); the rest of the profile is enforced there: node-0 (dbus); node-1 (dbus)"
    );
    for node in ["node-0", "node-1", "node-2"] {
        assert_eq!(
            cluster.apparmor_loaded(node).get("talks-dbus").map(String::as_str),
            Some("enforce"),
            "{node}"
        );
        let report = nps.get(node).await.unwrap().status.unwrap();
        let partial: Vec<(&str, &[String])> = report
            .partial
            .iter()
            .map(|p| (p.name.as_str(), p.not_enforced.as_slice()))
            .collect();
        if node == "node-2" {
            assert!(partial.is_empty(), "{node} mediates dbus: {partial:?}");
        } else {
            assert_eq!(partial, [("talks-dbus", &["dbus".to_string()][..])], "{node}");
        }
    }
    // `palisade status` shows the warning, and what each node left out beside it.
    let (ok, out, err) = cluster.palisade(&["status", "talks-dbus"]);
    assert!(ok, "{err}");
    assert!(out.contains("RuleClassesLeftOut"), "{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("left out on this node: dbus"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| !l.contains("node-2")), "{out}");
    // node-1's agent is replaced by this one over the record of an agent that kept neither
    // the parser's version nor what was left out: the profile is compiled again, and named.
    let record = cluster
        .node_dir("node-1")
        .join("state/apparmor/records/talks-dbus.json");
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let fields = old.as_object_mut().unwrap();
    assert!(fields.remove("not_enforced").is_some() && fields.remove("parser").is_some());
    std::fs::write(&record, serde_json::to_vec(&old).unwrap()).unwrap();
    cluster.kill_agent("node-1");
    cluster.start_agent("node-1").unwrap();
    wait_for("node-1 compiles the profile again and names dbus", T, || async {
        let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&record)?)?;
        let report = nps.get("node-1").await?.status.unwrap_or_default();
        Ok((kept["parser"].as_str().is_some_and(|p| !p.is_empty())
            && report
                .partial
                .iter()
                .any(|p| p.name == "talks-dbus" && p.not_enforced == ["dbus"]))
        .then_some(()))
    })
    .await
    .unwrap();
    // node-0 boots a kernel that mediates dbus: the profile is loaded again for it, and the
    // warning names node-1 alone.
    cluster
        .set_kernel_features("node-0", "dbus {mask {acquire send receive\n}\n}\n")
        .unwrap();
    wait_for("the warning names node-1 alone", T, || async {
        Ok(warning(&aap.get("talks-dbus").await?).filter(|m| !m.contains("node-0") && m.contains("1/3")))
    })
    .await
    .unwrap();
    assert_eq!(
        cluster.apparmor_loaded("node-0").get("talks-dbus").map(String::as_str),
        Some("enforce")
    );
}
