//! One whole-node sync: from the profiles the agent watches and its Node's labels, work out
//! what this node should hold, make it so, and say where each profile stands.
//!
//! Level-triggered: every sync looks at everything, so a missed event, a restart or a crash
//! mid-batch is repaired by the next one. Cheap when nothing changed: content is compared
//! by digest in memory; files and the kernel list are re-read only on drift checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use palisade_crds::render::{apparmor as aa_render, seccomp as sc_render};
use palisade_crds::selector::selects;
use palisade_crds::{
    AcceptedContent, AppArmorProfile, NodeProfile, NodeProfileState, ProfileKind, ProfileState, SeccompProfile,
    accepted_content,
};

use crate::apparmor::{AppArmor, Record};
use crate::files;
use crate::metrics::{KindLabels, Metrics, StateLabels};

/// A profile that failed on this node, for an Event on the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ProfileKind,
    pub name: String,
    pub uid: String,
    pub message: String,
}

pub struct NodeState {
    pub apparmor: AppArmor,
    /// `Ok(parser version)` or why AppArmor cannot be used here.
    pub apparmor_support: Result<String, String>,
    pub seccomp_dir: PathBuf,
    /// `Ok` or why seccomp profiles cannot be written here.
    pub seccomp_support: Result<(), String>,
    /// Seccomp files Palisade wrote: name → content digest.
    seccomp_installed: BTreeMap<String, String>,
    /// Names recorded as Palisade's in the seccomp directory ([`files::OWNED_RECORD`]),
    /// recorded before a file is first written and dropped after it is removed.
    seccomp_owned: BTreeSet<String>,
    /// AppArmor profiles Palisade loaded: name → record.
    apparmor_installed: BTreeMap<String, Record>,
    /// AppArmor contents that failed for good (refused, over budget): name → (digest, why).
    apparmor_final: HashMap<String, (String, String)>,
    /// AppArmor contents whose load failed for another reason (the parser hung, was killed,
    /// or refused the host's includes): tried again after a backoff, not at every sync.
    apparmor_retry: HashMap<String, Retry>,
    /// Failures already announced, so Events fire on transitions only.
    announced: HashMap<(ProfileKind, String), String>,
    pub metrics: Metrics,
}

impl NodeState {
    /// Takes stock of what Palisade already holds on this node (files in its seccomp
    /// directory, AppArmor ownership records) and removes crash leftovers.
    pub fn new(
        apparmor: AppArmor,
        apparmor_support: Result<String, String>,
        seccomp_dir: PathBuf,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let seccomp_support = std::fs::create_dir_all(&seccomp_dir)
            .map_err(|e| format!("cannot create {}: {e}", seccomp_dir.display()))
            .and_then(|_| seccomp_available());
        let mut seccomp_installed = BTreeMap::new();
        let mut seccomp_owned = BTreeSet::new();
        if seccomp_support.is_ok() {
            let removed = files::clean_temp_files(&seccomp_dir)?;
            if removed > 0 {
                tracing::info!(removed, "removed temporary files a crash left in the seccomp directory");
            }
            seccomp_owned = match files::read_owned(&seccomp_dir)? {
                Some(owned) => owned,
                None => {
                    // No record: nothing here is known to be Palisade's. A file is adopted
                    // later only if its content is exactly what Palisade would write for an
                    // accepted profile; no other file is ever replaced or deleted.
                    let none = BTreeSet::new();
                    files::write_owned(&seccomp_dir, &none)?;
                    none
                }
            };
            for name in &seccomp_owned {
                if let Some(d) = files::file_digest(&files::seccomp_path(&seccomp_dir, name))? {
                    seccomp_installed.insert(name.clone(), d);
                }
            }
        }
        let apparmor_installed = if apparmor_support.is_ok() {
            apparmor.records()?
        } else {
            BTreeMap::new()
        };
        Ok(Self {
            apparmor,
            apparmor_support,
            seccomp_dir,
            seccomp_support,
            seccomp_installed,
            seccomp_owned,
            apparmor_installed,
            apparmor_final: HashMap::new(),
            apparmor_retry: HashMap::new(),
            announced: HashMap::new(),
            metrics,
        })
    }

