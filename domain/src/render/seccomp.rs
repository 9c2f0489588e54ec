//! SeccompProfile → OCI seccomp JSON: inheritance, rendering, and compilation with libseccomp.

use std::collections::{BTreeSet, HashSet};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Serialize};

use crate::seccomp::{
    SeccompAction, SeccompArch, SeccompArg, SeccompFlag, SeccompOperator, SeccompProfileSpec, SeccompSyscall,
};

/// Longest `baseProfileName` chain followed (the profile itself not counted).
pub const MAX_INHERITANCE_DEPTH: usize = 8;

/// EPERM: the errno the runtimes use when an `SCMP_ACT_ERRNO` rule gives none.
const EPERM: u32 = 1;

/// The OCI runtime-spec `LinuxSeccomp` object, exactly the keys the runtimes read.
/// Field order is fixed, lists are deduplicated, so the same spec always gives the same bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OciSeccomp {
    pub default_action: SeccompAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<SeccompArch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<SeccompFlag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<SeccompSyscall>,
}

/// Refuses what hands out more than confinement unless the cluster allows it: a listener
/// (`listenerPath`, or any `SCMP_ACT_NOTIFY`, whose notify fd runc, as root on the node,
/// hands to whoever owns the socket: that process then decides the containers' syscalls).
/// Allowed only with a `listenerPath` inside one of `allowed_dirs` (the chart's
/// `seccomp.allowedListenerDirs`); a listener inherited from a base counts as the child's
/// own, since this is checked on the resolved profile.
pub fn check_listener(rendered: &RenderedSeccomp, allowed_dirs: &[String]) -> Result<(), String> {
    let oci = &rendered.oci;
    let notify =
        oci.default_action == SeccompAction::Notify || oci.syscalls.iter().any(|r| r.action == SeccompAction::Notify);
    if !notify && oci.listener_path.is_none() {
        return Ok(());
    }
    let what = if notify {
        "SCMP_ACT_NOTIFY hands every container using this profile to a seccomp agent (runc, as root, passes the agent the notify fd: the agent decides their syscalls)"
    } else {
        "spec.listenerPath makes runc, as root, connect to that socket for every container using this profile"
    };
    let Some(path) = oci.listener_path.as_deref() else {
        return Err(format!("{what}; it needs spec.listenerPath"));
    };
    let inside = |dir: &String| {
        let dir = dir.trim_end_matches('/');
        !dir.is_empty()
            && path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
            && !path.split('/').any(|part| part == ".." || part == ".")
    };
    if allowed_dirs.iter().any(inside) {
        return Ok(());
    }
    let allowed = if allowed_dirs.is_empty() {
        "none is allowed (the chart's seccomp.allowedListenerDirs is empty)".to_string()
    } else {
        format!("allowed only under {}", allowed_dirs.join(", "))
    };
    Err(format!("spec.listenerPath {path:?}: {what}; {allowed}"))
}

/// What an accepted profile does that weakens more than it confines, in words, for the
/// `Weakened` condition: a denying action that returns 0 (the process is told the syscall
/// succeeded) and `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (the kernel's speculative-store-bypass
/// mitigation is off for the containers).
pub fn weakening(rendered: &RenderedSeccomp) -> Vec<String> {
    let oci = &rendered.oci;
    let mut out = Vec::new();
    if oci.default_action == SeccompAction::Errno && oci.default_errno_ret == Some(0) {
        out.push("defaultErrnoRet 0: every syscall the default action denies reports success".to_string());
    }
    let zero: Vec<String> = oci
        .syscalls
        .iter()
        .filter(|r| r.action == SeccompAction::Errno && r.errno_ret == Some(0))
        .flat_map(|r| r.names.iter().cloned())
        .collect();
    if !zero.is_empty() {
        let shown: Vec<&str> = zero.iter().take(10).map(String::as_str).collect();
        let more = zero.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        out.push(format!(
            "errnoRet 0 on SCMP_ACT_ERRNO: {}{more} are denied but report success",
            shown.join(", ")
        ));
    }
    if oci.flags.contains(&SeccompFlag::SpecAllow) {
        out.push(
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW turns off the speculative store bypass mitigation for these containers"
                .to_string(),
        );
    }
    out
}

/// Why a profile's `baseProfileName` chain cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InheritanceError {
    #[error("spec.baseProfileName: SeccompProfile {missing:?} (base of {child:?}) does not exist")]
    MissingBase { child: String, missing: String },
    #[error("spec.baseProfileName: inheritance cycle {}", .chain.join(" -> "))]
    Cycle { chain: Vec<String> },
    #[error("spec.baseProfileName: inheritance chain {} is deeper than {max} levels", .chain.join(" -> "))]
    TooDeep { chain: Vec<String>, max: usize },
}

