//! Loading, verifying and removing AppArmor profiles with the real `apparmor_parser`.
//!
//! Each profile Palisade loads has its source, its compiled policy and an ownership record
//! under the state directory, each kind in a directory of its own (`sources/`, `compiled/`,
//! `records/`), so no profile name can collide with another's file. A profile loaded in the
//! kernel without a record is not Palisade's and is never replaced or removed.
//!
//! A load is two parser runs, each within a CPU, memory and time budget that covers every
//! process the parser forks, and able to read only the include directory, its input and
//! what the parser itself needs (Landlock): the first compiles the source to the binary
//! policy, which is judged ([`palisade_domain::compiled::judge`]: names, namespace,
//! attachment, mode); only then the second loads exactly those judged bytes
//! (`--replace --binary`).
//!
//! Simulated kernel (tests only, `--simulate-apparmor-kernel`): this machine's kernel has no
//! AppArmor LSM, so the apparmorfs directory is a plain directory. The real parser still
//! compiles every profile and writes the binary policy into it (`--subdomainfs`), given the
//! kernel features from a file; the one fake is that the agent keeps that directory's
//! `profiles` list (`name (mode)`), which a real kernel keeps. It fills that list the way the
//! kernel does, from the binary policy the parser wrote (each profile's name and mode
//! flags), never from what the agent meant to load, so `verify` checks the parser's output.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_domain::compiled::{self, CompiledProfile};
use palisade_domain::render::apparmor::{self as render, RenderedPolicy};
use palisade_domain::{AppArmorMode, AppArmorProfile, NodeProfile};
use palisade_runtime::budget::Budget;
use palisade_runtime::budget::{Kernel, Parser};
use serde::{Deserialize, Serialize};

use crate::files;
use crate::metrics::Metrics;
use crate::sync::{Backend, InstallError, Plan, Target};

/// What the agent needs to drive the parser.
#[derive(Clone, Debug)]
pub struct AppArmorConfig {
    pub parser: PathBuf,
    pub apparmorfs: PathBuf,
    pub include_dir: PathBuf,
    /// The parser's own policy ABI files (`abi/4.0`, ...), searched after `include_dir`:
    /// a policy written for a newer ABI than the host's userspace ships compiles here too.
    pub abi_dir: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Simulated kernel: the features file the parser is told the kernel has.
    pub simulated_kernel_features: Option<PathBuf>,
    /// What one parser run may use; a hung parser is killed and the load fails.
    pub budget: Budget,
    /// Names (or `prefix*`) never loaded, beside [`palisade_domain::apparmor::RESERVED_NAMES`].
    pub reserved: Vec<String>,
}

/// The agent's default budget for one parser run, with this wall-clock limit (the same CPU
/// and memory budget as the operator's default).
pub fn default_budget(wall: std::time::Duration) -> Budget {
    Budget {
        cpu: std::time::Duration::from_secs(10),
        memory: 96 * 1024 * 1024,
        wall,
    }
}

/// Palisade's record of a profile it loaded: the ownership marker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub managed_by: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub digest: String,
    pub mode: AppArmorMode,
    /// Written before the parser runs, cleared after the kernel took the profile: a record
    /// that still says `loading` (a crash, a parser failure) is Palisade's, but its content
    /// is not known to be in the kernel, so the next sync loads it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loading: bool,
    /// The rule classes this node's kernel does not enforce, as the parser said when it
    /// compiled the loaded policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<String>,
    /// The version of the parser that compiled it: another parser (an agent upgrade) may
    /// compile the same source differently, so the profile is loaded again (records of
    /// earlier agents have none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parser: String,
}

const MANAGED_BY: &str = "palisade";
const SOURCES: &str = "sources";
const COMPILED: &str = "compiled";
const RECORDS: &str = "records";

pub struct AppArmor {
    cfg: AppArmorConfig,
    parser: Parser,
}

impl AppArmor {
    pub fn new(cfg: AppArmorConfig) -> std::io::Result<Self> {
        let parser = Parser {
            program: cfg.parser.clone(),
            include_dir: cfg.include_dir.clone(),
            abi_dir: cfg.abi_dir.clone(),
            budget: cfg.budget.clone(),
            kernel: Some(Kernel {
                apparmorfs: cfg.apparmorfs.clone(),
                features: cfg.simulated_kernel_features.clone(),
            }),
        };
        let me = Self { cfg, parser };
        me.migrate_flat_layout()?;
        for dir in [SOURCES, COMPILED, RECORDS] {
            std::fs::create_dir_all(me.dir(dir))?;
            files::clean_temp_files(&me.dir(dir))?;
        }
        Ok(me)
    }

