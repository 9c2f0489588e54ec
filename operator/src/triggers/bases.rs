//! Seccomp bases → the profiles that inherit from them: when a base changes or goes, every
//! profile that inherits from it, directly or not, is validated again, so none keeps a
//! verdict about content it no longer has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use palisade_domain::{ProfileKind, SeccompProfile};

use super::Key;

/// The profiles that inherit from `base`, directly or through others, each once (a cycle
/// ends). An object that does not parse names no base.
pub fn descendants(profiles: &[Arc<DeserializeGuard<SeccompProfile>>], base: &str) -> BTreeSet<String> {
    let mut children: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in palisade_domain::parsed(profiles) {
        if let Some(parent) = p.spec.base_profile_name.as_deref() {
            children.entry(parent).or_default().push(p.name_any());
        }
    }
    let mut found = BTreeSet::new();
    let mut queue = vec![base.to_string()];
    while let Some(next) = queue.pop() {
        for child in children.get(next.as_str()).into_iter().flatten() {
            if found.insert(child.clone()) {
                queue.push(child.clone());
            }
        }
    }
    found
}

/// The profiles to validate again after one seccomp watch event: the descendants of the
/// profile it is about (read from `profiles`, the kind's cache).
pub fn changed(
    profiles: &[Arc<DeserializeGuard<SeccompProfile>>],
    event: &watcher::Event<DeserializeGuard<SeccompProfile>>,
) -> Vec<Key> {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
            descendants(profiles, &p.name_any())
                .into_iter()
                .map(|name| (ProfileKind::SeccompProfile, name))
                .collect()
        }
        watcher::Event::Init | watcher::Event::InitDone => vec![],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn profile(name: &str, base: Option<&str>) -> Arc<DeserializeGuard<SeccompProfile>> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": {"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": base}}))
            .unwrap(),
        )
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_descendant_once_and_nothing_else() {
        let profiles = [
            profile("runtime", None),
            profile("web", Some("runtime")),
            profile("web-strict", Some("web")),
            profile("db", Some("runtime")),
            profile("other", None),
            profile("loop-a", Some("loop-b")),
            profile("loop-b", Some("loop-a")),
        ];
        assert_eq!(descendants(&profiles, "runtime"), names(&["db", "web", "web-strict"]));
        assert_eq!(descendants(&profiles, "web"), names(&["web-strict"]));
        assert!(descendants(&profiles, "other").is_empty());
        assert_eq!(
            descendants(&profiles, "loop-a"),
            names(&["loop-a", "loop-b"]),
            "a cycle ends"
        );
        // A deleted base: its children are still in the cache and are looked at again.
        assert_eq!(
            changed(&profiles, &watcher::Event::Delete((*profile("web", None)).clone())),
            vec![(ProfileKind::SeccompProfile, "web-strict".to_string())]
        );
    }

    #[test]
    fn an_object_that_does_not_parse_names_no_base() {
        let broken: Arc<DeserializeGuard<SeccompProfile>> = Arc::new(
            serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "broken"}, "spec": {"defaultAction": "SCMP_ACT_NEW", "baseProfileName": "runtime"}}))
            .unwrap(),
        );
        assert!(descendants(&[profile("runtime", None), broken], "runtime").is_empty());
    }
}
