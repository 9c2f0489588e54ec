//! Security Profiles Operator manifests (`security-profiles-operator.x-k8s.io`) into
//! Palisade objects: SeccompProfile, AppArmorProfile, ProfileBinding, and `oci://` base
//! profiles given as local files. A ProfileRecording becomes the commands that replace it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_domain::binding::{self, MAX_IMAGE_LEN};
use palisade_domain::{AppArmorProfileSpec, ProfileBinding, ProfileKind, SeccompProfileSpec};
use serde_json::{Map, Value, json};

use crate::ConvertError;

/// The API group of SPO's kinds.
pub const GROUP: &str = "security-profiles-operator.x-k8s.io";

/// Whether the document is one of SPO's.
pub fn is_spo(doc: &Value) -> bool {
    doc.get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with(&format!("{GROUP}/")))
}

/// Converts one SPO document. `bases` maps `oci://` references to the SPO SeccompProfile
/// documents the user gave for them (the artifact's `profile.yaml`). Returns the Palisade
/// objects (a converted `oci://` base comes first) and what was changed or left out.
pub fn convert(doc: &Value, bases: &BTreeMap<String, Value>) -> Result<(Vec<Value>, Vec<String>), ConvertError> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut notes = Vec::new();
    let spec = doc.get("spec").cloned().unwrap_or_else(|| json!({}));
    let Value::Object(spec) = spec else {
        return Err(field("spec", "must be an object"));
    };
    match kind {
        "SeccompProfile" => seccomp(name, metadata(doc, false, &mut notes), spec, bases, notes),
        "AppArmorProfile" => apparmor(&name, metadata(doc, false, &mut notes), spec, notes),
        "ProfileBinding" => profile_binding(metadata(doc, true, &mut notes), spec, notes),
        "ProfileRecording" => {
            let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
            profile_recording(namespace, &spec, notes)
        }
        other => {
            let hint = match other {
                "SecurityProfilesOperatorDaemon"
                | "SecurityProfileNodeStatus"
                | "RawSelinuxProfile"
                | "SelinuxProfile" => "Palisade has no equivalent",
                _ => "not a profile",
            };
            notes.push(format!("skipped {other} {name}: {hint}"));
            Ok((vec![], notes))
        }
    }
}

type Spec = serde_json::Map<String, Value>;
type Converted = Result<(Vec<Value>, Vec<String>), ConvertError>;

/// An SPO SeccompProfile, and its base when that is an OCI artifact given as a file.
fn seccomp(
    name: String,
    metadata: Value,
    mut spec: Spec,
    bases: &BTreeMap<String, Value>,
    mut notes: Vec<String>,
) -> Converted {
    let mut objects = Vec::new();
    if let Some(Value::Bool(true)) = spec.remove("disabled") {
        spec.insert("state".into(), json!("Disabled"));
    }
    if let Some(base) = spec.get("baseProfileName").and_then(Value::as_str).map(str::to_string) {
        if let Some(reference) = base.strip_prefix("oci://") {
            let base_name = oci_name(reference);
            objects.append(&mut oci_base(&base, &base_name, bases, &mut notes)?);
            spec.insert("baseProfileName".into(), json!(base_name));
        }
        notes.push(
            "spec.baseProfileName: SPO merges a base per syscall name keeping the less restrictive action; \
             Palisade lets the child's rules for a name replace the base's (review rules both name)"
                .into(),
        );
    }
    let spec = keep_known(spec, &SECCOMP_FIELDS, "spec", &mut notes);
    // SPO writes `<name>` as the file name when it already ends in .json; Palisade always
    // appends .json: the object drops the suffix so the path stays the same.
    let mut metadata = metadata;
    let name = match name.strip_suffix(".json") {
        Some(stem) => {
            notes.push(format!(
                "metadata.name {name:?} becomes {stem:?}: Palisade adds .json itself, so the file stays operator/{name}"
            ));
            metadata["name"] = json!(stem);
            stem.to_string()
        }
        None => name,
    };
    let _typed: SeccompProfileSpec = serde_json::from_value(Value::Object(spec.clone()))
        .map_err(|e| field("spec", &format!("not a valid SeccompProfile spec: {e}")))?;
    objects.push(object("SeccompProfile", metadata, spec));
    notes.push(format!(
        "SeccompProfile {name}: pods keep working with localhostProfile operator/{name}.json when the chart sets agent.seccompSubdir=operator"
    ));
    Ok((objects, notes))
}

