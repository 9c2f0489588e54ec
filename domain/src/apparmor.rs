//! The `AppArmorProfile` kind: raw policy text or a structured (`abstract`) description.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ProfileState, ProfileStatus, profile_object};

/// AppArmor profile names that belong to someone else, never loaded by Palisade: the
/// container runtimes' default profiles (a runtime loads its default lazily and skips it when
/// a profile of that name is already loaded, so whoever loads the name first confines every
/// `RuntimeDefault` container), AppArmor's own `unconfined`, and profiles that Debian's and
/// Ubuntu's packages ship under plain names. A trailing `*` matches any suffix. Extended by
/// the chart's `reservedProfileNames` (operator and agents).
pub const RESERVED_NAMES: &[&str] = &[
    "unconfined",
    "docker-default",
    "cri-containerd.apparmor.d",
    "crio-default*",
    "containers-default*",
    "podman*",
    "buildah*",
    "runc",
    "crun",
    "containerd*",
    "lxc-*",
    "libvirt-*",
    "snap.*",
    "snap-update-ns.*",
    "kubelet*",
];

/// Why `name` is reserved (built-in list, then `extra`), or `None`.
pub fn reserved_name(name: &str, extra: &[String]) -> Option<String> {
    let builtin = RESERVED_NAMES
        .iter()
        .map(|s| (*s, "it belongs to a container runtime or the host"));
    let configured = extra
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| (s, "the cluster's reserved names list it"));
    for (pattern, why) in builtin.chain(configured) {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        if hit {
            return Some(format!(
                "metadata.name {name:?} is reserved ({pattern}): {why}; Palisade never loads it"
            ));
        }
    }
    None
}

/// Largest raw policy accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// An AppArmor profile that Palisade loads on every selected node under the kernel name
/// `metadata.name`, for pods to use with
/// `appArmorProfile: {type: Localhost, localhostProfile: <name>}`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "AppArmorProfile",
    plural = "apparmorprofiles",
    shortname = "aap",
    category = "palisade",
    doc = "An AppArmor profile that Palisade loads on the selected nodes under the kernel name metadata.name.",
    status = "ProfileStatus",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Enforce or Complain"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Loaded on every targeted node"
    ),
    printcolumn(
        name = "Installed",
        type_ = "integer",
        json_path = ".status.nodes.installed",
        description = "Nodes that loaded the current generation"
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
        json_path = ".status.conditions[?(@.type==\"RulesNotEnforced\")].reason",
        description = "Set when some nodes' kernels do not mediate rule classes of the profile (see the RulesNotEnforced condition)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.policy) != has(self.abstract)", "message": "exactly one of spec.policy and spec.abstract must be set"}
]))]
pub struct AppArmorProfileSpec {
    /// Raw AppArmor policy text, as aa-genprof/aa-logprof write it. It must define exactly
    /// one top-level profile, named like this object (child profiles `name//child` allowed),
    /// and may include only `<...>` paths from the node's AppArmor include directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub policy: Option<String>,

    /// A structured description from which Palisade writes the profile.
    #[serde(default, rename = "abstract", skip_serializing_if = "Option::is_none")]
    pub abstract_: Option<AppArmorAbstract>,

    /// `Enforce` blocks what the profile does not allow; `Complain` only logs it.
    #[serde(default)]
    pub mode: AppArmorMode,

    /// Which nodes get the profile; every node when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::selector::node_selector_schema")]
    pub node_selector: Option<LabelSelector>,

    /// `Disabled` unloads the profile from every node but keeps the object.
    #[serde(default)]
    pub state: ProfileState,
}

profile_object!(AppArmorProfile);

/// AppArmor enforcement mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AppArmorMode {
    /// Deny and log what the profile does not allow.
    #[default]
    Enforce,
    /// Allow everything, logging what the profile would deny.
    Complain,
}

impl AppArmorMode {
    /// The kernel's word for the mode: in `/sys/kernel/security/apparmor/profiles`, in a
    /// profile's flags, in the compiled policy.
    pub fn kernel_word(self) -> &'static str {
        match self {
            AppArmorMode::Enforce => "enforce",
            AppArmorMode::Complain => "complain",
        }
    }
}

