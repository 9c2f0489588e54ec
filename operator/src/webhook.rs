//! The pod admission webhooks: the guard (validating) for pods that reference Palisade
//! profiles, and the binder (mutating) that applies ProfileBindings to pods being created.
//!
//! A pod naming a SeccompProfile or AppArmorProfile that does not exist, or was never
//! accepted, gets an admission warning (`warn` mode) or is denied (`deny` mode); one naming
//! a profile not yet Ready on every node it targets gets a warning. The operator serves
//! HTTPS with its own certificate: a CA and a serving certificate kept in a Secret (created
//! by whichever replica finds it missing, rotated 30 days before expiry, optimistic
//! concurrency deciding between replicas) and the CA kept in the `caBundle` of the
//! ValidatingWebhookConfiguration and of the MutatingWebhookConfiguration.
//!
//! The binder sets a container's `securityContext.seccompProfile` / `appArmorProfile` from
//! the ProfileBindings of the pod's namespace ([`palisade_domain::binding::bind`]), never over
//! a profile the pod sets itself, and answers with a JSON patch and warnings.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DeserializeGuard, DynamicObject};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use palisade_domain::{AppArmorProfile, ProfileBinding, ProfileKind, SeccompProfile};
use palisade_runtime::backoff::{self, Retryable as _};

use crate::controller::cached_profile;
use crate::pods;
use crate::status::{Problem, problem};

/// What the guard does with a pod naming a missing or rejected profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Admit it with a warning.
    Warn,
    /// Refuse it, saying why.
    Deny,
}

