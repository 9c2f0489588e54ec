//! Wiring: flags, leader election, watches and the triggers that route changes to the
//! profiles they affect, the two controllers, and the HTTP endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use palisade_crds::{AppArmorProfile, NodeProfileStatus, ProfileKind, SeccompProfile};
use palisade_runtime::{Health, LogFormat};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

use crate::controller::{self, Caches, Context, Profile};
use crate::leader::Elector;
use crate::liveness::Liveness;
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
    #[command(flatten)]
    pub parser: palisade_runtime::budget::ParserArgs,
    /// Directories a SeccompProfile's `listenerPath` may name; comma-separated. Empty (the
    /// default): `listenerPath` and `SCMP_ACT_NOTIFY` are refused.
    #[arg(long, env = "PALISADE_SECCOMP_LISTENER_DIRS", value_delimiter = ',')]
    pub seccomp_listener_dirs: Vec<String>,
    /// AppArmor include directory the operator compiles against.
    #[arg(long, env = "PALISADE_APPARMOR_INCLUDE_DIR", default_value = "/etc/apparmor.d")]
    pub apparmor_include_dir: PathBuf,
    /// Where /metrics is served.
    /// Subdirectory of the kubelet's seccomp directory the agents write to (as the agents'
    /// `--seccomp-subdir`): pods reference `<subdir>/<name>.json`.
    #[arg(long, env = "PALISADE_SECCOMP_SUBDIR", default_value = palisade_crds::SECCOMP_SUBDIR)]
    pub seccomp_subdir: String,

    /// Serve the pod admission guard (HTTPS, `/validate-pods`) on this address; off when
    /// unset. Every replica serves it.
    #[arg(long, env = "PALISADE_WEBHOOK_ADDRESS")]
    pub webhook_address: Option<SocketAddr>,
    /// `warn`: admit pods naming a missing or rejected profile with a warning; `deny`:
    /// refuse them. Profiles not Ready on every node always get a warning.
    #[arg(long, env = "PALISADE_WEBHOOK_MODE", value_enum, default_value_t = crate::webhook::Mode::Warn)]
    pub webhook_mode: crate::webhook::Mode,
    /// The Secret (in the operator's namespace) that holds the webhook's CA and certificate.
    #[arg(long, env = "PALISADE_WEBHOOK_SECRET", default_value = "palisade-webhook-tls")]
    pub webhook_secret: String,
    /// The Service in front of the operator: the certificate's DNS names.
    #[arg(long, env = "PALISADE_WEBHOOK_SERVICE", default_value = "palisade-webhook")]
    pub webhook_service: String,
    /// The ValidatingWebhookConfiguration whose caBundle the operator keeps.
    #[arg(long, env = "PALISADE_WEBHOOK_CONFIGURATION", default_value = "palisade-pod-guard")]
    pub webhook_configuration: String,

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

/// A shared cache of a built-in kind and the stream of its watch events (which must be
/// polled for the cache to fill).
fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    slim: impl FnMut(&mut K) + Send + 'static,
) -> (Store<K>, impl Stream<Item = watcher::Event<K>> + Send)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .filter_map(|r| futures::future::ready(r.ok()));
    (store, stream)
}

/// The one watch of a profile kind, through `DeserializeGuard`: an object that does not
/// parse stays in the watch and its cache (and is reconciled, to say so in its status)
/// instead of failing the list or the watch. Cached in a shared store that the controller
/// and the other reconciles read. Returns the store, a subscription for the controller, and
/// the event stream (which must be polled).
#[allow(clippy::type_complexity)]
fn reflect_profiles<K>(
    client: &Client,
) -> (
    Store<DeserializeGuard<K>>,
    ReflectHandle<DeserializeGuard<K>>,
    impl Stream<Item = watcher::Event<DeserializeGuard<K>>> + Send + use<K>,
)
where
    K: Profile,
{
    let (store, writer) = reflector::store_shared(1024);
    let subscriber = writer.subscribe().expect("a shared store has subscribers");
    let stream = watcher(
        Api::<DeserializeGuard<K>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim_meta)
    .reflect_shared(writer)
    .filter_map(|r| futures::future::ready(r.ok()));
    (store, subscriber, stream)
}

/// Keeps what nodes are expected to hold of each profile up to date with its watch (an
/// object that does not parse is held nowhere); returns the profiles waiting on nodes whose
/// expected set changed.
fn expect<K: Profile>(
    ctx: &Context,
    store: &Store<DeserializeGuard<K>>,
    event: &watcher::Event<DeserializeGuard<K>>,
) -> Vec<(ProfileKind, String)> {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => ctx
            .reports
            .set_want((K::KIND, p.name_any()), p.0.as_ref().ok().and_then(controller::want_of)),
        watcher::Event::Delete(p) => ctx.reports.set_want((K::KIND, p.name_any()), None),
        watcher::Event::InitDone => {
            let names = store.state().iter().map(|p| p.name_any()).collect();
            ctx.reports.retain_wants(K::KIND, &names)
        }
        watcher::Event::Init => vec![],
    }
}

