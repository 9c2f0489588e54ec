//! Denials (`--denials`): what the kernel refused a container confined by a Palisade
//! profile, in Enforce or Complain mode alike, as Warning Events on the pod
//! (`AppArmorDenied`, `SeccompDenied`), an Event on the profile, and the metric
//! `palisade_agent_denials_total{kind,profile}`.
//!
//! A record counts for a pod only while its process runs: its cgroup names the pod among
//! the published pods of this node, and the pod uses the profile. A process that has exited
//! (a killed one always has) is never given to a pod: its AppArmor denial is reported on the
//! profile, its seccomp denial on the node, for no profile (the record does not say whose
//! filter refused). Records of anything else, and from before the agent started, are
//! ignored. Events are aggregated per (pod, container, profile, operation, target) and
//! written within a per-node budget ([`palisade_domain::denials`]).

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_domain::denials::Refusal;
use palisade_domain::denials::{
    ANNOTATION_CONTAINER, ANNOTATION_KIND, ANNOTATION_OPERATION, ANNOTATION_PROFILE, ANNOTATION_TARGET, Aggregator,
    PodRef, REPORTER, Subject, Write, event_name, message, refusal_of,
};
use palisade_domain::learn::Record;
use palisade_domain::pods::{LearningContainer, LearningPod};
use palisade_domain::{AppArmorProfile, ProfileKind, SeccompProfile};
use serde_json::json;

use crate::attribution::{NodePods, Process, now_secs, time_of};
use crate::metrics::Metrics;

/// Most distinct profiles the denials metric names; others share `profile="other"`.
pub const MAX_METRIC_PROFILES: usize = 256;

pub struct Denials {
    client: Client,
    node: String,
    apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    seccomp: Store<DeserializeGuard<SeccompProfile>>,
    metrics: Metrics,
    series: Aggregator,
    named: std::collections::BTreeSet<String>,
    /// Records of a running process whose container the kubelet has not reported yet (a
    /// container's first records come before), with when they were first tried: tried
    /// again at each read for [`PENDING_SECS`].
    pending: std::collections::VecDeque<(Record, f64)>,
    /// When this agent started: older records are not read as denials.
    started: f64,
}

/// Most records waiting for their container to be reported.
const MAX_PENDING: usize = 256;
/// How long a record waits for its container before it counts without the container's name.
const PENDING_SECS: f64 = 15.0;

