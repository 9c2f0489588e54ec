//! The profile controllers: fetch → validate → aggregate → write status, with a finalizer
//! that holds deletion while pods use the profile. One generic reconciler serves both kinds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use palisade_crds::{AppArmorProfile, ProfileKind, ProfileState, ProfileStatus, SeccompProfile, SeccompProfileSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::metrics::Metrics;
use crate::pods;
use crate::status::{self, NodeView, ProfileView, StatusInput};
use crate::validate::{self, ParserConfig};

/// Field manager of everything the operator writes.
pub const MANAGER: &str = "palisade-operator";
/// How often a profile is looked at again without a change (agent heartbeats expire).
pub const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("deletion waits for {0} pod(s) that use the profile")]
    InUse(usize),
}

impl Error {
    /// Label for the failures counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::InUse(_) => "in_use",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// (kind, uid, generation, digest of the inputs) of one validation.
pub type ValidationKey = (ProfileKind, String, i64, String);

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub parser: ParserConfig,
    pub seccomp: Store<SeccompProfile>,
    pub reports: Arc<crate::reports::NodeReports>,
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub pods: Store<Pod>,
    /// Validation results by (kind, uid, generation, digest of inputs).
    pub validated: Mutex<HashMap<ValidationKey, Result<(), String>>>,
    /// When each profile's status was last written, for [`PROGRESS_GAP`].
    pub last_write: Mutex<HashMap<(ProfileKind, String), std::time::Instant>>,
}

/// What the generic reconciler needs from each profile kind.
pub trait Profile:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: ProfileKind;
    const KIND_NAME: &'static str;
    fn profile_status(&self) -> Option<&ProfileStatus>;
    fn selector(&self) -> Option<&LabelSelector>;
    fn state(&self) -> ProfileState;
    fn localhost_profile(&self) -> Option<String>;
    /// Validates this generation: Ok, or the reason it is not accepted.
    fn validate(&self, ctx: &Context) -> impl Future<Output = Result<(), String>> + Send;
}

impl Profile for SeccompProfile {
    const KIND: ProfileKind = ProfileKind::SeccompProfile;
    const KIND_NAME: &'static str = "SeccompProfile";
    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.node_selector.as_ref()
    }
    fn state(&self) -> ProfileState {
        self.spec.state
    }
    fn localhost_profile(&self) -> Option<String> {
        Some(SeccompProfile::localhost_profile(&self.name_any()))
    }
    async fn validate(&self, ctx: &Context) -> Result<(), String> {
        let all: HashMap<String, SeccompProfileSpec> = ctx
            .seccomp
            .state()
            .iter()
            .map(|p| (p.name_any(), p.spec.clone()))
            .collect();
        // Inheritance makes the result depend on the bases: key the cache on the resolved profile.
        let key_digest = match palisade_crds::render::seccomp::resolve(&self.name_any(), &self.spec, |n| all.get(n)) {
            Ok(oci) => oci.digest(),
            Err(e) => return Err(e.to_string()),
        };
        cached(ctx, self, key_digest, async {
            validate::validate_seccomp(self, &all).map(|_| ())
        })
        .await
    }
}

impl Profile for AppArmorProfile {
    const KIND: ProfileKind = ProfileKind::AppArmorProfile;
    const KIND_NAME: &'static str = "AppArmorProfile";
    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.node_selector.as_ref()
    }
    fn state(&self) -> ProfileState {
        self.spec.state
    }
    fn localhost_profile(&self) -> Option<String> {
        None
    }
    async fn validate(&self, ctx: &Context) -> Result<(), String> {
        cached(ctx, self, String::new(), async {
            validate::validate_apparmor(self, &ctx.parser).await.map(|_| ())
        })
        .await
    }
}

/// Runs a validation once per (uid, generation, input digest).
async fn cached<K: Profile>(
    ctx: &Context,
    obj: &K,
    digest: String,
    run: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let key = (
        K::KIND,
        obj.uid().unwrap_or_default(),
        obj.meta().generation.unwrap_or_default(),
        digest,
    );
    if let Some(hit) = ctx.validated.lock().expect("lock").get(&key) {
        return hit.clone();
    }
    let result = run.await;
    let mut cache = ctx.validated.lock().expect("lock");
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(key, result.clone());
    result
}

/// Pods that reference the profile, as `namespace/name`.
pub fn workloads(ctx: &Context, kind: ProfileKind, name: &str) -> BTreeSet<String> {
    ctx.pods
        .state()
        .iter()
        .filter(|p| pods::references(p).iter().any(|(k, n)| *k == kind && n == name))
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect()
}

/// Nodes whose agent renewed its heartbeat Lease within the lease duration.
pub fn live_nodes(leases: &Store<Lease>) -> BTreeSet<String> {
    let now = k8s_openapi::jiff::Timestamp::now();
    leases
        .state()
        .iter()
        .filter_map(|l| {
            let spec = l.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?.0;
            let duration = i64::from(spec.lease_duration_seconds?);
            let expires = renewed
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(duration))
                .ok()?;
            (expires > now).then(|| spec.holder_identity.clone()).flatten()
        })
        .collect()
}

/// Status writes that only move counts (no condition changes status or reason) are kept at
/// least this far apart per profile, so a rollout over many nodes is not one write per node.
pub const PROGRESS_GAP: Duration = Duration::from_secs(1);

