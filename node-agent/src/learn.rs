//! Learning (`--learn`): the node's audit records of profiles in Complain mode (AppArmor)
//! and of seccomp filters that log (`SCMP_ACT_LOG`), turned into rules and reported in the
//! node's NodeProfileStatus as `status.learned`, under a field manager of its own.
//!
//! Records come from auditd's log when the node has one (`--audit-log`), otherwise from
//! the kernel log, read with `syslog(2)` (`SYSLOG_ACTION_READ_ALL`, which needs
//! CAP_SYSLOG and no device). AppArmor records name their profile. A seccomp record names
//! a process: the agent (with the host's PID namespace) reads the process's cgroup, finds
//! its pod and container among the pods that the operator publishes for this node
//! (`spec.learningPods` of its report), and takes the container's learning seccomp profile.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_domain::learn::{self, LearnedProfile, LearnedRule, Record, RecordKind};
use palisade_domain::pods::LearningPod;
use palisade_domain::{AppArmorProfile, NODE_STATUS_VERSION, NodeProfileStatus, ProfileKind, SeccompProfile};
use palisade_runtime::backoff::{self, Retryable as _};
use palisade_runtime::parsed;
use serde_json::json;

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
}

pub struct Config {
    pub node: String,
    pub source: Source,
    /// The host's /proc (the agent shares the host's PID namespace when learning).
    pub proc_root: PathBuf,
    /// `<kubelet-root>/seccomp/<this>/<name>.json` is a Palisade seccomp profile.
    pub seccomp_subdir: String,
    /// How often records are read.
    pub interval: Duration,
    /// Least time between two writes of `status.learned`.
    pub write_gap: Duration,
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

/// The rule a record asks for (AppArmor: scoped to its hat or child), or none.
pub fn rule_of(r: &Record) -> Option<String> {
    match r.kind {
        RecordKind::AppArmor => learn::apparmor_scoped_rule(r).ok(),
        RecordKind::Seccomp => learn::seccomp_syscall(r).ok(),
    }
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

/// What is being learned for one profile.
struct Learning {
    uid: String,
    digest: String,
    /// Records older than this (seconds since the epoch) were made under other content.
    since: f64,
    rules: BTreeMap<String, (u64, f64, f64)>,
    omitted: u32,
}

/// The profiles to learn for: AppArmor in Complain mode, seccomp that logs; enabled and
/// accepted. Keyed by kind and name, with uid and accepted digest.
fn learning_set(
    apparmor: &Store<DeserializeGuard<AppArmorProfile>>,
    seccomp: &Store<DeserializeGuard<SeccompProfile>>,
) -> BTreeMap<(ProfileKind, String), (String, String)> {
    let entry = |kind, name: String, uid: Option<String>, status: Option<&palisade_domain::ProfileStatus>| {
        let digest = status
            .and_then(|s| s.accepted.as_ref())
            .map(|a| a.digest.clone())
            .unwrap_or_default();
        ((kind, name), (uid.unwrap_or_default(), digest))
    };
    // Profiles that do not parse are skipped.
    let (apparmor, seccomp) = (apparmor.state(), seccomp.state());
    let apparmor = parsed(&apparmor)
        .filter(|p| learn::apparmor_learning(p))
        .map(|p| entry(ProfileKind::AppArmorProfile, p.name_any(), p.uid(), p.status.as_ref()));
    let seccomp = parsed(&seccomp)
        .filter(|p| learn::seccomp_learning(p))
        .map(|p| entry(ProfileKind::SeccompProfile, p.name_any(), p.uid(), p.status.as_ref()));
    apparmor.chain(seccomp).collect()
}

/// Pod UID and container ID from a process's `/proc/<pid>/cgroup` (cgroup v2, the
/// systemd and cgroupfs drivers).
pub fn pod_of_cgroup(text: &str) -> Option<(String, Option<String>)> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut pod = None;
    let mut container = None;
    for part in path.split('/') {
        let part = part.trim_end_matches(".slice").trim_end_matches(".scope");
        if let Some(i) = part
            .rfind("-pod")
            .map(|i| i + 4)
            .or_else(|| part.starts_with("pod").then_some(3))
        {
            pod = Some(part[i..].replace('_', "-"));
        } else if pod.is_some() {
            let id = part.rsplit('-').next().unwrap_or(part);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                container = Some(id.to_string());
            }
        }
    }
    pod.map(|p| (p, container))
}