/// Forgets what the operator kept about profiles that are gone, on each delete and after
/// each relist (which may hide deletes).
fn forget_gone<K: Profile>(ctx: &Context, store: &Store<DeserializeGuard<K>>) {
    let objects = store.state();
    let names = objects.iter().map(|p| p.name_any()).collect();
    let uids = objects.iter().filter_map(|p| p.uid()).collect();
    ctx.retain(K::KIND, &names, &uids);
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
    palisade_runtime::spawn_http(args.metrics_address, args.health_address, registry, &health, &shutdown).await?;

    // The pod admission guard: every replica serves it, from profile caches of its own.
    if let Some(address) = args.webhook_address {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the webhook address {address}"))?;
        let (sc_store, _, sc_events) = reflect_profiles::<SeccompProfile>(&client);
        let (aa_store, _, aa_events) = reflect_profiles::<AppArmorProfile>(&client);
        tokio::spawn(sc_events.for_each(|_| futures::future::ready(())));
        tokio::spawn(aa_events.for_each(|_| futures::future::ready(())));
        let cfg = crate::webhook::Config {
            mode: args.webhook_mode,
            namespace: args.namespace.clone(),
            secret: args.webhook_secret.clone(),
            service: args.webhook_service.clone(),
            configuration: args.webhook_configuration.clone(),
        };
        let guard = crate::webhook::Guard {
            mode: args.webhook_mode,
            seccomp_subdir: args.seccomp_subdir.clone(),
            seccomp: sc_store,
            apparmor: aa_store,
        };
        let (client, alive) = (client.clone(), health.alive("webhook"));
        tokio::spawn(async move {
            let _alive = alive;
            if let Err(e) = crate::webhook::serve(client, cfg, listener, guard).await {
                tracing::error!(error = %e, "the webhook stopped");
            }
        });
    }

    // Leader election: a standby waits here, healthy and ready to take over.
    health.set_ready(true);
    let _election = health.alive("leader-election");
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
        lead(&client, &args, &metrics, &health, &shutdown, &elector, renew).await?;
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

/// Spawns a task of the leader's term whose end `/healthz` reports while the term lasts.
fn spawn_watched(
    tasks: &mut tokio::task::JoinSet<()>,
    health: &Health,
    names: &mut Vec<String>,
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let guard = health.alive(name);
    names.push(name.to_string());
    tasks.spawn(async move {
        let _guard = guard;
        task.await
    });
}

/// One term as leader: watches, triggers and both controllers, until shutdown or until the
/// Lease can no longer be renewed. Every task it starts ends with it.
async fn lead(
    client: &Client,
    args: &Args,
    metrics: &Metrics,
    health: &Health,
    shutdown: &tokio::sync::watch::Receiver<bool>,
    elector: &Arc<Elector>,
    renew: Duration,
) -> Result<()> {
    let client = client.clone();
    let metrics = metrics.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut loops = Vec::new();
    tracing::info!(identity = args.identity, "leading");
    let keeper = elector.clone();
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    tasks.spawn(async move {
        keeper.keep_leading(renew).await;
        let _ = lost_tx.send(true);
    });

    // One watch per kind; the stores are what reconciles read.
    let (seccomp, seccomp_sub, seccomp_events) = reflect_profiles::<SeccompProfile>(&client);
    let (apparmor, apparmor_sub, apparmor_events) = reflect_profiles::<AppArmorProfile>(&client);
    let reports = Arc::new(crate::reports::NodeReports::default());
    // Reports are small (a summary and the exceptions): listed a hundred at a time.
    let nps_events = watcher(
        Api::<NodeProfileStatus>::all(client.clone()),
        watcher::Config::default().page_size(100),
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
        watcher::Config::default().labels(&palisade_crds::names::agent_lease_selector()),
        slim_meta,
    );
    let subdir = args.seccomp_subdir.clone();
    let (pod_store, pod_events) = reflect(Api::<Pod>::all(client.clone()), watcher::Config::default(), move |p| {
        pods::slim(p, &subdir);
        p.managed_fields_mut().clear();
    });
    let liveness = Arc::new(Liveness::default());

    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(
            client.clone(),
            Reporter {
                controller: "palisade-operator".into(),
                instance: Some(args.identity.clone()),
            },
        ),
        metrics.clone(),
        ParserConfig {
            parser: args.apparmor_parser.clone(),
            include_dir: args.apparmor_include_dir.clone(),
            budget: args.parser.budget(),
            reserved: args.parser.reserved_profile_names.clone(),
            listener_dirs: args.seccomp_listener_dirs.clone(),
            seccomp_helper: std::env::current_exe().ok(),
        },
        args.seccomp_subdir.clone(),
        Caches {
            seccomp: seccomp.clone(),
            reports: reports.clone(),
            nodes,
            liveness: liveness.clone(),
            pods: pod_store.clone(),
        },
    ));

    // Triggers: route each change to the profiles it affects.
    let (sc_tx, sc_rx) = mpsc::unbounded_channel::<ObjectRef<DeserializeGuard<SeccompProfile>>>();
    let (aa_tx, aa_rx) = mpsc::unbounded_channel::<ObjectRef<DeserializeGuard<AppArmorProfile>>>();
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
    // Each node's pods that use a learning profile, published in its report for its agent.
    let published = Arc::new(crate::learning_pods::Published::default());
    let published_nps = published.clone();
    let r = route.clone();
    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "watch/nodeprofilestatuses",
        nps_events.for_each(move |event| {
            // Only the profiles whose entries changed on that node are looked at again.
            if let Ok(event) = event {
                published_nps.observe(&event);
                for (kind, name) in reports.apply(event) {
                    r(kind, &name);
                }
            }
            futures::future::ready(())
        }),
    );
    let r = route.clone();
    let pod_refs: Arc<Mutex<PodRefs>> = Arc::default();
    let pods_now = pod_store.clone();
    let published_pods = published.clone();
    let subdir = args.seccomp_subdir.clone();
    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "watch/pods",
        pod_events.for_each(move |event| {
            let key = |p: &Pod| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
            let mut refs = pod_refs.lock().expect("lock");
            let mut touched = Vec::new();
            let relisted = matches!(event, watcher::Event::InitDone);
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let now = pods::references(&p, &subdir);
                    let before = if now.is_empty() {
                        refs.remove(&key(&p))
                    } else {
                        refs.insert(key(&p), now.clone())
                    };
                    touched.extend(now.into_iter().chain(before.into_iter().flatten()));
                }
                watcher::Event::Delete(p) => touched.extend(refs.remove(&key(&p)).into_iter().flatten()),
                watcher::Event::InitDone => {
                    // A relist may hide deletions: keep only pods that still exist.
                    let live: BTreeSet<String> = pods_now.state().iter().map(|p| key(p)).collect();
                    refs.retain(|k, gone| {
                        let keep = live.contains(k);
                        if !keep {
                            touched.append(gone);
                        }
                        keep
                    });
                }
                watcher::Event::Init => {}
            }
            drop(refs);
            // A relist's store is complete only at InitDone: look again then.
            if !touched.is_empty() || relisted {
                published_pods.wake();
            }
            for (kind, name) in touched {
                r(kind, &name);
            }
            futures::future::ready(())
        }),
    );
    let published_sc = published.clone();
    let children_of = seccomp.clone();
    let sc = sc_tx.clone();
    let (ctx_sc, store_sc) = (ctx.clone(), seccomp.clone());
    let r = route.clone();
    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "watch/seccompprofiles",
        seccomp_events.for_each(move |event| {
            published_sc.wake();
            for (kind, name) in expect(&ctx_sc, &store_sc, &event) {
                r(kind, &name);
            }
            match &event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                    // A base changed (or went): re-validate everything that inherits from it,
                    // transitively, so no descendant keeps a verdict about content it no longer has.
                    let mut queue = vec![p.name_any()];
                    let mut seen = BTreeSet::new();
                    while let Some(base) = queue.pop() {
                        if !seen.insert(base.clone()) {
                            continue;
                        }
                        // An object that does not parse names no base.
                        for child in children_of.state() {
                            let parent = child.0.as_ref().ok().and_then(|c| c.spec.base_profile_name.as_deref());
                            if parent == Some(base.as_str()) {
                                let _ = sc.send(ObjectRef::new(&child.name_any()));
                                queue.push(child.name_any());
                            }
                        }
                    }
                }
                _ => {}
            }
            if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
                forget_gone(&ctx_sc, &store_sc);
            }
            futures::future::ready(())
        }),
    );
    let published_aa = published.clone();
    let (ctx_aa, store_aa) = (ctx.clone(), apparmor.clone());
    let r = route.clone();
    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "watch/apparmorprofiles",
        apparmor_events.for_each(move |event| {
            published_aa.wake();
            for (kind, name) in expect(&ctx_aa, &store_aa, &event) {
                r(kind, &name);
            }
            if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
                forget_gone(&ctx_aa, &store_aa);
            }
            futures::future::ready(())
        }),
    );
    let all = all_tx.clone();
    let node_labels: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>> = Arc::default();
    let (node_store, expectations) = (ctx.nodes.clone(), ctx.reports.clone());
    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "watch/nodes",
        node_events.for_each(move |_| {
            // Node status heartbeats change nothing here: only membership and labels count.
            let now: BTreeMap<String, BTreeMap<String, String>> = node_store
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect();
            let mut last = node_labels.lock().expect("lock");
            if *last != now {
                // Every profile is looked at again just below, waiters included.
                drop(expectations.set_nodes(&now));
                *last = now;
                let _ = all.send(());
            }
            futures::future::ready(())
        }),
    );
    let all = all_tx.clone();
    let lease_store = leases.clone();
    let (node_store, node_metrics) = (ctx.nodes.clone(), ctx.metrics.clone());
    spawn_watched(&mut tasks, health, &mut loops, "watch/leases", async move {
        // Agent liveness: a heartbeat changing or going quiet changes which nodes count.
        let mut live = BTreeSet::new();
        let mut events = Box::pin(lease_events);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            // Renewals of live heartbeats (most events) change nothing: which nodes are live
            // is looked at again when one becomes live, one goes, or on the tick (expiry).
            let mut became_live = false;
            let look = tokio::select! {
                e = events.next() => match e {
                    None => break,
                    Some(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
                        became_live = liveness.observe(&l);
                        became_live
                    }
                    Some(watcher::Event::Delete(l)) => {
                        liveness.forget(&l);
                        true
                    }
                    Some(watcher::Event::InitDone) => {
                        liveness.retain(&lease_store.state().iter().map(|l| l.name_any()).collect());
                        true
                    }
                    Some(watcher::Event::Init) => false,
                },
                _ = tick.tick() => true,
            };
            if !look {
                continue;
            }
            let now = liveness.live();
            // Linux nodes (where the chart runs agents) and how many of them have one live.
            let linux: BTreeSet<String> = node_store
                .state()
                .iter()
                .filter(|n| n.labels().get("kubernetes.io/os").is_none_or(|os| os == "linux"))
                .map(|n| n.name_any())
                .collect();
            node_metrics.agents(linux.len(), linux.iter().filter(|n| now.contains(*n)).count());
            // A node coming back counts again even if it expired and returned between two
            // ticks (reconciles read the clock, this copy only changes here).
            if now != live || became_live {
                live = now;
                let _ = all.send(());
            }
        }
    });

    // Targets are computed only from synced caches: no "no nodes" verdict before the Nodes
    // and heartbeats are known.
    ctx.seccomp.wait_until_ready().await.context("initial watch sync")?;
    apparmor.wait_until_ready().await.context("initial watch sync")?;
    ctx.reports.wait_ready().await;
    ctx.nodes.wait_until_ready().await.context("initial watch sync")?;
    leases.wait_until_ready().await.context("initial watch sync")?;
    ctx.pods.wait_until_ready().await.context("initial watch sync")?;

    spawn_watched(
        &mut tasks,
        health,
        &mut loops,
        "publish/learning-pods",
        crate::learning_pods::run(
            client.clone(),
            published,
            ctx.pods.clone(),
            apparmor.clone(),
            ctx.seccomp.clone(),
            args.seccomp_subdir.clone(),
        ),
    );

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
    let seccomp_ctl = run_controller(
        ctx.clone(),
        seccomp,
        seccomp_sub,
        UnboundedReceiverStream::new(sc_rx),
        &all_tx,
        stop.clone(),
    );
    let apparmor_ctl = run_controller(
        ctx.clone(),
        apparmor,
        apparmor_sub,
        UnboundedReceiverStream::new(aa_rx),
        &all_tx,
        stop.clone(),
    );
    tokio::join!(seccomp_ctl, apparmor_ctl);
    tasks.shutdown().await;
    for name in loops {
        health.forget(&name);
    }
    Ok(())
}

async fn run_controller<K>(
    ctx: Arc<Context>,
    store: Store<DeserializeGuard<K>>,
    objects: ReflectHandle<DeserializeGuard<K>>,
    refs: impl Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
    all: &broadcast::Sender<()>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Profile,
{
    let all = BroadcastStream::new(all.subscribe()).filter_map(|r| futures::future::ready(r.ok()));
    // Bounded: a burst (a relist, a node joining) reconciles every profile, and each
    // reconcile holds its profile's per-node view while its status write is in flight.
    Controller::for_shared_stream(objects, store)
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
