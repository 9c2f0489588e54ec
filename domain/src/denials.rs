//! Denials: what the kernel refused a container confined by a Palisade profile, read from
//! the same audit records learning reads, and the bounded series of Events they become.
//! Pure: the agent reads the records, attributes them to pods and writes the Events; the
//! CLI reads the Events back.
//!
//! An AppArmor denial is a record with `apparmor="DENIED"` (a profile in Enforce mode; a
//! profile in Complain mode allows and logs `ALLOWED`, which learning reads). A seccomp
//! denial is a `SECCOMP` record whose action is not `SCMP_ACT_LOG` nor `SCMP_ACT_ALLOW`:
//! the kernel writes one for a kill whenever `kernel.seccomp.actions_logged` has it
//! (the default), and for errno, trap, trace and user-notify only when the filter was
//! loaded with `SECCOMP_FILTER_FLAG_LOG` (a profile's `flags`).

use std::collections::{BTreeMap, BTreeSet};

use crate::common::ProfileKind;
use crate::learn::{Record, RecordKind, apparmor_root};

/// Event reason of an AppArmor denial.
pub const REASON_APPARMOR: &str = "AppArmorDenied";
/// Event reason of a seccomp denial.
pub const REASON_SECCOMP: &str = "SeccompDenied";
/// The Events' `reportingComponent` (and `source.component`).
pub const REPORTER: &str = "palisade-agent";
/// Annotations of a denial Event: what the CLI reads back without parsing the message.
pub const ANNOTATION_KIND: &str = "palisade.dev/kind";
pub const ANNOTATION_PROFILE: &str = "palisade.dev/profile";
pub const ANNOTATION_CONTAINER: &str = "palisade.dev/container";
pub const ANNOTATION_OPERATION: &str = "palisade.dev/operation";
pub const ANNOTATION_TARGET: &str = "palisade.dev/target";

/// Longest target (a path, a peer) an Event carries, in characters.
pub const MAX_TARGET_CHARS: usize = 256;

/// Most series one node keeps at once; a denial of a new series beyond it is counted in
/// the metrics and in its profile's series, and gets no pod Event of its own.
pub const MAX_SERIES: usize = 512;
/// Least seconds between two writes of one series' Event.
pub const REPEAT_GAP_SECS: f64 = 60.0;
/// A series with no new denial for this long is forgotten (its Event stays, with its count).
pub const SERIES_IDLE_SECS: f64 = 600.0;
/// The window of a profile's Event ("denied N times in M pods in the last 10 minutes").
pub const PROFILE_WINDOW_SECS: f64 = 600.0;
/// Event writes one node may make: a burst of this many ...
pub const WRITE_BURST: f64 = 20.0;
/// ... then this many per second (30 a minute).
pub const WRITES_PER_SEC: f64 = 0.5;

/// What a record says was refused; the profile of a seccomp denial is the container's,
/// which the record does not name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub kind: ProfileKind,
    /// The AppArmor profile (root of a hat or child) the record names; `None` for seccomp.
    pub profile: Option<String>,
    /// AppArmor's `operation` (`open`, `capable`, `connect`, ...); for seccomp the action
    /// (`kill_process`, `errno`, ...).
    pub operation: String,
    /// A path, capability, peer, address family or syscall: what was refused.
    pub target: String,
    /// AppArmor's denied mask; seccomp's errno or signal.
    pub detail: String,
}

