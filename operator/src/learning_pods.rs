//! Publishes each node's pods that use a learning profile in that node's NodeProfileStatus
//! (`spec.learningPods`). A learning agent needs its own node's pods to tell a workload's
//! audit records from anyone else's; RBAC cannot narrow a pod list to one node, so the
//! agents list no pods and the operator, which watches them anyway, hands each node what it
//! needs: UIDs, container IDs and the learning profiles, nothing else of the pod.
//!
//! Level-triggered: a change of a pod, a profile or a report wakes the publisher, which
//! compares what every node should have with what its report holds (as watched) and writes
//! only the nodes that differ. A node without a report yet is written when its agent
//! creates one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use palisade_domain::parsed;
use palisade_domain::pods::{LearningPod, MAX_LEARNING_PODS, MAX_LEARNING_PODS_BYTES, learning_pod};
use palisade_domain::{AppArmorProfile, NodeProfileStatus, ProfileKind, SeccompProfile, learn};
use tokio::sync::Notify;

/// What each node's report holds (by the watch), and the bell that wakes the publisher.
#[derive(Default)]
pub struct Published {
    observed: Mutex<HashMap<String, Vec<LearningPod>>>,
    bell: Notify,
}

impl Published {
    /// Follows the reports' watch. Only a report that appears, goes, or whose list changed
    /// wakes the publisher: the agents' status writes (most events) change nothing here.
    pub fn observe(&self, event: &watcher::Event<NodeProfileStatus>) {
        let mut observed = self.observed.lock().expect("lock");
        let changed = match event {
            watcher::Event::Init => {
                observed.clear();
                false
            }
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                observed.insert(n.name_any(), n.spec.learning_pods.clone()).as_ref() != Some(&n.spec.learning_pods)
            }
            watcher::Event::Delete(n) => observed.remove(&n.name_any()).is_some(),
            watcher::Event::InitDone => true,
        };
        drop(observed);
        if changed {
            self.wake();
        }
    }

    /// Something the publication depends on changed.
    pub fn wake(&self) {
        self.bell.notify_one();
    }
}

/// Every node's published pods: the pods bound to it that reference a learning profile
/// ([`learn::apparmor_learning`], [`learn::seccomp_learning`]), or with `denials`, any
/// Palisade profile; sorted by UID, at most [`MAX_LEARNING_PODS`] per node. Profiles that
/// do not parse are skipped.
pub fn desired(
    pods: &[Arc<Pod>],
    apparmor: &[Arc<DeserializeGuard<AppArmorProfile>>],
    seccomp: &[Arc<DeserializeGuard<SeccompProfile>>],
    seccomp_subdir: &str,
    denials: bool,
) -> BTreeMap<String, Vec<LearningPod>> {
    let apparmor: BTreeSet<String> = parsed(apparmor)
        .filter(|p| denials || learn::apparmor_learning(p))
        .map(|p| p.name_any())
        .collect();
    let seccomp: BTreeSet<String> = parsed(seccomp)
        .filter(|p| denials || learn::seccomp_learning(p))
        .map(|p| p.name_any())
        .collect();
    let mut out: BTreeMap<String, Vec<LearningPod>> = BTreeMap::new();
    if apparmor.is_empty() && seccomp.is_empty() {
        return out;
    }
    let learning = |kind: ProfileKind, name: &str| match kind {
        ProfileKind::AppArmorProfile => apparmor.contains(name),
        ProfileKind::SeccompProfile => seccomp.contains(name),
    };
    for pod in pods {
        if let Some((node, p)) = learning_pod(pod, seccomp_subdir, learning) {
            out.entry(node).or_default().push(p);
        }
    }
    for (node, list) in out.iter_mut() {
        let before = list.len();
        bound(list);
        if list.len() < before {
            tracing::warn!(
                node,
                pods = before,
                published = list.len(),
                "too many learning pods on one node: some are left out"
            );
        }
    }
    out
}

/// Sorts one node's list and keeps it within [`MAX_LEARNING_PODS`] and
/// [`MAX_LEARNING_PODS_BYTES`] (as JSON).
fn bound(list: &mut Vec<LearningPod>) {
    list.sort();
    list.truncate(MAX_LEARNING_PODS);
    let mut bytes = 0;
    let fits = list
        .iter()
        .take_while(|p| {
            bytes += serde_json::to_vec(p).map_or(0, |v| v.len() + 1);
            bytes <= MAX_LEARNING_PODS_BYTES
        })
        .count();
    list.truncate(fits);
}

