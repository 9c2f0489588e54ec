//! The one reader of the node's audit records, which serves learning (`--learn`) and
//! denials (`--denials`): each line is read once and handed to both.
//!
//! Records come from auditd's log when the node has one (`--audit-log`), otherwise from
//! the kernel log, read with `syslog(2)` (`SYSLOG_ACTION_READ_ALL`, which needs
//! CAP_SYSLOG and no device). A record names a process: the agent (with the host's PID
//! namespace) finds its pod and container ([`crate::attribution`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_domain::learn;

use crate::attribution::NodePods;
use crate::denials::Denials;
use crate::learn::Learner;

/// Where records are read from.
#[derive(Clone, Debug)]
pub enum Source {
    /// auditd's log file, followed as it grows (and from its start after a rotation).
    AuditLog(PathBuf),
    /// The kernel's log buffer.
    KernelLog,
}

impl Source {
    /// What proves a line of this source is the audit subsystem's.
    pub fn line_source(&self) -> learn::LineSource {
        match self {
            Source::AuditLog(_) => learn::LineSource::AuditLog,
            Source::KernelLog => learn::LineSource::KernelLog,
        }
    }

    /// auditd's log when the file exists, else the kernel log.
    pub fn detect(audit_log: &Path) -> Self {
        if audit_log.is_file() {
            Source::AuditLog(audit_log.to_path_buf())
        } else {
            Source::KernelLog
        }
    }

    /// How the node's report names the source, with what limits it (for `palisade denials`).
    pub fn describe(&self) -> String {
        match self {
            Source::AuditLog(_) => "auditd".to_string(),
            Source::KernelLog => {
                let limit = std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit").unwrap_or_default();
                match limit.trim() {
                    "0" | "" => "kernel log".to_string(),
                    n => format!("kernel log, rate-limited (kernel.printk_ratelimit={n})"),
                }
            }
        }
    }
}

pub struct Config {
    pub source: Source,
    /// How often records are read.
    pub interval: Duration,
}

/// Reads new lines from the source, remembering where it stopped: auditd's log by offset;
/// the kernel log, read whole each time, by the lines of the previous read (the kernel
/// gives the records of one syscall the same stamp, so stamps do not tell lines apart).
struct Reader {
    source: Source,
    offset: u64,
    inode: u64,
    previous: std::collections::HashSet<u64>,
}

impl Reader {
    fn new(source: Source) -> Self {
        Self {
            source,
            offset: 0,
            inode: 0,
            previous: Default::default(),
        }
    }

    fn lines(&mut self) -> std::io::Result<Vec<String>> {
        match &self.source {
            Source::AuditLog(path) => {
                use std::os::unix::fs::MetadataExt;
                let mut f = std::fs::File::open(path)?;
                let meta = f.metadata()?;
                if meta.ino() != self.inode || meta.len() < self.offset {
                    (self.inode, self.offset) = (meta.ino(), 0);
                }
                f.seek(SeekFrom::Start(self.offset))?;
                let mut buf = Vec::new();
                f.take(8 << 20).read_to_end(&mut buf)?;
                // Keep a partial last line for the next read.
                let complete = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
                buf.truncate(complete);
                self.offset += complete as u64;
                Ok(String::from_utf8_lossy(&buf).lines().map(str::to_string).collect())
            }
            Source::KernelLog => {
                let text = kernel_log()?;
                let records = learn::kernel_log_records(&text).join("\n");
                Ok(new_lines(&mut self.previous, &records))
            }
        }
    }
}

/// The lines of a whole read of the kernel log that the previous read (its line hashes in
/// `previous`, replaced by this read's) did not have.
pub fn new_lines(previous: &mut std::collections::HashSet<u64>, text: &str) -> Vec<String> {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut seen = std::collections::HashSet::new();
    let mut new = Vec::new();
    for line in text.lines() {
        let h = hasher.hash_one(line);
        if seen.insert(h) && !previous.contains(&h) {
            new.push(line.to_string());
        }
    }
    *previous = seen;
    new
}

/// The whole kernel log buffer, without consuming it.
fn kernel_log() -> std::io::Result<String> {
    const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
    const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;
    // SAFETY: SIZE_BUFFER takes no buffer.
    let size = unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; size.max(4096) as usize];
    // SAFETY: the buffer is valid for its length, which is passed.
    let n = unsafe {
        libc::klogctl(
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr().cast(),
            buf.len() as libc::c_int,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads the records until shutdown, handing each to the learner and to denials.
pub async fn run(
    cfg: Config,
    mut pods: NodePods,
    mut learner: Option<Learner>,
    mut denials: Option<Denials>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(source = ?cfg.source, learning = learner.is_some(), denials = denials.is_some(), "reading audit records");
    if matches!(cfg.source, Source::KernelLog) {
        if std::fs::read_to_string("/sys/module/printk/parameters/time").is_ok_and(|t| t.trim() == "N") {
            tracing::warn!(
                "the kernel log has no timestamps (printk.time=N): a record cannot be told from a line another \
                 record printed, so no record is read from it; set printk.time=Y on this node, or run auditd"
            );
        }
        let limit = std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit").unwrap_or_default();
        if limit.trim() != "0" {
            tracing::warn!(
                printk_ratelimit = limit.trim(),
                "without auditd the kernel prints at most 10 audit records per interval and drops the rest: \
                 set kernel.printk_ratelimit=0 on this node (or run auditd)"
            );
        }
    }
    if let Some(l) = learner.as_mut() {
        l.resume().await;
    }
    let mut reader = Reader::new(cfg.source.clone());
    let mut tick = tokio::time::interval(cfg.interval);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Some(l) = learner.as_mut() {
            l.track_profiles();
        }
        let wanted = denials.is_some() || learner.as_ref().is_some_and(Learner::active);
        let lines = if wanted {
            reader.lines().unwrap_or_else(|e| {
                if !warned {
                    tracing::warn!(error = %e, source = ?cfg.source, "reading audit records failed");
                    warned = true;
                }
                Vec::new()
            })
        } else {
            Vec::new()
        };
        for line in &lines {
            if let Some(r) = learn::parse_from(line, cfg.source.line_source()) {
                if let Some(l) = learner.as_mut() {
                    l.handle(&r, &mut pods).await;
                }
                if let Some(d) = denials.as_mut() {
                    d.handle(&r, &mut pods).await;
                }
            } else if line.contains("callbacks suppressed") && line.contains("audit") {
                tracing::warn!(
                    line = line.as_str(),
                    "the kernel dropped audit records (printk rate limit): set kernel.printk_ratelimit=0 or run auditd"
                );
            }
        }
        if let Some(l) = learner.as_mut() {
            l.flush().await;
        }
        if let Some(d) = denials.as_mut() {
            d.flush(&mut pods).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_yields_only_the_lines_the_previous_did_not_have() {
        let mut previous = Default::default();
        assert_eq!(new_lines(&mut previous, "a\nb\n"), ["a", "b"]);
        // The ring moved on: a fell out, c came in.
        assert_eq!(new_lines(&mut previous, "b\nc\n"), ["c"]);
        assert!(new_lines(&mut previous, "b\nc\n").is_empty());
    }
}