    /// Brings the node in line with the profiles. `drift` also re-reads files and the
    /// kernel's list to find what changed behind the agent's back. Returns every profile's
    /// entry for the NodeProfileStatus (sorted) and the new failures.
    pub async fn sync(
        &mut self,
        seccomp: &[Arc<SeccompProfile>],
        apparmor: &[Arc<AppArmorProfile>],
        node_labels: &BTreeMap<String, String>,
        drift: bool,
    ) -> (Vec<NodeProfile>, Vec<Failure>) {
        let start = Instant::now();
        let mut entries = Vec::new();
        self.sync_seccomp(seccomp, node_labels, drift, &mut entries);
        self.sync_apparmor(apparmor, node_labels, drift, &mut entries).await;
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        let failures = self.new_failures(&entries);
        self.count_states(&entries);
        self.metrics.sync_seconds.observe(start.elapsed().as_secs_f64());
        (entries, failures)
    }

    fn sync_seccomp(
        &mut self,
        profiles: &[Arc<SeccompProfile>],
        labels: &BTreeMap<String, String>,
        drift: bool,
        entries: &mut Vec<NodeProfile>,
    ) {
        let specs: HashMap<&str, &palisade_crds::SeccompProfileSpec> = profiles
            .iter()
            .filter_map(|p| Some((p.metadata.name.as_deref()?, &p.spec)))
            .collect();
        // Files written for the first time: their names are recorded (one write for the
        // batch) before any of them is written, so a crash never leaves an unrecorded
        // Palisade file, and only accepted content ever claims a name.
        let mut first_writes: Vec<(NodeProfile, std::path::PathBuf, Vec<u8>)> = Vec::new();
        let mut wanted = BTreeSet::new();
        for p in profiles {
            let Some(target) = Target::of(
                ProfileKind::SeccompProfile,
                &p.metadata,
                p.spec.state,
                p.spec.node_selector.as_ref(),
                labels,
            ) else {
                continue;
            };
            let (name, generation) = (target.name, p.metadata.generation);
            wanted.insert(name.to_string());
            let entry = |state, digest: &str, message: String| target.entry(state, digest, message);
            if let Err(reason) = &self.seccomp_support {
                entries.push(entry(NodeProfileState::Unsupported, "", reason.clone()));
                continue;
            }
            let recorded = self.seccomp_installed.get(name).map(String::as_str);
            let rendered = sc_render::render(name, &p.spec, |n| specs.get(n).copied());
            let accepted = accepted_content(p.status.as_ref());
            let rendered = match gate(
                accepted,
                rendered.as_ref().map(|r| r.digest.as_str()).map_err(|e| e.to_string()),
                generation,
            ) {
                // Not accepted (yet): what is installed stays until accepted content replaces it.
                // A profile never accepted, with nothing here, is nothing the operator counts.
                Err(why) => {
                    if accepted.is_some() || recorded.is_some() {
                        entries.push(entry(NodeProfileState::Pending, recorded.unwrap_or_default(), why));
                    }
                    continue;
                }
                Ok(()) => rendered.expect("the gate passes only a rendering"),
            };
            let (bytes, want) = (rendered.bytes, rendered.digest);
            let path = files::seccomp_path(&self.seccomp_dir, name);
            if !self.seccomp_owned.contains(name) {
                // A file identical to what Palisade writes (its own, from before the record
                // was lost) is adopted; any other is another tool's.
                let identical = files::file_digest(&path).ok().flatten().as_deref() == Some(want.as_str());
                if path.exists() && !identical {
                    let message = format!(
                        "{} is another tool's file (not in {}): Palisade does not replace it; remove it or the profile that wrote it (e.g. SPO's) and Palisade installs this one",
                        path.display(),
                        files::OWNED_RECORD
                    );
                    entries.push(entry(NodeProfileState::Error, &want, message));
                } else {
                    first_writes.push((entry(NodeProfileState::Installed, &want, String::new()), path, bytes));
                }
                continue;
            }
            let on_disk = if drift {
                files::file_digest(&path).ok().flatten()
            } else {
                recorded.map(str::to_string)
            };
            if recorded == Some(want.as_str()) && on_disk.as_deref() == Some(want.as_str()) {
                entries.push(entry(NodeProfileState::Installed, &want, String::new()));
                continue;
            }
            let repair = recorded == Some(want.as_str());
            match files::write_atomic(&path, &bytes, 0o644) {
                Ok(()) => {
                    self.seccomp_installed.insert(name.to_string(), want.clone());
                    self.metrics
                        .op("seccomp", if repair { "repair" } else { "install" }, true);
                    if repair {
                        self.metrics
                            .drift_repairs
                            .get_or_create(&KindLabels { kind: "seccomp" })
                            .inc();
                        tracing::info!(profile = name, "repaired a seccomp file that was changed or deleted");
                    }
                    entries.push(entry(NodeProfileState::Installed, &want, String::new()));
                }
                Err(e) => {
                    self.metrics.op("seccomp", "install", false);
                    entries.push(entry(
                        NodeProfileState::Error,
                        &want,
                        format!("writing {}: {e}", path.display()),
                    ));
                }
            }
        }
        if !first_writes.is_empty() {
            let mut owned = self.seccomp_owned.clone();
            owned.extend(first_writes.iter().map(|(e, _, _)| e.name.clone()));
            let recorded = files::write_owned(&self.seccomp_dir, &owned);
            if recorded.is_ok() {
                self.seccomp_owned = owned;
            }
            for (mut entry, path, bytes) in first_writes {
                let written = match &recorded {
                    Ok(()) => files::write_atomic(&path, &bytes, 0o644)
                        .map_err(|e| format!("writing {}: {e}", path.display())),
                    Err(e) => Err(format!("recording {} in {}: {e}", entry.name, files::OWNED_RECORD)),
                };
                self.metrics.op("seccomp", "install", written.is_ok());
                match written {
                    Ok(()) => {
                        self.seccomp_installed.insert(entry.name.clone(), entry.digest.clone());
                    }
                    Err(message) => {
                        entry.state = NodeProfileState::Error;
                        entry.message = message;
                    }
                }
                entries.push(entry);
            }
        }
        let stale: Vec<String> = self
            .seccomp_installed
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in stale {
            let path = files::seccomp_path(&self.seccomp_dir, &name);
            let ok = files::remove_durable(&path).is_ok();
            self.metrics.op("seccomp", "remove", ok);
            if ok {
                self.seccomp_installed.remove(&name);
                tracing::info!(profile = name, "removed seccomp profile");
            }
        }
        // Names recorded but no longer wanted and without a file leave the record (after
        // their file is gone, so a crash never orphans a Palisade file).
        let released: Vec<String> = self
            .seccomp_owned
            .iter()
            .filter(|n| !wanted.contains(*n) && !self.seccomp_installed.contains_key(*n))
            .cloned()
            .collect();
        if !released.is_empty() && self.seccomp_support.is_ok() {
            let mut owned = self.seccomp_owned.clone();
            for name in &released {
                owned.remove(name);
            }
            if files::write_owned(&self.seccomp_dir, &owned).is_ok() {
                self.seccomp_owned = owned;
            }
        }
    }

