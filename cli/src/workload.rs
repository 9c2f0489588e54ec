//! `palisade learn --workload KIND/NAME`: a workload from no profile to enforced in one
//! command. It creates learning profiles for the workload (AppArmor in Complain, seccomp with
//! `SCMP_ACT_LOG`), binds them to the workload's pods with ProfileBindings (its own label
//! selector), restarts it so its pods start bound, waits until no new permission has appeared
//! for a while, and then shows (and with `--apply --enforce` writes) what was learned. Every
//! step looks before it acts, so a run that was interrupted continues where it stopped.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use palisade_domain::learn::Learning;
use palisade_domain::{AppArmorProfile, ProfileBinding, ProfileKind, SeccompProfile};
use serde_json::{Value, json};

use crate::cluster::Kind;
use crate::learn::{self, Learned};

/// The field manager of what this command writes.
const MANAGER: &str = "palisade-learn";
/// The annotation `kubectl rollout restart` sets on a pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The label on everything this command creates: the workload it learns for.
pub const LEARNED_FOR: &str = "palisade.dev/learned-for";

/// The kinds of workload it learns for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Pod,
}

impl WorkloadKind {
    fn word(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::Pod => "pod",
        }
    }
}

/// A workload named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.word(), self.name)
    }
}

/// Parses `--workload KIND/NAME` (kubectl's names and short names of the four kinds).
pub fn parse_workload(s: &str) -> Result<Workload, String> {
    let (kind, name) = s
        .split_once('/')
        .ok_or_else(|| format!("--workload {s}: KIND/NAME, for example deployment/web"))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
        "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
        "daemonset" | "daemonsets" | "ds" => WorkloadKind::DaemonSet,
        "pod" | "pods" | "po" => WorkloadKind::Pod,
        other => {
            return Err(format!(
                "--workload {s}: {other:?} is not a Deployment, StatefulSet, DaemonSet or Pod"
            ));
        }
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Err(format!("--workload {s}: {name:?} is not an object name"));
    }
    Ok(Workload {
        kind,
        name: name.to_string(),
    })
}

/// Parses a duration such as `90s`, `2m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 90s, 2m or 1h: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?}: a duration cannot be negative"))
}

/// What `learn --workload` is asked to do.
#[derive(Clone, Debug)]
pub struct Request {
    pub workload: Workload,
    pub namespace: String,
    /// One kind only; both when unset.
    pub kind: Option<Kind>,
    /// Finish once no new permission appeared for this long.
    pub quiet_for: Duration,
    /// Finish after this long in any case.
    pub duration: Duration,
    pub apply: bool,
    pub enforce: bool,
}

/// The name of the profiles learned for a workload: `<namespace>.<name>` (a namespace has no
/// dot, so two workloads' names never meet), kept a valid profile name.
pub fn profile_name(namespace: &str, workload: &Workload) -> String {
    let mut name = format!("{namespace}.{}", workload.name);
    name.truncate(palisade_domain::MAX_NAME_LEN);
    name.trim_end_matches(['-', '.']).to_string()
}

/// The annotation on a learning profile naming the UID of the ProfileBinding (in the
/// workload's namespace) it was created for: a later run continues only in a profile that
/// carries its own binding's UID, never in one someone else created under that name.
pub const CREATED_FOR: &str = "palisade.dev/created-for-binding";

/// The name of the binding of `kind`'s profile to the workload.
pub fn binding_name(workload: &Workload, kind: ProfileKind) -> String {
    let mut name = format!("{}-{}", workload.name, kind.slug());
    if name.len() > 253 {
        name = name[name.len() - 253..].trim_start_matches(['-', '.']).to_string();
    }
    name
}

/// The label selector of the workload's pods.
async fn selector_of(client: &Client, namespace: &str, w: &Workload) -> Result<LabelSelector> {
    let missing = || format!("{w} not found in namespace {namespace}");
    let selector = match w.kind {
        WorkloadKind::Deployment => get::<Deployment>(client, namespace, &w.name)
            .await?
            .with_context(missing)?
            .spec
            .selector
            .into(),
        WorkloadKind::StatefulSet => get::<StatefulSet>(client, namespace, &w.name)
            .await?
            .with_context(missing)?
            .spec
            .selector
            .into(),
        WorkloadKind::DaemonSet => get::<DaemonSet>(client, namespace, &w.name)
            .await?
            .with_context(missing)?
            .spec
            .selector
            .into(),
        WorkloadKind::Pod => {
            let pod = Api::<Pod>::namespaced(client.clone(), namespace)
                .get_opt(&w.name)
                .await?
                .with_context(missing)?;
            let labels = pod.metadata.labels.unwrap_or_default();
            if labels.is_empty() {
                bail!(
                    "{w} has no labels: a ProfileBinding selects pods by label (label it, or learn for its controller)"
                );
            }
            Some(LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            })
        }
    };
    selector.with_context(|| format!("{w} has no pod selector"))
}

