//! Which Palisade profiles a pod references: the one reading of a pod spec that the
//! operator (in-use protection, the pod guard), the agent (learning) and the CLI share.

use k8s_openapi::api::core::v1::{Pod, PodSpec, SecurityContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::APPARMOR_ANNOTATION_PREFIX;
use crate::common::ProfileKind;

/// `localhostProfile` of the SeccompProfile `name`, under the agents' seccomp subdirectory
/// (the chart's `agent.seccompSubdir`; `operator` for pods migrated from SPO).
pub fn seccomp_localhost_profile(seccomp_subdir: &str, name: &str) -> String {
    format!("{seccomp_subdir}/{name}.json")
}

/// Most pods one node's `spec.learningPods` lists (a kubelet runs at most a few hundred).
pub const MAX_LEARNING_PODS: usize = 1000;

/// Most containers one [`LearningPod`] lists.
pub const MAX_LEARNING_CONTAINERS: usize = 64;

/// Most bytes (as JSON) of one node's `spec.learningPods`: the report shares etcd's object
/// size limit with the agent's status.
pub const MAX_LEARNING_PODS_BYTES: usize = 256 * 1024;

/// A pod that uses a learning profile, as the operator publishes it in its node's
/// NodeProfileStatus (`spec.learningPods`): what that node's agent needs to tell a
/// workload's audit records from anyone else's, and nothing more of the pod. Agents read
/// this instead of listing pods, which RBAC could not narrow to their own node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearningPod {
    /// The pod's UID (its cgroup path names it).
    #[schemars(length(max = 128))]
    pub uid: String,
    /// `namespace/name`, for whoever reads the report.
    #[schemars(length(max = 512))]
    pub name: String,
    /// The learning AppArmor profiles the pod references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub apparmor: Vec<String>,
    /// The learning seccomp profile of a container not reported yet: the one every
    /// container of the pod (init containers included) runs under, when they all run under
    /// the same Palisade profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    /// The containers the kubelet has reported, with the learning seccomp profile of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub containers: Vec<LearningContainer>,
}

/// A container of a [`LearningPod`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearningContainer {
    /// The runtime's container ID, without its `<runtime>://` prefix (its cgroup path names it).
    #[schemars(length(max = 128))]
    pub id: String,
    /// The learning seccomp profile it runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    /// The container's name in the pod (what a denial Event names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
}

/// The [`LearningPod`] of a pod and the node it is bound to, when it references a profile
/// for which `learning` says yes and has not finished (a finished pod makes no records; a
/// kubelet fails the pods it does not admit, so what a node lists is what it runs).
pub fn learning_pod(
    pod: &Pod,
    seccomp_subdir: &str,
    learning: impl Fn(ProfileKind, &str) -> bool,
) -> Option<(String, LearningPod)> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    if matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let refs: Vec<_> = references(pod, seccomp_subdir)
        .into_iter()
        .filter(|(kind, name)| learning(*kind, name))
        .collect();
    if refs.is_empty() {
        return None;
    }
    let learning_seccomp = |name: Option<String>| name.filter(|n| learning(ProfileKind::SeccompProfile, n));
    let containers = container_statuses(pod)
        .filter_map(|s| {
            let id = s.container_id.as_deref()?;
            let id = id.split_once("://").map_or(id, |(_, id)| id).to_string();
            let seccomp = learning_seccomp(seccomp_profile_of(pod, Some(&id), seccomp_subdir));
            Some(LearningContainer {
                id,
                seccomp,
                name: Some(s.name.clone()),
            })
        })
        .take(MAX_LEARNING_CONTAINERS)
        .collect();
    Some((
        node,
        LearningPod {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
            apparmor: refs
                .iter()
                .filter(|(kind, _)| *kind == ProfileKind::AppArmorProfile)
                .map(|(_, name)| name.clone())
                .collect(),
            seccomp: learning_seccomp(seccomp_profile_of(pod, None, seccomp_subdir)),
            containers,
        },
    ))
}

/// The statuses of a pod's containers, init and ephemeral containers included.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.iter().flat_map(|s| {
        s.container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .chain(&s.ephemeral_container_statuses)
            .flatten()
    })
}

