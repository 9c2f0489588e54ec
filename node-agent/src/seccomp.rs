//! The seccomp backend: JSON files in Palisade's subdirectory of the kubelet's seccomp
//! directory, with a record of the names Palisade owns there ([`files::OWNED_RECORD`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use palisade_domain::render::seccomp::{self as render, RenderedSeccomp};
use palisade_domain::{NodeProfile, SeccompProfile, SeccompProfileSpec};

use crate::files;
use crate::metrics::Metrics;
use crate::sync::{Backend, InstallError, Plan, Target};

pub struct SeccompDir {
    dir: PathBuf,
    /// `Ok` or why seccomp profiles cannot be written here.
    support: Result<(), String>,
    /// Files Palisade wrote: name → content digest.
    installed: BTreeMap<String, String>,
    /// Names recorded as Palisade's, recorded before a file is first written and dropped
    /// after it is removed.
    owned: BTreeSet<String>,
    /// Files found when there was no record (it was lost): only these may be adopted, and
    /// only when identical to what Palisade writes. A file that appears while the record
    /// exists is never Palisade's.
    unrecorded: BTreeSet<String>,
}

/// One file to write.
pub struct Write {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The name is not recorded as Palisade's yet.
    first: bool,
    /// The file was Palisade's current content and changed or went away.
    repair: bool,
}

impl SeccompDir {
    /// Takes stock of the directory: the names recorded as Palisade's, their files' digests;
    /// removes temporary files a crash left.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        let support = std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| seccomp_available());
        let mut me = Self {
            dir,
            support,
            installed: BTreeMap::new(),
            owned: BTreeSet::new(),
            unrecorded: BTreeSet::new(),
        };
        if me.support.is_err() {
            return Ok(me);
        }
        let removed = files::clean_temp_files(&me.dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files a crash left in the seccomp directory");
        }
        me.owned = match files::read_owned(&me.dir)? {
            Some(owned) => owned,
            None => {
                // No record: nothing here is known to be Palisade's. A file found now is
                // adopted later only if its content is exactly what Palisade would write for
                // an accepted profile; no other file is ever replaced or deleted.
                me.unrecorded = json_files(&me.dir)?;
                files::write_owned(&me.dir, &BTreeSet::new())?;
                BTreeSet::new()
            }
        };
        for name in &me.owned {
            if let Some(d) = files::file_digest(&files::seccomp_path(&me.dir, name))? {
                me.installed.insert(name.clone(), d);
            }
        }
        Ok(me)
    }

    pub fn support(&self) -> &Result<(), String> {
        &self.support
    }

    fn write(&mut self, name: &str, digest: &str, job: &Write) -> Result<(), InstallError> {
        files::write_atomic(&job.path, &job.bytes, 0o644).map_err(|e| InstallError::write(&job.path, e))?;
        self.installed.insert(name.to_string(), digest.to_string());
        Ok(())
    }
}

impl Backend for SeccompDir {
    type Profile = SeccompProfile;
    type Index<'a> = HashMap<&'a str, &'a SeccompProfileSpec>;
    type Rendered = RenderedSeccomp;
    type Job = Write;

    fn unsupported(&self) -> Option<&str> {
        self.support.as_ref().err().map(String::as_str)
    }

    fn index<'a>(profiles: &[&'a SeccompProfile]) -> Self::Index<'a> {
        profiles
            .iter()
            .filter_map(|&p| Some((p.metadata.name.as_deref()?, &p.spec)))
            .collect()
    }

    fn render(&self, name: &str, profile: &SeccompProfile, index: &Self::Index<'_>) -> Result<RenderedSeccomp, String> {
        render::render(name, &profile.spec, |n| index.get(n).copied()).map_err(|e| e.to_string())
    }

    fn digest(rendered: &RenderedSeccomp) -> &str {
        &rendered.digest
    }

    fn held(&self, name: &str) -> Option<&str> {
        self.installed.get(name).map(String::as_str)
    }

    fn plan(&self, target: &Target<'_>, _: &SeccompProfile, rendered: RenderedSeccomp, drift: bool) -> Plan<Write> {
        let name = target.name;
        let want = rendered.digest.as_str();
        let path = files::seccomp_path(&self.dir, name);
        if !self.owned.contains(name) {
            // A file found without a record and identical to what Palisade writes (its own,
            // from before the record was lost) is adopted; any other is another tool's.
            let adoptable =
                self.unrecorded.contains(name) && files::file_digest(&path).ok().flatten().as_deref() == Some(want);
            if path.exists() && !adoptable {
                return Plan::Refuse(InstallError::ForeignFile {
                    path,
                    record: files::OWNED_RECORD,
                });
            }
            return Plan::Install(Write {
                path,
                bytes: rendered.bytes,
                first: true,
                repair: false,
            });
        }
        let recorded = self.held(name);
        let on_disk = if drift {
            files::file_digest(&path).ok().flatten()
        } else {
            recorded.map(str::to_string)
        };
        if recorded == Some(want) && on_disk.as_deref() == Some(want) {
            return Plan::Current;
        }
        Plan::Install(Write {
            path,
            bytes: rendered.bytes,
            first: false,
            repair: recorded == Some(want),
        })
    }

    /// Files written for the first time have their names recorded (one write for the batch)
    /// before any of them is written, so a crash never leaves an unrecorded Palisade file,
    /// and only accepted content ever claims a name.
    async fn install(
        &mut self,
        jobs: Vec<(NodeProfile, Write)>,
        _: &Metrics,
    ) -> Vec<(NodeProfile, Result<bool, InstallError>)> {
        let (first, again): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(_, job)| job.first);
        let mut done = Vec::new();
        for (entry, job) in again {
            let result = self.write(&entry.name, &entry.digest, &job).map(|()| job.repair);
            done.push((entry, result));
        }
        if first.is_empty() {
            return done;
        }
        let mut owned = self.owned.clone();
        owned.extend(first.iter().map(|(e, _)| e.name.clone()));
        let recorded = files::write_owned(&self.dir, &owned);
        if recorded.is_ok() {
            self.owned = owned;
        }
        for (entry, job) in first {
            let result = match &recorded {
                Ok(()) => self.write(&entry.name, &entry.digest, &job).map(|()| false),
                Err(e) => Err(InstallError::Record {
                    name: entry.name.clone(),
                    record: files::OWNED_RECORD,
                    reason: e.to_string(),
                }),
            };
            done.push((entry, result));
        }
        done
    }

    fn names(&self) -> Vec<String> {
        self.installed.keys().cloned().collect()
    }

    async fn remove(&mut self, name: &str) -> Result<(), InstallError> {
        let path = files::seccomp_path(&self.dir, name);
        files::remove_durable(&path).map_err(|e| InstallError::write(&path, e))?;
        self.installed.remove(name);
        Ok(())
    }

    /// Names recorded but no longer wanted and without a file leave the record (after their
    /// file is gone, so a crash never orphans a Palisade file).
    fn release(&mut self, wanted: &BTreeSet<String>) {
        if self.support.is_err() {
            return;
        }
        let keep: BTreeSet<String> = self
            .owned
            .iter()
            .filter(|n| wanted.contains(*n) || self.installed.contains_key(*n))
            .cloned()
            .collect();
        if keep.len() != self.owned.len() && files::write_owned(&self.dir, &keep).is_ok() {
            self.owned = keep;
        }
    }
}

/// The names of the `<name>.json` files in `dir`.
fn json_files(dir: &std::path::Path) -> std::io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.file_name();
        if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) {
            names.insert(name.to_string());
        }
    }
    Ok(names)
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
