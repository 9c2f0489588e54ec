//! What learning reports: the rules one node learned for a profile (its agent writes them
//! into the node's NodeProfileStatus), and their merge over every node (the profile's
//! status `learning`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::common::{Learning, Suggestion};
use crate::common::{ProfileKind, is_zero};

/// Most rules one node reports for one profile; more are counted, not listed.
pub const MAX_RULES_PER_PROFILE: usize = 256;
/// Most profiles one node reports learning for.
pub const MAX_LEARNING_PROFILES: usize = 64;
/// Most suggestions a profile's status lists.
pub const MAX_SUGGESTIONS: usize = 256;
/// Most node names a suggestion lists.
pub const MAX_SUGGESTION_NODES: usize = 5;

/// What one node learned for one profile, since the node installed its accepted content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedProfile {
    /// The profile's kind.
    pub kind: ProfileKind,
    /// The profile's name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// The profile's uid.
    #[schemars(length(max = 64))]
    pub uid: String,
    /// The accepted content the records were made under (its digest).
    #[schemars(length(max = 64))]
    pub digest: String,
    /// The rules, one per permission, sorted.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub rules: Vec<LearnedRule>,
    /// Records of rules left out to keep within the bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_rules: u32,
}

/// One permission a profile's processes used, as a rule of the profile's language.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedRule {
    /// AppArmor: one rule line (`owner /run/app.pid w,`); seccomp: a syscall name.
    #[schemars(length(max = 4200))]
    pub rule: String,
    /// How many records asked for it.
    pub count: u64,
    /// When the first of them was made.
    pub first_seen: Time,
    /// When the last of them was made.
    pub last_seen: Time,
}
