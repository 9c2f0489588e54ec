//! What the agent tells the cluster: its NodeProfileStatus, a heartbeat Lease, and Events
//! on profiles that fail here.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use palisade_domain::{AGENT_LEASE_LABEL, agent_lease_name};
use palisade_domain::{
    InstalledSet, InstalledSummary, NODE_STATUS_VERSION, NodeCapabilities, NodeProfile, NodeProfileState,
    NodeProfileStatus, NodeProfileStatusStatus, ProfileKind, installed_key,
};
use serde_json::json;

/// How long a heartbeat stays valid by default; the agent renews it at a third of this.
pub const LEASE_SECONDS: u32 = 60;

/// A profile that failed on this node, for an Event on the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ProfileKind,
    pub name: String,
    pub uid: String,
    pub message: String,
}

pub struct StatusWriter {
    client: Client,
    node: String,
    namespace: String,
    manager: String,
    recorder: Recorder,
    last: Option<NodeProfileStatusStatus>,
    /// Every entry of the last write, installed ones included (for [`Self::changed_entries`]).
    last_entries: Option<Vec<NodeProfile>>,
}

impl StatusWriter {
    pub fn new(client: Client, node: &str, namespace: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "palisade-agent".into(),
                instance: Some(node.to_string()),
            },
        );
        Self {
            client,
            node: node.to_string(),
            namespace: namespace.to_string(),
            manager: format!("palisade-agent/{node}"),
            recorder,
            last: None,
            last_entries: None,
        }
    }

    /// Creates or adopts this node's NodeProfileStatus, owned by the Node so it is
    /// garbage-collected with it.
    pub async fn ensure_object(&self, node: &Node) -> kube::Result<()> {
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        let owner = node.controller_owner_ref(&()).map(|mut o| {
            o.controller = Some(false);
            // Blocking the Node's foreground deletion is not needed, and would need
            // `update nodes/finalizers` where OwnerReferencesPermissionEnforcement is on.
            o.block_owner_deletion = None;
            o
        });
        let obj = json!({
            "apiVersion": format!("palisade.dev/{NODE_STATUS_VERSION}"),
            "kind": "NodeProfileStatus",
            "metadata": {"name": self.node, "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
            "spec": {},
        });
        api.patch(
            &self.node,
            &PatchParams::apply(&self.manager).force(),
            &Patch::Apply(obj),
        )
        .await?;
        Ok(())
    }

    /// Writes the status when it differs from the last write (one write per batch).
    /// Returns whether it wrote.
    pub async fn report(&mut self, capabilities: &NodeCapabilities, entries: Vec<NodeProfile>) -> kube::Result<bool> {
        let status = status_of(capabilities, &entries);
        if status.omitted_exceptions > 0 {
            tracing::warn!(
                omitted = status.omitted_exceptions,
                "more profiles are not installed than one report may list: entries left out"
            );
        }
        if self.last.as_ref() == Some(&status) {
            self.last_entries = Some(entries);
            return Ok(false);
        }
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        let patch = json!({
            "apiVersion": format!("palisade.dev/{NODE_STATUS_VERSION}"),
            "kind": "NodeProfileStatus",
            "metadata": {"name": self.node},
            "status": status,
        });
        api.patch_status(
            &self.node,
            &PatchParams::apply(&self.manager).force(),
            &Patch::Apply(patch),
        )
        .await?;
        self.last = Some(status);
        self.last_entries = Some(entries);
        Ok(true)
    }

    /// How many entries differ from the last write (all of them before the first).
    pub fn changed_entries(&self, profiles: &[NodeProfile]) -> usize {
        changed_entries(self.last_entries.as_deref(), profiles)
    }

    /// Forgets the last write so the next report writes again (after the object was
    /// recreated, say).
    pub fn invalidate(&mut self) {
        self.last = None;
        self.last_entries = None;
    }

    /// This node's heartbeat, valid for `lease_seconds`.
    pub fn heartbeat(&self, lease_seconds: u32) -> Heartbeat {
        Heartbeat {
            api: Api::namespaced(self.client.clone(), &self.namespace),
            node: self.node.clone(),
            manager: self.manager.clone(),
            lease_seconds: lease_seconds.max(3),
        }
    }

    /// An Event on the profile for each new install failure on this node.
    pub async fn announce(&self, failures: &[Failure]) {
        for f in failures {
            let reference = ObjectReference {
                api_version: Some(palisade_domain::api_version()),
                kind: Some(f.kind.name().into()),
                name: Some(f.name.clone()),
                uid: Some(f.uid.clone()),
                ..Default::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "InstallFailed".into(),
                note: Some(format!("node {}: {}", self.node, truncate(&f.message, 900))),
                action: "Install".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(profile = f.name, error = %e, "could not publish an Event");
            }
        }
    }
}

