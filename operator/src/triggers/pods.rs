//! Pods → the profiles they reference, now or before: a pod that starts or stops using a
//! profile changes the profile's workloads (and whether its deletion may proceed). Pods are
//! also what the learning-pods publisher publishes.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::watcher;

use super::{Key, Router, dedup};
use crate::learning_pods::Published;
use crate::pods::references;

/// The profiles each pod (`namespace/name`) referenced when last seen. Pods that reference
/// none are not kept.
pub struct PodIndex {
    seccomp_subdir: String,
    refs: HashMap<String, Vec<Key>>,
    /// During a relist: the pods known before it and not listed again yet.
    unseen: Option<HashMap<String, Vec<Key>>>,
}

impl PodIndex {
    /// An empty index; pods name seccomp profiles under `seccomp_subdir`.
    pub fn new(seccomp_subdir: String) -> Self {
        Self {
            seccomp_subdir,
            refs: HashMap::new(),
            unseen: None,
        }
    }

    /// Applies one watch event; returns the profiles whose users may have changed. A relist
    /// may hide deletions: the pods it did not list count as deleted at its end.
    pub fn apply(&mut self, event: watcher::Event<Pod>) -> Vec<Key> {
        let key = |p: &Pod| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let touched = match event {
            watcher::Event::Init => {
                let unseen = self.unseen.get_or_insert_with(HashMap::new);
                unseen.extend(self.refs.drain());
                vec![]
            }
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let key = key(&p);
                let now = references(&p, &self.seccomp_subdir);
                let before = self
                    .refs
                    .remove(&key)
                    .or_else(|| self.unseen.as_mut().and_then(|u| u.remove(&key)));
                if !now.is_empty() {
                    self.refs.insert(key, now.clone());
                }
                now.into_iter().chain(before.into_iter().flatten()).collect()
            }
            watcher::Event::Delete(p) => self.refs.remove(&key(&p)).into_iter().flatten().collect(),
            watcher::Event::InitDone => self
                .unseen
                .take()
                .into_iter()
                .flat_map(|u| u.into_values().flatten())
                .collect(),
        };
        dedup(touched)
    }
}

/// Follows the pods' watch until it ends.
pub async fn follow(
    events: impl Stream<Item = watcher::Event<Pod>>,
    mut index: PodIndex,
    published: Arc<Published>,
    router: Router,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        // A relist's store is complete only at its end: the publisher looks again then.
        let relisted = matches!(event, watcher::Event::InitDone);
        let touched = index.apply(event);
        if !touched.is_empty() || relisted {
            published.wake();
        }
        router.route(touched);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::triggers::seccomp_keys as keys;

    fn pod(name: &str, seccomp: &[&str]) -> Pod {
        let containers: Vec<serde_json::Value> = seccomp
            .iter()
            .map(|p| {
                json!({"name": p, "securityContext": {"seccompProfile":
                {"type": "Localhost", "localhostProfile": format!("palisade/{p}.json")}}})
            })
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": containers}}))
        .unwrap()
    }

    #[test]
    fn a_pod_routes_the_profiles_it_uses_and_used() {
        let mut index = PodIndex::new("palisade".into());
        assert_eq!(
            index.apply(watcher::Event::Apply(pod("p", &["a", "b"]))),
            keys(&["a", "b"])
        );
        assert_eq!(
            index.apply(watcher::Event::Apply(pod("p", &["b", "c"]))),
            keys(&["a", "b", "c"]),
            "a stopped being used, c started"
        );
        assert!(index.apply(watcher::Event::Apply(pod("plain", &[]))).is_empty());
        assert_eq!(
            index.apply(watcher::Event::Delete(pod("p", &["b", "c"]))),
            keys(&["b", "c"])
        );
        assert!(
            index.apply(watcher::Event::Delete(pod("p", &[]))).is_empty(),
            "already gone"
        );
        // Another subdirectory: not Palisade's profiles.
        let mut other = PodIndex::new("operator".into());
        assert!(other.apply(watcher::Event::Apply(pod("p", &["a"]))).is_empty());
    }

    #[test]
    fn a_relist_counts_the_pods_it_no_longer_lists_as_deleted() {
        let mut index = PodIndex::new("palisade".into());
        index.apply(watcher::Event::Apply(pod("stays", &["a"])));
        index.apply(watcher::Event::Apply(pod("goes", &["b"])));
        // The watch was down while "goes" was deleted; the relist lists only "stays".
        assert!(index.apply(watcher::Event::Init).is_empty());
        assert_eq!(
            index.apply(watcher::Event::InitApply(pod("stays", &["a"]))),
            keys(&["a"])
        );
        assert_eq!(index.apply(watcher::Event::InitDone), keys(&["b"]));
        assert!(index.apply(watcher::Event::Delete(pod("goes", &["b"]))).is_empty());
        // A relist restarted before its end: what neither run listed counts as deleted.
        index.apply(watcher::Event::Init);
        index.apply(watcher::Event::Init);
        assert_eq!(index.apply(watcher::Event::InitDone), keys(&["a"]));
    }
}
