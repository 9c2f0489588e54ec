//! auditd, simulated for agents on this machine: a log file the tests append records to (the
//! text a real kernel writes, see domain/src/denials/ and domain/src/learn/fixtures/), beside
//! a directory standing for the host's /proc (`--proc-root`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use tempfile::TempDir;

/// The files of one simulated auditd, in a temporary directory of their own.
pub struct SimulatedAudit {
    pub dir: TempDir,
    /// auditd's log, empty at first.
    pub log: PathBuf,
    /// The host's /proc (`<pid>/cgroup` files name the processes' pods), not created yet.
    pub proc_root: PathBuf,
}

impl SimulatedAudit {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("audit.log");
        std::fs::write(&log, "")?;
        let proc_root = dir.path().join("proc");
        Ok(Self { dir, log, proc_root })
    }
}

/// Agent arguments that read auditd's `log`, with `proc_root` for the host's /proc, for the
/// agent's `flag` (`--denials`, `--learn`).
pub fn agent_args(flag: &str, log: &Path, proc_root: &Path) -> Vec<String> {
    vec![
        flag.into(),
        "--audit-log".into(),
        log.display().to_string(),
        "--proc-root".into(),
        proc_root.display().to_string(),
    ]
}

/// A record of type `kind` (`AVC`, `SECCOMP`) with the time now.
pub fn record(kind: &str, serial: u64, fields: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "type={kind} msg=audit({}.{:03}:{serial}): {fields}\n",
        now / 1000,
        now % 1000
    )
}