    fn dir(&self, kind: &str) -> PathBuf {
        self.cfg.state_dir.join("apparmor").join(kind)
    }

    fn source_path(&self, name: &str) -> PathBuf {
        self.dir(SOURCES).join(name)
    }

    fn compiled_path(&self, name: &str) -> PathBuf {
        self.dir(COMPILED).join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir(RECORDS).join(format!("{name}.json"))
    }

    /// Agents before 0.2 kept `<name>` and `<name>.palisade.json` side by side in
    /// `apparmor/`; they move to `records/` and `sources/`, so the profiles those agents
    /// loaded stay Palisade's.
    fn migrate_flat_layout(&self) -> std::io::Result<()> {
        let flat = self.cfg.state_dir.join("apparmor");
        let Ok(entries) = std::fs::read_dir(&flat) else {
            return Ok(());
        };
        let mut old = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                old.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        // Aside first: a profile of the old layout may be named like a new directory.
        let aside = self.cfg.state_dir.join("apparmor.flat");
        std::fs::create_dir_all(&aside)?;
        for file in &old {
            std::fs::rename(flat.join(file), aside.join(file))?;
        }
        for dir in [SOURCES, RECORDS] {
            std::fs::create_dir_all(self.dir(dir))?;
        }
        for file in &old {
            if let Some(name) = file.strip_suffix(".palisade.json") {
                std::fs::rename(aside.join(file), self.record_path(name))?;
            } else if !file.starts_with(files::TEMP_PREFIX) {
                std::fs::rename(aside.join(file), self.source_path(file))?;
            }
        }
        std::fs::remove_dir_all(&aside)
    }

    fn profiles_file(&self) -> PathBuf {
        self.cfg.apparmorfs.join("profiles")
    }

    /// Whether AppArmor can be used here: `Ok(parser version)` or `Err(reason)`.
    pub async fn detect(&self) -> Result<String, String> {
        if !self.profiles_file().is_file() {
            return Err(format!(
                "AppArmor is not enabled on this node ({} is missing)",
                self.profiles_file().display()
            ));
        }
        self.parser
            .version()
            .await
            .map_err(|e| format!("apparmor_parser ({}) cannot run: {e}", self.cfg.parser.display()))
    }

