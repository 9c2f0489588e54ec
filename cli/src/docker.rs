//! Docker's and Podman's seccomp format (`archMap`, `includes`/`excludes`, `minKernel`,
//! `comment`, string `errno`) evaluated for one target, the way Docker and Podman evaluate
//! it when they start a container, into a Palisade `SeccompProfileSpec`.

use std::collections::{BTreeMap, BTreeSet};

use palisade_domain::seccomp::{
    SeccompAction, SeccompArch, SeccompArg, SeccompFlag, SeccompOperator, SeccompProfileSpec, SeccompSyscall,
};
use serde::Deserialize;
use serde_json::Value;

use crate::ConvertError;

/// The capabilities a container gets by default from Docker and containerd (and so from
/// Kubernetes pods on containerd that add or drop none).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What the profile is evaluated for.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node architecture (its `archMap` entry gives the filter's architectures).
    pub arch: SeccompArch,
    /// The container's capabilities (`CAP_*`).
    pub caps: BTreeSet<String>,
    /// The nodes' kernel (major, minor); `None`: assume one newer than every `minKernel`.
    pub kernel: Option<(u32, u32)>,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            arch: native_arch(),
            caps: DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            kernel: None,
        }
    }
}

/// The architecture this program was built for, as a seccomp architecture.
pub fn native_arch() -> SeccompArch {
    match std::env::consts::ARCH {
        "aarch64" => SeccompArch::Aarch64,
        "x86" => SeccompArch::X86,
        "arm" => SeccompArch::Arm,
        "powerpc64" => SeccompArch::Ppc64Le,
        "s390x" => SeccompArch::S390X,
        "riscv64" => SeccompArch::Riscv64,
        _ => SeccompArch::X86_64,
    }
}

/// Docker's name for the node's architecture in `includes.arches`/`excludes.arches` (its
/// libseccomp-style names, as moby's seccomp loader spells them: `amd64`, `x86`, `arm64`,
/// `mipsel64`, ...).
pub fn docker_arch_name(arch: SeccompArch) -> &'static str {
    match arch {
        SeccompArch::X86_64 => "amd64",
        SeccompArch::X86 => "x86",
        SeccompArch::X32 => "x32",
        SeccompArch::Aarch64 => "arm64",
        SeccompArch::Arm => "arm",
        SeccompArch::Mips => "mips",
        SeccompArch::Mips64 => "mips64",
        SeccompArch::Mips64N32 => "mips64n32",
        SeccompArch::Mipsel => "mipsel",
        SeccompArch::Mipsel64 => "mipsel64",
        SeccompArch::Mipsel64N32 => "mips3l64n32",
        SeccompArch::Ppc => "ppc",
        SeccompArch::Ppc64 => "ppc64",
        SeccompArch::Ppc64Le => "ppc64le",
        SeccompArch::S390 => "s390",
        SeccompArch::S390X => "s390x",
        SeccompArch::Parisc => "parisc",
        SeccompArch::Parisc64 => "parisc64",
        SeccompArch::Riscv64 => "riscv64",
        SeccompArch::Loongarch64 => "loongarch64",
        SeccompArch::M68k => "m68k",
        SeccompArch::Sh => "sh",
        SeccompArch::Sheb => "sheb",
    }
}

/// Parses `--arch`: `SCMP_ARCH_X86_64`, `x86_64`, `amd64`, `arm64`, ...
pub fn parse_arch(s: &str) -> Result<SeccompArch, String> {
    let scmp = if s.starts_with("SCMP_ARCH_") {
        s.to_string()
    } else {
        let lower = s.to_ascii_lowercase();
        let go = [
            ("amd64", "X86_64"),
            ("x86_64", "X86_64"),
            ("386", "X86"),
            ("arm64", "AARCH64"),
            ("mipsle", "MIPSEL"),
            ("mips64le", "MIPSEL64"),
            ("loong64", "LOONGARCH64"),
        ];
        let upper = go
            .iter()
            .find(|(g, _)| *g == lower)
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| lower.to_ascii_uppercase());
        format!("SCMP_ARCH_{upper}")
    };
    serde_json::from_value(Value::String(scmp.clone())).map_err(|_| format!("unknown architecture {s:?}"))
}

