//! Palisade end to end on the local control plane: the real operator and three agents
//! (simulated nodes; the AppArmor kernel interface is simulated, the parser is real).

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use palisade_domain::{AppArmorProfile, SeccompProfile};
use palisade_e2e::cluster::{examples_dir, wait_installed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn examples_install_on_every_node_update_and_removal() {
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let client = cluster.cp.client().await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
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
