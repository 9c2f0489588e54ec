//! ProfileBinding: a profile attached to the pods of a namespace that run a given image or
//! carry given labels, for workloads whose pod specs the admin does not write. The operator's
//! mutating webhook applies [`bind`] to each pod it admits; its status controller applies
//! [`standing`] to the pods that exist.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{AppArmorProfile as PodAppArmor, Container, Pod, SeccompProfile as PodSeccomp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ProfileKind;
use crate::pods::{effective_apparmor, effective_seccomp};

/// Longest `spec.image` (a registry host, a repository path, a tag and a digest).
pub const MAX_IMAGE_LEN: usize = 512;
/// How many pods a binding's status names among those it should have bound and did not.
pub const MAX_UNBOUND_LISTED: usize = 10;
/// `spec.image` that matches every container (as the Security Profiles Operator spells it).
pub const ANY_IMAGE: &str = "*";

/// Attaches a SeccompProfile or an AppArmorProfile to the containers of pods created in its
/// namespace: those running `image`, in pods whose labels match `selector` (both when both
/// are given). The operator's webhook sets the container's `securityContext` field on pod
/// creation, never over a profile the pod sets itself.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "ProfileBinding",
    plural = "profilebindings",
    shortname = "pbind",
    category = "palisade",
    namespaced,
    doc = "Attaches a Palisade profile to the containers of pods created in its namespace that run an image or carry labels.",
    status = "ProfileBindingStatus",
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.profileRef.kind",
        description = "Kind of the bound profile"
    ),
    printcolumn(
        name = "Profile",
        type_ = "string",
        json_path = ".spec.profileRef.name",
        description = "The bound profile"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        description = "Containers running this image are bound"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The profile exists, was accepted and is installed on every node it targets"
    ),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".status.boundPods",
        description = "Pods whose matching containers run under the profile"
    ),
    printcolumn(
        name = "Unbound",
        type_ = "integer",
        json_path = ".status.unboundPods",
        description = "Pods the binding matches whose containers do not run under the profile"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingSpec {
    /// The profile to attach.
    pub profile_ref: ProfileRef,

    /// Containers running this image are bound: an exact reference (`nginx:1.27`,
    /// `registry.example/app@sha256:...`), a repository without tag or digest (any tag or
    /// digest of it), or `*` (every container). Docker Hub names are normalized, so `nginx`
    /// and `docker.io/library/nginx` are the same repository. Unset: every container of the
    /// pods `selector` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Pods whose labels match are bound (a Kubernetes label selector; `{}` matches every pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "binding_selector_schema")]
    pub selector: Option<LabelSelector>,
}

/// The profile a binding attaches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRef {
    /// `SeccompProfile` or `AppArmorProfile`.
    pub kind: ProfileKind,
    /// The profile's name (profiles are cluster-scoped).
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// What the operator observed of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingStatus {
    /// The generation the operator last looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the profile exists, was accepted and is installed on every node it targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub conditions: Vec<Condition>,
    /// Pods the binding matches whose matching containers all run under its profile.
    #[serde(default)]
    #[schemars(range(max = 4294967295u32))]
    pub bound_pods: u32,
    /// Pods the binding matches with a matching container that does not run under its
    /// profile: created before the binding or while the webhook was unreachable, setting a
    /// profile of their own, or bound by another binding first.
    #[serde(default)]
    pub unbound_pods: u32,
    /// Up to 10 of those, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub unbound: Vec<UnboundPod>,
}

/// A pod a binding matches and did not bind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnboundPod {
    #[schemars(length(max = 253))]
    pub name: String,
    /// What its first matching container runs under instead.
    #[schemars(length(max = 1024))]
    pub reason: String,
}

fn binding_selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::selector::label_selector_schema(
        generator,
        "Pods whose labels match are bound; every pod when empty (a Kubernetes label selector).",
        "pod",
    )
}

/// The ProfileBinding CRD, with the rule the derive cannot express: an image or a selector.
pub fn binding_crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let rule = k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule {
        rule: "has(self.spec.image) || has(self.spec.selector)".into(),
        message: Some("spec: set image, selector or both: a binding with neither would bind nothing".into()),
        ..Default::default()
    };
    crate::with_root_rules(ProfileBinding::crd(), vec![rule])
}

