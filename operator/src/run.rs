//! Wiring: flags, the pod admission guard, leader election, and each term as leader: the
//! watches, the triggers that route changes to the profiles they affect ([`crate::triggers`]),
//! the two controllers, and the HTTP endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use palisade_domain::{AppArmorProfile, NodeProfileStatus, ProfileBinding, SeccompProfile};
use palisade_runtime::{Health, LogFormat};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::controller::{self, Caches, Context, Profile};
use crate::leader::Elector;
use crate::learning_pods::Published;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::pods;
use crate::triggers::{self, Router};
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
    #[arg(long, env = "PALISADE_SECCOMP_SUBDIR", default_value = palisade_domain::SECCOMP_SUBDIR)]
    pub seccomp_subdir: String,

    /// Serve the pod admission webhooks (HTTPS: the guard at `/validate-pods`, the
    /// ProfileBinding binder at `/mutate-pods`) on this address; off when unset. Every
    /// replica serves them.
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
    /// The ValidatingWebhookConfiguration whose caBundle the operator keeps ("": none).
    #[arg(long, env = "PALISADE_WEBHOOK_CONFIGURATION", default_value = "palisade-pod-guard")]
    pub webhook_configuration: String,
    /// The MutatingWebhookConfiguration (ProfileBindings, `/mutate-pods`) whose caBundle the
    /// operator keeps.
    #[arg(
        long,
        env = "PALISADE_BINDING_WEBHOOK_CONFIGURATION",
        default_value = "palisade-profile-binding"
    )]
    pub binding_webhook_configuration: String,

    #[arg(long, env = "PALISADE_METRICS_ADDRESS", default_value = "127.0.0.1:9200")]
    pub metrics_address: SocketAddr,
    /// Where /healthz and /readyz are served (may equal the metrics address).
    #[arg(long, env = "PALISADE_HEALTH_ADDRESS", default_value = "127.0.0.1:9201")]
    pub health_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// The agents report denials: publish in each node's report every pod of that node
    /// that uses a Palisade profile (not only those of learning profiles), so that its agent
    /// can attribute a denial to its pod.
    #[arg(long, env = "PALISADE_DENIALS")]
    pub denials: bool,
}

/// Name of the leader-election Lease.
pub const LEADER_LEASE: &str = "palisade-operator";

/// Reconciles in flight at once, per kind.
const RECONCILE_CONCURRENCY: u16 = 8;