/// The base `base` (an OCI artifact SPO pulls), converted from the file given for it.
fn oci_base(
    base: &str,
    base_name: &str,
    bases: &BTreeMap<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Vec<Value>, ConvertError> {
    let Some(base_doc) = bases.get(base) else {
        return Err(field(
            "spec.baseProfileName",
            &format!(
                "{base:?} is an OCI artifact that SPO pulls from a registry; pass its profile.yaml with --base {base}=FILE"
            ),
        ));
    };
    let mut renamed = base_doc.clone();
    renamed["metadata"] = json!({"name": base_name});
    let (converted, base_notes) = convert(&renamed, bases).map_err(|e| e.within(&format!("base {base}")))?;
    notes.extend(base_notes.into_iter().map(|n| format!("base {base}: {n}")));
    notes.push(format!(
        "spec.baseProfileName: {base:?} is the SeccompProfile {base_name:?} converted from the given file"
    ));
    Ok(converted)
}

/// An SPO AppArmorProfile.
fn apparmor(name: &str, metadata: Value, mut spec: Spec, mut notes: Vec<String>) -> Converted {
    if let Some(complain) = spec.remove("complainMode") {
        if complain == json!(true) {
            spec.insert("mode".into(), json!("Complain"));
        }
        notes.push("spec.complainMode (v1alpha1) is spec.mode".into());
    }
    if let Some(Value::Bool(true)) = spec.remove("disabled") {
        spec.insert("state".into(), json!("Disabled"));
    }
    let spec = keep_known(spec, &APPARMOR_FIELDS, "spec", &mut notes);
    let typed: AppArmorProfileSpec = serde_json::from_value(Value::Object(spec.clone()))
        .map_err(|e| field("spec", &format!("not a valid AppArmorProfile spec: {e}")))?;
    if typed.abstract_.is_some() {
        notes.push(format!(
            "AppArmorProfile {name}: spec.abstract renders the rules SPO's does (see the README's abstract table)"
        ));
    }
    Ok((vec![object("AppArmorProfile", metadata, spec)], notes))
}

/// An SPO ProfileBinding: a Palisade ProfileBinding in the same namespace, binding the
/// converted profile to the same image (and pod selector).
fn profile_binding(metadata: Value, spec: Spec, mut notes: Vec<String>) -> Converted {
    let reference = spec.get("profileRef").and_then(Value::as_object);
    let kind = match reference.and_then(|r| r.get("kind")).and_then(Value::as_str) {
        None => {
            return Err(field(
                "spec.profileRef.kind",
                "missing: SeccompProfile or AppArmorProfile",
            ));
        }
        Some("SelinuxProfile") => {
            return Err(field(
                "spec.profileRef.kind",
                "SelinuxProfile: Palisade does not manage SELinux profiles; it binds a SeccompProfile or an AppArmorProfile",
            ));
        }
        Some(other) => ProfileKind::from_name(other).ok_or_else(|| {
            field(
                "spec.profileRef.kind",
                &format!("{other:?} is not a kind Palisade binds: SeccompProfile or AppArmorProfile"),
            )
        })?,
    };
    let profile = match reference.and_then(|r| r.get("name")).and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n,
        _ => return Err(field("spec.profileRef.name", "missing: the profile to bind")),
    };
    // The SeccompProfile named `x.json` in SPO is `x` once converted (see `seccomp`).
    let profile = match profile.strip_suffix(".json") {
        Some(stem) if kind == ProfileKind::SeccompProfile => {
            notes.push(format!(
                "spec.profileRef.name {profile:?} becomes {stem:?}, as the converted SeccompProfile is named"
            ));
            stem
        }
        _ => profile,
    }
    .to_string();
    let mut out = Map::new();
    out.insert("profileRef".into(), json!({"kind": kind.name(), "name": profile}));
    match spec.get("image") {
        Some(Value::String(image)) if !image.is_empty() => {
            if image.len() > MAX_IMAGE_LEN {
                return Err(field(
                    "spec.image",
                    &format!(
                        "{} characters, more than the {MAX_IMAGE_LEN} Palisade accepts",
                        image.len()
                    ),
                ));
            }
            if image == binding::ANY_IMAGE {
                notes.push("spec.image \"*\": every container of the namespace's pods, as in SPO".into());
            }
            out.insert("image".into(), json!(image));
        }
        Some(other) if !other.is_null() => {
            return Err(field(
                "spec.image",
                "must be an image reference, or \"*\" for every container",
            ));
        }
        _ if spec.get("podSelector").is_none_or(Value::is_null) => {
            return Err(field(
                "spec.image",
                "missing: SPO binds the containers running an image; give one, or \"*\" for every container",
            ));
        }
        _ => {}
    }
    if let Some(selector) = spec.get("podSelector").filter(|s| !s.is_null()) {
        out.insert("selector".into(), selector.clone());
        notes.push("spec.podSelector is spec.selector".into());
    }
    keep_known(spec, &["profileRef", "image", "podSelector"], "spec", &mut notes);
    let object = object("ProfileBinding", metadata, out);
    let typed: ProfileBinding = serde_json::from_value(object.clone())
        .map_err(|e| field("spec", &format!("not a valid ProfileBinding spec: {e}")))?;
    if let Some(problem) = binding::problem(&typed) {
        let (at, why) = problem.split_once(": ").unwrap_or(("spec", &problem));
        return Err(field(at, why));
    }
    notes.push(
        "Palisade's webhook binds pods created after the binding; pods already running keep what they run until they are restarted (kubectl rollout restart)".into(),
    );
    notes.push(format!(
        "spec.profileRef: binds {} {profile:?}, which must be the name of the Palisade profile converted from SPO's (convert and apply it too)",
        kind.name()
    ));
    Ok((vec![object], notes))
}

