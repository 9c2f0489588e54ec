//! Wiring: flags, leader election, watches and the triggers that route changes to the
//! profiles they affect, the two controllers, and the HTTP endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use palisade_crds::{AppArmorProfile, NodeProfileStatus, ProfileKind, SeccompProfile};
use palisade_runtime::{Health, LogFormat};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

use crate::controller::{self, Context, Profile};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::pods;
use crate::validate::ParserConfig;

/// palisade-operator: validates profiles, aggregates node status, protects profiles in use.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "palisade-operator", version, about)]
pub struct Args {
    /// Namespace of the leader-election Lease and of the agents' heartbeat Leases.
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    pub namespace: String,
    /// This replica's identity in leader election.
    #[arg(long, env = "POD_NAME", default_value = "palisade-operator")]
    pub identity: String,
    /// Leader Lease duration in seconds; a standby takes over within it.
    #[arg(long, env = "PALISADE_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// apparmor_parser used to compile (never load) AppArmor profiles.
    #[arg(long, env = "PALISADE_APPARMOR_PARSER", default_value = "apparmor_parser")]
    pub apparmor_parser: PathBuf,
    /// AppArmor include directory the operator compiles against.
    #[arg(long, env = "PALISADE_APPARMOR_INCLUDE_DIR", default_value = "/etc/apparmor.d")]
    pub apparmor_include_dir: PathBuf,
    /// Where /metrics is served.
    #[arg(long, env = "PALISADE_METRICS_ADDRESS", default_value = "127.0.0.1:9200")]
    pub metrics_address: SocketAddr,
    /// Where /healthz and /readyz are served (may equal the metrics address).
    #[arg(long, env = "PALISADE_HEALTH_ADDRESS", default_value = "127.0.0.1:9201")]
    pub health_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// The profiles each pod (`namespace/name`) referenced when last seen.
type PodRefs = HashMap<String, Vec<(ProfileKind, String)>>;

/// Name of the leader-election Lease.
pub const LEADER_LEASE: &str = "palisade-operator";

/// Reconciles in flight at once, per kind.
const RECONCILE_CONCURRENCY: u16 = 8;

/// Drops what no reconcile reads: managedFields, and annotations (kubectl's
/// last-applied-configuration is a second copy of the object).
fn slim_meta<K: kube::Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
}

fn reflect<K>(api: Api<K>, cfg: watcher::Config, slim: fn(&mut K)) -> (Store<K>, impl Stream<Item = Arc<K>> + Send)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(1024);
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(slim)
        .reflect_shared(writer)
        .touched_objects()
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(Arc::new);
    (store, stream)
}

