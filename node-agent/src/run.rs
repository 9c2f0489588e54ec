//! Wiring: flags, watches, the sync loop, heartbeats and the HTTP endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use palisade_crds::{AppArmorProfile, NodeCapabilities, SeccompProfile};
use palisade_runtime::{Health, LogFormat};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::apparmor::{AppArmor, AppArmorConfig};
use crate::metrics::Metrics;
use crate::report::StatusWriter;
use crate::sync::NodeState;

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
    #[arg(long, env = "PALISADE_SECCOMP_SUBDIR", default_value = palisade_crds::SECCOMP_SUBDIR)]
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

    /// auditd's log; when it is not there, records are read from the kernel log.
    #[arg(long, env = "PALISADE_AUDIT_LOG", default_value = "/var/log/audit/audit.log")]
    pub audit_log: PathBuf,

    /// The host's /proc (for the cgroup of a seccomp record's process).
    #[arg(long, env = "PALISADE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Log format.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// Watches a kind leniently: objects arrive as JSON and are parsed one by one, so one that
/// does not parse is skipped with a warning instead of stalling the watch. The cache holds
/// the parsed objects without managedFields, which the agent never reads.
fn watch_kind<K>(client: &Client, notify: Arc<Notify>, health: &Health) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let (store, writer) = reflector::store();
    let mut seen = Seen::default();
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .map_ok(move |event| {
            let changed = seen.changed(&event);
            (event, changed)
        })
        .try_filter_map(|(event, changed)| {
            futures::future::ready(Ok(palisade_runtime::parse_event::<K>(event).map(|e| (e, changed))))
        })
        .map_ok({
            let flag = changed.clone();
            move |(event, changed)| {
                // Carried past the reflector to the loop below, which handles this event next.
                flag.fetch_or(changed, std::sync::atomic::Ordering::Relaxed);
                event
            }
        })
        .reflect(writer);
    let alive = health.alive(&format!("watch/{}", K::plural(&())));
    tokio::spawn(stream.for_each(move |_| {
        let _alive = &alive;
        if changed.swap(false, std::sync::atomic::Ordering::Relaxed) {
            notify.notify_one();
        }
        futures::future::ready(())
    }));
    store
}

/// A fingerprint per profile of what the agent acts on (the slimmed object: spec, accepted
/// content, name, uid, generation, deletion), so the operator's status updates (node counts,
/// conditions), which change only the resourceVersion of the slimmed object, wake no sync.
#[derive(Default)]
struct Seen {
    prints: std::collections::HashMap<String, u64>,
}