impl InheritanceError {
    /// The profiles the error involves, for re-validating them when one changes.
    pub fn profiles(&self) -> Vec<String> {
        match self {
            Self::MissingBase { child, missing } => vec![child.clone(), missing.clone()],
            Self::Cycle { chain } | Self::TooDeep { chain, .. } => chain.clone(),
        }
    }
}

/// The names of the profiles `name` inherits from, nearest first, following
/// `baseProfileName` through `lookup`. Fails on a missing base, a cycle or a long chain.
pub fn base_chain<'a, F>(
    name: &str,
    spec: &'a SeccompProfileSpec,
    lookup: F,
) -> Result<Vec<(String, &'a SeccompProfileSpec)>, InheritanceError>
where
    F: Fn(&str) -> Option<&'a SeccompProfileSpec>,
{
    let mut chain_names = vec![name.to_string()];
    let mut bases = Vec::new();
    let mut current = spec;
    while let Some(base) = current.base_profile_name.as_deref() {
        if chain_names.iter().any(|n| n == base) {
            chain_names.push(base.to_string());
            return Err(InheritanceError::Cycle { chain: chain_names });
        }
        if bases.len() == MAX_INHERITANCE_DEPTH {
            chain_names.push(base.to_string());
            return Err(InheritanceError::TooDeep {
                chain: chain_names,
                max: MAX_INHERITANCE_DEPTH,
            });
        }
        let Some(base_spec) = lookup(base) else {
            return Err(InheritanceError::MissingBase {
                child: chain_names.last().cloned().unwrap_or_default(),
                missing: base.to_string(),
            });
        };
        chain_names.push(base.to_string());
        bases.push((base.to_string(), base_spec));
        current = base_spec;
    }
    Ok(bases)
}

/// Resolves inheritance and renders the profile as OCI seccomp.
///
/// The profile's own `defaultAction`/`defaultErrnoRet` win. Syscall rules are the union of
/// the chain's, except that a syscall named by a nearer profile takes its rules from that
/// profile alone (so a child can tighten or loosen what its base says about a syscall).
/// Architectures and flags are unioned; the listener is the nearest one set.
pub fn resolve<'a, F>(name: &str, spec: &'a SeccompProfileSpec, lookup: F) -> Result<OciSeccomp, InheritanceError>
where
    F: Fn(&str) -> Option<&'a SeccompProfileSpec>,
{
    render(name, spec, lookup).map(|r| r.oci)
}

/// What Palisade writes to nodes for a SeccompProfile: the resolved OCI profile, its exact
/// bytes, their digest, and the base chain it was resolved through (nearest first). The
/// one place the digest is computed: the operator publishes it as the accepted content and
/// agents write only bytes whose digest equals it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RenderedSeccomp {
    pub oci: OciSeccomp,
    pub bytes: Vec<u8>,
    pub digest: String,
    pub bases: Vec<String>,
    /// Where each rule of `oci.syscalls` comes from (same order), for errors that name the
    /// user's own profile and field.
    pub origins: Vec<RuleOrigin>,
}

/// The profile and `spec.syscalls` index a rendered rule was taken from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The SeccompProfile's name; empty for the profile being rendered itself.
    pub profile: String,
    pub index: usize,
}

impl RuleOrigin {
    /// `spec.syscalls[i]`, prefixed with the base profile's name when the rule is inherited.
    pub fn field(&self) -> String {
        if self.profile.is_empty() {
            format!("spec.syscalls[{}]", self.index)
        } else {
            format!(
                "spec.syscalls[{}] of base SeccompProfile {:?}",
                self.index, self.profile
            )
        }
    }
}

/// Resolves inheritance (see [`resolve`]), renders and digests.
pub fn render<'a, F>(name: &str, spec: &'a SeccompProfileSpec, lookup: F) -> Result<RenderedSeccomp, InheritanceError>
where
    F: Fn(&str) -> Option<&'a SeccompProfileSpec>,
{
    let chain = base_chain(name, spec, lookup)?;
    let (oci, origins) = render_traced(spec, &chain);
    let bytes = oci.to_bytes();
    Ok(RenderedSeccomp {
        digest: crate::digest(&bytes),
        bytes,
        oci,
        bases: chain.into_iter().map(|(n, _)| n).collect(),
        origins,
    })
}

/// Renders a profile without a base (or whose base chain the caller already resolved).
pub fn render_chain(spec: &SeccompProfileSpec, bases: &[&SeccompProfileSpec]) -> OciSeccomp {
    let named: Vec<(String, &SeccompProfileSpec)> = bases.iter().map(|b| (String::new(), *b)).collect();
    render_traced(spec, &named).0
}