/// How the webhook runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub namespace: String,
    /// The Secret holding the CA and the serving certificate.
    pub secret: String,
    /// The Service in front of the operator (the certificate's DNS names).
    pub service: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` the operator keeps.
    pub configuration: String,
    /// The MutatingWebhookConfiguration (ProfileBindings) whose `caBundle` the operator keeps.
    pub mutating_configuration: String,
}

/// What the handler reads.
#[derive(Clone)]
pub struct Guard {
    pub mode: Mode,
    /// The agents' seccomp subdirectory: pods name `<subdir>/<name>.json`.
    pub seccomp_subdir: String,
    /// Profiles that do not parse count as missing.
    pub seccomp: Store<DeserializeGuard<SeccompProfile>>,
    pub apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    /// Every namespace's ProfileBindings.
    pub bindings: Store<ProfileBinding>,
}

/// A certificate is replaced this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a generated certificate is valid.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often the Secret and the `caBundle` are checked.
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between attempts to set the certificate up.
const RETRY_MAX: Duration = Duration::from_secs(15);

/// The Secret's keys.
const CA_CRT: &str = "ca.crt";
const CA_PREVIOUS: &str = "ca-previous.crt";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const NOT_AFTER: &str = "not-after";

/// The serving material, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    pub ca: String,
    pub previous_ca: Option<String>,
    pub cert: String,
    pub key: String,
    /// Unix seconds.
    pub not_after: i64,
}

impl Material {
    /// What the webhook configuration trusts: the current CA and, during a rotation, the
    /// previous one (replicas still serving the old certificate stay trusted).
    pub fn ca_bundle(&self) -> String {
        match &self.previous_ca {
            Some(previous) => format!("{}{previous}", self.ca),
            None => self.ca.clone(),
        }
    }

    fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
        Some(Self {
            ca: text(CA_CRT)?,
            previous_ca: text(CA_PREVIOUS).filter(|p| !p.is_empty()),
            cert: text(TLS_CRT)?,
            key: text(TLS_KEY)?,
            not_after: text(NOT_AFTER)?.trim().parse().ok()?,
        })
    }

    fn to_secret(&self, cfg: &Config, resource_version: Option<String>) -> Secret {
        let mut data = std::collections::BTreeMap::new();
        for (k, v) in [
            (CA_CRT, self.ca.clone()),
            (CA_PREVIOUS, self.previous_ca.clone().unwrap_or_default()),
            (TLS_CRT, self.cert.clone()),
            (TLS_KEY, self.key.clone()),
            (NOT_AFTER, self.not_after.to_string()),
        ] {
            data.insert(k.to_string(), ByteString(v.into_bytes()));
        }
        Secret {
            metadata: kube::core::ObjectMeta {
                name: Some(cfg.secret.clone()),
                namespace: Some(cfg.namespace.clone()),
                resource_version,
                labels: Some([("app.kubernetes.io/name".to_string(), "palisade".to_string())].into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }

    fn expiring(&self, now: i64) -> bool {
        now + RENEW_BEFORE.as_secs() as i64 >= self.not_after
    }
}

/// A new CA and a serving certificate for the Service (and 127.0.0.1/localhost), valid
/// for a year; `previous` is the CA being replaced.
pub fn generate(cfg: &Config, previous: Option<String>) -> Result<Material> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + VALIDITY;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "palisade-webhook-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::from_secs(300);
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let (svc, ns) = (&cfg.service, &cfg.namespace);
    let mut server = CertificateParams::new(vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
        "localhost".to_string(),
    ])?;
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse()?));
    server
        .distinguished_name
        .push(DnType::CommonName, format!("{svc}.{ns}.svc"));
    server.not_before = now - Duration::from_secs(300);
    server.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &issuer)?;
    Ok(Material {
        ca: ca_cert.pem(),
        previous_ca: previous,
        cert: cert.pem(),
        key: key.serialize_pem(),
        not_after: not_after.unix_timestamp(),
    })
}

/// Reads the Secret, creating or rotating it when needed; returns what to serve.
pub async fn ensure_material(client: &Client, cfg: &Config) -> Result<Material> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for _ in 0..3 {
        match api.get_opt(&cfg.secret).await? {
            None => {
                let fresh = generate(cfg, None)?;
                match api.create(&PostParams::default(), &fresh.to_secret(cfg, None)).await {
                    Ok(_) => {
                        tracing::info!(secret = cfg.secret, "created the webhook certificate");
                        return Ok(fresh);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => continue, // another replica did
                    Err(e) => return Err(e.into()),
                }
            }
            Some(secret) => match Material::from_secret(&secret) {
                Some(m) if !m.expiring(now) => return Ok(m),
                current => {
                    let fresh = generate(cfg, current.map(|c| c.ca))?;
                    let replaced = api
                        .replace(
                            &cfg.secret,
                            &PostParams::default(),
                            &fresh.to_secret(cfg, secret.resource_version()),
                        )
                        .await;
                    match replaced {
                        Ok(_) => {
                            tracing::info!(secret = cfg.secret, "rotated the webhook certificate");
                            return Ok(fresh);
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => continue, // another replica did
                        Err(e) => return Err(e.into()),
                    }
                }
            },
        }
    }
    anyhow::bail!("the webhook certificate Secret {} keeps changing", cfg.secret)
}

/// Puts `bundle` into every webhook of both configurations that lacks it. Each is kept on
/// its own: one that cannot be read (not installed, or RBAC of an older chart) is logged and
/// does not keep the other, or the serving, from going on.
pub async fn ensure_ca_bundle(client: &Client, cfg: &Config, bundle: &str) -> Result<()> {
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let results = [
        ensure_bundle_of(&validating, &cfg.configuration, bundle).await,
        ensure_bundle_of(&mutating, &cfg.mutating_configuration, bundle).await,
    ];
    let mut failed = None;
    for result in results {
        match result {
            Err(e) if is_forbidden(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "a webhook configuration cannot be read: check the operator's RBAC");
            }
            Err(e) => failed = Some(e),
            Ok(()) => {}
        }
    }
    failed.map_or(Ok(()), Err)
}

fn is_forbidden(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 403))
}

/// Puts `bundle` into every webhook of the configuration `name` that lacks it.
async fn ensure_bundle_of<K>(api: &Api<K>, name: &str, bundle: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if name.is_empty() {
        return Ok(()); // not installed (the chart's value turned it off)
    }
    let Some(configuration) = api.get_opt(name).await? else {
        return Ok(()); // not installed (the chart's value turned it off)
    };
    let encoded = serde_json::to_value(k8s_openapi::ByteString(bundle.as_bytes().to_vec()))?;
    let value = serde_json::to_value(&configuration)?;
    let webhooks = value["webhooks"].as_array().cloned().unwrap_or_default();
    if webhooks.iter().all(|w| w["clientConfig"]["caBundle"] == encoded) {
        return Ok(());
    }
    // Strategic merge: webhooks are keyed by name, so only each caBundle changes.
    let patch = serde_json::json!({"webhooks": webhooks.iter().map(|w| serde_json::json!({
        "name": w["name"],
        "clientConfig": {"caBundle": encoded},
    })).collect::<Vec<_>>()});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .with_context(|| format!("patching the caBundle of the webhook configuration {name}"))?;
    tracing::info!(configuration = name, "updated the webhook caBundle");
    Ok(())
}

fn tls_config(m: &Material) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(m.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(m.key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Keeps the certificate and the `caBundle` current and serves HTTPS on `listener` until
/// the process ends, answering once the profile caches have synced.
pub async fn serve(client: Client, cfg: Config, listener: tokio::net::TcpListener, guard: Guard) -> Result<()> {
    guard.seccomp.wait_until_ready().await?;
    guard.apparmor.wait_until_ready().await?;
    guard.bindings.wait_until_ready().await?;
    // A failure here (an API server that is slow or restarting) is retried: the guard must
    // not stay down for the rest of the process's life because of one failed request.
    let material = (|| async {
        let m = ensure_material(&client, &cfg).await?;
        ensure_ca_bundle(&client, &cfg, &m.ca_bundle()).await?;
        anyhow::Ok(m)
    })
    .retry(backoff::exponential(Duration::from_millis(500), RETRY_MAX))
    .notify(|e, retry_in| tracing::warn!(error = %format!("{e:#}"), ?retry_in, "setting up the webhook certificate"))
    .await?;
    let tls = Arc::new(RwLock::new(tls_config(&material)?));

    // Keep the certificate and caBundle current; reload what is served when it changes.
    let (refresh_client, refresh_cfg, refresh_tls) = (client.clone(), cfg.clone(), tls.clone());
    tokio::spawn(async move {
        let mut current = material;
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let checked = async {
                let m = ensure_material(&refresh_client, &refresh_cfg).await?;
                ensure_ca_bundle(&refresh_client, &refresh_cfg, &m.ca_bundle()).await?;
                if m != current {
                    *refresh_tls.write().expect("lock") = tls_config(&m)?;
                    current = m;
                }
                anyhow::Ok(())
            };
            if let Err(e) = checked.await {
                tracing::warn!(error = %e, "checking the webhook certificate");
            }
        }
    });

    let app = Router::new()
        .route("/validate-pods", post(review))
        .route("/mutate-pods", post(mutate))
        .with_state(Arc::new(guard));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept");
                continue;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.read().expect("lock").clone());
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The guard's route: [`decide`] on the pod.
async fn review(
    State(guard): State<Arc<Guard>>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    answer(review, |_, pod, response| decide(&guard, pod, response))
}

/// The binder's route: [`bind`] on the pod, in the request's namespace.
async fn mutate(
    State(guard): State<Arc<Guard>>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    answer(review, |request, pod, response| {
        let namespace = request
            .namespace
            .clone()
            .or_else(|| pod.namespace())
            .unwrap_or_default();
        bind(&guard, &namespace, pod, response)
    })
}

/// Reads a review and answers it with `decide` when it holds a pod (an invalid review is
/// answered as such; one without an object is allowed).
fn answer(
    review: AdmissionReview<Pod>,
    decide: impl FnOnce(&AdmissionRequest<Pod>, &Pod, AdmissionResponse) -> AdmissionResponse,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let response = AdmissionResponse::from(&request);
    match &request.object {
        Some(pod) => Json(decide(&request, pod, response).into_review()),
        None => Json(response.into_review()),
    }
}

/// The binder's answer for a pod being created in `namespace`: a patch setting the profiles
/// its namespace's ProfileBindings attach, and warnings for what was left alone. A pod is
/// always admitted: a binding that cannot be applied is said, not enforced by refusal.
pub fn bind(guard: &Guard, namespace: &str, pod: &Pod, response: AdmissionResponse) -> AdmissionResponse {
    let bindings = guard.bindings.state();
    let here: Vec<&ProfileBinding> = bindings
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| b.as_ref())
        .collect();
    if here.is_empty() {
        return response;
    }
    let mut bound = pod.clone();
    let usable = |b: &ProfileBinding| profile_usable(guard, b.spec.profile_ref.kind, &b.spec.profile_ref.name);
    let outcome = palisade_domain::binding::bind(&mut bound, &here, &guard.seccomp_subdir, usable);
    let mut response = response;
    if !outcome.set.is_empty() {
        let before = serde_json::to_value(pod).unwrap_or_default();
        let after = serde_json::to_value(&bound).unwrap_or_default();
        match response.clone().with_patch(json_patch::diff(&before, &after)) {
            Ok(r) => response = r,
            Err(e) => {
                tracing::warn!(error = %e, "serializing a binding patch");
                return response;
            }
        }
        for (container, kind, profile, binding) in &outcome.set {
            tracing::debug!(namespace, container, kind = kind.slug(), profile, binding, "bound");
        }
    }
    if !outcome.warnings.is_empty() {
        response.warnings = Some(outcome.warnings.into_iter().map(|w| format!("Palisade: {w}")).collect());
    }
    response
}

/// Whether a binding may attach profile `name`: it exists, parses, was accepted and is not
/// being deleted (a pod bound to it could not start, or would hold its deletion).
fn profile_usable(guard: &Guard, kind: ProfileKind, name: &str) -> Result<(), String> {
    let what = format!("{} {name}", kind.name());
    match cached_profile(&guard.seccomp, &guard.apparmor, kind, name) {
        None => Err(format!("{what} does not exist")),
        Some(Err(e)) => Err(format!("{what} does not parse: {e}")),
        Some(Ok(c)) if c.deleting => Err(format!("{what} is being deleted")),
        Some(Ok(c)) if c.status.as_ref().and_then(|s| s.accepted.as_ref()).is_none() => {
            Err(format!("{what} was not accepted"))
        }
        Some(Ok(_)) => Ok(()),
    }
}

/// The guard's answer for a pod: problems with the profiles it names.
pub fn decide(guard: &Guard, pod: &Pod, mut response: AdmissionResponse) -> AdmissionResponse {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    for (kind, name) in pods::references(pod, &guard.seccomp_subdir) {
        let label = kind.name();
        // One that does not parse counts as missing.
        let status = cached_profile(&guard.seccomp, &guard.apparmor, kind, &name)
            .and_then(Result::ok)
            .map(|c| c.status);
        match status {
            None => refusals.push(format!(
                "{label} {name:?} does not exist: the container cannot start where the profile is missing"
            )),
            Some(status) => {
                if let Some(problem) = problem(status.as_ref()) {
                    match problem {
                        Problem::Rejected(why) => refusals.push(format!("{label} {name:?} was never accepted: {why}")),
                        Problem::NotReady(why) => {
                            warnings.push(format!("{label} {name:?} is not Ready on every node: {why}"))
                        }
                    }
                }
            }
        }
    }
    match guard.mode {
        Mode::Deny if !refusals.is_empty() => {
            response = response.deny(format!("Palisade: {}", refusals.join("; ")));
        }
        _ => warnings.extend(refusals),
    }
    if !warnings.is_empty() {
        response.warnings = Some(warnings.into_iter().map(|w| format!("Palisade: {w}")).collect());
    }
    response
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn profile(name: &str, status: serde_json::Value) -> DeserializeGuard<SeccompProfile> {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": name}, "spec": {"defaultAction": "SCMP_ACT_ALLOW"}, "status": status}))
        .unwrap()
    }

    fn guard(mode: Mode) -> Guard {
        let (seccomp, mut writer) = reflector::store();
        for p in [
            profile(
                "ready",
                json!({"accepted": {"generation": 1, "digest": "d"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "Installed", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
            profile(
                "rejected",
                json!({"conditions": [{"type": "Accepted", "status": "False", "reason": "Invalid",
                "message": "spec.syscalls[0]: bad", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
            profile(
                "early",
                json!({"accepted": {"generation": 1, "digest": "d"},
                "conditions": [{"type": "Ready", "status": "False", "reason": "Pending",
                                "message": "installed on 1/3 targeted nodes", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
        ] {
            writer.apply_watcher_event(&Event::Apply(p));
        }
        let (apparmor, _) = reflector::store();
        let (bindings, _) = reflector::store();
        Guard {
            mode,
            seccomp_subdir: palisade_domain::SECCOMP_SUBDIR.into(),
            seccomp,
            apparmor,
            bindings,
        }
    }

    fn pod(profiles: &[&str]) -> Pod {
        let containers: Vec<serde_json::Value> = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"name": format!("c{i}"), "image": "x",
                "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/{p}.json")}}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": containers}}))
            .unwrap()
    }

    /// An allowing response to a pod CREATE, as the handler starts from.
    fn response() -> AdmissionResponse {
        let review: AdmissionReview<Pod> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "userInfo": {}, "name": "p", "namespace": "n"}}))
        .unwrap();
        let request: AdmissionRequest<Pod> = review.try_into().unwrap();
        AdmissionResponse::from(&request)
    }

    #[test]
    fn warn_mode_admits_with_a_warning_per_problem_and_deny_mode_refuses() {
        let warned = decide(
            &guard(Mode::Warn),
            &pod(&["ready", "missing", "rejected", "early"]),
            response(),
        );
        assert!(warned.allowed, "warn mode admits");
        let warnings = warned.warnings.clone().unwrap_or_default();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("SeccompProfile \"missing\" does not exist"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"rejected\" was never accepted: spec.syscalls[0]: bad"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"early\" is not Ready on every node: installed on 1/3"))
        );

        let denied = decide(&guard(Mode::Deny), &pod(&["missing", "early"]), response());
        assert!(!denied.allowed);
        assert!(
            denied
                .result
                .message
                .contains("Palisade: SeccompProfile \"missing\" does not exist"),
            "{:?}",
            denied.result
        );
        assert_eq!(
            denied.warnings.unwrap().len(),
            1,
            "not Ready is a warning in deny mode too"
        );

        let fine = decide(&guard(Mode::Deny), &pod(&["ready"]), response());
        assert!(fine.allowed && fine.warnings.is_none());
    }

    #[test]
    fn ephemeral_containers_are_guarded_like_the_others() {
        let debugged: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "app", "image": "x"}],
                     "ephemeralContainers": [{"name": "debugger", "image": "x", "securityContext":
                        {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/missing.json"}}}]}}))
        .unwrap();
        let denied = decide(&guard(Mode::Deny), &debugged, response());
        assert!(
            !denied.allowed,
            "an ephemeral container naming a missing profile is refused"
        );
        assert!(
            denied.result.message.contains("\"missing\" does not exist"),
            "{:?}",
            denied.result
        );
    }

    #[test]
    fn the_binder_patches_the_fields_of_bound_containers_in_the_pods_namespace_only() {
        let mut g = guard(Mode::Warn);
        let (bindings, mut writer) = reflector::store();
        for (ns, name, profile) in [
            ("n", "web", "ready"),
            ("n", "zz-missing", "missing"),
            ("elsewhere", "other", "rejected"),
        ] {
            let b: ProfileBinding = serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1",
                "kind": "ProfileBinding", "metadata": {"name": name, "namespace": ns},
                "spec": {"profileRef": {"kind": "SeccompProfile", "name": profile}, "image": "nginx"}}))
            .unwrap();
            writer.apply_watcher_event(&Event::Apply(b));
        }
        g.bindings = bindings;
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "own", "image": "nginx", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]}}))
        .unwrap();
        let bound = bind(&g, "n", &pod, response());
        assert!(bound.allowed);
        let patch: serde_json::Value = serde_json::from_slice(bound.patch.as_ref().expect("a patch")).unwrap();
        let mut patched = serde_json::to_value(&pod).unwrap();
        json_patch::patch(
            &mut patched,
            &serde_json::from_value::<json_patch::Patch>(patch).unwrap(),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["containers"][0]["securityContext"]["seccompProfile"],
            json!({"type": "Localhost", "localhostProfile": "palisade/ready.json"})
        );
        assert_eq!(
            patched["spec"]["containers"][1]["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let warnings = bound.warnings.unwrap();
        assert!(
            warnings[0].starts_with("Palisade: container \"own\" keeps its own seccomp profile (RuntimeDefault)"),
            "{warnings:?}"
        );

        assert!(
            warnings.contains(
                &"Palisade: ProfileBinding zz-missing was not applied: SeccompProfile missing does not exist"
                    .to_string()
            ),
            "a binding to a missing profile is skipped, never set (the pod could not start): {warnings:?}"
        );

        let untouched = bind(&g, "team", &pod, response());
        assert!(
            untouched.patch.is_none() && untouched.warnings.is_none(),
            "another namespace's bindings do not apply"
        );
    }

    #[test]
    fn certificates_rotate_before_expiry_and_the_bundle_trusts_both_cas_meanwhile() {
        let cfg = Config {
            mode: Mode::Warn,
            namespace: "palisade-system".into(),
            secret: "palisade-webhook-tls".into(),
            service: "palisade-webhook".into(),
            configuration: "palisade-pod-guard".into(),
            mutating_configuration: "palisade-profile-binding".into(),
        };
        let first = generate(&cfg, None).unwrap();
        tls_config(&first).expect("the certificate and key make a TLS config");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(!first.expiring(now));
        assert!(
            first.expiring(first.not_after - 29 * 24 * 3600),
            "renewed 30 days ahead"
        );
        assert_eq!(first.ca_bundle().matches("BEGIN CERTIFICATE").count(), 1);
        let second = generate(&cfg, Some(first.ca.clone())).unwrap();
        assert_ne!(second.ca, first.ca);
        assert_eq!(second.ca_bundle().matches("BEGIN CERTIFICATE").count(), 2);
        let stored = Material::from_secret(&second.to_secret(&cfg, None)).unwrap();
        assert_eq!(stored, second, "the Secret round-trips");
    }
}
