//! palisade-agent: the per-node agent that installs, verifies, repairs and removes AppArmor
//! and seccomp profiles, and reports them in its node's NodeProfileStatus.

pub mod apparmor;
pub mod attribution;
pub mod audit;
pub mod denials;
pub mod files;
pub mod host;
pub mod learn;
pub mod metrics;
pub mod report;
pub mod run;
pub mod seccomp;
pub mod sync;

pub use run::{Args, run};
