//! Reconciler tests against a mocked API server that asserts the exact requests made
//! (the controller-rs ApiServerVerifier pattern). The same flows run against a real
//! kube-apiserver in the e2e suite.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use palisade_domain::{NodeProfileStatus, SeccompProfile};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use crate::controller::{Caches, Context, Error, error_policy, reconcile};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::validate::ParserConfig;

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

fn obj<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// A profile as the controller's guarded watch delivers it.
fn guarded<K>(p: K) -> Arc<DeserializeGuard<K>> {
    Arc::new(DeserializeGuard(Ok(p)))
}

fn profile(finalizers: &[&str], deleting: bool, syscall: &str, status: Option<Value>) -> SeccompProfile {
    let mut meta =
        json!({"name": "web", "uid": "uid-1", "generation": 1, "resourceVersion": "7", "finalizers": finalizers});
    if deleting {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    obj(
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": meta,
        "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [syscall], "action": "SCMP_ACT_ERRNO"}]},
        "status": status}),
    )
}

/// The digest of the `web` profile with a rule for `syscall`, as palisade-domain renders it.
fn web_digest(syscall: &str) -> String {
    let p = profile(&[], false, syscall, None);
    palisade_domain::render::seccomp::render("web", &p.spec, |_| None)
        .unwrap()
        .digest
}

/// Two nodes with live agents; node-a installed the `mkdir` content of `web`, node-b has
/// not reported.
fn cluster_state(pods: Vec<Pod>) -> (Arc<crate::reports::NodeReports>, Store<Node>, Arc<Liveness>, Store<Pod>) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let nodes = ["node-a", "node-b"]
        .map(|n| obj::<Node>(json!({"metadata": {"name": n, "labels": {}}})))
        .to_vec();
    let liveness = Liveness::default();
    for n in ["node-a", "node-b"] {
        liveness.observe(&obj::<Lease>(
            json!({"metadata": {"name": format!("palisade-agent-{n}"), "namespace": "palisade-system"},
            "spec": {"holderIdentity": n, "leaseDurationSeconds": 60, "renewTime": now}}),
        ));
    }
    let mut installed = palisade_domain::InstalledSet::default();
    installed.add(palisade_domain::installed_key(
        palisade_domain::ProfileKind::SeccompProfile,
        "uid-1",
        &web_digest("mkdir"),
    ));
    let nps = vec![obj::<NodeProfileStatus>(
        json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
        "metadata": {"name": "node-a"}, "spec": {},
        "status": {"agentVersion": "0.1.0", "capabilities": {"apparmor": true, "seccomp": true},
            "installed": {"seccomp": installed.summary()}}}),
    )];
    let reports = crate::reports::NodeReports::default();
    reports.set_nodes(
        &["node-a", "node-b"]
            .map(|n| (n.to_string(), std::collections::BTreeMap::new()))
            .into_iter()
            .collect(),
    );
    reports.apply(watcher::Event::Init);
    for n in nps {
        reports.apply(watcher::Event::InitApply(n));
    }
    reports.apply(watcher::Event::InitDone);
    (Arc::new(reports), store(nodes), Arc::new(liveness), store(pods))
}

fn context_with(client: Client, pods: Vec<Pod>, seccomp: Vec<SeccompProfile>, parser: ParserConfig) -> Arc<Context> {
    let (reports, nodes, liveness, pods) = cluster_state(pods);
    let mut registry = Registry::default();
    Arc::new(Context::new(
        client.clone(),
        Recorder::new(
            client,
            Reporter {
                controller: "palisade-operator".into(),
                instance: None,
            },
        ),
        Metrics::register(&mut registry),
        parser,
        palisade_domain::SECCOMP_SUBDIR.into(),
        Caches {
            seccomp: store(seccomp.into_iter().map(|p| DeserializeGuard(Ok(p))).collect()),
            reports,
            nodes,
            liveness,
            pods,
            bindings: store(vec![]),
        },
    ))
}

