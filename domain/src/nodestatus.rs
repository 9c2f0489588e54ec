//! The `NodeProfileStatus` kind: one object per node. Its status is written only by that
//! node's agent; its spec only by the operator (the node's pods that use learning profiles).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ProfileKind;

/// Version of the NodeProfileStatus kind that agents write and the operator reads.
pub const NODE_STATUS_VERSION: &str = "v1alpha2";

/// Most exceptions one node report lists (bounded so the object stays well under etcd's
/// limit; a node with more is judged pending for the rest, see [`NodeProfileStatusStatus`]).
pub const MAX_NODE_PROFILES: usize = 5000;

/// What one node holds, as its agent reports it: a summary of the profiles installed at
/// their accepted content, and an entry only for each profile that is not. A report's size
/// follows what is wrong on the node, not how many profiles it holds. Named after the node
/// and owned by the Node object, so it is garbage-collected with the node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha2",
    kind = "NodeProfileStatus",
    plural = "nodeprofilestatuses",
    shortname = "nps",
    category = "palisade",
    doc = "What one node holds, as its Palisade agent reports it: a summary of the installed profiles and an entry for each one that is not installed.",
    status = "NodeProfileStatusStatus",
    printcolumn(
        name = "AppArmor",
        type_ = "boolean",
        json_path = ".status.capabilities.apparmor",
        description = "AppArmor can be loaded on this node"
    ),
    printcolumn(
        name = "Seccomp",
        type_ = "boolean",
        json_path = ".status.capabilities.seccomp",
        description = "Seccomp is available on this node"
    ),
    printcolumn(
        name = "Kernel",
        type_ = "string",
        json_path = ".status.capabilities.kernelVersion",
        description = "The node's kernel release"
    ),
    printcolumn(
        name = "Runtime",
        type_ = "string",
        json_path = ".status.capabilities.containerRuntime",
        description = "The node's container runtime and version"
    ),
    printcolumn(
        name = "AppArmor-Installed",
        type_ = "integer",
        json_path = ".status.installed.apparmor.count",
        description = "AppArmor profiles installed at their accepted content"
    ),
    printcolumn(
        name = "Seccomp-Installed",
        type_ = "integer",
        json_path = ".status.installed.seccomp.count",
        description = "Seccomp profiles installed at their accepted content"
    ),
    printcolumn(
        name = "Agent",
        type_ = "string",
        json_path = ".status.agentVersion",
        description = "Agent version"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeProfileStatusSpec {
    /// Written by the operator, not the agent: the pods bound to this node that use a
    /// learning profile, and what of each the agent needs to attribute an audit record
    /// (UID, container IDs, the learning profiles). The agent learns only from these pods'
    /// records, and reads this instead of listing pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub learning_pods: Vec<crate::pods::LearningPod>,
}

/// What the node's agent reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProfileStatusStatus {
    /// Version of the agent that wrote this.
    #[serde(default)]
    pub agent_version: String,
    /// What the node can enforce. A kind the node cannot enforce has no entries: every
    /// profile of that kind is unsupported here.
    #[serde(default)]
    pub capabilities: NodeCapabilities,
    /// The profiles installed at their accepted content, per kind, as a count and a digest
    /// of the set: whoever knows which profiles target the node and their accepted content
    /// can check that every one not listed in `exceptions` is installed.
    #[serde(default)]
    pub installed: InstalledSummary,
    /// Every profile targeting the node that is not installed at its accepted content
    /// (Pending, Error), and every profile being removed: one entry per kind and name.
    #[serde(default)]
    #[schemars(length(max = 5000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub exceptions: Vec<NodeProfile>,
    /// Exceptions left out to keep the report within its bound of 5000 entries. The
    /// installed summary then no longer matches, so the node counts as pending for every
    /// profile not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_exceptions: u32,
    /// Profiles installed at their accepted content that this node enforces only in part:
    /// each names in `notEnforced` the rule classes its parser left out for this kernel
    /// (or for the ABI the policy declares). They count as installed (in `installed`) all
    /// the same. At most 256, by kind and name; the rest are counted in `omittedPartial`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub partial: Vec<NodeProfile>,
    /// Profiles enforced in part left out of `partial` to keep the report small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_partial: u32,
    /// What the node learned from audit records, per profile in Complain mode (AppArmor)
    /// or whose filter logs (seccomp), when the agent learns (`--learn`). Written by the
    /// agent under a field manager of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub learned: Vec<crate::learn::types::LearnedProfile>,
}