/// An SPO ProfileRecording: no object. Palisade learns a workload's profile instead; the
/// notes give the commands that find the recorded pods' workload and learn for it.
fn profile_recording(namespace: Option<&str>, spec: &Spec, mut notes: Vec<String>) -> Converted {
    let kind = match spec.get("kind").and_then(Value::as_str) {
        Some(k @ ("SeccompProfile" | "AppArmorProfile" | "SelinuxProfile")) => k,
        Some(other) => {
            return Err(field(
                "spec.kind",
                &format!("{other:?} is not a kind SPO records: SeccompProfile, AppArmorProfile or SelinuxProfile"),
            ));
        }
        None => return Err(field("spec.kind", "missing: the kind of profile recorded")),
    };
    if kind == "SelinuxProfile" {
        notes.push("no object: it records SelinuxProfiles, which Palisade does not manage; nothing replaces it".into());
        return Ok((vec![], notes));
    }
    let selector: LabelSelector = serde_json::from_value(spec.get("podSelector").cloned().unwrap_or(json!({})))
        .map_err(|e| field("spec.podSelector", &format!("not a label selector: {e}")))?;
    let selector = kube::core::Selector::try_from(selector)
        .map_err(|e| field("spec.podSelector", &e.to_string()))?
        .to_string();
    // `app=web` as it is; `'tier in (a,b)'` and `'!canary'` quoted for the shell.
    let plain = selector
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/=,".contains(c));
    let quoted = if plain {
        selector.clone()
    } else {
        shlex::try_quote(&selector)
            .map_err(|e| field("spec.podSelector", &e.to_string()))?
            .into_owned()
    };
    let (ns_flag, where_) = match namespace {
        Some(ns) => (format!(" -n {ns}"), format!("namespace {ns}")),
        None => (String::new(), "the current namespace".to_string()),
    };
    let (label_flag, pods) = if selector.is_empty() {
        (String::new(), "every pod".to_string())
    } else {
        (format!(" -l {quoted}"), format!("the pods matching {selector}"))
    };
    let recorder = spec.get("recorder").and_then(Value::as_str).unwrap_or("?");
    notes.push(format!(
        "no object: it records {kind}s (recorder {recorder}) of {pods} in {where_}; Palisade learns a workload's profile from the nodes' audit records instead"
    ));
    notes.push(format!(
        "find the workload those pods belong to: kubectl get deployments,statefulsets,daemonsets{ns_flag}{label_flag}"
    ));
    notes.push(format!(
        "then replace the recording with: palisade learn --workload KIND/NAME{ns_flag} (the workload's kind and name, e.g. deployment/web)"
    ));
    Ok((vec![], notes))
}

