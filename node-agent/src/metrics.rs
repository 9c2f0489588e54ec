//! The agent's Prometheus metrics (`palisade_agent_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub kind: &'static str,
    pub op: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub kind: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub kind: &'static str,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    /// Denials of Palisade profiles on this node (`--denials`), by kind and profile.
    pub denials: Family<DenialLabels, Counter>,
    /// Denial Event writes by result.
    pub denial_events: Family<ResultLabels, Counter>,
    /// Installs, removals and repairs by kind, operation and result.
    pub operations: Family<OpLabels, Counter>,
    /// Drift found and repaired (a file deleted or edited, a profile unloaded).
    pub drift_repairs: Family<KindLabels, Counter>,
    /// apparmor_parser run time.
    pub parser_seconds: Histogram,
    /// One whole-node sync.
    pub sync_seconds: Histogram,
    /// Profiles on this node by kind and state.
    pub profiles: Family<StateLabels, Gauge>,
    /// NodeProfileStatus writes.
    pub status_writes: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            denials: Family::default(),
            denial_events: Family::default(),
            operations: Family::default(),
            drift_repairs: Family::default(),
            parser_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            sync_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            profiles: Family::default(),
            status_writes: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("agent");
        r.register(
            "operations",
            "Profile installs, removals and repairs",
            m.operations.clone(),
        );
        r.register("drift_repairs", "Drift found and repaired", m.drift_repairs.clone());
        r.register(
            "parser_duration_seconds",
            "apparmor_parser run time",
            m.parser_seconds.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "Time of one whole-node sync",
            m.sync_seconds.clone(),
        );
        r.register(
            "profiles",
            "Profiles on this node by kind and state",
            m.profiles.clone(),
        );
        r.register("status_writes", "NodeProfileStatus writes", m.status_writes.clone());
        r.register(
            "denials",
            "What the kernel refused a container under a Palisade profile (--denials)",
            m.denials.clone(),
        );
        r.register(
            "denial_events",
            "Denial Event writes by result",
            m.denial_events.clone(),
        );
        // Series that alerts and dashboards select exist from the start, at 0.
        for kind in ["seccomp", "apparmor"] {
            drop(m.drift_repairs.get_or_create(&KindLabels { kind }));
            for op in ["install", "repair", "remove"] {
                for result in ["success", "error"] {
                    drop(m.operations.get_or_create(&OpLabels { kind, op, result }));
                }
            }
        }
        m
    }

    pub fn denial(&self, kind: palisade_domain::ProfileKind, profile: String) {
        self.denials
            .get_or_create(&DenialLabels {
                kind: kind.slug(),
                profile,
            })
            .inc();
    }

    pub fn denial_event(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.denial_events.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn op(&self, kind: &'static str, op: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.operations.get_or_create(&OpLabels { kind, op, result }).inc();
    }
}