fn context(client: Client, pods: Vec<Pod>, seccomp: Vec<SeccompProfile>) -> Arc<Context> {
    let parser = ParserConfig::with_defaults("apparmor_parser", "/etc/apparmor.d");
    context_with(client, pods, seccomp, parser)
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// The next request: asserts its method, path and the query parameters that carry meaning
/// (`fieldManager`, `force`; not how the client spells the rest), returns the JSON body and
/// answers with `reply`.
async fn expect(handle: &mut ApiHandle, method: Method, path: &str, params: &[(&str, &str)], reply: Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, got nothing"))
        .expect("service not called");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().path(), path);
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in params {
        assert!(
            query.iter().any(|(qk, qv)| qk == k && qv == v),
            "{method} {path}: expected {k}={v} in {query:?}"
        );
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    body
}

async fn expect_nothing(handle: &mut ApiHandle) {
    if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

const FINALIZER: &str = "palisade.dev/in-use";
const LEGACY_FINALIZER: &str = "seccompprofiles.palisade.dev";
const OBJECT_PATH: &str = "/apis/palisade.dev/v1alpha1/seccompprofiles/web";
const STATUS_PATH: &str = "/apis/palisade.dev/v1alpha1/seccompprofiles/web/status";
const STATUS_APPLY: &[(&str, &str)] = &[("fieldManager", "palisade-operator"), ("force", "true")];
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[tokio::test]
async fn adds_the_finalizer_before_anything_else() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let p = profile(&[], false, "mkdir", None);
    let ctx = context(client, vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, OBJECT_PATH, &[], reply).await;
        assert_eq!(
            body,
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
        );
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn accepts_a_valid_profile_and_aggregates_node_status() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let p = profile(&[FINALIZER], false, "mkdir", None);
    let ctx = context(client, vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply.clone()).await;
        let status = &body["status"];
        assert_eq!(body["apiVersion"], "palisade.dev/v1alpha1");
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(
            status["nodes"],
            json!({"targeted": 2, "installed": 1, "failed": 0, "pending": 1, "unsupported": 0})
        );
        assert_eq!(status["localhostProfile"], "palisade/web.json");
        assert_eq!(
            status["accepted"],
            json!({"generation": 1, "digest": web_digest("mkdir")}),
            "what nodes must install is published"
        );
        assert_eq!(
            (
                status["conditions"][0]["type"].as_str(),
                status["conditions"][0]["status"].as_str()
            ),
            (Some("Accepted"), Some("True"))
        );
        assert_eq!(
            (
                status["conditions"][1]["type"].as_str(),
                status["conditions"][1]["reason"].as_str()
            ),
            (Some("Ready"), Some("Pending"))
        );
        // An Event for the transition to Accepted, none for Pending.
        let event = expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        assert_eq!(event["reason"], "Accepted");
        assert_eq!(event["regarding"]["name"], "web");
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn rejects_an_invalid_profile_with_the_reason() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut p = profile(&[FINALIZER], false, "mkdirr", None);
    p.spec.base_profile_name = Some("gone".into());
    let ctx = context(client, vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        let accepted = &body["status"]["conditions"][0];
        assert_eq!(
            (accepted["status"].as_str(), accepted["reason"].as_str()),
            (Some("False"), Some("Invalid"))
        );
        assert!(
            accepted["message"]
                .as_str()
                .unwrap()
                .contains("SeccompProfile \"gone\" (base of \"web\") does not exist"),
            "{accepted}"
        );
        assert_eq!(body["status"]["conditions"][1]["reason"], "NotAccepted");
        assert_eq!(body["status"]["accepted"], Value::Null, "nothing was ever accepted");
        assert_eq!(
            body["status"]["nodes"]["installed"], 0,
            "node-a's content was never accepted for this object"
        );
        let event = expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        assert_eq!(
            (event["reason"].as_str(), event["type"].as_str()),
            (Some("Rejected"), Some("Warning"))
        );
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn writes_nothing_when_the_status_is_already_right() {
    // First compute the status the operator writes, then feed it back: no request at all.
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let p = profile(&[FINALIZER], false, "mkdir", None);
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let written = Arc::new(Mutex::new(Value::Null));
    let w = written.clone();
    let server = tokio::spawn(async move {
        *w.lock().unwrap() =
            expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await["status"].clone();
        expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();

    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let status = written.lock().unwrap().clone();
    let p = profile(&[FINALIZER], false, "mkdir", Some(status));
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let server = tokio::spawn(async move { expect_nothing(&mut handle).await });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

fn user_pod() -> Pod {
    obj(json!({"metadata": {"name": "user", "namespace": "shop"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/web.json"}}}]}}))
}

#[tokio::test]
async fn holds_deletion_while_a_pod_uses_the_profile() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let p = profile(&[FINALIZER], true, "mkdir", None);
    let ctx = context(client, vec![user_pod()], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        let status = &body["status"];
        assert_eq!(status["activeWorkloads"], 1);
        let held = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Deleting")
            .unwrap()
            .clone();
        assert_eq!(held["reason"], "InUse");
        assert_eq!(
            held["message"],
            "deletion waits for 1 pod(s) or ProfileBinding(s) using the profile: shop/user"
        );
        // Events for Accepted and InUse; then nothing: the finalizer stays.
        for _ in 0..2 {
            expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        }
        expect_nothing(&mut handle).await;
    });
    let err = reconcile(guarded(p), ctx).await.unwrap_err();
    assert!(
        matches!(err, Error::Finalizer(ref e) if matches!(**e, kube::runtime::finalizer::Error::CleanupFailed(Error::InUse(1)))),
        "{err}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn releases_deletion_when_no_pod_uses_the_profile() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let p = profile(&[FINALIZER], true, "mkdir", None);
    let ctx = context(client, vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, OBJECT_PATH, &[], reply).await;
        assert_eq!(
            body,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                                {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[test]
fn progress_only_changes_are_told_apart_from_transitions() {
    use crate::controller::progress_only;
    let status = |reason: &str, installed: u32| -> palisade_domain::ProfileStatus {
        obj(
            json!({"observedGeneration": 1, "nodes": {"targeted": 3, "installed": installed, "failed": 0, "pending": 3 - installed, "unsupported": 0},
            "conditions": [{"type": "Ready", "status": if reason == "Installed" { "True" } else { "False" }, "reason": reason,
                "message": format!("{installed}/3"), "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        )
    };
    assert!(progress_only(&status("Pending", 1), &status("Pending", 2)));
    assert!(
        !progress_only(&status("Pending", 2), &status("Installed", 3)),
        "Ready is written at once"
    );
    assert!(!progress_only(&status("Pending", 2), &status("Degraded", 2)));
}

#[tokio::test]
async fn migrates_the_legacy_finalizer_name_guarded_by_resource_version() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let p = profile(&[LEGACY_FINALIZER, "example.com/other"], false, "mkdir", None);
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, OBJECT_PATH, &[], reply).await;
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["example.com/other", FINALIZER]}}),
            "the old name is replaced, others kept"
        );
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_deleting_profile_with_the_legacy_finalizer_is_released_under_it() {
    // Being deleted: no finalizer may be added, so the old one is held and then removed.
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let p = profile(&[LEGACY_FINALIZER], true, "mkdir", None);
    let ctx = context(Client::new(service, "default"), vec![user_pod()], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        assert_eq!(body["status"]["activeWorkloads"], 1);
        for _ in 0..2 {
            expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        }
        expect_nothing(&mut handle).await;
    });
    let err = reconcile(guarded(p), ctx).await.unwrap_err();
    assert!(err.is_held_deletion(), "{err}");
    server.await.unwrap();

    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let p = profile(&[LEGACY_FINALIZER], true, "mkdir", None);
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, OBJECT_PATH, &[], reply).await;
        assert_eq!(body, json!({"metadata": {"resourceVersion": "7", "finalizers": []}}));
        expect_nothing(&mut handle).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

fn aa_profile() -> palisade_domain::AppArmorProfile {
    obj(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
        "metadata": {"name": "aa", "uid": "uid-aa", "generation": 2, "resourceVersion": "3", "finalizers": [FINALIZER]},
        "spec": {"policy": "profile aa {\n}\n"},
        "status": {"accepted": {"generation": 1, "digest": "00000000000000aa"}}}))
}

/// A parser that hangs is not the profile's fault: status says validation could not run,
/// the last accepted content stays published, the reconcile fails (to be retried with
/// backoff), and nothing is cached, so the next try runs the parser again.
#[tokio::test]
async fn a_hung_parser_is_transient_retried_and_never_cached() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut parser = ParserConfig::with_defaults(hang, "/etc/apparmor.d");
    parser.budget.wall = Duration::from_millis(200);
    let ctx = context_with(Client::new(service, "default"), vec![], vec![], parser);
    let p = aa_profile();
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(
            &mut handle,
            Method::PATCH,
            "/apis/palisade.dev/v1alpha1/apparmorprofiles/aa/status",
            STATUS_APPLY,
            reply,
        )
        .await;
        let accepted = &body["status"]["conditions"][0];
        assert_eq!(
            (accepted["status"].as_str(), accepted["reason"].as_str()),
            (Some("Unknown"), Some("ValidationError"))
        );
        assert!(
            accepted["message"]
                .as_str()
                .unwrap()
                .starts_with("validation could not run: apparmor_parser did not finish"),
            "{accepted}"
        );
        assert_eq!(
            body["status"]["accepted"]["generation"], 1,
            "the last accepted content stays"
        );
        assert_eq!(body["status"]["conditions"][1]["reason"], "AwaitingValidation");
        let event = expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        assert_eq!(event["reason"], "ValidationError");
    });
    let err = reconcile(guarded(p.clone()), ctx.clone()).await.unwrap_err();
    assert!(
        matches!(err, Error::Finalizer(_)) && err.metric_label() == "validation_unavailable",
        "{err}"
    );
    server.await.unwrap();
    assert!(
        ctx.validated.lock().unwrap().is_empty(),
        "a transient failure is never cached"
    );
    let first = error_policy(guarded(p.clone()), &err, ctx.clone());
    let second = error_policy(guarded(p), &err, ctx.clone());
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        second,
        kube::runtime::controller::Action::requeue(Duration::from_secs(2)),
        "backoff grows"
    );
}

#[tokio::test]
async fn an_invalid_generation_keeps_the_last_accepted_content_published() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let accepted = json!({"generation": 1, "digest": web_digest("mkdir")});
    let mut p = profile(
        &[FINALIZER],
        false,
        "mkdirr",
        Some(json!({"accepted": accepted.clone()})),
    );
    p.spec.base_profile_name = Some("gone".into());
    p.metadata.generation = Some(2);
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        assert_eq!(body["status"]["conditions"][0]["reason"], "Invalid");
        assert_eq!(body["status"]["accepted"], accepted);
        assert_eq!(
            body["status"]["nodes"]["installed"], 1,
            "node-a holds the last accepted content"
        );
        let ready = body["status"]["conditions"][1]["message"].as_str().unwrap().to_string();
        assert!(
            ready.contains("nodes keep the last accepted content (generation 1)"),
            "{ready}"
        );
        expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
    });
    reconcile(guarded(p), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn what_is_kept_per_profile_goes_with_the_profile() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let p = profile(&[FINALIZER], false, "mkdir", None);
    let ctx = context(Client::new(service, "default"), vec![], vec![p.clone()]);
    let reply = serde_json::to_value(&p).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
    });
    reconcile(guarded(p), ctx.clone()).await.unwrap();
    server.await.unwrap();
    assert!(ctx.tracked() > 0 && ctx.metrics.tracked() == 1);
    ctx.retain(
        palisade_domain::ProfileKind::SeccompProfile,
        &Default::default(),
        &Default::default(),
    );
    assert_eq!(
        (ctx.tracked(), ctx.metrics.tracked()),
        (0, 0),
        "a deleted profile leaves nothing behind"
    );
}

/// A SeccompProfile this version cannot read (a `defaultAction` only a newer CRD allows), as
/// the guarded watch delivers it.
fn unreadable(deleting: bool, resource_version: &str) -> (Value, Arc<DeserializeGuard<SeccompProfile>>) {
    let mut meta = json!({"name": "web", "uid": "uid-1", "generation": 3, "resourceVersion": resource_version,
        "finalizers": [FINALIZER, "example.com/other"]});
    if deleting {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    let v = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": meta,
        "spec": {"defaultAction": "SCMP_ACT_NEW"}});
    let guard: DeserializeGuard<SeccompProfile> = obj(v.clone());
    assert!(guard.0.is_err(), "the object must not parse");
    (v, Arc::new(guard))
}

