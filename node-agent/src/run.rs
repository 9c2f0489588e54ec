//! Wiring: flags, watches, the sync loop, heartbeats and the HTTP endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use palisade_domain::{
    AppArmorProfile, NodeCapabilities, NodeProfile, NodeProfileState, ProfileKind, ProfileObject, ProfileStatus,
    SeccompProfile,
};
use palisade_runtime::{Health, LogFormat};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use crate::apparmor::{AppArmor, AppArmorConfig, AppArmorNode};
use crate::metrics::{Metrics, StateLabels};
use crate::report::{Failure, StatusWriter};
use crate::seccomp::SeccompDir;
use crate::sync::sync_kind;

/// palisade-agent: keeps this node's AppArmor and seccomp profiles in line with the cluster.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "palisade-agent", version, about)]
pub struct Args {
    /// This node's name (from the downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Namespace of the agent's heartbeat Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    pub namespace: String,
    /// The kubelet's root directory.
    #[arg(long, env = "PALISADE_KUBELET_ROOT", default_value = "/var/lib/kubelet")]
    pub kubelet_root: PathBuf,
    /// Subdirectory of `<kubelet-root>/seccomp` that Palisade owns.
    #[arg(long, env = "PALISADE_SECCOMP_SUBDIR", default_value = palisade_domain::SECCOMP_SUBDIR)]
    pub seccomp_subdir: String,
    /// The AppArmor security filesystem.
    #[arg(long, env = "PALISADE_APPARMORFS", default_value = "/sys/kernel/security/apparmor")]
    pub apparmorfs: PathBuf,
    /// apparmor_parser to run.
    #[arg(long, env = "PALISADE_APPARMOR_PARSER", default_value = "apparmor_parser")]
    pub apparmor_parser: PathBuf,
    /// AppArmor include directory (the host's /etc/apparmor.d, mounted read-only).
    #[arg(long, env = "PALISADE_APPARMOR_INCLUDE_DIR", default_value = "/etc/apparmor.d")]
    pub apparmor_include_dir: PathBuf,
    /// The parser's own policy ABI files (a directory holding `abi/`), searched after the
    /// include directory, so `abi <abi/4.0>,` compiles on a host whose userspace is older;
    /// ignored when it has no `abi/`. The image ships its parser's there.
    #[arg(
        long,
        env = "PALISADE_APPARMOR_ABI_DIR",
        default_value = "/usr/share/palisade/apparmor-abi"
    )]
    pub apparmor_abi_dir: PathBuf,
    /// Agent state: AppArmor sources, ownership records and the parser cache.
    #[arg(long, env = "PALISADE_STATE_DIR", default_value = "/var/lib/palisade")]
    pub state_dir: PathBuf,
    /// Where /metrics is served.
    #[arg(long, env = "PALISADE_METRICS_ADDRESS", default_value = "127.0.0.1:9100")]
    pub metrics_address: SocketAddr,
    /// Where /healthz and /readyz are served (may equal the metrics address).
    #[arg(long, env = "PALISADE_HEALTH_ADDRESS", default_value = "127.0.0.1:9101")]
    pub health_address: SocketAddr,
    #[command(flatten)]
    pub parser: palisade_runtime::budget::ParserArgs,
    /// Seconds the heartbeat Lease stays valid; renewed every third of it.
    #[arg(long, env = "PALISADE_LEASE_DURATION", default_value_t = crate::report::LEASE_SECONDS)]
    pub lease_duration: u32,
    /// Seconds between drift checks (files edited or deleted, profiles unloaded).
    #[arg(long, env = "PALISADE_DRIFT_INTERVAL", default_value_t = 60)]
    pub drift_interval: u64,
    /// TESTS ONLY: treat --apparmorfs as a simulated kernel (a plain directory whose
    /// `profiles` list the agent keeps), with the kernel features read from this file.
    /// For machines without the AppArmor LSM; never set on a real node.
    #[arg(long, env = "PALISADE_SIMULATE_APPARMOR_KERNEL")]
    pub simulate_apparmor_kernel: Option<PathBuf>,
    /// Learn from audit records: what profiles in Complain mode (AppArmor) and seccomp
    /// filters that log (`SCMP_ACT_LOG`) let through, reported as rules in this node's
    /// NodeProfileStatus. Needs CAP_SYSLOG (kernel log) or the audit log mounted, and the
    /// host's PID namespace for seccomp.
    #[arg(long, env = "PALISADE_LEARN")]
    pub learn: bool,

    /// Report denials: what the kernel refused a container under a Palisade profile, as
    /// Events on its pod and profile and as metrics. Needs what learning needs (CAP_SYSLOG
    /// or the audit log, the host's PID namespace) and the right to create Events.
    #[arg(long, env = "PALISADE_DENIALS")]
    pub denials: bool,

    /// auditd's log; when it is not there, records are read from the kernel log.
    #[arg(long, env = "PALISADE_AUDIT_LOG", default_value = "/var/log/audit/audit.log")]
    pub audit_log: PathBuf,

    /// The host's /proc: the cgroup of a seccomp record's process; the kernel's release and
    /// seccomp actions (`sys/kernel`, the same in any container's /proc).
    #[arg(long, env = "PALISADE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Log format.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// Watches a profile kind through `DeserializeGuard`: an object that does not parse stays
