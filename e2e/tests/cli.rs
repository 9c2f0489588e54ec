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

    // Shell completion: a bash script that completes the verbs.
    let out = Command::new(&kubectl)
        .env("PATH", &path)
        .args(["palisade", "completion", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("complete -F") && script.contains("audit") && script.contains("explain"),
        "{script}"
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

/// `palisade status`, `explain` and `audit` against a real API server with simulated
/// nodes (one without AppArmor), as `kubectl palisade` runs them.
#[tokio::test]
async fn status_explain_and_audit_read_the_cluster() {
    use palisade_domain::SeccompProfile;
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
    let aa: Api<palisade_domain::AppArmorProfile> = Api::all(client.clone());
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

    // audit: pods as an admin's cluster has them (no kubelet runs them here; the objects
    // are what audit reads).
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in ["good", "bad"] {
        namespaces
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let pod =
        |ns: &str, name: &str, node: &str, pod_sc: Value, container_sc: Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node, "securityContext": pod_sc,
                     "containers": [{"name": "app", "image": "busybox", "securityContext": container_sc}]}}))
            .unwrap()
        };
    let create = |p: k8s_openapi::api::core::v1::Pod| {
        let client = client.clone();
        async move {
            let ns = p.metadata.namespace.clone().unwrap();
            Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, &ns)
                .create(&Default::default(), &p)
                .await
                .unwrap();
        }
    };
    let confined = serde_json::json!({
        "seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/cli-child.json"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "cli-aa"}});
    create(pod("good", "web", "node-0", confined.clone(), serde_json::json!({}))).await;
    create(pod(
        "bad",
        "unconfined",
        "node-0",
        serde_json::json!({}),
        serde_json::json!({
        "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}}),
    ))
    .await;
    create(pod(
        "bad",
        "typo",
        "node-1",
        serde_json::json!({
        "seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/cli-chlid.json"}}),
        serde_json::json!({}),
    ))
    .await;
    create(pod(
        "bad",
        "bare",
        "node-1",
        serde_json::json!({}),
        serde_json::json!({}),
    ))
    .await;
    // Shaped like the chart's agent pod: AppArmor-unconfined on purpose.
    let mut agent = pod(
        "bad",
        "agent-like",
        "node-1",
        serde_json::json!({}),
        serde_json::json!({"seccompProfile": {"type": "RuntimeDefault"}, "appArmorProfile": {"type": "Unconfined"}}),
    );
    agent.metadata.labels = Some(
        [
            ("app.kubernetes.io/name", "palisade"),
            ("app.kubernetes.io/component", "agent"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    );
    create(agent).await;
    // cli-aa cannot be installed on node-2 (no AppArmor).
    create(pod(
        "bad",
        "no-apparmor-node",
        "node-2",
        confined,
        serde_json::json!({}),
    ))
    .await;

    let audit = |args: &[&str]| {
        let out = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(&cluster.cp.kubeconfig)
            .arg("audit")
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, table) = audit(&[]);
    println!("$ palisade audit\n{table}");
    assert_eq!(code, Some(1), "findings fail the run: {table}");
    let (_, json) = audit(&["-o", "json"]);
    let findings: Vec<Value> = serde_json::from_str(&json).unwrap();
    let has = |severity: &str, object: &str, text: &str| {
        findings.iter().any(|f| {
            f["severity"] == severity && f["object"] == object && f["finding"].as_str().unwrap().contains(text)
        })
    };
    for (severity, object, text) in [
        ("high", "pod bad/unconfined (container app)", "runs seccomp Unconfined"),
        ("high", "pod bad/unconfined (container app)", "runs AppArmor Unconfined"),
        (
            "high",
            "pod bad/typo (container app)",
            "names seccomp profile palisade/cli-chlid.json, which no SeccompProfile provides",
        ),
        ("medium", "pod bad/bare (container app)", "has no seccomp profile"),
        ("low", "pod bad/bare (container app)", "has no AppArmor profile"),
        (
            "medium",
            "pod bad/no-apparmor-node (container app)",
            "uses AppArmorProfile cli-aa, which is not installed on its node node-2 (Unsupported)",
        ),
        ("medium", "node node-2", "has no AppArmor"),
        (
            "low",
            "pod bad/agent-like (container app)",
            "runs AppArmor Unconfined, as Palisade's agent must",
        ),
    ] {
        assert!(
            has(severity, object, text),
            "missing {severity} {object}: {text}\n{json}"
        );
    }
    assert!(
        !findings
            .iter()
            .any(|f| f["object"].as_str().unwrap().starts_with("pod good/")),
        "a confined pod whose profiles are installed on its node is fine: {json}"
    );
    assert!(
        !findings.iter().any(|f| f["object"] == "SeccompProfile cli-base"),
        "a base is used by its child"
    );
    // The good namespace alone: only the low finding that other profiles go unused there.
    let (code, table) = audit(&["-n", "good", "--fail-on", "medium"]);
    assert_eq!(code, Some(0), "{table}");
    let (code, _) = audit(&["-n", "good"]);
    assert_eq!(code, Some(0), "nothing at all to say about the good namespace");

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
