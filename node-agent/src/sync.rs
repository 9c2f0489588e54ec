//! The sync of one kind of profile: from the profiles the agent watches and its Node's
//! labels, work out what this node should hold of that kind, make it so, and say where each
//! profile stands. [`crate::run::NodeState`] runs it for both kinds.
//!
//! Level-triggered: every sync looks at everything, so a missed event, a restart or a crash
//! mid-batch is repaired by the next one. Cheap when nothing changed: content is compared
//! by digest in memory; files and the kernel list are re-read only on drift checks.
//!
//! One loop ([`sync_kind`]) does the gate (only accepted content), the foreign-name,
//! drift and removal logic for both kinds, over a [`Backend`]: the seccomp directory
//! ([`SeccompDir`]) or the kernel's AppArmor policy ([`AppArmorNode`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::core::DeserializeGuard;
use palisade_domain::parsed;
use std::path::PathBuf;

use palisade_domain::selector::selects;
use palisade_domain::{
    AcceptedContent, NodeProfile, NodeProfileState, ProfileKind, ProfileObject, ProfileState, accepted_content,
};

use palisade_runtime::budget::ParserError;
use palisade_runtime::budget::RunError;

use crate::metrics::{KindLabels, Metrics};

/// What one kind of profile needs from the node. The loop decides what is wanted and when;
/// a backend knows how its kind is held, installed and removed.
pub(crate) trait Backend {
    type Profile: ProfileObject;
    /// What the profiles of one sync are rendered against (seccomp: the other profiles, for
    /// inheritance).
    type Index<'a>
    where
        Self::Profile: 'a;
    /// The rendered content of one profile.
    type Rendered;
    /// One install to run.
    type Job;

