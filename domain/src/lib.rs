//! palisade-domain: the palisade.dev API types and Palisade's domain: validation, rendering,
//! the judgement of compiled policy and of node reports, learning (pure: no I/O, no client).

// kube-derive repeats `printcolumn(...)` keys, which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod apparmor;
pub mod binding;
pub mod common;
pub mod compiled;
pub mod denials;
pub mod learn;
pub mod nodestatus;
pub mod pods;
pub mod seccomp;

pub mod render;
pub mod selector;

pub use apparmor::{AppArmorMode, AppArmorProfile, AppArmorProfileSpec};
pub use binding::{ProfileBinding, ProfileBindingSpec, ProfileBindingStatus, ProfileRef, binding_crd};
pub use common::{
    AcceptedContent, CONDITION_ACCEPTED, CONDITION_READY, CONDITION_RULES_NOT_ENFORCED, CONDITION_SYSCALLS_IGNORED,
    CONDITION_WEAKENED, IgnoredSyscalls, NodeCounts, NodeFailure, ProfileKind, ProfileObject, ProfileState,
    ProfileStatus, accepted_content, digest, parsed,
};
pub use nodestatus::{
    Expectation, InstalledSet, InstalledSummary, KindSummary, NODE_STATUS_VERSION, NodeCapabilities, NodeProfile,
    NodeProfileState, NodeProfileStatus, NodeProfileStatusStatus, Standing, installed_key, judge,
};
pub use seccomp::{SeccompProfile, SeccompProfileSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, ValidationRule};
use kube::CustomResourceExt;

/// API group of every Palisade kind.
pub const GROUP: &str = "palisade.dev";
/// API version of every Palisade kind.
pub const VERSION: &str = "v1alpha1";

/// `apiVersion` of every Palisade object.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// The label every agent heartbeat Lease carries (key, value).
pub const AGENT_LEASE_LABEL: (&str, &str) = ("app.kubernetes.io/name", "palisade-agent");

/// The heartbeat Lease of the agent on `node`.
pub fn agent_lease_name(node: &str) -> String {
    format!("palisade-agent-{node}")
}

/// The label selector of the agents' heartbeat Leases.
pub fn agent_lease_selector() -> String {
    format!("{}={}", AGENT_LEASE_LABEL.0, AGENT_LEASE_LABEL.1)
}
/// Prefix of the legacy per-container AppArmor annotation (`<prefix><container>:
/// localhost/<profile>`).
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The string a unit-only enum serializes to (`SCMP_ARCH_X86_64`, `SCMP_ACT_ALLOW`, ...).
pub fn wire_name<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Subdirectory of the kubelet's seccomp directory that Palisade owns.
pub const SECCOMP_SUBDIR: &str = "palisade";
/// Longest profile name: it becomes a kernel profile name and a `<name>.json` file name.
pub const MAX_NAME_LEN: usize = 200;

/// CEL rule on `metadata.name` shared by both profile kinds.
fn name_rule() -> ValidationRule {
    ValidationRule {
        rule: format!(
            "self.metadata.name.size() <= {MAX_NAME_LEN} && self.metadata.name.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')"
        ),
        message: Some(format!(
            "metadata.name must be at most {MAX_NAME_LEN} lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
        )),
        ..Default::default()
    }
}

pub(crate) fn with_root_rules(
    mut crd: CustomResourceDefinition,
    rules: Vec<ValidationRule>,
) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .extend(rules.clone());
        }
    }
    crd
}

/// The AppArmorProfile CRD, with the rules the derive cannot express.
pub fn apparmor_crd() -> CustomResourceDefinition {
    let quoted = |names: Vec<&str>| names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let exact: Vec<&str> = apparmor::RESERVED_NAMES
        .iter()
        .filter(|n| !n.ends_with('*'))
        .copied()
        .collect();
    let prefixes: Vec<&str> = apparmor::RESERVED_NAMES
        .iter()
        .filter_map(|n| n.strip_suffix('*'))
        .collect();
    let reserved = ValidationRule {
        rule: format!(
            "!(self.metadata.name in [{}]) && ![{}].exists(p, self.metadata.name.startsWith(p))",
            quoted(exact),
            quoted(prefixes)
        ),
        message: Some(
            "metadata.name is reserved: it names a container runtime's default profile, AppArmor's 'unconfined' or a host profile (see the README's reserved names)".into(),
        ),
        ..Default::default()
    };
    with_root_rules(AppArmorProfile::crd(), vec![name_rule(), reserved])
}

/// The SeccompProfile CRD, with the rules the derive cannot express.
pub fn seccomp_crd() -> CustomResourceDefinition {
    with_root_rules(SeccompProfile::crd(), vec![name_rule()])
}

/// The NodeProfileStatus CRD: v1alpha2, stored and served; v1alpha1 (one entry per
/// profile) no longer served, listed so objects stored at it are still read.
pub fn node_profile_status_crd() -> CustomResourceDefinition {
    let mut crd = kube::core::crd::merge_crds(
        vec![NodeProfileStatus::crd(), nodestatus::v1alpha1::NodeProfileStatus::crd()],
        nodestatus::NODE_STATUS_VERSION,
    )
    .expect("both versions describe one kind");
    for v in &mut crd.spec.versions {
        if v.name != nodestatus::NODE_STATUS_VERSION {
            v.served = false;
            v.additional_printer_columns = None;
        }
    }
    crd
}

/// Every CRD Palisade installs, with the file name each is generated into.
pub fn all_crds() -> Vec<(String, CustomResourceDefinition)> {
    [apparmor_crd(), seccomp_crd(), node_profile_status_crd(), binding_crd()]
        .into_iter()
        .map(|crd| (format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default()), crd))
        .collect()
}

/// Renders a CRD as the YAML committed under `crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = yaml_serde::to_string(crd).expect("a CRD always serializes");
    format!("# Generated by `make generate` from the palisade-domain types. Do not edit.\n---\n{body}")
}

#[cfg(test)]
mod schema_tests;
