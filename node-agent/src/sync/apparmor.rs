//! The AppArmor backend: profiles in the kernel, loaded with the real parser
//! ([`crate::apparmor::AppArmor`]), each with Palisade's ownership record.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_crds::render::apparmor::{self as render, RenderedPolicy};
use palisade_crds::{AppArmorProfile, NodeProfile};

use super::{Backend, Plan, Target};
use crate::apparmor::{AppArmor, Record};
use crate::error::InstallError;
use crate::metrics::Metrics;

/// First wait before a failed load (not a final failure) is tried again; it doubles up to
/// [`RETRY_MAX`] while the same content keeps failing.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(600);

pub(crate) struct AppArmorNode {
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
    delay: Duration,
    error: InstallError,
}

/// One load to run: the record to claim and the text.
pub(crate) struct Load {
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
    fn loaded_one(&mut self, record: Record, result: &Result<Duration, InstallError>, metrics: &Metrics) {
        let name = record.name.clone();
        match result {
            Ok(took) => {
                metrics.parser_seconds.observe(took.as_secs_f64());
                self.retry.remove(&name);
                self.installed.insert(name, record);
            }
            Err(error) if error.is_final() => {
                self.failed.insert(name.clone(), (record.digest.clone(), error.clone()));
                self.reread_record(&name);
            }
            Err(error) => {
                let delay = self
                    .retry
                    .get(&name)
                    .filter(|r| r.digest == record.digest)
                    .map_or(RETRY_FIRST, |r| (r.delay * 2).min(RETRY_MAX));
                let retry = Retry {
                    digest: record.digest.clone(),
                    next: Instant::now() + delay,
                    delay,
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
        let current = record.is_some_and(|r| r.digest == want && r.mode == mode && !r.loading);
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

    fn names(&self) -> Vec<String> {
        self.installed.keys().cloned().collect()
    }

    async fn remove(&mut self, name: &str) -> Result<(), InstallError> {
        self.apparmor.remove(name).await?;
        self.installed.remove(name);
        Ok(())
    }
}
