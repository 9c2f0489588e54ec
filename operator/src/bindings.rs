//! The ProfileBinding status controller (leader only): how many of the pods a binding
//! matches run under its profile, which do not and why, and whether its profile exists, was
//! accepted and is Ready. The webhook binds pods as they are created; this says what came of
//! it, including for pods created while the webhook was unreachable (its failure policy
//! admits them unbound).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_domain::binding::{self, MAX_UNBOUND_LISTED, UnboundPod};

use crate::status::Problem;
use palisade_domain::{
    AppArmorProfile, CONDITION_READY, ProfileBinding, ProfileBindingStatus, ProfileKind, ProfileStatus, SeccompProfile,
};

/// How often a binding's pods are counted again (pods come and go without the binding
/// changing), at least.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(30);
/// Each binding adds this much to the interval, so that all of them together list pods at
/// most ten times a second: whoever may create bindings cannot turn them into a load on the
/// API server.
const RECOUNT_PER_BINDING: Duration = Duration::from_millis(100);

/// When to count a binding's pods again, given how many bindings there are.
pub fn recount_after(bindings: usize) -> Duration {
    RECOUNT_EVERY.max(RECOUNT_PER_BINDING * u32::try_from(bindings).unwrap_or(u32::MAX))
}
/// Pods read per list page (only one page is held at a time), and in all, per binding.
const PAGE: u32 = 100;
const MAX_PODS: usize = 20_000;

/// What the binding controller reads.
pub struct BindingContext {
    pub client: Client,
    pub seccomp_subdir: String,
    pub seccomp: Store<DeserializeGuard<SeccompProfile>>,
    pub apparmor: Store<DeserializeGuard<AppArmorProfile>>,
    pub bindings: Store<ProfileBinding>,
    /// When each binding (uid, generation) was last counted.
    pub counted: Mutex<HashMap<(String, i64), Instant>>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] kube::Error);

/// The profile's status as cached: `None` when missing, `Some(None)` when it does not parse
/// or has no status yet.
fn profile_status(ctx: &BindingContext, kind: ProfileKind, name: &str) -> Option<Option<ProfileStatus>> {
    crate::controller::cached_profile(&ctx.seccomp, &ctx.apparmor, kind, name).map(|r| r.ok().and_then(|c| c.status))
}

/// `Ready` of a binding: (status, reason, message).
pub fn readiness(
    binding: &ProfileBinding,
    profile: Option<Option<ProfileStatus>>,
) -> (&'static str, &'static str, String) {
    let r = &binding.spec.profile_ref;
    if let Some(problem) = binding::problem(binding) {
        return ("False", "InvalidBinding", problem);
    }
    let Some(status) = profile else {
        return (
            "False",
            "ProfileMissing",
            format!(
                "{} {} does not exist: bound containers cannot start where it is missing",
                r.kind.name(),
                r.name
            ),
        );
    };
    let what = format!("{} {}", r.kind.name(), r.name);
    match crate::status::problem(status.as_ref()) {
        Some(Problem::Rejected(why)) => ("False", "ProfileNotAccepted", format!("{what} was not accepted: {why}")),
        Some(Problem::NotReady(why)) => ("False", "ProfileNotReady", format!("{what} is not Ready: {why}")),
        None => ("True", "ProfileReady", format!("{what} is Ready")),
    }
}

/// A binding's pods counted, page by page, keeping only the counts and the first few
/// unbound pods (by name).
#[derive(Default, Debug)]
pub struct Tally {
    bound: u32,
    unbound_pods: u32,
    unbound: Vec<UnboundPod>,
}

/// Longest reason kept for an unbound pod (the CRD allows 1024): a pod's profile names are
/// its author's to choose.
const MAX_REASON: usize = 512;

