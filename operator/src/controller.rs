//! The profile controllers: fetch → validate → aggregate → write status, with a finalizer
//! that holds deletion while pods use the profile. One generic reconciler serves both kinds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, Store};
use kube::{Client, Resource, ResourceExt};
use palisade_domain::render::apparmor as aa_render;
use palisade_domain::selector::node_selector;
use palisade_domain::{
    AcceptedContent, AppArmorProfile, NodeCounts, ProfileKind, ProfileObject, ProfileState, ProfileStatus,
    SeccompProfile, SeccompProfileSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::pods;
use crate::reports::Want;
use crate::status::{self, Acceptance, NodeView, ProfileView, StatusInput};
use crate::validate::{self, ParserConfig, Verdict, Warnings};

/// Field manager of everything the operator writes.
pub const MANAGER: &str = "palisade-operator";
/// The finalizer that holds a profile's deletion while pods use it.
pub const FINALIZER: &str = "palisade.dev/in-use";
/// Longest wait before retrying a validation that could not run.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The finalizer name earlier versions used (`<plural>.palisade.dev`), migrated on sight.
pub fn legacy_finalizer<K: Profile>() -> String {
    format!("{}.palisade.dev", K::plural(&()))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("deletion waits for {0} pod(s) or ProfileBinding(s) that use the profile")]
    InUse(usize),
    #[error("validation could not run: {0}")]
    ValidationUnavailable(String),
}

impl Error {
    /// Label for the failures counter.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::InUse(_) => "in_use",
            Error::ValidationUnavailable(_) => "validation_unavailable",
        }
    }

    /// A deletion held while pods use the profile: expected, not a failure.
    pub fn is_held_deletion(&self) -> bool {
        match self {
            Error::InUse(_) => true,
            Error::Finalizer(inner) => matches!(
                inner.as_ref(),
                kube::runtime::finalizer::Error::CleanupFailed(Error::InUse(_))
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// (kind, uid, content digest) of one validation.
pub type ValidationKey = (ProfileKind, String, String);
type ProfileKey = (ProfileKind, String);

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub parser: ParserConfig,
    /// The subdirectory of the kubelet's seccomp directory the agents write to: pods name
    /// `<subdir>/<name>.json`.
    pub seccomp_subdir: String,
    pub seccomp: Store<DeserializeGuard<SeccompProfile>>,
    pub reports: Arc<crate::reports::NodeReports>,
    pub nodes: Store<Node>,
    pub liveness: Arc<Liveness>,
    pub pods: Store<Pod>,
    /// ProfileBindings: a profile one names is held from deletion like one a pod uses.
    pub bindings: Store<palisade_domain::ProfileBinding>,
    /// Validation verdicts by (kind, uid, content digest): `Ok` or the Invalid message.
    pub validated: Mutex<HashMap<ValidationKey, Result<Warnings, String>>>,
    /// When each profile's status was last written, for [`PROGRESS_GAP`].
    pub last_write: Mutex<HashMap<ProfileKey, std::time::Instant>>,
    /// Validations in a row that could not run, per profile (for the retry backoff).
    pub backoff: Mutex<HashMap<ProfileKey, u32>>,
    /// What was last reported about each object that does not parse, so its status and
    /// Event are written once, not on every event about it.
    pub unreadable: Mutex<HashMap<ProfileKey, Unreadable>>,
}

/// An object that does not parse, as last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    uid: String,
    generation: i64,
    error: String,
    /// Being deleted: for how many pods its deletion waits.
    held_for: Option<usize>,
}

/// The caches reconciles read (filled by the watches in `run`).
pub struct Caches {
    pub seccomp: Store<DeserializeGuard<SeccompProfile>>,
    pub reports: Arc<crate::reports::NodeReports>,
    pub nodes: Store<Node>,
    pub liveness: Arc<Liveness>,
    pub pods: Store<Pod>,
    pub bindings: Store<palisade_domain::ProfileBinding>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        parser: ParserConfig,
        seccomp_subdir: String,
        caches: Caches,
    ) -> Self {
        let Caches {
            seccomp,
            reports,
            nodes,
            liveness,
            pods,
            bindings,
        } = caches;
        Self {
            client,
            recorder,
            metrics,
            parser,
            seccomp_subdir,
            seccomp,
            reports,
            nodes,
            liveness,
            pods,
            bindings,
            validated: Mutex::default(),
            last_write: Mutex::default(),
            backoff: Mutex::default(),
            unreadable: Mutex::default(),
        }
    }

    /// Drops everything kept about profiles of `kind` that are not in `names` (deleted):
    /// cached verdicts, write times, backoff, what was said of unreadable ones, metrics.
    pub fn retain(&self, kind: ProfileKind, names: &BTreeSet<String>, uids: &BTreeSet<String>) {
        self.validated
            .lock()
            .expect("lock")
            .retain(|(k, uid, _), _| *k != kind || uids.contains(uid));
        self.last_write
            .lock()
            .expect("lock")
            .retain(|(k, n), _| *k != kind || names.contains(n));
        self.backoff
            .lock()
            .expect("lock")
            .retain(|(k, n), _| *k != kind || names.contains(n));
        self.unreadable
            .lock()
            .expect("lock")
            .retain(|(k, n), _| *k != kind || names.contains(n));
        self.metrics.retain(kind.slug(), names);
    }

    /// How many entries the per-profile maps hold (for tests and the memory benchmark).
    pub fn tracked(&self) -> usize {
        self.validated.lock().expect("lock").len()
            + self.last_write.lock().expect("lock").len()
            + self.backoff.lock().expect("lock").len()
            + self.unreadable.lock().expect("lock").len()
    }
}