impl Denials {
    pub fn new(
        client: Client,
        node: String,
        apparmor: Store<DeserializeGuard<AppArmorProfile>>,
        seccomp: Store<DeserializeGuard<SeccompProfile>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            node,
            apparmor,
            seccomp,
            metrics,
            series: Aggregator::new(now_secs()),
            named: Default::default(),
            pending: Default::default(),
            started: now_secs(),
        }
    }

    /// The UID of a Palisade profile of this name, when there is one (a lookup by name in
    /// the watch's cache: a storm costs no scan of the profiles).
    fn profile_uid(&self, kind: ProfileKind, name: &str) -> Option<String> {
        use kube::runtime::reflector::ObjectRef;
        match kind {
            ProfileKind::AppArmorProfile => self
                .apparmor
                .get(&ObjectRef::new(name))
                .and_then(|o| o.0.as_ref().ok().map(|p| p.uid().unwrap_or_default())),
            ProfileKind::SeccompProfile => self
                .seccomp
                .get(&ObjectRef::new(name))
                .and_then(|o| o.0.as_ref().ok().map(|p| p.uid().unwrap_or_default())),
        }
    }

    pub async fn handle(&mut self, r: &Record, pods: &mut NodePods) {
        self.attribute(r, pods, None).await
    }

    /// Counts a record for its pod, container and profile; `since`: when a pending record
    /// was first tried.
    async fn attribute(&mut self, r: &Record, pods: &mut NodePods, since: Option<f64>) {
        let Some(refusal) = refusal_of(r) else { return };
        // What happened before this agent started was counted then, or concerns processes
        // whose PIDs may belong to others now.
        if r.time < self.started {
            return;
        }
        let kind = refusal.kind;
        let process = pods.of_record(r).await;
        if let Process::In(_, None) = process {
            let first = since.unwrap_or_else(now_secs);
            if now_secs() - first < PENDING_SECS && self.pending.len() < MAX_PENDING {
                self.pending.push_back((r.clone(), first));
                return;
            }
        }
        let (subject, profile) = match (&refusal.profile, process) {
            (_, Process::Elsewhere) => return,
            (Some(profile), Process::In(pod, container)) => {
                // The pod must use the profile the record names.
                if !pod.apparmor.contains(profile) {
                    return;
                }
                (pod_subject(pod, container, &refusal, profile), Some(profile.clone()))
            }
            (None, Process::In(pod, container)) => {
                let name = match container {
                    Some(c) => c.seccomp.clone(),
                    None => pod.seccomp.clone(),
                };
                let Some(name) = name else { return };
                (pod_subject(pod, container, &refusal, &name), Some(name))
            }
            // The process exited: its pod is not known, whatever pod uses the profile (a
            // process of another may be confined by it too). The kernel's label names the
            // AppArmor profile; while no pod of this node uses it, the record is not about
            // a workload here.
            (Some(profile), Process::Gone) => {
                if !pods.used(kind, profile).await {
                    return;
                }
                let subject = Subject::Unattributed {
                    kind,
                    profile: Some(profile.clone()),
                    operation: refusal.operation.clone(),
                    target: refusal.target.clone(),
                };
                (subject, Some(profile.clone()))
            }
            // A seccomp record does not say whose filter refused: a process may set its own.
            // Reported on the node, for no profile.
            (None, Process::Gone) => {
                let subject = Subject::Unattributed {
                    kind,
                    profile: None,
                    operation: refusal.operation.clone(),
                    target: refusal.target.clone(),
                };
                (subject, None)
            }
        };
        if let Some(p) = &profile
            && self.profile_uid(kind, p).is_none()
        {
            return;
        }
        let label = match &profile {
            None => UNATTRIBUTED.to_string(),
            Some(p) if self.named.contains(p) || self.named.len() < MAX_METRIC_PROFILES => {
                self.named.insert(p.clone());
                p.clone()
            }
            Some(_) => "other".to_string(),
        };
        self.metrics.denial(kind, label);
        self.series.record(subject, profile.as_deref(), &refusal.detail, r.time);
    }

    /// Tries the pending records again, then writes the Events that are due.
    pub async fn flush(&mut self, pods: &mut NodePods) {
        for (r, first) in std::mem::take(&mut self.pending) {
            self.attribute(&r, pods, Some(first)).await;
        }
        if self.series.overflowed > 0 {
            tracing::warn!(
                denials = self.series.overflowed,
                "denials of new series found the table full: counted for their profiles only"
            );
            self.series.overflowed = 0;
        }
        for w in self.series.due(now_secs()) {
            if let Err(e) = self.write(&w).await {
                tracing::warn!(error = %e, reason = w.subject.reason(), "writing a denial Event failed; will retry");
                self.series.failed(&w, now_secs());
                self.metrics.denial_event(false);
            } else {
                self.metrics.denial_event(true);
            }
        }
    }

    /// Where a series' Event goes and what it is about: its namespace, the object it is named
    /// after, its `involvedObject` and its annotations (the fields the CLI reads).
    fn about(&self, subject: &Subject) -> (String, String, serde_json::Value, serde_json::Value) {
        let profile_object = |kind: ProfileKind, profile: &str| {
            json!({"apiVersion": palisade_domain::api_version(), "kind": kind.name(), "name": profile,
                "uid": self.profile_uid(kind, profile).unwrap_or_default()})
        };
        match subject {
            Subject::Pod {
                pod,
                container,
                kind,
                profile,
                operation,
                target,
            } => (
                pod.namespace.clone(),
                pod.name.clone(),
                json!({"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid}),
                json!({
                    ANNOTATION_KIND: kind.name(),
                    ANNOTATION_PROFILE: profile,
                    ANNOTATION_CONTAINER: container,
                    ANNOTATION_OPERATION: operation,
                    ANNOTATION_TARGET: target,
                }),
            ),
            Subject::Unattributed {
                kind,
                profile: Some(profile),
                operation,
                target,
            } => (
                "default".to_string(),
                profile.clone(),
                profile_object(*kind, profile),
                json!({ANNOTATION_KIND: kind.name(), ANNOTATION_PROFILE: profile,
                    ANNOTATION_OPERATION: operation, ANNOTATION_TARGET: target}),
            ),
            Subject::Unattributed {
                kind,
                profile: None,
                operation,
                target,
            } => (
                "default".to_string(),
                self.node.clone(),
                json!({"apiVersion": "v1", "kind": "Node", "name": self.node}),
                json!({ANNOTATION_KIND: kind.name(), ANNOTATION_OPERATION: operation, ANNOTATION_TARGET: target}),
            ),
            Subject::Profile { kind, profile } => (
                "default".to_string(),
                profile.clone(),
                profile_object(*kind, profile),
                json!({ANNOTATION_KIND: kind.name(), ANNOTATION_PROFILE: profile}),
            ),
        }
    }

    /// Creates or updates one series' Event (core/v1, as the kubelet's: `count`,
    /// `firstTimestamp`, `lastTimestamp`), named after its subject so that a repeat updates it.
    async fn write(&self, w: &Write) -> kube::Result<()> {
        let time = time_of;
        let msg = message(&w.subject, &w.series, &self.node);
        let (namespace, object, involved, annotations) = self.about(&w.subject);
        let name = event_name(&object, &w.subject, &self.node);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let update = json!({
            "count": w.series.count,
            "lastTimestamp": time(w.series.last),
            "message": msg,
        });
        if !w.first {
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&update)).await {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => return other.map(drop),
            }
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "involvedObject": involved,
            "reason": w.subject.reason(),
            "message": msg,
            "type": "Warning",
            "count": w.series.count,
            "firstTimestamp": time(w.series.first),
            "lastTimestamp": time(w.series.last),
            "source": {"component": REPORTER, "host": self.node},
            "reportingComponent": REPORTER,
            "reportingInstance": self.node,
        });
        let event: Event = serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &event).await {
            // The agent restarted, or the series was forgotten and came back: the Event is
            // updated if it is this agent's about the same object. One that someone else
            // made under the name (names can be predicted) is left alone, and so is the series.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&name).await?;
                let ours = existing.reporting_component.as_deref() == Some(REPORTER)
                    && existing.reporting_instance.as_deref() == Some(self.node.as_str())
                    && existing.involved_object.uid == event.involved_object.uid
                    && existing.involved_object.name == event.involved_object.name;
                if !ours {
                    tracing::warn!(
                        event = name,
                        namespace,
                        "an Event of another author has this denial's name: left alone"
                    );
                    return Ok(());
                }
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&update))
                    .await
                    .map(drop)
            }
            other => other.map(drop),
        }
    }
}

/// The metric's profile label for seccomp denials of processes that exited (the record does
/// not name the filter).
pub const UNATTRIBUTED: &str = "(unattributed)";

/// The subject of a denial by a process of a published pod.
fn pod_subject(pod: &LearningPod, container: Option<&LearningContainer>, refusal: &Refusal, profile: &str) -> Subject {
    let (namespace, name) = pod.name.split_once('/').unwrap_or(("", &pod.name));
    Subject::Pod {
        pod: PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: pod.uid.clone(),
        },
        container: container_name(container),
        kind: refusal.kind,
        profile: profile.to_string(),
        operation: refusal.operation.clone(),
        target: refusal.target.clone(),
    }
}

/// A container's name as published, or what is known of it.
fn container_name(c: Option<&LearningContainer>) -> String {
    c.and_then(|c| c.name.clone())
        .unwrap_or_else(|| "(container not reported)".to_string())
}