impl Tally {
    /// Counts `pods` (running or pending ones, not being deleted) under `binding`.
    pub fn add(&mut self, binding: &ProfileBinding, pods: &[Pod], seccomp_subdir: &str) {
        for pod in pods {
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if finished || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match binding::standing(binding, pod, seccomp_subdir) {
                None => {}
                Some(Ok(())) => self.bound = self.bound.saturating_add(1),
                Some(Err(mut reason)) => {
                    self.unbound_pods = self.unbound_pods.saturating_add(1);
                    if reason.len() > MAX_REASON {
                        let mut end = MAX_REASON;
                        while !reason.is_char_boundary(end) {
                            end -= 1;
                        }
                        reason.truncate(end);
                        reason.push('…');
                    }
                    self.unbound.push(UnboundPod {
                        name: pod.name_any(),
                        reason,
                    });
                    self.unbound.sort();
                    self.unbound.truncate(MAX_UNBOUND_LISTED);
                }
            }
        }
    }
}

/// The status of `binding` given the pods of its namespace and its profile's status.
pub fn status(
    binding: &ProfileBinding,
    pods: &[Pod],
    profile: Option<Option<ProfileStatus>>,
    seccomp_subdir: &str,
    old: Option<&ProfileBindingStatus>,
    now: Time,
) -> ProfileBindingStatus {
    let mut tally = Tally::default();
    tally.add(binding, pods, seccomp_subdir);
    status_of(binding, tally, profile, old, now)
}

/// The status of `binding` given its counted pods and its profile's status.
pub fn status_of(
    binding: &ProfileBinding,
    tally: Tally,
    profile: Option<Option<ProfileStatus>>,
    old: Option<&ProfileBindingStatus>,
    now: Time,
) -> ProfileBindingStatus {
    let Tally {
        bound,
        unbound_pods,
        unbound,
    } = tally;
    let (ready, reason, message) = readiness(binding, profile);
    let generation = binding.metadata.generation;
    let transition = old
        .and_then(|o| o.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .filter(|c| c.status == ready)
        .map_or(now, |c| c.last_transition_time.clone());
    ProfileBindingStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: CONDITION_READY.into(),
            status: ready.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: transition,
        }],
        bound_pods: bound,
        unbound_pods,
        unbound,
    }
}

/// Counts the pods of the binding's namespace that its selector matches (all when it has
/// none), a page at a time, at most [`MAX_PODS`].
async fn count_pods(client: &Client, binding: &ProfileBinding, seccomp_subdir: &str) -> Result<Tally, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &binding.namespace().unwrap_or_default());
    let mut params = ListParams::default().limit(PAGE);
    if let Some(selector) = binding.spec.selector.as_ref()
        && let Ok(s) = kube::core::Selector::try_from(selector.clone())
    {
        params = params.labels_from(&s);
    }
    let mut tally = Tally::default();
    let mut seen = 0;
    loop {
        let page = api.list(&params).await?;
        seen += page.items.len();
        tally.add(binding, &page.items, seccomp_subdir);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() && seen < MAX_PODS => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(tally)
}

/// Counts the binding's pods and writes its status when it changed.
#[tracing::instrument(skip_all, fields(binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default()))]
pub async fn reconcile(binding: Arc<ProfileBinding>, ctx: Arc<BindingContext>) -> Result<Action, Error> {
    // At most one count per binding and generation every interval, whatever woke it (its
    // own status write, an error's retry): a spec change counts at once.
    let every = recount_after(ctx.bindings.state().len());
    let key = (
        binding.uid().unwrap_or_default(),
        binding.metadata.generation.unwrap_or_default(),
    );
    if let Some(last) = ctx.counted.lock().expect("lock").get(&key)
        && last.elapsed() < every
    {
        return Ok(Action::requeue(every - last.elapsed()));
    }
    {
        let mut counted = ctx.counted.lock().expect("lock");
        counted.retain(|_, t| t.elapsed() < every * 2);
        counted.insert(key, Instant::now());
    }
    let tally = count_pods(&ctx.client, &binding, &ctx.seccomp_subdir).await?;
    let r = &binding.spec.profile_ref;
    let profile = profile_status(&ctx, r.kind, &r.name);
    let old = binding.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status_of(&binding, tally, profile, old, now);
    if old != Some(&new) {
        let api: Api<ProfileBinding> = Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
        api.patch_status(
            &binding.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": new})),
        )
        .await?;
    }
    Ok(Action::requeue(every))
}

