//! What this node holds of both kinds: one whole-node sync runs the loop of [`crate::sync`]
//! over the seccomp directory and the kernel's AppArmor policy, then counts the states and
//! the new failures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kube::core::DeserializeGuard;
use palisade_domain::{AppArmorProfile, NodeProfile, NodeProfileState, ProfileKind, SeccompProfile};

use crate::apparmor::{AppArmor, AppArmorNode};
use crate::metrics::{Metrics, StateLabels};
use crate::seccomp::SeccompDir;
use crate::sync::sync_kind;

/// A profile that failed on this node, for an Event on the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ProfileKind,
    pub name: String,
    pub uid: String,
    pub message: String,
}

pub struct NodeState {
    seccomp: SeccompDir,
    apparmor: AppArmorNode,
    /// Failures already announced, so Events fire on transitions only.
    announced: HashMap<(ProfileKind, String), String>,
    pub metrics: Metrics,
}

impl NodeState {
    /// Takes stock of what Palisade already holds on this node (files in its seccomp
    /// directory, AppArmor ownership records) and removes crash leftovers.
    /// `apparmor_support` is `Ok(parser version)` or why AppArmor cannot be used here.
    pub fn new(
        apparmor: AppArmor,
        apparmor_support: Result<String, String>,
        seccomp_dir: PathBuf,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        Ok(Self {
            seccomp: SeccompDir::open(seccomp_dir)?,
            apparmor: AppArmorNode::open(apparmor, apparmor_support)?,
            announced: HashMap::new(),
            metrics,
        })
    }

    /// `Ok(parser version)` or why AppArmor cannot be used on this node.
    pub fn apparmor_support(&self) -> &Result<String, String> {
        self.apparmor.support()
    }

    /// `Ok` or why seccomp profiles cannot be written on this node.
    pub fn seccomp_support(&self) -> &Result<(), String> {
        self.seccomp.support()
    }

    /// Brings the node in line with the profiles, as the watches cached them: an object
    /// that does not parse is not acted on (the operator reports it); what the node already
    /// holds of it stays, reported Pending.
    /// `drift` also re-reads files and the kernel's list to find what changed behind the
    /// agent's back. Returns every profile's entry for the NodeProfileStatus (sorted) and
    /// the new failures.
    #[tracing::instrument(name = "sync", skip_all, fields(seccomp = seccomp.len(), apparmor = apparmor.len(), drift))]
    pub async fn sync(
        &mut self,
        seccomp: &[Arc<DeserializeGuard<SeccompProfile>>],
        apparmor: &[Arc<DeserializeGuard<AppArmorProfile>>],
        node_labels: &BTreeMap<String, String>,
        drift: bool,
    ) -> (Vec<NodeProfile>, Vec<Failure>) {
        let start = Instant::now();
        let mut entries = Vec::new();
        sync_kind(
            &mut self.seccomp,
            &self.metrics,
            seccomp,
            node_labels,
            drift,
            &mut entries,
        )
        .await;
        sync_kind(
            &mut self.apparmor,
            &self.metrics,
            apparmor,
            node_labels,
            drift,
            &mut entries,
        )
        .await;
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        let failures = self.new_failures(&entries);
        self.count_states(&entries);
        self.metrics.sync_seconds.observe(start.elapsed().as_secs_f64());
        (entries, failures)
    }

    fn new_failures(&mut self, entries: &[NodeProfile]) -> Vec<Failure> {
        let mut failures = Vec::new();
        let mut now = HashMap::new();
        for e in entries.iter().filter(|e| e.state == NodeProfileState::Error) {
            let key = (e.kind, e.name.clone());
            if self.announced.get(&key) != Some(&e.message) {
                failures.push(Failure {
                    kind: e.kind,
                    name: e.name.clone(),
                    uid: e.uid.clone(),
                    message: e.message.clone(),
                });
            }
            now.insert(key, e.message.clone());
        }
        self.announced = now;
        failures
    }

    fn count_states(&self, entries: &[NodeProfile]) {
        self.metrics.profiles.clear();
        for e in entries {
            let state = match e.state {
                NodeProfileState::Pending => "Pending",
                NodeProfileState::Installed => "Installed",
                NodeProfileState::Error => "Error",
                NodeProfileState::Unsupported => "Unsupported",
                NodeProfileState::Removing => "Removing",
            };
            let labels = StateLabels {
                kind: e.kind.slug(),
                state,
            };
            self.metrics.profiles.get_or_create(&labels).inc();
        }
    }
}
