//! What every node's agent reported, indexed by profile: a slim, incrementally maintained
//! view of all NodeProfileStatus objects, so aggregating one profile costs O(nodes) and only
//! the profiles whose entries changed are reconciled again.

use std::collections::HashMap;
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::watcher;
use palisade_crds::{NodeProfile, NodeProfileStatus, ProfileKind};

type Key = (ProfileKind, String);

#[derive(Default)]
pub struct NodeReports {
    /// node → (kind, name) → entry (digest dropped: the operator does not use it).
    nodes: RwLock<HashMap<String, HashMap<Key, NodeProfile>>>,
    /// Built during a relist, swapped in at its end.
    relist: RwLock<Option<HashMap<String, HashMap<Key, NodeProfile>>>>,
    ready: tokio::sync::Notify,
    synced: std::sync::atomic::AtomicBool,
}

fn entries(nps: &NodeProfileStatus) -> HashMap<Key, NodeProfile> {
    nps.status
        .iter()
        .flat_map(|s| s.profiles.iter())
        .map(|e| {
            (
                (e.kind, e.name.clone()),
                NodeProfile {
                    digest: String::new(),
                    ..e.clone()
                },
            )
        })
        .collect()
}

/// Keys whose entry differs between two versions of one node's report.
fn changed(old: Option<&HashMap<Key, NodeProfile>>, new: Option<&HashMap<Key, NodeProfile>>) -> Vec<Key> {
    let empty = HashMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut keys: Vec<Key> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    keys
}

impl NodeReports {
    /// Applies one watch event; returns the profiles whose entries changed.
    pub fn apply(&self, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        match event {
            watcher::Event::Init => {
                *self.relist.write().expect("lock") = Some(HashMap::new());
                vec![]
            }
            watcher::Event::InitApply(nps) => {
                if let Some(relist) = self.relist.write().expect("lock").as_mut() {
                    relist.insert(nps.name_any(), entries(&nps));
                }
                vec![]
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.write().expect("lock").take().unwrap_or_default();
                let mut nodes = self.nodes.write().expect("lock");
                let mut keys = Vec::new();
                for node in nodes.keys().chain(fresh.keys()) {
                    keys.extend(changed(nodes.get(node), fresh.get(node)));
                }
                *nodes = fresh;
                self.synced.store(true, std::sync::atomic::Ordering::Release);
                self.ready.notify_waiters();
                keys
            }
            watcher::Event::Apply(nps) => {
                let new = entries(&nps);
                let mut nodes = self.nodes.write().expect("lock");
                let keys = changed(nodes.get(&nps.name_any()), Some(&new));
                nodes.insert(nps.name_any(), new);
                keys
            }
            watcher::Event::Delete(nps) => {
                let old = self.nodes.write().expect("lock").remove(&nps.name_any());
                changed(old.as_ref(), None)
            }
        }
    }

    /// Each node's entry for one profile.
    pub fn for_profile(&self, kind: ProfileKind, name: &str) -> HashMap<String, NodeProfile> {
        let key = (kind, name.to_string());
        self.nodes
            .read()
            .expect("lock")
            .iter()
            .filter_map(|(node, entries)| Some((node.clone(), entries.get(&key)?.clone())))
            .collect()
    }

    /// Resolves once the first full list has been applied.
    pub async fn wait_ready(&self) {
        while !self.synced.load(std::sync::atomic::Ordering::Acquire) {
            let notified = self.ready.notified();
            if self.synced.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nps(node: &str, profiles: serde_json::Value) -> NodeProfileStatus {
        serde_json::from_value(
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "NodeProfileStatus",
            "metadata": {"name": node}, "spec": {}, "status": {"profiles": profiles}}),
        )
        .unwrap()
    }

    fn entry(name: &str, generation: i64, state: &str) -> serde_json::Value {
        json!({"kind": "SeccompProfile", "name": name, "uid": "u", "generation": generation, "digest": "abc", "state": state})
    }

    #[test]
    fn routes_only_the_profiles_whose_entries_changed() {
        let r = NodeReports::default();
        r.apply(watcher::Event::Init);
        r.apply(watcher::Event::InitApply(nps(
            "n1",
            json!([entry("a", 1, "Installed"), entry("b", 1, "Pending")]),
        )));
        let mut keys = r.apply(watcher::Event::InitDone);
        keys.sort();
        assert_eq!(
            keys,
            vec![
                (ProfileKind::SeccompProfile, "a".into()),
                (ProfileKind::SeccompProfile, "b".into())
            ]
        );

        let keys = r.apply(watcher::Event::Apply(nps(
            "n1",
            json!([entry("a", 1, "Installed"), entry("b", 1, "Installed")]),
        )));
        assert_eq!(
            keys,
            vec![(ProfileKind::SeccompProfile, "b".into())],
            "a did not change"
        );
        assert_eq!(
            r.for_profile(ProfileKind::SeccompProfile, "b")["n1"].digest,
            "",
            "digests are not kept"
        );

        let keys = r.apply(watcher::Event::Apply(nps("n1", json!([entry("b", 1, "Installed")]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "a".into())], "a removed");
        let keys = r.apply(watcher::Event::Delete(nps("n1", json!([]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "b".into())]);
        assert!(r.for_profile(ProfileKind::SeccompProfile, "b").is_empty());
    }

    #[test]
    fn a_relist_drops_nodes_that_vanished_meanwhile() {
        let r = NodeReports::default();
        r.apply(watcher::Event::Apply(nps("gone", json!([entry("a", 1, "Installed")]))));
        r.apply(watcher::Event::Init);
        let keys = r.apply(watcher::Event::InitDone);
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "a".into())]);
        assert!(r.for_profile(ProfileKind::SeccompProfile, "a").is_empty());
    }
}