/// The default errno a profile ends up with: its own `defaultErrnoRet`, else (while the
/// chain keeps the same `defaultAction`) the nearest base's, as if the child were written
/// out with the base's fields. Changing the default action starts afresh (EPERM).
fn inherited_default_errno(spec: &SeccompProfileSpec, bases: &[(String, &SeccompProfileSpec)]) -> Option<u32> {
    spec.default_errno_ret.or_else(|| {
        bases
            .iter()
            .map(|(_, b)| *b)
            .take_while(|b| b.default_action == spec.default_action)
            .find_map(|b| b.default_errno_ret)
    })
}

fn render_traced(spec: &SeccompProfileSpec, bases: &[(String, &SeccompProfileSpec)]) -> (OciSeccomp, Vec<RuleOrigin>) {
    let chain: Vec<(&str, &SeccompProfileSpec)> = std::iter::once(("", spec))
        .chain(bases.iter().map(|(n, s)| (n.as_str(), *s)))
        .collect();
    let default_errno_ret = inherited_default_errno(spec, bases);
    let default_errno = errno_of(spec.default_action, default_errno_ret);

    // A syscall named by a nearer profile takes its rules from that profile alone: a child
    // overrides what its base says about a syscall (two unconditional rules with different
    // actions for one syscall cannot both be loaded).
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut rules: Vec<(SeccompSyscall, RuleOrigin)> = Vec::new();
    for (profile_name, profile) in &chain {
        let mut names_here: HashSet<&str> = HashSet::new();
        for (index, rule) in profile.syscalls.iter().enumerate() {
            let names: Vec<String> = rule
                .names
                .iter()
                .filter(|n| !claimed.contains(n.as_str()))
                .cloned()
                .collect();
            names_here.extend(rule.names.iter().map(String::as_str));
            if names.is_empty() {
                continue;
            }
            let mut rule = rule.clone();
            rule.names = names;
            rules.push((
                rule,
                RuleOrigin {
                    profile: profile_name.to_string(),
                    index,
                },
            ));
        }
        claimed.extend(names_here);
    }
    // Drop exact duplicates and rules that restate the final default action with the same
    // errno and no argument checks: the runtimes skip those too, so the loaded filter is the
    // same. Nothing else is dropped. The first occurrence is kept so order stays meaningful.
    let mut seen = HashSet::new();
    rules.retain(|(r, _)| {
        let restates_default =
            r.action == spec.default_action && r.args.is_empty() && errno_of(r.action, r.errno_ret) == default_errno;
        !restates_default && seen.insert(r.clone())
    });
    let (syscalls, origins) = rules.into_iter().unzip();

    let architectures: BTreeSet<SeccompArch> = chain
        .iter()
        .flat_map(|(_, p)| p.architectures.iter().copied())
        .collect();
    let flags: BTreeSet<SeccompFlag> = chain.iter().flat_map(|(_, p)| p.flags.iter().copied()).collect();
    let listener = chain.iter().map(|(_, p)| p).find(|p| p.listener_path.is_some());

    (
        OciSeccomp {
            default_action: spec.default_action,
            default_errno_ret,
            architectures: architectures.into_iter().collect(),
            flags: flags.into_iter().collect(),
            listener_path: listener.and_then(|p| p.listener_path.clone()),
            listener_metadata: listener.and_then(|p| p.listener_metadata.clone()),
            syscalls,
        },
        origins,
    )
}

fn errno_of(action: SeccompAction, errno: Option<u32>) -> Option<u32> {
    matches!(action, SeccompAction::Errno | SeccompAction::Trace).then(|| errno.unwrap_or(EPERM))
}

impl OciSeccomp {
    /// The exact bytes written to the node: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("OCI seccomp always serializes");
        out.push(b'\n');
        out
    }
}

/// Why libseccomp refused a profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{field} ({name:?}): libseccomp rejected the rule: {reason}")]
    Rule {
        field: String,
        name: String,
        reason: String,
    },
    #[error("spec.architectures: libseccomp rejected {arch}: {reason}")]
    Arch { arch: String, reason: String },
    #[error("spec.defaultAction: libseccomp rejected it: {reason}")]
    Default { reason: String },
}

/// A compiled filter and the syscall names it could not include.
pub struct Compiled {
    pub filter: ScmpFilterContext,
    pub summary: CompiledSummary,
}