/// Whether `new` differs from `old` only in progress: counts, failures, messages.
pub fn progress_only(old: &ProfileStatus, new: &ProfileStatus) -> bool {
    let key = |s: &ProfileStatus| {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    };
    old.observed_generation == new.observed_generation && key(old) == key(new)
}

/// The entry point kube-runtime calls for each profile.
pub async fn reconcile<K: Profile>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer(K::KIND_NAME);
    ctx.metrics.reconciled(K::KIND_NAME);
    let api: Api<K> = Api::all(ctx.client.clone());
    let finalizer_name = format!("{}.palisade.dev", K::plural(&()));
    finalizer(&api, &finalizer_name, obj, |event| async {
        match event {
            Finalizer::Apply(p) => apply(p, &ctx, false).await,
            Finalizer::Cleanup(p) => cleanup(p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Validate, aggregate, write status when it changed.
async fn apply<K: Profile>(obj: Arc<K>, ctx: &Context, deleting: bool) -> Result<Action> {
    let name = obj.name_any();
    let generation = obj.meta().generation.unwrap_or_default();
    let accepted = obj.validate(ctx).await;

    let live = live_nodes(&ctx.leases);
    let reports = ctx.reports.for_profile(K::KIND, &name);
    let nodes = ctx.nodes.state();
    let empty = BTreeMap::new();
    let views: Vec<NodeView<'_>> = nodes
        .iter()
        .map(|n| NodeView {
            name: n.metadata.name.as_deref().unwrap_or_default(),
            labels: n.metadata.labels.as_ref().unwrap_or(&empty),
            live: n.metadata.name.as_ref().is_some_and(|name| live.contains(name)),
            entry: n.metadata.name.as_ref().and_then(|name| reports.get(name)),
        })
        .collect();
    let uid = obj.uid().unwrap_or_default();
    let view = ProfileView {
        kind: K::KIND,
        name: &name,
        uid: &uid,
        generation,
        selector: obj.selector(),
        state: obj.state(),
    };
    let (counts, failures) = if accepted.is_ok() {
        status::aggregate(&view, &views)
    } else {
        Default::default()
    };
    let workloads = workloads(ctx, K::KIND, &name);
    let old = obj.profile_status();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::build(
        StatusInput {
            old,
            generation,
            accepted: accepted.as_ref().map(|_| ()).map_err(String::as_str),
            state: obj.state(),
            counts,
            failures,
            localhost_profile: obj.localhost_profile(),
            workloads: &workloads,
            deleting,
        },
        &now,
    );
    ctx.metrics.profile_state(K::KIND_NAME, &name, &new);
    if old != Some(&new) {
        let key = (K::KIND, name.clone());
        if old.is_some_and(|o| progress_only(o, &new)) {
            let since = ctx.last_write.lock().expect("lock").get(&key).map(|t| t.elapsed());
            if let Some(since) = since.filter(|s| *s < PROGRESS_GAP) {
                return Ok(Action::requeue(PROGRESS_GAP - since));
            }
        }
        let api: Api<K> = Api::all(ctx.client.clone());
        let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": new});
        api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
            .await
            .map_err(Error::Kube)?;
        ctx.last_write
            .lock()
            .expect("lock")
            .insert(key, std::time::Instant::now());
        publish_transitions(ctx, obj.as_ref(), old, &new).await;
    }
    Ok(Action::requeue(RESYNC))
}

/// Deletion: hold while pods use the profile (saying so in the status); then let go, and
/// agents remove it from their nodes.
async fn cleanup<K: Profile>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let users = workloads(ctx, K::KIND, &obj.name_any());
    if users.is_empty() {
        return Ok(Action::await_change());
    }
    apply(obj, ctx, true).await?;
    Err(Error::InUse(users.len()))
}

async fn publish_transitions<K: Profile>(ctx: &Context, obj: &K, old: Option<&ProfileStatus>, new: &ProfileStatus) {
    let was = |type_: &str| {
        old.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let mut events = Vec::new();
    for c in &new.conditions {
        if was(&c.type_) == Some((c.status.clone(), c.reason.clone())) {
            continue;
        }
        let (type_, reason) = match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
            ("Accepted", "True", _) => (EventType::Normal, "Accepted"),
            ("Accepted", _, _) => (EventType::Warning, "Rejected"),
            ("Ready", "True", _) => (EventType::Normal, "Ready"),
            ("Ready", _, "Degraded") => (EventType::Warning, "Degraded"),
            ("Deleting", "True", _) => (EventType::Normal, "InUse"),
            _ => continue,
        };
        events.push(Event {
            type_,
            reason: reason.into(),
            note: Some(c.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    for event in events {
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an Event");
        }
    }
}

/// Logs, counts, and retries with a delay; a held deletion is checked again soon.
pub fn error_policy<K: Profile>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(K::KIND_NAME, error.metric_label());
    match error {
        Error::InUse(_) => Action::requeue(Duration::from_secs(5)),
        Error::Finalizer(inner)
            if matches!(**inner, kube::runtime::finalizer::Error::CleanupFailed(Error::InUse(_))) =>
        {
            Action::requeue(Duration::from_secs(5))
        }
        _ => {
            tracing::warn!(kind = K::KIND_NAME, name = obj.name_any(), %error, "reconcile failed");
            Action::requeue(Duration::from_secs(10))
        }
    }
}