    async fn sync_apparmor(
        &mut self,
        profiles: &[Arc<AppArmorProfile>],
        labels: &BTreeMap<String, String>,
        drift: bool,
        entries: &mut Vec<NodeProfile>,
    ) {
        let mut wanted = BTreeSet::new();
        let mut jobs = Vec::new();
        let loaded = if self.apparmor_support.is_ok() {
            self.apparmor.loaded().ok()
        } else {
            None
        };
        for p in profiles {
            let Some(target) = Target::of(
                ProfileKind::AppArmorProfile,
                &p.metadata,
                p.spec.state,
                p.spec.node_selector.as_ref(),
                labels,
            ) else {
                continue;
            };
            let (name, generation, uid) = (target.name, p.metadata.generation, target.uid.clone());
            wanted.insert(name.to_string());
            let entry = |state, digest: &str, message: String| target.entry(state, digest, message);
            if let Err(reason) = &self.apparmor_support {
                entries.push(entry(NodeProfileState::Unsupported, "", reason.clone()));
                continue;
            }
            let record = self.apparmor_installed.get(name);
            let rendered = aa_render::render(name, &p.spec);
            let accepted = accepted_content(p.status.as_ref());
            let rendered = match gate(
                accepted,
                rendered.as_ref().map(|r| r.digest.as_str()).map_err(|e| e.to_string()),
                generation,
            ) {
                Err(why) => {
                    let installed = record.filter(|r| !r.loading).map(|r| r.digest.as_str());
                    if accepted.is_some() || installed.is_some() {
                        entries.push(entry(NodeProfileState::Pending, installed.unwrap_or_default(), why));
                    }
                    continue;
                }
                Ok(()) => rendered.expect("the gate passes only a rendering"),
            };
            let (text, want) = (rendered.text, rendered.digest);
            if let Err(e) = self.apparmor.check_name(name) {
                entries.push(entry(NodeProfileState::Error, &want, e.to_string()));
                continue;
            }
            // A content that failed for good (refused, over its budget) is not compiled again
            // until it changes: one hostile profile costs its budget once, not every sync.
            if let Some((digest, message)) = self.apparmor_final.get(name)
                && *digest == want
            {
                entries.push(entry(NodeProfileState::Error, &want, message.clone()));
                continue;
            }
            if let Some(retry) = self.apparmor_retry.get(name)
                && retry.digest == want
                && Instant::now() < retry.next
            {
                entries.push(entry(NodeProfileState::Error, &want, retry.message.clone()));
                continue;
            }
            let in_kernel = loaded.as_ref().and_then(|l| l.get(name));
            if record.is_none() && in_kernel.is_some() {
                entries.push(entry(
                    NodeProfileState::Error,
                    &want,
                    format!("a profile named {name} is loaded on this node but not managed by Palisade; refusing to replace it"),
                ));
                continue;
            }
            let current = record.is_some_and(|r| r.digest == want && r.mode == p.spec.mode && !r.loading);
            let verified = !drift || self.apparmor.verify(name, p.spec.mode).is_ok();
            if current && verified {
                entries.push(entry(NodeProfileState::Installed, &want, String::new()));
                continue;
            }
            jobs.push(Load {
                entry: entry(NodeProfileState::Installed, &want, String::new()),
                record: Record {
                    managed_by: "palisade".into(),
                    name: name.to_string(),
                    uid: uid.clone(),
                    generation: generation.unwrap_or_default(),
                    digest: want.clone(),
                    mode: p.spec.mode,
                    loading: false,
                },
                text,
                repair: current,
            });
        }
        // Loads run side by side (as many as the parser runner allows at once): a profile
        // that takes its whole budget holds up no other profile's load.
        let apparmor = &self.apparmor;
        let done: Vec<(Load, Result<std::time::Duration, crate::apparmor::LoadError>)> =
            futures::stream::iter(jobs.into_iter().map(|job| async move {
                let result = apparmor.load(&job.record, &job.text).await;
                (job, result)
            }))
            .buffer_unordered(palisade_runtime::budget::RUNS_AT_ONCE)
            .collect()
            .await;
        for (job, result) in done {
            let Load {
                mut entry,
                record,
                repair,
                ..
            } = job;
            let name = record.name.clone();
            match result {
                Ok(took) => {
                    self.metrics.parser_seconds.observe(took.as_secs_f64());
                    self.metrics
                        .op("apparmor", if repair { "repair" } else { "install" }, true);
                    if repair {
                        self.metrics
                            .drift_repairs
                            .get_or_create(&KindLabels { kind: "apparmor" })
                            .inc();
                        tracing::info!(profile = name, "reloaded an AppArmor profile that was unloaded");
                    }
                    self.apparmor_retry.remove(&name);
                    self.apparmor_installed.insert(name, record);
                }
                Err(error) => {
                    self.metrics.op("apparmor", "install", false);
                    let message = error.to_string();
                    if error.is_final() {
                        self.apparmor_final
                            .insert(name.clone(), (record.digest.clone(), message.clone()));
                    } else {
                        let delay = self
                            .apparmor_retry
                            .get(&name)
                            .filter(|r| r.digest == record.digest)
                            .map_or(RETRY_FIRST, |r| (r.delay * 2).min(RETRY_MAX));
                        self.apparmor_retry.insert(
                            name.clone(),
                            Retry {
                                digest: record.digest.clone(),
                                next: Instant::now() + delay,
                                delay,
                                message: message.clone(),
                            },
                        );
                    }
                    // The record now says a load is unfinished: the next sync loads again.
                    match self.apparmor.read_record(&name) {
                        Some(r) => self.apparmor_installed.insert(name, r),
                        None => self.apparmor_installed.remove(&name),
                    };
                    entry.state = NodeProfileState::Error;
                    entry.message = message;
                }
            }
            entries.push(entry);
        }
        let stale: Vec<String> = self
            .apparmor_installed
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in stale {
            match self.apparmor.remove(&name).await {
                Ok(()) => {
                    self.metrics.op("apparmor", "remove", true);
                    self.apparmor_installed.remove(&name);
                    tracing::info!(profile = name, "unloaded AppArmor profile");
                }
                Err(message) => {
                    self.metrics.op("apparmor", "remove", false);
                    tracing::warn!(profile = name, %message, "unloading failed; will retry");
                }
            }
        }
    }

