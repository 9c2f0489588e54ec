//! Learning profiles from what workloads do: the kernel's audit records of a profile in
//! Complain mode (AppArmor `apparmor="ALLOWED"`) or of a seccomp filter that logs
//! (`SCMP_ACT_LOG`), turned into rules; what a node learned, and what the operator merges
//! from every node. Pure: the agent reads the records, the operator merges, the CLI applies.
//!
//! - [`types`]: what a node reports and what a profile's status shows;
//! - [`grammar`]: the one grammar every learned rule follows;
//! - [`records`] and [`record_rules`]: the agent's reading of audit records, and the rule
//!   each asks for;
//! - [`mod@merge`]: the operator's merge over the nodes;
//! - [`edit`]: the CLI's applying of suggestions to a profile;
//! - [`active`]: whether a profile is learning.

pub mod active;
pub mod edit;
pub mod grammar;
pub mod merge;
pub mod record_rules;
pub mod records;
pub mod types;

pub use active::{apparmor_learning, seccomp_learning, seccomp_logs};
pub use edit::{LEARNED_MARK, add_to_abstract, add_to_policy, add_to_seccomp, combine, enforce_seccomp, rule_scope};
pub use grammar::{CAPABILITIES, is_learnable_rule, printable};
pub use merge::merge;
pub use record_rules::{
    apparmor_root, apparmor_rule, apparmor_scope, apparmor_scoped_rule, generalise, seccomp_syscall,
};
pub use records::{LineSource, Record, RecordKind, by_runtime, kernel_log_records, parse_from, parse_line};
pub use types::{
    LearnedProfile, LearnedRule, Learning, MAX_LEARNING_PROFILES, MAX_RULES_PER_PROFILE, MAX_SUGGESTION_NODES,
    MAX_SUGGESTIONS, Suggestion,
};

#[cfg(test)]
mod tests;
