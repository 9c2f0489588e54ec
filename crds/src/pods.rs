//! Which Palisade profiles a pod references: the one reading of a pod spec that the
//! operator (in-use protection, the pod guard), the agent (learning) and the CLI share.

use k8s_openapi::api::core::v1::{Pod, PodSpec, SecurityContext};

use crate::{APPARMOR_ANNOTATION_PREFIX, ProfileKind};

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
