//! Which profiles a pod references, and the slim projection of pods the operator keeps.

use k8s_openapi::api::core::v1::{Pod, PodSpec, SecurityContext};
use palisade_crds::ProfileKind;

pub use palisade_crds::APPARMOR_ANNOTATION_PREFIX;

/// The Palisade profiles a pod references ([`palisade_crds::pods::references`] with the
/// agents' seccomp subdirectory).
pub fn references(pod: &Pod) -> Vec<(ProfileKind, String)> {
    palisade_crds::pods::references(pod, seccomp_subdir())
}

static SECCOMP_SUBDIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the subdirectory of the kubelet's seccomp directory the agents write to (the chart's
/// `agent.seccompSubdir`; `operator` for pods migrated from SPO). Once, at start-up.
pub fn set_seccomp_subdir(subdir: &str) {
    let _ = SECCOMP_SUBDIR.set(subdir.to_string());
}

/// The subdirectory pods name in `localhostProfile: <subdir>/<name>.json`.
pub fn seccomp_subdir() -> &'static str {
    SECCOMP_SUBDIR
        .get()
        .map_or(palisade_crds::SECCOMP_SUBDIR, String::as_str)
}

/// `localhostProfile` for a SeccompProfile.
pub fn seccomp_localhost_profile(name: &str) -> String {
    format!("{}/{name}.json", seccomp_subdir())
}

/// Keeps only what [`references`] reads (and the name), so a cluster's pods cost little
/// memory: no managed fields, status, volumes, env, images or other containers' fields.
pub fn slim(pod: &mut Pod) {
    let refs = references(pod);
    pod.metadata.managed_fields = None;
    pod.metadata.labels = None;
    pod.metadata.owner_references = None;
    pod.metadata.annotations = None;
    pod.status = None;
    pod.spec = None;
    if refs.is_empty() {
        return;
    }
    // Re-encode the references in the cheapest form `references` still reads.
    let mut annotations = std::collections::BTreeMap::new();
    let mut spec = PodSpec::default();
    for (i, (kind, name)) in refs.into_iter().enumerate() {
        match kind {
            ProfileKind::AppArmorProfile => {
                annotations.insert(format!("{APPARMOR_ANNOTATION_PREFIX}{i}"), format!("localhost/{name}"));
            }
            ProfileKind::SeccompProfile => spec.containers.push(k8s_openapi::api::core::v1::Container {
                security_context: Some(SecurityContext {
                    seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                        type_: "Localhost".into(),
                        localhost_profile: Some(seccomp_localhost_profile(&name)),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    pod.metadata.annotations = Some(annotations);
    pod.spec = Some(spec);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn everywhere() -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "default", "annotations": {
                "container.apparmor.security.beta.kubernetes.io/legacy": "localhost/legacy-aa",
                "container.apparmor.security.beta.kubernetes.io/rt": "runtime/default",
                "unrelated": "localhost/x"}},
            "spec": {
                "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/pod-sc.json"},
                                    "appArmorProfile": {"type": "Localhost", "localhostProfile": "pod-aa"}},
                "containers": [
                    {"name": "a", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/ctr-sc.json"}}},
                    {"name": "b", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "other/not-ours.json"}}},
                    {"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                ],
                "initContainers": [{"name": "i", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "init-aa"}}}],
                "ephemeralContainers": [{"name": "e", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/eph-sc.json"}}}],
            }
        }))
    }

    #[test]
    fn finds_references_at_every_level() {
        let refs = references(&everywhere());
        let expected: Vec<(ProfileKind, String)> = vec![
            (ProfileKind::AppArmorProfile, "init-aa".into()),
            (ProfileKind::AppArmorProfile, "legacy-aa".into()),
            (ProfileKind::AppArmorProfile, "pod-aa".into()),
            (ProfileKind::SeccompProfile, "ctr-sc".into()),
            (ProfileKind::SeccompProfile, "eph-sc".into()),
            (ProfileKind::SeccompProfile, "pod-sc".into()),
        ];
        assert_eq!(refs, expected);
    }

    #[test]
    fn slim_pods_keep_their_references_and_little_else() {
        let mut p = everywhere();
        let before = references(&p);
        slim(&mut p);
        assert_eq!(references(&p), before);
        assert!(serde_json::to_string(&p).unwrap().len() < serde_json::to_string(&everywhere()).unwrap().len());
        let mut plain =
            pod(json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "x", "image": "nginx"}]}}));
        slim(&mut plain);
        assert!(plain.spec.is_none() && references(&plain).is_empty());
    }
}
