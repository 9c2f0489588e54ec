//! Security Profiles Operator manifests (`security-profiles-operator.x-k8s.io`) into
//! Palisade objects: SeccompProfile, AppArmorProfile, and `oci://` base profiles given as
//! local files.

use std::collections::BTreeMap;

use palisade_domain::{AppArmorProfileSpec, SeccompProfileSpec};
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
    let metadata = metadata(doc, &mut notes);
    let spec = doc.get("spec").cloned().unwrap_or_else(|| json!({}));
    let Value::Object(spec) = spec else {
        return Err(field("spec", "must be an object"));
    };
    match kind {
        "SeccompProfile" => seccomp(name, metadata, spec, bases, notes),
        "AppArmorProfile" => apparmor(&name, metadata, spec, notes),
        other => {
            let hint = match other {
                "ProfileBinding" => "reference the profile in the pod spec (securityContext) instead",
                "ProfileRecording" => "record with a Complain-mode profile instead (palisade learn)",
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

/// Name, labels and annotations (SPO's own bookkeeping labels left out); the namespace is
/// dropped: Palisade's profiles are cluster-scoped.
fn metadata(doc: &Value, notes: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    if let Some(name) = doc.pointer("/metadata/name") {
        out.insert("name".into(), name.clone());
    }
    if let Some(ns) = doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        notes.push(format!(
            "metadata.namespace {ns:?} dropped: Palisade profiles are cluster-scoped"
        ));
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
        let doc = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
            "metadata": {"name": "b"}, "spec": {}});
        let (objects, notes) = convert(&doc, &BTreeMap::new()).unwrap();
        assert!(objects.is_empty());
        assert!(notes[0].starts_with("skipped ProfileBinding b: "), "{notes:?}");
    }
}