/// The refusal a record reports, or `None` for a record that refuses nothing (AppArmor
/// `ALLOWED`, `AUDIT`, status records; a seccomp log or allow).
pub fn refusal_of(r: &Record) -> Option<Refusal> {
    match r.kind {
        RecordKind::AppArmor => {
            if r.field("apparmor") != Some("DENIED") {
                return None;
            }
            let target = ["name", "capname", "peer_addr", "addr", "peer", "target"]
                .iter()
                .find_map(|k| r.field(k))
                .map(str::to_string)
                .or_else(|| {
                    let family = r.field("family")?;
                    Some(match r.field("sock_type") {
                        Some(t) => format!("{family} {t}"),
                        None => family.to_string(),
                    })
                })
                .unwrap_or_default();
            Some(Refusal {
                kind: ProfileKind::AppArmorProfile,
                profile: Some(apparmor_root(r)?.to_string()),
                operation: clip(r.field("operation").unwrap_or("unknown"), 64),
                target: clip(&target, MAX_TARGET_CHARS),
                detail: clip(r.field("denied_mask").unwrap_or_default(), 64),
            })
        }
        RecordKind::Seccomp => {
            let code = r.field("code")?;
            let code = u32::from_str_radix(code.trim_start_matches("0x"), 16).ok()?;
            let (operation, detail) = match code & 0xffff_0000 {
                crate::learn::record_rules::SECCOMP_RET_LOG | SECCOMP_RET_ALLOW => return None,
                SECCOMP_RET_KILL_PROCESS => (
                    "kill_process",
                    format!("signal {}", clip(r.field("sig").unwrap_or("?"), 8)),
                ),
                SECCOMP_RET_KILL_THREAD => (
                    "kill_thread",
                    format!("signal {}", clip(r.field("sig").unwrap_or("?"), 8)),
                ),
                SECCOMP_RET_TRAP => ("trap", "SIGSYS".to_string()),
                // The record holds the action only, not the errno the filter returned.
                SECCOMP_RET_ERRNO => ("errno", String::new()),
                SECCOMP_RET_TRACE => ("trace", String::new()),
                SECCOMP_RET_USER_NOTIF => ("user_notif", String::new()),
                _ => ("unknown", format!("code {code:#x}")),
            };
            let target = crate::learn::record_rules::syscall_name(r)
                .unwrap_or_else(|_| format!("syscall {}", r.field("syscall").unwrap_or("?")));
            Some(Refusal {
                kind: ProfileKind::SeccompProfile,
                profile: None,
                operation: operation.to_string(),
                target: clip(&target, MAX_TARGET_CHARS),
                detail,
            })
        }
    }
}

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_KILL_THREAD: u32 = 0x0000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// At most `max` characters, control characters escaped (a path is the workload's to choose).
fn clip(s: &str, max: usize) -> String {
    let printable = crate::learn::printable(s);
    if printable.chars().count() <= max {
        printable
    } else {
        printable.chars().take(max).chain(['…']).collect()
    }
}

/// The pod a denial was attributed to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// One pod's container refused one thing by one profile.
    Pod {
        pod: PodRef,
        container: String,
        kind: ProfileKind,
        profile: String,
        operation: String,
        target: String,
    },
    /// A refusal whose process exited before the agent could read its cgroup: its pod is
    /// not known. An AppArmor record names its profile (the kernel's label: the Event goes
    /// on the profile); a seccomp record does not name the filter that refused (a process
    /// may set its own), so its Event goes on the node, with no profile.
    Unattributed {
        kind: ProfileKind,
        profile: Option<String>,
        operation: String,
        target: String,
    },
    /// One profile's denials on this node over the last ten minutes.
    Profile { kind: ProfileKind, profile: String },
}

impl Subject {
    pub fn kind(&self) -> ProfileKind {
        match self {
            Subject::Pod { kind, .. } | Subject::Unattributed { kind, .. } | Subject::Profile { kind, .. } => *kind,
        }
    }

    /// The Event's reason.
    pub fn reason(&self) -> &'static str {
        match self.kind() {
            ProfileKind::AppArmorProfile => REASON_APPARMOR,
            ProfileKind::SeccompProfile => REASON_SECCOMP,
        }
    }

    fn pod_uid(&self) -> Option<&str> {
        match self {
            Subject::Pod { pod, .. } => Some(&pod.uid),
            _ => None,
        }
    }
}

/// One series: how often its subject was denied, and what its Event says so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub count: u64,
    pub first: f64,
    pub last: f64,
    /// The count the Event holds; `None` before the first write.
    pub written: Option<u64>,
    pub written_at: f64,
    /// The detail of the latest denial (denied mask, errno, signal).
    pub detail: String,
    /// Profile series: the pods denied in the window (UIDs, bounded).
    pub pods: BTreeSet<String>,
}

/// A write to make: the series' Event, created (`first`) or brought up to date.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub subject: Subject,
    pub series: Series,
    pub first: bool,
}

/// Most series of one pod: a pod denied on ever new paths holds at most this many, so it
/// cannot take the table from the others.
pub const MAX_SERIES_PER_POD: usize = 32;
/// Most profile series (one per profile denied on this node), held apart from the table.
pub const MAX_PROFILE_SERIES: usize = 256;