/// A namespaced object, if it exists.
async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), namespace).get_opt(name).await?)
}

/// Sets the pod template's restart annotation of a workload of kind `K`.
async fn roll<K>(client: &Client, namespace: &str, name: &str, patch: &Value) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// The learning profile of `kind` named `name`, as created.
fn learning_profile(kind: ProfileKind, name: &str, w: &Workload, namespace: &str, binding_uid: &str) -> Value {
    let metadata = json!({"name": name, "labels": {LEARNED_FOR: label_value(namespace, w)},
        "annotations": {"palisade.dev/learned-for": format!("{w} in namespace {namespace}"), CREATED_FOR: binding_uid}});
    match kind {
        ProfileKind::AppArmorProfile => json!({"apiVersion": palisade_domain::api_version(), "kind": kind.name(),
            "metadata": metadata,
            "spec": {"mode": "Complain",
                     "policy": format!("profile {name} flags=(attach_disconnected,mediate_deleted) {{\n}}\n")}}),
        ProfileKind::SeccompProfile => json!({"apiVersion": palisade_domain::api_version(), "kind": kind.name(),
            "metadata": metadata, "spec": {"defaultAction": "SCMP_ACT_LOG"}}),
    }
}

/// A label value naming the workload (labels allow 63 characters).
fn label_value(namespace: &str, w: &Workload) -> String {
    let mut v = format!("{namespace}.{}.{}", w.kind.word(), w.name);
    v.truncate(63);
    v.trim_end_matches(['-', '.', '_']).to_string()
}

/// The binding of `kind`'s profile `profile` to the workload's pods.
pub fn binding(kind: ProfileKind, profile: &str, w: &Workload, namespace: &str, selector: &LabelSelector) -> Value {
    json!({"apiVersion": palisade_domain::api_version(), "kind": "ProfileBinding",
        "metadata": {"name": binding_name(w, kind), "namespace": namespace,
                     "labels": {LEARNED_FOR: label_value(namespace, w)}},
        "spec": {"profileRef": {"kind": kind.name(), "name": profile}, "selector": selector}})
}

/// The kinds asked for.
fn kinds(kind: Option<Kind>) -> Vec<ProfileKind> {
    match kind {
        Some(Kind::Apparmor) => vec![ProfileKind::AppArmorProfile],
        Some(Kind::Seccomp) => vec![ProfileKind::SeccompProfile],
        None => ProfileKind::ALL.to_vec(),
    }
}

fn kind_arg(kind: ProfileKind) -> Kind {
    match kind {
        ProfileKind::AppArmorProfile => Kind::Apparmor,
        ProfileKind::SeccompProfile => Kind::Seccomp,
    }
}

/// The profile `name` of `kind`: its UID and the binding UID it was created for.
async fn profile_owner(client: &Client, kind: ProfileKind, name: &str) -> Result<Option<(String, Option<String>)>> {
    let meta = match kind {
        ProfileKind::AppArmorProfile => Api::<AppArmorProfile>::all(client.clone())
            .get_opt(name)
            .await?
            .map(|p| p.metadata),
        ProfileKind::SeccompProfile => Api::<SeccompProfile>::all(client.clone())
            .get_opt(name)
            .await?
            .map(|p| p.metadata),
    };
    Ok(meta.map(|m| {
        let created_for = m.annotations.and_then(|a| a.get(CREATED_FOR).cloned());
        (m.uid.unwrap_or_default(), created_for)
    }))
}

async fn create<K>(client: &Client, obj: Value) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    Api::<K>::all(client.clone())
        .create(&PostParams::default(), &obj)
        .await?;
    Ok(())
}

