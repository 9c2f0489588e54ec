//! Names the operator, the agents and the CLI must spell the same way.

use crate::{GROUP, VERSION};

/// `apiVersion` of every Palisade object.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// The label every agent heartbeat Lease carries (key, value).
pub const AGENT_LEASE_LABEL: (&str, &str) = ("app.kubernetes.io/name", "palisade-agent");

/// The heartbeat Lease of the agent on `node`.
pub fn agent_lease_name(node: &str) -> String {
    format!("palisade-agent-{node}")
}

/// The label selector of the agents' heartbeat Leases.
pub fn agent_lease_selector() -> String {
    format!("{}={}", AGENT_LEASE_LABEL.0, AGENT_LEASE_LABEL.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_the_api_and_the_chart_expect() {
        assert_eq!(api_version(), "palisade.dev/v1alpha1");
        assert_eq!(agent_lease_name("n1"), "palisade-agent-n1");
        assert_eq!(agent_lease_selector(), "app.kubernetes.io/name=palisade-agent");
    }
}
