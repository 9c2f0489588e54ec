//! What every node's agent reported, indexed by profile: a slim, incrementally maintained
//! view of all NodeProfileStatus objects, so aggregating one profile costs O(nodes) and only
//! the profiles whose entries changed are reconciled again.
//!
//! Memory is the point of this module: with P profiles on N nodes it holds P × N entries.
//! Each entry is a few fixed-size fields; names and uids, which repeat on every node, are
//! interned once; messages (set only on errors) are kept as they are. Of each digest the
//! first 64 bits are kept: enough to tell whether a node holds the accepted content.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher;
use palisade_crds::{NodeProfileState, NodeProfileStatus, ProfileKind};

type Key = (ProfileKind, String);

/// Strings that repeat across nodes (profile names, uids), stored once.
#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        let s: Arc<str> = s.into();
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// One node's entry for one profile.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    kind: ProfileKind,
    state: NodeProfileState,
    name: u32,
    uid: u32,
    generation: i64,
    digest: u64,
    message: Option<Box<str>>,
}

/// The first 64 bits of a hex digest (0 for none): what reports keep of each digest.
pub fn digest_key(digest: &str) -> u64 {
    digest
        .get(..16)
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .unwrap_or(0)
}

/// One node's entry for one profile, as aggregation reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub uid: String,
    pub generation: i64,
    /// [`digest_key`] of the entry's digest.
    pub digest: u64,
    pub state: NodeProfileState,
    pub message: String,
}

impl Entry {
    fn sort_key(&self) -> (ProfileKind, u32) {
        (self.kind, self.name)
    }
}

/// Every node's entries, each node's sorted by (kind, name id).
#[derive(Default)]
struct Index {
    strings: Interner,
    nodes: HashMap<String, Vec<Entry>>,
}

impl Index {
    fn entries(&mut self, nps: &NodeProfileStatus) -> Vec<Entry> {
        let mut entries: Vec<Entry> = nps
            .status
            .iter()
            .flat_map(|s| s.profiles.iter())
            .map(|e| Entry {
                kind: e.kind,
                state: e.state,
                name: self.strings.intern(&e.name),
                uid: self.strings.intern(&e.uid),
                generation: e.generation,
                digest: digest_key(&e.digest),
                message: (!e.message.is_empty()).then(|| e.message.as_str().into()),
            })
            .collect();
        entries.sort_by_key(Entry::sort_key);
        entries.dedup_by_key(|e| e.sort_key());
        entries.shrink_to_fit();
        entries
    }

    fn key(&self, e: &Entry) -> Key {
        (e.kind, self.strings.str(e.name).to_string())
    }

