//! Profiles → the profiles waiting on nodes whose expected set they changed. What nodes are
//! expected to hold of each profile (its accepted content where its selector and state say)
//! follows its watch; a profile's own changes reach its controller through the controller's
//! own stream. After a delete or a relist (which may hide deletes), what the operator kept
//! about profiles that are gone is dropped.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use super::{Key, Router};
use crate::controller::{Context, Profile, want_of};
use crate::learning_pods::Published;
use crate::reports::NodeReports;

/// Keeps what nodes are expected to hold of the profile an event is about; returns the
/// profiles waiting on nodes whose expected set changed. An object that does not parse is
/// held nowhere. `objects`: the kind's cache, read at the end of a relist.
pub fn expected<K: Profile>(
    reports: &NodeReports,
    event: &watcher::Event<DeserializeGuard<K>>,
    objects: impl FnOnce() -> Vec<Arc<DeserializeGuard<K>>>,
) -> Vec<Key> {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
            reports.set_want((K::KIND, p.name_any()), p.0.as_ref().ok().and_then(want_of))
        }
        watcher::Event::Delete(p) => reports.set_want((K::KIND, p.name_any()), None),
        watcher::Event::InitDone => {
            let names: HashSet<String> = objects().iter().map(|p| p.name_any()).collect();
            reports.retain_wants(K::KIND, &names)
        }
        watcher::Event::Init => vec![],
    }
}

/// The other profiles a change of one affects, from the kind's cache and the event.
pub type Dependents<K> = fn(&[Arc<DeserializeGuard<K>>], &watcher::Event<DeserializeGuard<K>>) -> Vec<Key>;

/// Follows a profile kind's watch (cached in `store`) until it ends. `dependents`: the
/// other profiles a change of one affects, if any (seccomp: [`super::bases::changed`]).
pub async fn follow<K: Profile>(
    events: impl Stream<Item = watcher::Event<DeserializeGuard<K>>>,
    store: Store<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    published: Arc<Published>,
    router: Router,
    dependents: Option<Dependents<K>>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        published.wake();
        router.route(expected(&ctx.reports, &event, || store.state()));
        if let Some(dependents) = dependents {
            router.route(dependents(&store.state(), &event));
        }
        if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
            forget_gone(&ctx, &store.state());
        }
    }
}

/// Forgets what the operator kept about profiles of the kind that are not in `objects`.
fn forget_gone<K: Profile>(ctx: &Context, objects: &[Arc<DeserializeGuard<K>>]) {
    let names = objects.iter().map(|p| p.name_any()).collect();
    let uids = objects.iter().filter_map(|p| p.uid()).collect();
    ctx.retain(K::KIND, &names, &uids);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use palisade_domain::{InstalledSet, NodeProfileStatus, ProfileKind, SeccompProfile, installed_key};
    use serde_json::json;

    use super::*;
    use crate::reports::Want;

    const SC: ProfileKind = ProfileKind::SeccompProfile;
    const DIGEST: &str = "0000000000000abc";

    fn web(default_action: &str) -> DeserializeGuard<SeccompProfile> {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": "web", "uid": "u"}, "spec": {"defaultAction": default_action},
            "status": {"accepted": {"generation": 1, "digest": DIGEST}}}))
        .unwrap()
    }

    /// Node n1, whose agent holds `web` at [`DIGEST`]; `other` waits on n1 while the
    /// operator does not expect `web` there (the sets disagree).
    fn waiting() -> (NodeReports, impl Fn(&NodeReports)) {
        let reports = NodeReports::default();
        let labels = BTreeMap::from([("n1".to_string(), BTreeMap::new())]);
        reports.set_nodes(&labels);
        let mut set = InstalledSet::default();
        set.add(installed_key(SC, "u", DIGEST));
        let report: NodeProfileStatus = serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha2",
            "kind": "NodeProfileStatus", "metadata": {"name": "n1"}, "spec": {},
            "status": {"capabilities": {"apparmor": true, "seccomp": true}, "installed": {"seccomp": set.summary()}}}))
        .unwrap();
        reports.apply(watcher::Event::Apply(report));
        let wait = move |reports: &NodeReports| {
            let other = Want::of(SC, "o", true, Some("d"), None);
            reports.on_nodes(
                &(SC, "other".into()),
                other.as_ref(),
                labels.iter().map(|(n, l)| (n.as_str(), l)),
            );
        };
        wait(&reports);
        (reports, wait)
    }

    #[test]
    fn a_profile_that_settles_a_node_routes_what_waits_on_it() {
        let (reports, wait) = waiting();
        let other = vec![(SC, "other".to_string())];
        assert_eq!(
            expected(&reports, &watcher::Event::Apply(web("SCMP_ACT_ALLOW")), Vec::new),
            other,
            "web accepted: n1's report and expected set agree"
        );
        wait(&reports);
        assert!(
            expected(&reports, &watcher::Event::Apply(web("SCMP_ACT_NEW")), Vec::new).is_empty(),
            "an object that does not parse is expected nowhere: the sets disagree again"
        );
        wait(&reports);
        assert_eq!(
            expected(&reports, &watcher::Event::Apply(web("SCMP_ACT_ALLOW")), Vec::new),
            other
        );
        // A relist that still lists web changes nothing; one that does not (web was deleted
        // while the watch was down) drops it, so the sets disagree until web is back.
        let listed = || vec![Arc::new(web("SCMP_ACT_ALLOW"))];
        assert!(expected(&reports, &watcher::Event::InitDone, listed).is_empty());
        let none = Vec::<Arc<DeserializeGuard<SeccompProfile>>>::new;
        assert!(expected(&reports, &watcher::Event::InitDone, none).is_empty());
        wait(&reports);
        assert_eq!(
            expected(&reports, &watcher::Event::Apply(web("SCMP_ACT_ALLOW")), Vec::new),
            other
        );
    }
}