/// in the cache as such (the sync skips it; the operator reports it) instead of stalling the
/// watch. The cache holds only what the agent reads ([`slim`]); a change the agent acts on
/// wakes a sync.
fn watch_kind<K>(client: &Client, notify: Arc<Notify>, health: &Health) -> Store<DeserializeGuard<K>>
where
    K: ProfileObject + Clone + Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let api: Api<DeserializeGuard<K>> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let mut seen = Seen::default();
    let changed = Arc::new(AtomicBool::new(false));
    let flag = changed.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .map_ok(move |event| {
            // Carried past the reflector to the loop below, which handles this event next.
            flag.fetch_or(seen.changed(&event), Ordering::Relaxed);
            event
        })
        .reflect(writer);
    let alive = health.alive(&format!("watch/{}", K::plural(&())));
    tokio::spawn(stream.for_each(move |_| {
        let _alive = &alive;
        if changed.swap(false, Ordering::Relaxed) {
            notify.notify_one();
        }
        futures::future::ready(())
    }));
    store
}

/// A fingerprint per profile of what the agent acts on (the slimmed object: spec, accepted
/// content, name, uid, generation, deletion; or, for an object that does not parse, its
/// metadata and the error), so the operator's status updates (node counts, conditions),
/// which change only the resourceVersion of the slimmed object, wake no sync.
#[derive(Default)]
struct Seen {
    prints: std::collections::HashMap<String, u64>,
}

impl Seen {
    fn changed<K: Resource + Serialize + Clone>(&mut self, event: &watcher::Event<DeserializeGuard<K>>) -> bool {
        use std::hash::{Hash, Hasher};
        let print = |o: &DeserializeGuard<K>| {
            let mut o = o.clone();
            o.meta_mut().resource_version = None;
            let bytes = match &o.0 {
                Ok(p) => serde_json::to_vec(p),
                Err(invalid) => serde_json::to_vec(&(&invalid.metadata, &invalid.error)),
            };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.unwrap_or_default().hash(&mut h);
            h.finish()
        };
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let (name, now) = (o.meta().name.clone().unwrap_or_default(), print(o));
                self.prints.insert(name, now) != Some(now)
            }
            watcher::Event::Delete(o) => {
                self.prints.remove(o.meta().name.as_deref().unwrap_or_default());
                true
            }
            watcher::Event::Init => {
                self.prints.clear();
                true
            }
            watcher::Event::InitDone => true,
        }
    }
}

/// Keeps only what the agent reads of a profile: metadata name, uid and generation, the
/// spec, and the accepted content (`status.accepted`). Annotations (kubectl's
/// last-applied-configuration is a second copy of the whole object), labels, managedFields
/// and the rest of the status (conditions, node counts, failures) would otherwise be cached
/// for every profile in the cluster on every node.
fn slim<K: ProfileObject>(o: &mut DeserializeGuard<K>) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    if let Ok(p) = &mut o.0
        && let Some(status) = p.profile_status_mut()
    {
        *status = ProfileStatus {
            accepted: status.accepted.take(),
            ..Default::default()
        };
    }
}

/// This node's Node object (its labels select profiles); any change wakes a sync.
fn watch_node(client: &Client, name: &str, notify: Arc<Notify>, health: &Health) -> Store<Node> {
    let (store, writer) = reflector::store();
    let watch = reflector::reflector(
        writer,
        watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff(),
    );
    let alive = health.alive("watch/node");
    tokio::spawn(watch.for_each(move |_| {
        let _alive = &alive;
        notify.notify_one();
        futures::future::ready(())
    }));
    store
}

