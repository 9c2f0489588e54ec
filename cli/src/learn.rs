//! `palisade learn`: what the nodes learned for a profile, as a diff against its policy;
//! `--apply` writes the rules into the profile, `--enforce` also leaves learning mode.
//! `-o manifest` and `--output-dir` give the profile as `--apply` would leave it, the
//! object a GitOps repository holds, without changing the cluster.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::core::object::{HasSpec, HasStatus};
use kube::{Client, Resource, ResourceExt};
use palisade_domain::learn::{self, Learning, Suggestion};
use palisade_domain::{
    AppArmorMode, AppArmorProfile, AppArmorProfileSpec, ProfileKind, ProfileObject, SeccompProfile, SeccompProfileSpec,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cluster::Kind;

/// The annotation `kubectl apply` keeps its last input in: not part of a manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What `learn` found and did.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    pub kind: ProfileKind,
    pub name: String,
    /// `Complain`/`Enforce` for AppArmor; the default action for seccomp.
    pub mode: String,
    pub learning: Option<Learning>,
    /// The rules the profile lacks (AppArmor: combined per path), in the order written.
    pub missing: Vec<String>,
    /// Learned rules a structured (`abstract`) AppArmor profile cannot express.
    pub unexpressed: Vec<String>,
    /// The profile's text before and after (raw AppArmor policy; seccomp rules as JSON;
    /// the `abstract` as YAML).
    pub before: String,
    pub after: String,
    /// Whether the profile was changed.
    pub applied: bool,
    pub enforced: bool,
    /// The profile as `--apply` (with `--enforce`, when given) leaves it, as a manifest:
    /// what `-o manifest` prints and `--output-dir` writes.
    #[serde(skip)]
    pub manifest: Value,
}

