//! What both profile kinds share: the kinds themselves (what each is called on the wire, in
//! metrics and in messages), what every consumer (operator, agent, CLI) reads of a profile
//! object whatever its kind, the on/off switch and the status the operator reports (with
//! its merge of what the nodes learned).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most this many per-node failures are listed in a profile's status.
pub const MAX_FAILURES: usize = 10;

/// The two profile kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProfileKind {
    AppArmorProfile,
    SeccompProfile,
}

impl ProfileKind {
    /// Both kinds, in the order reports list them.
    pub const ALL: [ProfileKind; 2] = [ProfileKind::AppArmorProfile, ProfileKind::SeccompProfile];

    /// The kind's name in the API (`kind:`), in Events and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::AppArmorProfile => "AppArmorProfile",
            ProfileKind::SeccompProfile => "SeccompProfile",
        }
    }

    /// The kind's short word: metric labels (`kind="apparmor"`), the CLI's columns.
    pub fn slug(self) -> &'static str {
        match self {
            ProfileKind::AppArmorProfile => "apparmor",
            ProfileKind::SeccompProfile => "seccomp",
        }
    }

    /// The kind named by [`ProfileKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What is read of a profile object whatever its kind.
pub trait ProfileObject: kube::Resource<DynamicType = ()> {
    const KIND: ProfileKind;
    fn profile_status(&self) -> Option<&ProfileStatus>;
    fn profile_status_mut(&mut self) -> Option<&mut ProfileStatus>;
    /// The nodes it targets (`spec.nodeSelector`; none: every node).
    fn selector(&self) -> Option<&LabelSelector>;
    fn state(&self) -> ProfileState;
}

/// Both kinds keep these in the same fields: each kind's module implements
/// [`ProfileObject`] with this, beside its type.
macro_rules! profile_object {
    ($ty:ident) => {
        impl $crate::common::ProfileObject for $ty {
            const KIND: $crate::common::ProfileKind = $crate::common::ProfileKind::$ty;
            fn profile_status(&self) -> Option<&$crate::common::ProfileStatus> {
                self.status.as_ref()
            }
            fn profile_status_mut(&mut self) -> Option<&mut $crate::common::ProfileStatus> {
                self.status.as_mut()
            }
            fn selector(&self) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
                self.spec.node_selector.as_ref()
            }
            fn state(&self) -> $crate::common::ProfileState {
                self.spec.state
            }
        }
    };
}
pub(crate) use profile_object;

/// Whether a profile should be on its nodes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProfileState {
    /// Installed on every selected node.
    #[default]
    Enabled,
    /// Removed from every node; the object stays.
    Disabled,
}

/// Status of an AppArmorProfile or SeccompProfile, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStatus {
    /// The generation the operator last validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Accepted`: the operator validated this generation. `Ready`: every targeted node
    /// installed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,

    /// Node counts for the current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeCounts>,

    /// Up to 10 nodes where installing failed, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub failures: Vec<NodeFailure>,

    /// For seccomp: the value pods put in `seccompProfile.localhostProfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,

    /// Pods that reference this profile and ProfileBindings that name it; while any does,
    /// deletion waits.
    #[serde(default)]
    pub active_workloads: u32,

    /// The content the operator accepted last: agents install only content with this
    /// digest. It stays when a later generation (or a base's change) is not accepted, so
    /// nodes keep the last accepted content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedContent>,

    /// SeccompProfile only: syscall names of the accepted content that no listed
    /// architecture has according to the operator's libseccomp, per architecture. Runtimes
    /// skip such names the same way; the file on the node keeps them, so a node whose
    /// runtime knows a name enforces it. The `SyscallsIgnored` condition explains them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub ignored_syscalls: Vec<IgnoredSyscalls>,

    /// What the nodes learned from the profile's processes while it is in Complain mode
    /// (AppArmor) or its filter logs (seccomp), for the accepted content, merged over the
    /// nodes. Nothing changes the profile until `kubectl palisade learn --apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<Learning>,
}

/// The operator's merge of what every node learned for a profile (its status `learning`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Learning {
    /// Distinct permissions the profile's processes used that its accepted content does not
    /// grant (AppArmor, Complain mode) or that its filter logged (seccomp, `SCMP_ACT_LOG`).
    pub new_permissions: u32,
    /// When the newest of those permissions was first used: quiet since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_new_at: Option<Time>,
    /// Nodes that reported learning for the accepted content.
    pub nodes: u32,
    /// The suggested rules, sorted; `kubectl palisade learn` shows and applies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub suggestions: Vec<Suggestion>,
    /// Suggestions left out to keep within the bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_suggestions: u32,
}

/// One suggested rule, merged over the nodes that saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// The rule: an AppArmor rule line (`owner /run/app.pid w,`; `^hat ...` or `//child ...`
    /// for a hat's or child profile's), or a syscall name.
    #[schemars(length(max = 4200))]
    pub rule: String,
    /// How many records asked for it, on all nodes.
    pub count: u64,
    /// When a node first saw it.
    pub first_seen: Time,
    /// When a node last saw it.
    pub last_seen: Time,
    /// Up to 5 of the nodes that saw it.
    #[schemars(length(max = 5), inner(length(max = 253)))]
    pub nodes: Vec<String>,
    /// How many nodes saw it.
    pub node_count: u32,
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Syscall names left out of the filter for one architecture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredSyscalls {
    /// The architecture, as `SCMP_ARCH_*`.
    #[schemars(length(max = 32))]
    pub architecture: String,
    /// The names no rule was compiled for on it (at most 256 listed).
    #[schemars(length(max = 256), inner(length(max = 64)))]
    pub names: Vec<String>,
}