pub async fn run(args: Args) -> Result<()> {
    let client = palisade_runtime::connect().await?;
    // Relists and report bursts allocate and free a lot at once; keep RSS at what is held.
    palisade_runtime::spawn_memory_release(Duration::from_secs(10));

    let mut registry = Registry::with_prefix("palisade");
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let health = Health::default();
    let shutdown = palisade_runtime::shutdown_signal();
    palisade_runtime::spawn_http(args.metrics_address, args.health_address, registry, &health, &shutdown);

    // Leader election: a standby waits here, healthy and ready to take over.
    health.set_ready(true);
    let elector = Arc::new(Elector::new(
        client.clone(),
        &args.namespace,
        LEADER_LEASE,
        &args.identity,
        Duration::from_secs(args.lease_duration),
    ));
    let renew = Duration::from_secs((args.lease_duration / 3).max(1));
    let mut stop = shutdown.clone();
    loop {
        loop {
            match elector.try_lead().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::select! {
                _ = tokio::time::sleep(renew) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        lead(&client, &args, &metrics, &shutdown, &elector, renew).await?;
        if *shutdown.borrow() {
            elector.release().await;
            tracing::info!("stopped");
            return Ok(());
        }
        // Leadership was lost (the API server was unreachable for a lease, say): back to
        // standby, with every watch and task of the last term stopped.
        tracing::warn!("lost leadership; standing by");
    }
}

/// One term as leader: watches, triggers and both controllers, until shutdown or until the
/// Lease can no longer be renewed. Every task it starts ends with it.
async fn lead(
    client: &Client,
    args: &Args,
    metrics: &Metrics,
    shutdown: &tokio::sync::watch::Receiver<bool>,
    elector: &Arc<Elector>,
    renew: Duration,
) -> Result<()> {
    let client = client.clone();
    let metrics = metrics.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tracing::info!(identity = args.identity, "leading");
    let lease_duration = Duration::from_secs(args.lease_duration);
    let keeper = elector.clone();
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    tasks.spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew).await;
            match keeper.try_lead().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(e) if last_ok.elapsed() < lease_duration => {
                    tracing::warn!(error = %e, "renewing leadership")
                }
                Err(_) => break,
            }
        }
        let _ = lost_tx.send(true);
    });

    // Stores: what reconciles read. Pods are kept as a slim projection.
    let (seccomp, seccomp_events) = reflect(
        Api::<SeccompProfile>::all(client.clone()),
        watcher::Config::default(),
        slim_meta,
    );
    let reports = Arc::new(crate::reports::NodeReports::default());
    // Reports are large (an entry per profile): listed a few at a time, so a relist never
    // holds every node's report in one response.
    let nps_events = watcher(
        Api::<NodeProfileStatus>::all(client.clone()),
        watcher::Config::default().page_size(5),
    )
    .default_backoff();
    // Nodes: only name and labels are read; a real Node's status (images, conditions) is
    // tens of kilobytes.
    let (nodes, node_events) = reflect(Api::<Node>::all(client.clone()), watcher::Config::default(), |n| {
        slim_meta(n);
        n.spec = None;
        n.status = None;
    });
    let (leases, lease_events) = reflect(
        Api::<Lease>::namespaced(client.clone(), &args.namespace),
        watcher::Config::default().labels("app.kubernetes.io/name=palisade-agent"),
        slim_meta,
    );
    let (pod_store, pod_writer) = reflector::store_shared(1024);
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(pods::slim)
        .modify(|o| o.managed_fields_mut().clear())
        .reflect_shared(pod_writer)
        .touched_objects()
        .filter_map(|r| futures::future::ready(r.ok()));

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "palisade-operator".into(),
                instance: Some(args.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        parser: ParserConfig {
            parser: args.apparmor_parser.clone(),
            include_dir: args.apparmor_include_dir.clone(),
        },
        seccomp: seccomp.clone(),
        reports: reports.clone(),
        nodes,
        leases: leases.clone(),
        pods: pod_store,
        validated: Mutex::default(),
        last_write: Mutex::default(),
    });

    // Triggers: route each change to the profiles it affects.
    let (sc_tx, sc_rx) = mpsc::unbounded_channel::<ObjectRef<SeccompProfile>>();
    let (aa_tx, aa_rx) = mpsc::unbounded_channel::<ObjectRef<AppArmorProfile>>();
    let (all_tx, _) = broadcast::channel::<()>(16);
    let route = {
        let (sc_tx, aa_tx) = (sc_tx.clone(), aa_tx.clone());
        move |kind: ProfileKind, name: &str| match kind {
            ProfileKind::SeccompProfile => {
                let _ = sc_tx.send(ObjectRef::new(name));
            }
            ProfileKind::AppArmorProfile => {
                let _ = aa_tx.send(ObjectRef::new(name));
            }
        }
    };
    let r = route.clone();
    tasks.spawn(nps_events.for_each(move |event| {
        // Only the profiles whose entries changed on that node are looked at again.
        if let Ok(event) = event {
            for (kind, name) in reports.apply(event) {
                r(kind, &name);
            }
        }
        futures::future::ready(())
    }));
    let r = route.clone();
    let pod_refs: Arc<Mutex<PodRefs>> = Arc::default();
    tasks.spawn(pod_events.for_each(move |p| {
        let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let now = pods::references(&p);
        let before = pod_refs
            .lock()
            .expect("lock")
            .insert(key, now.clone())
            .unwrap_or_default();
        for (kind, name) in now.iter().chain(before.iter()) {
            r(*kind, name);
        }
        futures::future::ready(())
    }));
    let seccomp_for_children = seccomp.clone();
    let sc = sc_tx.clone();
    tasks.spawn(seccomp_events.for_each(move |p| {
        // A base changed: re-validate everything that inherits from it, transitively.
        let mut queue = vec![p.name_any()];
        let mut seen = BTreeSet::new();
        while let Some(base) = queue.pop() {
            if !seen.insert(base.clone()) {
                continue;
            }
            for child in seccomp_for_children.state() {
                if child.spec.base_profile_name.as_deref() == Some(base.as_str()) {
                    let _ = sc.send(ObjectRef::new(&child.name_any()));
                    queue.push(child.name_any());
                }
            }
        }
        futures::future::ready(())
    }));
    let all = all_tx.clone();
    let node_labels: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>> = Arc::default();
    let node_store = ctx.nodes.clone();
    tasks.spawn(node_events.for_each(move |_| {
        // Node status heartbeats change nothing here: only membership and labels count.
        let now: BTreeMap<String, BTreeMap<String, String>> = node_store
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let mut last = node_labels.lock().expect("lock");
        if *last != now {
            *last = now;
            let _ = all.send(());
        }
        futures::future::ready(())
    }));
    let all = all_tx.clone();
    tasks.spawn(async move {
        // Agent liveness: a heartbeat arriving or expiring changes which nodes count.
        let mut live = BTreeSet::new();
        let mut events = Box::pin(lease_events);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                e = events.next() => if e.is_none() { break },
                _ = tick.tick() => {}
            }
            let now = controller::live_nodes(&leases);
            if now != live {
                live = now;
                let _ = all.send(());
            }
        }
    });

    ctx.seccomp.wait_until_ready().await.context("initial watch sync")?;
    ctx.reports.wait_ready().await;
    ctx.nodes.wait_until_ready().await.context("initial watch sync")?;
    ctx.pods.wait_until_ready().await.context("initial watch sync")?;

    let stop = {
        let mut shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {},
                _ = lost_rx.wait_for(|l| *l) => {},
            }
        }
    };
    let stop = futures::future::FutureExt::shared(Box::pin(stop));
    let seccomp_ctl = run_controller::<SeccompProfile>(
        &client,
        ctx.clone(),
        UnboundedReceiverStream::new(sc_rx),
        &all_tx,
        stop.clone(),
    );
    let apparmor_ctl = run_controller::<AppArmorProfile>(
        &client,
        ctx.clone(),
        UnboundedReceiverStream::new(aa_rx),
        &all_tx,
        stop.clone(),
    );
    tokio::join!(seccomp_ctl, apparmor_ctl);
    tasks.abort_all();
    Ok(())
}

async fn run_controller<K>(
    client: &Client,
    ctx: Arc<Context>,
    refs: impl Stream<Item = ObjectRef<K>> + Send + 'static,
    all: &broadcast::Sender<()>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Profile,
{
    let all = BroadcastStream::new(all.subscribe()).filter_map(|r| futures::future::ready(r.ok()));
    // Watched as JSON and parsed per object: one object that does not parse (an older or
    // newer schema, say) is logged and skipped instead of failing the whole list and watch.
    let ar = ApiResource::erase::<K>(&());
    let (reader, writer) = reflector::store();
    let objects = watcher(
        Api::<DynamicObject>::all_with(client.clone(), &ar),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim_meta)
    .try_filter_map(|event| futures::future::ready(Ok(palisade_runtime::parse_event::<K>(event))))
    .reflect(writer)
    .applied_objects();
    // Bounded: a burst (a relist, a node joining) reconciles every profile, and each
    // reconcile holds its profile's per-node view while its status write is in flight.
    Controller::for_stream(objects, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .reconcile_on(refs)
        .reconcile_all_on(all)
        .graceful_shutdown_on(stop)
        .run(controller::reconcile::<K>, controller::error_policy::<K>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
