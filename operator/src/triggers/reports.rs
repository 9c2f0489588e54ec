//! Node reports → the profiles whose standing on that node changed: those whose exception
//! changed, and those waiting on the node once its installed set agrees with what it is
//! expected to hold ([`NodeReports::apply`]). The learning-pods publisher also follows the
//! reports (what each already lists).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use palisade_domain::NodeProfileStatus;

use super::{Key, Router};
use crate::learning_pods::Published;
use crate::reports::NodeReports;

/// Applies one report event; returns the profiles to look at again.
pub fn changed(reports: &NodeReports, published: &Published, event: watcher::Event<NodeProfileStatus>) -> Vec<Key> {
    published.observe(&event);
    reports.apply(event)
}

/// Follows the reports' watch until it ends.
pub async fn follow(
    events: impl Stream<Item = Result<watcher::Event<NodeProfileStatus>, watcher::Error>>,
    reports: Arc<NodeReports>,
    published: Arc<Published>,
    router: Router,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        // Errors are retried with backoff by the watcher; there is nothing to route.
        if let Ok(event) = event {
            router.route(changed(&reports, &published, event));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use palisade_domain::ProfileKind;
    use serde_json::json;

    use super::*;

    fn report(exceptions: serde_json::Value) -> NodeProfileStatus {
        serde_json::from_value(
            json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
            "metadata": {"name": "n1"}, "spec": {},
            "status": {"capabilities": {"apparmor": true, "seccomp": true}, "exceptions": exceptions}}),
        )
        .unwrap()
    }

    #[test]
    fn a_report_routes_only_the_profiles_whose_entries_changed() {
        let reports = NodeReports::default();
        reports.set_nodes(&BTreeMap::from([("n1".to_string(), BTreeMap::new())]));
        let published = Published::default();
        assert!(changed(&reports, &published, watcher::Event::InitDone).is_empty());
        let failing = json!([{"kind": "SeccompProfile", "name": "web", "uid": "u", "generation": 1,
            "digest": "0000000000000abc0000", "state": "Error", "message": "disk full"}]);
        let web = (ProfileKind::SeccompProfile, "web".to_string());
        assert_eq!(
            changed(&reports, &published, watcher::Event::Apply(report(failing.clone()))),
            vec![web.clone()]
        );
        assert!(
            changed(&reports, &published, watcher::Event::Apply(report(failing))).is_empty(),
            "the same report again (an agent's heartbeat write) routes nothing"
        );
        assert_eq!(
            changed(&reports, &published, watcher::Event::Apply(report(json!([])))),
            vec![web],
            "the failure is gone"
        );
    }
}
