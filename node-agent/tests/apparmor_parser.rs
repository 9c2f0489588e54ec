//! The agent's AppArmor edge against the real `apparmor_parser`, loading into a SIMULATED
//! apparmorfs (this machine's kernel has no AppArmor LSM: the parser writes its binary
//! policy into a plain directory, and the agent keeps that directory's `profiles` list).

use std::path::Path;

use palisade_agent::apparmor::{AppArmor, AppArmorConfig, Record};
use palisade_domain::AppArmorMode;

const FEATURES: &str = "/usr/share/apparmor-features/features";

/// The agent's AppArmor configuration for a node whose files are under `root`: the real
/// parser, the simulated apparmorfs at `root/apparmorfs`.
fn config(root: &Path) -> AppArmorConfig {
    AppArmorConfig {
        parser: "apparmor_parser".into(),
        apparmorfs: root.join("apparmorfs"),
        include_dir: "/etc/apparmor.d".into(),
        abi_dir: None,
        state_dir: root.join("state"),
        simulated_kernel_features: Some(FEATURES.into()),
        budget: palisade_agent::apparmor::default_budget(std::time::Duration::from_secs(60)),
        reserved: vec![],
    }
}

/// Creates the simulated apparmorfs's files under `root`.
fn simulated_apparmorfs(root: &Path) {
    let fs = root.join("apparmorfs");
    std::fs::create_dir_all(&fs).unwrap();
    for f in ["profiles", ".replace", ".remove", ".load"] {
        std::fs::write(fs.join(f), b"").unwrap();
    }
}

fn setup(root: &Path) -> AppArmor {
    simulated_apparmorfs(root);
    AppArmor::new(config(root)).unwrap()
}

/// What loading `policy` as the enforcing profile `name` fails with.
async fn load_error(aa: &AppArmor, name: &str, policy: &str) -> String {
    aa.load(&record(name, AppArmorMode::Enforce), policy)
        .await
        .unwrap_err()
        .to_string()
}

fn record(name: &str, mode: AppArmorMode) -> Record {
    Record {
        managed_by: "palisade".into(),
        name: name.into(),
        uid: "u".into(),
        generation: 1,
        digest: "d".into(),
        mode,
        loading: false,
        not_enforced: vec![],
        parser: String::new(),
    }
}

const POLICY: &str = "include <tunables/global>\nprofile web {\n  include <abstractions/base>\n  /srv/** r,\n  profile helper {\n    /bin/true ix,\n  }\n}\n";

#[tokio::test]
async fn loads_verifies_and_removes_with_the_real_parser() {
    let root = tempfile::tempdir().unwrap();
    let aa = setup(root.path());
    assert!(
        aa.detect().await.unwrap().starts_with(|c: char| c.is_ascii_digit()),
        "parser version"
    );

    aa.load(&record("web", AppArmorMode::Enforce), POLICY).await.unwrap();
    let loaded = aa.loaded().unwrap();
    assert_eq!(loaded.get("web").map(String::as_str), Some("enforce"));
    assert_eq!(
        loaded.get("web//helper").map(String::as_str),
        Some("enforce"),
        "children are listed too"
    );
    // The judged binary policy is kept: what went to the kernel is exactly what was judged.
    let compiled = std::fs::read(root.path().join("state/apparmor/compiled/web")).unwrap();
    let names: Vec<String> = palisade_domain::compiled::decode(&compiled)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["web", "web//helper"]);
    assert_eq!(aa.records().unwrap()["web"].mode, AppArmorMode::Enforce);
    assert!(aa.records().unwrap()["web"].not_enforced.is_empty());

    // A rule class this kernel does not mediate (the features file has no dbus): the parser
    // says so, the rest loads, and the record names what was left out.
    let with_dbus = POLICY.replace("/srv/** r,", "/srv/** r,\n  dbus send,");
    let (_, kept) = aa
        .load(&record("web", AppArmorMode::Enforce), &with_dbus)
        .await
        .unwrap();
    assert_eq!(kept.not_enforced, ["dbus"]);
    assert_eq!(
        aa.records().unwrap()["web"].not_enforced,
        ["dbus"],
        "kept across restarts"
    );
    assert_eq!(aa.loaded().unwrap().get("web").map(String::as_str), Some("enforce"));
    let (_, kept) = aa.load(&record("web", AppArmorMode::Enforce), POLICY).await.unwrap();
    assert!(kept.not_enforced.is_empty());

    // Complain mode uses the parser's force-complain flag and is verified as such.
    aa.load(&record("web", AppArmorMode::Complain), POLICY).await.unwrap();
    assert_eq!(aa.loaded().unwrap().get("web").map(String::as_str), Some("complain"));

    aa.remove("web").await.unwrap();
    assert!(aa.loaded().unwrap().is_empty());
    assert!(aa.records().unwrap().is_empty());
    // The parser wrote the profile name to .remove, as the kernel interface expects.
    assert_eq!(std::fs::read(root.path().join("apparmorfs/.remove")).unwrap(), b"web\0");
}

