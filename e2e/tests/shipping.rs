//! What users install: the Helm chart (default and non-default values) and manifests/ are
//! accepted by a real API server and keep the chart's security promises, bad values are
//! refused naming the value, and the admission policy confines each agent to its own node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use palisade_e2e::cluster::{NAMESPACE, agent_identity, install_manifests};
use palisade_e2e::controlplane::{ControlPlane, client_from_kubeconfig, repo_root};
use serde::Deserialize as _;
use serde_json::{Value, json};

fn helm() -> PathBuf {
    palisade_e2e::helm_binary().expect("finding or building helm")
}

fn chart() -> PathBuf {
    repo_root().join("charts/palisade")
}

fn custom_values() -> PathBuf {
    chart().join("ci/custom-values.yaml")
}

/// `helm template` of the chart; Err is helm's stderr.
fn template(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(["template", "palisade"])
        .arg(chart())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("running helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn docs(yaml: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(yaml)
        .filter_map(|d| Option::<Value>::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendering"))
}

/// The item of the array `list` whose `field` is `value`.
fn item<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e[field] == value)
        .unwrap_or_else(|| panic!("no item with {field} {value}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    &item(&container["env"], "name", name)["value"]
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_default_rendering_keeps_the_security_promises() {
    let all = docs(&template(&[]).unwrap());

    // Operator: two replicas behind a PDB, non-root, read-only, no capabilities.
    let op = find(&all, "Deployment", "palisade-operator");
    assert_eq!(op["spec"]["replicas"], 2);
    let pod = &op["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&c["securityContext"]["capabilities"]["drop"]), ["ALL"]);
    assert!(c["securityContext"]["capabilities"]["add"].is_null());
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        find(&all, "PodDisruptionBudget", "palisade-operator")["spec"]["minAvailable"],
        1
    );

    // Agent: MAC_ADMIN only, unconfined by AppArmor on purpose, no host namespaces,
    // exactly the four narrow host paths, the include dir read-only.
    let ds = find(&all, "DaemonSet", "palisade-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_ne!(pod["hostPID"], true);
    assert_ne!(pod["hostNetwork"], true);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(strs(&sc["capabilities"]["add"]), ["MAC_ADMIN"]);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["appArmorProfile"]["type"], "Unconfined");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let mut host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    host_paths.sort();
    assert_eq!(
        host_paths,
        [
            "/etc/apparmor.d",
            "/sys/kernel/security",
            "/var/lib/kubelet/seccomp/palisade",
            "/var/lib/palisade"
        ]
    );
    let include = item(&c["volumeMounts"], "name", "apparmor-include");
    assert_eq!(include["readOnly"], true);
    assert_eq!(env(c, "PALISADE_APPARMORFS"), "/sys/kernel/security/apparmor");
    assert_eq!(env(c, "PALISADE_SECCOMP_SUBDIR"), "palisade");

    // RBAC: nothing cluster-wide by wildcard; the agent cannot write profiles; the operator
    // reads no Secret but its own webhook certificate's.
    for d in all.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
        for rule in d["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strs(&rule[field]).contains(&"*"),
                    "{} grants * in {field}",
                    d["metadata"]["name"]
                );
            }
            // Secrets: only the operator's Role, to create the pod guard's certificate
            // Secret and read/rotate that one by name; never list, watch or others.
            if strs(&rule["resources"]).contains(&"secrets") {
                assert_eq!(
                    (d["kind"].as_str(), d["metadata"]["name"].as_str()),
                    (Some("Role"), Some("palisade-operator")),
                    "{} reaches Secrets",
                    d["metadata"]["name"]
                );
                let verbs = strs(&rule["verbs"]);
                assert!(
                    verbs == ["create"]
                        || (strs(&rule["resourceNames"]) == ["palisade-webhook-tls"] && verbs == ["get", "update"]),
                    "{rule}"
                );
            }
        }
    }
    let agent_role = find(&all, "ClusterRole", "palisade-agent");
    for rule in agent_role["rules"].as_array().unwrap() {
        let resources = strs(&rule["resources"]);
        if resources
            .iter()
            .any(|r| r.starts_with("apparmorprofiles") || r.starts_with("seccompprofiles"))
        {
            assert_eq!(
                strs(&rule["verbs"]),
                ["list", "watch"],
                "the agent must only read profiles"
            );
        }
    }

    // Admission policy and NetworkPolicies are on by default.
    let vap = find(&all, "ValidatingAdmissionPolicy", "palisade-agent-node-restriction");
    assert_eq!(
        vap["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == \"system:serviceaccount:palisade-system:palisade-agent\""
    );
    find(
        &all,
        "ValidatingAdmissionPolicyBinding",
        "palisade-agent-node-restriction",
    );
    for np in ["palisade-operator", "palisade-agent"] {
        let np = find(&all, "NetworkPolicy", np);
        assert_eq!(strs(&np["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    }

    // manifests/ is this rendering plus the namespace and the CRDs.
    let manifests = docs(&std::fs::read_to_string(repo_root().join("manifests/palisade.yaml")).unwrap());
    assert_eq!(find(&manifests, "DaemonSet", "palisade-agent"), ds);
    find(&manifests, "Namespace", NAMESPACE);
    assert_eq!(
        manifests
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .count(),
        4,
        "AppArmorProfile, SeccompProfile, NodeProfileStatus, ProfileBinding"
    );
    // The binder never blocks pods while the operator is down, and never touches the
    // control plane's or Palisade's own pods.
    let binder = &find(&all, "MutatingWebhookConfiguration", "palisade-profile-binding")["webhooks"][0];
    assert_eq!(binder["failurePolicy"], "Ignore");
    assert_eq!(binder["clientConfig"]["service"]["path"], "/mutate-pods");
    assert_eq!(
        strs(&binder["namespaceSelector"]["matchExpressions"][0]["values"]),
        ["kube-system", NAMESPACE]
    );
}

/// The agent's ClusterRole as (API group, resource, verbs) rows.
fn agent_rules(all: &[Value]) -> Vec<(String, String, String)> {
    find(all, "ClusterRole", "palisade-agent")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let verbs = strs(&r["verbs"]).join(",");
            let group = strs(&r["apiGroups"]).join(",");
            strs(&r["resources"])
                .into_iter()
                .map(move |res| (group.clone(), res.to_string(), verbs.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn learning_adds_exactly_its_privileges_and_only_when_on() {
    let rules = |all: &[Value]| -> Vec<(String, String)> {
        agent_rules(all)
            .into_iter()
            .map(|(_, res, verbs)| (res, verbs))
            .collect()
    };
    let off = docs(&template(&[]).unwrap());
    let on = docs(&template(&["--set", "learning.enabled=true"]).unwrap());
    let granted = rules(&on);
    // The agents never read pods, learning or not: the operator publishes each node's.
    assert!(
        !rules(&off).iter().chain(&granted).any(|(r, _)| r == "pods"),
        "{granted:?}"
    );
    assert!(granted.contains(&("nodeprofilestatuses".into(), "get".into())));
    assert_eq!(granted.len(), rules(&off).len() + 1, "{granted:?}");
    let pod = &find(&on, "DaemonSet", "palisade-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_ne!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    assert_eq!(
        strs(&c["securityContext"]["capabilities"]["add"]),
        ["MAC_ADMIN", "SYSLOG"]
    );
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(env(c, "PALISADE_LEARN"), "true");
    assert_eq!(env(c, "PALISADE_AUDIT_LOG"), "/var/log/audit/audit.log");
    let audit = item(&c["volumeMounts"], "name", "audit");
    assert_eq!(
        (audit["mountPath"].as_str(), audit["readOnly"].as_bool()),
        (Some("/var/log/audit"), Some(true))
    );
}

#[test]
fn denials_add_exactly_their_privileges_and_only_when_on() {
    let rules = agent_rules;
    let off = docs(&template(&[]).unwrap());
    let on = docs(&template(&["--set", "denials.enabled=true"]).unwrap());
    let mut added: Vec<_> = rules(&on).into_iter().filter(|r| !rules(&off).contains(r)).collect();
    added.sort();
    assert_eq!(
        added,
        [
            ("".to_string(), "events".to_string(), "create,patch".to_string()),
            (
                "palisade.dev".to_string(),
                "nodeprofilestatuses".to_string(),
                "get".to_string()
            ),
        ]
    );
    assert!(
        !rules(&on).iter().any(|(_, r, _)| r == "pods"),
        "the agents never read pods"
    );
    let pod = &find(&on, "DaemonSet", "palisade-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    assert_eq!(
        strs(&c["securityContext"]["capabilities"]["add"]),
        ["MAC_ADMIN", "SYSLOG"]
    );
    assert_eq!(env(c, "PALISADE_DENIALS"), "true");
    assert_eq!(env(c, "PALISADE_AUDIT_LOG"), "/var/log/audit/audit.log");
    assert!(
        c.get("env")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "PALISADE_LEARN")
    );
    let operator = &find(&on, "Deployment", "palisade-operator")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(operator, "PALISADE_DENIALS"), "true");
    // Off: none of it.
    let pod = &find(&off, "DaemonSet", "palisade-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], false);
    assert_eq!(
        strs(&pod["containers"][0]["securityContext"]["capabilities"]["add"]),
        ["MAC_ADMIN"]
    );
    let operator = &find(&off, "Deployment", "palisade-operator")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        operator["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "PALISADE_DENIALS")
    );
    // The alert counts the metric the agent exports (e2e/tests/denials.rs scrapes it).
    let alerting = docs(&template(&["--set", "metrics.prometheusRule.enabled=true"]).unwrap());
    let rule = item(
        &find(&alerting, "PrometheusRule", "palisade")["spec"]["groups"][0]["rules"],
        "alert",
        "PalisadeProfileDenies",
    );
    assert_eq!(
        rule["expr"],
        "sum by (kind, profile) (increase(palisade_agent_denials_total[10m])) > 0"
    );
}

#[test]
fn non_default_values_move_paths_ports_and_policies() {
    let all = docs(&template(&["-f", custom_values().to_str().unwrap()]).unwrap());
    let ds = find(&all, "DaemonSet", "palisade-agent");
    let pod = &ds["spec"]["template"]["spec"];
    let seccomp = item(&pod["volumes"], "name", "seccomp");
    assert_eq!(seccomp["hostPath"]["path"], "/var/lib/k0s/kubelet/seccomp/profiles");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example.com/platform/palisade-agent:0.1.0-rc.1");
    assert_eq!(env(c, "PALISADE_KUBELET_ROOT"), "/var/lib/k0s/kubelet");
    assert_eq!(env(c, "PALISADE_SECCOMP_SUBDIR"), "profiles");
    assert_eq!(env(c, "PALISADE_METRICS_ADDRESS"), "[::]:8444");
    assert!(pod["tolerations"].is_null());
    assert_eq!(find(&all, "Deployment", "palisade-operator")["spec"]["replicas"], 3);
    assert!(!all.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
    assert!(!all.iter().any(|d| d["kind"] == "ValidatingAdmissionPolicy"));
    let sm = find(&all, "ServiceMonitor", "palisade");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let rules = find(&all, "PrometheusRule", "palisade");
    assert_eq!(rules["metadata"]["labels"]["release"], "prometheus");
    let alerts: Vec<(&str, &str)> = rules["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["alert"].as_str().unwrap(), r["for"].as_str().unwrap_or("")))
        .collect();
    assert!(alerts.contains(&("PalisadeProfilesNotReady", "30m")), "{alerts:?}");
    assert!(alerts.contains(&("PalisadeAgentsMissing", "10m")), "{alerts:?}");
    let dashboard = find(&all, "ConfigMap", "palisade-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["labels"]["team"], "platform");
    let json: Value = serde_json::from_str(dashboard["data"]["palisade.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "palisade");
    let np = find(&all, "NetworkPolicy", "palisade-agent");
    assert_eq!(np["spec"]["ingress"], json!([]));
    assert_eq!(
        np["spec"]["egress"][0]["to"],
        json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}])
    );
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (set, names) in [
        ("operator.replicas=0", "/operator/replicas"),
        ("agent.seccompSubdir=../../etc", "/agent/seccompSubdir"),
        ("agent.kubeletRoot=var/lib/kubelet", "/agent/kubeletRoot"),
        ("metrics.listenAddress=0.0.0.0:9100", "/metrics/listenAddress"),
        ("logFormat=xml", "/logFormat"),
        ("agent.driftIntervall=30", "driftIntervall"),
        ("networkPolicy.apiServer.ports={}", "/networkPolicy/apiServer/ports"),
    ] {
        let err = template(&["--set", set]).expect_err(set);
        assert!(err.contains(names), "--set {set}: {err}");
    }
}

fn dry_run(cp: &ControlPlane, yaml: &str, what: &str) {
    let file = cp.dir.join(format!("{what}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = cp
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            file.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.contains("daemonset.apps/palisade-agent serverside-applied (server dry run)"),
        "{what}: {out}"
    );
}

#[tokio::test]
async fn the_api_server_accepts_the_chart_and_the_manifests() {
    let cp = ControlPlane::start_temp().await.unwrap();
    cp.kubectl_ok(&["create", "namespace", NAMESPACE]).unwrap();
    // Stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs (not
    // installed here), so the non-default rendering, which asks for both, can be dry-run.
    for (plural, kind) in [
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    ] {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase()},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        let crd_file = cp.dir.join(format!("{plural}-crd.json"));
        std::fs::write(&crd_file, crd.to_string()).unwrap();
        cp.kubectl_ok(&["create", "-f", crd_file.to_str().unwrap()]).unwrap();
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{plural}.monitoring.coreos.com"),
        ])
        .unwrap();
    }

    dry_run(&cp, &template(&["--include-crds"]).unwrap(), "default-values");
    let custom = template(&["--include-crds", "-f", custom_values().to_str().unwrap()]).unwrap();
    dry_run(&cp, &custom, "custom-values");
    dry_run(
        &cp,
        &std::fs::read_to_string(repo_root().join("manifests/palisade.yaml")).unwrap(),
        "manifests",
    );
}

fn nps(node: &str) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus", "metadata": {"name": node}, "spec": {}})
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
           "spec": {"holderIdentity": "test", "leaseDurationSeconds": 60}})
}

async fn apply(api: &Api<DynamicObject>, obj: Value) -> Result<(), String> {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.patch(
        &name,
        &PatchParams::apply("palisade-agent/test").force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn nps_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(
        "palisade.dev",
        palisade_domain::NODE_STATUS_VERSION,
        "NodeProfileStatus",
    );
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "nodeprofilestatuses"),
    )
}

fn lease_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, "leases"))
}