    /// Profiles the kernel has loaded: name → mode.
    pub fn loaded(&self) -> std::io::Result<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.profiles_file())?;
        Ok(parse_profiles(&text))
    }

    /// Palisade's records, by profile name.
    pub fn records(&self) -> std::io::Result<BTreeMap<String, Record>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(self.dir(RECORDS))? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".json") {
                let record: Record = match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    Some(r) => r,
                    None => continue,
                };
                if record.managed_by == MANAGED_BY {
                    out.insert(record.name.clone(), record);
                }
            }
        }
        Ok(out)
    }

    /// Refuses a name that belongs to someone else, whether or not it is loaded yet: a
    /// reserved name (runtime defaults, `unconfined`, the chart's list) or one that a file
    /// of the host's own AppArmor directory is named after (its packaged profiles).
    pub fn check_name(&self, name: &str) -> Result<(), InstallError> {
        if let Some(reason) = palisade_domain::apparmor::reserved_name(name, &self.cfg.reserved) {
            return Err(InstallError::Reserved(reason));
        }
        if self.cfg.include_dir.join(name).is_file() {
            return Err(InstallError::Reserved(format!(
                "the name {name:?} is the host's: {} defines it; never loaded",
                self.cfg.include_dir.join(name).display()
            )));
        }
        Ok(())
    }

    /// Compiles a source for this kernel and judges the result: the binary policy, only if
    /// it defines `name` and its children, in `mode`, attached to nothing.
    async fn compile(
        &self,
        name: &str,
        text: &str,
        mode: AppArmorMode,
    ) -> Result<(palisade_runtime::budget::Compiled, Vec<CompiledProfile>), InstallError> {
        let compiled = self.parser.compile(text, mode == AppArmorMode::Complain).await?;
        let profiles =
            compiled::judge(&compiled.binary, name, mode).map_err(|r| InstallError::Refused(r.to_string()))?;
        Ok((compiled, profiles))
    }

    /// Loads (or replaces) a profile Palisade owns and verifies the kernel lists it.
    /// Returns the parser's run time and the record kept, which names the rule classes
    /// this kernel does not enforce. Errors are the parser's own words, trimmed.
    pub async fn load(&self, record: &Record, text: &str) -> Result<(std::time::Duration, Record), InstallError> {
        self.check_name(&record.name)?;
        let source = self.source_path(&record.name);
        files::write_atomic(&source, text.as_bytes(), 0o600).map_err(|e| InstallError::write(&source, e))?;
        let start = Instant::now();
        let (compiled, profiles) = self.compile(&record.name, text, record.mode).await?;
        let record = &Record {
            not_enforced: compiled.not_enforced,
            ..record.clone()
        };
        let compiled_path = self.compiled_path(&record.name);
        files::write_atomic(&compiled_path, &compiled.binary, 0o600)
            .map_err(|e| InstallError::write(&compiled_path, e))?;
        // Claim the name before the kernel sees the profile, so a crash between the load and
        // the record never leaves a loaded profile without its owner.
        let previous = self.read_record(&record.name);
        self.write_record(&Record {
            loading: true,
            ..record.clone()
        })?;
        // Exactly the judged bytes go to the kernel. Killed or timed out: whether the
        // kernel took them is unknown; the record keeps saying `loading`, so the next sync
        // loads again.
        match self.parser.load_binary(&compiled_path).await {
            Ok(()) => {}
            Err(palisade_runtime::budget::ParserError::Refused(message)) => {
                // A load the parser refuses leaves the kernel as it was: so is the record.
                match &previous {
                    Some(p) => self.write_record(p)?,
                    None => {
                        let path = self.record_path(&record.name);
                        files::remove_durable(&path).map_err(|e| InstallError::write(&path, e))?
                    }
                }
                return Err(InstallError::Parser(message));
            }
            Err(e) => return Err(e.into()),
        }
        let took = start.elapsed();
        if self.cfg.simulated_kernel_features.is_some() {
            self.simulate_loaded(&profiles)?;
        }
        self.verify(&record.name, record.mode)
            .map_err(InstallError::NotListed)?;
        self.write_record(record)?;
        Ok((took, record.clone()))
    }

    /// Palisade's record of one profile, if it has one.
    pub fn read_record(&self, name: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(name)).ok()?;
        serde_json::from_slice::<Record>(&bytes)
            .ok()
            .filter(|r| r.managed_by == MANAGED_BY)
    }

    fn write_record(&self, record: &Record) -> Result<(), InstallError> {
        let bytes = serde_json::to_vec_pretty(record).expect("record serializes");
        let path = self.record_path(&record.name);
        files::write_atomic(&path, &bytes, 0o600).map_err(|e| InstallError::write(&path, e))
    }

    /// Checks that the kernel lists `name` in `mode` (what runtimes check before starting a
    /// confined container).
    pub fn verify(&self, name: &str, mode: AppArmorMode) -> Result<(), String> {
        let loaded = self
            .loaded()
            .map_err(|e| format!("reading {}: {e}", self.profiles_file().display()))?;
        let want = mode.kernel_word();
        match loaded.get(name) {
            Some(m) if m == want => Ok(()),
            Some(m) => Err(format!("the kernel lists {name} in {m} mode, not {want}")),
            None => Err(format!("the kernel does not list {name} after loading it")),
        }
    }

    /// Unloads a profile Palisade owns and forgets it. Refuses one it does not own.
    pub async fn remove(&self, name: &str) -> Result<(), InstallError> {
        if !self.record_path(name).exists() {
            return Err(InstallError::NotOwned(name.to_string()));
        }
        if self.loaded().map(|l| l.contains_key(name)).unwrap_or(false) {
            // By name, through the kernel's interface: the kernel removes the profile and
            // its children, and nothing is parsed (a source re-parsed with the host's
            // includes could name the host's own profiles).
            use std::io::Write as _;
            let remove = self.cfg.apparmorfs.join(".remove");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&remove)
                .and_then(|mut f| f.write_all(format!("{name}\0").as_bytes()))
                .map_err(|e| InstallError::Kernel(format!("writing {name} to {}: {e}", remove.display())))?;
            if self.cfg.simulated_kernel_features.is_some() {
                self.simulate_removed(name)?;
            }
        }
        for path in [self.record_path(name), self.source_path(name), self.compiled_path(name)] {
            files::remove_durable(&path).map_err(|e| InstallError::write(&path, e))?;
        }
        Ok(())
    }

    /// Simulated kernel: lists every profile of the binary policy just loaded (what the
    /// parser compiled, children included) in the mode that policy gives it, as a kernel
    /// would.
    fn simulate_loaded(&self, profiles: &[CompiledProfile]) -> Result<(), InstallError> {
        if profiles.is_empty() {
            return Err(InstallError::Kernel(
                "the parser produced no profile for the (simulated) kernel".into(),
            ));
        }
        let mut loaded = self.loaded().map_err(|e| InstallError::Kernel(e.to_string()))?;
        for p in profiles {
            let top = p.name.split("//").next().unwrap_or(&p.name);
            loaded.retain(|n, _| n != top && !n.starts_with(&format!("{top}//")));
        }
        loaded.extend(profiles.iter().map(|p| (p.name.clone(), p.mode.to_string())));
        self.write_simulated(&loaded)?;
        // The parser appends binary policy to the simulated .replace; keep it from growing.
        let _ = std::fs::write(self.cfg.apparmorfs.join(".replace"), b"");
        Ok(())
    }

    fn simulate_removed(&self, name: &str) -> Result<(), InstallError> {
        let mut loaded = self.loaded().map_err(|e| InstallError::Kernel(e.to_string()))?;
        loaded.retain(|n, _| n != name && !n.starts_with(&format!("{name}//")));
        self.write_simulated(&loaded)
    }

    fn write_simulated(&self, loaded: &BTreeMap<String, String>) -> Result<(), InstallError> {
        let text: String = loaded.iter().map(|(n, m)| format!("{n} ({m})\n")).collect();
        let path = self.profiles_file();
        files::write_atomic(&path, text.as_bytes(), 0o644).map_err(|e| InstallError::write(&path, e))
    }
}