/// The installed profiles of each kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledSummary {
    /// AppArmor profiles installed at their accepted content.
    #[serde(default)]
    pub apparmor: KindSummary,
    /// Seccomp profiles installed at their accepted content.
    #[serde(default)]
    pub seccomp: KindSummary,
}

impl InstalledSummary {
    pub fn of(&self, kind: ProfileKind) -> &KindSummary {
        match kind {
            ProfileKind::AppArmorProfile => &self.apparmor,
            ProfileKind::SeccompProfile => &self.seccomp,
        }
    }
}

/// A set of installed profiles of one kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindSummary {
    /// How many.
    #[serde(default)]
    pub count: u32,
    /// The set's digest: the sum modulo 2^64 of each member's key, as 16 hex digits, where a
    /// member's key is the first 64 bits of SHA-256 over `<kind>/<uid>/<accepted digest>`.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub digest: String,
}

/// The first 64 bits of a hex digest (0 for none): what readers of reports compare of
/// each listed digest.
pub fn digest_key(digest: &str) -> u64 {
    digest
        .get(..16)
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .unwrap_or(0)
}

/// One profile's key in an installed set.
pub fn installed_key(kind: ProfileKind, uid: &str, digest: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(crate::wire_name(kind).as_bytes());
    h.update(b"/");
    h.update(uid.as_bytes());
    h.update(b"/");
    h.update(digest.as_bytes());
    let out = h.finalize();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// A set of installed profiles as its count and the sum of its members' keys: members can be
/// added and taken away in any order, so both sides can keep it up to date incrementally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InstalledSet {
    pub count: u32,
    pub sum: u64,
}

impl InstalledSet {
    pub fn add(&mut self, key: u64) {
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(key);
    }

    pub fn remove(&mut self, key: u64) {
        self.count = self.count.wrapping_sub(1);
        self.sum = self.sum.wrapping_sub(key);
    }

    pub fn summary(&self) -> KindSummary {
        KindSummary {
            count: self.count,
            digest: format!("{:016x}", self.sum),
        }
    }

    /// The set a summary describes (`None` when its digest is not 16 hex digits).
    pub fn from_summary(s: &KindSummary) -> Option<Self> {
        (s.digest.len() == 16)
            .then(|| u64::from_str_radix(&s.digest, 16).ok())
            .flatten()
            .map(|sum| Self { count: s.count, sum })
    }
}

/// A profile as nodes must hold it, for [`judge`].
pub struct Expectation<'a> {
    pub kind: ProfileKind,
    pub name: &'a str,
    pub uid: &'a str,
    /// The accepted content's digest (`None`: nothing accepted, so nothing to hold).
    pub accepted: Option<&'a str>,
    pub enabled: bool,
    pub selector: Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

impl<'a> Expectation<'a> {
    /// What nodes must hold of a profile as its object says.
    pub fn of<P: crate::ProfileObject>(profile: &'a P) -> Self {
        let meta = profile.meta();
        Self {
            kind: P::KIND,
            name: meta.name.as_deref().unwrap_or_default(),
            uid: meta.uid.as_deref().unwrap_or_default(),
            accepted: crate::accepted_content(profile.profile_status()).map(|a| a.digest.as_str()),
            enabled: profile.state() == crate::ProfileState::Enabled,
            selector: profile.selector(),
        }
    }
}

/// Where a profile stands on one node, as its report tells.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing<E> {
    /// Installed at the accepted content.
    Installed,
    /// Listed as an exception (`E`: the entry, as the caller holds it).
    Listed(E),
    /// The node cannot enforce the kind.
    Unsupported,
    /// Not listed, but the node's installed set is not the one expected (its agent, or the
    /// reader, has not caught up): pending.
    Unverified,
}

