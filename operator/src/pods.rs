//! Which profiles a pod references, and the slim projection of pods the operator keeps.

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, EphemeralContainer, Pod, PodSecurityContext, PodSpec, PodStatus, SecurityContext,
};

pub use palisade_domain::APPARMOR_ANNOTATION_PREFIX;
/// The Palisade profiles a pod references, given the agents' seccomp subdirectory.
pub use palisade_domain::pods::references;

pub use palisade_domain::pods::seccomp_localhost_profile;

/// Keeps only what [`references`] and [`palisade_domain::pods::learning_pod`] read (with
/// the agents' seccomp subdirectory), so a cluster's pods cost little memory: a pod that
/// references no Palisade profile keeps its name and UID; one that does keeps its node, phase, the profile fields of its pod- and
/// container-level security contexts, its AppArmor annotations and its containers' names
/// and IDs. No managed fields, labels, images, env, volumes or other status.
pub fn slim(pod: &mut Pod, seccomp_subdir: &str) {
    let refs = !references(pod, seccomp_subdir).is_empty();
    pod.metadata.managed_fields = None;
    pod.metadata.labels = None;
    pod.metadata.owner_references = None;
    if !refs {
        pod.metadata.annotations = None;
        pod.status = None;
        pod.spec = None;
        return;
    }
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(APPARMOR_ANNOTATION_PREFIX));
    }
    let profiles_only = |sc: &Option<SecurityContext>| {
        sc.as_ref().map(|sc| SecurityContext {
            seccomp_profile: sc.seccomp_profile.clone(),
            app_armor_profile: sc.app_armor_profile.clone(),
            ..Default::default()
        })
    };
    if let Some(spec) = pod.spec.take() {
        let containers = |cs: &[Container]| -> Vec<Container> {
            cs.iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    security_context: profiles_only(&c.security_context),
                    ..Default::default()
                })
                .collect()
        };
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            security_context: spec.security_context.map(|sc| PodSecurityContext {
                seccomp_profile: sc.seccomp_profile,
                app_armor_profile: sc.app_armor_profile,
                ..Default::default()
            }),
            containers: containers(&spec.containers),
            init_containers: spec.init_containers.as_deref().map(containers),
            ephemeral_containers: spec.ephemeral_containers.map(|cs| {
                cs.into_iter()
                    .map(|c| EphemeralContainer {
                        name: c.name,
                        security_context: profiles_only(&c.security_context),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.take() {
        let ids = |cs: Option<Vec<ContainerStatus>>| {
            cs.map(|cs| {
                cs.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        container_id: c.container_id,
                        ..Default::default()
                    })
                    .collect()
            })
        };
        pod.status = Some(PodStatus {
            phase: status.phase,
            container_statuses: ids(status.container_statuses),
            init_container_statuses: ids(status.init_container_statuses),
            ephemeral_container_statuses: ids(status.ephemeral_container_statuses),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use palisade_domain::ProfileKind;
    use serde_json::json;

    use super::*;

    const SUBDIR: &str = palisade_domain::SECCOMP_SUBDIR;

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
        let refs = references(&everywhere(), SUBDIR);
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
        let before = references(&p, SUBDIR);
        slim(&mut p, SUBDIR);
        assert_eq!(references(&p, SUBDIR), before);
        assert!(serde_json::to_string(&p).unwrap().len() < serde_json::to_string(&everywhere()).unwrap().len());
        let mut plain =
            pod(json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "x", "image": "nginx"}]}}));
        slim(&mut plain, SUBDIR);
        assert!(plain.spec.is_none() && references(&plain, SUBDIR).is_empty());
    }

    #[test]
    fn slim_pods_publish_as_the_full_pod_would() {
        let full = pod(json!({
            "metadata": {"name": "p", "namespace": "team", "uid": "u", "labels": {"tier": "web"},
                         "annotations": {"container.apparmor.security.beta.kubernetes.io/a": "localhost/aa", "big": "x"}},
            "spec": {
                "nodeName": "node-1",
                "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/sc.json"}},
                "containers": [
                    {"name": "a", "image": "nginx", "env": [{"name": "SECRET", "value": "s"}]},
                    {"name": "b", "image": "nginx", "securityContext": {"privileged": false,
                        "seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/other.json"}}},
                ],
                "initContainers": [{"name": "i", "image": "busybox"}],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [
                {"name": "a", "containerID": "containerd://aaa", "image": "nginx", "imageID": "sha256:1", "ready": true, "restartCount": 2},
                {"name": "b", "containerID": "containerd://bbb", "image": "nginx", "imageID": "sha256:1", "ready": true, "restartCount": 0},
            ]},
        }));
        let learning = |_: ProfileKind, _: &str| true;
        let mut slimmed = full.clone();
        slim(&mut slimmed, SUBDIR);
        let published = palisade_domain::pods::learning_pod(&full, "palisade", learning);
        assert!(published.as_ref().is_some_and(|(_, p)| p.containers.len() == 2));
        assert_eq!(
            palisade_domain::pods::learning_pod(&slimmed, "palisade", learning),
            published
        );
        let text = serde_json::to_string(&slimmed).unwrap();
        for gone in ["SECRET", "nginx", "10.0.0.1", "runAsUser", "privileged", "big", "tier"] {
            assert!(!text.contains(gone), "{gone} kept: {text}");
        }
    }
}
