//! Denials (`--denials`): what the kernel refused a container confined by a Palisade
//! profile, in Enforce or Complain mode alike, as Warning Events on the pod
//! (`AppArmorDenied`, `SeccompDenied`), an Event on the profile, and the metric
//! `palisade_agent_denials_total{kind,profile}`.
//!
//! A record counts only for a Palisade profile that a published pod of this node uses, and
//! is attributed to that pod by its process's cgroup; a process that has exited (a killed
//! one always has) is attributed when a single pod of this node uses the profile, and
//! otherwise counts for the profile alone. Records of anything else are ignored. Events are
//! aggregated per (pod, container, profile, operation, target) and written within a
//! per-node budget ([`palisade_domain::denials`]).

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_domain::denials::{
    ANNOTATION_CONTAINER, ANNOTATION_KIND, ANNOTATION_OPERATION, ANNOTATION_PROFILE, ANNOTATION_TARGET, Aggregator,
    PodRef, REPORTER, Subject, Write, message, refusal_of,
};
use palisade_domain::learn::Record;
use palisade_domain::{AppArmorProfile, ProfileKind, SeccompProfile};
use serde_json::json;

use crate::audit::{NodePods, Process, now_secs};
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
        let kind = refusal.kind;
        let process = pods.of_record(r).await;
        if let Process::In(_, None) = process {
            let first = since.unwrap_or_else(now_secs);
            if now_secs() - first < PENDING_SECS && self.pending.len() < MAX_PENDING {
                self.pending.push_back((r.clone(), first));
                return;
            }
        }
        // The profile, and the pod and container when known.
        let (profile, pod, container) = match (&refusal.profile, process) {
            (Some(profile), Process::In(pod, container)) => {
                // The pod must use the profile the record names.
                if !pod.apparmor.contains(profile) {
                    return;
                }
                (profile.clone(), Some(pod.clone()), Some(container_name(container)))
            }
            (None, Process::In(pod, container)) => {
                let name = match container {
                    Some(c) => c.seccomp.clone(),
                    None => pod.seccomp.clone(),
                };
                let Some(name) = name else { return };
                (name, Some(pod.clone()), Some(container_name(container)))
            }
            (_, Process::Elsewhere) => return,
            (Some(profile), Process::Gone) => {
                let users: Vec<_> = pods.users(kind, profile).cloned().collect();
                if users.is_empty() {
                    return;
                }
                let pod = (users.len() == 1).then(|| users[0].clone());
                (profile.clone(), pod, None)
            }
            (None, Process::Gone) => {
                // A seccomp record of a process that exited: the profile only when a single
                // Palisade seccomp profile is in use on this node, the pod when one uses it.
                let in_use: std::collections::BTreeSet<String> = pods
                    .all()
                    .flat_map(|p| {
                        p.seccomp
                            .iter()
                            .chain(p.containers.iter().filter_map(|c| c.seccomp.as_ref()))
                    })
                    .cloned()
                    .collect();
                if in_use.len() != 1 {
                    return;
                }
                let profile = in_use.into_iter().next().expect("one");
                let users: Vec<_> = pods.users(kind, &profile).cloned().collect();
                let pod = (users.len() == 1).then(|| users[0].clone());
                (profile, pod, None)
            }
        };
        if self.profile_uid(kind, &profile).is_none() {
            return;
        }
        let label = if self.named.contains(&profile) || self.named.len() < MAX_METRIC_PROFILES {
            self.named.insert(profile.clone());
            profile.clone()
        } else {
            "other".to_string()
        };
        self.metrics.denial(kind, label);
        let subject = pod.map(|p| {
            let (namespace, name) = p.name.split_once('/').unwrap_or(("", &p.name));
            Subject::Pod {
                pod: PodRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: p.uid.clone(),
                },
                container: container.unwrap_or_else(|| "(exited process)".to_string()),
                kind,
                profile: profile.clone(),
                operation: refusal.operation.clone(),
                target: refusal.target.clone(),
            }
        });
        self.series.record(subject, kind, &profile, &refusal.detail, r.time);
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
                self.series.failed(&w);
                self.metrics.denial_event(false);
            } else {
                self.metrics.denial_event(true);
            }
        }
    }

    /// Creates or updates one series' Event (core/v1, as the kubelet's: `count`,
    /// `firstTimestamp`, `lastTimestamp`), named after its subject so that a repeat updates it.
    async fn write(&self, w: &Write) -> kube::Result<()> {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        w.subject.hash(&mut h);
        self.node.hash(&mut h);
        let hash = h.finish();
        let time = crate::learn::time_of;
        let msg = message(&w.subject, &w.series, &self.node);
        let (namespace, name, involved, annotations) = match &w.subject {
            Subject::Pod {
                pod,
                container,
                kind,
                profile,
                operation,
                target,
            } => (
                pod.namespace.clone(),
                format!("{}.palisade-{hash:016x}", clip_name(&pod.name)),
                json!({"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid}),
                json!({
                    ANNOTATION_KIND: kind.name(),
                    ANNOTATION_PROFILE: profile,
                    ANNOTATION_CONTAINER: container,
                    ANNOTATION_OPERATION: operation,
                    ANNOTATION_TARGET: target,
                }),
            ),
            Subject::Profile { kind, profile } => (
                "default".to_string(),
                format!("{}.palisade-{hash:016x}", clip_name(profile)),
                json!({"apiVersion": palisade_domain::api_version(), "kind": kind.name(), "name": profile,
                    "uid": self.profile_uid(*kind, profile).unwrap_or_default()}),
                json!({ANNOTATION_KIND: kind.name(), ANNOTATION_PROFILE: profile}),
            ),
        };
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), &namespace);
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
        let event = serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &event).await {
            // The agent restarted, or the series was forgotten and came back.
            Err(kube::Error::Api(e)) if e.code == 409 => api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&update))
                .await
                .map(drop),
            other => other.map(drop),
        }
    }
}

/// A container's name as published, or what is known of it.
fn container_name(c: Option<&palisade_domain::pods::LearningContainer>) -> String {
    c.and_then(|c| c.name.clone())
        .unwrap_or_else(|| "(container not reported)".to_string())
}

/// A name part short enough for an Event name (253 characters with its suffix).
fn clip_name(name: &str) -> &str {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['.', '-'])
}