    /// Keys whose entry differs between two versions of one node's report (both sorted).
    fn changed(&self, old: &[Entry], new: &[Entry]) -> Vec<Key> {
        let (mut i, mut j, mut keys) = (0, 0, vec![]);
        while i < old.len() || j < new.len() {
            let ord = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.sort_key().cmp(&b.sort_key()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    keys.push(self.key(&old[i]));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    keys.push(self.key(&new[j]));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if old[i] != new[j] {
                        keys.push(self.key(&new[j]));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        keys
    }
}

#[derive(Default)]
pub struct NodeReports {
    index: RwLock<Index>,
    /// Built during a relist, swapped in at its end (with its own interner, so strings of
    /// profiles that are gone are dropped then).
    relist: RwLock<Option<Index>>,
    ready: tokio::sync::Notify,
    synced: std::sync::atomic::AtomicBool,
}

impl NodeReports {
    /// Applies one watch event; returns the profiles whose entries changed.
    pub fn apply(&self, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
        match event {
            watcher::Event::Init => {
                *self.relist.write().expect("lock") = Some(Index::default());
                vec![]
            }
            watcher::Event::InitApply(nps) => {
                if let Some(relist) = self.relist.write().expect("lock").as_mut() {
                    let entries = relist.entries(&nps);
                    relist.nodes.insert(nps.name_any(), entries);
                }
                vec![]
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.write().expect("lock").take().unwrap_or_default();
                let mut index = self.index.write().expect("lock");
                // A relist is rare (start-up, a broken watch): every profile either version
                // mentions is looked at again.
                let mut keys: Vec<Key> = [&*index, &fresh]
                    .iter()
                    .flat_map(|idx| idx.nodes.values().flatten().map(|e| idx.key(e)))
                    .collect();
                keys.sort();
                keys.dedup();
                *index = fresh;
                self.synced.store(true, std::sync::atomic::Ordering::Release);
                self.ready.notify_waiters();
                keys
            }
            watcher::Event::Apply(nps) => {
                let mut index = self.index.write().expect("lock");
                let new = index.entries(&nps);
                let old = index.nodes.get(&nps.name_any()).map(Vec::as_slice).unwrap_or_default();
                let keys = index.changed(old, &new);
                index.nodes.insert(nps.name_any(), new);
                keys
            }
            watcher::Event::Delete(nps) => {
                let mut index = self.index.write().expect("lock");
                let old = index.nodes.remove(&nps.name_any()).unwrap_or_default();
                index.changed(&old, &[])
            }
        }
    }

    /// Each node's entry for one profile.
    pub fn for_profile(&self, kind: ProfileKind, name: &str) -> HashMap<String, Reported> {
        let index = self.index.read().expect("lock");
        let Some(id) = index.strings.get(name) else {
            return HashMap::new();
        };
        index
            .nodes
            .iter()
            .filter_map(|(node, entries)| {
                let i = entries.binary_search_by_key(&(kind, id), Entry::sort_key).ok()?;
                let e = &entries[i];
                Some((
                    node.clone(),
                    Reported {
                        uid: index.strings.str(e.uid).to_string(),
                        generation: e.generation,
                        digest: e.digest,
                        state: e.state,
                        message: e.message.as_deref().unwrap_or_default().to_string(),
                    },
                ))
            })
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
        json!({"kind": "SeccompProfile", "name": name, "uid": "u", "generation": generation, "digest": "0000000000000abc0000", "state": state})
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
            0xabc,
            "the digest's first 64 bits are kept"
        );
        assert_eq!(digest_key("00000000000000ffee"), 0xff);
        assert_eq!(digest_key(""), 0);

        let keys = r.apply(watcher::Event::Apply(nps("n1", json!([entry("b", 1, "Installed")]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "a".into())], "a removed");
        let keys = r.apply(watcher::Event::Delete(nps("n1", json!([]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "b".into())]);
        assert!(r.for_profile(ProfileKind::SeccompProfile, "b").is_empty());
    }

    #[test]
    fn entries_come_back_whole_and_a_new_uid_or_message_is_a_change() {
        let r = NodeReports::default();
        let mut e = entry("a", 2, "Error");
        e["message"] = json!("line 3: syntax error");
        r.apply(watcher::Event::Apply(nps("n1", json!([e.clone()]))));
        r.apply(watcher::Event::Apply(nps("n2", json!([entry("a", 2, "Installed")]))));
        let got = r.for_profile(ProfileKind::SeccompProfile, "a");
        assert_eq!(got["n1"].message, "line 3: syntax error");
        assert_eq!(got["n1"].uid, "u");
        assert_eq!(got["n1"].generation, 2);
        assert_eq!(got["n2"].state, NodeProfileState::Installed);
        assert!(
            r.for_profile(ProfileKind::AppArmorProfile, "a").is_empty(),
            "kinds are apart"
        );

        e["message"] = json!("line 4: syntax error");
        let keys = r.apply(watcher::Event::Apply(nps("n1", json!([e.clone()]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "a".into())]);
        e["uid"] = json!("u2");
        let keys = r.apply(watcher::Event::Apply(nps("n1", json!([e]))));
        assert_eq!(keys, vec![(ProfileKind::SeccompProfile, "a".into())]);
        assert_eq!(r.for_profile(ProfileKind::SeccompProfile, "a")["n1"].uid, "u2");
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
