//! Building a profile's status from what nodes report (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use palisade_crds::common::MAX_FAILURES;
use palisade_crds::selector::selects;
use palisade_crds::{
    CONDITION_ACCEPTED, CONDITION_READY, NodeCounts, NodeFailure, NodeProfile, NodeProfileState, ProfileKind,
    ProfileState, ProfileStatus,
};

/// Condition type shown while deletion waits for pods to stop using the profile.
pub const CONDITION_DELETING: &str = "Deleting";

/// A node as aggregation sees it.
pub struct NodeView<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Its agent's heartbeat is current.
    pub live: bool,
    /// Its NodeProfileStatus entry for the profile.
    pub entry: Option<&'a NodeProfile>,
}

/// What the profile is, for aggregation.
pub struct ProfileView<'a> {
    pub kind: ProfileKind,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub selector: Option<&'a LabelSelector>,
    pub state: ProfileState,
}

/// Counts the targeted nodes (selected, with a live agent) by where the current
/// generation stands on each, and lists up to 10 failures.
pub fn aggregate(profile: &ProfileView<'_>, nodes: &[NodeView<'_>]) -> (NodeCounts, Vec<NodeFailure>) {
    let mut counts = NodeCounts::default();
    let mut failures = Vec::new();
    if profile.state == ProfileState::Disabled {
        return (counts, failures);
    }
    for node in nodes.iter().filter(|n| n.live && selects(profile.selector, n.labels)) {
        counts.targeted += 1;
        let entry = node
            .entry
            .filter(|e| e.kind == profile.kind && e.name == profile.name && e.uid == profile.uid);
        match entry {
            Some(e) if e.state == NodeProfileState::Unsupported => counts.unsupported += 1,
            Some(e) if e.generation == profile.generation && e.state == NodeProfileState::Installed => {
                counts.installed += 1
            }
            Some(e) if e.generation == profile.generation && e.state == NodeProfileState::Error => {
                counts.failed += 1;
                if failures.len() < MAX_FAILURES {
                    failures.push(NodeFailure {
                        node: node.name.to_string(),
                        message: e.message.clone(),
                    });
                }
            }
            _ => counts.pending += 1,
        }
    }
    (counts, failures)
}

/// The Ready condition's (status, reason, message) for these counts.
pub fn readiness(accepted: Result<(), &str>, state: ProfileState, counts: &NodeCounts) -> (bool, &'static str, String) {
    if state == ProfileState::Disabled {
        return (
            true,
            "Disabled",
            "the profile is disabled and removed from every node".into(),
        );
    }
    if accepted.is_err() {
        return (false, "NotAccepted", "the current generation was not accepted".into());
    }
    if counts.targeted == 0 {
        return (true, "NoNodes", "no node with a running agent is selected".into());
    }
    let done = counts.installed + counts.unsupported;
    let message = format!(
        "installed on {}/{} targeted nodes ({} failed, {} pending, {} unsupported)",
        counts.installed, counts.targeted, counts.failed, counts.pending, counts.unsupported
    );
    if done == counts.targeted {
        (true, "Installed", message)
    } else if counts.failed > 0 {
        (false, "Degraded", message)
    } else {
        (false, "Pending", message)
    }
}

/// A condition, keeping the old transition time unless the status changed.
pub fn condition(
    old: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// Everything that goes into a profile's status.
pub struct StatusInput<'a> {
    pub old: Option<&'a ProfileStatus>,
    pub generation: i64,
    pub accepted: Result<(), &'a str>,
    pub state: ProfileState,
    pub counts: NodeCounts,
    pub failures: Vec<NodeFailure>,
    pub localhost_profile: Option<String>,
    pub workloads: &'a BTreeSet<String>,
    pub deleting: bool,
}

