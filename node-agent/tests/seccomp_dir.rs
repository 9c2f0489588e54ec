//! The agent in a seccomp directory it shares with another tool (SPO's `operator/`, for
//! pods migrated from SPO): it writes and removes only the files it recorded as its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::core::DeserializeGuard;
use palisade_agent::apparmor::{AppArmor, AppArmorConfig};
use palisade_agent::files;
use palisade_agent::metrics::Metrics;
use palisade_agent::run::NodeState;
use palisade_domain::{NodeProfileState, SeccompProfile};
use serde_json::json;

/// An accepted SeccompProfile (status.accepted carries its rendered digest), as the
/// agent's guarded watch delivers it.
fn accepted(name: &str, syscall: &str) -> Arc<DeserializeGuard<SeccompProfile>> {
    Arc::new(DeserializeGuard(Ok(profile(name, syscall))))
}

fn profile(name: &str, syscall: &str) -> SeccompProfile {
    let mut p: SeccompProfile = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
        "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [syscall], "action": "SCMP_ACT_ERRNO"}]}}))
    .unwrap();
    let digest = palisade_domain::render::seccomp::render(name, &p.spec, |_| None)
        .unwrap()
        .digest;
    p.status = Some(serde_json::from_value(json!({"accepted": {"generation": 1, "digest": digest}})).unwrap());
    p
}

/// The seccomp directory `seccomp/<subdir>` under a new temporary root, created.
fn seccomp_dir(subdir: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("seccomp").join(subdir);
    std::fs::create_dir_all(&dir).unwrap();
    (root, dir)
}

/// The file Palisade writes for `profile(name, syscall)`.
fn rendered(name: &str, syscall: &str) -> Vec<u8> {
    palisade_domain::render::seccomp::render(name, &profile(name, syscall).spec, |_| None)
        .unwrap()
        .bytes
}

/// A SeccompProfile `api` with a value only a newer CRD allows: this agent cannot read it.
fn unreadable() -> DeserializeGuard<SeccompProfile> {
    let broken: DeserializeGuard<SeccompProfile> = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": "api", "uid": "uid-api", "generation": 2},
        "spec": {"defaultAction": "SCMP_ACT_NEW"}}))
    .unwrap();
    assert!(broken.0.is_err());
    broken
}

fn state(root: &Path, dir: &Path) -> NodeState {
    let aa = AppArmor::new(AppArmorConfig {
        parser: "apparmor_parser".into(),
        apparmorfs: root.join("none"),
        include_dir: "/etc/apparmor.d".into(),
        abi_dir: None,
        state_dir: root.join("state"),
        simulated_kernel_features: None,
        budget: palisade_agent::apparmor::default_budget(std::time::Duration::from_secs(60)),
        reserved: vec![],
    })
    .unwrap();
    let metrics = Metrics::register(&mut Default::default());
    NodeState::new(aa, Err("no AppArmor in this test".into()), dir.to_path_buf(), metrics).unwrap()
}

#[tokio::test]
async fn a_shared_directory_keeps_other_tools_files_untouched() {
    let (root, dir) = seccomp_dir("operator");
    std::fs::write(dir.join("spo-only.json"), b"{\"defaultAction\":\"SCMP_ACT_LOG\"}").unwrap();
    std::fs::write(dir.join("web.json"), b"{\"defaultAction\":\"SCMP_ACT_LOG\"}").unwrap();

    let mut node = state(root.path(), &dir);
    let labels = BTreeMap::new();
    let both = [accepted("web", "mkdir"), accepted("api", "rmdir")];
    let (entries, _) = node.sync(&both, &[], &labels, true).await;
    let by_name: BTreeMap<&str, _> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(by_name["api"].state, NodeProfileState::Installed);
    assert_eq!(by_name["web"].state, NodeProfileState::Error, "{:?}", by_name["web"]);
    assert!(
        by_name["web"].message.contains("is another tool's file"),
        "{}",
        by_name["web"].message
    );
    assert_eq!(
        std::fs::read(dir.join("web.json")).unwrap(),
        b"{\"defaultAction\":\"SCMP_ACT_LOG\"}",
        "the other tool's file is untouched"
    );
    assert_eq!(files::read_owned(&dir).unwrap().unwrap(), ["api".to_string()].into());

    // The other tool removes its file: Palisade installs its own in the next sync.
    std::fs::remove_file(dir.join("web.json")).unwrap();
    let (entries, _) = node.sync(&both, &[], &labels, false).await;
    assert!(
        entries.iter().all(|e| e.state == NodeProfileState::Installed),
        "{entries:?}"
    );
    assert!(std::fs::read_to_string(dir.join("web.json")).unwrap().contains("mkdir"));

    // Deleting Palisade's profiles removes only Palisade's files; a restart keeps the record.
    drop(node);
    let mut node = state(root.path(), &dir);
    node.sync(&[], &[], &labels, true).await;
    assert!(!dir.join("web.json").exists() && !dir.join("api.json").exists());
    assert!(dir.join("spo-only.json").exists(), "never Palisade's, never removed");
    assert!(files::read_owned(&dir).unwrap().unwrap().is_empty());
}

