//! Why a profile is not installed (or not removed) on this node: one error for both kinds,
//! whose text is what the profile's node entry and Event say.

use std::path::PathBuf;

use palisade_runtime::budget::RunError;
use palisade_runtime::parser::ParserError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The name is reserved (a runtime's default profile, a host profile): never loaded.
    #[error("{0}")]
    Reserved(String),
    /// The compiled policy affects more than the profile itself.
    #[error("refused: {0}")]
    Refused(String),
    /// The parser needed more than its CPU or memory budget: the same content will again.
    #[error(transparent)]
    OverBudget(RunError),
    /// The parser refused the policy (its own words).
    #[error("{0}")]
    Parser(String),
    /// The parser could not run, hung or was killed: tried again later.
    #[error(transparent)]
    Run(RunError),
    /// A file of the agent's could not be written or removed.
    #[error("writing {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    /// The name could not be recorded as Palisade's before its first write.
    #[error("recording {name} in {record}: {reason}")]
    Record {
        name: String,
        record: &'static str,
        reason: String,
    },
    /// Another tool's file holds the name in the seccomp directory.
    #[error(
        "{} is another tool's file (not in {record}): Palisade does not replace it; remove it or the profile that wrote it (e.g. SPO's) and Palisade installs this one",
        path.display()
    )]
    ForeignFile { path: PathBuf, record: &'static str },
    /// A profile of that name is in the kernel and Palisade did not load it.
    #[error("a profile named {0} is loaded on this node but not managed by Palisade; refusing to replace it")]
    ForeignProfile(String),
    /// Removal of something Palisade has no record of.
    #[error("{0} is not managed by Palisade on this node; not removing it")]
    NotOwned(String),
    /// The kernel's interface could not be read or written.
    #[error("{0}")]
    Kernel(String),
    /// The kernel does not list the profile as loaded in its mode after the load.
    #[error("{0}")]
    NotListed(String),
}

impl InstallError {
    /// Whether the same content will fail the same way: not worth another parser run.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Reserved(_) | Self::Refused(_) | Self::OverBudget(_))
    }

    pub fn write(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Write {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<RunError> for InstallError {
    fn from(e: RunError) -> Self {
        match e {
            e @ RunError::OverBudget { .. } => Self::OverBudget(e),
            e => Self::Run(e),
        }
    }
}

impl From<ParserError> for InstallError {
    fn from(e: ParserError) -> Self {
        match e {
            ParserError::Run(e) => e.into(),
            ParserError::Refused(message) => Self::Parser(message),
        }
    }
}