/// An image reference split as matching needs it: the normalized repository, and the tag
/// and digest when given.
#[derive(Debug, PartialEq, Eq)]
struct ImageRef {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    fn parse(image: &str) -> Option<Self> {
        let r: oci_spec::distribution::Reference = image.parse().ok()?;
        // What the reference spelled, not the `latest` the parser fills in.
        let spelled_tag = {
            let name = image.split('@').next().unwrap_or(image);
            let last = name.rsplit('/').next().unwrap_or(name);
            last.contains(':')
        };
        Some(Self {
            repository: format!("{}/{}", r.resolve_registry(), r.repository()),
            tag: r.tag().filter(|_| spelled_tag).map(str::to_string),
            digest: r.digest().map(str::to_string),
        })
    }

    /// The tag a runtime pulls: the one given, else `latest` when no digest pins it.
    fn pulled_tag(&self) -> Option<&str> {
        self.tag.as_deref().or(self.digest.is_none().then_some("latest"))
    }
}

/// A binding's `spec.image`, parsed once.
enum ImagePattern {
    Any,
    Ref(ImageRef),
}

impl ImagePattern {
    fn parse(pattern: &str) -> Option<Self> {
        if pattern == ANY_IMAGE {
            return Some(Self::Any);
        }
        ImageRef::parse(pattern).map(Self::Ref)
    }

    /// A digest in the pattern decides alone (the content); else a tag must be the one the
    /// runtime pulls (`nginx` runs `nginx:latest`); a bare repository matches any tag or digest.
    fn matches(&self, image: Option<&ImageRef>) -> bool {
        let (Self::Ref(p), Some(i)) = (self, image) else {
            return matches!(self, Self::Any);
        };
        if p.repository != i.repository {
            return false;
        }
        match (&p.digest, &p.tag) {
            (Some(d), _) => i.digest.as_ref() == Some(d),
            (None, Some(t)) => i.pulled_tag() == Some(t.as_str()),
            (None, None) => true,
        }
    }
}

/// Whether a container running `image` matches `pattern` (a binding's `spec.image`): `*`
/// matches every image; a repository without tag or digest matches it with any; a digest
/// must be the image's; a tag must be the one the runtime pulls (`latest` when the image
/// names none). Docker Hub's short names are normalized on both sides. An image that does
/// not parse matches only `*`.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    ImagePattern::parse(pattern).is_some_and(|p| p.matches(ImageRef::parse(image).as_ref()))
}

/// An error in a binding's `image` or `selector`, naming the field; `None` when it is usable.
pub fn problem(binding: &ProfileBinding) -> Option<String> {
    if binding.spec.image.is_none() && binding.spec.selector.is_none() {
        return Some("spec: set image, selector or both: a binding with neither would bind nothing".into());
    }
    if let Some(image) = &binding.spec.image
        && ImagePattern::parse(image).is_none()
    {
        return Some(format!("spec.image: {image:?} is not an image reference"));
    }
    crate::selector::node_selector(binding.spec.selector.as_ref())
        .err()
        .map(|e| e.replacen("spec.nodeSelector", "spec.selector", 1))
}

/// A binding that applies to a pod, its image pattern parsed once.
struct Candidate<'a> {
    binding: &'a ProfileBinding,
    /// `None`: every container (no `image`).
    image: Option<ImagePattern>,
}

impl Candidate<'_> {
    /// The binding, if it is usable and its selector matches the pod's labels.
    fn of<'a>(binding: &'a ProfileBinding, labels: &BTreeMap<String, String>) -> Option<Candidate<'a>> {
        if problem(binding).is_some() {
            return None;
        }
        if let Some(s) = &binding.spec.selector
            && !crate::selector::selects(Some(s), labels)
        {
            return None;
        }
        let image = match &binding.spec.image {
            None => None,
            Some(p) => Some(ImagePattern::parse(p)?),
        };
        Some(Candidate { binding, image })
    }

    fn matches(&self, image: Option<&ImageRef>) -> bool {
        self.image.as_ref().is_none_or(|p| p.matches(image))
    }
}

/// Whether `binding` applies to `container` of a pod with `labels`.
pub fn matches(binding: &ProfileBinding, labels: &BTreeMap<String, String>, container: &Container) -> bool {
    Candidate::of(binding, labels)
        .is_some_and(|c| c.matches(container.image.as_deref().and_then(ImageRef::parse).as_ref()))
}