/// What the generic reconciler needs from each profile kind.
pub trait Profile:
    ProfileObject
    + Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// What pods put in `localhostProfile` for the profile `name` (seccomp: under the agents'
    /// subdirectory).
    fn localhost_profile(name: &str, seccomp_subdir: &str) -> Option<String>;
    /// Validates the current content: what was accepted, or why not.
    fn validate(&self, ctx: &Context) -> impl Future<Output = Result<(AcceptedContent, Warnings), Verdict>> + Send;
}

impl Profile for SeccompProfile {
    fn localhost_profile(name: &str, seccomp_subdir: &str) -> Option<String> {
        Some(pods::seccomp_localhost_profile(seccomp_subdir, name))
    }
    async fn validate(&self, ctx: &Context) -> Result<(AcceptedContent, Warnings), Verdict> {
        // Bases that do not parse are as good as missing.
        let all: HashMap<String, SeccompProfileSpec> = palisade_domain::parsed(&ctx.seccomp.state())
            .map(|p| (p.name_any(), p.spec.clone()))
            .collect();
        // Rendered once: its digest keys the cache and is what gets accepted.
        let rendered = Arc::new(validate::render_seccomp(&self.name_any(), &self.spec, &all)?);
        let warnings = cached(
            ctx,
            self,
            &rendered.digest,
            validate::compile_seccomp_isolated(rendered.clone(), &ctx.parser),
        )
        .await?;
        Ok((
            AcceptedContent {
                generation: self.meta().generation.unwrap_or_default(),
                digest: rendered.digest.clone(),
                bases: rendered.bases.clone(),
            },
            warnings,
        ))
    }
}

impl Profile for AppArmorProfile {
    fn localhost_profile(_: &str, _: &str) -> Option<String> {
        None
    }
    async fn validate(&self, ctx: &Context) -> Result<(AcceptedContent, Warnings), Verdict> {
        let name = self.name_any();
        let rendered = aa_render::render(&name, &self.spec).map_err(|e| Verdict::Invalid(e.to_string()))?;
        let warnings = cached(ctx, self, &rendered.digest, async {
            validate::compile_apparmor(&name, &rendered, &ctx.parser)
                .await
                .map(|()| Warnings::default())
        })
        .await?;
        Ok((
            AcceptedContent {
                generation: self.meta().generation.unwrap_or_default(),
                digest: rendered.digest,
                bases: vec![],
            },
            warnings,
        ))
    }
}