const SECCOMP_FIELDS: [&str; 10] = [
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
    "baseProfileName",
    "state",
    "nodeSelector",
];

const APPARMOR_FIELDS: [&str; 5] = ["policy", "abstract", "mode", "state", "nodeSelector"];

fn keep_known(spec: Map<String, Value>, known: &[&str], at: &str, notes: &mut Vec<String>) -> Map<String, Value> {
    spec.into_iter()
        .filter(|(k, _)| {
            let keep = known.contains(&k.as_str());
            if !keep {
                notes.push(format!("{at}.{k}: no Palisade equivalent, left out"));
            }
            keep
        })
        .collect()
}

/// Name, labels and annotations (SPO's own bookkeeping labels left out). The namespace is
/// kept for a `namespaced` kind (a binding binds the pods of its namespace) and dropped
/// otherwise: Palisade's profiles are cluster-scoped.
fn metadata(doc: &Value, namespaced: bool, notes: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    if let Some(name) = doc.pointer("/metadata/name") {
        out.insert("name".into(), name.clone());
    }
    match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if namespaced => {
            out.insert("namespace".into(), json!(ns));
        }
        Some(ns) => notes.push(format!(
            "metadata.namespace {ns:?} dropped: Palisade profiles are cluster-scoped"
        )),
        None if namespaced => notes.push(
            "no metadata.namespace: kubectl creates it in the current namespace, and it binds the pods there".into(),
        ),
        None => {}
    }
    if let Some(Value::Object(labels)) = doc.pointer("/metadata/labels") {
        let kept: Map<String, Value> = labels
            .iter()
            .filter(|(k, _)| !k.starts_with("spo.x-k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kept.len() < labels.len() {
            notes.push(format!(
                "metadata.labels: {} SPO bookkeeping label(s) (spo.x-k8s.io/*) left out",
                labels.len() - kept.len()
            ));
        }
        if !kept.is_empty() {
            out.insert("labels".into(), Value::Object(kept));
        }
    }
    if let Some(Value::Object(annotations)) = doc.pointer("/metadata/annotations") {
        let kept: Map<String, Value> = annotations
            .iter()
            .filter(|(k, _)| *k != "kubectl.kubernetes.io/last-applied-configuration")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            out.insert("annotations".into(), Value::Object(kept));
        }
    }
    Value::Object(out)
}

fn object(kind: &str, metadata: Value, spec: Map<String, Value>) -> Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
}

/// A Kubernetes name for an OCI reference: its last path segment and tag.
/// `ghcr.io/security-profiles/runc:v1.1.5` → `runc-v1.1.5`.
pub fn oci_name(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let last = last.split('@').next().unwrap_or(last);
    crate::dns_name(&last.replace(':', "-"))
}