/// Most (binding, container) pairs one pod is matched over: a pod with thousands of
/// containers in a namespace with thousands of bindings is answered without binding.
pub const MAX_BIND_PAIRS: usize = 1_000_000;

/// What [`bind`] did to a pod.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bound {
    /// `(container, kind, profile, binding)` for each field it set.
    pub set: Vec<(String, ProfileKind, String, String)>,
    /// What the pod's creator should hear: profiles left in place, conflicts resolved.
    pub warnings: Vec<String>,
}

/// Containers a binding can bind: the pod's containers and init containers (ephemeral
/// containers are added later, by their own request, and are not bound).
fn containers_mut(pod: &mut Pod) -> impl Iterator<Item = &mut Container> {
    pod.spec
        .iter_mut()
        .flat_map(|s| s.init_containers.iter_mut().flatten().chain(s.containers.iter_mut()))
}

/// What a container runs under now, for `kind`, in words; `None` when it sets nothing (at
/// container or pod level, or for AppArmor through the legacy annotation).
fn own_profile(pod: &Pod, container: &Container, kind: ProfileKind) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let describe = |t: &str, l: Option<&String>| match l {
        Some(l) => format!("{t} {l}"),
        None => t.to_string(),
    };
    match kind {
        ProfileKind::SeccompProfile => effective_seccomp(spec, container.security_context.as_ref())
            .map(|p| describe(&p.type_, p.localhost_profile.as_ref())),
        ProfileKind::AppArmorProfile => effective_apparmor(pod, &container.name, container.security_context.as_ref())
            .map(|p| describe(&p.type_, p.localhost.as_ref())),
    }
}

/// `localhostProfile` of `kind`'s profile `name`, as the binding sets it.
fn localhost(kind: ProfileKind, name: &str, seccomp_subdir: &str) -> String {
    match kind {
        ProfileKind::SeccompProfile => crate::pods::seccomp_localhost_profile(seccomp_subdir, name),
        ProfileKind::AppArmorProfile => name.to_string(),
    }
}

/// Whether the kubelet takes the pod as it is (a mirror pod, which the kubelet made from a
/// static pod) or cannot run these profiles (a Windows pod): such pods are not bound.
fn not_bindable(pod: &Pod) -> Option<&'static str> {
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
    {
        return Some("a mirror pod (its kubelet runs the static pod it mirrors)");
    }
    let windows = pod
        .spec
        .as_ref()
        .and_then(|s| s.os.as_ref())
        .is_some_and(|os| os.name == "windows");
    windows.then_some("a Windows pod (no seccomp or AppArmor)")
}