    fn new_failures(&mut self, entries: &[NodeProfile]) -> Vec<Failure> {
        let mut failures = Vec::new();
        let mut now = HashMap::new();
        for e in entries.iter().filter(|e| e.state == NodeProfileState::Error) {
            let key = (e.kind, e.name.clone());
            if self.announced.get(&key) != Some(&e.message) {
                failures.push(Failure {
                    kind: e.kind,
                    name: e.name.clone(),
                    uid: e.uid.clone(),
                    message: e.message.clone(),
                });
            }
            now.insert(key, e.message.clone());
        }
        self.announced = now;
        failures
    }

    fn count_states(&self, entries: &[NodeProfile]) {
        self.metrics.profiles.clear();
        for e in entries {
            let kind = match e.kind {
                ProfileKind::AppArmorProfile => "apparmor",
                ProfileKind::SeccompProfile => "seccomp",
            };
            let state = match e.state {
                NodeProfileState::Pending => "Pending",
                NodeProfileState::Installed => "Installed",
                NodeProfileState::Error => "Error",
                NodeProfileState::Unsupported => "Unsupported",
                NodeProfileState::Removing => "Removing",
            };
            self.metrics.profiles.get_or_create(&StateLabels { kind, state }).inc();
        }
    }
}

/// Whether the agent may install what it rendered: only content whose digest the operator
/// accepted. `Err` says why it waits (the entry's Pending message).
/// First wait before a failed load (not a final failure) is tried again; it doubles up to
/// [`RETRY_MAX`] while the same content keeps failing.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(10);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(600);