/// Parses the kernel's `profiles` list: one `name (mode)` a line.
pub fn parse_profiles(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let open = line.rfind(" (")?;
            let mode = line[open + 2..].strip_suffix(')')?;
            Some((line[..open].to_string(), mode.to_string()))
        })
        .collect()
}

// The AppArmor backend of the agent's sync loop: the kernel's policy as Palisade holds it.

/// First wait before a failed load (not a final failure) is tried again; it doubles up to
/// [`RETRY_MAX`] while the same content keeps failing.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(600);

pub struct AppArmorNode {
    apparmor: AppArmor,
    /// `Ok(parser version)` or why AppArmor cannot be used here.
    support: Result<String, String>,
    /// AppArmor profiles Palisade loaded: name → record.
    installed: BTreeMap<String, Record>,
    /// Contents that failed for good (refused, over budget): name → (digest, why).
    failed: HashMap<String, (String, InstallError)>,
    /// Contents whose load failed for another reason (the parser hung, was killed, or
    /// refused the host's includes): tried again after a backoff, not at every sync.
    retry: HashMap<String, Retry>,
    /// The kernel's list (name → mode), read once a sync.
    loaded: Option<BTreeMap<String, String>>,
}

/// When a failed load of one content is tried again.
struct Retry {
    digest: String,
    next: Instant,
    /// Failures in a row of this content.
    failures: u32,
    error: InstallError,
}

/// One load to run: the record to claim and the text.
pub struct Load {
    record: Record,
    text: String,
    repair: bool,
}

impl AppArmorNode {
    pub fn open(apparmor: AppArmor, support: Result<String, String>) -> std::io::Result<Self> {
        let installed = if support.is_ok() {
            apparmor.records()?
        } else {
            BTreeMap::new()
        };
        Ok(Self {
            apparmor,
            support,
            installed,
            failed: HashMap::new(),
            retry: HashMap::new(),
            loaded: None,
        })
    }

    pub fn support(&self) -> &Result<String, String> {
        &self.support
    }

    /// Bookkeeping after a load: a final failure is not tried again until the content
    /// changes; another is tried again after a growing delay.
    fn loaded_one(&mut self, record: Record, result: &Result<(Duration, Record), InstallError>, metrics: &Metrics) {
        let name = record.name.clone();
        match result {
            Ok((took, kept)) => {
                metrics.parser_seconds.observe(took.as_secs_f64());
                self.retry.remove(&name);
                self.installed.insert(name, kept.clone());
            }
            Err(error) if error.is_final() => {
                self.failed.insert(name.clone(), (record.digest.clone(), error.clone()));
                self.reread_record(&name);
            }
            Err(error) => {
                let failures = self
                    .retry
                    .get(&name)
                    .filter(|r| r.digest == record.digest)
                    .map_or(1, |r| r.failures + 1);
                let delay = palisade_runtime::backoff::delay(RETRY_FIRST, RETRY_MAX, failures);
                let retry = Retry {
                    digest: record.digest.clone(),
                    next: Instant::now() + delay,
                    failures,
                    error: error.clone(),
                };
                self.retry.insert(name.clone(), retry);
                self.reread_record(&name);
            }
        }
    }

    /// After a failed load the record may say a load is unfinished: the next sync loads again.
    fn reread_record(&mut self, name: &str) {
        match self.apparmor.read_record(name) {
            Some(r) => self.installed.insert(name.to_string(), r),
            None => self.installed.remove(name),
        };
    }
}