/// Parses `--kernel 5.10` (or `6.1.0-13-amd64`) into (major, minor).
pub fn parse_kernel(s: &str) -> Result<(u32, u32), String> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.parse().ok());
    match (major, minor) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!("kernel version {s:?} is not MAJOR.MINOR")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: SeccompAction,
    default_errno_ret: Option<u32>,
    default_errno: Option<String>,
    #[serde(default)]
    architectures: Vec<SeccompArch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<SeccompFlag>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Syscall>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: SeccompArch,
    #[serde(default)]
    sub_architectures: Vec<SeccompArch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: SeccompAction,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    errno_ret: Option<u32>,
    errno: Option<String>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: SeccompOperator,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    min_kernel: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.arches.is_empty() && self.caps.is_empty() && self.min_kernel().is_none()
    }

    /// `minKernel`, an empty string being unset (as Docker reads it).
    fn min_kernel(&self) -> Option<&str> {
        self.min_kernel.as_deref().filter(|k| !k.is_empty())
    }
}

/// Whether a Docker-format JSON document (as opposed to Palisade's or SPO's YAML).
pub fn looks_like_docker(v: &Value) -> bool {
    v.get("defaultAction").is_some() && v.get("apiVersion").is_none()
}

/// Evaluates a Docker/Podman profile for `target`. Returns the spec and what was evaluated
/// and dropped, one line each.
pub fn convert(json: &Value, target: &Target) -> Result<(SeccompProfileSpec, Vec<String>), ConvertError> {
    // Docker writes absent lists as `null`.
    let profile: Profile = serde_json::from_value(without_nulls(json.clone()))
        .map_err(|e| invalid("(document)", format!("not a seccomp profile: {e}")))?;
    let mut notes = Vec::new();
    for key in profile.other.keys() {
        notes.push(format!("ignored unknown field {key:?}"));
    }
    let default_errno_ret = errno_ret(
        "defaultErrno",
        profile.default_errno_ret,
        profile.default_errno.as_deref(),
    )?;
    let architectures = architectures(&profile, target.arch, &mut notes)?;
    notes.push(evaluated_for(target));

    let mut syscalls = Vec::new();
    let mut comments = 0;
    for (i, call) in profile.syscalls.iter().enumerate() {
        for key in call.other.keys() {
            if key == "comment" {
                comments += 1;
            } else {
                notes.push(format!("syscalls[{i}]: ignored unknown field {key:?}"));
            }
        }
        syscalls.extend(syscall(i, call, target, &mut notes)?);
    }
    if comments > 0 {
        notes.push(format!("dropped {comments} comment field(s)"));
    }

    Ok((
        SeccompProfileSpec {
            default_action: profile.default_action,
            default_errno_ret,
            architectures,
            flags: profile.flags,
            listener_path: profile.listener_path,
            listener_metadata: profile.listener_metadata,
            syscalls,
            base_profile_name: None,
            node_selector: None,
            state: Default::default(),
        },
        notes,
    ))
}

fn invalid(field: &str, message: String) -> ConvertError {
    ConvertError::Field {
        field: field.to_string(),
        message,
    }
}

/// An errno given as a number or by name (the number wins, as in Docker).
fn errno_ret(field: &str, number: Option<u32>, name: Option<&str>) -> Result<Option<u32>, ConvertError> {
    match (number, name) {
        (Some(n), _) => Ok(Some(n)),
        (None, Some(name)) => crate::errno::number(name)
            .map(Some)
            .ok_or_else(|| invalid(field, format!("unknown errno name {name:?}"))),
        (None, None) => Ok(None),
    }
}

/// The architectures for the target's native one: `architectures`, or its `archMap` entry.
fn architectures(
    profile: &Profile,
    native: SeccompArch,
    notes: &mut Vec<String>,
) -> Result<Vec<SeccompArch>, ConvertError> {
    if profile.arch_map.is_empty() {
        return Ok(profile.architectures.clone());
    }
    if !profile.architectures.is_empty() {
        return Err(invalid(
            "architectures",
            "set together with archMap (Docker refuses this too)".into(),
        ));
    }
    Ok(match profile.arch_map.iter().find(|m| m.architecture == native) {
        Some(m) => {
            let mut arches = vec![m.architecture];
            arches.extend(m.sub_architectures.iter().copied());
            notes.push(format!(
                "archMap: {} -> architectures {}",
                arch(native),
                arches.iter().map(|a| arch(*a)).collect::<Vec<_>>().join(", ")
            ));
            arches
        }
        None => {
            notes.push(format!(
                "archMap has no entry for {}: no architectures listed (the node's native one is used)",
                arch(native)
            ));
            vec![]
        }
    })
}