/// What this node holds of both kinds: one whole-node sync runs the loop of [`crate::sync`]
/// over the seccomp directory and the kernel's AppArmor policy, then counts the states and
/// the new failures.
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

/// What Palisade holds on this node, and whether AppArmor and seccomp can be used here.
async fn node_state(args: &Args, metrics: Metrics) -> Result<NodeState> {
    let apparmor = AppArmor::new(AppArmorConfig {
        parser: args.apparmor_parser.clone(),
        apparmorfs: args.apparmorfs.clone(),
        include_dir: args.apparmor_include_dir.clone(),
        abi_dir: Some(args.apparmor_abi_dir.clone()).filter(|d| d.join("abi").is_dir()),
        state_dir: args.state_dir.clone(),
        simulated_kernel_features: args.simulate_apparmor_kernel.clone(),
        budget: args.parser.budget(),
        reserved: args.parser.reserved_profile_names.clone(),
    })?;
    if args.simulate_apparmor_kernel.is_some() {
        tracing::warn!(apparmorfs = %args.apparmorfs.display(), "SIMULATED AppArmor kernel interface: for tests only");
    }
    let apparmor_support = apparmor.detect().await;
    if let Err(reason) = &apparmor_support {
        tracing::warn!(%reason, "AppArmor profiles will be reported Unsupported on this node");
    }
    let seccomp_dir = args.kubelet_root.join("seccomp").join(&args.seccomp_subdir);
    Ok(NodeState::new(apparmor, apparmor_support, seccomp_dir, metrics)?)
}

/// What the node can enforce, for its report (the Node adds its runtime on each report).
fn capabilities(args: &Args, state: &NodeState) -> NodeCapabilities {
    NodeCapabilities {
        apparmor: state.apparmor_support().is_ok(),
        apparmor_parser_version: state.apparmor_support().clone().ok(),
        apparmor_reason: state.apparmor_support().clone().err(),
        seccomp: state.seccomp_support().is_ok(),
        seccomp_reason: state.seccomp_support().clone().err(),
        denials: None,
        ..crate::host::read(&args.proc_root, &args.apparmorfs, &args.apparmor_include_dir)
    }
}

pub async fn run(args: Args) -> Result<()> {
    let client = palisade_runtime::connect().await?;

    let mut registry = Registry::with_prefix("palisade");
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let health = Health::default();
    let shutdown = palisade_runtime::shutdown_signal();
    palisade_runtime::spawn_http(args.metrics_address, args.health_address, registry, &health, &shutdown).await?;
    let _sync_loop = health.alive("sync");
    let state = node_state(&args, metrics.clone()).await?;

    let notify = Arc::new(Notify::new());
    let seccomp = watch_kind::<SeccompProfile>(&client, notify.clone(), &health);
    let apparmor = watch_kind::<AppArmorProfile>(&client, notify.clone(), &health);
    let node = watch_node(&client, &args.node_name, notify.clone(), &health);
    seccomp.wait_until_ready().await.context("watching profiles")?;
    apparmor.wait_until_ready().await.context("watching profiles")?;
    node.wait_until_ready().await.context("watching the Node")?;

    let writer = StatusWriter::new(client.clone(), &args.node_name, &args.namespace);
    // The heartbeat has its own task: a long sync (a thousand parser runs) never makes a
    // live node look dead.
    let heartbeat = writer.heartbeat(args.lease_duration);
    let (alive, stop) = (health.alive("heartbeat"), shutdown.clone());
    tokio::spawn(async move {
        let _alive = alive;
        heartbeat.run(stop).await
    });
    let source = crate::audit::Source::detect(&args.audit_log);
    if args.learn || args.denials {
        let learner = args.learn.then(|| {
            crate::learn::Learner::new(
                crate::learn::Config {
                    node: args.node_name.clone(),
                    write_gap: Duration::from_secs(5),
                },
                client.clone(),
                apparmor.clone(),
                seccomp.clone(),
            )
        });
        let denials = args.denials.then(|| {
            crate::denials::Denials::new(
                client.clone(),
                args.node_name.clone(),
                apparmor.clone(),
                seccomp.clone(),
                metrics.clone(),
            )
        });
        let cfg = crate::audit::Config {
            source: source.clone(),
            interval: Duration::from_millis(500),
        };
        let pods = crate::attribution::NodePods::new(client.clone(), args.node_name.clone(), args.proc_root.clone());
        let (alive, stop) = (health.alive("audit"), shutdown.clone());
        tokio::spawn(async move {
            let _alive = alive;
            crate::audit::run(cfg, pods, learner, denials, stop).await
        });
    }
    let syncer = Syncer {
        node_name: args.node_name.clone(),
        capabilities: NodeCapabilities {
            denials: args.denials.then(|| source.describe()),
            ..capabilities(&args, &state)
        },
        state,
        writer,
        metrics,
        notify,
        seccomp,
        apparmor,
        node,
        object_ready: false,
        next_write: tokio::time::Instant::now(),
    };
    syncer
        .run(Duration::from_secs(args.drift_interval.max(1)), &health, shutdown)
        .await;
    tracing::info!("stopped");
    Ok(())
}