/// The Palisade seccomp profile a container runs under (by the runtime's container ID,
/// which the pod's status maps to a container), or without an ID, the one every container
/// of the pod runs under.
pub fn seccomp_profile_of(pod: &Pod, container_id: Option<&str>, subdir: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let statuses: Vec<_> = container_statuses(pod).collect();
    let container = match container_id {
        Some(id) => {
            // A container of the pod not (yet) in its status: not known, rather than guessed.
            let name = &statuses
                .iter()
                .find(|s| s.container_id.as_deref().is_some_and(|c| c.ends_with(id)))?
                .name;
            let context = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| &c.name == name)
                .map(|c| c.security_context.as_ref())
                .or_else(|| {
                    spec.ephemeral_containers
                        .iter()
                        .flatten()
                        .find(|c| &c.name == name)
                        .map(|c| c.security_context.as_ref())
                })?;
            Some(context)
        }
        None => None,
    };
    let candidates: Vec<Option<&SecurityContext>> = match container {
        Some(c) => vec![c],
        // Init containers run first, before any container is reported.
        None => spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(|c| c.security_context.as_ref())
            .collect(),
    };
    let ambiguous = container.is_none();
    let mut found = None;
    for c in candidates {
        let profile = effective_seccomp(spec, c)?;
        if profile.type_ != "Localhost" {
            // Without a container ID, a container under another profile makes it ambiguous.
            if ambiguous {
                return None;
            }
            continue;
        }
        let name = profile
            .localhost_profile
            .as_deref()?
            .strip_prefix(&format!("{subdir}/"))?
            .strip_suffix(".json")?;
        // Without a container ID, only an unambiguous answer counts.
        if found.as_deref().is_some_and(|f: &str| f != name) {
            return None;
        }
        found = Some(name.to_string());
    }
    found
}

/// A profile as a container runs under it: its `type` and, for `Localhost`, its name or path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub type_: String,
    pub localhost: Option<String>,
}

/// The seccomp profile a container runs under: its own, else its pod's (Kubernetes'
/// precedence).
pub fn effective_seccomp<'a>(
    pod: &'a PodSpec,
    container: Option<&'a SecurityContext>,
) -> Option<&'a k8s_openapi::api::core::v1::SeccompProfile> {
    container
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.security_context.as_ref()?.seccomp_profile.as_ref())
}

/// The AppArmor profile a container runs under: its own field, else its legacy annotation
/// (`localhost/<name>`, `unconfined`, anything else the runtime's default), else its pod's
/// field (Kubernetes' precedence).
pub fn effective_apparmor(pod: &Pod, container: &str, context: Option<&SecurityContext>) -> Option<Effective> {
    let field = |p: &k8s_openapi::api::core::v1::AppArmorProfile| Effective {
        type_: p.type_.clone(),
        localhost: p.localhost_profile.clone(),
    };
    let annotation = || {
        let value = pod
            .metadata
            .annotations
            .as_ref()?
            .get(&format!("{APPARMOR_ANNOTATION_PREFIX}{container}"))?;
        Some(match value.strip_prefix("localhost/") {
            Some(name) => Effective {
                type_: "Localhost".into(),
                localhost: Some(name.to_string()),
            },
            None if value == "unconfined" => Effective {
                type_: "Unconfined".into(),
                localhost: None,
            },
            None => Effective {
                type_: "RuntimeDefault".into(),
                localhost: None,
            },
        })
    };
    let pod_field = || {
        pod.spec
            .as_ref()?
            .security_context
            .as_ref()?
            .app_armor_profile
            .as_ref()
            .map(field)
    };
    context
        .and_then(|s| s.app_armor_profile.as_ref())
        .map(field)
        .or_else(annotation)
        .or_else(pod_field)
}