pub async fn run(args: Args) -> Result<()> {
    let client = palisade_runtime::connect().await?;
    // CRDs come with the chart's crds/ only at install (helm upgrade leaves them): say so
    // rather than wait forever on a watch of a kind the API server does not serve.
    let served = client.list_api_group_resources(&palisade_domain::api_version()).await?;
    if !served.resources.iter().any(|r| r.name == "profilebindings") {
        anyhow::bail!(
            "the ProfileBinding CRD is not installed (helm upgrade does not update CRDs): kubectl apply --server-side -f crds/ (or charts/palisade/crds/) first"
        );
    }
    // Relists and report bursts allocate and free a lot at once; keep RSS at what is held.
    palisade_runtime::spawn_memory_release(Duration::from_secs(10));

    let mut registry = Registry::with_prefix("palisade");
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let health = Health::default();
    let shutdown = palisade_runtime::shutdown_signal();
    palisade_runtime::spawn_http(args.metrics_address, args.health_address, registry, &health, &shutdown).await?;
    if let Some(address) = args.webhook_address {
        spawn_webhook(&client, &args, address, &health).await?;
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
    loop {
        if !stand_by(&elector, renew, shutdown.clone()).await {
            return Ok(());
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

/// Waits until this replica leads (`true`) or shutdown comes first (`false`).
async fn stand_by(elector: &Elector, renew: Duration, mut shutdown: watch::Receiver<bool>) -> bool {
    loop {
        match elector.try_lead().await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::select! {
            _ = tokio::time::sleep(renew) => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// The pod admission guard: every replica serves it, from profile caches of its own.
async fn spawn_webhook(client: &Client, args: &Args, address: SocketAddr, health: &Health) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the webhook address {address}"))?;
    let (seccomp, seccomp_events) = reflect_profiles::<SeccompProfile>(client);
    let (apparmor, apparmor_events) = reflect_profiles::<AppArmorProfile>(client);
    tokio::spawn(drain(seccomp_events));
    tokio::spawn(drain(apparmor_events));
    let (bindings, bindings_writer) = kube::runtime::reflector::store();
    tokio::spawn(drain(
        kube::runtime::watcher(kube::Api::<ProfileBinding>::all(client.clone()), Default::default())
            .default_backoff()
            .modify(slim_meta)
            .reflect(bindings_writer),
    ));
    let cfg = crate::webhook::Config {
        mode: args.webhook_mode,
        namespace: args.namespace.clone(),
        secret: args.webhook_secret.clone(),
        service: args.webhook_service.clone(),
        configuration: args.webhook_configuration.clone(),
        mutating_configuration: args.binding_webhook_configuration.clone(),
    };
    let guard = crate::webhook::Guard {
        mode: args.webhook_mode,
        seccomp_subdir: args.seccomp_subdir.clone(),
        seccomp: seccomp.store,
        apparmor: apparmor.store,
        bindings,
    };
    let (client, alive) = (client.clone(), health.alive("webhook"));
    tokio::spawn(async move {
        let _alive = alive;
        if let Err(e) = crate::webhook::serve(client, cfg, listener, guard).await {
            tracing::error!(error = %e, "the webhook stopped");
        }
    });
    Ok(())
}

/// The tasks of one term as leader, each reported by `/healthz` while the term lasts.
struct Term<'a> {
    health: &'a Health,
    tasks: tokio::task::JoinSet<()>,
    names: Vec<String>,
}

impl<'a> Term<'a> {
    fn new(health: &'a Health) -> Self {
        Self {
            health,
            tasks: tokio::task::JoinSet::new(),
            names: Vec::new(),
        }
    }

    /// Spawns a task whose end `/healthz` reports while the term lasts.
    fn spawn(&mut self, name: &str, task: impl Future<Output = ()> + Send + 'static) {
        let guard = self.health.alive(name);
        self.names.push(name.to_string());
        self.tasks.spawn(async move {
            let _guard = guard;
            task.await
        });
    }

    /// Keeps renewing the Lease; the returned future resolves once it could not.
    fn keep_leading(&mut self, elector: Arc<Elector>, renew: Duration) -> impl Future<Output = ()> + Send + 'static {
        let (lost_tx, mut lost_rx) = watch::channel(false);
        self.tasks.spawn(async move {
            elector.keep_leading(renew).await;
            let _ = lost_tx.send(true);
        });
        async move {
            let _ = lost_rx.wait_for(|lost| *lost).await;
        }
    }

    /// Stops every task of the term.
    async fn end(mut self) {
        self.tasks.shutdown().await;
        for name in self.names {
            self.health.forget(&name);
        }
    }
}

/// One term as leader: watches, triggers and both controllers, until shutdown or until the
/// Lease can no longer be renewed. Every task it starts ends with it.
async fn lead(
    client: &Client,
    args: &Args,
    metrics: &Metrics,
    health: &Health,
    shutdown: &watch::Receiver<bool>,
    elector: &Arc<Elector>,
    renew: Duration,
) -> Result<()> {
    tracing::info!(identity = args.identity, "leading");
    let mut term = Term::new(health);
    let lost = term.keep_leading(elector.clone(), renew);
    let w = Watches::start(client, &args.namespace, &args.seccomp_subdir);
    let binding_ctx = Arc::new(crate::bindings::BindingContext {
        client: client.clone(),
        seccomp_subdir: args.seccomp_subdir.clone(),
        seccomp: w.seccomp.store.clone(),
        apparmor: w.apparmor.store.clone(),
        bindings: w.bindings.clone(),
        counted: Default::default(),
    });
    let ctx = Arc::new(context(
        client,
        args,
        metrics,
        Caches {
            seccomp: w.seccomp.store.clone(),
            reports: Arc::default(),
            nodes: w.nodes,
            liveness: Arc::new(Liveness::default()),
            pods: w.pods,
            bindings: w.bindings.clone(),
        },
    ));
    let (router, seccomp_queue, apparmor_queue) = Router::new();
    // Each node's pods that use a learning profile (any Palisade profile, with denials on),
    // published in its report for its agent.
    let published = Arc::new(Published::default());
    follow_watches(
        &mut term,
        w.events,
        &ctx,
        &w.apparmor.store,
        &w.leases,
        &published,
        &router,
    );

    wait_synced(&ctx, &w.apparmor.store, &w.leases).await?;
    term.spawn(
        "publish/learning-pods",
        crate::learning_pods::run(
            client.clone(),
            published,
            ctx.pods.clone(),
            w.apparmor.store.clone(),
            ctx.seccomp.clone(),
            args.seccomp_subdir.clone(),
            args.denials,
        ),
    );

    ctx.bindings.wait_until_ready().await.context("initial watch sync")?;

    let stop = until_either(shutdown.clone(), lost);
    tokio::join!(
        run_controller(ctx.clone(), w.seccomp, seccomp_queue, &router, stop.clone()),
        run_controller(ctx.clone(), w.apparmor, apparmor_queue, &router, stop.clone()),
        run_binding_controller(binding_ctx, w.bindings, w.binding_objects, stop),
    );
    term.end().await;
    Ok(())
}

/// Waits for every cache to sync: targets are computed only from synced caches, so no "no
/// nodes" verdict comes before the Nodes and heartbeats are known.
async fn wait_synced(
    ctx: &Context,
    apparmor: &Store<DeserializeGuard<AppArmorProfile>>,
    heartbeats: &Store<Lease>,
) -> Result<()> {
    ctx.seccomp.wait_until_ready().await.context("initial watch sync")?;
    apparmor.wait_until_ready().await.context("initial watch sync")?;
    ctx.reports.wait_ready().await;
    ctx.nodes.wait_until_ready().await.context("initial watch sync")?;
    heartbeats.wait_until_ready().await.context("initial watch sync")?;
    ctx.pods.wait_until_ready().await.context("initial watch sync")?;
    Ok(())
}

/// Resolves at shutdown or when `lost` does (the Lease could not be renewed); every clone
/// with it.
fn until_either(
    mut shutdown: watch::Receiver<bool>,
    lost: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Clone + Send + Sync + 'static {
    let either = async move {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {},
            _ = lost => {},
        }
    };
    Box::pin(either).shared()
}

/// The controllers' shared state, reading the term's caches.
fn context(client: &Client, args: &Args, metrics: &Metrics, caches: Caches) -> Context {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "palisade-operator".into(),
            instance: Some(args.identity.clone()),
        },
    );
    let parser = ParserConfig {
        parser: args.apparmor_parser.clone(),
        include_dir: args.apparmor_include_dir.clone(),
        budget: args.parser.budget(),
        reserved: args.parser.reserved_profile_names.clone(),
        listener_dirs: args.seccomp_listener_dirs.clone(),
        seccomp_helper: std::env::current_exe().ok(),
    };
    Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        parser,
        args.seccomp_subdir.clone(),
        caches,
    )
}