/// Applies the bindings of the pod's namespace to a pod being created: for each container
/// and kind, the matching bindings sorted by name, the first one wins (the others are
/// named in a warning when they bind another profile). A container (or its pod, or for
/// AppArmor the legacy annotation) that sets a profile of that kind keeps it, with a
/// warning. A binding `usable` refuses (its profile missing or not accepted) is skipped,
/// with a warning, so a binding never makes a pod fail to start.
pub fn bind(
    pod: &mut Pod,
    bindings: &[&ProfileBinding],
    seccomp_subdir: &str,
    usable: impl Fn(&ProfileBinding) -> Result<(), String>,
) -> Bound {
    let mut out = Bound::default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut candidates: Vec<Candidate> = bindings.iter().filter_map(|b| Candidate::of(b, &labels)).collect();
    if candidates.is_empty() {
        return out;
    }
    if let Some(why) = not_bindable(pod) {
        out.warnings.push(format!("not bound by any ProfileBinding: {why}"));
        return out;
    }
    let containers = pod.spec.as_ref().map_or(0, |s| {
        s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
    });
    if candidates.len().saturating_mul(containers) > MAX_BIND_PAIRS {
        out.warnings.push(format!(
            "not bound: {} ProfileBindings × {containers} containers is more than {MAX_BIND_PAIRS} pairs",
            candidates.len()
        ));
        return out;
    }
    candidates.sort_by(|a, b| a.binding.metadata.name.cmp(&b.binding.metadata.name));
    let snapshot = pod.clone();
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    for container in containers_mut(pod) {
        let image = container.image.as_deref().and_then(ImageRef::parse);
        for kind in ProfileKind::ALL {
            let mut matching: Vec<&ProfileBinding> = Vec::new();
            for c in candidates
                .iter()
                .filter(|c| c.binding.spec.profile_ref.kind == kind && c.matches(image.as_ref()))
            {
                match usable(c.binding) {
                    Ok(()) => matching.push(c.binding),
                    Err(why) => {
                        refused.insert(c.binding.metadata.name.clone().unwrap_or_default(), why);
                    }
                }
            }
            let Some(winner) = matching.first() else { continue };
            let profile = &winner.spec.profile_ref.name;
            let winner_name = winner.metadata.name.clone().unwrap_or_default();
            let others: Vec<String> = matching[1..]
                .iter()
                .filter(|b| &b.spec.profile_ref.name != profile)
                .map(|b| {
                    format!(
                        "{} ({})",
                        b.metadata.name.as_deref().unwrap_or_default(),
                        b.spec.profile_ref.name
                    )
                })
                .collect();
            if !others.is_empty() {
                out.warnings.push(format!(
                    "container {:?}: ProfileBinding {winner_name} binds {} {profile}; also matching, not applied (the first binding by name wins): {}",
                    container.name,
                    kind.name(),
                    others.join(", ")
                ));
            }
            let wanted = localhost(kind, profile, seccomp_subdir);
            if let Some(own) = own_profile(&snapshot, container, kind) {
                if own != format!("Localhost {wanted}") {
                    out.warnings.push(format!(
                        "container {:?} keeps its own {} profile ({own}); ProfileBinding {winner_name} ({profile}) was not applied",
                        container.name,
                        kind.slug()
                    ));
                }
                continue;
            }
            let context = container.security_context.get_or_insert_with(Default::default);
            match kind {
                ProfileKind::SeccompProfile => {
                    context.seccomp_profile = Some(PodSeccomp {
                        type_: "Localhost".into(),
                        localhost_profile: Some(wanted),
                    })
                }
                ProfileKind::AppArmorProfile => {
                    context.app_armor_profile = Some(PodAppArmor {
                        type_: "Localhost".into(),
                        localhost_profile: Some(wanted),
                    })
                }
            }
            out.set
                .push((container.name.clone(), kind, profile.clone(), winner_name));
        }
    }
    for (binding, why) in refused {
        out.warnings
            .push(format!("ProfileBinding {binding} was not applied: {why}"));
    }
    out
}