    /// Why profiles of this kind cannot be installed here, if they cannot.
    fn unsupported(&self) -> Option<&str>;
    /// Called once a sync, before any profile is planned.
    fn begin(&mut self) {}
    fn index<'a>(profiles: &[&'a Self::Profile]) -> Self::Index<'a>;
    /// Renders a profile exactly as the operator did (its digest is what was accepted).
    fn render(&self, name: &str, profile: &Self::Profile, index: &Self::Index<'_>) -> Result<Self::Rendered, String>;
    fn digest(rendered: &Self::Rendered) -> &str;
    /// The digest of the content Palisade holds of `name` here, if it holds one.
    fn held(&self, name: &str) -> Option<&str>;
    /// What to do for a profile whose accepted content is `rendered`. `drift`: re-read the
    /// node (files, the kernel's list) rather than trust what the agent remembers.
    fn plan(
        &self,
        target: &Target<'_>,
        profile: &Self::Profile,
        rendered: Self::Rendered,
        drift: bool,
    ) -> Plan<Self::Job>;
    /// Runs the installs; `Ok(true)` for an install that repaired drift.
    async fn install(
        &mut self,
        jobs: Vec<(NodeProfile, Self::Job)>,
        metrics: &Metrics,
    ) -> Vec<(NodeProfile, Result<bool, InstallError>)>;
    /// The rule classes of the profile installed as `name` that this node's kernel does not
    /// enforce (AppArmor: the parser's word when it compiled it).
    fn not_enforced(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
    /// Names Palisade holds here.
    fn names(&self) -> Vec<String>;
    async fn remove(&mut self, name: &str) -> Result<(), InstallError>;
    /// After removals: forget what is no longer wanted nor held.
    fn release(&mut self, _wanted: &BTreeSet<String>) {}
}

/// A backend's decision for one profile.
pub(crate) enum Plan<J> {
    /// Installed and current.
    Current,
    /// Not installed, for this reason (another tool holds the name, a final failure, ...).
    Refuse(InstallError),
    Install(J),
}

/// Why a profile is not installed (or not removed) on this node: one error for both kinds,
/// whose text is what the profile's node entry and Event say.
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

/// An object that does not parse here says nothing this agent can act on: what the node
/// holds of it stays (reported Pending), as for content the operator has not accepted, so
/// making an object unreadable never removes a profile pods may run under.
fn keep_unreadable<B: Backend>(
    backend: &B,
    kind: ProfileKind,
    objects: &[Arc<DeserializeGuard<B::Profile>>],
    wanted: &mut BTreeSet<String>,
    entries: &mut Vec<NodeProfile>,
) {
    for invalid in objects.iter().filter_map(|o| o.0.as_ref().err()) {
        let meta = &invalid.metadata;
        let Some(name) = meta.name.as_deref() else { continue };
        let Some(held) = backend.held(name) else { continue };
        wanted.insert(name.to_string());
        entries.push(NodeProfile {
            kind,
            name: name.to_string(),
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or_default(),
            digest: held.to_string(),
            state: NodeProfileState::Pending,
            message: format!(
                "this agent cannot read the object ({}); keeping the installed content",
                invalid.error
            ),
            not_enforced: vec![],
        });
    }
}

/// The one loop over a kind's profiles: target, gate, plan, install, remove.
pub(crate) async fn sync_kind<B: Backend>(
    backend: &mut B,
    metrics: &Metrics,
    objects: &[Arc<DeserializeGuard<B::Profile>>],
    labels: &BTreeMap<String, String>,
    drift: bool,
    entries: &mut Vec<NodeProfile>,
) {
    let kind = <B::Profile as ProfileObject>::KIND;
    let profiles: Vec<&B::Profile> = parsed(objects).collect();
    let mut wanted = BTreeSet::new();
    let mut jobs = Vec::new();
    backend.begin();
    keep_unreadable(backend, kind, objects, &mut wanted, entries);
    let index = B::index(&profiles);
    for &p in &profiles {
        let Some(target) = Target::of(p, labels) else {
            continue;
        };
        wanted.insert(target.name.to_string());
        if let Some(reason) = backend.unsupported() {
            entries.push(target.entry(NodeProfileState::Unsupported, "", reason.to_string()));
            continue;
        }
        let held = backend.held(target.name);
        let accepted = accepted_content(p.profile_status());
        let rendered = backend.render(target.name, p, &index);
        let digest = rendered.as_ref().map(B::digest).map_err(String::clone);
        if let Err(why) = gate(accepted, digest, target.generation) {
            // Not accepted (yet): what is installed stays until accepted content replaces
            // it. A profile never accepted, with nothing here, is nothing the operator counts.
            if accepted.is_some() || held.is_some() {
                entries.push(target.entry(NodeProfileState::Pending, held.unwrap_or_default(), why));
            }
            continue;
        }
        let rendered = rendered.expect("the gate passes only a rendering");
        let want = B::digest(&rendered).to_string();
        match backend.plan(&target, p, rendered, drift) {
            Plan::Current => {
                let mut entry = target.entry(NodeProfileState::Installed, &want, String::new());
                entry.not_enforced = backend.not_enforced(target.name);
                entries.push(entry);
            }
            Plan::Refuse(e) => entries.push(target.entry(NodeProfileState::Error, &want, e.to_string())),
            Plan::Install(job) => jobs.push((target.entry(NodeProfileState::Installed, &want, String::new()), job)),
        }
    }
    for (mut entry, result) in backend.install(jobs, metrics).await {
        match result {
            Ok(repair) => {
                entry.not_enforced = backend.not_enforced(&entry.name);
                metrics.op(kind.slug(), if repair { "repair" } else { "install" }, true);
                if repair {
                    metrics
                        .drift_repairs
                        .get_or_create(&KindLabels { kind: kind.slug() })
                        .inc();
                    tracing::info!(
                        profile = entry.name,
                        kind = kind.slug(),
                        "repaired drift: reinstalled a profile that was changed, deleted or unloaded"
                    );
                }
            }
            Err(e) => {
                metrics.op(kind.slug(), "install", false);
                entry.state = NodeProfileState::Error;
                entry.message = e.to_string();
            }
        }
        entries.push(entry);
    }
    for name in backend.names().into_iter().filter(|n| !wanted.contains(n)) {
        let result = backend.remove(&name).await;
        metrics.op(kind.slug(), "remove", result.is_ok());
        match result {
            Ok(()) => tracing::info!(profile = name, kind = kind.slug(), "removed profile"),
            Err(e) => tracing::warn!(profile = name, kind = kind.slug(), error = %e, "removing failed; will retry"),
        }
    }
    backend.release(&wanted);
}

/// Whether the agent may install what it rendered: only content whose digest the operator
/// accepted. `Err` says why it waits (the entry's Pending message).
fn gate(accepted: Option<&AcceptedContent>, rendered: Result<&str, String>, generation: i64) -> Result<(), String> {
    let Some(accepted) = accepted else {
        return Err("waiting for the operator to accept the profile".into());
    };
    match rendered {
        Ok(digest) if digest == accepted.digest => Ok(()),
        Ok(digest) => Err(format!(
            "waiting for the operator to accept this content (generation {generation}, digest {}); keeping the accepted content (generation {}, digest {})",
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
pub(crate) struct Target<'a> {
    kind: ProfileKind,
    pub name: &'a str,
    pub uid: String,
    pub generation: i64,
}

impl<'a> Target<'a> {
    /// The profile as a target of this node: `None` when it is unnamed, disabled, or does not
    /// select the node (then whatever Palisade holds of it is removed).
    fn of<P: ProfileObject>(profile: &'a P, labels: &BTreeMap<String, String>) -> Option<Self> {
        let meta = profile.meta();
        let name = meta.name.as_deref()?;
        (profile.state() == ProfileState::Enabled && selects(profile.selector(), labels)).then(|| Self {
            kind: P::KIND,
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
            not_enforced: vec![],
        }
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
        assert!(gate(Some(&accepted), Ok("aaaaaaaaaaaaaaaa"), 3).is_ok());
        let why = gate(None, Ok("aaaaaaaaaaaaaaaa"), 1).unwrap_err();
        assert_eq!(why, "waiting for the operator to accept the profile");
        // A base changed and the operator has not re-validated: wait, keep what is there.
        let why = gate(Some(&accepted), Ok("bbbbbbbbbbbbbbbbbbbb"), 3).unwrap_err();
        assert_eq!(
            why,
            "waiting for the operator to accept this content (generation 3, digest bbbbbbbbbbbb); \
             keeping the accepted content (generation 3, digest aaaaaaaaaaaa)"
        );
        let why = gate(Some(&accepted), Err("spec.baseProfileName: gone".into()), 3).unwrap_err();
        assert!(
            why.starts_with("cannot render the profile here (spec.baseProfileName: gone)"),
            "{why}"
        );
    }
}