/// Spawns one loop per watch that keeps its cache filling and routes what changed to the
/// profiles it affects (see [`crate::triggers`]).
fn follow_watches(
    term: &mut Term<'_>,
    events: WatchEvents,
    ctx: &Arc<Context>,
    apparmor: &Store<DeserializeGuard<AppArmorProfile>>,
    heartbeats: &Store<Lease>,
    published: &Arc<Published>,
    router: &Router,
) {
    use triggers::{bases, bindings, leases, nodes, pods, profiles};
    let (ctx, published, router) = (ctx.clone(), published.clone(), router.clone());
    term.spawn(
        "watch/nodeprofilestatuses",
        crate::reports::trigger::follow(events.reports, ctx.reports.clone(), published.clone(), router.clone()),
    );
    let index = pods::PodIndex::new(ctx.seccomp_subdir.clone());
    term.spawn(
        "watch/pods",
        pods::follow(events.pods, index, published.clone(), router.clone()),
    );
    term.spawn(
        "watch/seccompprofiles",
        profiles::follow(
            events.seccomp,
            ctx.seccomp.clone(),
            ctx.clone(),
            published.clone(),
            router.clone(),
            Some(bases::changed),
        ),
    );
    term.spawn(
        "watch/apparmorprofiles",
        profiles::follow(
            events.apparmor,
            apparmor.clone(),
            ctx.clone(),
            published,
            router.clone(),
            None,
        ),
    );
    term.spawn(
        "watch/profilebindings",
        bindings::follow(events.bindings, bindings::BindingIndex::default(), router.clone()),
    );
    term.spawn(
        "watch/nodes",
        nodes::follow(events.nodes, ctx.nodes.clone(), ctx.reports.clone(), router.clone()),
    );
    term.spawn(
        "watch/leases",
        leases::follow(events.leases, heartbeats.clone(), ctx, router),
    );
}