pub struct Learner {
    cfg: Config,
    client: Client,
    apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    seccomp: Store<DeserializeGuard<SeccompProfile>>,
    profiles: BTreeMap<(ProfileKind, String), Learning>,
    /// This node's pods that use a learning profile, by UID, as the operator publishes them
    /// in the node's report; read again when a record names one not known.
    pods: HashMap<String, LearningPod>,
    pods_listed: Option<std::time::Instant>,
    dirty: bool,
    /// seccomp records no learning profile could be found for (logged now and then).
    unattributed: u64,
}

impl Learner {
    pub fn new(
        cfg: Config,
        client: Client,
        apparmor: Store<DeserializeGuard<AppArmorProfile>>,
        seccomp: Store<DeserializeGuard<SeccompProfile>>,
    ) -> Self {
        Self {
            cfg,
            client,
            apparmor,
            seccomp,
            profiles: BTreeMap::new(),
            pods: HashMap::new(),
            pods_listed: None,
            dirty: false,
            unattributed: 0,
        }
    }

    /// Starts from what this node reported before (a restarted agent keeps its counts;
    /// records older than now were counted then, or are of no use now). Retries until the
    /// API server answers: starting empty would overwrite the report with nothing.
    async fn resume(&mut self) {
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        let forbidden = |e: &kube::Error| matches!(e, kube::Error::Api(e) if e.code == 403);
        let read = (|| api.get_opt(&self.cfg.node))
            .retry(backoff::exponential(Duration::from_secs(1), Duration::from_secs(30)))
            .when(|e| !forbidden(e))
            .notify(|e, _| tracing::warn!(error = %e, "reading what this node learned before; retrying"))
            .await;
        // Only a refusal ends the retries.
        let nps = read.unwrap_or_else(|_| {
            tracing::warn!("may not read this node's report (RBAC): starting from nothing");
            None
        });
        let now = now_secs();
        for lp in nps.and_then(|n| n.status).map(|s| s.learned).unwrap_or_default() {
            let secs = |t: &Time| t.0.as_millisecond() as f64 / 1000.0;
            let rules: BTreeMap<String, (u64, f64, f64)> = lp
                .rules
                .iter()
                .map(|r| (r.rule.clone(), (r.count, secs(&r.first_seen), secs(&r.last_seen))))
                .collect();
            self.profiles.insert(
                (lp.kind, lp.name),
                Learning {
                    uid: lp.uid,
                    digest: lp.digest,
                    since: now,
                    rules,
                    omitted: lp.omitted_rules,
                },
            );
        }
    }

    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(source = ?self.cfg.source, "learning from audit records");
        if matches!(self.cfg.source, Source::KernelLog)
            && std::fs::read_to_string("/sys/module/printk/parameters/time").is_ok_and(|t| t.trim() == "N")
        {
            tracing::warn!(
                "the kernel log has no timestamps (printk.time=N): a record cannot be told from a line another \
                 record printed, so nothing is learned from it; set printk.time=Y on this node, or run auditd"
            );
        }
        if matches!(self.cfg.source, Source::KernelLog) {
            let limit = std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit").unwrap_or_default();
            if limit.trim() != "0" {
                tracing::warn!(
                    printk_ratelimit = limit.trim(),
                    "without auditd the kernel prints at most 10 audit records per interval and drops the rest: \
                     set kernel.printk_ratelimit=0 on this node (or run auditd) while learning"
                );
            }
        }
        self.resume().await;
        let mut reader = Reader::new(self.cfg.source.clone());
        let mut tick = tokio::time::interval(self.cfg.interval);
        let mut last_write = tokio::time::Instant::now() - self.cfg.write_gap;
        let mut warned = false;
        let mut last_note = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            self.track_profiles();
            let lines = if self.profiles.is_empty() {
                Vec::new()
            } else {
                reader.lines().unwrap_or_else(|e| {
                    if !warned {
                        tracing::warn!(error = %e, source = ?self.cfg.source, "reading audit records failed");
                        warned = true;
                    }
                    Vec::new()
                })
            };
            for line in &lines {
                if let Some(r) = learn::parse_from(line, self.cfg.source.line_source()) {
                    self.handle(&r).await;
                } else if line.contains("callbacks suppressed") && line.contains("audit") {
                    tracing::warn!(
                        line = line.as_str(),
                        "the kernel dropped audit records (printk rate limit): set kernel.printk_ratelimit=0 or run auditd while learning"
                    );
                }
            }
            if self.unattributed > 0 && last_note.elapsed() >= Duration::from_secs(30) {
                tracing::info!(
                    records = self.unattributed,
                    "seccomp records of processes not in a pod with a learning profile (or exited where several learn)"
                );
                self.unattributed = 0;
                last_note = tokio::time::Instant::now();
            }
            if self.dirty && last_write.elapsed() >= self.cfg.write_gap {
                match self.write().await {
                    Ok(()) => {
                        self.dirty = false;
                        last_write = tokio::time::Instant::now();
                    }
                    Err(e) => tracing::warn!(error = %e, "writing what was learned failed; will retry"),
                }
            }
        }
    }

    /// Follows which profiles are learning; a new accepted content starts afresh.
    fn track_profiles(&mut self) {
        let set = learning_set(&self.apparmor, &self.seccomp);
        let before = self.profiles.len();
        self.profiles
            .retain(|k, l| set.get(k).is_some_and(|(uid, d)| *uid == l.uid && *d == l.digest));
        if self.profiles.len() != before {
            self.dirty = true;
        }
        let now = now_secs();
        for (key, (uid, digest)) in set {
            if !self.profiles.contains_key(&key) {
                // Reported at once, empty: the profile's status says the node is learning.
                self.dirty = true;
            }
            self.profiles.entry(key).or_insert_with(|| Learning {
                uid,
                digest,
                since: now,
                rules: BTreeMap::new(),
                omitted: 0,
            });
        }
    }

    async fn handle(&mut self, r: &Record) {
        let (key, rule) = match r.kind {
            // runc's own records before it execs the container's program are not the
            // workload's (the profile applies from that exec on).
            RecordKind::AppArmor if learn::by_runtime(r) => return,
            RecordKind::AppArmor => {
                let Some(root) = learn::apparmor_root(r) else { return };
                let key = (ProfileKind::AppArmorProfile, root.to_string());
                if !self.profiles.contains_key(&key) || !self.used_here(&key).await {
                    return;
                }
                match learn::apparmor_scoped_rule(r) {
                    Ok(rule) => (key, rule),
                    Err(why) => {
                        tracing::debug!(profile = root, %why, "record not learned");
                        return;
                    }
                }
            }
            // runc's own syscalls after it set the filter are kept: the container cannot
            // start without them once the filter enforces.
            RecordKind::Seccomp => {
                let Ok(name) = learn::seccomp_syscall(r) else { return };
                let Some(profile) = self.seccomp_profile_of(r).await else {
                    self.unattributed += 1;
                    return;
                };
                ((ProfileKind::SeccompProfile, profile), name)
            }
        };
        let Some(l) = self.profiles.get_mut(&key) else { return };
        if r.time < l.since {
            return;
        }
        let full = l.rules.len() >= learn::MAX_RULES_PER_PROFILE;
        match l.rules.get_mut(&rule) {
            Some(e) => {
                e.0 += 1;
                e.2 = e.2.max(r.time);
            }
            None if full => l.omitted = l.omitted.saturating_add(1),
            None => {
                tracing::info!(kind = ?key.0, profile = key.1, rule, "learned");
                l.rules.insert(rule, (1, r.time, r.time));
            }
        }
        self.dirty = true;
    }

    /// The learning seccomp profile of a record's process: from its cgroup while it runs;
    /// once it has exited (a short-lived child), only when a single learning seccomp
    /// profile is in use by this node's pods that have not finished.
    async fn seccomp_profile_of(&mut self, r: &Record) -> Option<String> {
        let pid = r.field("pid")?;
        let Ok(cgroup) = std::fs::read_to_string(self.cfg.proc_root.join(pid).join("cgroup")) else {
            self.refresh_pods(false).await;
            let in_use: std::collections::BTreeSet<String> = self
                .pods
                .values()
                .filter_map(|p| p.seccomp.clone())
                .filter(|n| self.profiles.contains_key(&(ProfileKind::SeccompProfile, n.clone())))
                .collect();
            return if in_use.len() == 1 {
                in_use.into_iter().next()
            } else {
                None
            };
        };
        let (pod_uid, container) = pod_of_cgroup(&cgroup)?;
        // Known: the pod, and the container (a new or restarted container is not there
        // until the kubelet reports it and the operator publishes it).
        let known = self.pods.get(&pod_uid).is_some_and(|p| {
            container
                .as_deref()
                .is_none_or(|id| p.containers.iter().any(|c| c.id == id))
        });
        self.refresh_pods(known).await;
        let pod = self.pods.get(&pod_uid)?;
        // A container not reported yet (runc's records come before the kubelet's report):
        // the pod's profile, when all its containers have the same.
        let name = match container
            .as_deref()
            .and_then(|id| pod.containers.iter().find(|c| c.id == id))
        {
            Some(c) => c.seccomp.clone(),
            None => pod.seccomp.clone(),
        }?;
        self.profiles
            .contains_key(&(ProfileKind::SeccompProfile, name.clone()))
            .then_some(name)
    }

    /// Whether a pod on this node uses the profile: only such a pod's processes can make
    /// records of it, so a record of any other is not the workload's (a process confined by
    /// hand on the host, or a forged line) and teaches nothing.
    async fn used_here(&mut self, key: &(ProfileKind, String)) -> bool {
        let uses = |pods: &HashMap<String, LearningPod>| match key.0 {
            ProfileKind::AppArmorProfile => pods.values().any(|p| p.apparmor.contains(&key.1)),
            ProfileKind::SeccompProfile => pods.values().any(|p| {
                p.seccomp.as_ref() == Some(&key.1) || p.containers.iter().any(|c| c.seccomp.as_ref() == Some(&key.1))
            }),
        };
        let known = uses(&self.pods);
        self.refresh_pods(known).await;
        uses(&self.pods)
    }

    /// Reads the pods the operator published for this node (`spec.learningPods` of its
    /// report): when a record names one not `known`, at most every 2 seconds, and every 30
    /// seconds regardless (a pod that went stops counting). The agent lists no pods: RBAC
    /// cannot narrow a list to one node, the operator's view can.
    async fn refresh_pods(&mut self, known: bool) {
        let gap = Duration::from_secs(if known { 30 } else { 2 });
        if self.pods_listed.is_some_and(|t| t.elapsed() < gap) {
            return;
        }
        self.pods_listed = Some(std::time::Instant::now());
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        match api.get_opt(&self.cfg.node).await {
            Ok(nps) => {
                self.pods = nps
                    .into_iter()
                    .flat_map(|n| n.spec.learning_pods)
                    .map(|p| (p.uid.clone(), p))
                    .collect()
            }
            Err(e) => tracing::warn!(error = %e, "reading this node's learning pods failed"),
        }
    }

    /// Writes `status.learned` (only that field, under its own manager).
    async fn write(&self) -> kube::Result<()> {
        let learned: Vec<LearnedProfile> = self
            .profiles
            .iter()
            .take(learn::MAX_LEARNING_PROFILES)
            .map(|((kind, name), l)| LearnedProfile {
                kind: *kind,
                name: name.clone(),
                uid: l.uid.clone(),
                digest: l.digest.clone(),
                rules: l
                    .rules
                    .iter()
                    .map(|(rule, (count, first, last))| LearnedRule {
                        rule: rule.clone(),
                        count: *count,
                        first_seen: time_of(*first),
                        last_seen: time_of(*last),
                    })
                    .collect(),
                omitted_rules: l.omitted,
            })
            .collect();
        let api: Api<NodeProfileStatus> = Api::all(self.client.clone());
        let patch = json!({
            "apiVersion": format!("palisade.dev/{NODE_STATUS_VERSION}"),
            "kind": "NodeProfileStatus",
            "metadata": {"name": self.cfg.node},
            "status": {"learned": learned},
        });
        api.patch_status(
            &self.cfg.node,
            &PatchParams::apply(&format!("palisade-agent/{}/learn", self.cfg.node)).force(),
            &Patch::Apply(patch),
        )
        .await?;
        Ok(())
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn time_of(secs: f64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond((secs * 1000.0).round() as i64).unwrap_or_default())
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
        let systemd = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8f4f3e_6a1b_4c2d_9e8f_0123456789ab.slice/cri-containerd-4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef.scope\n";
        assert_eq!(
            pod_of_cgroup(systemd),
            Some((
                "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab".into(),
                Some("4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef".into())
            ))
        );
        let cgroupfs = "0::/kubepods/burstable/pod0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab/4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef\n";
        assert_eq!(
            pod_of_cgroup(cgroupfs).unwrap().0,
            "0d8f4f3e-6a1b-4c2d-9e8f-0123456789ab"
        );
        assert_eq!(pod_of_cgroup("0::/system.slice/containerd.service\n"), None);
    }
}