async fn client_of(path: &Path) -> kube::Client {
    client_from_kubeconfig(path).await.unwrap()
}

#[tokio::test]
async fn an_agent_may_write_only_its_own_nodes_report_and_heartbeat() {
    let cp = ControlPlane::start_temp().await.unwrap();
    install_manifests(&cp).unwrap();
    for node in ["node-a", "node-b"] {
        let file = cp.dir.join(format!("{node}.json"));
        std::fs::write(
            &file,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}).to_string(),
        )
        .unwrap();
        cp.kubectl_ok(&["create", "-f", file.to_str().unwrap()]).unwrap();
    }
    // The agent on node-a, as the kubelet would start it: a Pod-bound token.
    let agent_a = client_of(&agent_identity(&cp, "node-a").unwrap()).await;

    // Its own report and heartbeat: allowed.
    apply(&nps_api(&agent_a), nps("node-a")).await.unwrap();
    apply(&lease_api(&agent_a, NAMESPACE), lease("palisade-agent-node-a"))
        .await
        .unwrap();

    // Another node's: denied by the admission policy, with a message naming both nodes.
    // (The API server starts enforcing a new policy within a second or so.)
    let err = palisade_e2e::wait_for(
        "the admission policy to take effect",
        Duration::from_secs(20),
        || async { Ok(apply(&nps_api(&agent_a), nps("node-b")).await.err()) },
    )
    .await
    .unwrap();
    assert!(
        err.contains("the agent on node node-a may write only NodeProfileStatus node-a, not node-b"),
        "{err}"
    );
    // Its own report's spec (the pods the operator publishes for its learning): denied.
    let mut claimed = nps("node-a");
    claimed["spec"] = json!({"learningPods": [{"uid": "u", "name": "ns/pod", "apparmor": ["other-team"]}]});
    let err = apply(&nps_api(&agent_a), claimed).await.unwrap_err();
    assert!(err.contains("spec.learningPods is written by the operator"), "{err}");
    apply(&nps_api(&agent_a), nps("node-a")).await.unwrap();
    let err = apply(&lease_api(&agent_a, NAMESPACE), lease("palisade-agent-node-b"))
        .await
        .unwrap_err();
    assert!(err.contains("may write only Lease palisade-agent-node-a"), "{err}");
    let err = apply(&lease_api(&agent_a, NAMESPACE), lease("palisade-operator"))
        .await
        .unwrap_err();
    assert!(err.contains("may write only Lease palisade-agent-node-a"), "{err}");

    // The same ServiceAccount with a token bound to no pod (so to no node): denied.
    let token = cp
        .kubectl_ok(&["create", "token", "palisade-agent", "-n", NAMESPACE])
        .unwrap();
    let unbound = client_of(&cp.token_kubeconfig("agent-unbound", token.trim()).unwrap()).await;
    let err = apply(&nps_api(&unbound), nps("node-a")).await.unwrap_err();
    assert!(
        err.contains("must authenticate with a token bound to a pod on a node"),
        "{err}"
    );

    // RBAC: the agent cannot write profiles; the operator cannot list Secrets (it may read
    // only its webhook certificate's, by name).
    let gvk = GroupVersionKind::gvk("palisade.dev", "v1alpha1", "SeccompProfile");
    let profiles: Api<DynamicObject> = Api::all_with(
        agent_a.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "seccompprofiles"),
    );
    let sp = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": "x"},
                    "spec": {"defaultAction": "SCMP_ACT_ALLOW"}});
    let err = apply(&profiles, sp).await.unwrap_err();
    assert!(err.contains("forbidden"), "{err}");
    let token = cp
        .kubectl_ok(&["create", "token", "palisade-operator", "-n", NAMESPACE])
        .unwrap();
    let operator = client_of(&cp.token_kubeconfig("operator", token.trim()).unwrap()).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(operator, NAMESPACE);
    let err = secrets.list(&ListParams::default()).await.unwrap_err().to_string();
    assert!(err.contains("forbidden"), "{err}");
}
