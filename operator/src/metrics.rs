//! The operator's Prometheus metrics (`palisade_operator_*`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use palisade_domain::ProfileStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub kind: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconcile_seconds: Family<KindLabels, Histogram>,
    pub reconciles: Family<KindLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub profiles: Family<StateLabels, Gauge>,
    /// Linux nodes by whether their agent's heartbeat is live (`live`, `missing`).
    pub nodes: Family<AgentLabels, Gauge>,
    states: Arc<Mutex<HashMap<(&'static str, String), &'static str>>>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconcile_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14))),
            reconciles: Family::default(),
            failures: Family::default(),
            profiles: Family::default(),
            nodes: Family::default(),
            states: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("operator");
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            m.reconcile_seconds.clone(),
        );
        r.register("reconciles", "Reconciles run", m.reconciles.clone());
        r.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            m.failures.clone(),
        );
        r.register(
            "profiles",
            "Profiles by kind and state (Ready, Pending, Rejected)",
            m.profiles.clone(),
        );
        r.register(
            "nodes",
            "Linux nodes by whether their agent's heartbeat is live (agent=live|missing)",
            m.nodes.clone(),
        );
        // Series that alerts and dashboards select exist from the start, at 0.
        for kind in ["SeccompProfile", "AppArmorProfile"] {
            drop(m.reconciles.get_or_create(&KindLabels { kind }));
            for reason in ["kube", "finalizer", "validation_unavailable"] {
                drop(m.failures.get_or_create(&FailureLabels { kind, reason }));
            }
            for state in ["Ready", "Pending", "Rejected"] {
                drop(m.profiles.get_or_create(&StateLabels { kind, state }));
            }
        }
        m
    }

    /// Sets the node gauges: `live` agents among `linux` nodes.
    pub fn agents(&self, linux: usize, live: usize) {
        self.nodes
            .get_or_create(&AgentLabels { agent: "live" })
            .set(live as i64);
        self.nodes
            .get_or_create(&AgentLabels { agent: "missing" })
            .set(linux.saturating_sub(live) as i64);
    }

    /// Observes the reconcile's duration when dropped.
    pub fn reconcile_timer(&self, kind: &'static str) -> impl Drop + use<> {
        struct Timer(Histogram, Instant);
        impl Drop for Timer {
            fn drop(&mut self) {
                self.0.observe(self.1.elapsed().as_secs_f64());
            }
        }
        Timer(
            self.reconcile_seconds.get_or_create(&KindLabels { kind }).clone(),
            Instant::now(),
        )
    }

    pub fn reconciled(&self, kind: &'static str) {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn failed(&self, kind: &'static str, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { kind, reason }).inc();
    }

    /// Records where a profile stands, for the by-state gauge.
    pub fn profile_state(&self, kind: &'static str, name: &str, status: &ProfileStatus) {
        let is = |t: &str| status.conditions.iter().any(|c| c.type_ == t && c.status == "True");
        let state = match (is("Accepted"), is("Ready")) {
            (false, _) => "Rejected",
            (true, true) => "Ready",
            (true, false) => "Pending",
        };
        let mut states = self.states.lock().expect("lock");
        let old = states.insert((kind, name.to_string()), state);
        if old != Some(state) {
            if let Some(old) = old {
                self.profiles.get_or_create(&StateLabels { kind, state: old }).dec();
            }
            self.profiles.get_or_create(&StateLabels { kind, state }).inc();
        }
    }

    /// Forgets profiles of `kind` not in `names` (deleted), taking them out of the gauge.
    pub fn retain(&self, kind: &'static str, names: &std::collections::BTreeSet<String>) {
        let mut states = self.states.lock().expect("lock");
        states.retain(|(k, name), state| {
            let keep = *k != kind || names.contains(name);
            if !keep {
                self.profiles.get_or_create(&StateLabels { kind, state }).dec();
            }
            keep
        });
    }

    /// Profiles the by-state gauge tracks.
    pub fn tracked(&self) -> usize {
        self.states.lock().expect("lock").len()
    }
}