/// A structured AppArmor profile: SPO's `abstract` fields with the rules SPO writes for
/// them, plus `denyPaths`. In Enforce mode the profile also denies writes to /proc outside
/// the process's own entries and /proc/sys/kernel/shm*, any access to /proc/{sysrq-trigger,
/// mem,kmem,kcore} and /sys/firmware/efi/efivars (SPO's and Docker's defaults); deny
/// rules are left out in Complain mode, where they would still deny.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorAbstract {
    /// Programs and libraries the confined process may run and map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<AppArmorExecutables>,
    /// Files and directories the confined process may read and write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<AppArmorFilesystem>,
    /// Network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<AppArmorNetwork>,
    /// Linux capabilities the confined process may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<AppArmorCapabilities>,
}

/// Executables and libraries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorExecutables {
    /// Absolute paths (globs allowed) the process may execute, inheriting this profile
    /// (rule: `<path> ixr,`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_executables: Vec<AppArmorPath>,
    /// Absolute paths (globs allowed) of libraries the process may map (rule: `<path> mr,`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_libraries: Vec<AppArmorPath>,
}

/// Filesystem access by path; globs (`*`, `**`, `?`, `[..]`, `{a,b}`) allowed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorFilesystem {
    /// Paths the process may read, and not write, link or lock (rules: `<path> r,` and, in
    /// Enforce mode, `deny <path> wlk,`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub read_only_paths: Vec<AppArmorPath>,
    /// Paths the process may write, link and lock, and not read (rules: `<path> wlk,` and,
    /// in Enforce mode, `deny <path> r,`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub write_only_paths: Vec<AppArmorPath>,
    /// Paths the process may read, write, link and lock (rule: `<path> rwlk,`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub read_write_paths: Vec<AppArmorPath>,
    /// Paths always denied, even where another rule allows them (Enforce mode only: a
    /// deny rule would still deny in Complain mode, so it is left out there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub deny_paths: Vec<AppArmorPath>,
}

/// Network access.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorNetwork {
    /// Allow raw sockets (`network raw,`); when not true, Enforce mode writes
    /// `deny network raw,`. Without a network section no network rule is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_raw: Option<bool>,
    /// TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_protocols: Option<AppArmorProtocols>,
}

/// Allowed IP protocols.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorProtocols {
    /// Allow TCP over any address family (`network tcp,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tcp: Option<bool>,
    /// Allow UDP over any address family (`network udp,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_udp: Option<bool>,
}

/// Capabilities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorCapabilities {
    /// Capability names as AppArmor spells them (lowercase, no `CAP_` prefix); rule:
    /// `capability <name>,`. As in SPO, `sys_rawio` also allows running /sbin/fsck and
    /// /sbin/fsck.ext4 and mount, remount and umount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_capabilities: Vec<Capability>,
}

/// Linux capabilities, spelled as AppArmor rules spell them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Chown,
    DacOverride,
    DacReadSearch,
    Fowner,
    Fsetid,
    Kill,
    Setgid,
    Setuid,
    Setpcap,
    LinuxImmutable,
    NetBindService,
    NetBroadcast,
    NetAdmin,
    NetRaw,
    IpcLock,
    IpcOwner,
    SysModule,
    SysRawio,
    SysChroot,
    SysPtrace,
    SysPacct,
    SysAdmin,
    SysBoot,
    SysNice,
    SysResource,
    SysTime,
    SysTtyConfig,
    Mknod,
    Lease,
    AuditWrite,
    AuditControl,
    Setfcap,
    MacOverride,
    MacAdmin,
    Syslog,
    WakeAlarm,
    BlockSuspend,
    AuditRead,
    Perfmon,
    Bpf,
    CheckpointRestore,
}

/// An absolute path or glob in an AppArmor rule. It may not contain what would end the rule
/// or start another (quotes, backslashes, control characters, `#`); Palisade quotes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": r#"self.startsWith('/') && !self.matches('[\\x00-\\x1f\\x7f"\\\\#]')"#,
     "message": "must be an absolute path without control characters, quotes, backslashes or '#'"}
]))]
pub struct AppArmorPath(#[schemars(length(min = 1, max = 4096))] pub String);

impl AppArmorPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AppArmorPath {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}