/// Publishes until the leader's term ends.
pub async fn run(
    client: Client,
    published: Arc<Published>,
    pods: Store<Pod>,
    apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    seccomp: Store<DeserializeGuard<SeccompProfile>>,
    seccomp_subdir: String,
    denials: bool,
) {
    let api: Api<NodeProfileStatus> = Api::all(client);
    let mut failed = false;
    loop {
        if failed {
            // A failed write is tried again on the next change or in a few seconds.
            let _ = tokio::time::timeout(Duration::from_secs(5), published.bell.notified()).await;
        } else {
            published.bell.notified().await;
        }
        failed = false;
        let want = desired(
            &pods.state(),
            &apparmor.state(),
            &seccomp.state(),
            &seccomp_subdir,
            denials,
        );
        let stale: Vec<(String, Vec<LearningPod>)> = {
            let observed = published.observed.lock().expect("lock");
            observed
                .iter()
                .filter_map(|(node, has)| {
                    let should = want.get(node).cloned().unwrap_or_default();
                    (*has != should).then(|| (node.clone(), should))
                })
                .collect()
        };
        for (node, list) in stale {
            // A merge patch of the spec only: the agent's status is another subresource,
            // and a report that does not exist (yet) is not created here.
            let patch = serde_json::json!({"spec": {"learningPods": list}});
            match api.patch(&node, &PatchParams::default(), &Patch::Merge(&patch)).await {
                // An API server that drops the field has the CRD of an older release
                // (helm does not upgrade CRDs): say so rather than write in vain.
                Ok(nps) if nps.spec.learning_pods != list => {
                    tracing::warn!(
                        node,
                        "the API server dropped spec.learningPods: the NodeProfileStatus CRD is older than this operator (apply the chart's crds/)"
                    );
                    failed = true;
                }
                Ok(_) => tracing::debug!(node, pods = list.len(), "published the node's learning pods"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(node, error = %e, "publishing the node's learning pods failed; will retry");
                    failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apparmor(name: &str, mode: &str, accepted: bool) -> Arc<DeserializeGuard<AppArmorProfile>> {
        let mut v = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name}, "spec": {"mode": mode, "policy": "x"}});
        if accepted {
            v["status"] = json!({"accepted": {"generation": 1, "digest": "d", "content": "x"}});
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pod(name: &str, node: Option<&str>, profile: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
                "spec": {"nodeName": node, "containers": [{"name": "c", "securityContext":
                    {"appArmorProfile": {"type": "Localhost", "localhostProfile": profile}}}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_pods_of_learning_profiles_reach_their_own_node() {
        let profiles = [
            apparmor("learning", "Complain", true),
            apparmor("enforced", "Enforce", true),
            apparmor("not-accepted", "Complain", false),
        ];
        let pods = [
            pod("a", Some("node-0"), "learning"),
            pod("b", Some("node-1"), "learning"),
            pod("c", Some("node-1"), "enforced"),
            pod("d", Some("node-2"), "not-accepted"),
            pod("e", None, "learning"),
        ];
        let want = desired(&pods, &profiles, &[], "palisade", false);
        let uids = |node: &str| {
            want.get(node)
                .map(|l| l.iter().map(|p| p.uid.clone()).collect::<Vec<_>>())
        };
        assert_eq!(uids("node-0"), Some(vec!["uid-a".to_string()]));
        assert_eq!(
            uids("node-1"),
            Some(vec!["uid-b".to_string()]),
            "c uses an enforcing profile"
        );
        assert_eq!(uids("node-2"), None, "d's profile is not accepted");
        assert_eq!(want.len(), 2, "e is not bound to a node");
        assert_eq!(want["node-0"][0].apparmor, ["learning"]);
        assert!(desired(&pods, &profiles[1..], &[], "palisade", false).is_empty());
        // With denials on, every pod of a Palisade profile reaches its node.
        let all = desired(&pods, &profiles, &[], "palisade", true);
        assert_eq!(
            all["node-1"].iter().map(|p| p.uid.as_str()).collect::<Vec<_>>(),
            ["uid-b", "uid-c"]
        );
        assert_eq!(all["node-2"][0].uid, "uid-d", "any profile, accepted or not");
    }

    #[test]
    fn a_nodes_list_stays_within_its_count_and_bytes() {
        let pod = |i: usize, containers: usize| LearningPod {
            uid: format!("{i:08}"),
            name: "ns/p".into(),
            apparmor: vec!["learning".into()],
            seccomp: None,
            containers: (0..containers)
                .map(|c| palisade_domain::pods::LearningContainer {
                    id: format!("{c:064}"),
                    seccomp: None,
                    name: None,
                })
                .collect(),
        };
        let mut many: Vec<LearningPod> = (0..MAX_LEARNING_PODS + 10).rev().map(|i| pod(i, 0)).collect();
        bound(&mut many);
        assert_eq!(many.len(), MAX_LEARNING_PODS);
        assert_eq!(many[0].uid, "00000000", "sorted first");
        // Pods with many containers (a workload owner can bind pods to any node): the list
        // stops before the byte budget, whatever the count.
        let mut heavy: Vec<LearningPod> = (0..200).map(|i| pod(i, 64)).collect();
        bound(&mut heavy);
        assert!(!heavy.is_empty() && heavy.len() < 200, "{}", heavy.len());
        assert!(serde_json::to_vec(&heavy).unwrap().len() <= MAX_LEARNING_PODS_BYTES);
    }

    #[test]
    fn only_a_report_whose_list_changed_wakes_the_publisher() {
        use futures::FutureExt as _;
        let published = Published::default();
        let woken = |p: &Published| p.bell.notified().now_or_never().is_some();
        let nps: NodeProfileStatus = serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha2",
            "kind": "NodeProfileStatus", "metadata": {"name": "n1"}, "spec": {}}))
        .unwrap();
        published.observe(&watcher::Event::Apply(nps.clone()));
        assert!(woken(&published), "a new report");
        let mut status_write = nps.clone();
        status_write.status = Some(Default::default());
        published.observe(&watcher::Event::Apply(status_write));
        assert!(!woken(&published), "the agent's status write");
        let mut listed = nps.clone();
        listed.spec.learning_pods = vec![LearningPod {
            uid: "u".into(),
            ..Default::default()
        }];
        published.observe(&watcher::Event::Apply(listed));
        assert!(woken(&published), "the list changed");
        published.observe(&watcher::Event::Delete(nps));
        assert!(woken(&published), "the report went");
    }
}