fn field(field: &str, message: &str) -> ConvertError {
    ConvertError::Field {
        field: field.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_moves_over_with_its_namespace_and_bookkeeping_dropped() {
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1beta1", "kind": "SeccompProfile",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"spo.x-k8s.io/profile-id": "x", "team": "a"}},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                     "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["read"]}], "disabled": false}});
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert_eq!(objects.len(), 1);
        let mut suffixed = doc.clone();
        suffixed["metadata"]["name"] = json!("web.json");
        let (renamed, _) = convert(&suffixed, &BTreeMap::new()).unwrap();
        assert_eq!(
            renamed[0]["metadata"]["name"], "web",
            "SPO's file operator/web.json stays"
        );
        assert_eq!(objects[0]["apiVersion"], "palisade.dev/v1alpha1");
        assert_eq!(objects[0]["metadata"], json!({"name": "web", "labels": {"team": "a"}}));
        assert_eq!(objects[0]["spec"]["syscalls"][0]["names"], json!(["read"]));
        let text = notes.join("\n");
        assert!(text.contains("metadata.namespace \"shop\" dropped"), "{text}");
        assert!(text.contains("operator/web.json"), "{text}");
    }

    #[test]
    fn an_oci_base_needs_its_file_and_becomes_a_profile_of_its_own() {
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1beta1", "kind": "SeccompProfile",
            "metadata": {"name": "app"},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "oci://ghcr.io/security-profiles/runc:v1.1.5"}});
        let err = convert(&doc, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "spec.baseProfileName: \"oci://ghcr.io/security-profiles/runc:v1.1.5\" is an OCI artifact"
            ),
            "{err}"
        );
        let base = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1beta1", "kind": "SeccompProfile",
            "metadata": {"name": "whatever"},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["execve"]}]}});
        let bases = BTreeMap::from([("oci://ghcr.io/security-profiles/runc:v1.1.5".to_string(), base)]);
        let (objects, _) = convert(&doc, &bases).unwrap();
        assert_eq!(objects[0]["metadata"]["name"], "runc-v1.1.5");
        assert_eq!(objects[1]["spec"]["baseProfileName"], "runc-v1.1.5");
    }

    #[test]
    fn apparmor_and_other_kinds() {
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": "p"}, "spec": {"complainMode": true, "policy": "profile p {\n}\n"}});
        let (objects, _) = convert(&doc, &BTreeMap::new()).unwrap();
        assert_eq!(objects[0]["spec"]["mode"], "Complain");
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "AppArmorProfile",
            "metadata": {"name": "p"}, "spec": {"abstract": {"filesystem": {"readOnlyPaths": [7]}}}});
        let err = convert(&doc, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("spec: not a valid AppArmorProfile spec"),
            "{err}"
        );
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfile",
            "metadata": {"name": "s"}, "spec": {}});
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert!(objects.is_empty());
        assert!(notes[0].starts_with("skipped SelinuxProfile s: "), "{notes:?}");
    }

    /// SPO's own example, as the project's corpus holds it, with a namespace and labels.
    fn spo_binding(spec: Value) -> Value {
        json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
            "metadata": {"name": "profile-binding", "namespace": "shop",
                         "labels": {"team": "a", "spo.x-k8s.io/x": "y"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": spec})
    }

    #[test]
    fn a_binding_keeps_its_namespace_profile_and_image() {
        let doc = spo_binding(
            json!({"profileRef": {"kind": "SeccompProfile", "name": "profile-allow-unsafe"},
            "image": "nginx:1.19.1"}),
        );
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert_eq!(
            objects,
            [json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
                "metadata": {"name": "profile-binding", "namespace": "shop", "labels": {"team": "a"}},
                "spec": {"profileRef": {"kind": "SeccompProfile", "name": "profile-allow-unsafe"},
                         "image": "nginx:1.19.1"}})]
        );
        let typed: ProfileBinding = serde_json::from_value(objects[0].clone()).unwrap();
        assert_eq!(typed.spec.profile_ref.kind, ProfileKind::SeccompProfile);
        assert_eq!(typed.spec.image.as_deref(), Some("nginx:1.19.1"));
        assert_eq!(binding::problem(&typed), None);
        let text = notes.join("\n");
        assert!(text.contains("binds pods created after the binding"), "{text}");
        assert!(text.contains("until they are restarted"), "{text}");
        assert!(
            text.contains("binds SeccompProfile \"profile-allow-unsafe\", which must be the name of the Palisade profile converted from SPO's"),
            "{text}"
        );
        assert!(!text.contains("namespace \"shop\" dropped"), "{text}");
    }

    #[test]
    fn a_binding_of_every_container_or_by_pod_selector_converts_too() {
        let doc = spo_binding(
            json!({"profileRef": {"kind": "AppArmorProfile", "name": "web"}, "image": "*",
            "podSelector": {"matchLabels": {"app": "web"}}}),
        );
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        let typed: ProfileBinding = serde_json::from_value(objects[0].clone()).unwrap();
        assert_eq!(typed.spec.profile_ref.kind, ProfileKind::AppArmorProfile);
        assert_eq!(typed.spec.image.as_deref(), Some("*"));
        assert_eq!(objects[0]["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(binding::problem(&typed), None);
        assert!(notes.iter().any(|n| n.contains("every container")), "{notes:?}");

        // SPO's `x.json` SeccompProfile is `x` once converted: the reference follows.
        let mut doc =
            spo_binding(json!({"profileRef": {"kind": "SeccompProfile", "name": "web.json"}, "image": "nginx"}));
        doc["metadata"].as_object_mut().unwrap().remove("namespace");
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert_eq!(objects[0]["spec"]["profileRef"]["name"], "web");
        assert!(objects[0]["metadata"].get("namespace").is_none());
        assert!(
            notes
                .iter()
                .any(|n| n.contains("kubectl creates it in the current namespace")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_binding_palisade_cannot_hold_is_refused_naming_the_field() {
        let refused = |spec: Value| convert(&spo_binding(spec), &BTreeMap::new()).unwrap_err().to_string();
        let err = refused(json!({"profileRef": {"kind": "SelinuxProfile", "name": "x"}, "image": "nginx"}));
        assert!(
            err.starts_with("spec.profileRef.kind: SelinuxProfile: Palisade does not manage SELinux profiles"),
            "{err}"
        );
        let err = refused(json!({"profileRef": {"kind": "RawSelinuxProfile", "name": "x"}, "image": "nginx"}));
        assert!(
            err.starts_with("spec.profileRef.kind: \"RawSelinuxProfile\" is not a kind"),
            "{err}"
        );
        let err = refused(json!({"profileRef": {"name": "x"}, "image": "nginx"}));
        assert!(err.starts_with("spec.profileRef.kind: missing"), "{err}");
        let err = refused(json!({"profileRef": {"kind": "SeccompProfile"}, "image": "nginx"}));
        assert!(err.starts_with("spec.profileRef.name: missing"), "{err}");
        let err = refused(json!({"profileRef": {"kind": "SeccompProfile", "name": "x"}}));
        assert!(err.starts_with("spec.image: missing"), "{err}");
        let err = refused(json!({"profileRef": {"kind": "SeccompProfile", "name": "x"}, "image": "Not An Image!"}));
        assert!(
            err.starts_with("spec.image: \"Not An Image!\" is not an image reference"),
            "{err}"
        );
        let err = refused(
            json!({"profileRef": {"kind": "SeccompProfile", "name": "x"}, "image": "*",
            "podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
        );
        assert!(err.starts_with("spec.selector: "), "{err}");
        let long = format!("registry.example/{}", "a".repeat(MAX_IMAGE_LEN));
        let err = refused(json!({"profileRef": {"kind": "SeccompProfile", "name": "x"}, "image": long}));
        assert!(err.starts_with("spec.image: 529 characters"), "{err}");
    }

    #[test]
    fn a_recording_becomes_the_commands_that_replace_it() {
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": "test-recording", "namespace": "shop"},
            "spec": {"kind": "SeccompProfile", "recorder": "Logs", "podSelector": {"matchLabels": {"app": "alpine"}}}});
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert!(objects.is_empty());
        assert_eq!(
            notes,
            [
                "no object: it records SeccompProfiles (recorder Logs) of the pods matching app=alpine in namespace shop; Palisade learns a workload's profile from the nodes' audit records instead",
                "find the workload those pods belong to: kubectl get deployments,statefulsets,daemonsets -n shop -l app=alpine",
                "then replace the recording with: palisade learn --workload KIND/NAME -n shop (the workload's kind and name, e.g. deployment/web)",
            ]
        );

        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": "r"},
            "spec": {"kind": "AppArmorProfile", "recorder": "Bpf", "podSelector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}});
        let (_, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert!(notes[0].contains("AppArmorProfiles (recorder Bpf)"), "{notes:?}");
        assert!(notes[0].contains("in the current namespace"), "{notes:?}");
        assert!(
            notes[1].ends_with("kubectl get deployments,statefulsets,daemonsets -l 'app=web,tier in (a,b)'"),
            "quoted for the shell: {notes:?}"
        );
        assert!(notes[2].contains("palisade learn --workload KIND/NAME ("), "{notes:?}");

        let mut selinux = doc.clone();
        selinux["spec"]["kind"] = json!("SelinuxProfile");
        let (objects, notes) = convert(&selinux, &BTreeMap::new()).unwrap();
        assert!(objects.is_empty());
        assert!(notes[0].contains("Palisade does not manage"), "{notes:?}");
        let mut bad = doc;
        bad["spec"]["podSelector"] = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        let err = convert(&bad, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.starts_with("spec.podSelector: "), "{err}");
    }
}