/// The sync loop: what it syncs from, what it reports to, and how its writes are paced.
struct Syncer {
    node_name: String,
    state: NodeState,
    writer: StatusWriter,
    /// What the node can enforce, as read at start; the Node's runtime is added per report.
    capabilities: NodeCapabilities,
    metrics: Metrics,
    /// Rung by the watches when something the agent acts on changed.
    notify: Arc<Notify>,
    seccomp: Store<DeserializeGuard<SeccompProfile>>,
    apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    node: Store<Node>,
    /// The node's NodeProfileStatus exists.
    object_ready: bool,
    /// No report is written before this.
    next_write: tokio::time::Instant,
}

impl Syncer {
    /// Syncs on every change and every `drift_interval` (then also looking for drift), until
    /// shutdown.
    async fn run(mut self, drift_interval: Duration, health: &Health, mut shutdown: watch::Receiver<bool>) {
        let mut drift = tokio::time::interval(drift_interval);
        let mut first = true;
        loop {
            let drift_check = tokio::select! {
                _ = self.notify.notified() => {
                    // Let a burst of events land, so a batch costs one sync and one write; and
                    // keep writes apart in proportion to how slowly the API server answers them,
                    // so a flood of changes is coalesced instead of flooding it back.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    tokio::time::sleep_until(self.next_write).await;
                    false
                }
                _ = drift.tick() => true,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            if self.round(drift_check || first, health).await {
                first = false;
            }
        }
    }

    /// One sync and its report; `false` while the Node is not known.
    async fn round(&mut self, drift: bool, health: &Health) -> bool {
        let Some(node) = self.node.state().into_iter().next() else {
            tracing::warn!(node = self.node_name, "Node not found; waiting for it");
            return false;
        };
        let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
        let seccomp = self.seccomp.state();
        let apparmor = self.apparmor.state();
        let (entries, failures) = self.state.sync(&seccomp, &apparmor, &labels, drift).await;
        drop((seccomp, apparmor));
        self.report(&node, entries, health).await;
        self.writer.announce(&failures).await;
        // Hand back what the sync freed (request bodies, rendered profiles).
        palisade_runtime::release_free_memory();
        true
    }

    /// Writes the node's report, creating its object first if need be; a failed write is
    /// tried again a second later.
    async fn report(&mut self, node: &Node, entries: Vec<NodeProfile>, health: &Health) {
        if !self.object_ready {
            match self.writer.ensure_object(node).await {
                Ok(()) => self.object_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "creating the NodeProfileStatus failed; will retry")
                }
            }
        }
        let started = tokio::time::Instant::now();
        let changed = self.writer.changed_entries(&entries);
        let capabilities = crate::host::with_node(&self.capabilities, node);
        match self.writer.report(&capabilities, entries).await {
            Ok(wrote) => {
                if wrote {
                    self.metrics.status_writes.inc();
                    self.next_write = tokio::time::Instant::now() + write_gap(started.elapsed(), changed);
                }
                health.set_ready(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing the NodeProfileStatus failed; will retry");
                self.writer.invalidate();
                self.object_ready = false;
                let n = self.notify.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    n.notify_one();
                });
            }
        }
    }
}

/// The pause after a status write before the next. A write that carried a change or two
/// (someone applied a profile) leaves the next one free to follow soon: as long as the
/// write took, 20 ms to 1 s. A write that carried a flood (a bulk apply, a relist) holds the
/// next back five times as long as it took, 50 ms to 2 s, so the flood is coalesced into
/// fewer, larger writes instead of being sent back at the API server entry by entry.
pub fn write_gap(took: Duration, changed_entries: usize) -> Duration {
    if changed_entries <= FEW_CHANGES {
        took.clamp(Duration::from_millis(20), Duration::from_secs(1))
    } else {
        (took * 5).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }
}

