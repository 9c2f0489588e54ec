//! The `NodeProfileStatus` kind: one object per node, written only by that node's agent.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most profiles one node reports (bounded so the object stays well under etcd's limit).
pub const MAX_NODE_PROFILES: usize = 5000;

/// The profiles one node holds, as its agent reports them. Named after the node and owned
/// by the Node object, so it is garbage-collected with the node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "NodeProfileStatus",
    plural = "nodeprofilestatuses",
    shortname = "nps",
    category = "palisade",
    doc = "The profiles one node holds, as its Palisade agent reports them.",
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
        name = "Agent",
        type_ = "string",
        json_path = ".status.agentVersion",
        description = "Agent version"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeProfileStatusSpec {}

/// What the node's agent reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProfileStatusStatus {
    /// Version of the agent that wrote this.
    #[serde(default)]
    pub agent_version: String,
    /// What the node can enforce.
    #[serde(default)]
    pub capabilities: NodeCapabilities,
    /// Every profile on the node, one entry per kind and name.
    #[serde(default)]
    #[schemars(length(max = 5000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub profiles: Vec<NodeProfile>,
    /// Installed profiles left out of `profiles` to keep the report within its bound of
    /// 5000 entries (entries that are not Installed are always listed). The operator counts
    /// a profile without an entry on such a node as pending.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_installed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Longest message an entry carries (the schema's bound); longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Fits entries into the report's bounds: messages cut to [`MAX_MESSAGE_LEN`] bytes, and at
/// most [`MAX_NODE_PROFILES`] entries, leaving out Installed ones first. Returns the entries
/// (sorted by kind and name) and how many Installed ones were left out.
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
        // Stable: problems first, then Installed, each group in name order.
        profiles.sort_by_key(|p| (p.state == NodeProfileState::Installed, p.kind, p.name.clone()));
        omitted = (profiles.len() - MAX_NODE_PROFILES) as u32;
        profiles.truncate(MAX_NODE_PROFILES);
    }
    profiles.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    (profiles, omitted)
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
}

/// The two profile kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProfileKind {
    AppArmorProfile,
    SeccompProfile,
}

/// A profile's state on one node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NodeProfileState {
    /// Seen, not installed yet.
    Pending,
    /// Installed and verified at the reported generation.
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
        }
    }

    #[test]
    fn reports_stay_within_their_bounds_and_keep_every_problem() {
        let mut all: Vec<NodeProfile> = (0..MAX_NODE_PROFILES + 10)
            .map(|i| entry(i, NodeProfileState::Installed, ""))
            .collect();
        all.push(entry(99_999, NodeProfileState::Error, &"x".repeat(5000)));
        let (kept, omitted) = bounded(all);
        assert_eq!(kept.len(), MAX_NODE_PROFILES);
        assert_eq!(omitted, 11, "installed entries make room for the failure");
        let failure = kept
            .iter()
            .find(|e| e.state == NodeProfileState::Error)
            .expect("failure kept");
        assert!(failure.message.len() <= MAX_MESSAGE_LEN && failure.message.ends_with("..."));
        assert!(kept.windows(2).all(|w| w[0].name < w[1].name), "sorted by name");

        let (few, omitted) = bounded(vec![entry(1, NodeProfileState::Installed, "")]);
        assert_eq!((few.len(), omitted), (1, 0));
    }
}