/// A failed count or write is tried again at the next interval.
pub fn error_policy(_: Arc<ProfileBinding>, e: &Error, ctx: Arc<BindingContext>) -> Action {
    tracing::warn!(error = %e, "counting a ProfileBinding's pods");
    Action::requeue(recount_after(ctx.bindings.state().len()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn binding() -> ProfileBinding {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
            "metadata": {"name": "b", "namespace": "ns", "generation": 2},
            "spec": {"profileRef": {"kind": "SeccompProfile", "name": "web"}, "image": "nginx"}}))
        .unwrap()
    }

    fn pod(name: &str, image: &str, profile: Option<&str>, phase: &str) -> Pod {
        let mut c = json!({"name": "c", "image": image});
        if let Some(p) = profile {
            c["securityContext"] = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": p}});
        }
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [c]}, "status": {"phase": phase}}))
        .unwrap()
    }

    fn ready(status: &str) -> ProfileStatus {
        serde_json::from_value(json!({"accepted": {"generation": 1, "digest": "d"},
            "conditions": [{"type": "Ready", "status": status, "reason": "x", "message": "on 1/2 nodes",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
        .unwrap()
    }

    #[test]
    fn counts_bound_and_unbound_pods_and_names_the_unbound() {
        let pods = [
            pod("bound", "nginx:1", Some("palisade/web.json"), "Running"),
            pod("early", "nginx:1", None, "Running"),
            pod("own", "nginx:1", Some("palisade/other.json"), "Pending"),
            pod("done", "nginx:1", None, "Succeeded"),
            pod("db", "postgres", None, "Running"),
        ];
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let s = status(
            &binding(),
            &pods,
            Some(Some(ready("True"))),
            "palisade",
            None,
            now.clone(),
        );
        assert_eq!((s.bound_pods, s.unbound_pods), (1, 2));
        assert_eq!(
            s.unbound,
            vec![
                UnboundPod {
                    name: "early".into(),
                    reason: "container \"c\" sets no seccomp profile".into()
                },
                UnboundPod {
                    name: "own".into(),
                    reason: "container \"c\" runs under Localhost palisade/other.json".into()
                },
            ]
        );
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.observed_generation, Some(2));
        let again = status(&binding(), &pods, Some(Some(ready("True"))), "palisade", Some(&s), now);
        assert_eq!(again, s, "nothing changed: the same status, so nothing is written");
    }

    #[test]
    fn a_reason_the_pod_chose_is_clipped() {
        let long = format!("palisade/{}.json", "é".repeat(2000));
        let mut tally = Tally::default();
        tally.add(&binding(), &[pod("p", "nginx", Some(&long), "Running")], "palisade");
        let reason = &tally.unbound[0].reason;
        assert!(
            reason.len() <= MAX_REASON + '…'.len_utf8() && reason.ends_with('…'),
            "{}",
            reason.len()
        );
    }

    #[test]
    fn many_bindings_are_counted_less_often() {
        assert_eq!(recount_after(1), RECOUNT_EVERY);
        assert_eq!(recount_after(300), RECOUNT_EVERY);
        assert_eq!(
            recount_after(10_000),
            Duration::from_secs(1000),
            "at most 10 lists a second"
        );
    }

    #[test]
    fn ready_follows_the_profile() {
        let b = binding();
        assert_eq!(readiness(&b, None).1, "ProfileMissing");
        assert_eq!(readiness(&b, Some(None)).1, "ProfileNotAccepted");
        let (s, reason, message) = readiness(&b, Some(Some(ready("False"))));
        assert_eq!((s, reason), ("False", "ProfileNotReady"));
        assert!(message.contains("on 1/2 nodes"), "{message}");
        assert_eq!(readiness(&b, Some(Some(ready("True")))).0, "True");
    }
}