/// Renews this node's heartbeat Lease (`palisade-agent-<node>`). The operator judges it by
/// when it sees the Lease change, not by the time written in it, so clocks need not agree.
pub struct Heartbeat {
    api: Api<Lease>,
    node: String,
    manager: String,
    lease_seconds: u32,
}

/// Longest one heartbeat write may take: a hung request is dropped and the next one tried.
pub const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Heartbeat {
    /// One renewal.
    pub async fn renew(&self) -> Result<(), String> {
        let name = agent_lease_name(&self.node);
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {AGENT_LEASE_LABEL.0: AGENT_LEASE_LABEL.1}},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_seconds, "renewTime": now},
        });
        let params = PatchParams::apply(&self.manager).force();
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, self.api.patch(&name, &params, &Patch::Apply(lease))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", HEARTBEAT_TIMEOUT.as_secs())),
        }
    }

    /// Renews every third of the lease until shutdown.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(u64::from(self.lease_seconds / 3)));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(error) = self.renew().await {
                tracing::warn!(%error, "heartbeat failed; retrying at the next tick");
            }
        }
    }
}

/// The report for a node's entries: profiles installed at their accepted content go into
/// the per-kind summary; every other entry is an exception, listed with its message. A kind
/// the node cannot enforce is reported by its capability alone.
pub fn status_of(capabilities: &NodeCapabilities, entries: &[NodeProfile]) -> NodeProfileStatusStatus {
    let (mut apparmor, mut seccomp) = (InstalledSet::default(), InstalledSet::default());
    let (mut exceptions, mut partial) = (Vec::new(), Vec::new());
    for e in entries {
        match e.state {
            NodeProfileState::Installed => {
                let set = match e.kind {
                    ProfileKind::AppArmorProfile => &mut apparmor,
                    ProfileKind::SeccompProfile => &mut seccomp,
                };
                set.add(installed_key(e.kind, &e.uid, &e.digest));
                if !e.not_enforced.is_empty() {
                    partial.push(e.clone());
                }
            }
            NodeProfileState::Unsupported => {}
            _ => exceptions.push(e.clone()),
        }
    }
    let (exceptions, omitted_exceptions) = palisade_domain::nodestatus::bounded(exceptions);
    // Past the bound, the rest are only counted: the profiles still count as installed.
    let (partial, omitted_partial) = palisade_domain::nodestatus::bounded_partial(partial);
    NodeProfileStatusStatus {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: capabilities.clone(),
        installed: InstalledSummary {
            apparmor: apparmor.summary(),
            seccomp: seccomp.summary(),
        },
        exceptions,
        omitted_exceptions,
        partial,
        omitted_partial,
        learned: vec![],
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        s
    } else {
        &s[..s.floor_char_boundary(max)]
    }
}

/// Entries added, changed or removed between two reports.
fn changed_entries(last: Option<&[NodeProfile]>, profiles: &[NodeProfile]) -> usize {
    let Some(last) = last else {
        return profiles.len();
    };
    let before: std::collections::HashMap<(ProfileKind, &str), &NodeProfile> =
        last.iter().map(|p| ((p.kind, p.name.as_str()), p)).collect();
    let (mut kept, mut same) = (0, 0);
    for p in profiles {
        if let Some(old) = before.get(&(p.kind, p.name.as_str())) {
            kept += 1;
            same += usize::from(*old == p);
        }
    }
    // Added or changed, plus removed.
    (profiles.len() - same) + (before.len() - kept)
}