/// A kind's controller: its own watch, what the triggers route to it, and "every profile".
async fn run_controller<K>(
    ctx: Arc<Context>,
    profiles: Profiles<K>,
    refs: impl Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
    router: &Router,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Profile,
{
    // Bounded: a burst (a relist, a node joining) reconciles every profile, and each
    // reconcile holds its profile's per-node view while its status write is in flight.
    Controller::for_shared_stream(profiles.objects, profiles.store)
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .reconcile_on(refs)
        .reconcile_all_on(router.every())
        .graceful_shutdown_on(stop)
        .run(controller::reconcile::<K>, controller::error_policy::<K>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The ProfileBindings' status controller: each binding's pods counted on its changes and
/// every [`crate::bindings::RECOUNT_EVERY`].
async fn run_binding_controller(
    ctx: Arc<crate::bindings::BindingContext>,
    store: Store<ProfileBinding>,
    objects: kube::runtime::reflector::ReflectHandle<ProfileBinding>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    Controller::for_shared_stream(objects, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(stop)
        .run(crate::bindings::reconcile, crate::bindings::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

// The leader's watches: one per kind, each cached in a store that reconciles and triggers
// read, with only what they read kept. Profiles are watched through `DeserializeGuard`, so
// an object that does not parse stays in the watch and its cache (and is reconciled, to say
// so in its status) instead of failing the list or the watch.

/// A watch's events, to be polled for its cache to fill.
pub type Events<K> = BoxStream<'static, watcher::Event<K>>;

/// A profile kind's cache, and its subscription for the kind's controller.
pub struct Profiles<K: Profile> {
    pub store: Store<DeserializeGuard<K>>,
    pub objects: ReflectHandle<DeserializeGuard<K>>,
}

/// Every cache of a leader's term.
pub struct Watches {
    pub seccomp: Profiles<SeccompProfile>,
    pub apparmor: Profiles<AppArmorProfile>,
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub pods: Store<Pod>,
    /// ProfileBindings: read by deletion protection, subscribed to by their status controller.
    pub bindings: Store<ProfileBinding>,
    pub binding_objects: ReflectHandle<ProfileBinding>,
    /// What fills them.
    pub events: WatchEvents,
}

/// Every watch's events, to be polled for the caches to fill.
pub struct WatchEvents {
    pub seccomp: Events<DeserializeGuard<SeccompProfile>>,
    pub apparmor: Events<DeserializeGuard<AppArmorProfile>>,
    /// Node reports, as the watch delivers them (their index keeps only what it reads).
    pub reports: BoxStream<'static, Result<watcher::Event<NodeProfileStatus>, watcher::Error>>,
    pub nodes: Events<Node>,
    pub leases: Events<Lease>,
    pub pods: Events<Pod>,
    pub bindings: Events<ProfileBinding>,
}

impl Watches {
    /// Starts every watch (nothing runs until the events are polled). Agents' heartbeats
    /// are in `namespace`; pods name seccomp profiles under `seccomp_subdir`.
    pub fn start(client: &Client, namespace: &str, seccomp_subdir: &str) -> Self {
        // Reports are small (a summary and the exceptions): listed a hundred at a time.
        let reports = watcher(
            Api::<NodeProfileStatus>::all(client.clone()),
            watcher::Config::default().page_size(100),
        )
        .default_backoff()
        .boxed();
        // Nodes: only name and labels are read; a real Node's status (images, conditions) is
        // tens of kilobytes.
        let (nodes, node_events) = reflect(Api::all(client.clone()), watcher::Config::default(), |n: &mut Node| {
            slim_meta(n);
            n.spec = None;
            n.status = None;
        });
        let (leases, lease_events) = reflect(
            Api::namespaced(client.clone(), namespace),
            watcher::Config::default().labels(&palisade_domain::agent_lease_selector()),
            slim_meta::<Lease>,
        );
        let subdir = seccomp_subdir.to_string();
        let (pods, pod_events) = reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            move |p: &mut Pod| {
                pods::slim(p, &subdir);
                p.managed_fields_mut().clear();
            },
        );
        let (seccomp, seccomp_events) = reflect_profiles(client);
        let (apparmor, apparmor_events) = reflect_profiles(client);
        let (bindings, bindings_writer) = reflector::store_shared(256);
        let binding_objects = bindings_writer.subscribe().expect("a shared store has subscribers");
        let binding_events = watcher(Api::<ProfileBinding>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(slim_meta)
            .reflect_shared(bindings_writer)
            .filter_map(|r| futures::future::ready(r.ok()))
            .boxed();
        Self {
            seccomp,
            apparmor,
            nodes,
            leases,
            pods,
            bindings,
            binding_objects,
            events: WatchEvents {
                seccomp: seccomp_events,
                apparmor: apparmor_events,
                reports,
                nodes: node_events,
                leases: lease_events,
                pods: pod_events,
                bindings: binding_events,
            },
        }
    }
}

/// Drops what no reconcile reads: managedFields, and annotations (kubectl's
/// last-applied-configuration is a second copy of the object).
pub fn slim_meta<K: kube::Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
}

/// A shared cache of a built-in kind and its watch events, each object slimmed first.
fn reflect<K>(api: Api<K>, cfg: watcher::Config, slim: impl FnMut(&mut K) + Send + 'static) -> (Store<K>, Events<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .filter_map(|r| futures::future::ready(r.ok()));
    (store, stream.boxed())
}

/// The one watch of a profile kind, guarded (see "The leader's watches" above), cached in a shared store that
/// the controller subscribes to and the other reconciles read.
pub fn reflect_profiles<K: Profile>(client: &Client) -> (Profiles<K>, Events<DeserializeGuard<K>>) {
    let (store, writer) = reflector::store_shared(1024);
    let objects = writer.subscribe().expect("a shared store has subscribers");
    let events = watcher(
        Api::<DeserializeGuard<K>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim_meta)
    .reflect_shared(writer)
    .filter_map(|r| futures::future::ready(r.ok()))
    .boxed();
    (Profiles { store, objects }, events)
}

/// Waits for a stream of events to end, doing nothing with them (a cache that only fills).
pub fn drain<S: Stream + Send + 'static>(events: S) -> impl Future<Output = ()> + Send + 'static {
    events.for_each(|_| futures::future::ready(()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
