//! ProfileBindings, applied by the real API server calling the operator's binder (the
//! chart's MutatingWebhookConfiguration pointed at the operator on this machine, with the
//! operator's own certificate in its caBundle): pods bound by image and by label, a pod's own
//! profile kept with a warning, namespaces apart, a bound profile held from deletion, and the
//! binder's failure policy while the operator is down, then back after its restart.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use palisade_domain::{AppArmorProfile, ProfileBinding, SeccompProfile};
use palisade_e2e::cluster::{apply_json, wait_condition, wait_installed, webhook_at_url};
use palisade_e2e::controlplane::free_port;
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::json;

const NS: &str = "shop";

fn seccomp(name: &str) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name},
        "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}})
}

/// An AppArmorProfile that allows file access, in `mode`.
fn allow_files(name: &str, mode: &str) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name},
        "spec": {"mode": mode, "policy": format!("profile {name} flags=(attach_disconnected) {{\n  file,\n}}\n")}})
}

fn binding(name: &str, kind: &str, profile: &str, match_: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"profileRef": {"kind": kind, "name": profile}});
    spec.as_object_mut()
        .unwrap()
        .extend(match_.as_object().unwrap().clone());
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
        "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// Creates a pod with kubectl (as a user would): whether it was created, and kubectl's stderr
/// (where admission warnings go).
fn create_pod(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    container: serde_json::Value,
) -> String {
    let mut c = json!({"name": "app", "image": "nginx:1.27"});
    c.as_object_mut()
        .unwrap()
        .extend(container.as_object().unwrap().clone());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [c]}});
    let file = cluster.dir().join(format!("pod-{ns}-{name}.json"));
    std::fs::write(&file, pod.to_string()).unwrap();
    let out = cluster.kubectl(&["create", "-f", &file.display().to_string()]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "creating {ns}/{name}: {stderr}");
    stderr
}

