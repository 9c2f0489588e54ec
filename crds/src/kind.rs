//! The two profile kinds, as node reports and learning name them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The two profile kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProfileKind {
    AppArmorProfile,
    SeccompProfile,
}
