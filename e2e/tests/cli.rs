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
    use palisade_e2e::cluster::{apply_json, wait_installed};
    use palisade_e2e::{Cluster, Options};

    let (cluster, client, sp, aa) = Cluster::started(Options {
        without_apparmor: vec![2],
        ..Options::default()
    })
    .await
    .unwrap();
    for profile in [
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": "cli-base"},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                 "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}}),
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
        "metadata": {"name": "cli-child"},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "cli-base",
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}}),
        serde_json::json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
        "metadata": {"name": "cli-aa"},
        "spec": {"abstract": {"filesystem": {"readOnlyPaths": ["/etc/**"]}}}}),
    ] {
        apply_json(&client, profile).await.unwrap();
    }
    wait_installed(&sp, "cli-child", 3).await.unwrap();
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
        lines[aa_line + 1]
            .trim_start()
            .starts_with("node-2 Unsupported [kernel ")
            && lines[aa_line + 1].contains("]: AppArmor is not enabled on this node"),
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

/// `palisade learn -o manifest` and `--output-dir` over a real API server, for an AppArmor
/// and a seccomp learning profile, each with and without `--enforce`: the manifests change
/// nothing, apply cleanly with kubectl, and hold the spec `--apply` (`--apply --enforce`)
/// then writes into the profile, so applying them after it changes no spec. And `palisade
/// convert`'s ProfileBinding from SPO's example applies cleanly too.
///
/// Nodes learn as in learn.rs: agents on this machine read a simulated auditd log. node-0
/// runs a pod under the profiles shown plain, node-1 one under those shown enforcing; a
/// seccomp record of a process that has exited (no entry in the simulated /proc) counts for
/// the one learning seccomp profile a node's pods use.
#[tokio::test]
async fn learn_manifests_apply_cleanly_and_hold_what_apply_writes() {
    use palisade_domain::NodeProfileStatus;
    use palisade_e2e::audit::{self, SimulatedAudit, record};
    use palisade_e2e::cluster::wait_installed;
    use palisade_e2e::{Cluster, Options, wait_for};
    use serde_json::json;
    use std::io::Write as _;
    use std::time::Duration;

    let SimulatedAudit { dir, log, proc_root } = SimulatedAudit::new().unwrap();
    std::fs::create_dir_all(&proc_root).unwrap();
    let (cluster, client, sc, aa) = Cluster::started(Options {
        nodes: 2,
        agent_args: audit::agent_args("--learn", &log, &proc_root),
        ..Options::default()
    })
    .await
    .unwrap();

    // The profiles as an admin keeps them: applied with kubectl (which leaves its
    // last-applied annotation), with a label and an annotation of their own.
    let metadata = |name: &str| json!({"name": name, "labels": {"team": "shop"}, "annotations": {"owner": "ops"}});
    let policy =
        |name: &str| format!("profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  /etc/hostname r,\n}}\n");
    let mut items = vec![];
    for name in ["cli-learn-aa", "cli-learn-aa-enforce"] {
        items.push(
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": metadata(name),
            "spec": {"mode": "Complain", "policy": policy(name)}}),
        );
    }
    for name in ["cli-learn-sc", "cli-learn-sc-enforce"] {
        items.push(
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": metadata(name),
            "spec": {"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                     "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                  {"names": ["ptrace"], "action": "SCMP_ACT_LOG"}]}}),
        );
    }
    // The chart's learning RBAC (`learning.enabled`), and a pod on each node.
    items.extend(palisade_e2e::cluster::learning_rbac("palisade-agent-learning-cli"));
    for (node, suffix) in [("node-0", ""), ("node-1", "-enforce")] {
        items.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("app-{node}"), "namespace": "default"},
            "spec": {"nodeName": node, "securityContext": {
                    "seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/cli-learn-sc{suffix}.json")},
                    "appArmorProfile": {"type": "Localhost", "localhostProfile": format!("cli-learn-aa{suffix}")}},
                "containers": [{"name": "app", "image": "app:1"}]}}));
    }
    cluster.apply_list("objects", &items).unwrap();
    for name in ["cli-learn-aa", "cli-learn-aa-enforce"] {
        wait_installed(&aa, name, 2).await.unwrap();
    }
    for name in ["cli-learn-sc", "cli-learn-sc-enforce"] {
        wait_installed(&sc, name, 2).await.unwrap();
    }
    let reports: Api<NodeProfileStatus> = Api::all(client.clone());
    for node in ["node-0", "node-1"] {
        wait_for("the node's learning pod published", Duration::from_secs(60), || async {
            let pods = reports.get(node).await?.spec.learning_pods;
            Ok((pods.len() == 1).then_some(()))
        })
        .await
        .unwrap();
    }

    // The records, written again until every profile has learned them: an agent reads its
    // node's published pods at most every 2 s, and drops the records of pods it does not
    // know yet (as a real one does).
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut serial = 100;
    let mut write_records = || {
        for profile in ["cli-learn-aa", "cli-learn-aa-enforce"] {
            for fields in [
                r#"operation="open" class="file" name="/etc/app/app.conf" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
                r#"operation="capable" class="cap" capability=10 capname="net_bind_service""#,
            ] {
                serial += 1;
                let fields = format!(r#"apparmor="ALLOWED" profile="{profile}" pid=4242 comm="app" {fields}"#);
                f.write_all(record("AVC", serial, &fields).as_bytes()).unwrap();
            }
        }
        // read (allowed already), mkdir, openat: x86_64 numbers, logged and allowed.
        for syscall in [0, 83, 257] {
            serial += 1;
            let fields = format!(
                "auid=4294967295 uid=0 gid=0 ses=4294967295 pid=999999 comm=\"app\" exe=\"/app\" sig=0 arch=c000003e syscall={syscall} compat=0 ip=0x461189 code=0x7ffc0000"
            );
            f.write_all(record("SECCOMP", serial, &fields).as_bytes()).unwrap();
        }
        f.flush().unwrap();
    };
    let sorted = |mut rules: Vec<String>| {
        rules.sort();
        rules
    };
    let start = std::time::Instant::now();
    loop {
        write_records();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut all = true;
        for name in ["cli-learn-aa", "cli-learn-aa-enforce"] {
            let learning = aa.get(name).await.unwrap().status.and_then(|s| s.learning);
            let rules = learning.map(|l| l.suggestions.into_iter().map(|s| s.rule).collect());
            all &= sorted(rules.unwrap_or_default()) == ["capability net_bind_service,", "owner /etc/app/app.conf r,"];
        }
        for name in ["cli-learn-sc", "cli-learn-sc-enforce"] {
            let learning = sc.get(name).await.unwrap().status.and_then(|s| s.learning);
            let rules = learning.map(|l| l.suggestions.into_iter().map(|s| s.rule).collect());
            all &= sorted(rules.unwrap_or_default()) == ["mkdir", "openat", "read"];
        }
        if all {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the four profiles did not learn their records in 90 s"
        );
    }

    let resource = |kind: &str| match kind {
        "AppArmorProfile" => "apparmorprofiles.palisade.dev",
        _ => "seccompprofiles.palisade.dev",
    };
    let live = |kind: &str, name: &str| -> Value {
        serde_json::from_str(
            &cluster
                .cp
                .kubectl_ok(&["get", resource(kind), name, "-o", "json"])
                .unwrap(),
        )
        .unwrap()
    };
    for (kind, slug, name, enforce) in [
        ("AppArmorProfile", "apparmor", "cli-learn-aa", false),
        ("AppArmorProfile", "apparmor", "cli-learn-aa-enforce", true),
        ("SeccompProfile", "seccomp", "cli-learn-sc", false),
        ("SeccompProfile", "seccomp", "cli-learn-sc-enforce", true),
    ] {
        let with = |args: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = ["learn", name].iter().chain(args).map(|a| a.to_string()).collect();
            if enforce {
                all.push("--enforce".into());
            }
            all
        };
        let run = |args: Vec<String>| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = cluster.palisade(&args);
            assert!(ok, "palisade {args:?}: {err}");
            (out, err)
        };
        let before = live(kind, name);

        // -o manifest: the profile as a repository holds it, on stdout.
        let (text, notes) = run(with(&["-o", "manifest"]));
        println!(
            "$ palisade learn {name} -o manifest{}\n{notes}{text}",
            if enforce { " --enforce" } else { "" }
        );
        assert!(notes.contains("the cluster is unchanged"), "{notes}");
        let manifest: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(manifest["apiVersion"], "palisade.dev/v1alpha1");
        assert_eq!(manifest["kind"], kind);
        assert_eq!(
            manifest["metadata"],
            json!({"name": name, "labels": {"team": "shop"}, "annotations": {"owner": "ops"}}),
            "no server fields, no last-applied annotation"
        );
        assert!(manifest.get("status").is_none(), "{text}");
        match (kind, enforce) {
            ("AppArmorProfile", _) => {
                let policy = manifest["spec"]["policy"].as_str().unwrap();
                assert!(
                    policy.contains("\n  capability net_bind_service,\n")
                        && policy.contains("\n  owner /etc/app/app.conf r,\n"),
                    "{policy}"
                );
                assert_eq!(manifest["spec"]["mode"], if enforce { "Enforce" } else { "Complain" });
            }
            (_, false) => {
                assert_eq!(manifest["spec"]["defaultAction"], "SCMP_ACT_LOG");
                assert_eq!(
                    manifest["spec"]["syscalls"][2],
                    json!({"names": ["mkdir", "openat"], "action": "SCMP_ACT_ALLOW"})
                );
            }
            (_, true) => {
                assert_eq!(manifest["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
                assert_eq!(
                    manifest["spec"]["syscalls"],
                    json!([{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                           {"names": ["mkdir", "openat"], "action": "SCMP_ACT_ALLOW"}]),
                    "enforcing drops the LOG rule"
                );
            }
        }

        // --output-dir: the same manifest in <kind>-<name>.yaml, and its path on stdout.
        let out_dir = dir.path().join(format!("gitops-{name}"));
        let (paths, _) = run(with(&["--output-dir", &out_dir.display().to_string()]));
        let written = out_dir.join(format!("{slug}-{name}.yaml"));
        assert_eq!(paths, format!("{}\n", written.display()));
        assert_eq!(
            yaml_serde::from_str::<Value>(&std::fs::read_to_string(&written).unwrap()).unwrap(),
            manifest
        );

        let after = live(kind, name);
        assert_eq!(
            (&after["metadata"]["generation"], &after["spec"]),
            (&before["metadata"]["generation"], &before["spec"]),
            "neither changed the profile"
        );

        // The printed manifest applies cleanly (the API server validates it, CEL rules and
        // all, without storing it); the server keeps its spec as it is.
        let printed = dir.path().join(format!("printed-{name}.yaml"));
        std::fs::write(&printed, &text).unwrap();
        let dry: Value = serde_json::from_str(
            &cluster
                .cp
                .kubectl_ok(&[
                    "apply",
                    "--dry-run=server",
                    "-o",
                    "json",
                    "-f",
                    &printed.display().to_string(),
                ])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            dry["spec"], manifest["spec"],
            "the server took the manifest's spec as it is"
        );

        // --apply (--apply --enforce) writes that same spec.
        let (report, _) = run(with(&["--apply"]));
        assert!(report.contains("Applied"), "{report}");
        let applied = live(kind, name);
        assert_eq!(
            applied["spec"], manifest["spec"],
            "--apply wrote what the manifest holds"
        );
        let generation = applied["metadata"]["generation"].as_i64().unwrap();
        assert!(generation > before["metadata"]["generation"].as_i64().unwrap());

        // So kubectl applying the written file afterwards changes no spec.
        cluster
            .cp
            .kubectl_ok(&["apply", "-f", &written.display().to_string()])
            .unwrap();
        let reapplied = live(kind, name);
        assert_eq!(reapplied["spec"], manifest["spec"]);
        assert_eq!(reapplied["metadata"]["generation"].as_i64(), Some(generation));
    }

    // SPO's example ProfileBinding, converted, applies cleanly (the ProfileBinding CRD's
    // schema and rules) into a namespace.
    let corpus = palisade_e2e::corpus::corpus_dir().unwrap();
    let (ok, converted, err) = cluster.palisade(&[
        "convert",
        &corpus.join("spo-examples/profilebinding.yaml").display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("binds pods created after the binding"), "{err}");
    let file = dir.path().join("binding.yaml");
    std::fs::write(&file, &converted).unwrap();
    cluster
        .cp
        .kubectl_ok(&["apply", "-n", "default", "-f", &file.display().to_string()])
        .unwrap();
    let stored: palisade_domain::ProfileBinding = serde_json::from_str(
        &cluster
            .cp
            .kubectl_ok(&[
                "get",
                "profilebindings.palisade.dev",
                "profile-binding",
                "-n",
                "default",
                "-o",
                "json",
            ])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored.spec.profile_ref.name, "profile-allow-unsafe");
    assert_eq!(stored.spec.image.as_deref(), Some("nginx:1.19.1"));
    assert_eq!(palisade_domain::binding::problem(&stored), None);
}
