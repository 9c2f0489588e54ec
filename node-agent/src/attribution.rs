//! Which pod and container a process on this node belongs to: its cgroup, read from
//! `/proc`, matched against the pods the operator publishes for this node
//! (`spec.learningPods` of its report). Learning and denials both attribute records with it;
//! the agent reads no pods itself (RBAC cannot narrow a pod list to one node).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::Api;
use palisade_domain::learn::Record;
use palisade_domain::pods::{LearningContainer, LearningPod};
use palisade_domain::{NodeProfileStatus, ProfileKind};

/// Pod UID and container ID from a process's `/proc/<pid>/cgroup` (cgroup v2, the
/// systemd and cgroupfs drivers; a path relative to the agent's own cgroup namespace,
/// `/../../besteffort/pod<UID>/<ID>`, too): the first pod directory, and the container
/// directly beneath it. Anything deeper is the container's own (a container that may write
/// its cgroup could make `…/pod<another's UID>/<another's ID>` there).
pub fn pod_of_cgroup(text: &str) -> Option<(String, Option<String>)> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut parts = path
        .split('/')
        .map(|p| p.trim_end_matches(".slice").trim_end_matches(".scope"));
    let pod = parts.find_map(|part| {
        part.rfind("-pod")
            .map(|i| i + 4)
            .or_else(|| part.starts_with("pod").then_some(3))
            .map(|i| part[i..].replace('_', "-"))
    })?;
    let container = parts.next().and_then(|part| {
        let id = part.rsplit('-').next().unwrap_or(part);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    });
    Some((pod, container))
}

/// Where a record's process ran, when it still runs: its pod among this node's published
/// pods, and its container when the kubelet has reported it.
pub enum Process<'a> {
    /// In a published pod.
    In(&'a LearningPod, Option<&'a LearningContainer>),
    /// Running, but not in a published pod (the host, a pod with no Palisade profile).
    Elsewhere,
    /// Exited (its cgroup can no longer be read).
    Gone,
}

/// This node's pods as the operator publishes them in the node's report: those that use a
/// learning profile, and, when denials are on, every pod that uses a Palisade profile.
pub struct NodePods {
    client: Client,
    node: String,
    proc_root: PathBuf,
    pods: HashMap<String, LearningPod>,
    listed: Option<std::time::Instant>,
}

impl NodePods {
    pub fn new(client: Client, node: String, proc_root: PathBuf) -> Self {
        Self {
            client,
            node,
            proc_root,
            pods: HashMap::new(),
            listed: None,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &LearningPod> {
        self.pods.values()
    }

    /// The published pod of a record's process (read again when the process's pod or
    /// container is not known yet: a new or restarted container is not there until the
    /// kubelet reports it and the operator publishes it).
    pub async fn of_record(&mut self, r: &Record) -> Process<'_> {
        let cgroup = r
            .field("pid")
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|pid| std::fs::read_to_string(self.proc_root.join(pid).join("cgroup")).ok());
        let Some(cgroup) = cgroup else {
            self.refresh(false).await;
            return Process::Gone;
        };
        let Some((pod_uid, container)) = pod_of_cgroup(&cgroup) else {
            return Process::Elsewhere;
        };
        let known = self.pods.get(&pod_uid).is_some_and(|p| {
            container
                .as_deref()
                .is_none_or(|id| p.containers.iter().any(|c| c.id == id))
        });
        self.refresh(known).await;
        match self.pods.get(&pod_uid) {
            Some(pod) => Process::In(
                pod,
                container
                    .as_deref()
                    .and_then(|id| pod.containers.iter().find(|c| c.id == id)),
            ),
            None => Process::Elsewhere,
        }
    }

    /// Whether a published pod uses the profile: only such a pod's processes can make
    /// records of it, so a record of any other is not the workload's (a process confined by
    /// hand on the host, or a forged line).
    pub async fn used(&mut self, kind: ProfileKind, name: &str) -> bool {
        let known = self.users(kind, name).next().is_some();
        self.refresh(known).await;
        self.users(kind, name).next().is_some()
    }

    /// The published pods that use a profile.
    pub fn users(&self, kind: ProfileKind, name: &str) -> impl Iterator<Item = &LearningPod> {
        self.pods.values().filter(move |p| match kind {
            ProfileKind::AppArmorProfile => p.apparmor.iter().any(|a| a == name),
            ProfileKind::SeccompProfile => {
                p.seccomp.as_deref() == Some(name) || p.containers.iter().any(|c| c.seccomp.as_deref() == Some(name))
            }
        })
    }

    /// Reads the pods the operator published for this node: when a record names one not
    /// `known`, at most every 2 seconds, and every 30 seconds regardless (a pod that went
    /// stops counting).
    pub async fn refresh(&mut self, known: bool) {
        let gap = Duration::from_secs(if known { 30 } else { 2 });
        if self.listed.is_some_and(|t| t.elapsed() < gap) {
            return;
        }
        self.listed = Some(std::time::Instant::now());
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        match api.get_opt(&self.node).await {
            Ok(nps) => {
                self.pods = nps
                    .into_iter()
                    .flat_map(|n| n.spec.learning_pods)
                    .map(|p| (p.uid.clone(), p))
                    .collect()
            }
            Err(e) => tracing::warn!(error = %e, "reading this node's published pods failed"),
        }
    }
}

/// Now, in seconds since the epoch (as records and the reports count time).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A time in seconds since the epoch as the API writes it.
pub fn time_of(secs: f64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond((secs * 1000.0).round() as i64).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_containers_are_found_in_cgroup_paths() {
        let pod_and_container = Some((
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab".to_string(),
            Some("4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef".to_string()),
        ));
        let systemd = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8f4f3e_6a1b_4c2d_9e8f_0123456789ab.slice/cri-containerd-4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef.scope\n";
        assert_eq!(pod_of_cgroup(systemd), pod_and_container);
        let cgroupfs = "0::/kubepods/burstable/pod0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab/4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef\n";
        assert_eq!(
            pod_of_cgroup(cgroupfs).unwrap().0,
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab"
        );
        assert_eq!(pod_of_cgroup("0::/system.slice/containerd.service\n"), None);
        // A cgroup namespace shows the path relative to the reader's (the agent's own).
        let relative = "0::/../../besteffort/pod0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab/4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef\n";
        assert_eq!(pod_of_cgroup(relative), pod_and_container);
        // A container that writes its own cgroup cannot pass for another pod's.
        let nested = format!(
            "0::/kubepods/besteffort/pod{}/{}/pod{}/{}\n",
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab",
            "4".repeat(64),
            "99999999-6a1b-4c2d-9e8f-0123456789ab",
            "9".repeat(64)
        );
        assert_eq!(
            pod_of_cgroup(&nested),
            Some(("0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab".into(), Some("4".repeat(64))))
        );
    }
}