/// Every series of one node and its write budget (a token bucket).
#[derive(Debug)]
pub struct Aggregator {
    series: BTreeMap<Subject, Series>,
    tokens: f64,
    refilled: f64,
    /// Denials of a new series that found the table, or their pod's share, full.
    pub overflowed: u64,
    /// How many series are held: profile series, the others, and the others per pod.
    profiles: usize,
    own: usize,
    per_pod: std::collections::HashMap<String, usize>,
}

impl Aggregator {
    pub fn new(now: f64) -> Self {
        Self {
            series: BTreeMap::new(),
            tokens: WRITE_BURST,
            refilled: now,
            overflowed: 0,
            profiles: 0,
            own: 0,
            per_pod: Default::default(),
        }
    }

    /// Counts one denial at `time`: in its own series (a pod's, or an unattributed one),
    /// when the table and its pod's share have room, and in its profile's series when the
    /// profile is known.
    pub fn record(&mut self, subject: Subject, profile: Option<&str>, detail: &str, time: f64) {
        let kind = subject.kind();
        let pod_uid = subject.pod_uid().map(str::to_string);
        let pods = pod_uid
            .as_ref()
            .map_or(0, |u| self.per_pod.get(u).copied().unwrap_or(0));
        let room = self.own < MAX_SERIES && pods < MAX_SERIES_PER_POD;
        self.count(subject, detail, time, None, room);
        let Some(profile) = profile else { return };
        let subject = Subject::Profile {
            kind,
            profile: profile.to_string(),
        };
        if let Some(s) = self.series.get_mut(&subject)
            && time - s.first > PROFILE_WINDOW_SECS
        {
            // A new window: the Event says what the last ten minutes saw.
            (s.count, s.first) = (0, time);
            s.written = s.written.map(|_| 0);
            s.pods.clear();
        }
        let room = self.profiles < MAX_PROFILE_SERIES;
        self.count(subject, detail, time, pod_uid, room);
    }

    fn count(&mut self, subject: Subject, detail: &str, time: f64, pod: Option<String>, room: bool) {
        let s = match self.series.get_mut(&subject) {
            Some(s) => s,
            None if !room => {
                self.overflowed += 1;
                return;
            }
            None => {
                self.held(&subject, true);
                self.series.entry(subject).or_insert(Series {
                    count: 0,
                    first: time,
                    last: time,
                    written: None,
                    written_at: 0.0,
                    detail: String::new(),
                    pods: BTreeSet::new(),
                })
            }
        };
        s.count += 1;
        s.last = s.last.max(time);
        s.detail = detail.to_string();
        if let Some(uid) = pod
            && s.pods.len() < 100
        {
            s.pods.insert(uid);
        }
    }

    /// The writes to make at `now`, within the budget: series never written first (oldest
    /// first), then series with new denials whose Event is older than [`REPEAT_GAP_SECS`].
    /// Each is taken as written; forgets series idle for [`SERIES_IDLE_SECS`].
    pub fn due(&mut self, now: f64) -> Vec<Write> {
        self.tokens = (self.tokens + (now - self.refilled).max(0.0) * WRITES_PER_SEC).min(WRITE_BURST);
        self.refilled = now;
        let mut new: Vec<(&Subject, f64)> = Vec::new();
        let mut repeat: Vec<(&Subject, f64)> = Vec::new();
        for (subject, s) in &self.series {
            match s.written {
                None => new.push((subject, s.first)),
                Some(n) if n < s.count && now - s.written_at >= REPEAT_GAP_SECS => repeat.push((subject, s.written_at)),
                Some(_) => {}
            }
        }
        fair(&mut new);
        fair(&mut repeat);
        let take = (self.tokens.floor() as usize).min(new.len() + repeat.len());
        let chosen: Vec<(Subject, bool)> = new
            .into_iter()
            .map(|(s, _)| (s.clone(), true))
            .chain(repeat.into_iter().map(|(s, _)| (s.clone(), false)))
            .take(take)
            .collect();
        self.tokens -= chosen.len() as f64;
        let mut out = Vec::with_capacity(chosen.len());
        for (subject, first) in chosen {
            let s = self.series.get_mut(&subject).expect("chosen from the table");
            s.written = Some(s.count);
            s.written_at = now;
            out.push(Write {
                series: s.clone(),
                subject,
                first,
            });
        }
        let idle: Vec<Subject> = self
            .series
            .iter()
            .filter(|(_, s)| now - s.last > SERIES_IDLE_SECS && s.written == Some(s.count))
            .map(|(k, _)| k.clone())
            .collect();
        for subject in idle {
            self.series.remove(&subject);
            self.held(&subject, false);
        }
        out
    }