/// The note saying what the includes and excludes were evaluated for.
fn evaluated_for(target: &Target) -> String {
    let kernel_note = match target.kernel {
        Some((a, b)) => format!("kernel {a}.{b}"),
        None => "a kernel newer than every minKernel (give --kernel to choose)".to_string(),
    };
    let caps_note = if target.caps.is_empty() {
        "no capabilities".to_string()
    } else {
        format!("{} capabilities", target.caps.len())
    };
    format!(
        "evaluated includes/excludes for {} ({}), {caps_note}, {kernel_note}",
        docker_arch_name(target.arch),
        arch(target.arch)
    )
}

/// One `syscalls[i]` entry for the target: `None` when its filters exclude it or it names
/// no syscall.
fn syscall(
    i: usize,
    call: &Syscall,
    target: &Target,
    notes: &mut Vec<String>,
) -> Result<Option<SeccompSyscall>, ConvertError> {
    let field = |f: &str| format!("syscalls[{i}].{f}");
    let mut names = call.names.clone();
    if let Some(name) = &call.name {
        if !names.is_empty() {
            return Err(invalid(
                &field("name"),
                "set together with names (Docker refuses this too)".into(),
            ));
        }
        names.push(name.clone());
    }
    for (which, filter) in [("includes", &call.includes), ("excludes", &call.excludes)] {
        if let Some(k) = filter.as_ref().and_then(|f| f.min_kernel.as_deref())
            && !k.is_empty()
            && strict_kernel(k).is_none()
        {
            return Err(invalid(
                &field(&format!("{which}.minKernel")),
                format!("{k:?} is not MAJOR.MINOR (Docker refuses it too)"),
            ));
        }
    }
    if let Some(why) = excluded(call, docker_arch_name(target.arch), target) {
        notes.push(format!("dropped syscalls[{i}] ({}): {why}", short(&names)));
        return Ok(None);
    }
    if names.is_empty() {
        return Ok(None);
    }
    Ok(Some(SeccompSyscall {
        names,
        action: call.action,
        errno_ret: errno_ret(&field("errno"), call.errno_ret, call.errno.as_deref())?,
        args: call
            .args
            .iter()
            .flatten()
            .map(|a| SeccompArg {
                index: a.index,
                value: a.value,
                value_two: a.value_two,
                op: a.op,
            })
            .collect(),
    }))
}

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// `MAJOR.MINOR` exactly, as Docker reads `minKernel`.
fn strict_kernel(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let version: (u8, u8) =
        (digits(major) && digits(minor)).then(|| Some((major.parse().ok()?, minor.parse().ok()?)))??;
    (version != (0, 0)).then_some((u32::from(version.0), u32::from(version.1)))
}

/// Why Docker would leave the rule out for `target`, if it would.
fn excluded(call: &Syscall, native: &str, target: &Target) -> Option<String> {
    let kernel_at_least = |v: &str| match (target.kernel, strict_kernel(v)) {
        (Some(have), Some(need)) => have >= need,
        _ => true,
    };
    if let Some(ex) = call.excludes.as_ref().filter(|f| !f.is_empty()) {
        if ex.arches.iter().any(|a| a == native) {
            return Some(format!("excluded on {native}"));
        }
        if let Some(cap) = ex.caps.iter().find(|c| target.caps.contains(*c)) {
            return Some(format!("excluded when the container has {cap}"));
        }
        if let Some(k) = ex.min_kernel().filter(|k| kernel_at_least(k)) {
            return Some(format!("excluded on kernel {k} and later"));
        }
    }
    if let Some(inc) = call.includes.as_ref().filter(|f| !f.is_empty()) {
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == native) {
            return Some(format!("only for {}", inc.arches.join(", ")));
        }
        let missing: Vec<&str> = inc
            .caps
            .iter()
            .filter(|c| !target.caps.contains(*c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Some(format!("needs {}", missing.join(", ")));
        }
        if let Some(k) = inc.min_kernel().filter(|k| !kernel_at_least(k)) {
            return Some(format!("needs kernel {k}"));
        }
    }
    None
}

