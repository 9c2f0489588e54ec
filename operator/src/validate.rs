//! Deep validation of one profile generation: what `Accepted` means.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use palisade_crds::render::{apparmor as aa_render, seccomp as sc_render};
use palisade_crds::{AppArmorProfile, SeccompProfile, SeccompProfileSpec};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How the operator runs the parser: compile only, never load.
#[derive(Clone, Debug)]
pub struct ParserConfig {
    pub parser: PathBuf,
    pub include_dir: PathBuf,
}

/// Validates a SeccompProfile: its `baseProfileName` chain resolves (no missing base, no
/// cycle, not too deep) and the resolved profile compiles with libseccomp for every listed
/// architecture. `lookup` finds the other SeccompProfiles by name.
pub fn validate_seccomp(profile: &SeccompProfile, all: &HashMap<String, SeccompProfileSpec>) -> Result<String, String> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    let oci = sc_render::resolve(name, &profile.spec, |n| all.get(n)).map_err(|e| e.to_string())?;
    sc_render::compile(&oci).map_err(|e| e.to_string())?;
    Ok(oci.digest())
}

/// Validates an AppArmorProfile: Palisade's own checks, then a compile with the real
/// `apparmor_parser` (skip-kernel-load), then `--names` must list only the profile itself
/// and its children. Returns the digest of the text it accepted.
pub async fn validate_apparmor(profile: &AppArmorProfile, parser: &ParserConfig) -> Result<String, String> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    let text = aa_render::profile_text(name, &profile.spec).map_err(|e| e.to_string())?;
    let names = run_parser(&text, parser).await?;
    let foreign: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != name && !n.starts_with(&format!("{name}//")))
        .collect();
    if !foreign.is_empty() {
        return Err(format!(
            "spec.policy: defines profiles other than {name:?} and its children: {}",
            foreign.join(", ")
        ));
    }
    if !names.iter().any(|n| n == name) {
        return Err(format!("spec.policy: does not define the profile {name:?}"));
    }
    Ok(palisade_crds::digest(
        format!("{:?}\n{text}", profile.spec.mode).as_bytes(),
    ))
}

async fn run_parser(text: &str, parser: &ParserConfig) -> Result<Vec<String>, String> {
    let mut child = Command::new(&parser.parser)
        .args(["--skip-kernel-load", "--skip-cache", "--quiet", "--names", "-I"])
        .arg(&parser.include_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run apparmor_parser ({}): {e}", parser.parser.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("apparmor_parser: {e}"))?;
    let _ = writer.await;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Cache read/write disabled"))
            .collect();
        let message = message.join("; ").replace("AppArmor parser error at line", "line");
        return Err(format!("spec.policy: apparmor_parser: {message}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parser() -> ParserConfig {
        ParserConfig {
            parser: "apparmor_parser".into(),
            include_dir: "/etc/apparmor.d".into(),
        }
    }

    fn aap(name: &str, spec: serde_json::Value) -> AppArmorProfile {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    }

    #[tokio::test]
    async fn parser_errors_keep_their_line_number() {
        let err = validate_apparmor(
            &aap("p", json!({"policy": "profile p {\n  /tmp/** r,\n  /foo rwx,\n}\n"})),
            &parser(),
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("spec.policy: apparmor_parser: line 3: Invalid mode"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn accepts_children_and_hats() {
        let policy = "profile p {\n  profile c {\n  }\n  ^h {\n  }\n}\n";
        validate_apparmor(&aap("p", json!({"policy": policy})), &parser())
            .await
            .unwrap();
        validate_apparmor(
            &aap("p", json!({"abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}})),
            &parser(),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn palisade_checks_run_before_the_parser() {
        let err = validate_apparmor(&aap("p", json!({"policy": "profile p {}\nprofile q {}\n"})), &parser())
            .await
            .unwrap_err();
        assert!(err.contains("a second top-level profile (\"q\")"), "{err}");
    }

    #[test]
    fn seccomp_errors_name_the_problem() {
        let sp = |name: &str, spec: serde_json::Value| -> SeccompProfile {
            serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": spec}))
            .unwrap()
        };
        let child = sp(
            "child",
            json!({"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "base"}),
        );
        let err = validate_seccomp(&child, &HashMap::new()).unwrap_err();
        assert!(err.contains("\"base\" (base of \"child\") does not exist"), "{err}");
        let all = HashMap::from([(
            "base".to_string(),
            sp(
                "base",
                json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["nosuchcall"], "action": "SCMP_ACT_LOG"}]}),
            )
            .spec,
        )]);
        let err = validate_seccomp(&child, &all).unwrap_err();
        assert!(err.contains("unknown syscall \"nosuchcall\""), "{err}");
    }
}