/// What a compile found besides the filter: what the validation reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledSummary {
    /// Per filter architecture, the names that architecture does not get a rule for and
    /// that no other architecture of the profile has either (the runtimes skip them the
    /// same way). Empty when every name compiled somewhere.
    pub ignored: Vec<IgnoredSyscalls>,
    /// Ignored names that a denying rule lists while the default action allows: if a
    /// node's kernel has the syscall after all, the deny does not apply there.
    pub fails_open: Vec<String>,
    /// Ignored names that this libseccomp does not know on any architecture (a syscall
    /// newer than it, or a typo), as opposed to ones it knows for other architectures.
    pub unknown: Vec<String>,
    /// How many names were ignored (`ignored` lists at most [`MAX_IGNORED_NAMES`]).
    pub ignored_count: usize,
}

pub use crate::common::IgnoredSyscalls;

/// Longest list of ignored names kept per architecture.
pub const MAX_IGNORED_NAMES: usize = 256;

pub fn arch_name(arch: SeccompArch) -> String {
    crate::wire_name(arch)
}

fn scmp_arch(arch: SeccompArch) -> Result<ScmpArch, CompileError> {
    arch_name(arch).parse::<ScmpArch>().map_err(|e| CompileError::Arch {
        arch: arch_name(arch),
        reason: e.to_string(),
    })
}

fn scmp_action(action: SeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.unwrap_or(EPERM) as i32;
    match action {
        SeccompAction::Kill | SeccompAction::KillThread => ScmpAction::KillThread,
        SeccompAction::KillProcess => ScmpAction::KillProcess,
        SeccompAction::Trap => ScmpAction::Trap,
        SeccompAction::Errno => ScmpAction::Errno(errno),
        SeccompAction::Trace => ScmpAction::Trace(errno as u16),
        SeccompAction::Allow => ScmpAction::Allow,
        SeccompAction::Log => ScmpAction::Log,
        SeccompAction::Notify => ScmpAction::Notify,
    }
}

/// Whether a rule with this action stops a syscall (as opposed to allowing or logging it).
pub fn denies(action: SeccompAction) -> bool {
    !matches!(
        action,
        SeccompAction::Allow | SeccompAction::Log | SeccompAction::Notify
    )
}

fn scmp_compare(arg: &SeccompArg) -> ScmpArgCompare {
    let (op, datum) = match arg.op {
        SeccompOperator::NotEqual => (ScmpCompareOp::NotEqual, arg.value),
        SeccompOperator::LessThan => (ScmpCompareOp::Less, arg.value),
        SeccompOperator::LessOrEqual => (ScmpCompareOp::LessOrEqual, arg.value),
        SeccompOperator::Equal => (ScmpCompareOp::Equal, arg.value),
        SeccompOperator::GreaterOrEqual => (ScmpCompareOp::GreaterEqual, arg.value),
        SeccompOperator::GreaterThan => (ScmpCompareOp::Greater, arg.value),
        // As runc passes them: `value` is the mask, `valueTwo` what the masked argument equals.
        SeccompOperator::MaskedEqual => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
    };
    ScmpArgCompare::new(arg.index, op, datum)
}

/// Whether the syscall exists on `arch`: libseccomp gives syscalls an architecture lacks a
/// negative pseudo number (after rewriting multiplexed ones such as x86's socketcall).
pub fn exists_on(name: &str, arch: ScmpArch) -> bool {
    ScmpSyscall::from_name_by_arch_rewrite(name, arch).is_ok_and(|s| s.as_raw_syscall() >= 0)
}

/// Whether this libseccomp knows the name at all (on any architecture).
pub fn known_to_libseccomp(name: &str) -> bool {
    ScmpSyscall::from_name(name).is_ok()
}

/// Every architecture the API names.
pub const ALL_ARCHES: [SeccompArch; 23] = [
    SeccompArch::X86,
    SeccompArch::X86_64,
    SeccompArch::X32,
    SeccompArch::Arm,
    SeccompArch::Aarch64,
    SeccompArch::Mips,
    SeccompArch::Mips64,
    SeccompArch::Mips64N32,
    SeccompArch::Mipsel,
    SeccompArch::Mipsel64,
    SeccompArch::Mipsel64N32,
    SeccompArch::Ppc,
    SeccompArch::Ppc64,
    SeccompArch::Ppc64Le,
    SeccompArch::S390,
    SeccompArch::S390X,
    SeccompArch::Parisc,
    SeccompArch::Parisc64,
    SeccompArch::Riscv64,
    SeccompArch::Loongarch64,
    SeccompArch::M68k,
    SeccompArch::Sh,
    SeccompArch::Sheb,
];