/// What nodes must hold of a profile as its object says (the accepted content in its
/// status), for the expected sets.
pub fn want_of<K: Profile>(p: &K) -> Option<Want> {
    Want::of(
        K::KIND,
        &p.uid().unwrap_or_default(),
        p.state() == ProfileState::Enabled,
        palisade_domain::accepted_content(p.profile_status()).map(|a| a.digest.as_str()),
        p.selector(),
    )
}

/// Runs a validation once per (uid, content digest). Only verdicts about the content are
/// kept (accepted, or Invalid); a validation that could not run is tried again next time.
async fn cached<K: Profile>(
    ctx: &Context,
    obj: &K,
    digest: &str,
    run: impl Future<Output = Result<Warnings, Verdict>>,
) -> Result<Warnings, Verdict> {
    let key = (K::KIND, obj.uid().unwrap_or_default(), digest.to_string());
    if let Some(hit) = ctx.validated.lock().expect("lock").get(&key) {
        return hit.clone().map_err(Verdict::Invalid);
    }
    let result = run.await;
    let keep = match &result {
        Ok(w) => Ok(w.clone()),
        Err(Verdict::Invalid(m)) => Err(m.clone()),
        Err(Verdict::Transient(_)) => return result,
    };
    ctx.validated.lock().expect("lock").insert(key, keep);
    result
}

/// What uses the profile: pods that reference it (`namespace/name`) and ProfileBindings
/// that name it (`ProfileBinding namespace/name`).
pub fn workloads(ctx: &Context, kind: ProfileKind, name: &str) -> BTreeSet<String> {
    let pods = ctx
        .pods
        .state()
        .iter()
        .filter(|p| {
            pods::references(p, &ctx.seccomp_subdir)
                .iter()
                .any(|(k, n)| *k == kind && n == name)
        })
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect::<Vec<_>>();
    let bindings = ctx
        .bindings
        .state()
        .iter()
        .filter(|b| b.spec.profile_ref.kind == kind && b.spec.profile_ref.name == name)
        .map(|b| format!("ProfileBinding {}/{}", b.namespace().unwrap_or_default(), b.name_any()))
        .collect::<Vec<_>>();
    pods.into_iter().chain(bindings).collect()
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

/// The entry point kube-runtime calls for each profile, whether it parsed or not: one that
/// did not gets a status and an Event saying why ([`reconcile_unreadable`]).
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = K::KIND.slug(), name = %obj.name_any()))]
pub async fn reconcile<K: Profile>(obj: Arc<DeserializeGuard<K>>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer(K::KIND.slug());
    ctx.metrics.reconciled(K::KIND.slug());
    match &obj.0 {
        Ok(profile) => {
            ctx.unreadable.lock().expect("lock").remove(&(K::KIND, obj.name_any()));
            reconcile_profile(Arc::new(profile.clone()), &ctx).await
        }
        Err(invalid) => reconcile_unreadable::<K>(&obj, invalid, &ctx).await,
    }
}