/// At most this many entries changed: a change, not a flood.
const FEW_CHANGES: usize = 3;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn only_changes_the_agent_acts_on_wake_a_sync() {
        use kube::core::DeserializeGuard;
        use kube::runtime::watcher::Event;
        use palisade_domain::SeccompProfile;
        let obj = |rv: &str, accepted: &str, ready: &str| {
            let mut o: DeserializeGuard<SeccompProfile> = serde_json::from_value(serde_json::json!({
                "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "p", "uid": "u", "generation": 1, "resourceVersion": rv},
                "spec": {"defaultAction": "SCMP_ACT_ALLOW"},
                "status": {"accepted": {"generation": 1, "digest": accepted},
                           "conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": "",
                                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
            .unwrap();
            super::slim(&mut o);
            o
        };
        let mut seen = super::Seen::default();
        assert!(seen.changed(&Event::Apply(obj("1", "d1", "False"))), "first sight");
        assert!(
            !seen.changed(&Event::Apply(obj("2", "d1", "True"))),
            "the operator's status update (Ready, counts) is nothing to install"
        );
        assert!(
            seen.changed(&Event::Apply(obj("3", "d2", "True"))),
            "new accepted content"
        );
        assert!(seen.changed(&Event::Delete(obj("4", "d2", "True"))));
        // An object that does not parse: a change of it wakes a sync (which skips it), its
        // status being written does not.
        let broken = |rv: &str| -> DeserializeGuard<SeccompProfile> {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "p", "uid": "u", "generation": 2, "resourceVersion": rv},
                "spec": {"defaultAction": "SCMP_ACT_NEW"}}))
            .unwrap()
        };
        assert!(seen.changed(&Event::Apply(broken("5"))));
        assert!(!seen.changed(&Event::Apply(broken("6"))));
    }

    #[test]
    fn write_gap_follows_api_latency_and_holds_floods_back() {
        // A single change: short gap.
        assert_eq!(super::write_gap(Duration::from_millis(2), 1), Duration::from_millis(20));
        assert_eq!(
            super::write_gap(Duration::from_millis(100), 1),
            Duration::from_millis(100)
        );
        assert_eq!(super::write_gap(Duration::from_secs(3), 2), Duration::from_secs(1));
        // A flood: five times the write, 50 ms to 2 s.
        assert_eq!(
            super::write_gap(Duration::from_millis(2), 400),
            Duration::from_millis(50)
        );
        assert_eq!(
            super::write_gap(Duration::from_millis(100), 400),
            Duration::from_millis(500)
        );
        assert_eq!(super::write_gap(Duration::from_secs(3), 400), Duration::from_secs(2));
    }

    #[test]
    fn slim_keeps_what_the_agent_reads_and_drops_the_rest() {
        use kube::core::DeserializeGuard;
        use palisade_domain::SeccompProfile;
        let mut o: DeserializeGuard<SeccompProfile> = serde_json::from_value(serde_json::json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": "web", "uid": "u1", "generation": 3,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                         "labels": {"team": "a"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
            "status": {"observedGeneration": 3, "accepted": {"generation": 3, "digest": "abc"},
                       "conditions": [
                           {"type": "Accepted", "status": "True", "reason": "Valid", "message": "ok",
                            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                           {"type": "Ready", "status": "False", "reason": "Pending", "message": "installed on 1/3",
                            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                       "nodes": {"targeted": 3, "installed": 1, "failed": 0, "pending": 2, "unsupported": 0},
                       "failures": [{"node": "n", "message": "m"}]}
        }))
        .unwrap();
        super::slim(&mut o);
        let p: SeccompProfile = o.0.unwrap();
        assert_eq!(
            palisade_domain::accepted_content(p.status.as_ref()).map(|a| a.digest.as_str()),
            Some("abc"),
            "the accepted content survives"
        );
        assert_eq!(p.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(p.spec.syscalls.len(), 1);
        assert!(p.metadata.annotations.is_none() && p.metadata.labels.is_none() && p.metadata.managed_fields.is_none());
        let status = p.status.unwrap();
        assert!(status.conditions.is_empty() && status.nodes.is_none() && status.failures.is_empty());
    }

    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
