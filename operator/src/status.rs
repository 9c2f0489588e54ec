//! Building a profile's status from what nodes report (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use palisade_domain::common::MAX_FAILURES;
use palisade_domain::selector::selects;
use palisade_domain::{
    AcceptedContent, CONDITION_ACCEPTED, CONDITION_READY, CONDITION_RULES_NOT_ENFORCED, CONDITION_SYSCALLS_IGNORED,
    CONDITION_WEAKENED, NodeCounts, NodeFailure, NodeProfileState, ProfileState, ProfileStatus,
};

use crate::reports::{OnNode, Reported, digest_key};
use crate::validate::Warnings;

/// Condition type shown while deletion waits for pods to stop using the profile.
pub const CONDITION_DELETING: &str = "Deleting";
/// Reason of an Accepted=False condition (and of its Event) for an object that does not
/// parse.
pub const REASON_INVALID_OBJECT: &str = "InvalidObject";

/// A node as aggregation sees it.
pub struct NodeView<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Its agent's heartbeat is current.
    pub live: bool,
    /// Where the profile stands on it, as its NodeProfileStatus tells.
    pub on: &'a OnNode,
    /// The rule classes its kernel leaves out of the accepted content, as it reports.
    pub not_enforced: Vec<String>,
}

/// A targeted node that installed the accepted content without some rule classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub node: String,
    pub rules: Vec<String>,
}

/// What the targeted nodes say of a profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregate {
    pub counts: NodeCounts,
    /// Up to 10 failures to install the accepted content.
    pub failures: Vec<NodeFailure>,
    /// Every node that installed it with rule classes left out, by name.
    pub left_out: Vec<LeftOut>,
}

/// What the profile is, for aggregation.
pub struct ProfileView<'a> {
    pub uid: &'a str,
    /// The content the operator accepted (what nodes must hold), if any.
    pub accepted: Option<&'a AcceptedContent>,
    pub selector: Option<&'a LabelSelector>,
    pub state: ProfileState,
}