    /// Counts a series taken into (`true`) or dropped from the table.
    fn held(&mut self, subject: &Subject, taken: bool) {
        let step = |n: &mut usize| *n = if taken { *n + 1 } else { n.saturating_sub(1) };
        match subject {
            Subject::Profile { .. } => step(&mut self.profiles),
            _ => step(&mut self.own),
        }
        if let Some(uid) = subject.pod_uid() {
            let n = self.per_pod.entry(uid.to_string()).or_default();
            step(n);
            if *n == 0 {
                self.per_pod.remove(uid);
            }
        }
    }

    /// A write that failed at `now`: tried again like a repeat, a gap later (an Event that
    /// keeps failing, say in a namespace being deleted, never takes the budget from others).
    pub fn failed(&mut self, w: &Write, now: f64) {
        if let Some(s) = self.series.get_mut(&w.subject) {
            s.written = Some(0);
            s.written_at = now;
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Orders waiting series fairly: the oldest of each pod first, then each pod's second, and
/// so on (a pod with many series waits its turn behind every other pod's first).
fn fair(waiting: &mut Vec<(&Subject, f64)>) {
    waiting.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ranked: Vec<(usize, f64, &Subject)> = waiting
        .iter()
        .map(|(subject, t)| {
            let rank = subject.pod_uid().map_or(0, |uid| {
                let n = seen.entry(uid).or_default();
                *n += 1;
                *n - 1
            });
            (rank, *t, *subject)
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    *waiting = ranked.into_iter().map(|(_, t, s)| (s, t)).collect();
}

/// Longest Event message, in bytes (the API server refuses some Events over 1024).
pub const MAX_MESSAGE_BYTES: usize = 1000;

/// The message of a series' Event.
pub fn message(subject: &Subject, s: &Series, node: &str) -> String {
    let detail = if s.detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.detail)
    };
    let times = if s.count == 1 {
        "once".to_string()
    } else {
        format!("{} times", s.count)
    };
    let text = match subject {
        Subject::Pod {
            container,
            kind,
            profile,
            operation,
            target,
            ..
        } => format!(
            "container {container}: {} {profile} denied {operation} {target}{detail}, {times}",
            kind.name()
        ),
        Subject::Unattributed {
            kind: ProfileKind::AppArmorProfile,
            profile,
            operation,
            target,
        } => format!(
            "AppArmorProfile {} denied {operation} {target}{detail} on node {node}, {times}, to a process that exited before its pod could be told",
            profile.as_deref().unwrap_or("?")
        ),
        Subject::Unattributed { operation, target, .. } => format!(
            "seccomp: {operation} {target}{detail} on node {node}, {times}: the process exited before its pod could be told, and the record does not say whose filter it was (a Palisade profile's, or one the process set itself)"
        ),
        Subject::Profile { kind, profile } => {
            let pods = match s.pods.len() {
                0 => "pods not known".to_string(),
                1 => "1 pod".to_string(),
                n => format!("{n} pods"),
            };
            format!(
                "{} {profile} denied {} times in {pods} on node {node} in the last {} minutes",
                kind.name(),
                s.count,
                ((s.last - s.first) / 60.0).ceil().max(1.0) as u64
            )
        }
    };
    cut_bytes(text, MAX_MESSAGE_BYTES)
}

/// At most `max` bytes, cut at a character boundary.
fn cut_bytes(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A stable name for a series' Event: `<object>.palisade-<16 hex digits of SHA-256 of the
/// subject and the node>`, the object's name cut so the whole stays a valid name.
pub fn event_name(object: &str, subject: &Subject, node: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{subject:?}\n{node}").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut end = object.len().min(200);
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    let object = object[..end].trim_end_matches(['.', '-']);
    format!("{object}.palisade-{hex}")
}

#[cfg(test)]
mod tests;