/// Where each expected profile that targets a node stands there, from the node's report and
/// labels: the batch form of the check the operator keeps incrementally. Profiles that do
/// not target the node (disabled, not accepted, not selected) are left out.
pub fn judge<'a>(
    report: &'a NodeProfileStatusStatus,
    labels: &std::collections::BTreeMap<String, String>,
    expected: &[Expectation<'_>],
) -> Vec<(ProfileKind, String, Standing<&'a NodeProfile>)> {
    let listed: std::collections::HashMap<(ProfileKind, &str), &NodeProfile> = report
        .exceptions
        .iter()
        .map(|e| ((e.kind, e.name.as_str()), e))
        .collect();
    let targets: Vec<(&Expectation<'_>, &str)> = expected
        .iter()
        .filter(|e| e.enabled && crate::selector::selects(e.selector, labels))
        .filter_map(|e| Some((e, e.accepted?)))
        .collect();
    let mut sets = [InstalledSet::default(), InstalledSet::default()];
    let slot = |k: ProfileKind| usize::from(k == ProfileKind::SeccompProfile);
    for (e, digest) in &targets {
        if !listed.contains_key(&(e.kind, e.name)) {
            sets[slot(e.kind)].add(installed_key(e.kind, e.uid, digest));
        }
    }
    let supported = |k: ProfileKind| match k {
        ProfileKind::AppArmorProfile => report.capabilities.apparmor,
        ProfileKind::SeccompProfile => report.capabilities.seccomp,
    };
    targets
        .iter()
        .map(|(e, _)| {
            let standing = standing(
                supported(e.kind),
                listed.get(&(e.kind, e.name)).copied(),
                || Some(sets[slot(e.kind)]),
                InstalledSet::from_summary(report.installed.of(e.kind)),
            );
            (e.kind, e.name.to_string(), standing)
        })
        .collect()
}

/// The one rule of where a profile that targets a node stands there, for the CLI's batch
/// [`judge`] and the operator's incremental index alike: the node cannot enforce the kind;
/// else the node lists the profile (an exception: pending, failed); else the node's
/// installed set vouches for it if it equals the set the node should hold (`expected`,
/// `None` when the caller cannot tell yet); else nothing can be said yet.
pub fn standing<E>(
    supported: bool,
    listed: Option<E>,
    expected: impl FnOnce() -> Option<InstalledSet>,
    reported: Option<InstalledSet>,
) -> Standing<E> {
    if !supported {
        Standing::Unsupported
    } else if let Some(entry) = listed {
        Standing::Listed(entry)
    } else if reported.is_some() && expected() == reported {
        Standing::Installed
    } else {
        Standing::Unverified
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Longest message an entry carries (the schema's bound); longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Fits exceptions into the report's bounds: messages cut to [`MAX_MESSAGE_LEN`] bytes, and
/// at most [`MAX_NODE_PROFILES`] entries, keeping failures first. Returns the entries
/// (sorted by kind and name) and how many were left out.
pub fn bounded(mut profiles: Vec<NodeProfile>) -> (Vec<NodeProfile>, u32) {
    for p in &mut profiles {
        if p.message.len() > MAX_MESSAGE_LEN {
            let cut = p.message.floor_char_boundary(MAX_MESSAGE_LEN - 3);
            p.message.truncate(cut);
            p.message.push_str("...");
        }
    }
    let mut omitted = 0;
    if profiles.len() > MAX_NODE_PROFILES {
        // Stable: failures first, then the rest, each group in name order.
        profiles.sort_by_key(|p| (p.state != NodeProfileState::Error, p.kind, p.name.clone()));
        omitted = (profiles.len() - MAX_NODE_PROFILES) as u32;
        profiles.truncate(MAX_NODE_PROFILES);
    }
    profiles.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    (profiles, omitted)
}

/// At most this many entries in a report's `partial`.
pub const MAX_PARTIAL: usize = 256;

/// A rule class as a report names it (`userns`, `io_uring`, ...): 1 to 32 lowercase
/// letters, digits or `_`. Anything else a node writes there is not shown.
pub fn is_rule_class(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The first 256 of `partial` by kind and name, and how many were left out.
pub fn bounded_partial(mut partial: Vec<NodeProfile>) -> (Vec<NodeProfile>, u32) {
    partial.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let omitted = partial.len().saturating_sub(MAX_PARTIAL) as u32;
    partial.truncate(MAX_PARTIAL);
    (partial, omitted)
}

/// The first version of the kind, which listed every profile on the node. No longer
/// served: it stays in the CRD so objects stored at it are read as the current version (the
/// agent replaces their status on its first report).
pub mod v1alpha1 {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The NodeProfileStatus of agents before v1alpha2; no longer served.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[kube(
        group = "palisade.dev",
        version = "v1alpha1",
        kind = "NodeProfileStatus",
        plural = "nodeprofilestatuses",
        shortname = "nps",
        category = "palisade",
        doc = "The NodeProfileStatus of agents before v1alpha2 (no longer served).",
        status = "LegacyStatus"
    )]
    pub struct NodeProfileStatusSpec {}

    /// The old status (one entry per profile on the node), kept as it was stored.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub struct LegacyStatus {}
}

/// What the node can enforce.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapabilities {
    /// The AppArmor LSM is enabled and a parser is present.
    #[serde(default)]
    pub apparmor: bool,
    /// `apparmor_parser --version`, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_parser_version: Option<String>,
    /// Why AppArmor is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_reason: Option<String>,
    /// The kubelet seccomp directory is writable and the kernel has seccomp.
    #[serde(default)]
    pub seccomp: bool,
    /// Why seccomp is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_reason: Option<String>,
    /// Where the agent reads denials from (`auditd`, `kernel log`, and whether the kernel
    /// rate-limits it); absent when denials are not reported on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub denials: Option<String>,
    /// The node's kernel release (`uname -r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub kernel_version: Option<String>,
    /// The AppArmor features the kernel mediates: the entries of its apparmorfs `features`
    /// directory (`file`, `network`, `unix`, `userns`, `io_uring`, `mqueue`, ...), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub apparmor_features: Vec<String>,
    /// The AppArmor policy ABIs a profile can name (`abi <abi/3.0>,`): the files of the
    /// `abi/` directory of the include directory the agent's parser uses (the host's), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub apparmor_abi: Vec<String>,
    /// The container runtime and its version, as the kubelet reports it on the Node
    /// (`containerd://1.7.24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub container_runtime: Option<String>,
    /// The seccomp filter actions the kernel supports (`kill_process`, `errno`, `user_notif`,
    /// `log`, ...), in the kernel's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 32)))]
    pub seccomp_actions: Vec<String>,
}

/// Bounds of what a node reports about itself: its kernel and runtime are trusted only so far.
pub mod capability_limits {
    /// Longest kernel release or container runtime string kept.
    pub const MAX_VERSION_LEN: usize = 128;
    /// Most AppArmor features listed.
    pub const MAX_APPARMOR_FEATURES: usize = 64;
    /// Most AppArmor ABIs listed.
    pub const MAX_APPARMOR_ABI: usize = 32;
    /// Longest AppArmor feature or ABI name kept.
    pub const MAX_APPARMOR_NAME_LEN: usize = 64;
    /// Most seccomp actions listed.
    pub const MAX_SECCOMP_ACTIONS: usize = 32;
    /// Longest seccomp action name kept.
    pub const MAX_SECCOMP_ACTION_LEN: usize = 32;
}

/// One profile's state on the node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProfile {
    /// `AppArmorProfile` or `SeccompProfile`.
    pub kind: ProfileKind,
    /// Profile name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Profile object UID.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub uid: String,
    /// Profile generation this entry is about.
    #[serde(default)]
    pub generation: i64,
    /// SHA-256 of the rendered content on the node.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub digest: String,
    /// Where the profile stands on this node.
    pub state: NodeProfileState,
    /// Why, for `Error` and `Unsupported`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
    /// AppArmor, installed: the rule classes of the profile this node's kernel does not
    /// mediate (`userns`, `io_uring`, `mqueue`, ...), as the parser that compiled it for
    /// this kernel said. They are left out here; the rest of the profile is enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(min = 1, max = 32), regex(pattern = r"^[a-z0-9_]+$")))]
    pub not_enforced: Vec<String>,
}

/// A profile's state on one node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NodeProfileState {
    /// Seen, not installed yet.
    Pending,
    /// Installed and verified at the reported generation (reports count these in their
    /// installed summary instead of listing them).
    Installed,
    /// Installing failed; `message` says why.
    Error,
    /// The node cannot run this kind of profile.
    Unsupported,
    /// Being removed.
    Removing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize, state: NodeProfileState, message: &str) -> NodeProfile {
        NodeProfile {
            kind: ProfileKind::SeccompProfile,
            name: format!("p{i:05}"),
            uid: "u".into(),
            generation: 1,
            digest: String::new(),
            state,
            message: message.into(),
            not_enforced: vec![],
        }
    }

    #[test]
    fn reports_stay_within_their_bounds_and_keep_every_failure() {
        let mut all: Vec<NodeProfile> = (0..MAX_NODE_PROFILES + 10)
            .map(|i| entry(i, NodeProfileState::Pending, ""))
            .collect();
        all.push(entry(99_999, NodeProfileState::Error, &"x".repeat(5000)));
        let (kept, omitted) = bounded(all);
        assert_eq!(kept.len(), MAX_NODE_PROFILES);
        assert_eq!(omitted, 11, "pending entries make room for the failure");
        let failure = kept
            .iter()
            .find(|e| e.state == NodeProfileState::Error)
            .expect("failure kept");
        assert!(failure.message.len() <= MAX_MESSAGE_LEN && failure.message.ends_with("..."));
        assert!(kept.windows(2).all(|w| w[0].name < w[1].name), "sorted by name");

        let (few, omitted) = bounded(vec![entry(1, NodeProfileState::Pending, "")]);
        assert_eq!((few.len(), omitted), (1, 0));
    }

    #[test]
    fn what_a_node_can_enforce_is_optional_both_ways() {
        // An older agent's capabilities read as nothing known; nothing known writes nothing.
        let old: NodeCapabilities =
            serde_json::from_value(serde_json::json!({"apparmor": true, "seccomp": true})).unwrap();
        assert_eq!(old.kernel_version, None);
        assert!(old.apparmor_features.is_empty() && old.apparmor_abi.is_empty() && old.seccomp_actions.is_empty());
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            serde_json::json!({"apparmor": true, "seccomp": true})
        );
        let full = NodeCapabilities {
            kernel_version: Some("7.2.13-amd64".into()),
            apparmor_features: vec!["userns".into()],
            apparmor_abi: vec!["5.0".into()],
            container_runtime: Some("containerd://2.1.9".into()),
            seccomp_actions: vec!["user_notif".into()],
            ..old
        };
        let json = serde_json::to_value(&full).unwrap();
        for key in [
            "kernelVersion",
            "apparmorFeatures",
            "apparmorAbi",
            "containerRuntime",
            "seccompActions",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(serde_json::from_value::<NodeCapabilities>(json).unwrap(), full);
    }

    #[test]
    fn an_installed_set_is_the_same_whatever_the_order_and_tells_members_apart() {
        let k = |uid: &str, digest: &str| installed_key(ProfileKind::SeccompProfile, uid, digest);
        let (a, b, c) = (k("u1", "d1"), k("u2", "d1"), k("u1", "d2"));
        assert!(a != b && a != c && b != c, "uid and digest both count");
        assert_ne!(
            a,
            installed_key(ProfileKind::AppArmorProfile, "u1", "d1"),
            "so does the kind"
        );
        let mut one = InstalledSet::default();
        one.add(a);
        one.add(b);
        let mut other = InstalledSet::default();
        other.add(c);
        other.add(b);
        other.add(a);
        other.remove(c);
        assert_eq!(one, other);
        assert_eq!(InstalledSet::from_summary(&one.summary()), Some(one));
        assert_eq!(one.summary().digest.len(), 16);
        let mut changed = one;
        changed.remove(a);
        changed.add(c);
        assert_eq!(changed.count, one.count);
        assert_ne!(changed.summary(), one.summary(), "another digest of one member shows");
        assert_eq!(
            InstalledSet::from_summary(&KindSummary {
                count: 1,
                digest: "xyz".into()
            }),
            None
        );
    }

    #[test]
    fn judging_a_report_checks_the_installed_set_against_what_targets_the_node() {
        let ex = |name: &'static str, uid: &'static str, accepted: Option<&'static str>| Expectation {
            kind: ProfileKind::SeccompProfile,
            name,
            uid,
            accepted,
            enabled: true,
            selector: None,
        };
        let expected = [
            ex("a", "ua", Some("da")),
            ex("b", "ub", Some("db")),
            ex("c", "uc", None),
        ];
        let mut set = InstalledSet::default();
        set.add(installed_key(ProfileKind::SeccompProfile, "ua", "da"));
        let mut failing = entry(2, NodeProfileState::Error, "parser said no");
        failing.name = "b".into();
        let mut report = NodeProfileStatusStatus {
            capabilities: NodeCapabilities {
                seccomp: true,
                ..Default::default()
            },
            exceptions: vec![failing.clone()],
            ..Default::default()
        };
        report.installed.seccomp = set.summary();
        let labels = Default::default();
        let got = judge(&report, &labels, &expected);
        assert_eq!(
            got,
            vec![
                (ProfileKind::SeccompProfile, "a".into(), Standing::Installed),
                (ProfileKind::SeccompProfile, "b".into(), Standing::Listed(&failing)),
            ],
            "c has nothing accepted: it targets no node"
        );
        // The node still holds a's old content: a cannot be vouched for.
        let stale = [ex("a", "ua", Some("da2")), ex("b", "ub", Some("db"))];
        assert_eq!(judge(&report, &labels, &stale)[0].2, Standing::Unverified);
        report.capabilities.seccomp = false;
        assert_eq!(judge(&report, &labels, &expected)[0].2, Standing::Unsupported);
    }
}
