//! Fuzzing the AppArmor policy checks against the real parser (bounded: `PALISADE_FUZZ_CASES`
//! random policies, 256 by default; CI runs this as its fuzz gate). Policies are put together
//! from fragments that real profiles use and fragments that tried to slip past a text
//! scanner (escaped quotes in names, `#` inside quotes, statements after a comma, includes
//! that do not start their line, mode flags in a parent or a child, attachments, another
//! namespace). Whatever Palisade accepts must compile — by the parser itself, outside
//! Palisade — to exactly the object's profile and its children, in the root namespace,
//! the top one unattached, every one in `spec.mode`. And the decoder of compiled policy
//! never panics on any bytes.

use palisade_domain::compiled::decode;
use palisade_domain::{AppArmorMode, AppArmorProfile};
use palisade_operator::validate::{ParserConfig, validate_apparmor};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const HEADERS: &[&str] = &[
    "profile p",
    "profile \"p\"",
    "profile p /**",
    "profile \"p\\\" /**\"",
    "p",
    "profile p flags=(complain)",
    "profile p flags=(attach_disconnected)",
    "profile p flags=(unconfined)",
    "profile :other:p",
    "profile p /usr/bin/runc",
    "profile p#x /**",
    "profile p xattrs=(user.x=y)",
];

const RULES: &[&str] = &[
    "/tmp/** r,",
    "\"/a#b\" r,",
    "# comment \"with a quote",
    "/x r, profile q { }",
    "/y r, include <abstractions/base>",
    "include <abstractions/base>",
    "capability chown,",
    "/usr/bin/x cx,",
    "profile /usr/bin/x { }",
    "profile c flags=(complain) { }",
    "profile c { /c r, }",
    "^hat { /h r, }",
    "change_profile -> unconfined,",
    "network inet stream,",
    "deny /etc/shadow r,",
];

const PREFIXES: &[&str] = &[
    "",
    "abi <abi/3.0>,\n",
    "include <tunables/global>\n",
    "#include <tunables/global>\n",
];
const SUFFIXES: &[&str] = &["", "profile q {\n}\n", "profile docker-default {\n}\n", "# trailing\n"];

fn policy() -> impl Strategy<Value = (String, AppArmorMode)> {
    (
        proptest::sample::select(PREFIXES),
        proptest::sample::select(HEADERS),
        proptest::collection::vec(proptest::sample::select(RULES), 0..5),
        proptest::sample::select(SUFFIXES),
        any::<bool>(),
    )
        .prop_map(|(prefix, header, rules, suffix, complain)| {
            let body: String = rules.iter().map(|r| format!("  {r}\n")).collect();
            let mode = if complain {
                AppArmorMode::Complain
            } else {
                AppArmorMode::Enforce
            };
            (format!("{prefix}{header} {{\n{body}}}\n{suffix}"), mode)
        })
}

fn cases() -> u32 {
    std::env::var("PALISADE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// What the parser itself compiles, outside Palisade (no sandbox, no budget).
fn compile(text: &str, mode: AppArmorMode) -> Vec<u8> {
    let mut cmd = std::process::Command::new("apparmor_parser");
    cmd.args(["-Q", "-S", "-I", "/etc/apparmor.d"]);
    if mode == AppArmorMode::Complain {
        cmd.arg("--Complain");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "accepted but the parser refuses it:\n{text}");
    out.stdout
}

#[test]
fn whatever_palisade_accepts_compiles_to_only_its_own_confinement() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let parser = ParserConfig::with_defaults("apparmor_parser", "/etc/apparmor.d");
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(&policy(), |(text, mode)| {
            let profile: AppArmorProfile = serde_json::from_value(serde_json::json!({
                "apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
                "metadata": {"name": "p", "generation": 1},
                "spec": {"policy": text, "mode": mode}}))
            .unwrap();
            if rt.block_on(validate_apparmor(&profile, &parser)).is_err() {
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let want = mode.kernel_word();
            let profiles = decode(&compile(&text, mode)).unwrap();
            prop_assert!(profiles.iter().any(|p| p.name == "p"), "{text}");
            for p in &profiles {
                prop_assert!(p.name == "p" || p.name.starts_with("p//"), "{text}: {p:?}");
                prop_assert!(p.namespace.is_none() && p.rename.is_none(), "{text}: {p:?}");
                prop_assert!(p.name != "p" || !p.attached, "{text}: {p:?}");
                prop_assert_eq!(p.mode, want, "{}", text);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "{} random policies, {} accepted and checked against the parser",
        cases(),
        accepted.get()
    );
    assert!(
        accepted.get() > 0,
        "no random policy was accepted: the property was never checked"
    );
}

#[test]
fn the_compiled_policy_decoder_never_panics() {
    let mut runner = TestRunner::new(Config {
        cases: cases() * 20,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            let _ = decode(&bytes);
            Ok(())
        })
        .unwrap();
}
