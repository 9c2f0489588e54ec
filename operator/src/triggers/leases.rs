//! Agents' heartbeats → every profile, when a node's agent becomes live or goes quiet:
//! which nodes count changes. Renewals of live heartbeats (most Lease events) change
//! nothing; a heartbeat expires without any event, so liveness is also looked at on a tick.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use super::Router;
use crate::controller::Context;
use crate::liveness::Liveness;

/// How often heartbeats are checked for expiry.
pub const TICK: Duration = Duration::from_secs(2);

/// Applies a heartbeat event to `liveness`. `Some(became_live)` when which nodes are live
/// must be looked at again; `None` for a renewal of a live heartbeat. `leases`: the Leases
/// that exist, read at the end of a relist.
pub fn observe(
    liveness: &Liveness,
    event: &watcher::Event<Lease>,
    leases: impl FnOnce() -> BTreeSet<String>,
) -> Option<bool> {
    match event {
        watcher::Event::Apply(l) | watcher::Event::InitApply(l) => liveness.observe(l).then_some(true),
        watcher::Event::Delete(l) => {
            liveness.forget(l);
            Some(false)
        }
        watcher::Event::InitDone => {
            liveness.retain(&leases());
            Some(false)
        }
        watcher::Event::Init => None,
    }
}

/// The nodes whose agent was live when last routed.
#[derive(Default)]
pub struct Live {
    last: BTreeSet<String>,
}

impl Live {
    /// Whether every profile must be looked at again: the live nodes changed, or one came
    /// back (even if it expired and returned between two looks: reconciles read the clock,
    /// this copy changes only here).
    pub fn changed(&mut self, now: BTreeSet<String>, became_live: bool) -> bool {
        if now == self.last && !became_live {
            return false;
        }
        self.last = now;
        true
    }
}

/// Linux nodes (where the chart runs agents), and how many of them have a live agent.
pub fn agents(nodes: &[Arc<Node>], live: &BTreeSet<String>) -> (usize, usize) {
    let linux: Vec<String> = nodes
        .iter()
        .filter(|n| n.labels().get("kubernetes.io/os").is_none_or(|os| os == "linux"))
        .map(|n| n.name_any())
        .collect();
    let with_agent = linux.iter().filter(|n| live.contains(*n)).count();
    (linux.len(), with_agent)
}

/// Follows the heartbeats' watch (cached in `leases`) until it ends, looking at liveness
/// (`ctx.liveness`) on each event that may change it and on every [`TICK`].
pub async fn follow(
    events: impl Stream<Item = watcher::Event<Lease>>,
    leases: Store<Lease>,
    ctx: Arc<Context>,
    router: Router,
) {
    let (liveness, nodes) = (&ctx.liveness, &ctx.nodes);
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(TICK);
    let mut live = Live::default();
    loop {
        let became_live = tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(event) => observe(liveness, &event, || leases.state().iter().map(|l| l.name_any()).collect()),
            },
            _ = tick.tick() => Some(false),
        };
        let Some(became_live) = became_live else {
            continue;
        };
        let now = liveness.live();
        let (linux, with_agent) = agents(&nodes.state(), &now);
        ctx.metrics.agents(linux, with_agent);
        if live.changed(now, became_live) {
            router.all();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A heartbeat renewed at second `renew` of a minute.
    fn lease(node: &str, renew: u32) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": format!("palisade-agent-{node}"), "namespace": "palisade-system"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 60,
                     "renewTime": format!("2026-11-22T09:00:{renew:02}.000000Z")}
        }))
        .unwrap()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn only_heartbeats_going_live_or_quiet_route() {
        let liveness = Liveness::default();
        let mut live = Live::default();
        let mut look = |event: watcher::Event<Lease>, leases: &[&str]| {
            observe(&liveness, &event, || {
                leases.iter().map(|n| format!("palisade-agent-{n}")).collect()
            })
            .is_some_and(|became_live| live.changed(liveness.live(), became_live))
        };
        assert!(look(watcher::Event::Apply(lease("a", 1)), &[]), "a new heartbeat");
        assert!(!look(watcher::Event::Apply(lease("a", 2)), &[]), "a renewal");
        assert!(!look(watcher::Event::Init, &[]));
        assert!(
            !look(watcher::Event::InitApply(lease("a", 2)), &[]),
            "relisted as it was"
        );
        assert!(!look(watcher::Event::InitDone, &["a"]));
        assert!(look(watcher::Event::Apply(lease("b", 1)), &[]));
        assert!(look(watcher::Event::InitDone, &["a"]), "b's Lease went during a relist");
        assert!(look(watcher::Event::Delete(lease("a", 2)), &[]));
        assert!(liveness.live().is_empty());
    }

    #[test]
    fn a_node_that_expired_and_came_back_between_two_looks_routes() {
        let mut live = Live::default();
        assert!(live.changed(set(&["a"]), true));
        assert!(!live.changed(set(&["a"]), false), "nothing changed");
        assert!(live.changed(set(&["a"]), true), "a came back");
        assert!(live.changed(set(&[]), false), "a went quiet (the tick)");
    }

    #[test]
    fn agents_are_counted_on_linux_nodes() {
        let node = |name: &str, os: Option<&str>| -> Arc<Node> {
            let labels = os.map(|os| json!({"kubernetes.io/os": os})).unwrap_or(json!({}));
            Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
        };
        let nodes = [node("a", Some("linux")), node("b", None), node("w", Some("windows"))];
        assert_eq!(agents(&nodes, &set(&["a", "w"])), (2, 1));
    }
}
