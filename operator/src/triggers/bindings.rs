//! ProfileBindings → the profile each names, now or before: a binding that appears, moves to
//! another profile or goes away changes whether that profile's deletion may proceed.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::watcher;
use palisade_domain::ProfileBinding;

use super::{Key, Router, dedup};

/// The profile each binding (`namespace/name`) named when last seen.
#[derive(Default)]
pub struct BindingIndex {
    refs: HashMap<String, Key>,
    /// During a relist: the bindings known before it and not listed again yet.
    unseen: Option<HashMap<String, Key>>,
}

impl BindingIndex {
    /// Applies one watch event; returns the profiles whose bindings may have changed. A
    /// relist may hide deletions: the bindings it did not list count as deleted at its end.
    pub fn apply(&mut self, event: watcher::Event<ProfileBinding>) -> Vec<Key> {
        let key = |b: &ProfileBinding| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any());
        let profile = |b: &ProfileBinding| (b.spec.profile_ref.kind, b.spec.profile_ref.name.clone());
        let touched = match event {
            watcher::Event::Init => {
                self.unseen.get_or_insert_with(HashMap::new).extend(self.refs.drain());
                vec![]
            }
            watcher::Event::Apply(b) | watcher::Event::InitApply(b) => {
                let key = key(&b);
                let now = profile(&b);
                let before = self
                    .refs
                    .insert(key.clone(), now.clone())
                    .or_else(|| self.unseen.as_mut().and_then(|u| u.remove(&key)));
                std::iter::once(now).chain(before).collect()
            }
            watcher::Event::Delete(b) => self.refs.remove(&key(&b)).into_iter().collect(),
            watcher::Event::InitDone => self.unseen.take().into_iter().flat_map(|u| u.into_values()).collect(),
        };
        dedup(touched)
    }
}

/// Follows the bindings' watch until it ends.
pub async fn follow(
    events: impl Stream<Item = watcher::Event<ProfileBinding>>,
    mut index: BindingIndex,
    router: Router,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        router.route(index.apply(event));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::triggers::seccomp_keys as keys;

    fn binding(name: &str, profile: &str) -> ProfileBinding {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"profileRef": {"kind": "SeccompProfile", "name": profile}, "image": "*"}}))
        .unwrap()
    }

    #[test]
    fn a_binding_routes_the_profile_it_names_and_named() {
        let mut index = BindingIndex::default();
        assert_eq!(index.apply(watcher::Event::Apply(binding("b", "a"))), keys(&["a"]));
        assert_eq!(
            index.apply(watcher::Event::Apply(binding("b", "c"))),
            keys(&["a", "c"]),
            "moved from a to c"
        );
        assert_eq!(index.apply(watcher::Event::Delete(binding("b", "c"))), keys(&["c"]));
        // A relist that no longer lists a binding releases its profile at its end.
        index.apply(watcher::Event::Apply(binding("gone", "x")));
        index.apply(watcher::Event::Init);
        index.apply(watcher::Event::InitApply(binding("kept", "y")));
        assert_eq!(index.apply(watcher::Event::InitDone), keys(&["x"]));
    }
}