#[tokio::test]
async fn parser_errors_keep_the_line_number_and_leave_no_record() {
    let root = tempfile::tempdir().unwrap();
    let aa = setup(root.path());
    let err = load_error(&aa, "bad", "profile bad {\n  /a r,\n  /b rwx,\n}\n").await;
    assert!(err.contains("line 3") && err.contains("Invalid mode"), "{err}");
    assert!(
        aa.records().unwrap().is_empty(),
        "no ownership record for what was not loaded"
    );
    assert!(aa.loaded().unwrap().is_empty());
    let err = load_error(
        &aa,
        "inc",
        "profile inc {\n  include <abstractions/does-not-exist>\n}\n",
    )
    .await;
    assert!(
        err.contains("does-not-exist"),
        "includes resolve in the include dir: {err}"
    );
}

#[tokio::test]
async fn refuses_to_remove_what_palisade_does_not_own() {
    let root = tempfile::tempdir().unwrap();
    let aa = setup(root.path());
    std::fs::write(root.path().join("apparmorfs/profiles"), b"docker-default (enforce)\n").unwrap();
    let err = aa.remove("docker-default").await.unwrap_err().to_string();
    assert!(err.contains("not managed by Palisade"), "{err}");
    assert!(aa.loaded().unwrap().contains_key("docker-default"));
}

#[tokio::test]
async fn detects_a_node_without_apparmor() {
    let root = tempfile::tempdir().unwrap();
    let aa = AppArmor::new(AppArmorConfig {
        apparmorfs: root.path().join("missing"),
        simulated_kernel_features: None,
        ..config(root.path())
    })
    .unwrap();
    assert!(aa.detect().await.unwrap_err().contains("not enabled"));
}

/// The simulated kernel takes each profile's mode from the binary policy the parser wrote,
/// as a real kernel does, not from the mode the agent asked for: a policy whose own
/// `flags=(complain)` contradicts an Enforce load is listed in complain mode, so `verify`
/// fails as it would on a real node.
#[tokio::test]
async fn simulated_kernel_lists_the_mode_the_binary_policy_carries() {
    let dir = tempfile::tempdir().unwrap();
    let aa = setup(dir.path());
    let contradicting = "profile sneaky flags=(complain) {\n  /srv/** r,\n}\n";
    let err = aa
        .load(&record("sneaky", AppArmorMode::Enforce), contradicting)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: the profile \"sneaky\" would load in complain mode, not enforce (spec.mode)",
        "judged from the compiled policy, before the kernel sees it"
    );
    assert!(aa.records().unwrap().is_empty(), "a refused profile is not claimed");

    // --Complain marks the whole stream; children get the mode too.
    aa.load(&record("web", AppArmorMode::Complain), POLICY).await.unwrap();
    let loaded = aa.loaded().unwrap();
    assert_eq!(loaded.get("web").map(String::as_str), Some("complain"));
    assert_eq!(loaded.get("web//helper").map(String::as_str), Some("complain"));
    aa.load(&record("web", AppArmorMode::Enforce), POLICY).await.unwrap();
    assert_eq!(aa.loaded().unwrap().get("web").map(String::as_str), Some("enforce"));
}

/// The binary format reader, on what the real parser writes for one profile with a child
/// in its own mode and a hat.
#[test]
fn binary_policy_profiles_reads_names_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("p");
    std::fs::write(
        &src,
        "profile p {\n  /tmp/** r,\n  profile kid flags=(complain) {\n    /x r,\n  }\n  ^hat {\n  }\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new("apparmor_parser")
        .args(["-S", "-Q", "--kernel-features", FEATURES])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut profiles: Vec<(String, &str)> = palisade_domain::compiled::decode(&out.stdout)
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.mode))
        .collect();
    profiles.sort();
    assert_eq!(
        profiles,
        vec![
            ("p".to_string(), "enforce"),
            ("p//hat".to_string(), "enforce"),
            ("p//kid".to_string(), "complain")
        ]
    );
}