/// This machine's architecture as `SCMP_ARCH_*`.
pub fn native_arch_name() -> String {
    let native = ScmpArch::native();
    ALL_ARCHES
        .iter()
        .find(|a| scmp_arch(**a).is_ok_and(|s| s == native))
        .map(|a| arch_name(*a))
        .unwrap_or_else(|| format!("{native:?}"))
}

/// The architectures a profile's filter covers: the listed ones, or the native one.
pub fn filter_arches(profile: &OciSeccomp) -> Result<Vec<(ScmpArch, String)>, CompileError> {
    if profile.architectures.is_empty() {
        let native = ScmpArch::native();
        return Ok(vec![(native, native_arch_name())]);
    }
    profile
        .architectures
        .iter()
        .map(|a| Ok((scmp_arch(*a)?, arch_name(*a))))
        .collect()
}

/// Compiles a rendering, naming the user's own profile and field in errors.
pub fn compile_rendered(rendered: &RenderedSeccomp) -> Result<Compiled, CompileError> {
    compile_traced(&rendered.oci, &rendered.origins)
}

/// Compiles the profile with libseccomp into one filter covering every listed architecture
/// (the native one when none is listed), the way runc does on the node: a name is compiled
/// on each architecture that has it and skipped on the others; a name that no listed
/// architecture has (or libseccomp does not know) is skipped and reported in
/// [`Compiled::ignored`], never an error.
pub fn compile(profile: &OciSeccomp) -> Result<Compiled, CompileError> {
    compile_traced(profile, &[])
}