/// The Palisade profiles a pod references: seccomp `Localhost` profiles under
/// `<seccomp_subdir>/<name>.json`, AppArmor `Localhost` profiles, at pod, container, init- and
/// ephemeral-container level, and the legacy AppArmor annotation `localhost/<name>`.
pub fn references(pod: &Pod, seccomp_subdir: &str) -> Vec<(ProfileKind, String)> {
    let mut refs = Vec::new();
    if let Some(spec) = &pod.spec {
        // (seccomp, AppArmor) `(type, localhostProfile)` at pod level, then per container.
        let pod_level = spec.security_context.iter().map(|sc| {
            (
                sc.seccomp_profile.as_ref().map(|p| (&p.type_, &p.localhost_profile)),
                sc.app_armor_profile.as_ref().map(|p| (&p.type_, &p.localhost_profile)),
            )
        });
        let containers = container_contexts(spec).map(|sc| {
            (
                sc.seccomp_profile.as_ref().map(|p| (&p.type_, &p.localhost_profile)),
                sc.app_armor_profile.as_ref().map(|p| (&p.type_, &p.localhost_profile)),
            )
        });
        for (seccomp, apparmor) in pod_level.chain(containers) {
            push_seccomp(&mut refs, seccomp_subdir, seccomp);
            push_apparmor(&mut refs, apparmor);
        }
    }
    for (key, value) in pod.metadata.annotations.iter().flatten() {
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && let Some(name) = value.strip_prefix("localhost/")
        {
            refs.push((ProfileKind::AppArmorProfile, name.to_string()));
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

fn container_contexts(spec: &PodSpec) -> impl Iterator<Item = &SecurityContext> {
    let containers = spec.containers.iter().filter_map(|c| c.security_context.as_ref());
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(|c| c.security_context.as_ref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|c| c.security_context.as_ref());
    containers.chain(init).chain(ephemeral)
}

fn push_seccomp(refs: &mut Vec<(ProfileKind, String)>, subdir: &str, profile: Option<(&String, &Option<String>)>) {
    if let Some((ty, Some(path))) = profile
        && ty == "Localhost"
        && let Some(name) = path
            .strip_prefix(&format!("{subdir}/"))
            .and_then(|p| p.strip_suffix(".json"))
    {
        refs.push((ProfileKind::SeccompProfile, name.to_string()));
    }
}

fn push_apparmor(refs: &mut Vec<(ProfileKind, String)>, profile: Option<(&String, &Option<String>)>) {
    if let Some((ty, Some(name))) = profile
        && ty == "Localhost"
    {
        refs.push((ProfileKind::AppArmorProfile, name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "team", "uid": "u",
                         "annotations": {"container.apparmor.security.beta.kubernetes.io/a": "localhost/aa-learning"}},
            "spec": {
                "nodeName": "node-1",
                "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/pod-level.json"}},
                "containers": [
                    {"name": "a", "image": "x"},
                    {"name": "b", "image": "x", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/own.json"}}},
                    {"name": "c", "image": "x", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                ],
                "ephemeralContainers": [
                    {"name": "e", "image": "x", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/debug.json"}}},
                ],
            },
            "status": {"phase": "Running",
                "containerStatuses": [
                    {"name": "a", "containerID": "containerd://aaa", "image": "x", "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "b", "containerID": "containerd://bbb", "image": "x", "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "c", "containerID": "containerd://ccc", "image": "x", "imageID": "", "ready": true, "restartCount": 0},
                ],
                "ephemeralContainerStatuses": [
                    {"name": "e", "containerID": "containerd://eee", "image": "x", "imageID": "", "ready": true, "restartCount": 0},
                ]},
        }))
        .unwrap()
    }

    #[test]
    fn a_containers_profile_is_its_own_or_its_pods() {
        let pod = pod();
        let of = |id: Option<&str>, subdir: &str| seccomp_profile_of(&pod, id, subdir);
        assert_eq!(of(Some("aaa"), "palisade").as_deref(), Some("pod-level"));
        assert_eq!(of(Some("bbb"), "palisade").as_deref(), Some("own"));
        assert_eq!(of(Some("ccc"), "palisade"), None, "RuntimeDefault");
        assert_eq!(
            of(Some("eee"), "palisade").as_deref(),
            Some("debug"),
            "an ephemeral container"
        );
        assert_eq!(of(Some("ddd"), "palisade"), None, "a container not in the status");
        assert_eq!(of(None, "palisade"), None, "ambiguous without the container");
        assert_eq!(of(Some("bbb"), "operator"), None, "another directory");
    }

    #[test]
    fn a_learning_pod_holds_only_the_learning_profiles_and_its_containers() {
        let learning = |kind: ProfileKind, name: &str| match kind {
            ProfileKind::AppArmorProfile => name == "aa-learning",
            ProfileKind::SeccompProfile => name == "own" || name == "pod-level",
        };
        let (node, lp) = learning_pod(&pod(), "palisade", learning).unwrap();
        assert_eq!(node, "node-1");
        assert_eq!(
            lp,
            LearningPod {
                uid: "u".into(),
                name: "team/p".into(),
                apparmor: vec!["aa-learning".into()],
                seccomp: None,
                containers: vec![
                    LearningContainer {
                        id: "aaa".into(),
                        seccomp: Some("pod-level".into()),
                        name: Some("a".into()),
                    },
                    LearningContainer {
                        id: "bbb".into(),
                        seccomp: Some("own".into()),
                        name: Some("b".into()),
                    },
                    LearningContainer {
                        id: "ccc".into(),
                        seccomp: None,
                        name: Some("c".into()),
                    },
                    // `debug` is not learning.
                    LearningContainer {
                        id: "eee".into(),
                        seccomp: None,
                        name: Some("e".into()),
                    },
                ],
            }
        );
        assert!(
            learning_pod(&pod(), "palisade", |_, _| false).is_none(),
            "no learning profile"
        );
        let mut shared: Pod = pod();
        for c in &mut shared.spec.as_mut().unwrap().containers {
            c.security_context = None;
        }
        assert_eq!(
            learning_pod(&shared, "palisade", learning)
                .unwrap()
                .1
                .seccomp
                .as_deref(),
            Some("pod-level"),
            "every container under the pod's profile"
        );
        let mut with_init = shared.clone();
        with_init.spec.as_mut().unwrap().init_containers = Some(vec![
            serde_json::from_value(
                json!({"name": "i", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
            )
            .unwrap(),
        ]);
        assert_eq!(
            learning_pod(&with_init, "palisade", learning).unwrap().1.seccomp,
            None,
            "an init container under another profile makes the pod's ambiguous"
        );
        let mut unbound = pod();
        unbound.spec.as_mut().unwrap().node_name = None;
        assert!(
            learning_pod(&unbound, "palisade", learning).is_none(),
            "not on a node yet"
        );
        let mut done = pod();
        done.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(learning_pod(&done, "palisade", learning).is_none(), "finished");
    }
}