/// A profile that parsed: the finalizer, then validation, aggregation and status.
async fn reconcile_profile<K: Profile>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    if obj.finalizers().contains(&legacy_finalizer::<K>()) {
        return migrate_finalizer(obj, ctx).await;
    }
    let api: Api<K> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(p) => apply(p.as_ref(), ctx, false).await,
            Finalizer::Cleanup(p) => cleanup(p.as_ref(), ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// An object that does not parse as this version reads its kind (a value only a newer CRD
/// allows, say): Accepted=False with reason `InvalidObject` and the parse error, by the
/// same status write as any invalid profile, and a Warning Event, once per generation and
/// error. Its deletion waits, as any profile's, while pods use it, and is then let go. It
/// waits for a change: nothing else can be done with it.
async fn reconcile_unreadable<K: Profile>(
    obj: &DeserializeGuard<K>,
    invalid: &InvalidObject,
    ctx: &Context,
) -> Result<Action> {
    let name = obj.name_any();
    let ours = [FINALIZER.to_string(), legacy_finalizer::<K>()];
    let deleting = obj.meta().deletion_timestamp.is_some();
    if deleting && !obj.finalizers().iter().any(|f| ours.contains(f)) {
        return Ok(Action::await_change());
    }
    let users = if deleting {
        workloads(ctx, K::KIND, &name)
    } else {
        BTreeSet::new()
    };
    if deleting && users.is_empty() {
        let rest = obj.finalizers().iter().filter(|f| !ours.contains(f)).cloned().collect();
        patch_finalizers::<K>(ctx, obj, rest).await?;
        return Ok(Action::await_change());
    }
    let key = (K::KIND, name.clone());
    let generation = obj.meta().generation.unwrap_or_default();
    let seen = Unreadable {
        uid: obj.uid().unwrap_or_default(),
        generation,
        error: invalid.error.clone(),
        held_for: deleting.then_some(users.len()),
    };
    if ctx.unreadable.lock().expect("lock").get(&key) != Some(&seen) {
        let new = status::build(
            StatusInput {
                old: None,
                generation,
                acceptance: Acceptance::Unreadable(&invalid.error),
                accepted: None,
                warnings: None,
                state: ProfileState::Enabled,
                counts: NodeCounts::default(),
                failures: vec![],
                left_out: vec![],
                localhost_profile: K::localhost_profile(&name, &ctx.seccomp_subdir),
                workloads: &users,
                deleting,
                learning: None,
            },
            &Time(k8s_openapi::jiff::Timestamp::now()),
        );
        tracing::warn!(error = invalid.error, "the object does not parse");
        write_status::<K>(ctx, obj, None, &new).await?;
        ctx.unreadable.lock().expect("lock").insert(key, seen);
    }
    if deleting {
        return Err(Error::InUse(users.len()));
    }
    Ok(Action::await_change())
}

/// Replaces the finalizer name earlier versions used with [`FINALIZER`]. A profile already
/// being deleted cannot gain a finalizer: its deletion is held under the old name, which is
/// released once no pod uses the profile. Guarded by resourceVersion, so a concurrent change
/// makes the patch fail and the reconcile run again.
async fn migrate_finalizer<K: Profile>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let legacy = legacy_finalizer::<K>();
    let deleting = obj.meta().deletion_timestamp.is_some();
    if deleting {
        cleanup(obj.as_ref(), ctx).await?;
    }
    let mut finalizers: Vec<String> = obj.finalizers().iter().filter(|f| **f != legacy).cloned().collect();
    if !deleting && !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    patch_finalizers::<K>(ctx, obj.as_ref(), finalizers).await?;
    tracing::info!(from = legacy, to = FINALIZER, "migrated the finalizer");
    Ok(Action::await_change())
}