/// Without an ownership record (lost, or a directory shared with another tool), a file is
/// adopted only if its content is exactly what Palisade would write; any other file is
/// never replaced or deleted. (Before: every `*.json` was adopted, then deleted as stale.)
#[tokio::test]
async fn without_a_record_only_identical_files_are_adopted_and_nothing_else_is_deleted() {
    for subdir in [palisade_domain::SECCOMP_SUBDIR, "profiles"] {
        let (root, dir) = seccomp_dir(subdir);
        std::fs::write(dir.join("other.json"), b"{}").unwrap();
        let web = accepted("web", "mkdir");
        let bytes = rendered("web", "mkdir");
        std::fs::write(dir.join("web.json"), &bytes).unwrap();
        let mut node = state(root.path(), &dir);
        assert!(
            files::read_owned(&dir).unwrap().unwrap().is_empty(),
            "nothing adopted by name"
        );
        let (entries, _) = node.sync(&[web], &[], &BTreeMap::new(), true).await;
        assert_eq!(entries[0].state, NodeProfileState::Installed, "{entries:?}");
        assert_eq!(files::read_owned(&dir).unwrap().unwrap(), ["web".to_string()].into());
        node.sync(&[], &[], &BTreeMap::new(), true).await;
        assert!(
            !dir.join("web.json").exists(),
            "{subdir}: the adopted file is Palisade's to remove"
        );
        assert_eq!(
            std::fs::read(dir.join("other.json")).unwrap(),
            b"{}",
            "{subdir}: a file Palisade did not write is never deleted"
        );
    }
}

#[tokio::test]
async fn content_not_yet_accepted_claims_no_name() {
    let (root, dir) = seccomp_dir("operator");
    let mut node = state(root.path(), &dir);
    let mut pending = profile("web", "mkdir");
    pending.status = None;
    let (entries, _) = node
        .sync(&[Arc::new(DeserializeGuard(Ok(pending)))], &[], &BTreeMap::new(), false)
        .await;
    assert!(
        entries.is_empty(),
        "a profile never accepted, with nothing installed, is not reported: {entries:?}"
    );
    assert!(
        files::read_owned(&dir).unwrap().unwrap().is_empty(),
        "nothing recorded before acceptance"
    );
    // Another tool writes the file meanwhile: it stays that tool's.
    std::fs::write(dir.join("web.json"), b"{}").unwrap();
    let (entries, _) = node
        .sync(&[accepted("web", "mkdir")], &[], &BTreeMap::new(), false)
        .await;
    assert_eq!(entries[0].state, NodeProfileState::Error);
    assert_eq!(std::fs::read(dir.join("web.json")).unwrap(), b"{}");
}

#[tokio::test]
async fn an_object_that_does_not_parse_is_skipped() {
    let (root, dir) = seccomp_dir("palisade");
    let mut node = state(root.path(), &dir);
    let broken = unreadable();
    let (entries, _) = node
        .sync(
            &[accepted("web", "mkdir"), Arc::new(broken)],
            &[],
            &BTreeMap::new(),
            false,
        )
        .await;
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["web"], "{entries:?}");
    assert_eq!(entries[0].state, NodeProfileState::Installed);
    assert_eq!(
        files::read_owned(&dir).unwrap().unwrap(),
        ["web".to_string()].into(),
        "nothing is written for the object that does not parse"
    );
}

/// Attack: the author of a profile that pods run under makes its object unreadable (a value
/// only a newer schema allows) to have it removed without the in-use deletion hold. The agent
/// keeps what it installed and reports it Pending.
#[tokio::test]
async fn an_object_that_stops_parsing_keeps_what_is_installed() {
    let (root, dir) = seccomp_dir("palisade");
    let mut node = state(root.path(), &dir);
    let (entries, _) = node
        .sync(&[accepted("api", "mkdir")], &[], &BTreeMap::new(), false)
        .await;
    assert_eq!(entries[0].state, NodeProfileState::Installed);
    let installed = std::fs::read(dir.join("api.json")).unwrap();
    let broken = unreadable();
    for drift in [false, true] {
        let (entries, _) = node
            .sync(&[Arc::new(broken.clone())], &[], &BTreeMap::new(), drift)
            .await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].state, NodeProfileState::Pending, "{entries:?}");
        assert!(entries[0].message.contains("cannot read the object"), "{entries:?}");
        assert_eq!(
            std::fs::read(dir.join("api.json")).unwrap(),
            installed,
            "the file stays"
        );
    }
    // Deleted (no object at all): removed as before.
    node.sync(&[], &[], &BTreeMap::new(), false).await;
    assert!(!dir.join("api.json").exists());
}

/// Attack: another tool's file sits in the seccomp directory after Palisade recorded what it
/// owns; a SeccompProfile of the same name and identical content would claim it, and deleting
/// that profile would delete the other tool's file. Only files found while the record was
/// missing are ever adopted.
#[tokio::test]
async fn with_a_record_an_identical_foreign_file_is_not_adopted() {
    let (root, dir) = seccomp_dir("palisade");
    let mut node = state(root.path(), &dir);
    assert!(files::read_owned(&dir).unwrap().is_some(), "the record exists");
    let bytes = rendered("web", "mkdir");
    std::fs::write(dir.join("web.json"), &bytes).unwrap();
    let (entries, _) = node
        .sync(&[accepted("web", "mkdir")], &[], &BTreeMap::new(), true)
        .await;
    assert_eq!(entries[0].state, NodeProfileState::Error, "{entries:?}");
    assert!(entries[0].message.contains("is another tool's file"), "{entries:?}");
    node.sync(&[], &[], &BTreeMap::new(), true).await;
    assert_eq!(
        std::fs::read(dir.join("web.json")).unwrap(),
        bytes,
        "the other tool's file stays"
    );
    assert!(files::read_owned(&dir).unwrap().unwrap().is_empty());
}
