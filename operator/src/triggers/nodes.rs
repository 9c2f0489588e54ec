//! Nodes → every profile, when a node joins, leaves or changes labels: which nodes each
//! profile targets, and what each node is expected to hold, change. Status heartbeats (most
//! Node events) change neither, and route nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::Router;
use crate::reports::NodeReports;

/// Node names and their labels.
pub type Labels = BTreeMap<String, BTreeMap<String, String>>;

/// The nodes and labels last routed.
#[derive(Default)]
pub struct NodeLabels {
    last: Labels,
}

impl NodeLabels {
    /// The nodes and their labels, when they differ from the last seen.
    pub fn changed(&mut self, nodes: &[Arc<Node>]) -> Option<&Labels> {
        let now: Labels = nodes.iter().map(|n| (n.name_any(), n.labels().clone())).collect();
        if now == self.last {
            return None;
        }
        self.last = now;
        Some(&self.last)
    }
}

/// Follows the Nodes' watch until it ends: keeps each node's expected set, and reconciles
/// every profile when nodes or labels changed.
pub async fn follow(events: impl Stream, nodes: Store<Node>, reports: Arc<NodeReports>, router: Router) {
    let mut events = std::pin::pin!(events);
    let mut labels = NodeLabels::default();
    while events.next().await.is_some() {
        if let Some(now) = labels.changed(&nodes.state()) {
            // Every profile is looked at again just below, waiters included.
            drop(reports.set_nodes(now));
            router.all();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: serde_json::Value, ready: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
            .unwrap(),
        )
    }

    #[test]
    fn only_membership_and_labels_count() {
        let mut seen = NodeLabels::default();
        let a = node("a", json!({"zone": "1"}), "True");
        assert!(seen.changed(std::slice::from_ref(&a)).is_some(), "a node joined");
        assert!(
            seen.changed(&[node("a", json!({"zone": "1"}), "False")]).is_none(),
            "a status change"
        );
        let relabelled = seen.changed(&[node("a", json!({"zone": "2"}), "False")]).cloned();
        assert_eq!(relabelled.unwrap()["a"]["zone"], "2");
        assert!(seen.changed(&[a.clone(), node("b", json!({}), "True")]).is_some());
        assert!(seen.changed(&[a]).is_some(), "a node left");
        assert!(seen.changed(&[]).is_some());
        assert!(seen.changed(&[]).is_none());
    }
}