/// The workload's pods that are not finishing.
async fn pods_of(client: &Client, namespace: &str, selector: &LabelSelector) -> Result<Vec<Pod>> {
    let s = kube::core::Selector::try_from(selector.clone())
        .map_err(|e| anyhow::anyhow!("the workload's selector: {}", e.0))?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels_from(&s))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect())
}

/// Restarts the workload: a rollout (the pod template's restart annotation, as `kubectl
/// rollout restart` sets it), or for a bare Pod, the same pod created again.
async fn restart(client: &Client, namespace: &str, w: &Workload) -> Result<()> {
    let now = Timestamp::now().to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
    match w.kind {
        WorkloadKind::Deployment => roll::<Deployment>(client, namespace, &w.name, &patch).await?,
        WorkloadKind::StatefulSet => roll::<StatefulSet>(client, namespace, &w.name, &patch).await?,
        WorkloadKind::DaemonSet => roll::<DaemonSet>(client, namespace, &w.name, &patch).await?,
        WorkloadKind::Pod => {
            let api = Api::<Pod>::namespaced(client.clone(), namespace);
            let mut pod = api.get(&w.name).await?;
            if let Some(owner) = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
            {
                bail!(
                    "{w} belongs to {} {}: learn for it instead (--workload {}/{}), so that its pods are restarted by their controller",
                    owner.kind,
                    owner.name,
                    owner.kind.to_lowercase(),
                    owner.name
                );
            }
            let uid = pod.metadata.uid.clone();
            pod.metadata = kube::core::ObjectMeta {
                name: pod.metadata.name.take(),
                namespace: pod.metadata.namespace.take(),
                labels: pod.metadata.labels.take(),
                annotations: pod.metadata.annotations.take(),
                ..Default::default()
            };
            pod.status = None;
            if let Some(spec) = pod.spec.as_mut() {
                spec.ephemeral_containers = None; // added by `kubectl debug`; refused on create
            }
            // Kept where it can be created again by hand should this stop half-way.
            let saved = std::env::temp_dir().join(format!("palisade-learn-{namespace}-{}.json", w.name));
            std::fs::write(&saved, serde_json::to_vec_pretty(&pod)?)
                .with_context(|| format!("saving {w} to {} before re-creating it", saved.display()))?;
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(&w.name, &params).await?;
            let started = Instant::now();
            while api.get_opt(&w.name).await?.is_some() {
                if started.elapsed() > Duration::from_secs(300) {
                    bail!(
                        "{w} is still terminating after 5 minutes; once it is gone, create it again: kubectl create -f {}",
                        saved.display()
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            api.create(&PostParams::default(), &pod)
                .await
                .with_context(|| format!("creating {w} again (its manifest: {})", saved.display()))?;
            let _ = std::fs::remove_file(&saved);
        }
    }
    Ok(())
}

/// The learning status of a profile.
async fn learning_of(client: &Client, kind: ProfileKind, name: &str) -> Result<Option<Learning>> {
    Ok(match kind {
        ProfileKind::AppArmorProfile => Api::<AppArmorProfile>::all(client.clone())
            .get_opt(name)
            .await?
            .and_then(|p| p.status)
            .and_then(|s| s.learning),
        ProfileKind::SeccompProfile => Api::<SeccompProfile>::all(client.clone())
            .get_opt(name)
            .await?
            .and_then(|p| p.status)
            .and_then(|s| s.learning),
    })
}

/// Whether every pod of the workload runs under each binding's profile.
fn all_bound(pods: &[Pod], bindings: &[ProfileBinding]) -> bool {
    !pods.is_empty()
        && pods.iter().all(|p| {
            bindings.iter().all(|b| {
                matches!(
                    palisade_domain::binding::standing(b, p, palisade_domain::SECCOMP_SUBDIR),
                    Some(Ok(()))
                )
            })
        })
}

/// What `learn --workload` did.
pub struct Outcome {
    /// What it created, in words (`AppArmorProfile shop-web (Complain)`).
    pub created: Vec<String>,
    /// Per kind, what learning found (and did, with `--apply`).
    pub learned: Vec<Learned>,
    /// The profiles as `--apply` leaves them and the bindings: what `--output-dir` writes.
    pub manifests: Vec<Value>,
}

/// Binds `kind`'s learning profile `name` to the workload's pods (a ProfileBinding in its
/// namespace, its UID the tenant's own) and creates the profile for it in learning mode, or
/// continues in the one an earlier run made for that binding. Refuses a binding or a profile
/// of that name that someone else made.
async fn bind(
    client: &Client,
    req: &Request,
    kind: ProfileKind,
    name: &str,
    selector: &LabelSelector,
    created: &mut Vec<String>,
    say: &mut impl FnMut(&str),
) -> Result<ProfileBinding> {
    let w = &req.workload;
    let ns = &req.namespace;
    let bindings_api: Api<ProfileBinding> = Api::namespaced(client.clone(), ns);
    let ours = label_value(ns, w);
    let bname = binding_name(w, kind);
    let existing = bindings_api.get_opt(&bname).await?;
    if let Some(b) = &existing
        && b.labels().get(LEARNED_FOR) != Some(&ours)
    {
        bail!(
            "ProfileBinding {ns}/{bname} exists and is not the one palisade learn made for {w}: rename or delete it, or learn for this workload under another name"
        );
    }
    // A profile of that name without a binding of ours was made by someone else: refuse
    // before binding the workload to it.
    let owner = profile_owner(client, kind, name).await?;
    if existing.is_none() && owner.is_some() {
        bail!(
            "{} {name} exists and was not created by palisade learn for {w} in {ns} (there is no ProfileBinding {ns}/{bname} it was made for): learning would take over someone else's profile",
            kind.name()
        );
    }
    let b = binding(kind, name, w, ns, selector);
    let applied = bindings_api
        .patch(&bname, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&b))
        .await
        .with_context(|| {
            format!(
                "binding {} {name} to {w} (is the ProfileBinding CRD installed?)",
                kind.name()
            )
        })?;
    if existing.is_none() {
        created.push(format!("ProfileBinding {ns}/{bname}"));
        say(&format!(
            "created ProfileBinding {ns}/{bname} ({} {name} to the pods of {w})",
            kind.name()
        ));
    }
    let uid = applied.uid().unwrap_or_default();
    match owner {
        None => {
            let obj = learning_profile(kind, name, w, ns, &uid);
            match kind {
                ProfileKind::AppArmorProfile => create::<AppArmorProfile>(client, obj).await?,
                ProfileKind::SeccompProfile => create::<SeccompProfile>(client, obj).await?,
            }
            let mode = match kind {
                ProfileKind::AppArmorProfile => "Complain",
                ProfileKind::SeccompProfile => "SCMP_ACT_LOG",
            };
            created.push(format!("{} {name} ({mode})", kind.name()));
            say(&format!("created {} {name} ({mode})", kind.name()));
        }
        Some((_, Some(owner))) if owner == uid => {
            say(&format!("{} {name} exists: learning continues in it", kind.name()));
        }
        Some(_) => bail!(
            "{} {name} exists and was not created by palisade learn for {w} in {ns} (its {CREATED_FOR} annotation does not name ProfileBinding {ns}/{bname}): learning would take over someone else's profile",
            kind.name()
        ),
    }
    Ok(applied)
}

/// Runs the whole loop; `say` receives each line of progress as it happens.
pub async fn run(client: Client, req: &Request, mut say: impl FnMut(&str)) -> Result<Outcome> {
    let w = &req.workload;
    let ns = &req.namespace;
    let selector = selector_of(&client, ns, w).await?;
    let name = profile_name(ns, w);
    let kinds = kinds(req.kind);
    let mut created = Vec::new();

    // Bindings first (each in the workload's namespace, so its UID is the tenant's own), then
    // the profiles created for them: a run continues only with its own objects.
    let mut bindings = Vec::new();
    for &kind in &kinds {
        bindings.push(bind(&client, req, kind, &name, &selector, &mut created, &mut say).await?);
    }

    // Restart only what does not run bound yet: a second run does not restart again. The
    // new pods need the profiles on their node first.
    if !all_bound(&pods_of(&client, ns, &selector).await?, &bindings) {
        for &kind in &kinds {
            wait_ready(&client, kind, &name, &mut say).await?;
        }
        restart(&client, ns, w).await?;
        say(&format!(
            "restarted {w}: its new pods start under the learning profiles"
        ));
    }

    let ended = wait_quiet(&client, req, &name, &kinds, &selector, &bindings, &mut say).await?;
    if req.enforce && !ended.learned {
        bail!(
            "not enforcing: {} (an enforced profile that learned nothing would stop the workload); run the command again once it has learned",
            ended.missing.join("; ")
        );
    }

    let mut learned = Vec::new();
    for &kind in &kinds {
        learned.push(learn::learn(client.clone(), &name, Some(kind_arg(kind)), req.apply, req.enforce).await?);
    }
    // What a GitOps repository holds: the profiles as --apply (--enforce) leaves them, and
    // the bindings as they are.
    let mut manifests: Vec<Value> = learned.iter().map(|l| l.manifest.clone()).collect();
    manifests.extend(bindings.iter().map(|b| {
        json!({"apiVersion": palisade_domain::api_version(), "kind": "ProfileBinding",
            "metadata": {"name": b.name_any(), "namespace": ns, "labels": b.labels()},
            "spec": b.spec})
    }));
    // A running container keeps the seccomp filter it started with: enforcing takes a
    // restart (AppArmor changes in place, but one rollout serves both), once the nodes hold
    // the enforcing profiles. Always, so a run interrupted before it rolls still rolls.
    if req.apply && req.enforce {
        for &kind in &kinds {
            wait_ready(&client, kind, &name, &mut say).await?;
        }
        restart(&client, ns, w).await?;
        say(&format!(
            "restarted {w}: its new pods start under the enforced profiles"
        ));
    }
    Ok(Outcome {
        created,
        learned,
        manifests,
    })
}

/// How the wait for learning ended.
struct Ended {
    /// Every kind learned something on a reporting node from bound pods, and it went quiet.
    learned: bool,
    /// What was missing for that, in words.
    missing: Vec<String>,
}

/// Waits until profile `name` of `kind` is Ready at its current generation (its nodes hold
/// what it says), at most two minutes.
async fn wait_ready(client: &Client, kind: ProfileKind, name: &str, say: &mut impl FnMut(&str)) -> Result<()> {
    let started = Instant::now();
    loop {
        let (generation, status) = match kind {
            ProfileKind::AppArmorProfile => Api::<AppArmorProfile>::all(client.clone())
                .get(name)
                .await
                .map(|p| (p.metadata.generation, p.status))?,
            ProfileKind::SeccompProfile => Api::<SeccompProfile>::all(client.clone())
                .get(name)
                .await
                .map(|p| (p.metadata.generation, p.status))?,
        };
        let ready = status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == "Ready");
        if ready.is_some_and(|c| c.status == "True" && c.observed_generation == generation) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "{} {name} is not Ready on its nodes after 2 minutes ({}): `palisade status {name}` shows where it stands",
                kind.name(),
                ready.map_or("not reconciled", |c| c.message.as_str())
            );
        }
        if started.elapsed().as_secs() % 15 < 2 {
            say(&format!("waiting for {} {name} to be Ready on its nodes", kind.name()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until the workload's pods are bound and no new permission appeared for
/// `quiet_for`, or `duration` passed, saying where it stands as it goes.
async fn wait_quiet(
    client: &Client,
    req: &Request,
    name: &str,
    kinds: &[ProfileKind],
    selector: &LabelSelector,
    bindings: &[ProfileBinding],
    say: &mut impl FnMut(&str),
) -> Result<Ended> {
    let started = Instant::now();
    let mut hinted = false;
    loop {
        let mut missing = Vec::new();
        let pods = pods_of(client, &req.namespace, selector).await?;
        let bound = pods
            .iter()
            .filter(|p| all_bound(std::slice::from_ref(p), bindings))
            .count();
        let mut parts = Vec::new();
        let mut newest: Option<Timestamp> = None;
        let mut reporting = true;
        for &kind in kinds {
            let l = learning_of(client, kind, name).await?;
            let (n, nodes) = l.as_ref().map_or((0, 0), |l| (l.new_permissions, l.nodes));
            reporting &= nodes > 0;
            if nodes == 0 {
                missing.push(format!("no node reports learning for {} {name}", kind.name()));
            } else if n == 0 {
                missing.push(format!("{} {name} learned nothing", kind.name()));
            }
            if let Some(t) = l.as_ref().and_then(|l| l.last_new_at.as_ref()) {
                newest = Some(newest.map_or(t.0, |n| n.max(t.0)));
            }
            let what = match kind {
                ProfileKind::AppArmorProfile => "AppArmor rules",
                ProfileKind::SeccompProfile => "syscalls",
            };
            parts.push(format!("{n} {what}"));
        }
        let quiet = newest.map(|t| Timestamp::now().duration_since(t).unsigned_abs());
        say(&format!(
            "learning: {bound}/{} pods bound; {}; {} ({}s of at most {}s)",
            pods.len(),
            parts.join(", "),
            match quiet {
                Some(q) => format!("last new permission {}s ago", q.as_secs()),
                None => "nothing learned yet".into(),
            },
            started.elapsed().as_secs(),
            req.duration.as_secs()
        ));
        if bound == 0 {
            missing.push(format!(
                "no pod of {} runs bound to the learning profiles",
                req.workload
            ));
        }
        let is_quiet = quiet.is_some_and(|q| q >= req.quiet_for);
        if bound > 0 && reporting && is_quiet {
            say(&format!("quiet for {}s: done learning", req.quiet_for.as_secs()));
            return Ok(Ended {
                learned: missing.is_empty(),
                missing,
            });
        }
        if started.elapsed() >= req.duration {
            say("--duration passed: done learning");
            if !is_quiet {
                missing.push(format!(
                    "new permissions were still appearing (quiet for less than {}s)",
                    req.quiet_for.as_secs()
                ));
            }
            return Ok(Ended {
                learned: missing.is_empty(),
                missing,
            });
        }
        if !hinted && started.elapsed() > Duration::from_secs(90) {
            if bound == 0 && !pods.is_empty() {
                hinted = true;
                say(&format!(
                    "no pod of {} is bound yet: were they created while the binder was unreachable? (kubectl get profilebinding -n {} shows what each binding counts; the chart's profileBinding.enabled)",
                    req.workload, req.namespace
                ));
            } else if !reporting && bound > 0 {
                hinted = true;
                say("no node reports learning for these profiles yet: is the chart's learning.enabled on?");
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_named_as_kubectl_names_them() {
        assert_eq!(
            parse_workload("deploy/web").unwrap(),
            Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into()
            }
        );
        assert_eq!(
            parse_workload("StatefulSet/db").unwrap().kind,
            WorkloadKind::StatefulSet
        );
        assert_eq!(parse_workload("ds/agent").unwrap().kind, WorkloadKind::DaemonSet);
        assert_eq!(parse_workload("po/one").unwrap().kind, WorkloadKind::Pod);
        assert!(parse_workload("web").unwrap_err().contains("KIND/NAME"));
        assert!(parse_workload("job/x").unwrap_err().contains("not a Deployment"));
        assert!(parse_workload("deploy/Web").unwrap_err().contains("not an object name"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn names_are_valid_and_bindings_select_the_workloads_pods() {
        let w = parse_workload("deployment/web").unwrap();
        assert_eq!(profile_name("shop", &w), "shop.web");
        let long = Workload {
            kind: WorkloadKind::Deployment,
            name: "a".repeat(250),
        };
        assert!(profile_name("shop", &long).len() <= palisade_domain::MAX_NAME_LEN);
        let selector: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        let b: ProfileBinding =
            serde_json::from_value(binding(ProfileKind::SeccompProfile, "shop-web", &w, "shop", &selector)).unwrap();
        assert_eq!(b.metadata.name.as_deref(), Some("web-seccomp"));
        assert_eq!(b.spec.selector, Some(selector));
        assert!(palisade_domain::binding::problem(&b).is_none());
        for kind in ProfileKind::ALL {
            let p = learning_profile(kind, "shop-web", &w, "shop", "uid-1");
            assert_eq!(p["metadata"]["annotations"][CREATED_FOR], "uid-1");
            assert_eq!(p["metadata"]["labels"][LEARNED_FOR], "shop.deployment.web");
        }
        let aa: AppArmorProfile = serde_json::from_value(learning_profile(
            ProfileKind::AppArmorProfile,
            "shop-web",
            &w,
            "shop",
            "u",
        ))
        .unwrap();
        assert_eq!(aa.spec.mode, palisade_domain::AppArmorMode::Complain);
        let sc: SeccompProfile = serde_json::from_value(learning_profile(
            ProfileKind::SeccompProfile,
            "shop-web",
            &w,
            "shop",
            "u",
        ))
        .unwrap();
        assert_eq!(palisade_domain::wire_name(sc.spec.default_action), "SCMP_ACT_LOG");
    }
}
