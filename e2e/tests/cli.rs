//! The `palisade` binary as users run it: installed as `kubectl-palisade` on PATH, kubectl
//! runs it as its `palisade` plugin.

use std::process::Command;

use palisade_e2e::controlplane::{binary_dir, repo_root};
use serde_json::Value;

#[test]
fn kubectl_runs_palisade_as_a_plugin() {
    let kubectl = binary_dir().unwrap().join("kubectl");
    let bins = repo_root().join("target/debug");
    assert!(
        bins.join("kubectl-palisade").is_file(),
        "build the binaries first (make bins)"
    );
    let path = format!("{}:{}", bins.display(), std::env::var("PATH").unwrap_or_default());
    let corpus = palisade_e2e::corpus::corpus_dir().unwrap();

    let out = Command::new(&kubectl)
        .env("PATH", &path)
        .args(["palisade", "version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("palisade {}", env!("CARGO_PKG_VERSION"))
    );

    let out = Command::new(&kubectl)
        .env("PATH", &path)
        .args(["palisade", "convert", "--name", "docker-default", "-o", "json"])
        .arg(corpus.join("docker/default.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "SeccompProfile");
    assert_eq!(list["items"][0]["metadata"]["name"], "docker-default");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("archMap: "),
        "what was evaluated goes to stderr: {stderr}"
    );

    // Bad input: the file and the field are named, nothing is printed on stdout.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "ENOPE"}]}"#,
    )
    .unwrap();
    let out = Command::new(&kubectl)
        .env("PATH", &path)
        .args(["palisade", "convert"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("syscalls[0].errno: unknown errno name \"ENOPE\""),
        "{stderr}"
    );
}
