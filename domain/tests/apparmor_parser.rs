//! The profile text Palisade renders compiles with the real `apparmor_parser` (compile only:
//! `--skip-kernel-load`, so no AppArmor LSM is needed) and defines exactly the named profile.

use std::io::Write;
use std::process::{Command, Stdio};

use palisade_domain::apparmor::{AppArmorAbstract, AppArmorMode};
use palisade_domain::render::apparmor::render_abstract;
use serde_json::json;

fn parser() -> String {
    std::env::var("PALISADE_APPARMOR_PARSER").unwrap_or_else(|_| "apparmor_parser".into())
}

/// Runs the parser on `text` with extra flags; returns (success, stdout, stderr).
fn run_parser(text: &str, flags: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(parser())
        .args([
            "--skip-kernel-load",
            "--skip-cache",
            "--quiet",
            "--base",
            "/etc/apparmor.d",
            "-I",
            "/etc/apparmor.d",
        ])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apparmor_parser must be installed (Debian package 'apparmor'); .ci/run installs it");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn example() -> AppArmorAbstract {
    serde_json::from_value(json!({
        "executable": {"allowedExecutables": ["/usr/bin/nginx"], "allowedLibraries": ["/lib/**"]},
        "filesystem": {
            "readOnlyPaths": ["/etc/nginx/**", "/tmp/x, /etc/shadow rw"],
            "writeOnlyPaths": ["/var/log/nginx/*.log"],
            "readWritePaths": ["/srv/my data/{a,b}/**"],
            "denyPaths": ["/etc/shadow"],
        },
        "network": {"allowRaw": true, "allowedProtocols": {"allowTcp": true, "allowUdp": true}},
        "capability": {"allowedCapabilities": ["net_bind_service", "checkpoint_restore"]},
    }))
    .unwrap()
}

#[test]
fn rendered_profiles_compile_in_both_modes_and_define_only_their_name() {
    for mode in [AppArmorMode::Enforce, AppArmorMode::Complain] {
        let text = render_abstract("web-1.example", &example(), mode).unwrap();
        let (ok, _, stderr) = run_parser(&text, &[]);
        assert!(ok, "{mode:?}: parser rejected the rendered profile:\n{stderr}\n{text}");
        let (ok, names, stderr) = run_parser(&text, &["--names"]);
        assert!(ok, "{stderr}");
        assert_eq!(names.lines().collect::<Vec<_>>(), ["web-1.example"]);
    }
}

#[test]
fn the_parser_rejects_what_it_should_so_the_test_above_can_fail() {
    let (ok, _, stderr) = run_parser("profile p {\n  /foo rwx,\n}\n", &[]);
    assert!(!ok);
    assert!(stderr.contains("line 2"), "parser errors carry the line: {stderr}");
}