/// A pod's standing under a binding: `None` when the binding matches none of its
/// containers; `Ok` when every matching container runs under the binding's profile; `Err`
/// with what the first other one runs under.
pub fn standing(binding: &ProfileBinding, pod: &Pod, seccomp_subdir: &str) -> Option<Result<(), String>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let spec = pod.spec.as_ref()?;
    let kind = binding.spec.profile_ref.kind;
    let wanted = format!(
        "Localhost {}",
        localhost(kind, &binding.spec.profile_ref.name, seccomp_subdir)
    );
    let mut any = false;
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        if !matches(binding, &labels, c) {
            continue;
        }
        any = true;
        match own_profile(pod, c, kind) {
            Some(p) if p == wanted => {}
            Some(p) => return Some(Err(format!("container {:?} runs under {p}", c.name))),
            None => return Some(Err(format!("container {:?} sets no {} profile", c.name, kind.slug()))),
        }
    }
    any.then_some(Ok(()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn binding(
        name: &str,
        kind: &str,
        profile: &str,
        image: Option<&str>,
        selector: serde_json::Value,
    ) -> ProfileBinding {
        let mut spec = json!({"profileRef": {"kind": kind, "name": profile}});
        if let Some(i) = image {
            spec["image"] = json!(i);
        }
        if !selector.is_null() {
            spec["selector"] = selector;
        }
        serde_json::from_value(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
            "metadata": {"name": name, "namespace": "team"}, "spec": spec}))
        .unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn images_match_exactly_or_by_repository_with_docker_hub_names_normalized() {
        let cases = [
            ("nginx", "nginx", true),
            ("nginx", "nginx:1.27", true),
            ("nginx", "docker.io/library/nginx:1.27", true),
            (
                "docker.io/library/nginx",
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                true,
            ),
            ("nginx:1.27", "nginx:1.27", true),
            ("nginx:1.27", "docker.io/library/nginx:1.27", true),
            ("nginx:1.27", "nginx:1.28", false),
            ("nginx:1.27", "nginx", false),
            ("nginx", "nginx-unprivileged:1.27", false),
            ("nginx", "example.com/nginx:1.27", false),
            ("bitnami/nginx", "docker.io/bitnami/nginx:1", true),
            ("registry.example:5000/app", "registry.example:5000/app:v2", true),
            ("registry.example:5000/app:v1", "registry.example:5000/app:v2", false),
            ("*", "anything:at-all", true),
            ("*", "NOT A REF", true),
            ("not a ref!", "nginx", false),
            ("nginx:latest", "nginx", true),
            (
                "nginx:latest",
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                false,
            ),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "nginx:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                true,
            ),
            (
                "nginx:1.28@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "nginx:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                true,
            ),
            ("localhost:5000/app", "localhost:5000/app:v1", true),
            ("localhost:5000/app", "app:v1", false),
        ];
        for (pattern, image, want) in cases {
            assert_eq!(image_matches(pattern, image), want, "{pattern} vs {image}");
        }
    }

    #[test]
    fn bind_sets_the_fields_of_matching_containers_only() {
        let b = [
            binding("by-image", "SeccompProfile", "web", Some("nginx"), json!(null)),
            binding(
                "by-label",
                "AppArmorProfile",
                "web-aa",
                None,
                json!({"matchLabels": {"app": "web"}}),
            ),
        ];
        let refs: Vec<&ProfileBinding> = b.iter().collect();
        let mut p = pod(json!({"metadata": {"name": "p", "labels": {"app": "web"}},
            "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "side", "image": "envoy"}]}}));
        let out = bind(&mut p, &refs, "palisade", |_| Ok(()));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        let spec = p.spec.as_ref().unwrap();
        let web = spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(
            web.seccomp_profile.as_ref().unwrap().localhost_profile.as_deref(),
            Some("palisade/web.json")
        );
        assert_eq!(
            web.app_armor_profile.as_ref().unwrap().localhost_profile.as_deref(),
            Some("web-aa")
        );
        let side = spec.containers[1].security_context.as_ref().unwrap();
        assert!(side.seccomp_profile.is_none(), "envoy is not nginx");
        assert_eq!(side.app_armor_profile.as_ref().unwrap().type_, "Localhost");
        assert!(
            spec.init_containers.as_ref().unwrap()[0]
                .security_context
                .as_ref()
                .unwrap()
                .app_armor_profile
                .is_some(),
            "init containers are bound by the selector too"
        );
        assert_eq!(out.set.len(), 4);
        assert!(p.metadata.annotations.is_none(), "never the deprecated annotation");

        let mut other = pod(json!({"metadata": {"name": "q", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]}}));
        assert!(bind(&mut other, &refs, "palisade", |_| Ok(())).set.is_empty());
    }

    #[test]
    fn a_profile_the_pod_sets_itself_is_kept_with_a_warning() {
        let b = [
            binding("b", "SeccompProfile", "web", Some("*"), json!(null)),
            binding("a", "AppArmorProfile", "web-aa", Some("*"), json!(null)),
        ];
        let refs: Vec<&ProfileBinding> = b.iter().collect();
        let mut p = pod(json!({"metadata": {"name": "p",
                "annotations": {"container.apparmor.security.beta.kubernetes.io/legacy": "localhost/mine"}},
            "spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "legacy", "image": "x"},
                                    {"name": "own", "image": "x", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/web.json"}}}]}}));
        let before = p.clone();
        let out = bind(&mut p, &refs, "palisade", |_| Ok(()));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers[0].security_context,
            before.spec.as_ref().unwrap().containers[0].security_context,
            "the legacy annotation and the pod-level RuntimeDefault are the pod's own choice"
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("\"legacy\" keeps its own seccomp profile (RuntimeDefault)")),
            "{:?}",
            out.warnings
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("\"legacy\" keeps its own apparmor profile (Localhost mine)")),
            "{:?}",
            out.warnings
        );
        assert_eq!(
            spec.containers[1]
                .security_context
                .as_ref()
                .unwrap()
                .app_armor_profile
                .as_ref()
                .unwrap()
                .localhost_profile
                .as_deref(),
            Some("web-aa")
        );
        assert!(
            !out.warnings.iter().any(|w| w.contains("\"own\" keeps its own seccomp")),
            "already the bound profile: nothing to say"
        );
    }

    #[test]
    fn conflicting_bindings_resolve_by_name_and_say_so() {
        let b = [
            binding("zeta", "SeccompProfile", "strict", Some("nginx"), json!(null)),
            binding("alpha", "SeccompProfile", "loose", None, json!({})),
        ];
        let refs: Vec<&ProfileBinding> = b.iter().collect();
        for order in [refs.clone(), refs.iter().rev().copied().collect()] {
            let mut p =
                pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}));
            let out = bind(&mut p, &order, "palisade", |_| Ok(()));
            assert_eq!(
                out.set,
                vec![(
                    "web".into(),
                    ProfileKind::SeccompProfile,
                    "loose".into(),
                    "alpha".into()
                )]
            );
            assert_eq!(out.warnings.len(), 1);
            assert!(
                out.warnings[0].contains("alpha binds SeccompProfile loose")
                    && out.warnings[0].contains("zeta (strict)"),
                "{:?}",
                out.warnings
            );
        }
    }

    #[test]
    fn standing_says_whether_matching_containers_run_under_the_profile() {
        let b = binding("b", "SeccompProfile", "web", Some("nginx"), json!(null));
        let bound = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/web.json"}}}]}}),
        );
        assert_eq!(standing(&b, &bound, "palisade"), Some(Ok(())));
        let bare = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}));
        assert_eq!(
            standing(&b, &bare, "palisade"),
            Some(Err("container \"web\" sets no seccomp profile".into()))
        );
        let other =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "db", "image": "postgres"}]}}));
        assert_eq!(standing(&b, &other, "palisade"), None);
    }

    #[test]
    fn a_binding_whose_profile_is_not_usable_is_skipped_with_a_warning() {
        let b = [
            binding("a-missing", "SeccompProfile", "gone", Some("*"), json!(null)),
            binding("b-fine", "SeccompProfile", "web", Some("*"), json!(null)),
        ];
        let refs: Vec<&ProfileBinding> = b.iter().collect();
        let mut p =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}));
        let out = bind(&mut p, &refs, "palisade", |b| {
            if b.spec.profile_ref.name == "gone" {
                Err("SeccompProfile gone does not exist".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(
            out.set,
            vec![("web".into(), ProfileKind::SeccompProfile, "web".into(), "b-fine".into())],
            "the next binding by name applies"
        );
        assert_eq!(
            out.warnings,
            vec!["ProfileBinding a-missing was not applied: SeccompProfile gone does not exist".to_string()]
        );
    }

    #[test]
    fn windows_and_mirror_pods_are_not_bound() {
        let b = binding("b", "SeccompProfile", "web", Some("*"), json!(null));
        for mut p in [
            pod(
                json!({"metadata": {"name": "p"}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "c", "image": "x"}]}}),
            ),
            pod(
                json!({"metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "abc"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}),
            ),
        ] {
            let before = p.clone();
            let out = bind(&mut p, &[&b], "palisade", |_| Ok(()));
            assert!(out.set.is_empty() && p == before);
            assert!(
                out.warnings[0].starts_with("not bound by any ProfileBinding: a "),
                "{:?}",
                out.warnings
            );
        }
    }

    #[test]
    fn the_work_for_one_pod_is_bounded() {
        let many: Vec<ProfileBinding> = (0..2000)
            .map(|i| binding(&format!("b{i:04}"), "SeccompProfile", "web", Some("nginx"), json!(null)))
            .collect();
        let refs: Vec<&ProfileBinding> = many.iter().collect();
        let containers: Vec<serde_json::Value> = (0..600)
            .map(|i| json!({"name": format!("c{i}"), "image": "nginx"}))
            .collect();
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}));
        let out = bind(&mut p, &refs, "palisade", |_| Ok(()));
        assert!(out.set.is_empty());
        assert!(
            out.warnings[0].contains("2000 ProfileBindings × 600 containers"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn a_broken_binding_binds_nothing_and_names_its_field() {
        let neither = binding("n", "SeccompProfile", "web", None, json!(null));
        assert!(
            problem(&neither)
                .unwrap()
                .starts_with("spec: set image, selector or both")
        );
        let b = binding("b", "SeccompProfile", "web", Some("UPPER/Case:!!"), json!(null));
        assert!(problem(&b).unwrap().starts_with("spec.image: "));
        let s = binding(
            "s",
            "SeccompProfile",
            "web",
            None,
            json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
        );
        assert!(problem(&s).unwrap().starts_with("spec.selector: "), "{:?}", problem(&s));
        let mut p =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}));
        assert!(bind(&mut p, &[&b, &s], "palisade", |_| Ok(())).set.is_empty());
    }
}
