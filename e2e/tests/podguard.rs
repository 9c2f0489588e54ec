//! The pod admission guard, called by the real API server: the chart's
//! ValidatingWebhookConfiguration (pointed at the operator, which runs on this machine) and
//! the operator's own certificate, created in its Secret and put into the caBundle by the
//! operator (running as the chart's ServiceAccount, with the chart's RBAC).

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use palisade_domain::SeccompProfile;
use palisade_e2e::cluster::{NAMESPACE, apply_json, wait_condition, wait_installed, webhook_at_url};
use palisade_e2e::controlplane::free_port;
use palisade_e2e::{Cluster, Options};
use serde_json::json;

fn seccomp(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name}, "spec": spec})
}

/// A pod naming `palisade/<profile>.json`, as a manifest file for kubectl.
fn pod_file(cluster: &Cluster, ns: &str, name: &str, profile: &str) -> String {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": "node-0", "containers": [{"name": "app", "image": "busybox",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/{profile}.json")}}}]}});
    let file = cluster.dir().join(format!("{ns}-{name}.json"));
    std::fs::write(&file, pod.to_string()).unwrap();
    file.display().to_string()
}

#[tokio::test]
async fn the_api_server_calls_the_pod_guard_which_denies_missing_profiles_and_warns() {
    let port = free_port().unwrap();
    let (cluster, client, _, _) = Cluster::started(Options::webhook(port, &["--webhook-mode", "deny"]))
        .await
        .unwrap();

    // The chart's webhook configuration, pointed at the operator on this machine.
    let bundle = webhook_at_url::<ValidatingWebhookConfiguration>(
        &client,
        "palisade-pod-guard",
        &format!("https://127.0.0.1:{port}/validate-pods"),
    )
    .await
    .unwrap();
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .get("palisade-webhook-tls")
        .await
        .unwrap();
    assert_eq!(
        secret.data.unwrap()["ca.crt"].0,
        bundle,
        "the caBundle is the Secret's CA"
    );

    apply_json(&client, seccomp("guard-ok", json!({}))).await.unwrap();
    apply_json(
        &client,
        seccomp(
            "guard-nowhere",
            json!({"nodeSelector": {"matchLabels": {"pool": "none"}}}),
        ),
    )
    .await
    .unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    wait_installed(&sp, "guard-ok", 3).await.unwrap();
    wait_condition(&sp, "guard-nowhere", "Ready", "False").await.unwrap();
    let ns = "guarded";
    cluster.kubectl(&["create", "namespace", ns]).unwrap();

    let create = |name: &str, profile: &str| {
        let out = cluster
            .kubectl(&["create", "-f", &pod_file(&cluster, ns, name, profile)])
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Missing: refused, saying why.
    let (created, stderr) = create("missing", "guard-typo");
    assert!(!created, "a pod naming a missing profile was admitted: {stderr}");
    assert!(
        stderr.contains("denied the request: Palisade: SeccompProfile \"guard-typo\" does not exist"),
        "{stderr}"
    );
    // Ready everywhere: admitted, nothing said.
    let (created, stderr) = create("fine", "guard-ok");
    assert!(created, "{stderr}");
    assert!(!stderr.contains("Palisade"), "{stderr}");
    // Accepted but Ready on no node: admitted with a warning.
    let (created, stderr) = create("early", "guard-nowhere");
    assert!(created, "{stderr}");
    assert!(
        stderr.contains("Warning: Palisade: SeccompProfile \"guard-nowhere\" is not Ready on every node"),
        "{stderr}"
    );
    // Palisade's own namespace is never guarded.
    let out = cluster
        .kubectl(&["create", "-f", &pod_file(&cluster, NAMESPACE, "own", "guard-typo")])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
