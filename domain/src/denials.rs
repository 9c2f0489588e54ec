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

use crate::kind::ProfileKind;
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
                SECCOMP_RET_KILL_PROCESS => ("kill_process", format!("signal {}", r.field("sig").unwrap_or("?"))),
                SECCOMP_RET_KILL_THREAD => ("kill_thread", format!("signal {}", r.field("sig").unwrap_or("?"))),
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

/// What an Event is about: one pod's container refused one thing by one profile, or one
/// profile on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Pod {
        pod: PodRef,
        container: String,
        kind: ProfileKind,
        profile: String,
        operation: String,
        target: String,
    },
    Profile {
        kind: ProfileKind,
        profile: String,
    },
}

impl Subject {
    /// The Event's reason.
    pub fn reason(&self) -> &'static str {
        let kind = match self {
            Subject::Pod { kind, .. } | Subject::Profile { kind, .. } => kind,
        };
        match kind {
            ProfileKind::AppArmorProfile => REASON_APPARMOR,
            ProfileKind::SeccompProfile => REASON_SECCOMP,
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

/// Every series of one node and its write budget (a token bucket).
#[derive(Debug)]
pub struct Aggregator {
    series: BTreeMap<Subject, Series>,
    tokens: f64,
    refilled: f64,
    /// Denials of a new series that found the table full.
    pub overflowed: u64,
}

impl Aggregator {
    pub fn new(now: f64) -> Self {
        Self {
            series: BTreeMap::new(),
            tokens: WRITE_BURST,
            refilled: now,
            overflowed: 0,
        }
    }

    /// Counts one denial at `time`: in its pod's series (when known and the table has room)
    /// and in its profile's.
    pub fn record(&mut self, pod: Option<Subject>, kind: ProfileKind, profile: &str, detail: &str, time: f64) {
        let pod_uid = match &pod {
            Some(Subject::Pod { pod, .. }) => Some(pod.uid.clone()),
            _ => None,
        };
        if let Some(subject) = pod {
            self.count(subject, detail, time, None);
        }
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
        self.count(subject, detail, time, pod_uid);
    }

    fn count(&mut self, subject: Subject, detail: &str, time: f64, pod: Option<String>) {
        let full = self.series.len() >= MAX_SERIES;
        let s = match self.series.get_mut(&subject) {
            Some(s) => s,
            None if full => {
                self.overflowed += 1;
                return;
            }
            None => self.series.entry(subject).or_insert(Series {
                count: 0,
                first: time,
                last: time,
                written: None,
                written_at: 0.0,
                detail: String::new(),
                pods: BTreeSet::new(),
            }),
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
        new.sort_by(|a, b| a.1.total_cmp(&b.1));
        repeat.sort_by(|a, b| a.1.total_cmp(&b.1));
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
        self.series
            .retain(|_, s| !(now - s.last > SERIES_IDLE_SECS && s.written == Some(s.count)));
        out
    }

    /// A write that failed: its series is due again.
    pub fn failed(&mut self, w: &Write) {
        if let Some(s) = self.series.get_mut(&w.subject) {
            s.written = if w.first { None } else { Some(0) };
            s.written_at = 0.0;
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// The message of a series' Event.
pub fn message(subject: &Subject, s: &Series, node: &str) -> String {
    match subject {
        Subject::Pod {
            container,
            kind,
            profile,
            operation,
            target,
            ..
        } => {
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
            format!(
                "container {container}: {} {profile} denied {operation} {target}{detail}, {times}",
                kind.name()
            )
        }
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
    }
}

#[cfg(test)]
mod tests;