/// A parser that hangs is killed at the timeout; the load fails saying so, and the record
/// it left says `loading`, so the profile stays Palisade's and is loaded again next time.
#[tokio::test]
async fn a_hung_parser_is_killed_and_the_unfinished_load_is_remembered() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let hang = root.path().join("hang");
    // Compiles as the real parser does, then hangs while loading.
    std::fs::write(
        &hang,
        "#!/bin/sh\ncase \" $* \" in *\" --replace \"*) exec sleep 600;; esac\nexec apparmor_parser \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fs = root.path().join("apparmorfs");
    std::fs::create_dir_all(&fs).unwrap();
    std::fs::write(fs.join("profiles"), b"").unwrap();
    let aa = AppArmor::new(AppArmorConfig {
        parser: hang,
        budget: palisade_agent::apparmor::default_budget(std::time::Duration::from_millis(300)),
        ..config(root.path())
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = aa
        .load(&record("web", AppArmorMode::Enforce), "profile web {\n}\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not finish within"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the timeout ended the run"
    );
    let records = aa.records().unwrap();
    assert!(
        records["web"].loading,
        "an unfinished load stays claimed and marked: {records:?}"
    );
}

/// Names that belong to someone else are never loaded, whether or not such a profile is
/// loaded yet (a runtime loads its default lazily and skips it when the name is taken):
/// the built-in list, the configured list, and the host's own profiles.
#[tokio::test]
async fn reserved_and_host_names_are_never_loaded() {
    let root = tempfile::tempdir().unwrap();
    let include = root.path().join("apparmor.d");
    std::fs::create_dir_all(include.join("tunables")).unwrap();
    std::fs::write(include.join("host-tool"), "profile host-tool {\n}\n").unwrap();
    simulated_apparmorfs(root.path());
    let aa = AppArmor::new(AppArmorConfig {
        include_dir: include,
        reserved: vec!["team-*".into()],
        ..config(root.path())
    })
    .unwrap();
    for name in [
        "cri-containerd.apparmor.d",
        "docker-default",
        "crio-default-1.2",
        "team-a",
        "host-tool",
    ] {
        let err = aa
            .load(
                &record(name, AppArmorMode::Enforce),
                &format!("profile {name} {{\n}}\n"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, palisade_agent::sync::InstallError::Reserved(_)),
            "{name}: {err}"
        );
        assert!(err.is_final());
    }
    assert!(aa.loaded().unwrap().is_empty(), "nothing reached the kernel");
    assert!(aa.records().unwrap().is_empty(), "nothing was claimed");
    aa.load(&record("web", AppArmorMode::Enforce), "profile web {\n}\n")
        .await
        .unwrap();
}

/// Agents before the split layout kept `<name>` and `<name>.palisade.json` side by side:
/// their records and sources move, so what they loaded stays Palisade's.
#[tokio::test]
async fn the_flat_layout_of_earlier_agents_is_migrated() {
    let root = tempfile::tempdir().unwrap();
    let flat = root.path().join("state/apparmor");
    std::fs::create_dir_all(&flat).unwrap();
    let old = serde_json::to_vec(&record("web", AppArmorMode::Enforce)).unwrap();
    std::fs::write(flat.join("web.palisade.json"), old).unwrap();
    std::fs::write(flat.join("web"), "profile web {\n}\n").unwrap();
    let aa = setup(root.path());
    assert_eq!(aa.records().unwrap()["web"].name, "web");
    assert!(flat.join("sources/web").is_file());
    assert!(!flat.join("web").exists() && !flat.join("web.palisade.json").exists());
}

/// Removal goes by name through the kernel's `.remove`, never by re-parsing a source: a
/// refused update left its text in `sources/`, and re-parsing it (with the host's includes)
/// would name other profiles, which the kernel would then unload.
#[tokio::test]
async fn removal_unloads_only_the_profile_and_never_reparses_its_source() {
    let root = tempfile::tempdir().unwrap();
    let aa = setup(root.path());
    aa.load(&record("p", AppArmorMode::Enforce), "profile p {\n}\n")
        .await
        .unwrap();
    std::fs::write(
        root.path().join("apparmorfs/profiles"),
        b"p (enforce)\nvictim (enforce)\n",
    )
    .unwrap();
    let refused = aa
        .load(
            &record("p", AppArmorMode::Enforce),
            "profile p {\n}\nprofile victim {\n}\n",
        )
        .await
        .unwrap_err();
    assert!(refused.is_final(), "{refused}");
    aa.remove("p").await.unwrap();
    assert_eq!(
        std::fs::read(root.path().join("apparmorfs/.remove")).unwrap(),
        b"p\0",
        "only p was named to the kernel"
    );
    assert!(aa.loaded().unwrap().contains_key("victim"));
}

/// An earlier agent's profile named like one of the new directories does not stop the
/// migration (the agent would crash-loop on every node that held it).
#[tokio::test]
async fn a_profile_named_like_a_new_directory_migrates() {
    let root = tempfile::tempdir().unwrap();
    let flat = root.path().join("state/apparmor");
    std::fs::create_dir_all(&flat).unwrap();
    for name in ["records", "sources", "compiled"] {
        let old = serde_json::to_vec(&record(name, AppArmorMode::Enforce)).unwrap();
        std::fs::write(flat.join(format!("{name}.palisade.json")), old).unwrap();
        std::fs::write(flat.join(name), format!("profile {name} {{\n}}\n")).unwrap();
    }
    let aa = setup(root.path());
    let records = aa.records().unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(flat.join("sources/records").is_file());
}