/// Sets an object's finalizers, guarded by the resourceVersion read.
async fn patch_finalizers<K: Profile>(ctx: &Context, obj: &impl Resource, finalizers: Vec<String>) -> Result<()> {
    let patch = json!({"metadata": {"resourceVersion": obj.resource_version(), "finalizers": finalizers}});
    Api::<DeserializeGuard<K>>::all(ctx.client.clone())
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

/// Validate, aggregate, write status when it changed.
async fn apply<K: Profile>(obj: &K, ctx: &Context, deleting: bool) -> Result<Action> {
    let name = obj.name_any();
    let verdict = match node_selector(obj.selector()) {
        Err(message) => Err(Verdict::Invalid(message)),
        Ok(_) => obj.validate(ctx).await,
    };
    let old = obj.profile_status();
    // Nodes keep the last accepted content (and what it warns about) until new content is
    // accepted.
    let (accepted, warnings) = match &verdict {
        Ok((content, warnings)) => (Some(content.clone()), Some(warnings.clone())),
        Err(_) => (old.and_then(|s| s.accepted.clone()), None),
    };
    let acceptance = match &verdict {
        Ok(_) => Acceptance::Accepted,
        Err(Verdict::Invalid(m)) => Acceptance::Invalid(m),
        Err(Verdict::Transient(m)) => Acceptance::Transient(m),
    };
    let on = on_nodes(obj, ctx, accepted.as_ref());
    let workloads = workloads(ctx, K::KIND, &name);
    let key = (K::KIND, name.clone());
    let uid = obj.uid().unwrap_or_default();
    let new = status::build(
        StatusInput {
            old,
            generation: obj.meta().generation.unwrap_or_default(),
            acceptance,
            accepted: accepted.clone(),
            warnings,
            state: obj.state(),
            counts: on.counts,
            failures: on.failures,
            left_out: on.left_out,
            localhost_profile: K::localhost_profile(&name, &ctx.seccomp_subdir),
            workloads: &workloads,
            deleting,
            learning: accepted
                .as_ref()
                .and_then(|a| ctx.reports.learning(&key, &uid, &a.digest)),
        },
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    ctx.metrics.profile_state(K::KIND.slug(), &name, &new);
    if old != Some(&new) {
        if let Some(wait) = progress_wait(ctx, &key, old, &new) {
            return Ok(Action::requeue(wait));
        }
        write_status::<K>(ctx, obj, old, &new).await?;
    }
    match verdict {
        Err(Verdict::Transient(message)) => Err(Error::ValidationUnavailable(message)),
        _ => {
            ctx.backoff.lock().expect("lock").remove(&key);
            // Event-driven: the profile, its nodes' reports and expectations, Nodes,
            // heartbeats and pods all route changes here; nothing is looked at on a timer.
            Ok(Action::await_change())
        }
    }
}

/// Counts the nodes by where the profile stands on each (judged against `accepted`, the
/// content the reconcile just accepted or the last accepted), with the failures.
fn on_nodes<K: Profile>(obj: &K, ctx: &Context, accepted: Option<&AcceptedContent>) -> status::Aggregate {
    let live = ctx.liveness.live();
    let uid = obj.uid().unwrap_or_default();
    let nodes = ctx.nodes.state();
    let empty = BTreeMap::new();
    let named: Vec<(&str, &BTreeMap<String, String>)> = nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.as_deref().unwrap_or_default(),
                n.metadata.labels.as_ref().unwrap_or(&empty),
            )
        })
        .collect();
    let want = Want::of(
        K::KIND,
        &uid,
        obj.state() == ProfileState::Enabled,
        accepted.map(|a| a.digest.as_str()),
        obj.selector(),
    );
    let key = (K::KIND, obj.name_any());
    let on = ctx.reports.on_nodes(&key, want.as_ref(), named.iter().copied());
    let views: Vec<NodeView<'_>> = named
        .iter()
        .map(|(node, labels)| NodeView {
            name: node,
            labels,
            live: live.contains(*node),
            on: &on[node],
            not_enforced: accepted
                .map(|a| ctx.reports.not_enforced(node, &key, &uid, &a.digest))
                .unwrap_or_default(),
        })
        .collect();
    let view = ProfileView {
        uid: &uid,
        accepted,
        selector: obj.selector(),
        state: obj.state(),
    };
    status::aggregate(&view, &views)
}

/// How long a status write that only moves counts waits, to keep [`PROGRESS_GAP`] since
/// the profile's last write; `None`: write now.
fn progress_wait(
    ctx: &Context,
    key: &ProfileKey,
    old: Option<&ProfileStatus>,
    new: &ProfileStatus,
) -> Option<Duration> {
    if !old.is_some_and(|o| progress_only(o, new)) {
        return None;
    }
    let since = ctx.last_write.lock().expect("lock").get(key).map(|t| t.elapsed());
    since.filter(|s| *s < PROGRESS_GAP).map(|s| PROGRESS_GAP - s)
}