#[cfg(test)]
mod changed_tests {
    use palisade_domain::{NodeProfile, NodeProfileState, ProfileKind};

    fn entry(name: &str, generation: i64) -> NodeProfile {
        NodeProfile {
            kind: ProfileKind::SeccompProfile,
            name: name.into(),
            uid: "u".into(),
            generation,
            digest: format!("d{generation}"),
            state: NodeProfileState::Installed,
            message: String::new(),
            not_enforced: vec![],
        }
    }

    #[test]
    fn a_report_lists_only_what_is_not_installed() {
        use palisade_domain::{InstalledSet, NodeCapabilities, installed_key};
        let mut pending = entry("p", 2);
        pending.state = NodeProfileState::Pending;
        let mut unsupported = entry("aa", 1);
        unsupported.kind = ProfileKind::AppArmorProfile;
        unsupported.state = NodeProfileState::Unsupported;
        let entries = vec![entry("a", 1), entry("b", 3), pending.clone(), unsupported];
        let status = super::status_of(&NodeCapabilities::default(), &entries);
        assert_eq!(
            status.exceptions,
            vec![pending],
            "installed and unsupported entries are not listed"
        );
        let mut want = InstalledSet::default();
        want.add(installed_key(ProfileKind::SeccompProfile, "u", "d1"));
        want.add(installed_key(ProfileKind::SeccompProfile, "u", "d3"));
        assert_eq!(status.installed.seccomp, want.summary());
        assert_eq!(status.installed.apparmor, InstalledSet::default().summary());
        assert!(status.partial.is_empty());
        // An installed profile the kernel enforces in part counts as installed and is named,
        // with what is left out.
        let mut part = entry("part", 1);
        part.kind = ProfileKind::AppArmorProfile;
        part.not_enforced = vec!["mqueue".into(), "userns".into()];
        let status = super::status_of(&NodeCapabilities::default(), &[part.clone()]);
        assert_eq!(status.partial, vec![part.clone()]);
        assert_eq!(status.omitted_partial, 0);
        // Bounded: a node holding many such profiles names the first 256 and counts the rest.
        let many: Vec<NodeProfile> = (0..300)
            .map(|i| NodeProfile {
                name: format!("p{i:03}"),
                ..part.clone()
            })
            .collect();
        let bounded = super::status_of(&NodeCapabilities::default(), &many);
        assert_eq!(bounded.partial.len(), 256);
        assert_eq!(bounded.partial[0].name, "p000");
        assert_eq!(bounded.omitted_partial, 44);
        assert!(status.exceptions.is_empty());
        let mut want = InstalledSet::default();
        want.add(installed_key(ProfileKind::AppArmorProfile, "u", "d1"));
        assert_eq!(status.installed.apparmor, want.summary());
        // A thousand installed profiles make a report no longer than two do.
        let many: Vec<NodeProfile> = (0..1000).map(|i| entry(&format!("n{i}"), 1)).collect();
        let big = serde_json::to_string(&super::status_of(&NodeCapabilities::default(), &many)).unwrap();
        let small = serde_json::to_string(&super::status_of(&NodeCapabilities::default(), &many[..2])).unwrap();
        // (only the count's digits differ)
        assert_eq!(big.len(), small.len() + 3, "{big}");
    }

    #[test]
    fn counts_added_changed_and_removed_entries() {
        let last = [entry("a", 1), entry("b", 1), entry("c", 1)];
        assert_eq!(super::changed_entries(None, &last), 3, "first write: everything");
        assert_eq!(super::changed_entries(Some(&last), &last), 0);
        let now = [entry("a", 1), entry("b", 2), entry("d", 1)];
        // b changed, d added, c removed.
        assert_eq!(super::changed_entries(Some(&last), &now), 3);
    }
}
