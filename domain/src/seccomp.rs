//! The `SeccompProfile` kind: the OCI runtime-spec `LinuxSeccomp` fields plus Palisade's own.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ProfileState, ProfileStatus, profile_object};

/// Longest syscall list, names list and args list accepted: far above any real profile,
/// low enough that a runaway object is refused with a clear message.
pub const MAX_SYSCALL_RULES: usize = 1024;
pub const MAX_NAMES_PER_RULE: usize = 1024;
pub const MAX_ARGS: usize = 6;

/// A seccomp profile that Palisade writes to every selected node as
/// `<kubelet-root>/seccomp/palisade/<name>.json`, for pods to use with
/// `seccompProfile: {type: Localhost, localhostProfile: palisade/<name>.json}`.
/// The fields are those of the OCI runtime-spec `LinuxSeccomp`, spelled the same.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "SeccompProfile",
    plural = "seccompprofiles",
    shortname = "sp",
    category = "palisade",
    doc = "A seccomp profile that Palisade writes to the selected nodes as seccomp/palisade/<name>.json under the kubelet root.",
    status = "ProfileStatus",
    printcolumn(
        name = "Default",
        type_ = "string",
        json_path = ".spec.defaultAction",
        description = "Action for syscalls no rule matches"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Installed on every targeted node"
    ),
    printcolumn(
        name = "Installed",
        type_ = "integer",
        json_path = ".status.nodes.installed",
        description = "Nodes that installed the current generation"
    ),
    printcolumn(
        name = "Targeted",
        type_ = "integer",
        json_path = ".status.nodes.targeted",
        description = "Nodes the profile selects"
    ),
    printcolumn(
        name = "Warning",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"SyscallsIgnored\")].reason",
        description = "Set when syscall names are left out of the filter (see the SyscallsIgnored condition)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileSpec {
    /// Action for every syscall that no rule matches (OCI `defaultAction`).
    pub default_action: SeccompAction,

    /// Errno returned by `SCMP_ACT_ERRNO` / `SCMP_ACT_TRACE` as the default action
    /// (OCI `defaultErrnoRet`); EPERM when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4095))]
    pub default_errno_ret: Option<u32>,

    /// Architectures the filter covers (OCI `architectures`); the node's native one when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub architectures: Vec<SeccompArch>,

    /// Filter flags passed to seccomp(2) (OCI `flags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub flags: Vec<SeccompFlag>,

    /// Absolute path of the seccomp agent's UNIX socket for `SCMP_ACT_NOTIFY` (OCI `listenerPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 4096))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.startsWith('/')", "message": "listenerPath must be an absolute path"}
    ]))]
    pub listener_path: Option<String>,

    /// Opaque data passed to the seccomp agent (OCI `listenerMetadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub listener_metadata: Option<String>,

    /// Rules, matched in order of specificity by the kernel filter (OCI `syscalls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub syscalls: Vec<SeccompSyscall>,

    /// Name of another SeccompProfile whose rules this one inherits (union of both rule sets;
    /// this profile's `defaultAction` wins). Chains are resolved and checked for cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub base_profile_name: Option<String>,

    /// Which nodes get the profile; every node when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::selector::node_selector_schema")]
    pub node_selector: Option<LabelSelector>,

    /// `Disabled` removes the profile from every node but keeps the object.
    #[serde(default)]
    pub state: ProfileState,
}

profile_object!(SeccompProfile);

/// One seccomp rule: an action for a set of syscalls, optionally narrowed by argument checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeccompSyscall {
    /// Syscall names, as libseccomp spells them (e.g. `mkdirat`).
    #[schemars(
        length(min = 1, max = 1024),
        inner(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9_]+$"))
    )]
    pub names: Vec<String>,

    /// What happens when a listed syscall matches.
    pub action: SeccompAction,

    /// Errno returned for `SCMP_ACT_ERRNO` / `SCMP_ACT_TRACE`; EPERM when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4095))]
    pub errno_ret: Option<u32>,

    /// Argument conditions, all of which must hold (at most 6, one per argument index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    pub args: Vec<SeccompArg>,
}

/// A condition on one syscall argument. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the value the masked argument must equal (as runc passes them to libseccomp).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeccompArg {
    /// Argument index, 0 to 5.
    #[schemars(range(min = 0, max = 5))]
    pub index: u32,
    /// Value compared with the argument (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// Second value: the datum for `SCMP_CMP_MASKED_EQ`, otherwise unused.
    #[serde(default)]
    pub value_two: u64,
    /// Comparison operator.
    pub op: SeccompOperator,
}

/// OCI seccomp actions (`SCMP_ACT_*`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum SeccompAction {
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// OCI seccomp architectures (`SCMP_ARCH_*`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum SeccompArch {
    #[serde(rename = "SCMP_ARCH_X86")]
    X86,
    #[serde(rename = "SCMP_ARCH_X86_64")]
    X86_64,
    #[serde(rename = "SCMP_ARCH_X32")]
    X32,
    #[serde(rename = "SCMP_ARCH_ARM")]
    Arm,
    #[serde(rename = "SCMP_ARCH_AARCH64")]
    Aarch64,
    #[serde(rename = "SCMP_ARCH_MIPS")]
    Mips,
    #[serde(rename = "SCMP_ARCH_MIPS64")]
    Mips64,
    #[serde(rename = "SCMP_ARCH_MIPS64N32")]
    Mips64N32,
    #[serde(rename = "SCMP_ARCH_MIPSEL")]
    Mipsel,
    #[serde(rename = "SCMP_ARCH_MIPSEL64")]
    Mipsel64,
    #[serde(rename = "SCMP_ARCH_MIPSEL64N32")]
    Mipsel64N32,
    #[serde(rename = "SCMP_ARCH_PPC")]
    Ppc,
    #[serde(rename = "SCMP_ARCH_PPC64")]
    Ppc64,
    #[serde(rename = "SCMP_ARCH_PPC64LE")]
    Ppc64Le,
    #[serde(rename = "SCMP_ARCH_S390")]
    S390,
    #[serde(rename = "SCMP_ARCH_S390X")]
    S390X,
    #[serde(rename = "SCMP_ARCH_PARISC")]
    Parisc,
    #[serde(rename = "SCMP_ARCH_PARISC64")]
    Parisc64,
    #[serde(rename = "SCMP_ARCH_RISCV64")]
    Riscv64,
    #[serde(rename = "SCMP_ARCH_LOONGARCH64")]
    Loongarch64,
    #[serde(rename = "SCMP_ARCH_M68K")]
    M68k,
    #[serde(rename = "SCMP_ARCH_SH")]
    Sh,
    #[serde(rename = "SCMP_ARCH_SHEB")]
    Sheb,
}

/// OCI seccomp filter flags.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[allow(clippy::enum_variant_names)]
pub enum SeccompFlag {
    #[serde(rename = "SECCOMP_FILTER_FLAG_TSYNC")]
    Tsync,
    #[serde(rename = "SECCOMP_FILTER_FLAG_LOG")]
    Log,
    #[serde(rename = "SECCOMP_FILTER_FLAG_SPEC_ALLOW")]
    SpecAllow,
    #[serde(rename = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")]
    WaitKillableRecv,
}

/// OCI seccomp argument comparison operators (`SCMP_CMP_*`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum SeccompOperator {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    LessThan,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    GreaterThan,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

impl SeccompProfile {
    /// The path pods put in `localhostProfile`, relative to the kubelet's seccomp directory.
    pub fn localhost_profile(name: &str) -> String {
        crate::pods::seccomp_localhost_profile(crate::SECCOMP_SUBDIR, name)
    }
}
