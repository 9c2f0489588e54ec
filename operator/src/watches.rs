//! The leader's watches: one per kind, each cached in a store that reconciles and triggers
//! read, with only what they read kept. Profiles are watched through `DeserializeGuard`, so
//! an object that does not parse stays in the watch and its cache (and is reconciled, to say
//! so in its status) instead of failing the list or the watch.

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use palisade_domain::{AppArmorProfile, NodeProfileStatus, ProfileBinding, SeccompProfile};

use crate::controller::Profile;
use crate::pods;

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

/// The one watch of a profile kind, guarded (see the module), cached in a shared store that
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

/// A profile as the caches hold it.
pub struct Cached {
    pub status: Option<palisade_domain::ProfileStatus>,
    /// Its deletion has begun (held while something uses it).
    pub deleting: bool,
}

/// The cached profile `name` of `kind`: `None` when there is none, `Err` with the parse
/// error when it does not parse.
pub fn cached(
    seccomp: &Store<DeserializeGuard<SeccompProfile>>,
    apparmor: &Store<DeserializeGuard<AppArmorProfile>>,
    kind: palisade_domain::ProfileKind,
    name: &str,
) -> Option<Result<Cached, String>> {
    fn of<K: Profile>(p: &DeserializeGuard<K>) -> Result<Cached, String> {
        p.0.as_ref()
            .map(|p| Cached {
                status: p.profile_status().cloned(),
                deleting: p.meta().deletion_timestamp.is_some(),
            })
            .map_err(|e| e.to_string())
    }
    match kind {
        palisade_domain::ProfileKind::SeccompProfile => seccomp.get(&reflector::ObjectRef::new(name)).map(|p| of(&p)),
        palisade_domain::ProfileKind::AppArmorProfile => apparmor.get(&reflector::ObjectRef::new(name)).map(|p| of(&p)),
    }
}

/// Waits for a stream of events to end, doing nothing with them (a cache that only fills).
pub fn drain<S: Stream + Send + 'static>(events: S) -> impl Future<Output = ()> + Send + 'static {
    events.for_each(|_| futures::future::ready(()))
}