/// Counts the targeted nodes (selected, with a live agent) by where the accepted content
/// stands on each, lists up to 10 failures to install it, and the nodes that installed it
/// with rule classes left out.
pub fn aggregate(profile: &ProfileView<'_>, nodes: &[NodeView<'_>]) -> Aggregate {
    let mut counts = NodeCounts::default();
    let mut failures = Vec::new();
    let mut left_out = Vec::new();
    if profile.state == ProfileState::Disabled {
        return Aggregate::default();
    }
    let accepted = profile.accepted.map(|a| digest_key(&a.digest)).filter(|d| *d != 0);
    for node in nodes.iter().filter(|n| n.live && selects(profile.selector, n.labels)) {
        counts.targeted += 1;
        let at_accepted = |e: &Reported| accepted.is_some_and(|a| e.digest == a);
        match node.on {
            OnNode::Unsupported => counts.unsupported += 1,
            OnNode::Installed if accepted.is_some() => {
                counts.installed += 1;
                if !node.not_enforced.is_empty() {
                    left_out.push(LeftOut {
                        node: node.name.to_string(),
                        rules: node.not_enforced.clone(),
                    });
                }
            }
            OnNode::Entry(e) if e.uid == profile.uid && e.state == NodeProfileState::Unsupported => {
                counts.unsupported += 1
            }
            OnNode::Entry(e) if e.uid == profile.uid && at_accepted(e) && e.state == NodeProfileState::Error => {
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
    left_out.sort_by(|a, b| a.node.cmp(&b.node));
    Aggregate {
        counts,
        failures,
        left_out,
    }
}

/// The `RulesNotEnforced` condition's message: which nodes leave out which rule classes.
pub fn left_out_message(left_out: &[LeftOut], targeted: u32) -> String {
    let named: Vec<String> = left_out
        .iter()
        .take(5)
        .map(|l| format!("{} ({})", l.node, l.rules.join(", ")))
        .collect();
    let more = left_out.len().saturating_sub(named.len());
    format!(
        "installed on {}/{} targeted nodes with rule classes left out (not mediated by the node's kernel, or not in the policy's declared ABI); the rest of the profile is enforced there: {}{}",
        left_out.len(),
        targeted,
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// Where validation of the current generation stands.
#[derive(Clone, Copy, Debug)]
pub enum Acceptance<'a> {
    Accepted,
    /// The user must change the object; the message says why.
    Invalid(&'a str),
    /// Validation could not run; retried.
    Transient(&'a str),
    /// The object does not parse as this version reads its kind (a value a newer CRD
    /// allows, say); the message is the parse error. Nothing is accepted from it.
    Unreadable(&'a str),
}

/// The Ready condition's (status, reason, message) for these counts.
pub fn readiness(
    acceptance: Acceptance<'_>,
    accepted: Option<&AcceptedContent>,
    state: ProfileState,
    counts: &NodeCounts,
) -> (&'static str, &'static str, String) {
    if state == ProfileState::Disabled {
        return (
            "True",
            "Disabled",
            "the profile is disabled and removed from every node".into(),
        );
    }
    let kept = || match accepted {
        Some(a) => format!(
            "nodes keep the last accepted content (generation {}): installed on {}/{} targeted nodes",
            a.generation, counts.installed, counts.targeted
        ),
        None => "no content was accepted yet, so nothing is installed".into(),
    };
    match acceptance {
        Acceptance::Invalid(_) => {
            return (
                "False",
                "NotAccepted",
                format!("the current generation was not accepted; {}", kept()),
            );
        }
        Acceptance::Transient(_) => {
            return (
                "False",
                "AwaitingValidation",
                format!("the current generation could not be validated yet; {}", kept()),
            );
        }
        Acceptance::Unreadable(_) => {
            return (
                "False",
                "NotAccepted",
                "the object cannot be read, so no node installs it".into(),
            );
        }
        Acceptance::Accepted => {}
    }
    if counts.targeted == 0 {
        return (
            "False",
            "NoMatchingNodes",
            "no node with a running Palisade agent matches spec.nodeSelector".into(),
        );
    }
    let done = counts.installed + counts.unsupported;
    let message = format!(
        "installed on {}/{} targeted nodes ({} failed, {} pending, {} unsupported)",
        counts.installed, counts.targeted, counts.failed, counts.pending, counts.unsupported
    );
    if done == counts.targeted {
        ("True", "Installed", message)
    } else if counts.failed > 0 {
        ("False", "Degraded", message)
    } else {
        ("False", "Pending", message)
    }
}

/// A condition, keeping the old transition time unless the status changed.
pub fn condition(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
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
    pub acceptance: Acceptance<'a>,
    /// What nodes must hold: this generation's content when accepted, else the last accepted.
    pub accepted: Option<AcceptedContent>,
    /// What the accepted content warns about; `None` keeps what the old status said (the
    /// nodes keep the old content).
    pub warnings: Option<Warnings>,
    pub state: ProfileState,
    pub counts: NodeCounts,
    pub failures: Vec<NodeFailure>,
    /// Targeted nodes that installed the accepted content with rule classes left out.
    pub left_out: Vec<LeftOut>,
    pub localhost_profile: Option<String>,
    pub workloads: &'a BTreeSet<String>,
    pub deleting: bool,
    /// What the nodes learned for the accepted content.
    pub learning: Option<palisade_domain::learn::Learning>,
}

/// The status to write. Deterministic: the same inputs give the same status, and times
/// change only on transitions, so writing it does not wake the operator up again.
pub fn build(input: StatusInput<'_>, now: &Time) -> ProfileStatus {
    let old = input.old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let g = input.generation;
    let (status, reason, message) = match input.acceptance {
        Acceptance::Accepted => ("True", "Valid", "the profile is valid".to_string()),
        Acceptance::Invalid(m) => ("False", "Invalid", m.to_string()),
        Acceptance::Transient(m) => ("Unknown", "ValidationError", format!("validation could not run: {m}")),
        Acceptance::Unreadable(m) => (
            "False",
            REASON_INVALID_OBJECT,
            format!("the object does not parse: {m}"),
        ),
    };
    let mut conditions = vec![condition(old, CONDITION_ACCEPTED, status, reason, message, g, now)];
    let (ready, reason, message) = readiness(input.acceptance, input.accepted.as_ref(), input.state, &input.counts);
    conditions.push(condition(old, CONDITION_READY, ready, reason, message, g, now));
    if input.deleting && !input.workloads.is_empty() {
        let first: Vec<&str> = input.workloads.iter().take(3).map(String::as_str).collect();
        let more = input.workloads.len().saturating_sub(first.len());
        let message = format!(
            "deletion waits for {} pod(s) or ProfileBinding(s) using the profile: {}{}",
            input.workloads.len(),
            first.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        conditions.push(condition(old, CONDITION_DELETING, "True", "InUse", message, g, now));
    }
    let (ignored_syscalls, warning, weakened) = match input.warnings {
        Some(w) => (
            w.ignored_syscalls,
            w.syscalls.map(|(r, m)| (r.to_string(), m)),
            w.weakened,
        ),
        None => (
            input.old.map(|s| s.ignored_syscalls.clone()).unwrap_or_default(),
            old.iter()
                .find(|c| c.type_ == CONDITION_SYSCALLS_IGNORED)
                .map(|c| (c.reason.clone(), c.message.clone())),
            old.iter()
                .find(|c| c.type_ == CONDITION_WEAKENED)
                .map(|c| c.message.clone()),
        ),
    };
    if let Some(message) = weakened {
        conditions.push(condition(
            old,
            CONDITION_WEAKENED,
            "True",
            "WeakensConfinement",
            message,
            g,
            now,
        ));
    }
    if !input.left_out.is_empty() {
        conditions.push(condition(
            old,
            CONDITION_RULES_NOT_ENFORCED,
            "True",
            "RuleClassesLeftOut",
            left_out_message(&input.left_out, input.counts.targeted),
            g,
            now,
        ));
    }
    if let Some((reason, message)) = warning {
        conditions.push(condition(
            old,
            CONDITION_SYSCALLS_IGNORED,
            "True",
            &reason,
            message,
            g,
            now,
        ));
    }
    ProfileStatus {
        observed_generation: Some(g),
        conditions,
        nodes: Some(input.counts),
        failures: input.failures,
        localhost_profile: input.localhost_profile,
        active_workloads: input.workloads.len() as u32,
        accepted: input.accepted,
        ignored_syscalls,
        learning: input.learning,
    }
}

/// What keeps pods from relying on a profile, judged from its status: the guard warns or
/// refuses with it, a ProfileBinding's `Ready` follows it.
pub enum Problem {
    /// Never accepted (or not validated yet): why.
    Rejected(String),
    /// Accepted, not Ready on every node it targets: why.
    NotReady(String),
}

/// The problem with a profile whose status is `status`, if any.
pub fn problem(status: Option<&ProfileStatus>) -> Option<Problem> {
    let condition = |t: &str| status.and_then(|s| s.conditions.iter().find(|c| c.type_ == t));
    if status.and_then(|s| s.accepted.as_ref()).is_none() {
        let why = condition(CONDITION_ACCEPTED).map_or("not validated yet".to_string(), |c| c.message.clone());
        return Some(Problem::Rejected(why));
    }
    match condition(CONDITION_READY) {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(Problem::NotReady(c.message.clone())),
        None => Some(Problem::NotReady("not reconciled yet".into())),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    const ACCEPTED: &str = "00000000000000aa1111";
    const OLDER: &str = "00000000000000bb2222";

    fn counts(targeted: u32, installed: u32, failed: u32, pending: u32, unsupported: u32) -> NodeCounts {
        NodeCounts {
            targeted,
            installed,
            failed,
            pending,
            unsupported,
        }
    }

    /// The condition of type `type_` in `status`.
    fn condition<'a>(status: &'a ProfileStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn entry(state: NodeProfileState, digest: &str, message: &str) -> Reported {
        Reported {
            uid: "u1".into(),
            generation: 2,
            digest: digest_key(digest),
            state,
            message: message.into(),
        }
    }

    fn accepted() -> AcceptedContent {
        AcceptedContent {
            generation: 2,
            digest: ACCEPTED.into(),
            bases: vec![],
        }
    }

    #[test]
    fn counts_follow_the_accepted_digest_on_live_selected_nodes() {
        let web = labels(&[("role", "web")]);
        let db = labels(&[("role", "db")]);
        let installed = OnNode::Installed;
        let pending = OnNode::Entry(entry(NodeProfileState::Pending, OLDER, "waiting"));
        let failed = OnNode::Entry(entry(NodeProfileState::Error, ACCEPTED, "parser said no at line 3"));
        let failed_older = OnNode::Entry(entry(NodeProfileState::Error, OLDER, "an older failure"));
        let mut other = entry(NodeProfileState::Error, ACCEPTED, "about the old object");
        other.uid = "old-object".into();
        let other_uid = OnNode::Entry(other);
        let view = |name, labels, live, on| NodeView {
            name,
            labels,
            live,
            on,
            not_enforced: vec![],
        };
        let partly = |name, labels, live| NodeView {
            not_enforced: vec!["mqueue".into(), "userns".into()],
            ..view(name, labels, live, &installed)
        };
        let nodes = vec![
            view("n0", &web, true, &installed),
            view("n1", &web, true, &pending),
            view("n2", &web, true, &failed),
            view("n3", &web, true, &OnNode::Unsupported),
            view("n4", &web, true, &OnNode::NoReport),
            view("n5", &web, true, &other_uid),
            view("n6", &web, false, &installed),
            view("n7", &db, true, &installed),
            view("n8", &web, true, &failed_older),
            view("n9", &web, true, &OnNode::Unverified),
            partly("n10", &web, true),
            partly("n11", &web, false),
            partly("n12", &db, true),
        ];
        let selector: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"role": "web"}})).unwrap();
        let content = accepted();
        let profile = ProfileView {
            uid: "u1",
            accepted: Some(&content),
            selector: Some(&selector),
            state: ProfileState::Enabled,
        };
        let Aggregate {
            counts,
            failures,
            left_out,
        } = aggregate(&profile, &nodes);
        assert_eq!(counts, self::counts(9, 2, 1, 5, 1));
        assert_eq!(
            failures,
            vec![NodeFailure {
                node: "n2".into(),
                message: "parser said no at line 3".into()
            }]
        );
        assert_eq!(
            left_out,
            vec![LeftOut {
                node: "n10".into(),
                rules: vec!["mqueue".into(), "userns".into()]
            }],
            "only a live, selected node that installed the content counts"
        );
        assert_eq!(
            left_out_message(&left_out, counts.targeted),
            "installed on 1/9 targeted nodes with rule classes left out (not mediated by the node's kernel, or not in the policy's declared ABI); the rest of the profile is enforced there: n10 (mqueue, userns)"
        );
        assert_eq!(
            readiness(Acceptance::Accepted, Some(&content), ProfileState::Enabled, &counts).1,
            "Degraded"
        );

        let nothing_accepted = ProfileView {
            accepted: None,
            ..profile
        };
        assert_eq!(
            aggregate(&nothing_accepted, &nodes).counts.installed,
            0,
            "nothing counts before acceptance"
        );
        let disabled = ProfileView {
            state: ProfileState::Disabled,
            ..nothing_accepted
        };
        assert_eq!(aggregate(&disabled, &nodes), Aggregate::default());
    }

    #[test]
    fn ready_exactly_when_every_targeted_node_installed_or_cannot() {
        let c = counts;
        let a = accepted();
        let ready = |acceptance, counts: NodeCounts| readiness(acceptance, Some(&a), ProfileState::Enabled, &counts);
        assert_eq!(ready(Acceptance::Accepted, c(3, 3, 0, 0, 0)).0, "True");
        assert_eq!(
            ready(Acceptance::Accepted, c(3, 2, 0, 0, 1)).0,
            "True",
            "Unsupported does not block Ready"
        );
        assert_eq!(ready(Acceptance::Accepted, c(3, 2, 0, 1, 0)).0, "False");
        let (status, reason, message) = ready(Acceptance::Invalid("bad"), c(3, 3, 0, 0, 0));
        assert_eq!((status, reason), ("False", "NotAccepted"));
        assert!(
            message.contains("nodes keep the last accepted content (generation 2)"),
            "{message}"
        );
        let (status, reason, _) = ready(Acceptance::Transient("parser timed out"), c(3, 3, 0, 0, 0));
        assert_eq!((status, reason), ("False", "AwaitingValidation"));
        let (status, reason, _) = ready(Acceptance::Accepted, c(0, 0, 0, 0, 0));
        assert_eq!(
            (status, reason),
            ("False", "NoMatchingNodes"),
            "a profile that targets no node says so"
        );
    }

    fn input<'a>(
        old: Option<&'a ProfileStatus>,
        acceptance: Acceptance<'a>,
        counts: NodeCounts,
        workloads: &'a BTreeSet<String>,
    ) -> StatusInput<'a> {
        StatusInput {
            old,
            generation: 1,
            acceptance,
            accepted: Some(accepted()),
            warnings: Some(Warnings::default()),
            state: ProfileState::Enabled,
            counts,
            failures: vec![],
            left_out: vec![],
            localhost_profile: None,
            workloads,
            deleting: false,
            learning: None,
        }
    }

    #[test]
    fn ignored_syscalls_are_a_warning_that_stays_with_the_accepted_content() {
        let t = Time(Timestamp::from_second(1_000).unwrap());
        let workloads = BTreeSet::new();
        let ignored = vec![palisade_domain::IgnoredSyscalls {
            architecture: "SCMP_ARCH_X86_64".into(),
            names: vec!["riscv_hwprobe".into()],
        }];
        let mut with = input(None, Acceptance::Accepted, NodeCounts::default(), &workloads);
        with.warnings = Some(Warnings {
            ignored_syscalls: ignored.clone(),
            syscalls: Some(("SyscallsIgnored", "1 syscall name(s) left out".into())),
            weakened: Some("SECCOMP_FILTER_FLAG_SPEC_ALLOW turns off a mitigation".into()),
        });
        let warned = build(with, &t);
        let weakened = condition(&warned, CONDITION_WEAKENED);
        assert_eq!(
            (weakened.status.as_str(), weakened.reason.as_str()),
            ("True", "WeakensConfinement")
        );
        let c = condition(&warned, CONDITION_SYSCALLS_IGNORED);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "SyscallsIgnored"));
        assert_eq!(warned.ignored_syscalls, ignored);
        let accepted = condition(&warned, CONDITION_ACCEPTED);
        assert_eq!(
            accepted.status, "True",
            "a warning does not make the profile unaccepted"
        );

        // A later invalid generation leaves the old content on the nodes, and its warning.
        let mut invalid = input(
            Some(&warned),
            Acceptance::Invalid("bad"),
            NodeCounts::default(),
            &workloads,
        );
        invalid.warnings = None;
        let kept = build(invalid, &t);
        assert_eq!(kept.ignored_syscalls, ignored);
        assert!(kept.conditions.iter().any(|c| c.type_ == CONDITION_SYSCALLS_IGNORED));

        // Accepted content without ignored names clears it.
        let clean = build(
            input(Some(&warned), Acceptance::Accepted, NodeCounts::default(), &workloads),
            &t,
        );
        assert!(clean.ignored_syscalls.is_empty());
        assert!(!clean.conditions.iter().any(|c| c.type_ == CONDITION_SYSCALLS_IGNORED));
    }

    #[test]
    fn rules_left_out_on_some_nodes_are_a_warning_naming_them() {
        let t = Time(Timestamp::from_second(1_000).unwrap());
        let workloads = BTreeSet::new();
        let counts = counts(7, 7, 0, 0, 0);
        let clean = build(input(None, Acceptance::Accepted, counts, &workloads), &t);
        assert!(!clean.conditions.iter().any(|c| c.type_ == CONDITION_RULES_NOT_ENFORCED));
        let left_out: Vec<LeftOut> = (0..6)
            .map(|i| LeftOut {
                node: format!("old-{i}"),
                rules: vec!["io_uring".into(), "userns".into()],
            })
            .collect();
        let warned = build(
            StatusInput {
                left_out,
                ..input(None, Acceptance::Accepted, counts, &workloads)
            },
            &t,
        );
        let c = condition(&warned, CONDITION_RULES_NOT_ENFORCED);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "RuleClassesLeftOut"));
        assert!(
            c.message
                .starts_with("installed on 6/7 targeted nodes with rule classes left out"),
            "{}",
            c.message
        );
        assert!(c.message.contains("old-0 (io_uring, userns); old-1"), "{}", c.message);
        assert!(c.message.ends_with("; and 1 more"), "{}", c.message);
        let ready = condition(&warned, CONDITION_READY);
        assert_eq!(ready.status, "True", "a warning, not a failure");
    }

    #[test]
    fn transition_times_change_only_on_transitions() {
        let t1 = Time(Timestamp::from_second(1_000).unwrap());
        let t2 = Time(Timestamp::from_second(2_000).unwrap());
        let workloads = BTreeSet::new();
        let pending = counts(1, 0, 0, 1, 0);
        let done = counts(1, 1, 0, 0, 0);
        let first = build(input(None, Acceptance::Accepted, pending, &workloads), &t1);
        let same = build(input(Some(&first), Acceptance::Accepted, pending, &workloads), &t2);
        assert_eq!(first, same, "nothing changed: identical status, identical times");
        let ready = build(input(Some(&first), Acceptance::Accepted, done, &workloads), &t2);
        assert_eq!(ready.conditions[0].last_transition_time, t1, "Accepted did not change");
        assert_eq!(ready.conditions[1].last_transition_time, t2, "Ready changed");
        assert_eq!(ready.conditions[1].status, "True");
        assert_eq!(ready.accepted, Some(accepted()), "the accepted content is published");
    }

    #[test]
    fn a_transient_failure_is_not_called_invalid() {
        let now = Time(Timestamp::from_second(1).unwrap());
        let workloads = BTreeSet::new();
        let status = build(
            input(
                None,
                Acceptance::Transient("apparmor_parser did not finish within 30s"),
                NodeCounts::default(),
                &workloads,
            ),
            &now,
        );
        let accepted = &status.conditions[0];
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("Unknown", "ValidationError")
        );
        assert_eq!(
            accepted.message,
            "validation could not run: apparmor_parser did not finish within 30s"
        );
    }

    #[test]
    fn deletion_held_by_pods_is_explained() {
        let now = Time(Timestamp::from_second(1).unwrap());
        let workloads: BTreeSet<String> = ["default/a", "default/b", "ns/c", "ns/d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut held = input(None, Acceptance::Accepted, NodeCounts::default(), &workloads);
        held.deleting = true;
        held.localhost_profile = Some("palisade/p.json".into());
        let status = build(held, &now);
        let held = condition(&status, CONDITION_DELETING);
        assert_eq!(held.reason, "InUse");
        assert_eq!(
            held.message,
            "deletion waits for 4 pod(s) or ProfileBinding(s) using the profile: default/a, default/b, ns/c and 1 more"
        );
        assert_eq!(status.active_workloads, 4);
    }
}
