//! Learning (`--learn`): the node's audit records of profiles in Complain mode (AppArmor)
//! and of seccomp filters that log (`SCMP_ACT_LOG`), turned into rules and reported in the
//! node's NodeProfileStatus as `status.learned`, under a field manager of its own.
//!
//! Records come from [`crate::audit`]. AppArmor records name their profile. A seccomp record
//! names a process, whose pod and container the reader finds; the record counts for the
//! container's learning seccomp profile.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_domain::learn::{self, LearnedProfile, LearnedRule, Record, RecordKind};
use palisade_domain::parsed;
use palisade_domain::{AppArmorProfile, NODE_STATUS_VERSION, NodeProfileStatus, ProfileKind, SeccompProfile};
use palisade_runtime::backoff::{self, Retryable as _};
use serde_json::json;

use crate::attribution::{NodePods, Process, now_secs, time_of};

pub struct Config {
    pub node: String,
    /// Least time between two writes of `status.learned`.
    pub write_gap: Duration,
}

/// The rule a record asks for (AppArmor: scoped to its hat or child), or none.
pub fn rule_of(r: &Record) -> Option<String> {
    match r.kind {
        RecordKind::AppArmor => learn::apparmor_scoped_rule(r).ok(),
        RecordKind::Seccomp => learn::seccomp_syscall(r).ok(),
    }
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

pub struct Learner {
    cfg: Config,
    client: Client,
    apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    seccomp: Store<DeserializeGuard<SeccompProfile>>,
    profiles: BTreeMap<(ProfileKind, String), Learning>,
    dirty: bool,
    last_write: Option<std::time::Instant>,
    /// seccomp records no learning profile could be found for (logged now and then).
    unattributed: u64,
    last_note: std::time::Instant,
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
            dirty: false,
            last_write: None,
            unattributed: 0,
            last_note: std::time::Instant::now(),
        }
    }

    /// Starts from what this node reported before (a restarted agent keeps its counts;
    /// records older than now were counted then, or are of no use now). Retries until the
    /// API server answers: starting empty would overwrite the report with nothing.
    pub async fn resume(&mut self) {
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

    /// Whether any profile is learning (records are read only then, or for denials).
    pub fn active(&self) -> bool {
        !self.profiles.is_empty()
    }

    /// Writes what was learned when it changed, at most every `write_gap`; notes now and
    /// then the seccomp records it could not attribute.
    pub async fn flush(&mut self) {
        if self.unattributed > 0 && self.last_note.elapsed() >= Duration::from_secs(30) {
            tracing::info!(
                records = self.unattributed,
                "seccomp records of processes not in a pod with a learning profile (or exited where several learn)"
            );
            self.unattributed = 0;
            self.last_note = std::time::Instant::now();
        }
        if !self.dirty || self.last_write.is_some_and(|t| t.elapsed() < self.cfg.write_gap) {
            return;
        }
        match self.write().await {
            Ok(()) => {
                self.dirty = false;
                self.last_write = Some(std::time::Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "writing what was learned failed; will retry"),
        }
    }

    /// Follows which profiles are learning; a new accepted content starts afresh.
    pub fn track_profiles(&mut self) {
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

    pub async fn handle(&mut self, r: &Record, pods: &mut NodePods) {
        let (key, rule) = match r.kind {
            // runc's own records before it execs the container's program are not the
            // workload's (the profile applies from that exec on).
            RecordKind::AppArmor if learn::by_runtime(r) => return,
            RecordKind::AppArmor => {
                let Some(root) = learn::apparmor_root(r) else { return };
                let key = (ProfileKind::AppArmorProfile, root.to_string());
                if !self.profiles.contains_key(&key) || !pods.used(key.0, &key.1).await {
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
                let Some(profile) = self.seccomp_profile_of(r, pods).await else {
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

    /// The learning seccomp profile of a record's process: its container's while it runs;
    /// once it has exited (a short-lived child), only when a single learning seccomp
    /// profile is in use by this node's pods that have not finished.
    async fn seccomp_profile_of(&self, r: &Record, pods: &mut NodePods) -> Option<String> {
        let learning = |n: &String| self.profiles.contains_key(&(ProfileKind::SeccompProfile, n.clone()));
        let name = match pods.of_record(r).await {
            Process::Gone => {
                let in_use: std::collections::BTreeSet<String> =
                    pods.all().filter_map(|p| p.seccomp.clone()).filter(learning).collect();
                return if in_use.len() == 1 {
                    in_use.into_iter().next()
                } else {
                    None
                };
            }
            Process::Elsewhere => return None,
            // A container not reported yet (runc's records come before the kubelet's
            // report): the pod's profile, when all its containers have the same.
            Process::In(pod, container) => match container {
                Some(c) => c.seccomp.clone(),
                None => pod.seccomp.clone(),
            }?,
        };
        learning(&name).then_some(name)
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