fn apply(cluster: &Cluster, obj: serde_json::Value) {
    let file = cluster
        .dir()
        .join(format!("{}.json", obj["metadata"]["name"].as_str().unwrap()));
    std::fs::write(&file, obj.to_string()).unwrap();
    let out = cluster.kubectl(&["apply", "-f", &file.display().to_string()]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `(seccomp localhostProfile, AppArmor localhostProfile)` of the pod's container.
async fn profiles_of(pods: &Api<Pod>, name: &str) -> (Option<String>, Option<String>) {
    let pod = pods.get(name).await.unwrap();
    let sc = pod.spec.unwrap().containers[0]
        .security_context
        .clone()
        .unwrap_or_default();
    (
        sc.seccomp_profile
            .map(|p| format!("{}:{}", p.type_, p.localhost_profile.unwrap_or_default())),
        sc.app_armor_profile
            .map(|p| format!("{}:{}", p.type_, p.localhost_profile.unwrap_or_default())),
    )
}

async fn wait_counts(bindings: &Api<ProfileBinding>, name: &str, bound: u32, unbound: u32) -> ProfileBinding {
    wait_for(
        &format!("ProfileBinding {name}: {bound} bound, {unbound} unbound"),
        Duration::from_secs(90),
        || async {
            let b = bindings.get(name).await?;
            let s = b.status.clone().unwrap_or_default();
            Ok((s.bound_pods == bound && s.unbound_pods == unbound).then_some(b))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_api_server_calls_the_binder_which_binds_by_image_and_label_and_keeps_a_pods_own_profile() {
    let port = free_port().unwrap();
    let (mut cluster, client, _, _) = Cluster::started(Options::webhook(port, &[])).await.unwrap();

    // The chart's binder configuration, pointed at the operator on this machine.
    webhook_at_url::<MutatingWebhookConfiguration>(
        &client,
        "palisade-profile-binding",
        &format!("https://127.0.0.1:{port}/mutate-pods"),
    )
    .await
    .unwrap();

    apply_json(&client, seccomp("bind-web")).await.unwrap();
    apply_json(&client, seccomp("bind-held")).await.unwrap();
    apply_json(&client, allow_files("bind-aa", "Enforce")).await.unwrap();
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    wait_installed(&sp, "bind-web", 3).await.unwrap();
    wait_condition(
        &Api::<AppArmorProfile>::all(client.clone()),
        "bind-aa",
        "Accepted",
        "True",
    )
    .await
    .unwrap();
    for ns in [NS, "other"] {
        cluster.kubectl(&["create", "namespace", ns]).unwrap();
    }
    apply(
        &cluster,
        binding("by-image", "SeccompProfile", "bind-web", json!({"image": "nginx"})),
    );
    apply(
        &cluster,
        binding(
            "by-label",
            "AppArmorProfile",
            "bind-aa",
            json!({"selector": {"matchLabels": {"app": "web"}}}),
        ),
    );
    // A binding to a profile that does not exist is skipped (a pod bound to it could not
    // start), with a warning.
    apply(
        &cluster,
        binding(
            "to-missing",
            "AppArmorProfile",
            "bind-typo",
            json!({"selector": {"matchLabels": {"app": "web"}}}),
        ),
    );
    apply(
        &cluster,
        binding(
            "held",
            "SeccompProfile",
            "bind-held",
            json!({"image": "registry.example/nothing"}),
        ),
    );
    let bindings: Api<ProfileBinding> = Api::namespaced(client.clone(), NS);
    // The binder reads bindings from its own cache: wait until it has them (the status
    // controller, which reads the same watch, has written a status).
    for name in ["by-image", "by-label", "to-missing", "held"] {
        wait_for(&format!("{name} observed"), Duration::from_secs(60), || async {
            Ok(bindings.get(name).await?.status.and_then(|s| s.observed_generation))
        })
        .await
        .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // By image (a tag of the bound repository) and by label: both fields set, on the
    // container, never the deprecated annotation.
    let said = create_pod(&cluster, NS, "web", json!({"app": "web"}), json!({}));
    println!("$ kubectl create -f web.json\n{said}");
    assert_eq!(
        said.trim(),
        "Warning: Palisade: ProfileBinding to-missing was not applied: AppArmorProfile bind-typo does not exist"
    );
    assert_eq!(
        profiles_of(&pods, "web").await,
        (
            Some("Localhost:palisade/bind-web.json".into()),
            Some("Localhost:bind-aa".into())
        )
    );
    assert!(
        pods.get("web")
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default()
            .is_empty()
    );

    // A pod that sets its own seccomp profile keeps it, with a warning; the label binding
    // still applies AppArmor.
    let said = create_pod(
        &cluster,
        NS,
        "own",
        json!({"app": "web"}),
        json!({"image": "docker.io/library/nginx:1.27", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
    );
    println!("$ kubectl create -f own.json\n{said}");
    assert!(
        said.contains("Warning: Palisade: container \"app\" keeps its own seccomp profile (RuntimeDefault); ProfileBinding by-image (bind-web) was not applied"),
        "{said}"
    );
    assert_eq!(
        profiles_of(&pods, "own").await,
        (Some("RuntimeDefault:".into()), Some("Localhost:bind-aa".into()))
    );

    // Another image, no label: nothing.
    create_pod(&cluster, NS, "db", json!({}), json!({"image": "postgres:16"}));
    assert_eq!(profiles_of(&pods, "db").await, (None, None));

    // Another namespace: the bindings of `shop` do not apply.
    create_pod(&cluster, "other", "web", json!({"app": "web"}), json!({}));
    assert_eq!(
        profiles_of(&Api::namespaced(client.clone(), "other"), "web").await,
        (None, None)
    );

    // The status: the bound pod counted, the one that kept its own profile named.
    let b = wait_counts(&bindings, "by-image", 1, 1).await;
    let status = b.status.unwrap();
    assert_eq!(status.unbound[0].name, "own");
    assert!(
        status.unbound[0].reason.contains("RuntimeDefault"),
        "{:?}",
        status.unbound
    );
    let ready = &status.conditions[0];
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "ProfileReady"));
    let table = cluster.kubectl(&["get", "profilebindings", "-n", NS]).unwrap();
    println!(
        "$ kubectl get profilebindings -n {NS}\n{}",
        String::from_utf8_lossy(&table.stdout)
    );
    let status = cluster
        .kubectl(&["get", "pbind", "by-image", "-n", NS, "-o", "jsonpath={.status}"])
        .unwrap();
    println!(
        "$ kubectl get pbind by-image -n {NS} -o jsonpath={{.status}}\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
    wait_counts(&bindings, "by-label", 2, 0).await;
    let missing = wait_counts(&bindings, "to-missing", 0, 2).await;
    assert_eq!(
        missing.status.unwrap().conditions[0].reason,
        "ProfileMissing",
        "no AppArmorProfile bind-typo"
    );

    // A profile only a binding names is held from deletion, saying by what; deleting the
    // binding lets it go.
    sp.delete("bind-held", &DeleteParams::default()).await.unwrap();
    wait_for("bind-held held by its binding", Duration::from_secs(60), || async {
        let p = sp.get("bind-held").await?;
        Ok(p.status.and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Deleting" && c.message.contains("ProfileBinding shop/held"))
        }))
    })
    .await
    .unwrap();
    bindings.delete("held", &DeleteParams::default()).await.unwrap();
    wait_for("bind-held deleted once unbound", Duration::from_secs(60), || async {
        Ok(sp.get_opt("bind-held").await?.is_none().then_some(()))
    })
    .await
    .unwrap();

    // SPO's binding example, after `palisade convert` (with the profile it binds), binds
    // as it did under SPO: a container running nginx:1.19.1.
    let corpus = palisade_e2e::corpus::corpus_dir().unwrap().join("spo-examples");
    let (ok, converted, notes) = cluster.palisade(&[
        "convert",
        &corpus.join("seccompprofile.yaml").display().to_string(),
        &corpus.join("profilebinding.yaml").display().to_string(),
    ]);
    assert!(ok, "{notes}");
    println!("$ palisade convert seccompprofile.yaml profilebinding.yaml\n{notes}");
    let file = cluster.dir().join("spo-converted.yaml");
    std::fs::write(&file, &converted).unwrap();
    cluster.kubectl(&["create", "namespace", "spo"]).unwrap();
    let out = cluster
        .kubectl(&["apply", "-n", "spo", "-f", &file.display().to_string()])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spo_bindings: Api<ProfileBinding> = Api::namespaced(client.clone(), "spo");
    wait_for("the converted binding observed", Duration::from_secs(60), || async {
        Ok(spo_bindings
            .get("profile-binding")
            .await?
            .status
            .and_then(|s| s.observed_generation))
    })
    .await
    .unwrap();
    create_pod(&cluster, "spo", "web", json!({}), json!({"image": "nginx:1.19.1"}));
    create_pod(&cluster, "spo", "newer", json!({}), json!({"image": "nginx:1.27"}));
    let spo_pods: Api<Pod> = Api::namespaced(client.clone(), "spo");
    assert_eq!(
        profiles_of(&spo_pods, "web").await.0.as_deref(),
        Some("Localhost:palisade/profile-allow-unsafe.json")
    );
    assert_eq!(
        profiles_of(&spo_pods, "newer").await.0,
        None,
        "another tag than SPO's exact image"
    );

    // The operator down: failurePolicy Ignore admits the pod unbound, and the binding's
    // status says so once the operator is back.
    cluster.kill_operator(0);
    create_pod(&cluster, NS, "while-down", json!({}), json!({}));
    assert_eq!(profiles_of(&pods, "while-down").await, (None, None), "admitted unbound");
    cluster.start_operator(0).unwrap();
    let b = wait_counts(&bindings, "by-image", 1, 2).await;
    assert!(
        b.status
            .unwrap()
            .unbound
            .iter()
            .any(|u| u.name == "while-down" && u.reason.contains("sets no seccomp profile"))
    );
    // After the restart the binder answers again, with the same certificate.
    wait_for("bound again after the restart", Duration::from_secs(90), || async {
        let name = format!(
            "after-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        create_pod(&cluster, NS, &name, json!({}), json!({}));
        Ok(profiles_of(&pods, &name)
            .await
            .0
            .filter(|p| p == "Localhost:palisade/bind-web.json"))
    })
    .await
    .unwrap();
}

/// `palisade learn --workload` continues only with what it made: a profile of the name it
/// would use, made by someone else (squatting on a workload's name to have its rules learned
/// into a profile they control), or a binding of that name it did not make, is refused and
/// left alone; and it refuses to enforce what learned nothing. Learning itself is tested on
/// the real node (`learn_a_workload_then_enforce`).
#[tokio::test]
async fn learn_workload_takes_over_nothing_and_enforces_nothing_unlearned() {
    let (cluster, client, _, _) = Cluster::started(Options::default()).await.unwrap();
    cluster.kubectl(&["create", "namespace", NS]).unwrap();
    // A bare pod no node runs (no kubelet here): deleting it is immediate, so re-creating it
    // is what the command does.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}});
    apply(&cluster, pod);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let first_uid = pods.get("web").await.unwrap().metadata.uid;

    // Someone else's profile under the name learning would use.
    apply_json(&client, allow_files("shop.web", "Complain")).await.unwrap();
    let (ok, _, err) = cluster.palisade(&["learn", "--workload", "pod/web", "-n", NS, "--kind", "apparmor"]);
    assert!(!ok, "took over someone else's profile");
    assert!(
        err.contains("AppArmorProfile shop.web exists and was not created by palisade learn for pod/web in shop"),
        "{err}"
    );
    let aa: Api<AppArmorProfile> = Api::all(client.clone());
    assert!(
        aa.get("shop.web").await.unwrap().spec.policy.unwrap().contains("file,"),
        "the profile is left as it was"
    );
    assert_eq!(
        pods.get("web").await.unwrap().metadata.uid,
        first_uid,
        "the pod is not restarted"
    );

    // A binding of the name it would use, not made by it.
    apply(
        &cluster,
        binding("web-seccomp", "SeccompProfile", "other", json!({"image": "*"})),
    );
    let (ok, _, err) = cluster.palisade(&["learn", "--workload", "pod/web", "-n", NS, "--kind", "seccomp"]);
    assert!(!ok);
    assert!(
        err.contains("ProfileBinding shop/web-seccomp exists and is not the one palisade learn made for pod/web"),
        "{err}"
    );
    let bindings: Api<ProfileBinding> = Api::namespaced(client.clone(), NS);
    assert_eq!(
        bindings.get("web-seccomp").await.unwrap().spec.profile_ref.name,
        "other"
    );
    bindings.delete("web-seccomp", &DeleteParams::default()).await.unwrap();

    // Its own objects, but nothing learned (no binder answers here, so the re-created pod
    // runs unbound): no enforcing profile is written.
    let dir = cluster.dir().join("gitops");
    let learn_seccomp = |extra: &[&str]| {
        let mut args = vec![
            "learn",
            "--workload",
            "pod/web",
            "-n",
            NS,
            "--kind",
            "seccomp",
            "--quiet-for",
            "1s",
            "--duration",
            "3s",
        ];
        args.extend_from_slice(extra);
        cluster.palisade(&args)
    };
    let dir_arg = dir.display().to_string();
    let (ok, _, err) = learn_seccomp(&["--enforce", "--output-dir", &dir_arg]);
    assert!(!ok, "enforced a profile that learned nothing: {err}");
    assert!(err.contains("created SeccompProfile shop.web (SCMP_ACT_LOG)"), "{err}");
    assert!(err.contains("restarted pod/web"), "{err}");
    assert!(
        err.contains("not enforcing: ") && err.contains("no pod of pod/web runs bound"),
        "{err}"
    );
    assert!(!dir.exists(), "files were written");
    let again = pods.get("web").await.unwrap();
    assert_ne!(again.metadata.uid, first_uid, "the bare pod was created again");
    // And a second run continues with what the first made.
    let (_, _, err) = learn_seccomp(&[]);
    assert!(
        err.contains("SeccompProfile shop.web exists: learning continues in it"),
        "{err}"
    );
}
