//! Which nodes run a live agent, judged by when this process saw each agent's heartbeat
//! Lease change, never by comparing the time written in it with the local clock: a node
//! whose clock is off is neither dropped nor kept alive by the skew (client-go judges
//! leader Leases the same way).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use tokio::time::Instant;

/// The part of a heartbeat that changes on each renewal.
#[derive(Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<String>,
}

struct Seen {
    record: Record,
    duration: Duration,
    /// When this process saw `record` change (or first saw it).
    observed: Instant,
}

/// Heartbeat Leases by name, with when each last changed here.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Liveness {
    /// Records a Lease as the watch delivers it. A first sight counts as a change: after a
    /// start-up or failover every node with a heartbeat is live for one lease duration,
    /// and then only if it keeps renewing.
    ///
    /// Returns whether the holder became live by it (it was not before): a renewal of a live
    /// heartbeat changes nothing about which nodes count.
    pub fn observe(&self, lease: &Lease) -> bool {
        let Some(spec) = lease.spec.as_ref() else {
            return false;
        };
        let Some(holder) = spec.holder_identity.clone() else {
            return false;
        };
        let record = Record {
            holder,
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
        };
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let mut seen = self.seen.lock().expect("lock");
        let was_live = seen
            .get(&lease.name_any())
            .is_some_and(|s| s.observed.elapsed() < s.duration && s.record.holder == record.holder);
        match seen.get_mut(&lease.name_any()) {
            Some(s) if s.record == record => s.duration = duration,
            _ => {
                seen.insert(
                    lease.name_any(),
                    Seen {
                        record,
                        duration,
                        observed: Instant::now(),
                    },
                );
            }
        }
        drop(seen);
        !was_live && self.live_now(&lease.name_any())
    }

    /// Forgets a deleted Lease.
    pub fn forget(&self, lease: &Lease) {
        self.seen.lock().expect("lock").remove(&lease.name_any());
    }

    /// Keeps only the Leases named (after a relist).
    pub fn retain(&self, names: &BTreeSet<String>) {
        self.seen.lock().expect("lock").retain(|n, _| names.contains(n));
    }

    fn live_now(&self, lease: &str) -> bool {
        self.seen
            .lock()
            .expect("lock")
            .get(lease)
            .is_some_and(|s| s.observed.elapsed() < s.duration)
    }

    /// Holders (node names) whose heartbeat changed within its lease duration.
    pub fn live(&self) -> BTreeSet<String> {
        let now = Instant::now();
        self.seen
            .lock()
            .expect("lock")
            .values()
            .filter(|s| now.duration_since(s.observed) < s.duration)
            .map(|s| s.record.holder.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lease(node: &str, renew: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": format!("palisade-agent-{node}"), "namespace": "palisade-system"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 60, "renewTime": renew}
        }))
        .unwrap()
    }

    /// Agents whose clocks are an hour behind or ahead of the operator's are judged only by
    /// whether their Lease keeps changing.
    #[tokio::test(start_paused = true)]
    async fn clock_skew_neither_drops_nor_keeps_a_node() {
        let live = Liveness::default();
        assert!(
            live.observe(&lease("behind", "2026-11-22T09:00:00.000000Z")),
            "first sight: live"
        );
        live.observe(&lease("ahead", "2026-11-22T11:00:00.000000Z"));
        assert_eq!(live.live().len(), 2, "both are live when first seen");

        tokio::time::advance(Duration::from_secs(40)).await;
        // "behind" renews (its clock still an hour behind); "ahead" has stopped.
        assert!(
            !live.observe(&lease("behind", "2026-11-22T09:00:40.000000Z")),
            "a renewal of a live heartbeat changes nothing"
        );
        live.observe(&lease("ahead", "2026-11-22T11:00:00.000000Z"));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            live.live(),
            BTreeSet::from(["behind".to_string()]),
            "the renewing node stays though its time is old; the silent one expires though its time is in the future"
        );

        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(live.live().is_empty(), "no renewal for a lease duration: not live");
        live.forget(&lease("behind", "2026-11-22T09:00:40.000000Z"));
        assert!(
            live.observe(&lease("behind", "2026-11-22T09:02:00.000000Z")),
            "back after expiring: live again"
        );
        assert_eq!(live.live().len(), 1);
        live.retain(&BTreeSet::new());
        assert!(live.live().is_empty());
    }
}