fn compile_traced(profile: &OciSeccomp, origins: &[RuleOrigin]) -> Result<Compiled, CompileError> {
    let default = scmp_action(profile.default_action, profile.default_errno_ret);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| CompileError::Default { reason: e.to_string() })?;

    let native = ScmpArch::native();
    let arches = filter_arches(profile)?;
    for (arch, name) in &arches {
        if *arch != native {
            ctx.add_arch(*arch).map_err(|e| CompileError::Arch {
                arch: name.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    if !arches.iter().any(|(a, _)| *a == native) {
        ctx.remove_arch(native).map_err(|e| CompileError::Arch {
            arch: native_arch_name(),
            reason: e.to_string(),
        })?;
    }

    let default_denies = denies(profile.default_action);
    let mut ignored: BTreeSet<&str> = BTreeSet::new();
    let mut fails_open: BTreeSet<&str> = BTreeSet::new();
    for (index, rule) in profile.syscalls.iter().enumerate() {
        let action = scmp_action(rule.action, rule.errno_ret);
        let field = || {
            origins
                .get(index)
                .map(RuleOrigin::field)
                .unwrap_or_else(|| format!("spec.syscalls[{index}]"))
        };
        let conditions: Vec<ScmpArgCompare> = rule.args.iter().map(scmp_compare).collect();
        if action == default {
            continue; // libseccomp refuses a rule that restates the default; runc skips it
        }
        for name in &rule.names {
            if !arches.iter().any(|(a, _)| exists_on(name, *a)) {
                ignored.insert(name);
                if denies(rule.action) && !default_denies {
                    fails_open.insert(name);
                }
                continue;
            }
            // Added in native numbering, as runc does; libseccomp maps it to each filter
            // architecture that has the syscall and skips the others.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            // Like runc: when one argument index is checked more than once, each check
            // becomes a rule of its own (any of them matches); otherwise all must hold.
            let repeated = rule
                .args
                .iter()
                .any(|a| rule.args.iter().filter(|b| b.index == a.index).count() > 1);
            let groups: Vec<&[ScmpArgCompare]> = if repeated {
                conditions.chunks(1).collect()
            } else {
                vec![&conditions[..]]
            };
            for group in groups {
                ctx.add_rule_conditional(action, syscall, group)
                    .map_err(|e| CompileError::Rule {
                        field: field(),
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
            }
        }
    }
    let unknown: Vec<String> = ignored
        .iter()
        .filter(|n| !known_to_libseccomp(n))
        .map(|n| n.to_string())
        .collect();
    let ignored_count = ignored.len();
    let names: Vec<String> = ignored.iter().take(MAX_IGNORED_NAMES).map(|n| n.to_string()).collect();
    let ignored = if names.is_empty() {
        vec![]
    } else {
        arches
            .iter()
            .map(|(_, arch)| IgnoredSyscalls {
                architecture: arch.clone(),
                names: names.clone(),
            })
            .collect()
    };
    Ok(Compiled {
        filter: ctx,
        summary: CompiledSummary {
            ignored,
            fails_open: fails_open.into_iter().map(str::to_string).collect(),
            unknown,
            ignored_count,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> SeccompProfileSpec {
        serde_json::from_value(v).expect("valid spec")
    }

    fn resolve_in(profiles: &HashMap<&str, SeccompProfileSpec>, name: &str) -> Result<OciSeccomp, InheritanceError> {
        resolve(name, &profiles[name], |n| profiles.get(n))
    }

    #[test]
    fn renders_exactly_the_oci_keys() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}],
            "baseProfileName": null,
            "nodeSelector": {"matchLabels": {"a": "b"}},
            "state": "Enabled",
        }));
        let oci = render_chain(&s, &[]);
        let value: serde_json::Value = serde_json::from_slice(&oci.to_bytes()).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "architectures",
                "defaultAction",
                "defaultErrnoRet",
                "flags",
                "listenerMetadata",
                "listenerPath",
                "syscalls"
            ]
        );
        assert_eq!(
            value["syscalls"][0]["args"][0],
            json!({"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"})
        );
        assert_eq!(value["defaultErrnoRet"], 38);
    }

    #[test]
    fn rendering_is_deterministic() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }));
        let none = |_: &str| None;
        let a = render("p", &s, none).unwrap();
        let copy = s.clone();
        let b = render("p", &copy, |_: &str| None).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes, a.oci.to_bytes(), "the digested bytes are the rendered ones");
        assert_eq!(a.digest, crate::digest(&b.bytes));
        assert_eq!(a.digest.len(), 64);
        assert!(a.bases.is_empty());
        // Duplicated architectures collapse; order is fixed.
        assert_eq!(a.oci.architectures, vec![SeccompArch::X86, SeccompArch::X86_64]);
        let mut changed = s.clone();
        changed.syscalls[0].names = vec!["rmdir".into()];
        assert_ne!(render("p", &changed, |_: &str| None).unwrap().digest, a.digest);
    }

    #[test]
    fn inheritance_unions_rules_and_the_child_wins() {
        let profiles = HashMap::from([
            (
                "base",
                spec(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "architectures": ["SCMP_ARCH_X86_64"],
                    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                    "syscalls": [
                        {"names": ["read", "write", "ptrace"], "action": "SCMP_ACT_ALLOW"},
                        {"names": ["mount"], "action": "SCMP_ACT_LOG"},
                    ],
                })),
            ),
            (
                "child",
                spec(json!({
                    "defaultAction": "SCMP_ACT_LOG",
                    "architectures": ["SCMP_ARCH_AARCH64"],
                    "baseProfileName": "base",
                    "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"}],
                })),
            ),
        ]);
        let rendered = render("child", &profiles["child"], |n| profiles.get(n)).unwrap();
        assert_eq!(rendered.bases, vec!["base".to_string()], "the chain is named");
        let oci = resolve_in(&profiles, "child").unwrap();
        assert_eq!(
            oci.default_action,
            SeccompAction::Log,
            "the child's default action wins"
        );
        assert_eq!(oci.architectures, vec![SeccompArch::X86_64, SeccompArch::Aarch64]);
        assert_eq!(oci.flags, vec![SeccompFlag::Log]);
        let rules: Vec<(Vec<String>, SeccompAction)> =
            oci.syscalls.iter().map(|r| (r.names.clone(), r.action)).collect();
        assert_eq!(
            rules,
            vec![
                (vec!["ptrace".to_string()], SeccompAction::KillProcess),
                (vec!["read".to_string(), "write".to_string()], SeccompAction::Allow),
                // `mount` → LOG restates the child's default and is dropped, as runtimes do.
            ]
        );
    }

    #[test]
    fn inheritance_follows_long_chains() {
        let mut profiles = HashMap::new();
        let names: Vec<String> = (0..=MAX_INHERITANCE_DEPTH).map(|i| format!("p{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let base = names.get(i + 1);
            profiles.insert(
                name.as_str(),
                spec(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "baseProfileName": base,
                    "syscalls": [{"names": [format!("getpid{i}")], "action": "SCMP_ACT_ERRNO"}],
                })),
            );
        }
        let oci = resolve_in(&profiles, "p0").unwrap();
        assert_eq!(
            oci.syscalls.len(),
            MAX_INHERITANCE_DEPTH + 1,
            "every level contributes its rule"
        );

        // One more level is refused, naming the chain.
        profiles
            .get_mut(names.last().unwrap().as_str())
            .unwrap()
            .base_profile_name = Some("extra".into());
        profiles.insert("extra", spec(json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        let err = resolve_in(&profiles, "p0").unwrap_err();
        assert!(matches!(err, InheritanceError::TooDeep { .. }), "{err}");
        assert!(err.to_string().contains("p0 -> p1"), "{err}");
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn inheritance_cycles_and_missing_bases_are_named() {
        let profiles = HashMap::from([
            (
                "a",
                spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": "b"})),
            ),
            (
                "b",
                spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": "c"})),
            ),
            (
                "c",
                spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": "a"})),
            ),
            (
                "self",
                spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": "self"})),
            ),
            (
                "orphan",
                spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "baseProfileName": "gone"})),
            ),
        ]);
        let err = resolve_in(&profiles, "a").unwrap_err();
        assert_eq!(
            err,
            InheritanceError::Cycle {
                chain: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "spec.baseProfileName: inheritance cycle a -> b -> c -> a"
        );
        assert_eq!(err.profiles(), vec!["a", "b", "c", "a"]);

        let err = resolve_in(&profiles, "self").unwrap_err();
        assert_eq!(err.to_string(), "spec.baseProfileName: inheritance cycle self -> self");

        let err = resolve_in(&profiles, "orphan").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.baseProfileName: SeccompProfile \"gone\" (base of \"orphan\") does not exist"
        );
    }

    #[test]
    fn compiles_valid_profiles_for_every_listed_architecture() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "open"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0xff00, "valueTwo": 0x0800, "op": "SCMP_CMP_MASKED_EQ"}]},
            ],
        }));
        let ctx = compile(&render_chain(&s, &[])).expect("compiles");
        for arch in [ScmpArch::X8664, ScmpArch::X86, ScmpArch::Aarch64] {
            assert!(ctx.filter.is_arch_present(arch).unwrap(), "{arch:?} in the filter");
        }
    }

    #[test]
    fn unknown_syscalls_are_ignored_and_reported_like_runc_does() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "not_a_syscall", "chown32", "arch_prctl"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid", "vm86", "riscv_flush_icache"], "action": "SCMP_ACT_LOG"},
            ],
        }));
        let compiled = compile(&render_chain(&s, &[])).expect("compiles: unknown names are skipped");
        // chown32 (x86 only) and arch_prctl (x86_64 only) exist on a listed architecture:
        // compiled where they exist, silently, as runc does. vm86 is x86's too.
        let names = vec!["not_a_syscall".to_string(), "riscv_flush_icache".to_string()];
        assert_eq!(
            compiled.summary.ignored,
            vec![
                IgnoredSyscalls {
                    architecture: "SCMP_ARCH_X86".into(),
                    names: names.clone()
                },
                IgnoredSyscalls {
                    architecture: "SCMP_ARCH_X86_64".into(),
                    names: names.clone()
                },
            ]
        );
        assert_eq!(
            compiled.summary.unknown,
            vec!["not_a_syscall".to_string()],
            "riscv_flush_icache is known, on riscv64"
        );
        assert!(
            compiled.summary.fails_open.is_empty(),
            "the default denies: nothing fails open"
        );
        // The rules that exist are in the filter, on the architecture that has them.
        let f = &compiled.filter;
        for arch in [ScmpArch::X8664, ScmpArch::X86] {
            assert!(f.is_arch_present(arch).unwrap());
        }
    }

    #[test]
    fn a_deny_of_an_ignored_name_under_an_allowing_default_fails_open() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_LOG",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["exit"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["acct", "stime", "vm86", "made_up"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["other_made_up"], "action": "SCMP_ACT_ALLOW"},
            ],
        }));
        let compiled = compile(&render_chain(&s, &[])).unwrap();
        assert_eq!(compiled.summary.fails_open, ["made_up", "stime", "vm86"]);
        assert_eq!(
            compiled.summary.ignored[0].names,
            ["made_up", "other_made_up", "stime", "vm86"]
        );
        assert_eq!(compiled.summary.unknown, ["made_up", "other_made_up"]);
    }

    #[test]
    fn a_syscall_missing_on_some_architectures_only_still_compiles() {
        // `open` does not exist on aarch64 but does on x86_64: runtimes compile it where it exists.
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["open"], "action": "SCMP_ACT_ERRNO"}],
        }));
        assert!(compile(&render_chain(&s, &[])).unwrap().summary.ignored.is_empty());
        let only_arm = SeccompProfileSpec {
            architectures: vec![SeccompArch::Aarch64],
            ..s
        };
        let compiled = compile(&render_chain(&only_arm, &[])).unwrap();
        assert_eq!(compiled.summary.ignored[0].architecture, "SCMP_ARCH_AARCH64");
        assert_eq!(compiled.summary.ignored[0].names, ["open"]);
        assert_eq!(
            compiled.summary.fails_open,
            ["open"],
            "a deny under an allowing default"
        );
    }

    #[test]
    fn an_unset_default_errno_is_inherited_while_the_default_action_is_kept() {
        let profiles = HashMap::from([
            (
                "podman",
                spec(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "defaultErrnoRet": 38,
                    "syscalls": [
                        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                        {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                        {"names": ["bdflush"], "action": "SCMP_ACT_ERRNO"},
                    ],
                })),
            ),
            (
                "child",
                spec(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "baseProfileName": "podman",
                    "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"}],
                })),
            ),
            (
                "grandchild",
                spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "baseProfileName": "child"})),
            ),
            (
                "logger",
                spec(json!({"defaultAction": "SCMP_ACT_LOG", "baseProfileName": "podman"})),
            ),
        ]);
        for name in ["child", "grandchild"] {
            let oci = resolve_in(&profiles, name).unwrap();
            assert_eq!(oci.default_errno_ret, Some(38), "{name} keeps ENOSYS");
            let names: Vec<&str> = oci
                .syscalls
                .iter()
                .flat_map(|r| r.names.iter().map(String::as_str))
                .collect();
            for kept in ["kexec_load", "bdflush", "read"] {
                assert!(
                    names.contains(&kept),
                    "{name}: the base's EPERM rule for {kept} is kept: {names:?}"
                );
            }
        }
        // A child that changes the default action starts from its own default errno.
        let oci = resolve_in(&profiles, "logger").unwrap();
        assert_eq!(oci.default_errno_ret, None);
        let errno_rules = oci.syscalls.iter().filter(|r| r.action == SeccompAction::Errno).count();
        assert_eq!(errno_rules, 2, "the base's deny rules differ from LOG and stay");
        // Only a rule equal to the final default in action and errno is redundant.
        let mut own = profiles["child"].clone();
        own.default_errno_ret = Some(1);
        let oci = resolve("child", &own, |n| profiles.get(n)).unwrap();
        let names: Vec<&str> = oci
            .syscalls
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect();
        assert!(
            !names.contains(&"kexec_load") && !names.contains(&"bdflush"),
            "{names:?}"
        );
    }

    #[test]
    fn errors_name_the_profile_and_field_a_rule_comes_from() {
        let profiles = HashMap::from([
            (
                "base",
                spec(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [
                        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                        // Past the schema's bound; libseccomp refuses argument 7.
                        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]},
                    ],
                })),
            ),
            (
                "child",
                spec(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "baseProfileName": "base",
                    "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"}],
                })),
            ),
        ]);
        let rendered = render("child", &profiles["child"], |n| profiles.get(n)).unwrap();
        assert_eq!(
            rendered.origins,
            vec![
                RuleOrigin {
                    profile: String::new(),
                    index: 0
                },
                RuleOrigin {
                    profile: "base".into(),
                    index: 0
                },
                RuleOrigin {
                    profile: "base".into(),
                    index: 1
                },
                RuleOrigin {
                    profile: "base".into(),
                    index: 2
                },
            ]
        );
        let err = compile_rendered(&rendered).err().expect("argument 7 is refused");
        let message = err.to_string();
        assert!(
            message.starts_with("spec.syscalls[2] of base SeccompProfile \"base\" (\"getppid\")"),
            "{message}"
        );
    }

    #[test]
    fn an_argument_checked_twice_matches_either_check_as_runc_does() {
        let s = spec(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}],
        }));
        compile(&render_chain(&s, &[])).expect("libseccomp takes one rule per check");
    }

    #[test]
    fn an_architecture_this_libseccomp_lacks_is_refused() {
        // Which architectures libseccomp can build filters for depends on its version
        // (2.5 has no loongarch64 or m68k): ask it, and expect exactly those refused.
        let mut refused = 0;
        for arch in ALL_ARCHES {
            let s = SeccompProfileSpec {
                architectures: vec![SeccompArch::X86_64, arch],
                ..spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))
            };
            let supported = scmp_arch(arch).is_ok_and(|a| {
                let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).unwrap();
                a == ScmpArch::native() || ctx.add_arch(a).is_ok()
            });
            match compile(&render_chain(&s, &[])) {
                Ok(_) => assert!(supported, "{arch:?} compiled but libseccomp refuses it"),
                Err(err) => {
                    assert!(!supported, "{arch:?}: {err}");
                    assert!(
                        err.to_string()
                            .starts_with(&format!("spec.architectures: libseccomp rejected {}", arch_name(arch))),
                        "{err}"
                    );
                    refused += 1;
                    println!("refused: {arch:?}");
                }
            }
        }
        println!("{refused} architecture(s) refused by this libseccomp");
    }
}