/// When a failed load of one content is tried again.
struct Retry {
    digest: String,
    next: Instant,
    delay: std::time::Duration,
    message: String,
}

/// One AppArmor load to run: the entry to report, the record to claim, the text.
struct Load {
    entry: NodeProfile,
    record: Record,
    text: String,
    repair: bool,
}

fn gate(
    accepted: Option<&AcceptedContent>,
    rendered: Result<&str, String>,
    generation: Option<i64>,
) -> Result<(), String> {
    let Some(accepted) = accepted else {
        return Err("waiting for the operator to accept the profile".into());
    };
    match rendered {
        Ok(digest) if digest == accepted.digest => Ok(()),
        Ok(digest) => Err(format!(
            "waiting for the operator to accept this content (generation {}, digest {}); keeping the accepted content (generation {}, digest {})",
            generation.unwrap_or_default(),
            short(digest),
            accepted.generation,
            short(&accepted.digest)
        )),
        Err(e) => Err(format!(
            "cannot render the profile here ({e}); keeping the accepted content (generation {}, digest {})",
            accepted.generation,
            short(&accepted.digest)
        )),
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// A profile this node should hold, with what its status entry needs.
struct Target<'a> {
    kind: ProfileKind,
    name: &'a str,
    uid: String,
    generation: i64,
}

impl<'a> Target<'a> {
    /// The profile as a target of this node: `None` when it is unnamed, disabled, or does not
    /// select the node (then whatever Palisade holds of it is removed).
    fn of(
        kind: ProfileKind,
        meta: &'a ObjectMeta,
        state: ProfileState,
        selector: Option<&LabelSelector>,
        labels: &BTreeMap<String, String>,
    ) -> Option<Self> {
        let name = meta.name.as_deref()?;
        (state == ProfileState::Enabled && selects(selector, labels)).then(|| Self {
            kind,
            name,
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or_default(),
        })
    }

    fn entry(&self, state: NodeProfileState, digest: &str, message: String) -> NodeProfile {
        NodeProfile {
            kind: self.kind,
            name: self.name.to_string(),
            uid: self.uid.clone(),
            generation: self.generation,
            digest: digest.to_string(),
            state,
            message,
        }
    }
}

/// Whether the kernel has seccomp (the `Seccomp:` line of /proc/self/status).
fn seccomp_available() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        Ok(())
    } else {
        Err("the kernel has no seccomp support".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accepted_content_passes_the_gate() {
        let accepted = AcceptedContent {
            generation: 3,
            digest: "aaaaaaaaaaaaaaaa".into(),
            bases: vec!["base".into()],
        };
        assert!(gate(Some(&accepted), Ok("aaaaaaaaaaaaaaaa"), Some(3)).is_ok());
        let why = gate(None, Ok("aaaaaaaaaaaaaaaa"), Some(1)).unwrap_err();
        assert_eq!(why, "waiting for the operator to accept the profile");
        // A base changed and the operator has not re-validated: wait, keep what is there.
        let why = gate(Some(&accepted), Ok("bbbbbbbbbbbbbbbbbbbb"), Some(3)).unwrap_err();
        assert_eq!(
            why,
            "waiting for the operator to accept this content (generation 3, digest bbbbbbbbbbbb); \
             keeping the accepted content (generation 3, digest aaaaaaaaaaaa)"
        );
        let why = gate(Some(&accepted), Err("spec.baseProfileName: gone".into()), Some(3)).unwrap_err();
        assert!(
            why.starts_with("cannot render the profile here (spec.baseProfileName: gone)"),
            "{why}"
        );
    }
}