fn arch(a: SeccompArch) -> String {
    palisade_domain::render::seccomp::arch_name(a)
}

fn short(names: &[String]) -> String {
    if names.len() <= 4 {
        names.join(", ")
    } else {
        format!("{}, ... {} names", names[..3].join(", "), names.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target() -> Target {
        Target {
            arch: SeccompArch::X86_64,
            caps: DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            kernel: Some((6, 1)),
        }
    }

    #[test]
    fn arch_map_includes_excludes_and_errno_names_are_evaluated() {
        let doc = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrno": "ENOSYS",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.2"}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["open_by_handle_at"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM",
                 "excludes": {"caps": ["CAP_DAC_READ_SEARCH"]}},
                {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM",
                 "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]},
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            ],
        });
        let (spec, notes) = convert(&doc, &target()).unwrap();
        assert_eq!(spec.default_errno_ret, Some(38));
        assert_eq!(
            spec.architectures,
            [SeccompArch::X86_64, SeccompArch::X86, SeccompArch::X32]
        );
        let kept: Vec<&str> = spec.syscalls.iter().map(|r| r.names[0].as_str()).collect();
        assert_eq!(
            kept,
            ["read", "arch_prctl", "ptrace", "chroot", "open_by_handle_at", "clone"]
        );
        assert_eq!(spec.syscalls[4].errno_ret, Some(1), "errno name → number");
        assert_eq!(spec.syscalls[5].args[0].op, SeccompOperator::MaskedEqual);
        let text = notes.join("\n");
        for expected in [
            "archMap: SCMP_ARCH_X86_64 -> architectures SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32",
            "dropped syscalls[2] (sync_file_range2): only for arm64",
            "dropped syscalls[4] (newer): needs kernel 6.2",
            "dropped syscalls[5] (mount): needs CAP_SYS_ADMIN",
            "dropped syscalls[8] (setns): excluded when the container has CAP_SYS_CHROOT",
            "dropped 1 comment field(s)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }

        // Another target: arm64 with CAP_SYS_ADMIN and no known kernel.
        let mut arm = target();
        arm.arch = SeccompArch::Aarch64;
        arm.kernel = None;
        arm.caps.insert("CAP_SYS_ADMIN".into());
        let (spec, _) = convert(&doc, &arm).unwrap();
        assert_eq!(spec.architectures, [SeccompArch::Aarch64, SeccompArch::Arm]);
        let kept: Vec<&str> = spec.syscalls.iter().map(|r| r.names[0].as_str()).collect();
        assert_eq!(
            kept,
            [
                "read",
                "sync_file_range2",
                "ptrace",
                "newer",
                "mount",
                "chroot",
                "open_by_handle_at",
                "clone"
            ]
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let doc = json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EWHAT"}]});
        let err = convert(&doc, &target()).unwrap_err();
        assert_eq!(err.to_string(), "syscalls[0].errno: unknown errno name \"EWHAT\"");
        let doc = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]});
        assert!(
            convert(&doc, &target())
                .unwrap_err()
                .to_string()
                .starts_with("architectures: ")
        );
        let doc = json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8.1"}}]});
        assert_eq!(
            convert(&doc, &target()).unwrap_err().to_string(),
            "syscalls[0].includes.minKernel: \"4.8.1\" is not MAJOR.MINOR (Docker refuses it too)"
        );
        let doc = json!({"defaultAction": "SCMP_ACT_NOPE"});
        assert!(
            convert(&doc, &target())
                .unwrap_err()
                .to_string()
                .contains("not a seccomp profile")
        );
    }

    #[test]
    fn architectures_and_kernels_parse_as_users_write_them() {
        assert_eq!(parse_arch("amd64"), Ok(SeccompArch::X86_64));
        assert_eq!(parse_arch("x86_64"), Ok(SeccompArch::X86_64));
        assert_eq!(parse_arch("arm64"), Ok(SeccompArch::Aarch64));
        assert_eq!(parse_arch("SCMP_ARCH_S390X"), Ok(SeccompArch::S390X));
        assert!(parse_arch("vax").is_err());
        assert_eq!(parse_kernel("6.1.0-13-amd64"), Ok((6, 1)));
        assert_eq!(parse_kernel("5.10"), Ok((5, 10)));
        assert!(parse_kernel("six").is_err());
    }
}