#[tokio::test]
async fn an_object_that_does_not_parse_gets_a_status_and_an_event_once() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), vec![], vec![]);
    let (reply, p) = unreadable(false, "7");
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, STATUS_PATH, STATUS_APPLY, reply).await;
        assert_eq!(body["kind"], "SeccompProfile");
        let accepted = &body["status"]["conditions"][0];
        assert_eq!(
            (
                accepted["type"].as_str(),
                accepted["status"].as_str(),
                accepted["reason"].as_str()
            ),
            (Some("Accepted"), Some("False"), Some("InvalidObject"))
        );
        let message = accepted["message"].as_str().unwrap();
        assert!(
            message.starts_with("the object does not parse: ") && message.contains("SCMP_ACT_NEW"),
            "{message}"
        );
        assert_eq!(body["status"]["observedGeneration"], 3);
        assert_eq!(body["status"]["conditions"][1]["reason"], "NotAccepted");
        assert_eq!(body["status"]["accepted"], Value::Null, "nothing is accepted from it");
        let event = expect(&mut handle, Method::POST, EVENTS_PATH, &[], json!({})).await;
        assert_eq!(
            (event["reason"].as_str(), event["type"].as_str()),
            (Some("InvalidObject"), Some("Warning"))
        );
        assert_eq!(event["regarding"]["name"], "web");
        handle
    });
    let action = reconcile(p, ctx.clone()).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let mut handle = server.await.unwrap();

    // The status write comes back as an event about the same object: nothing more is said,
    // and it waits for a change rather than looping.
    let (action, ()) = tokio::join!(reconcile(unreadable(false, "8").1, ctx), expect_nothing(&mut handle));
    assert_eq!(action.unwrap(), kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn an_object_that_does_not_parse_is_let_go_when_deleted_and_unused() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "default"), vec![], vec![]);
    let (reply, p) = unreadable(true, "7");
    let server = tokio::spawn(async move {
        let body = expect(&mut handle, Method::PATCH, OBJECT_PATH, &[], reply).await;
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["example.com/other"]}}),
            "only the operator's finalizer goes"
        );
        expect_nothing(&mut handle).await;
    });
    reconcile(p, ctx).await.unwrap();
    server.await.unwrap();
}