impl Backend for AppArmorNode {
    type Profile = AppArmorProfile;
    type Index<'a> = ();
    type Rendered = RenderedPolicy;
    type Job = Load;

    fn unsupported(&self) -> Option<&str> {
        self.support.as_ref().err().map(String::as_str)
    }

    fn begin(&mut self) {
        self.loaded = if self.support.is_ok() {
            self.apparmor.loaded().ok()
        } else {
            None
        };
    }

    fn index(_: &[&AppArmorProfile]) {}

    fn render(&self, name: &str, profile: &AppArmorProfile, _: &()) -> Result<RenderedPolicy, String> {
        render::render(name, &profile.spec).map_err(|e| e.to_string())
    }

    fn digest(rendered: &RenderedPolicy) -> &str {
        &rendered.digest
    }

    fn held(&self, name: &str) -> Option<&str> {
        self.installed
            .get(name)
            .filter(|r| !r.loading)
            .map(|r| r.digest.as_str())
    }

    fn plan(
        &self,
        target: &Target<'_>,
        profile: &AppArmorProfile,
        rendered: RenderedPolicy,
        drift: bool,
    ) -> Plan<Load> {
        let (name, want, mode) = (target.name, rendered.digest.as_str(), profile.spec.mode);
        if let Err(e) = self.apparmor.check_name(name) {
            return Plan::Refuse(e);
        }
        // A content that failed for good (refused, over its budget) is not compiled again
        // until it changes: one hostile profile costs its budget once, not every sync.
        if let Some((digest, error)) = self.failed.get(name)
            && digest == want
        {
            return Plan::Refuse(error.clone());
        }
        if let Some(retry) = self.retry.get(name)
            && retry.digest == want
            && Instant::now() < retry.next
        {
            return Plan::Refuse(retry.error.clone());
        }
        let record = self.installed.get(name);
        let in_kernel = self.loaded.as_ref().and_then(|l| l.get(name));
        if record.is_none() && in_kernel.is_some() {
            return Plan::Refuse(InstallError::ForeignProfile(name.to_string()));
        }
        let parser = self.support.as_deref().unwrap_or_default();
        let current = record.is_some_and(|r| r.digest == want && r.mode == mode && !r.loading && r.parser == parser);
        let verified = !drift || self.apparmor.verify(name, mode).is_ok();
        if current && verified {
            return Plan::Current;
        }
        Plan::Install(Load {
            record: Record {
                managed_by: "palisade".into(),
                name: name.to_string(),
                uid: target.uid.clone(),
                generation: target.generation,
                digest: want.to_string(),
                mode,
                loading: false,
                not_enforced: vec![],
                parser: parser.to_string(),
            },
            text: rendered.text,
            repair: current,
        })
    }

    /// Loads run side by side (as many as the parser runner allows at once): a profile that
    /// takes its whole budget holds up no other profile's load.
    async fn install(
        &mut self,
        jobs: Vec<(NodeProfile, Load)>,
        metrics: &Metrics,
    ) -> Vec<(NodeProfile, Result<bool, InstallError>)> {
        let apparmor = &self.apparmor;
        let done: Vec<_> = futures::stream::iter(jobs.into_iter().map(|(entry, job)| async move {
            let result = apparmor.load(&job.record, &job.text).await;
            (entry, job, result)
        }))
        .buffer_unordered(palisade_runtime::budget::RUNS_AT_ONCE)
        .collect()
        .await;
        done.into_iter()
            .map(|(entry, job, result)| {
                self.loaded_one(job.record, &result, metrics);
                (entry, result.map(|_| job.repair))
            })
            .collect()
    }

    fn not_enforced(&self, name: &str) -> Vec<String> {
        self.installed
            .get(name)
            .map(|r| r.not_enforced.clone())
            .unwrap_or_default()
    }

    fn names(&self) -> Vec<String> {
        self.installed.keys().cloned().collect()
    }

    async fn remove(&mut self, name: &str) -> Result<(), InstallError> {
        self.apparmor.remove(name).await?;
        self.installed.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_profiles_list() {
        let text = "web (enforce)\nweb//child (enforce)\n/usr/bin/man (complain)\nodd name (x) (kill)\n";
        let parsed = parse_profiles(text);
        assert_eq!(parsed["web"], "enforce");
        assert_eq!(parsed["web//child"], "enforce");
        assert_eq!(parsed["/usr/bin/man"], "complain");
        assert_eq!(parsed["odd name (x)"], "kill");
    }
}
