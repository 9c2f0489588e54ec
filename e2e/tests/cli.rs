//! The `palisade` binary as users run it: installed as `kubectl-palisade` on PATH, kubectl
//! runs it as its `palisade` plugin.

use std::process::Command;

use kube::Api;
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

/// `palisade status` and `explain` against a real API server with simulated nodes (one
/// without AppArmor), as `kubectl palisade` runs them.
#[tokio::test]
async fn status_and_explain_read_the_cluster() {
    use palisade_crds::SeccompProfile;
    use palisade_e2e::cluster::{apply_json, wait_installed};
    use palisade_e2e::{Cluster, Options};

    let cluster = Cluster::start(Options {
        without_apparmor: vec![2],
        ..Options::default()
    })
    .await
    .unwrap();
    let client = cluster.cp.client().await.unwrap();
    apply_json(
        &client,
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": "cli-base"},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                 "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}}),
    )
    .await
    .unwrap();
    apply_json(
        &client,
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": "cli-child"},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "cli-base",
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}}),
    )
    .await
    .unwrap();
    apply_json(
        &client,
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
        "metadata": {"name": "cli-aa"},
        "spec": {"abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}}}),
    )
    .await
    .unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    wait_installed(&sp, "cli-child", 3).await.unwrap();
    let aa: Api<palisade_crds::AppArmorProfile> = Api::all(client.clone());
    // Installed on two nodes, Unsupported on the third: Ready.
    palisade_e2e::wait_for(
        "cli-aa installed on 2, unsupported on 1",
        std::time::Duration::from_secs(60),
        || async {
            let n = aa.get("cli-aa").await?.status.and_then(|s| s.nodes).unwrap_or_default();
            Ok((n.installed == 2 && n.unsupported == 1).then_some(()))
        },
    )
    .await
    .unwrap();
    palisade_e2e::cluster::wait_condition(&aa, "cli-aa", "Ready", "True")
        .await
        .unwrap();

    let bin = repo_root().join("target/debug/palisade");
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(&cluster.cp.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // All profiles: one line each, and the node that cannot run AppArmor under its profile.
    let table = run(&["status"]);
    println!("$ palisade status\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("KIND"), "{table}");
    assert!(!table.contains("\x1b["), "no colour when not on a terminal");
    let aa_line = lines
        .iter()
        .position(|l| l.starts_with("apparmor") && l.contains("cli-aa"))
        .unwrap();
    assert!(
        lines[aa_line].contains("True") && lines[aa_line].contains("2/3"),
        "{table}"
    );
    assert!(
        lines[aa_line + 1].trim_start().starts_with("node-2 Unsupported: "),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("seccomp") && l.contains("cli-child") && l.contains("3/3")),
        "{table}"
    );

    // One profile, as JSON: every node.
    let rows: Value = serde_json::from_str(&run(&["status", "cli-child", "-o", "json"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let nodes = rows[0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes.iter().all(|n| n["state"] == "Installed" && n["current"] == true),
        "{rows}"
    );

    // explain: the base's rules named as the base's, the inherited errno, the accepted digest.
    let text = run(&["explain", "cli-child"]);
    println!("$ palisade explain cli-child\n{text}");
    assert!(text.contains("default: SCMP_ACT_ERRNO (errno 38)"), "{text}");
    assert!(text.contains("inherits: cli-base"), "{text}");
    assert!(
        text.contains("SCMP_ACT_ERRNO errno 13: mkdir\n    from spec.syscalls[0]\n"),
        "{text}"
    );
    assert!(
        text.contains("SCMP_ACT_ALLOW: read, write\n    from spec.syscalls[0] of base SeccompProfile \"cli-base\""),
        "{text}"
    );
    assert!(text.contains("(the content the operator accepted)"), "{text}");
    let explained: Value = serde_json::from_str(&run(&["explain", "cli-aa", "-o", "json"])).unwrap();
    assert_eq!(explained["kind"], "AppArmorProfile");
    assert!(
        explained["policy"].as_str().unwrap().contains("\"/etc/**\" r,"),
        "{explained}"
    );

    // A name that is neither kind: an error naming it.
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&cluster.cp.kubeconfig)
        .args(["explain", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SeccompProfile or AppArmorProfile named \"nope\""));
}