impl Seen {
    fn changed(&mut self, event: &watcher::Event<DynamicObject>) -> bool {
        use std::hash::{Hash, Hasher};
        let print = |o: &DynamicObject| {
            let mut o = o.clone();
            o.metadata.resource_version = None;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_vec(&o).unwrap_or_default().hash(&mut h);
            h.finish()
        };
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let (name, now) = (o.metadata.name.clone().unwrap_or_default(), print(o));
                self.prints.insert(name, now) != Some(now)
            }
            watcher::Event::Delete(o) => {
                self.prints.remove(o.metadata.name.as_deref().unwrap_or_default());
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
fn slim(o: &mut DynamicObject) {
    let meta = &mut o.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    if let Some(status) = o.data.get_mut("status").and_then(|s| s.as_object_mut()) {
        status.retain(|k, _| k == "accepted");
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

    let apparmor = AppArmor::new(AppArmorConfig {
        parser: args.apparmor_parser.clone(),
        apparmorfs: args.apparmorfs.clone(),
        include_dir: args.apparmor_include_dir.clone(),
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
    let mut state = NodeState::new(apparmor, apparmor_support, seccomp_dir, metrics.clone())?;
    let capabilities = NodeCapabilities {
        apparmor: state.apparmor_support().is_ok(),
        apparmor_parser_version: state.apparmor_support().clone().ok(),
        apparmor_reason: state.apparmor_support().clone().err(),
        seccomp: state.seccomp_support().is_ok(),
        seccomp_reason: state.seccomp_support().clone().err(),
    };

    let notify = Arc::new(Notify::new());
    let seccomp_store = watch_kind::<SeccompProfile>(&client, notify.clone(), &health);
    let apparmor_store = watch_kind::<AppArmorProfile>(&client, notify.clone(), &health);
    let nodes: Api<Node> = Api::all(client.clone());
    let (node_store, node_writer) = reflector::store();
    let node_watch = reflector::reflector(
        node_writer,
        watcher(
            nodes,
            watcher::Config::default().fields(&format!("metadata.name={}", args.node_name)),
        )
        .default_backoff(),
    );
    let n = notify.clone();
    let alive = health.alive("watch/node");
    tokio::spawn(node_watch.for_each(move |_| {
        let _alive = &alive;
        n.notify_one();
        futures::future::ready(())
    }));
    seccomp_store.wait_until_ready().await.context("watching profiles")?;
    apparmor_store.wait_until_ready().await.context("watching profiles")?;
    node_store.wait_until_ready().await.context("watching the Node")?;

    let mut writer = StatusWriter::new(client.clone(), &args.node_name, &args.namespace);
    // The heartbeat has its own task: a long sync (a thousand parser runs) never makes a
    // live node look dead.
    let heartbeat = writer.heartbeat(args.lease_duration);
    let alive = health.alive("heartbeat");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _alive = alive;
        heartbeat.run(stop).await
    });
    if args.learn {
        let learner = crate::learn::Learner::new(
            crate::learn::Config {
                node: args.node_name.clone(),
                source: crate::learn::Source::detect(&args.audit_log),
                proc_root: args.proc_root.clone(),
                seccomp_subdir: args.seccomp_subdir.clone(),
                interval: Duration::from_millis(500),
                write_gap: Duration::from_secs(5),
            },
            client.clone(),
            apparmor_store.clone(),
            seccomp_store.clone(),
        );
        let (alive, stop) = (health.alive("learn"), shutdown.clone());
        tokio::spawn(async move {
            let _alive = alive;
            learner.run(stop).await
        });
    }
    let mut drift = tokio::time::interval(Duration::from_secs(args.drift_interval.max(1)));
    let mut object_ready = false;
    let mut shutdown_rx = shutdown.clone();
    let mut first = true;
    let mut next_write = tokio::time::Instant::now();
    loop {
        let drift_check = tokio::select! {
            _ = notify.notified() => {
                // Let a burst of events land, so a batch costs one sync and one write; and
                // keep writes apart in proportion to how slowly the API server answers them,
                // so a flood of changes is coalesced instead of flooding it back.
                tokio::time::sleep(Duration::from_millis(15)).await;
                tokio::time::sleep_until(next_write).await;
                false
            }
            _ = drift.tick() => true,
            _ = shutdown_rx.wait_for(|s| *s) => break,
        };
        let Some(node) = node_store.state().into_iter().next() else {
            tracing::warn!(node = args.node_name, "Node not found; waiting for it");
            continue;
        };
        let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
        let seccomp = seccomp_store.state();
        let apparmor = apparmor_store.state();
        let (entries, failures) = state.sync(&seccomp, &apparmor, &labels, drift_check || first).await;
        first = false;
        if !object_ready {
            match writer.ensure_object(&node).await {
                Ok(()) => object_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "creating the NodeProfileStatus failed; will retry")
                }
            }
        }
        let started = tokio::time::Instant::now();
        let changed = writer.changed_entries(&entries);
        match writer.report(&capabilities, entries).await {
            Ok(wrote) => {
                if wrote {
                    metrics.status_writes.inc();
                    next_write = tokio::time::Instant::now() + write_gap(started.elapsed(), changed);
                }
                health.set_ready(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing the NodeProfileStatus failed; will retry");
                writer.invalidate();
                object_ready = false;
                let n = notify.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    n.notify_one();
                });
            }
        }
        writer.announce(&failures).await;
        drop((seccomp, apparmor));
        // Hand back what the sync freed (request bodies, rendered profiles).
        palisade_runtime::release_free_memory();
    }
    tracing::info!("stopped");
    Ok(())
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
        use kube::api::DynamicObject;
        use kube::runtime::watcher::Event;
        let obj = |rv: &str, accepted: &str, ready: &str| {
            let mut o: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "p", "uid": "u", "generation": 1, "resourceVersion": rv},
                "spec": {"defaultAction": "SCMP_ACT_ALLOW"},
                "status": {"accepted": {"generation": 1, "digest": accepted},
                           "conditions": [{"type": "Ready", "status": ready}]}}))
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
        use kube::api::DynamicObject;
        use palisade_crds::SeccompProfile;
        let mut o: DynamicObject = serde_json::from_value(serde_json::json!({
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
        let p: SeccompProfile = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(
            palisade_crds::accepted_content(p.status.as_ref()).map(|a| a.digest.as_str()),
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
