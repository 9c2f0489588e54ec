//! Triggers: which profiles a change elsewhere affects, so that only those are reconciled
//! again. Each source has a small mapping in its own module, from what it keeps and one
//! watch event to the profiles to look at, tested without an API server, and a `follow`
//! loop that feeds it its watch and routes what it returns:
//!
//! - [`crate::reports::trigger`]: a node's report → the profiles whose standing there
//!   changed (beside the index of reports it feeds);
//! - [`pods`]: a pod → the profiles it references now or did before;
//! - [`bindings`]: a ProfileBinding → the profile it names now or did before;
//! - [`profiles`]: a profile → those waiting on nodes whose expected set it changed, and
//!   (seccomp) the profiles that inherit from it ([`bases`]);
//! - [`nodes`]: a node joining, leaving or changing labels → every profile;
//! - [`leases`]: an agent's heartbeat going live or quiet → every profile.
//!
//! Each controller is `Controller::for_shared_stream` over its kind's guarded watch, with
//! `reconcile_on` (the [`Router`]'s queue of that kind) and `reconcile_all_on`. The builder's
//! `watches`/`owns` mappers cannot carry these: a mapper sees objects, not watch events, so
//! it can tell neither a delete from an update nor the end of a relist, which the stateful
//! indexes here (reports, pod references, expected sets, heartbeats) need to forget what a
//! relist hides (a shared store's subscribers are not told of deletes at all); one report or
//! pod routes profiles of both kinds, and its index must see each event once, not once per
//! controller; and heartbeats also expire on a timer, with no event at all.

pub mod bases;
pub mod bindings;
pub mod leases;
pub mod nodes;
pub mod pods;
pub mod profiles;

use futures::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use palisade_domain::{AppArmorProfile, ProfileKind, SeccompProfile};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

/// A profile to look at again: its kind and name.
pub type Key = (ProfileKind, String);

/// Each profile once, in order.
pub(crate) fn dedup(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort();
    keys.dedup();
    keys
}

/// A controller's queue of profiles to reconcile.
pub type Queue<K> = UnboundedReceiverStream<ObjectRef<DeserializeGuard<K>>>;

/// Where triggers send what they find: each controller's queue, or every profile.
#[derive(Clone)]
pub struct Router {
    seccomp: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<SeccompProfile>>>,
    apparmor: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<AppArmorProfile>>>,
    all: broadcast::Sender<()>,
}

impl Router {
    /// A router and the two controllers' queues.
    pub fn new() -> (Self, Queue<SeccompProfile>, Queue<AppArmorProfile>) {
        let (seccomp, sc_rx) = mpsc::unbounded_channel();
        let (apparmor, aa_rx) = mpsc::unbounded_channel();
        let (all, _) = broadcast::channel(16);
        let router = Self { seccomp, apparmor, all };
        (router, sc_rx.into(), aa_rx.into())
    }

    /// Reconciles these profiles again.
    pub fn route(&self, keys: impl IntoIterator<Item = Key>) {
        for (kind, name) in keys {
            let _ = match kind {
                ProfileKind::SeccompProfile => self.seccomp.send(ObjectRef::new(&name)).is_ok(),
                ProfileKind::AppArmorProfile => self.apparmor.send(ObjectRef::new(&name)).is_ok(),
            };
        }
    }

    /// Reconciles every profile of both kinds again.
    pub fn all(&self) {
        let _ = self.all.send(());
    }

    /// A controller's subscription to [`Router::all`].
    pub fn every(&self) -> impl Stream<Item = ()> + Send + use<> {
        BroadcastStream::new(self.all.subscribe()).filter_map(|r| futures::future::ready(r.ok()))
    }
}

/// SeccompProfile keys of these names, as tests expect them routed.
#[cfg(test)]
pub fn seccomp_keys(names: &[&str]) -> Vec<Key> {
    names
        .iter()
        .map(|n| (ProfileKind::SeccompProfile, n.to_string()))
        .collect()
}
