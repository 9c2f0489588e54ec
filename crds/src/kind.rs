//! The two profile kinds, and what each is called on the wire, in metrics and in messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