/// The status to write. Deterministic: the same inputs give the same status, and times
/// change only on transitions, so writing it does not wake the operator up again.
pub fn build(input: StatusInput<'_>, now: &Time) -> ProfileStatus {
    let old = input.old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let g = input.generation;
    let mut conditions = vec![match input.accepted {
        Ok(()) => condition(
            old,
            CONDITION_ACCEPTED,
            true,
            "Valid",
            "the profile is valid".into(),
            g,
            now,
        ),
        Err(message) => condition(old, CONDITION_ACCEPTED, false, "Invalid", message.to_string(), g, now),
    }];
    let (ready, reason, message) = readiness(input.accepted.map(|_| ()), input.state, &input.counts);
    conditions.push(condition(old, CONDITION_READY, ready, reason, message, g, now));
    if input.deleting && !input.workloads.is_empty() {
        let first: Vec<&str> = input.workloads.iter().take(3).map(String::as_str).collect();
        let more = input.workloads.len().saturating_sub(first.len());
        let message = format!(
            "deletion waits for {} pod(s) using the profile: {}{}",
            input.workloads.len(),
            first.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        conditions.push(condition(old, CONDITION_DELETING, true, "InUse", message, g, now));
    }
    ProfileStatus {
        observed_generation: Some(g),
        conditions,
        nodes: Some(input.counts),
        failures: input.failures,
        localhost_profile: input.localhost_profile,
        active_workloads: input.workloads.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn entry(state: NodeProfileState, generation: i64, message: &str) -> NodeProfile {
        NodeProfile {
            kind: ProfileKind::SeccompProfile,
            name: "p".into(),
            uid: "u1".into(),
            generation,
            digest: "d".into(),
            state,
            message: message.into(),
        }
    }

    fn entries(e: NodeProfile) -> NodeProfile {
        e
    }

    #[test]
    fn counts_follow_the_current_generation_on_live_selected_nodes() {
        let web = labels(&[("role", "web")]);
        let db = labels(&[("role", "db")]);
        let installed = entries(entry(NodeProfileState::Installed, 2, ""));
        let stale = entries(entry(NodeProfileState::Installed, 1, ""));
        let failed = entries(entry(NodeProfileState::Error, 2, "parser said no at line 3"));
        let unsupported = entries(entry(NodeProfileState::Unsupported, 0, "no AppArmor"));
        let mut other_uid = entry(NodeProfileState::Installed, 2, "");
        other_uid.uid = "old-object".into();
        let other_uid = entries(other_uid);
        let nodes = vec![
            NodeView {
                name: "n0",
                labels: &web,
                live: true,
                entry: Some(&installed),
            },
            NodeView {
                name: "n1",
                labels: &web,
                live: true,
                entry: Some(&stale),
            },
            NodeView {
                name: "n2",
                labels: &web,
                live: true,
                entry: Some(&failed),
            },
            NodeView {
                name: "n3",
                labels: &web,
                live: true,
                entry: Some(&unsupported),
            },
            NodeView {
                name: "n4",
                labels: &web,
                live: true,
                entry: None,
            },
            NodeView {
                name: "n5",
                labels: &web,
                live: true,
                entry: Some(&other_uid),
            },
            NodeView {
                name: "n6",
                labels: &web,
                live: false,
                entry: Some(&installed),
            },
            NodeView {
                name: "n7",
                labels: &db,
                live: true,
                entry: Some(&installed),
            },
        ];
        let selector: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"role": "web"}})).unwrap();
        let profile = ProfileView {
            kind: ProfileKind::SeccompProfile,
            name: "p",
            uid: "u1",
            generation: 2,
            selector: Some(&selector),
            state: ProfileState::Enabled,
        };
        let (counts, failures) = aggregate(&profile, &nodes);
        assert_eq!(
            counts,
            NodeCounts {
                targeted: 6,
                installed: 1,
                failed: 1,
                pending: 3,
                unsupported: 1
            }
        );
        assert_eq!(
            failures,
            vec![NodeFailure {
                node: "n2".into(),
                message: "parser said no at line 3".into()
            }]
        );
        assert_eq!(readiness(Ok(()), ProfileState::Enabled, &counts).1, "Degraded");

        let disabled = ProfileView {
            state: ProfileState::Disabled,
            ..profile
        };
        assert_eq!(aggregate(&disabled, &nodes).0, NodeCounts::default());
    }

    #[test]
    fn ready_exactly_when_every_targeted_node_installed_or_cannot() {
        let c = |targeted, installed, failed, pending, unsupported| NodeCounts {
            targeted,
            installed,
            failed,
            pending,
            unsupported,
        };
        assert!(readiness(Ok(()), ProfileState::Enabled, &c(3, 3, 0, 0, 0)).0);
        assert!(
            readiness(Ok(()), ProfileState::Enabled, &c(3, 2, 0, 0, 1)).0,
            "Unsupported does not block Ready"
        );
        assert!(!readiness(Ok(()), ProfileState::Enabled, &c(3, 2, 0, 1, 0)).0);
        assert!(!readiness(Err("bad"), ProfileState::Enabled, &c(3, 3, 0, 0, 0)).0);
        assert_eq!(readiness(Ok(()), ProfileState::Enabled, &c(0, 0, 0, 0, 0)).1, "NoNodes");
    }

    #[test]
    fn transition_times_change_only_on_transitions() {
        let t1 = Time(Timestamp::from_second(1_000).unwrap());
        let t2 = Time(Timestamp::from_second(2_000).unwrap());
        let workloads = BTreeSet::new();
        let input = |old, accepted, counts| StatusInput {
            old,
            generation: 1,
            accepted,
            state: ProfileState::Enabled,
            counts,
            failures: vec![],
            localhost_profile: None,
            workloads: &workloads,
            deleting: false,
        };
        let pending = NodeCounts {
            targeted: 1,
            pending: 1,
            ..Default::default()
        };
        let done = NodeCounts {
            targeted: 1,
            installed: 1,
            ..Default::default()
        };
        let first = build(input(None, Ok(()), pending), &t1);
        let same = build(input(Some(&first), Ok(()), pending), &t2);
        assert_eq!(first, same, "nothing changed: identical status, identical times");
        let ready = build(input(Some(&first), Ok(()), done), &t2);
        assert_eq!(ready.conditions[0].last_transition_time, t1, "Accepted did not change");
        assert_eq!(ready.conditions[1].last_transition_time, t2, "Ready changed");
        assert_eq!(ready.conditions[1].status, "True");
    }

    #[test]
    fn deletion_held_by_pods_is_explained() {
        let now = Time(Timestamp::from_second(1).unwrap());
        let workloads: BTreeSet<String> = ["default/a", "default/b", "ns/c", "ns/d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let status = build(
            StatusInput {
                old: None,
                generation: 1,
                accepted: Ok(()),
                state: ProfileState::Enabled,
                counts: NodeCounts::default(),
                failures: vec![],
                localhost_profile: Some("palisade/p.json".into()),
                workloads: &workloads,
                deleting: true,
            },
            &now,
        );
        let held = status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_DELETING)
            .unwrap();
        assert_eq!(held.reason, "InUse");
        assert_eq!(
            held.message,
            "deletion waits for 4 pod(s) using the profile: default/a, default/b, ns/c and 1 more"
        );
        assert_eq!(status.active_workloads, 4);
    }
}
