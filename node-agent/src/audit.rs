//! The one reader of the node's audit records, which serves learning (`--learn`) and
//! denials (`--denials`): each line is read once and handed to both.
//!
//! Records come from auditd's log when the node has one (`--audit-log`), otherwise from
//! the kernel log, read with `syslog(2)` (`SYSLOG_ACTION_READ_ALL`, which needs
//! CAP_SYSLOG and no device). A record names a process: the agent (with the host's PID
//! namespace) reads the process's cgroup and finds its pod and container among the pods
//! that the operator publishes for this node (`spec.learningPods` of its report). The agent
//! reads no pods itself: RBAC cannot narrow a pod list to one node.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use palisade_domain::learn::{self, Record};
use palisade_domain::pods::{LearningContainer, LearningPod};
use palisade_domain::{NodeProfileStatus, ProfileKind};

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

/// Pod UID and container ID from a process's `/proc/<pid>/cgroup` (cgroup v2, the
/// systemd and cgroupfs drivers; a path relative to the agent's own cgroup namespace,
/// `/../../besteffort/pod<UID>/<ID>`, too): the first pod directory, and the container
/// directly beneath it. Anything deeper is the container's own (a container that may write
/// its cgroup could make `…/pod<another's UID>/<another's ID>` there).
pub fn pod_of_cgroup(text: &str) -> Option<(String, Option<String>)> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut parts = path
        .split('/')
        .map(|p| p.trim_end_matches(".slice").trim_end_matches(".scope"));
    let pod = parts.find_map(|part| {
        part.rfind("-pod")
            .map(|i| i + 4)
            .or_else(|| part.starts_with("pod").then_some(3))
            .map(|i| part[i..].replace('_', "-"))
    })?;
    let container = parts.next().and_then(|part| {
        let id = part.rsplit('-').next().unwrap_or(part);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    });
    Some((pod, container))
}

/// Where a record's process ran, when it still runs: its pod among this node's published
/// pods, and its container when the kubelet has reported it.
pub enum Process<'a> {
    /// In a published pod.
    In(&'a LearningPod, Option<&'a LearningContainer>),
    /// Running, but not in a published pod (the host, a pod with no Palisade profile).
    Elsewhere,
    /// Exited (its cgroup can no longer be read).
    Gone,
}

/// This node's pods as the operator publishes them in the node's report: those that use a
/// learning profile, and, when denials are on, every pod that uses a Palisade profile.
pub struct NodePods {
    client: Client,
    node: String,
    proc_root: PathBuf,
    pods: HashMap<String, LearningPod>,
    listed: Option<std::time::Instant>,
}

impl NodePods {
    pub fn new(client: Client, node: String, proc_root: PathBuf) -> Self {
        Self {
            client,
            node,
            proc_root,
            pods: HashMap::new(),
            listed: None,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &LearningPod> {
        self.pods.values()
    }

    /// The published pod of a record's process (read again when the process's pod or
    /// container is not known yet: a new or restarted container is not there until the
    /// kubelet reports it and the operator publishes it).
    pub async fn of_record(&mut self, r: &Record) -> Process<'_> {
        let cgroup = r
            .field("pid")
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|pid| std::fs::read_to_string(self.proc_root.join(pid).join("cgroup")).ok());
        let Some(cgroup) = cgroup else {
            self.refresh(false).await;
            return Process::Gone;
        };
        let Some((pod_uid, container)) = pod_of_cgroup(&cgroup) else {
            return Process::Elsewhere;
        };
        let known = self.pods.get(&pod_uid).is_some_and(|p| {
            container
                .as_deref()
                .is_none_or(|id| p.containers.iter().any(|c| c.id == id))
        });
        self.refresh(known).await;
        match self.pods.get(&pod_uid) {
            Some(pod) => Process::In(
                pod,
                container
                    .as_deref()
                    .and_then(|id| pod.containers.iter().find(|c| c.id == id)),
            ),
            None => Process::Elsewhere,
        }
    }

    /// Whether a published pod uses the profile: only such a pod's processes can make
    /// records of it, so a record of any other is not the workload's (a process confined by
    /// hand on the host, or a forged line).
    pub async fn used(&mut self, kind: ProfileKind, name: &str) -> bool {
        let known = self.users(kind, name).next().is_some();
        self.refresh(known).await;
        self.users(kind, name).next().is_some()
    }

    /// The published pods that use a profile.
    pub fn users(&self, kind: ProfileKind, name: &str) -> impl Iterator<Item = &LearningPod> {
        self.pods.values().filter(move |p| match kind {
            ProfileKind::AppArmorProfile => p.apparmor.iter().any(|a| a == name),
            ProfileKind::SeccompProfile => {
                p.seccomp.as_deref() == Some(name) || p.containers.iter().any(|c| c.seccomp.as_deref() == Some(name))
            }
        })
    }

    /// Reads the pods the operator published for this node: when a record names one not
    /// `known`, at most every 2 seconds, and every 30 seconds regardless (a pod that went
    /// stops counting).
    pub async fn refresh(&mut self, known: bool) {
        let gap = Duration::from_secs(if known { 30 } else { 2 });
        if self.listed.is_some_and(|t| t.elapsed() < gap) {
            return;
        }
        self.listed = Some(std::time::Instant::now());
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        match api.get_opt(&self.node).await {
            Ok(nps) => {
                self.pods = nps
                    .into_iter()
                    .flat_map(|n| n.spec.learning_pods)
                    .map(|p| (p.uid.clone(), p))
                    .collect()
            }
            Err(e) => tracing::warn!(error = %e, "reading this node's published pods failed"),
        }
    }
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

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
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

    #[test]
    fn pods_and_containers_are_found_in_cgroup_paths() {
        let pod_and_container = Some((
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab".to_string(),
            Some("4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef".to_string()),
        ));
        let systemd = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8f4f3e_6a1b_4c2d_9e8f_0123456789ab.slice/cri-containerd-4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef.scope\n";
        assert_eq!(pod_of_cgroup(systemd), pod_and_container);
        let cgroupfs = "0::/kubepods/burstable/pod0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab/4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef\n";
        assert_eq!(
            pod_of_cgroup(cgroupfs).unwrap().0,
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab"
        );
        assert_eq!(pod_of_cgroup("0::/system.slice/containerd.service\n"), None);
        // A cgroup namespace shows the path relative to the reader's (the agent's own).
        let relative = "0::/../../besteffort/pod0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab/4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef\n";
        assert_eq!(pod_of_cgroup(relative), pod_and_container);
        // A container that writes its own cgroup cannot pass for another pod's.
        let nested = format!(
            "0::/kubepods/besteffort/pod{}/{}/pod{}/{}\n",
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab",
            "4".repeat(64),
            "99999999-6a1b-4c2d-9e8f-0123456789ab",
            "9".repeat(64)
        );
        assert_eq!(
            pod_of_cgroup(&nested),
            Some(("0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab".into(), Some("4".repeat(64))))
        );
    }
}
