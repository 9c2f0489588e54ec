//! The chart's alerts (PrometheusRule) and Grafana dashboard query only metrics Palisade
//! really exports: every metric name in them is in the operator's or an agent's /metrics.

use std::collections::BTreeSet;
use std::process::Command;

use kube::Api;
use palisade_domain::SeccompProfile;
use palisade_e2e::cluster::{apply_json, scrape_metrics, wait_installed};
use palisade_e2e::controlplane::repo_root;
use palisade_e2e::{Cluster, Options, helm_binary};
use serde_json::{Value, json};

/// The metric of denials (exported once there is one).
const DENIALS_METRIC: &str = "palisade_agent_denials_total";

/// The chart rendered with the alerts and the dashboard turned on.
fn rendered() -> Vec<Value> {
    let out = Command::new(helm_binary().unwrap())
        .args(["template", "palisade"])
        .arg(repo_root().join("charts/palisade"))
        .args([
            "-n",
            "palisade-system",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    yaml_serde::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| !d.is_null())
        .collect()
}

/// Every `palisade_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("palisade_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The family name a sample name belongs to (`# TYPE` lines name families).
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let docs = rendered();
    let mut exprs: Vec<String> = Vec::new();
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("the PrometheusRule");
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        exprs.push(r["expr"].as_str().unwrap().to_string());
    }
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "palisade-dashboard")
        .expect("the dashboard ConfigMap");
    let dashboard: Value = serde_json::from_str(cm["data"]["palisade.json"].as_str().unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 8, "{names:?}");

    let (cluster, client, _, _) = Cluster::started(Options::default()).await.unwrap();
    apply_json(
        &client,
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": "watched"},
               "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}}),
    )
    .await
    .unwrap();
    wait_installed(&Api::<SeccompProfile>::all(client), "watched", 3)
        .await
        .unwrap();
    let agent_port = cluster.agents.values().next().unwrap().metrics_port;
    let exported = format!(
        "{}\n{}",
        scrape_metrics(cluster.operator_ports[0]).await.unwrap(),
        scrape_metrics(agent_port).await.unwrap()
    );
    // A family with no series is not exported: the denials metric has one only once an
    // agent with --denials counted a denial; e2e/tests/denials.rs checks it, by the name
    // the alert and the dashboard use (DENIALS_METRIC).
    assert!(names.contains(DENIALS_METRIC), "{names:?}");
    for name in names.iter().filter(|n| *n != DENIALS_METRIC) {
        assert!(
            exported.contains(&format!("# TYPE {} ", family(name))),
            "{name} is queried by the chart's alerts or dashboard but not exported"
        );
    }
    // The label values the alerts select on are the ones the code uses.
    for sample in [
        "palisade_operator_nodes{agent=\"missing\"} 0",
        "palisade_operator_nodes{agent=\"live\"} 3",
        "palisade_operator_profiles{kind=\"seccomp\",state=\"Ready\"} 1",
    ] {
        assert!(exported.contains(sample), "{sample} not in:\n{exported}");
    }
    assert!(
        exported.contains("result=\"success\""),
        "agent operations carry result="
    );
}