/// What the operator validated: the generation, the digest of the rendered content (what
/// agents compare before installing), and for seccomp the base chain it was resolved through.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedContent {
    /// The profile's generation the content was rendered from.
    pub generation: i64,
    /// Hex SHA-256 of the rendered content (seccomp: the JSON file; AppArmor: mode and text).
    #[schemars(length(max = 64))]
    pub digest: String,
    /// SeccompProfile only: the `baseProfileName` chain, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 253)))]
    pub bases: Vec<String>,
}

/// How many nodes the profile targets and where each stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes the profile's nodeSelector matches that run a live agent.
    pub targeted: u32,
    /// Targeted nodes that installed the current generation.
    pub installed: u32,
    /// Targeted nodes that failed to install it.
    pub failed: u32,
    /// Targeted nodes that have not reported the current generation yet.
    pub pending: u32,
    /// Targeted nodes that cannot run this kind of profile (e.g. no AppArmor).
    pub unsupported: u32,
}

/// One node's install failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailure {
    /// Node name.
    pub node: String,
    /// What went wrong, as the agent reported it.
    pub message: String,
}

/// Hex SHA-256 of rendered profile content: the digest agents report and compare.
pub fn digest(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(content))
}

/// Condition type: the operator validated the current generation.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// Condition type: every targeted node installed the current generation.
pub const CONDITION_READY: &str = "Ready";
/// Condition type present (True) when the accepted seccomp content names syscalls that
/// the filter leaves out; a warning, not a failure.
pub const CONDITION_SYSCALLS_IGNORED: &str = "SyscallsIgnored";
/// Condition type present (True) when the accepted content does something that weakens
/// more than it confines (seccomp `errnoRet: 0` on a denial, `SPEC_ALLOW`); a warning.
pub const CONDITION_WEAKENED: &str = "Weakened";
/// Condition type present (True) when targeted nodes installed the accepted AppArmor
/// content with rule classes left out (not mediated by their kernels, or not in the
/// policy's declared ABI); a warning naming the nodes.
pub const CONDITION_RULES_NOT_ENFORCED: &str = "RulesNotEnforced";

/// The content the operator accepted, if any: the gate agents install through.
pub fn accepted_content(status: Option<&ProfileStatus>) -> Option<&AcceptedContent> {
    status.and_then(|s| s.accepted.as_ref())
}

/// The objects of a guarded watch ([`kube::core::DeserializeGuard`]) that parsed. An object
/// that does not parse stays in the watch and its cache (one malformed object never fails a
/// list or a watch), so its controller can say so in its status; every other reader skips it
/// through this.
pub fn parsed<K>(objects: &[std::sync::Arc<kube::core::DeserializeGuard<K>>]) -> impl Iterator<Item = &K> {
    objects.iter().filter_map(|o| o.0.as_ref().ok())
}

#[cfg(test)]
mod parse_tests {
    use std::sync::Arc;

    use crate::SeccompProfile;
    use kube::core::{DeserializeGuard, ObjectList};
    use kube::{Resource, ResourceExt};
    use serde_json::json;

    #[test]
    fn objects_that_do_not_parse_are_kept_apart_not_fatal() {
        let obj = |name: &str, spec: serde_json::Value| {
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": spec})
        };
        // A list (as a watch's relist reads it) with one object this version cannot read.
        let list: ObjectList<DeserializeGuard<SeccompProfile>> = serde_json::from_value(json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfileList", "metadata": {},
            "items": [obj("good", json!({"defaultAction": "SCMP_ACT_ALLOW"})),
                      obj("bad", json!({"defaultAction": "SCMP_ACT_NEW"}))]}))
        .expect("one malformed object does not fail the list");
        let objects: Vec<Arc<DeserializeGuard<SeccompProfile>>> = list.items.into_iter().map(Arc::new).collect();
        let good: Vec<String> = super::parsed(&objects).map(|p| p.name_any()).collect();
        assert_eq!(good, ["good"]);
        let bad = objects[1].0.as_ref().unwrap_err();
        assert_eq!(objects[1].meta().name.as_deref(), Some("bad"), "its name is known");
        assert!(bad.error.contains("SCMP_ACT_NEW"), "{}", bad.error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_named_as_it_serializes_and_found_by_that_name() {
        for kind in ProfileKind::ALL {
            assert_eq!(crate::wire_name(kind), kind.name());
            assert_eq!(ProfileKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ProfileKind::from_name("Pod"), None);
        assert_eq!(ProfileKind::SeccompProfile.slug(), "seccomp");
        assert_eq!(ProfileKind::AppArmorProfile.slug(), "apparmor");
    }

    #[test]
    fn names_are_spelled_as_the_api_and_the_chart_expect() {
        assert_eq!(crate::api_version(), "palisade.dev/v1alpha1");
        assert_eq!(crate::agent_lease_name("n1"), "palisade-agent-n1");
        assert_eq!(crate::agent_lease_selector(), "app.kubernetes.io/name=palisade-agent");
    }
}