/// Finds the profile, computes what learning adds, and applies it when asked. The write
/// is conditional on the profile being as read; when it changed in between (the operator
/// writes its status often while nodes learn), it is read and computed again. `enforce`
/// also shapes [`Learned::manifest`] when nothing is applied.
pub async fn learn(client: Client, name: &str, kind: Option<Kind>, apply: bool, enforce: bool) -> Result<Learned> {
    let mut attempt = 1;
    loop {
        match learn_once(client.clone(), name, kind, apply, enforce).await {
            Err(e) if attempt < 5 && is_conflict(&e) => attempt += 1,
            done => return done,
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409)
}

async fn learn_once(client: Client, name: &str, kind: Option<Kind>, apply: bool, enforce: bool) -> Result<Learned> {
    let aa: Api<AppArmorProfile> = Api::all(client.clone());
    let sc: Api<SeccompProfile> = Api::all(client.clone());
    let (a, s) = match kind {
        Some(Kind::Apparmor) => (aa.get_opt(name).await?, None),
        Some(Kind::Seccomp) => (None, sc.get_opt(name).await?),
        None => (aa.get_opt(name).await?, sc.get_opt(name).await?),
    };
    let stamp = k8s_openapi::jiff::Timestamp::now().to_string()[..10].to_string();
    match (a, s) {
        (Some(_), Some(_)) => {
            bail!("both an AppArmorProfile and a SeccompProfile are named {name}: say which with --kind")
        }
        (None, None) => bail!("no AppArmorProfile or SeccompProfile named {name}"),
        (Some(p), None) => {
            let edit = edit_apparmor(&p, &stamp, enforce)?;
            conclude(&aa, p, edit, apply).await
        }
        (None, Some(p)) => {
            let edit = edit_seccomp(&p, enforce)?;
            conclude(&sc, p, edit, apply).await
        }
    }
}

/// The suggestions to write: only rules of learning's own grammar (the operator already
/// leaves others out; a status is text anyone with write access to it could have set).
fn rules_of(learning: Option<&Learning>, kind: ProfileKind) -> Vec<String> {
    learning
        .map(|l| {
            l.suggestions
                .iter()
                .filter(|s| learn::is_learnable_rule(kind, &s.rule))
                .map(|s| s.rule.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn learning_of<K: ProfileObject>(p: &K) -> Option<Learning> {
    p.profile_status().and_then(|s| s.learning.clone())
}

/// A profile's spec as learning leaves it, and what the report shows of the change. The
/// one place the learned rules are written: `--apply`, `-o manifest` and `--output-dir`
/// all take [`Edit::spec`].
#[derive(Debug, Clone, PartialEq)]
struct Edit<S> {
    /// The whole spec with the learned rules, and out of learning mode when enforcing.
    spec: S,
    /// The texts the diff compares.
    before: String,
    after: String,
    missing: Vec<String>,
    unexpressed: Vec<String>,
    /// The mode before and after (AppArmor: Complain/Enforce; seccomp: the default action).
    mode_before: String,
    mode_after: String,
    /// Whether enforcing changed the spec.
    enforces: bool,
}

/// An AppArmorProfile with its learned rules: in the raw policy's profile blocks, or in the
/// `abstract` lists; with `enforce`, in Enforce mode. `stamp` dates the policy's comment.
fn edit_apparmor(p: &AppArmorProfile, stamp: &str, enforce: bool) -> Result<Edit<AppArmorProfileSpec>> {
    let learning = learning_of(p);
    let rules = learn::combine(&rules_of(learning.as_ref(), ProfileKind::AppArmorProfile));
    let mut spec = p.spec.clone();
    let (before, after, missing, unexpressed) = if let Some(policy) = &p.spec.policy {
        let (after, missing) =
            learn::add_to_policy(policy, &rules, stamp).map_err(|e| anyhow::anyhow!("spec.policy: {e}"))?;
        if after != *policy {
            spec.policy = Some(after.clone());
        }
        (policy.clone(), after, missing, vec![])
    } else {
        let current = p.spec.abstract_.clone().unwrap_or_default();
        let mut new = current.clone();
        let (missing, unexpressed) = learn::add_to_abstract(&mut new, &rules);
        let texts = (yaml_serde::to_string(&current)?, yaml_serde::to_string(&new)?);
        if new != current {
            spec.abstract_ = Some(new);
        }
        (texts.0, texts.1, missing, unexpressed)
    };
    let enforces = enforce && p.spec.mode != AppArmorMode::Enforce;
    if enforces {
        spec.mode = AppArmorMode::Enforce;
    }
    Ok(Edit {
        mode_before: mode_name(p.spec.mode).into(),
        mode_after: mode_name(spec.mode).into(),
        spec,
        before,
        after,
        missing,
        unexpressed,
        enforces,
    })
}

fn mode_name(m: AppArmorMode) -> &'static str {
    match m {
        AppArmorMode::Enforce => "Enforce",
        AppArmorMode::Complain => "Complain",
    }
}

/// A SeccompProfile with its learned syscalls allowed; with `enforce`, refusing what it
/// logged by default (EPERM unless defaultErrnoRet says otherwise), its LOG rules gone.
fn edit_seccomp(p: &SeccompProfile, enforce: bool) -> Result<Edit<SeccompProfileSpec>> {
    let learning = learning_of(p);
    let mut spec = p.spec.clone();
    let missing = learn::add_to_seccomp(&mut spec, &rules_of(learning.as_ref(), ProfileKind::SeccompProfile));
    let enforces = enforce && learn::enforce_seccomp(&mut spec);
    let text = |s: &SeccompProfileSpec| -> Result<String> {
        Ok(format!(
            "defaultAction: {}\n{}",
            palisade_domain::wire_name(s.default_action),
            yaml_serde::to_string(&serde_json::json!({"syscalls": s.syscalls}))?
        ))
    };
    Ok(Edit {
        before: text(&p.spec)?,
        after: text(&spec)?,
        mode_before: palisade_domain::wire_name(p.spec.default_action),
        mode_after: palisade_domain::wire_name(spec.default_action),
        missing,
        unexpressed: vec![],
        enforces,
        spec,
    })
}

/// Writes the edit when asked (only what changed, conditional on the profile being as
/// read) and reports, with the manifest of the edited profile.
async fn conclude<K>(api: &Api<K>, p: K, edit: Edit<K::Spec>, apply: bool) -> Result<Learned>
where
    K: ProfileObject + HasSpec + HasStatus + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::Spec: Serialize,
{
    let change = merge_patch(&serde_json::to_value(p.spec())?, &serde_json::to_value(&edit.spec)?);
    let applied = apply && change.is_some();
    if let Some(spec) = change.filter(|_| apply) {
        patch(api, &p, spec).await?;
    }
    let learning = learning_of(&p);
    let name = p.name_any();
    let manifest = manifest(p, edit.spec)?;
    Ok(Learned {
        kind: K::KIND,
        name,
        mode: if applied { edit.mode_after } else { edit.mode_before },
        learning,
        missing: edit.missing,
        unexpressed: edit.unexpressed,
        before: edit.before,
        after: edit.after,
        applied,
        enforced: applied && edit.enforces,
        manifest,
    })
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`; `None` when they are equal.
/// A field `new` lacks is set to null (removed: an `abstract` list emptied by learning is
/// gone, not left as it was); arrays and other values are replaced whole.
fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return Some(new.clone());
    };
    let mut patch: Map<String, Value> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| (k.clone(), Value::Null))
        .collect();
    for (k, v) in new {
        let change = match old.get(k) {
            Some(was) => merge_patch(was, v),
            None => Some(v.clone()),
        };
        if let Some(change) = change {
            patch.insert(k.clone(), change);
        }
    }
    Some(Value::Object(patch))
}

/// A merge patch of `spec`, refused if the profile changed since it was read.
async fn patch<K>(api: &Api<K>, p: &K, spec: Value) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({"metadata": {"resourceVersion": p.resource_version()}, "spec": spec});
    api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(body))
        .await
        .with_context(|| format!("updating {} {}", K::kind(&()), p.name_any()))?;
    Ok(())
}

/// `p` with `spec` as a GitOps repository holds it: apiVersion, kind, name (and namespace),
/// labels, annotations other than kubectl's last-applied-configuration, and the spec;
/// nothing the API server sets (uid, resourceVersion, generation, managedFields,
/// creationTimestamp, status).
fn manifest<K>(mut p: K, spec: K::Spec) -> Result<Value>
where
    K: Resource + HasSpec + HasStatus + Serialize,
{
    let meta = p.meta();
    let annotations = meta.annotations.clone().map(|mut a| {
        a.remove(LAST_APPLIED);
        a
    });
    *p.meta_mut() = ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        labels: meta.labels.clone().filter(|l| !l.is_empty()),
        annotations: annotations.filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
    *p.spec_mut() = spec;
    *p.status_mut() = None;
    Ok(serde_json::to_value(&p)?)
}

/// Writes each object as YAML into `dir` (created when missing): a SeccompProfile or an
/// AppArmorProfile to `<kind>-<name>.yaml` (`seccomp-web.yaml`, `apparmor-web.yaml`), a
/// ProfileBinding to `binding-<name>.yaml`. Every file name is checked before any is
/// written; each file is written whole or not at all (a temporary file beside it, renamed
/// over it). Returns the paths written, in the order of `objects`.
pub fn write_manifests<T: Serialize>(dir: &Path, objects: &[T]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let object = serde_json::to_value(object)?;
        let file = dir.join(manifest_file(&object).with_context(|| format!("object {}", i + 1))?);
        if files.iter().any(|(f, _)| *f == file) {
            bail!("object {}: a second object for {}", i + 1, file.display());
        }
        files.push((file, yaml_serde::to_string(&object)?));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    files
        .into_iter()
        .map(|(path, text)| {
            write_atomically(dir, &path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The file name [`write_manifests`] gives an object, from its kind and name.
fn manifest_file(object: &Value) -> Result<String> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let prefix = match kind {
        "ProfileBinding" => "binding",
        other => match ProfileKind::from_name(other) {
            Some(k) => k.slug(),
            None => bail!("kind: {other:?} is not a SeccompProfile, AppArmorProfile or ProfileBinding"),
        },
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        bail!("metadata.name: {name:?} is not an object name (lowercase letters, digits, '-' and '.')");
    }
    Ok(format!("{prefix}-{name}.yaml"))
}

/// Writes `bytes` to `path` through a temporary file in `dir` renamed over it, so a reader
/// never sees a partial file. The file gets the usual permissions (0666 less the umask).
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".palisade-").suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut file = builder.tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What `-o manifest` and `--output-dir` say beside the manifest (on stderr): what it
/// adds, the mode it leaves the profile in, and the learned rules it could not hold.
pub fn manifest_notes(l: &Learned) -> Vec<String> {
    let (field, pointer) = match l.kind {
        ProfileKind::AppArmorProfile => ("mode", "/spec/mode"),
        ProfileKind::SeccompProfile => ("defaultAction", "/spec/defaultAction"),
    };
    let mode = l.manifest.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let added = match l.missing.len() {
        0 => "no learned rule to add".to_string(),
        n => format!("{n} learned rule(s) added"),
    };
    let mut notes = vec![format!(
        "{} {}: {added}, {field} {mode}; the cluster is unchanged (kubectl apply -f applies it)",
        l.kind.name(),
        l.name
    )];
    notes.extend(
        l.unexpressed
            .iter()
            .map(|r| format!("warning: `{r}` cannot be written into spec.abstract; a raw spec.policy can have it")),
    );
    notes.into_iter().map(|n| learn::printable(&n)).collect()
}

fn ago(s: &Suggestion) -> String {
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - s.last_seen.0.as_second()).max(0);
    age(secs)
}

/// `42s`, `5m`, `3h`, `2d`, as kubectl prints ages.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The report: what was learned, then the change as a diff.
/// The report for a terminal: [`report`] with every control character escaped (rules, node
/// names and policy text come from the API and may hold anything).
pub fn text(l: &Learned) -> String {
    report(l)
        .lines()
        .map(learn::printable)
        .map(|line| line + "\n")
        .collect()
}

fn report(l: &Learned) -> String {
    let mut out = String::new();
    let kind = l.kind.name();
    let Some(learning) = &l.learning else {
        out.push_str(&format!(
            "{kind} {} ({}): nothing learned. {}\n",
            l.name,
            l.mode,
            match l.kind {
                ProfileKind::AppArmorProfile => "Nodes learn while the profile is in Complain mode and its pods run.",
                ProfileKind::SeccompProfile =>
                    "Nodes learn while the profile's filter logs (SCMP_ACT_LOG) and its pods run.",
            }
        ));
        if l.enforced {
            out.push_str(&format!("Switched to {}.\n", l.mode));
        }
        return out;
    };
    let quiet = learning
        .last_new_at
        .as_ref()
        .map(|t| {
            let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()).max(0);
            format!(", the last new one {} ago", age(secs))
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "{kind} {} ({}): {} new permission(s) seen on {} node(s){quiet}\n\n",
        l.name, l.mode, learning.new_permissions, learning.nodes
    ));
    let mut table = crate::table::new(&["RULE", "COUNT", "LAST", "NODES"], false);
    crate::table::widen(&mut table, 1, 6, true);
    crate::table::widen(&mut table, 2, 8, false);
    for s in &learning.suggestions {
        let more = s.node_count as usize - s.nodes.len().min(s.node_count as usize);
        let nodes = s.nodes.join(",") + &if more > 0 { format!(" +{more}") } else { String::new() };
        table.add_row([s.rule.as_str(), &s.count.to_string(), &ago(s), &nodes].map(|t| crate::table::cell(t, None)));
    }
    for line in crate::table::lines(&table) {
        out.push_str(&line);
        out.push('\n');
    }
    if learning.omitted_suggestions > 0 {
        out.push_str(&format!("({} more left out)\n", learning.omitted_suggestions));
    }
    out.push('\n');
    if l.missing.is_empty() {
        out.push_str("The profile already has every learned rule.\n");
    } else {
        out.push_str(&diff(&l.before, &l.after));
    }
    for r in &l.unexpressed {
        out.push_str(&format!(
            "warning: `{r}` cannot be written into spec.abstract; a raw spec.policy can have it\n"
        ));
    }
    match (l.applied, l.enforced) {
        (true, true) => out.push_str(&format!("\nApplied, and switched to {}.\n", l.mode)),
        (true, false) => out.push_str("\nApplied.\n"),
        (false, _) if !l.missing.is_empty() => {
            out.push_str("\nNothing changed: --apply writes these rules, --apply --enforce also enforces.\n")
        }
        _ => {}
    }
    out
}

/// The whole text with each line marked: unchanged `  `, removed `- `, added `+ `. Myers'
/// diff (`similar`): time grows with the size times the number of changes, memory with the
/// size, and past a second the diff is still correct, only perhaps not the shortest.
fn diff(before: &str, after: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let lines = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(1))
        .diff_slices(&a, &b);
    let mut out = String::from("--- current\n+++ with the learned rules\n");
    for change in lines.iter_all_changes() {
        let mark = match change.tag() {
            similar::ChangeTag::Equal => ' ',
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        out.push_str(&format!("{mark} {}\n", change.value()));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// A learning status with these suggested rules, as the operator merges it.
    fn learning(rules: &[&str]) -> serde_json::Value {
        let at = "2026-01-02T03:04:05Z";
        json!({"learning": {"newPermissions": rules.len(), "nodes": 1, "suggestions": rules.iter().map(|r| json!({
            "rule": r, "count": 1, "firstSeen": at, "lastSeen": at, "nodes": ["node-0"], "nodeCount": 1})).collect::<Vec<_>>()}})
    }

    /// A profile as the API server returns it: server fields, kubectl's annotation, a status.
    fn live<K: serde::de::DeserializeOwned>(kind: &str, spec: serde_json::Value, rules: &[&str]) -> K {
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "web", "uid": "0c7e", "resourceVersion": "42", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "palisade.dev/v1alpha1"}],
                "labels": {"team": "shop"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "owner": "ops"}},
            "spec": spec, "status": learning(rules)}))
        .unwrap()
    }

    /// What the API server makes of `--apply`'s patch: the spec as read with it merged.
    fn applied<S: serde::Serialize>(old: &S, new: &S) -> serde_json::Value {
        let (old, new) = (serde_json::to_value(old).unwrap(), serde_json::to_value(new).unwrap());
        let mut spec = old.clone();
        json_patch::merge(&mut spec, &super::merge_patch(&old, &new).expect("a change"));
        spec
    }

    #[test]
    fn a_merge_patch_turns_the_old_value_into_the_new() {
        let cases = [
            (
                json!({"a": 1, "b": {"c": [1], "d": 2}}),
                json!({"a": 1, "b": {"c": [1, 2]}}),
            ),
            (json!({"a": {"b": 1}}), json!({"a": [1]})),
            (json!({"a": [1]}), json!({"a": {"b": {"c": 1}}, "e": "x"})),
            (
                json!({"mode": "Complain", "policy": "p"}),
                json!({"mode": "Enforce", "policy": "p"}),
            ),
        ];
        for (old, new) in cases {
            let patch = super::merge_patch(&old, &new).unwrap();
            let mut merged = old.clone();
            json_patch::merge(&mut merged, &patch);
            assert_eq!(merged, new, "{old} + {patch}");
        }
        assert_eq!(
            super::merge_patch(&json!({"a": 1, "b": 2}), &json!({"a": 1, "b": 3})),
            Some(json!({"b": 3})),
            "only what changed"
        );
        assert_eq!(super::merge_patch(&json!({"a": [1]}), &json!({"a": [1]})), None);
    }

    #[test]
    fn apparmor_rules_go_into_the_policy_and_enforce_switches_the_mode() {
        let policy = "profile web flags=(attach_disconnected) {\n}\n";
        let p: super::AppArmorProfile = live(
            "AppArmorProfile",
            json!({"mode": "Complain", "policy": policy}),
            &["owner /run/app.pid w,", "capability chown,"],
        );
        let edit = super::edit_apparmor(&p, "2026-01-02", false).unwrap();
        let new = edit.spec.policy.as_deref().unwrap();
        assert!(
            new.contains("  # learned by palisade (2026-01-02)\n") && new.contains("\n  owner /run/app.pid w,\n"),
            "{new}"
        );
        assert_eq!(edit.spec.mode, palisade_domain::AppArmorMode::Complain);
        assert_eq!(
            (edit.mode_before.as_str(), edit.mode_after.as_str()),
            ("Complain", "Complain")
        );
        assert!(!edit.enforces);
        assert_eq!(applied(&p.spec, &edit.spec), serde_json::to_value(&edit.spec).unwrap());

        let enforced = super::edit_apparmor(&p, "2026-01-02", true).unwrap();
        assert_eq!(enforced.spec.mode, palisade_domain::AppArmorMode::Enforce);
        assert_eq!(enforced.spec.policy, edit.spec.policy);
        assert!(enforced.enforces);
        assert_eq!(enforced.mode_after, "Enforce");
    }

    /// A path learned writable moves from the read-only list to the read-write one: the read-only
    /// list, now empty, is gone from the spec, and `--apply`'s patch removes it too (merged
    /// into the old `abstract`, a patch of the new one alone would leave the path read-only).
    #[test]
    fn an_abstract_list_emptied_by_learning_is_removed_by_the_patch() {
        let p: super::AppArmorProfile = live(
            "AppArmorProfile",
            json!({"mode": "Complain", "abstract": {"filesystem": {"readOnlyPaths": ["/data/app.db"]}}}),
            &["owner /data/app.db w,", "signal (send) set=(term) peer=web,"],
        );
        let edit = super::edit_apparmor(&p, "2026-01-02", false).unwrap();
        let fs = edit.spec.abstract_.as_ref().unwrap().filesystem.as_ref().unwrap();
        assert!(fs.read_only_paths.is_empty());
        assert_eq!(fs.read_write_paths.len(), 1);
        assert_eq!(edit.unexpressed, ["signal (send) set=(term) peer=web,"]);
        let patch = super::merge_patch(
            &serde_json::to_value(&p.spec).unwrap(),
            &serde_json::to_value(&edit.spec).unwrap(),
        )
        .unwrap();
        assert_eq!(
            patch["abstract"]["filesystem"]["readOnlyPaths"],
            serde_json::Value::Null
        );
        assert_eq!(applied(&p.spec, &edit.spec), serde_json::to_value(&edit.spec).unwrap());
    }

    #[test]
    fn the_manifest_notes_say_what_it_adds_and_what_it_cannot_hold() {
        let p: super::AppArmorProfile = live(
            "AppArmorProfile",
            json!({"mode": "Complain", "abstract": {}}),
            &["capability chown,", "signal (send) set=(term) peer=web,"],
        );
        let edit = super::edit_apparmor(&p, "2026-01-02", true).unwrap();
        let learned = super::Learned {
            kind: super::ProfileKind::AppArmorProfile,
            name: "web".into(),
            mode: edit.mode_before.clone(),
            learning: super::learning_of(&p),
            missing: edit.missing.clone(),
            unexpressed: edit.unexpressed.clone(),
            before: edit.before.clone(),
            after: edit.after.clone(),
            applied: false,
            enforced: false,
            manifest: super::manifest(p, edit.spec).unwrap(),
        };
        assert_eq!(
            super::manifest_notes(&learned),
            [
                "AppArmorProfile web: 1 learned rule(s) added, mode Enforce; the cluster is unchanged (kubectl apply -f applies it)",
                "warning: `signal (send) set=(term) peer=web,` cannot be written into spec.abstract; a raw spec.policy can have it",
            ]
        );
    }

    #[test]
    fn seccomp_allows_the_learned_syscalls_and_enforce_refuses_the_rest() {
        let p: super::SeccompProfile = live(
            "SeccompProfile",
            json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["ptrace"], "action": "SCMP_ACT_LOG"}]}),
            &["read", "openat", "mkdir"],
        );
        let edit = super::edit_seccomp(&p, false).unwrap();
        assert_eq!(edit.missing, ["mkdir", "openat"]);
        assert_eq!(edit.spec.syscalls.len(), 3);
        assert_eq!(edit.mode_after, "SCMP_ACT_LOG");
        assert_eq!(applied(&p.spec, &edit.spec), serde_json::to_value(&edit.spec).unwrap());

        let enforced = super::edit_seccomp(&p, true).unwrap();
        assert_eq!(
            serde_json::to_value(&enforced.spec).unwrap(),
            json!({"defaultAction": "SCMP_ACT_ERRNO", "state": "Enabled", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir", "openat"], "action": "SCMP_ACT_ALLOW"}]}),
            "the LOG rule goes"
        );
        assert!(enforced.enforces);
        assert_eq!(
            (enforced.mode_before.as_str(), enforced.mode_after.as_str()),
            ("SCMP_ACT_LOG", "SCMP_ACT_ERRNO")
        );
        assert_eq!(
            applied(&p.spec, &enforced.spec),
            serde_json::to_value(&enforced.spec).unwrap()
        );
    }

    #[test]
    fn the_manifest_holds_what_a_repository_holds_and_nothing_the_server_set() {
        let p: super::SeccompProfile = live("SeccompProfile", json!({"defaultAction": "SCMP_ACT_LOG"}), &["mkdir"]);
        let edit = super::edit_seccomp(&p, true).unwrap();
        let manifest = super::manifest(p, edit.spec.clone()).unwrap();
        assert_eq!(
            manifest,
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
                "metadata": {"name": "web", "labels": {"team": "shop"}, "annotations": {"owner": "ops"}},
                "spec": {"defaultAction": "SCMP_ACT_ERRNO", "state": "Enabled",
                         "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]}})
        );
        let back: super::SeccompProfile = serde_json::from_value(manifest).unwrap();
        assert_eq!(back.spec, edit.spec);

        let mut bare: super::AppArmorProfile = live("AppArmorProfile", json!({"policy": "profile web {\n}\n"}), &[]);
        bare.metadata.labels = Some(Default::default());
        bare.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            )]
            .into(),
        );
        let spec = bare.spec.clone();
        assert_eq!(
            super::manifest(bare, spec).unwrap()["metadata"],
            json!({"name": "web"}),
            "no empty labels or annotations"
        );
    }

    #[test]
    fn manifests_are_written_whole_under_their_kind_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("repo/palisade");
        let objects = [
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": "web"},
                   "spec": {"defaultAction": "SCMP_ACT_ERRNO"}}),
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": "web"},
                   "spec": {"policy": "profile web {\n}\n"}}),
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
                   "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"profileRef": {"kind": "SeccompProfile", "name": "web"}, "image": "*"}}),
        ];
        let paths = super::write_manifests(&out, &objects).unwrap();
        assert_eq!(
            paths,
            ["seccomp-web.yaml", "apparmor-web.yaml", "binding-web.yaml"].map(|f| out.join(f))
        );
        for (path, object) in paths.iter().zip(&objects) {
            let text = std::fs::read_to_string(path).unwrap();
            assert_eq!(yaml_serde::from_str::<serde_json::Value>(&text).unwrap(), *object);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).unwrap().permissions().mode();
                assert_eq!(mode & 0o644, 0o644 & !umask(), "{mode:o}: a file like any other");
            }
        }
        let binding: palisade_domain::ProfileBinding =
            yaml_serde::from_str(&std::fs::read_to_string(&paths[2]).unwrap()).unwrap();
        assert_eq!(binding.metadata.namespace.as_deref(), Some("shop"));

        // Again, changed: replaced, and no temporary file left beside.
        let mut changed = objects[0].clone();
        changed["spec"]["defaultAction"] = json!("SCMP_ACT_LOG");
        super::write_manifests(&out, &[changed]).unwrap();
        assert!(std::fs::read_to_string(&paths[0]).unwrap().contains("SCMP_ACT_LOG"));
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["apparmor-web.yaml", "binding-web.yaml", "seccomp-web.yaml"]);
    }

    #[cfg(unix)]
    fn umask() -> u32 {
        let probe = tempfile::tempdir().unwrap();
        let file = probe.path().join("f");
        std::fs::write(&file, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        !std::fs::metadata(&file).unwrap().permissions().mode() & 0o666
    }

    #[test]
    fn nothing_is_written_when_an_object_cannot_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let good = json!({"kind": "SeccompProfile", "metadata": {"name": "web"}});
        for (bad, want) in [
            (
                json!({"kind": "Pod", "metadata": {"name": "web"}}),
                "object 2: kind: \"Pod\" is not",
            ),
            (
                json!({"kind": "SeccompProfile", "metadata": {"name": "../etc"}}),
                "object 2: metadata.name: \"../etc\"",
            ),
            (
                json!({"kind": "AppArmorProfile", "metadata": {}}),
                "object 2: metadata.name: \"\"",
            ),
            (good.clone(), "object 2: a second object for "),
        ] {
            let err = format!("{:#}", super::write_manifests(&out, &[good.clone(), bad]).unwrap_err());
            assert!(err.starts_with(want), "{err}");
            assert!(!out.exists(), "nothing written");
        }
    }

    #[test]
    fn the_diff_marks_inserted_lines() {
        let d = super::diff(
            "profile p {\n  /a r,\n}\n",
            "profile p {\n  /a r,\n  # learned\n  /b w,\n}\n",
        );
        assert_eq!(
            d,
            "--- current\n+++ with the learned rules\n  profile p {\n    /a r,\n+   # learned\n+   /b w,\n  }\n"
        );
        let d = super::diff(
            "defaultAction: SCMP_ACT_LOG\nx\n",
            "defaultAction: SCMP_ACT_ERRNO\nx\ny\n",
        );
        assert_eq!(
            d,
            "--- current\n+++ with the learned rules\n- defaultAction: SCMP_ACT_LOG\n+ defaultAction: SCMP_ACT_ERRNO\n  x\n+ y\n"
        );
    }

    #[test]
    fn the_learned_rules_table_lines_up_its_columns() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let three_days_ago =
            Time(k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(73));
        let suggestion = |rule: &str, count, nodes: &[&str], node_count| super::Suggestion {
            rule: rule.into(),
            count,
            first_seen: three_days_ago.clone(),
            last_seen: three_days_ago.clone(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            node_count,
        };
        let learned = super::Learned {
            kind: super::ProfileKind::AppArmorProfile,
            name: "rn-learn".into(),
            mode: "Complain".into(),
            learning: Some(super::Learning {
                new_permissions: 2,
                last_new_at: None,
                nodes: 7,
                suggestions: vec![
                    suggestion("capability chown,", 1, &["node-1"], 1),
                    suggestion("owner /tmp/app.pid w,", 12345, &["node-1", "node-2"], 7),
                ],
                omitted_suggestions: 0,
            }),
            missing: vec![],
            unexpressed: vec![],
            before: String::new(),
            after: String::new(),
            applied: false,
            enforced: false,
            manifest: serde_json::Value::Null,
        };
        assert_eq!(
            super::text(&learned),
            "\
AppArmorProfile rn-learn (Complain): 2 new permission(s) seen on 7 node(s)

RULE                    COUNT  LAST      NODES
capability chown,           1  3d        node-1
owner /tmp/app.pid w,   12345  3d        node-1,node-2 +5

The profile already has every learned rule.
"
        );
    }

    /// A policy at the size limit (256 KiB) with a few lines changed: a table of every line
    /// against every line would take hundreds of MB here; the diff takes the size of the texts.
    #[test]
    fn the_diff_of_large_texts_with_few_changes_is_exact() {
        let line = |i: usize| format!("  owner /var/lib/app/data/{i:06}/** rw,");
        let before: Vec<String> = (0..8_000).map(line).collect();
        assert!(before.join("\n").len() >= 256 * 1024);
        let mut after = before.clone();
        after[10] = "  # learned".into();
        after.insert(4_000, "  capability chown,".into());
        after.remove(7_000);
        let d = super::diff(&(before.join("\n") + "\n"), &(after.join("\n") + "\n"));
        let changed: Vec<&str> = d.lines().skip(2).filter(|l| !l.starts_with("  ")).collect();
        assert_eq!(
            changed,
            [
                format!("- {}", line(10)),
                "+   # learned".into(),
                "+   capability chown,".into(),
                format!("- {}", line(6_999)),
            ]
        );
        assert_eq!(d.lines().count(), 2 + 8_000 + 2);
    }
}
