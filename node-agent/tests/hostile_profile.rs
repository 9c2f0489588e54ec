//! One hostile AppArmor profile on a node (a few hundred bytes that make the parser's
//! automaton explode) beside a good one, through the agent's whole sync, against the real
//! `apparmor_parser` and a SIMULATED apparmorfs (this machine's kernel has no AppArmor LSM).
//! The good profile's load is not held up by the hostile one's, the hostile one costs its
//! budget once and is not compiled again until it changes, and nothing else is touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::DeserializeGuard;
use palisade_agent::apparmor::{AppArmor, AppArmorConfig};
use palisade_agent::metrics::Metrics;
use palisade_agent::run::NodeState;
use palisade_domain::{AppArmorProfile, NodeProfileState};
use palisade_runtime::budget::Budget;
use serde_json::json;

const FEATURES: &str = "/usr/share/apparmor-features/features";

fn accepted(name: &str, policy: &str) -> Arc<DeserializeGuard<AppArmorProfile>> {
    let mut p: AppArmorProfile = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
        "spec": {"policy": policy}}))
    .unwrap();
    let digest = palisade_domain::render::apparmor::render(name, &p.spec).unwrap().digest;
    p.status = Some(serde_json::from_value(json!({"accepted": {"generation": 1, "digest": digest}})).unwrap());
    Arc::new(DeserializeGuard(Ok(p)))
}

#[tokio::test]
async fn a_hostile_profile_costs_its_budget_once_and_holds_up_no_other() {
    let root = tempfile::tempdir().unwrap();
    let fs = root.path().join("apparmorfs");
    std::fs::create_dir_all(&fs).unwrap();
    for f in ["profiles", ".replace", ".remove", ".load"] {
        std::fs::write(fs.join(f), b"").unwrap();
    }
    let cpu = Duration::from_secs(4);
    let aa = AppArmor::new(AppArmorConfig {
        parser: "apparmor_parser".into(),
        apparmorfs: fs.clone(),
        include_dir: "/etc/apparmor.d".into(),
        abi_dir: None,
        state_dir: root.path().join("state"),
        simulated_kernel_features: Some(FEATURES.into()),
        // Memory enough that the CPU budget is what stops the explosion.
        budget: Budget {
            cpu,
            memory: 2 << 30,
            wall: Duration::from_secs(60),
        },
        reserved: vec![],
    })
    .unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let seccomp_dir = root.path().join("seccomp");
    let mut node = NodeState::new(aa, Ok("test".into()), seccomp_dir, metrics).unwrap();

    let rules: String = (0..4)
        .map(|i| format!("  /**/x{i}*/**/y{i}*/** r,\n  deny /**z{i}*/**[^a]{i}* w,\n"))
        .collect();
    let bomb = accepted("bomb", &format!("profile bomb {{\n{rules}}}\n"));
    let good = accepted("good", "profile good {\n  /srv/** r,\n}\n");
    let labels = BTreeMap::new();

    let started = Instant::now();
    let (entries, _) = node.sync(&[], &[bomb.clone(), good.clone()], &labels, false).await;
    let took = started.elapsed();
    let by_name: BTreeMap<&str, _> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(
        by_name["good"].state,
        NodeProfileState::Installed,
        "{:?}",
        by_name["good"]
    );
    assert_eq!(by_name["bomb"].state, NodeProfileState::Error);
    assert!(
        by_name["bomb"].message.contains("exceeded its CPU budget"),
        "{}",
        by_name["bomb"].message
    );
    // The good profile reached the (simulated) kernel while the bomb still compiled: the
    // profiles list was last written long before the sync ended.
    let listed_at = std::fs::metadata(fs.join("profiles")).unwrap().modified().unwrap();
    let good_after = listed_at
        .duration_since(std::time::SystemTime::now() - took)
        .unwrap_or_default();
    eprintln!("sync took {took:?}; the good profile was loaded {good_after:?} into it");
    assert!(took >= cpu, "the bomb ran until its CPU budget: {took:?}");
    assert!(
        good_after < Duration::from_secs(2),
        "the good profile waited for the bomb: loaded {good_after:?} into a {took:?} sync"
    );

    // Again, and with a drift check: the bomb's content is not compiled again.
    let started = Instant::now();
    let (entries, _) = node.sync(&[], &[bomb, good], &labels, true).await;
    let again = started.elapsed();
    eprintln!("the next sync took {again:?}");
    assert!(again < Duration::from_secs(2), "{again:?}");
    assert!(
        entries
            .iter()
            .any(|e| e.name == "bomb" && e.state == NodeProfileState::Error)
    );
    assert!(
        entries
            .iter()
            .any(|e| e.name == "good" && e.state == NodeProfileState::Installed)
    );
}