/// Writes a profile's status (server-side apply, the operator's field manager) and
/// publishes an Event for each condition that changed.
async fn write_status<K: Profile>(
    ctx: &Context,
    obj: &impl Resource<DynamicType = ()>,
    old: Option<&ProfileStatus>,
    new: &ProfileStatus,
) -> Result<()> {
    let name = obj.name_any();
    // Read back leniently: the object itself may be one that does not parse.
    let api: Api<DeserializeGuard<K>> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": new});
    api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
        .await
        .map_err(Error::Kube)?;
    ctx.last_write
        .lock()
        .expect("lock")
        .insert((K::KIND, name), std::time::Instant::now());
    publish_transitions(ctx, obj, old, new).await;
    Ok(())
}

/// Deletion: hold while pods use the profile (saying so in the status); then let go, and
/// agents remove it from their nodes.
async fn cleanup<K: Profile>(obj: &K, ctx: &Context) -> Result<Action> {
    let users = workloads(ctx, K::KIND, &obj.name_any());
    if users.is_empty() {
        return Ok(Action::await_change());
    }
    apply(obj, ctx, true).await?;
    Err(Error::InUse(users.len()))
}

async fn publish_transitions(
    ctx: &Context,
    obj: &impl Resource<DynamicType = ()>,
    old: Option<&ProfileStatus>,
    new: &ProfileStatus,
) {
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
            ("Accepted", "Unknown", _) => (EventType::Warning, "ValidationError"),
            ("Accepted", _, status::REASON_INVALID_OBJECT) => (EventType::Warning, status::REASON_INVALID_OBJECT),
            ("Accepted", _, _) => (EventType::Warning, "Rejected"),
            ("Ready", "False", "NoMatchingNodes") => (EventType::Warning, "NoMatchingNodes"),
            ("Ready", "True", _) => (EventType::Normal, "Ready"),
            ("Ready", _, "Degraded") => (EventType::Warning, "Degraded"),
            ("Deleting", "True", _) => (EventType::Normal, "InUse"),
            ("SyscallsIgnored", "True", reason) => (EventType::Warning, reason),
            ("RulesNotEnforced", "True", reason) => (EventType::Warning, reason),
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

/// Logs, counts, and retries with a delay; a held deletion is checked again soon and is
/// not a failure; a validation that could not run is retried with exponential backoff.
pub fn error_policy<K: Profile>(obj: Arc<DeserializeGuard<K>>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_held_deletion() {
        return Action::requeue(Duration::from_secs(5));
    }
    ctx.metrics.failed(K::KIND.slug(), error.metric_label());
    let key = (K::KIND, obj.name_any());
    let attempts = {
        let mut backoff = ctx.backoff.lock().expect("lock");
        let n = backoff.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = palisade_runtime::backoff::delay(Duration::from_secs(1), MAX_BACKOFF, attempts);
    tracing::warn!(kind = K::KIND.name(), name = obj.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A profile as the caches hold it.
pub struct Cached {
    pub status: Option<palisade_domain::ProfileStatus>,
    /// Its deletion has begun (held while something uses it).
    pub deleting: bool,
}

/// The cached profile `name` of `kind`: `None` when there is none, `Err` with the parse
/// error when it does not parse.
pub fn cached_profile(
    seccomp: &Store<DeserializeGuard<SeccompProfile>>,
    apparmor: &Store<DeserializeGuard<AppArmorProfile>>,
    kind: palisade_domain::ProfileKind,
    name: &str,
) -> Option<Result<Cached, String>> {
    fn of<K: Profile>(p: &DeserializeGuard<K>) -> Result<Cached, String> {
        p.0.as_ref()
            .map(|p| Cached {
                status: p.profile_status().cloned(),
                deleting: p.meta().deletion_timestamp.is_some(),
            })
            .map_err(|e| e.to_string())
    }
    match kind {
        palisade_domain::ProfileKind::SeccompProfile => seccomp.get(&reflector::ObjectRef::new(name)).map(|p| of(&p)),
        palisade_domain::ProfileKind::AppArmorProfile => apparmor.get(&reflector::ObjectRef::new(name)).map(|p| of(&p)),
    }
}
