//! The real-world profile corpus (`../shared/corpus/` beside the project, or
//! `PALISADE_CORPUS`), Docker's own loader as the reference for what a runtime loads from a
//! Docker/Podman-format file, and a comparer of seccomp profiles by what they enforce.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libseccomp::{ScmpArch, ScmpSyscall};
use serde_json::Value;

use crate::controlplane::repo_root;

/// The corpus directory. Missing is an error, never a skip.
pub fn corpus_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("PALISADE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/corpus"));
    if !dir.join("docker/default.json").is_file() {
        bail!(
            "the profile corpus is not at {} (set PALISADE_CORPUS to its directory)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Every file of the corpus a user would feed to `palisade convert`: seccomp JSON in
/// Docker's format, raw AppArmor files, SPO manifests (sorted, relative to the corpus).
pub fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "sc" | "aa" | "yaml")
            ) {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What Docker's own loader makes of a Docker/Podman-format profile for a container with
/// `caps` (none: Docker's default set), on this machine's architecture and kernel.
pub fn docker_oracle(profile: &Path, caps: &[&str]) -> Result<Value> {
    let bin = crate::go_tool("seccomp-oracle")?;
    let out = std::process::Command::new(&bin)
        .arg(profile)
        .args(caps)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "seccomp-oracle {}: {}",
            profile.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// This machine's kernel as (major, minor): what Docker's loader compares `minKernel` with.
pub fn host_kernel() -> Result<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    Ok((
        parts.next().unwrap_or_default().parse()?,
        parts.next().unwrap_or_default().parse()?,
    ))
}

/// One loaded rule: syscall name, action, errno (for ERRNO/TRACE), argument checks.
pub type Rule = (String, String, Option<u64>, Vec<(u64, u64, u64, String)>);

/// What a seccomp profile enforces, the way runc loads it: the default action and errno,
/// and per filter architecture the rules libseccomp puts in the filter (a name the
/// architecture lacks or libseccomp does not know is skipped; a rule restating the default
/// action is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub default: (String, Option<u64>),
    pub rules: BTreeMap<String, BTreeSet<Rule>>,
}

fn errno(action: &str, value: Option<&Value>) -> Option<u64> {
    matches!(action, "SCMP_ACT_ERRNO" | "SCMP_ACT_TRACE").then(|| value.and_then(Value::as_u64).unwrap_or(1))
}

/// [`Effective`] of an OCI `LinuxSeccomp` JSON object.
pub fn effective(oci: &Value) -> Result<Effective> {
    let action = oci["defaultAction"].as_str().context("defaultAction")?.to_string();
    let default = (action.clone(), errno(&action, oci.get("defaultErrnoRet")));
    let mut arches: Vec<String> = oci["architectures"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if arches.is_empty() {
        // The node's own architecture; this machine's stands in for it.
        arches.push(palisade_domain::render::seccomp::native_arch_name());
    }
    let mut rules: BTreeMap<String, BTreeSet<Rule>> = BTreeMap::new();
    for arch_name in &arches {
        let arch: ScmpArch = arch_name
            .parse()
            .or_else(|_| format!("SCMP_ARCH_{}", arch_name.to_ascii_uppercase()).parse())
            .map_err(|e| anyhow::anyhow!("architecture {arch_name}: {e}"))?;
        let set = rules.entry(arch_name.clone()).or_default();
        for rule in oci["syscalls"].as_array().into_iter().flatten() {
            let action = rule["action"].as_str().context("action")?.to_string();
            let errno = errno(&action, rule.get("errnoRet"));
            if (action.clone(), errno) == default {
                continue;
            }
            let mut args: Vec<(u64, u64, u64, String)> = rule["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    (
                        a["index"].as_u64().unwrap_or_default(),
                        a["value"].as_u64().unwrap_or_default(),
                        a["valueTwo"].as_u64().unwrap_or_default(),
                        a["op"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            args.sort();
            for name in rule["names"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let exists = ScmpSyscall::from_name_by_arch_rewrite(name, arch).is_ok_and(|s| s.as_raw_syscall() >= 0);
                if exists {
                    set.insert((name.to_string(), action.clone(), errno, args.clone()));
                }
            }
        }
    }
    Ok(Effective { default, rules })
}

/// The differences between two profiles' effective rules, one line each (empty: equal).
pub fn differences(ours: &Effective, reference: &Effective) -> Vec<String> {
    let mut out = Vec::new();
    if ours.default != reference.default {
        out.push(format!("default {:?} != {:?}", ours.default, reference.default));
    }
    let arches: BTreeSet<&String> = ours.rules.keys().chain(reference.rules.keys()).collect();
    for arch in arches {
        let empty = BTreeSet::new();
        let a = ours.rules.get(arch).unwrap_or(&empty);
        let b = reference.rules.get(arch).unwrap_or(&empty);
        if !ours.rules.contains_key(arch) || !reference.rules.contains_key(arch) {
            out.push(format!("{arch}: only one side filters it"));
        }
        for extra in a.difference(b) {
            out.push(format!("{arch}: extra {extra:?}"));
        }
        for missing in b.difference(a) {
            out.push(format!("{arch}: missing {missing:?}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "chown32", "arch_prctl", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        ]})
    }

    #[test]
    fn the_comparer_sees_what_changes_enforcement_and_nothing_else() {
        let a = effective(&base()).unwrap();
        assert!(differences(&a, &a).is_empty());
        let x86_64 = &a.rules["SCMP_ARCH_X86_64"];
        assert!(x86_64.iter().any(|r| r.0 == "arch_prctl") && !x86_64.iter().any(|r| r.0 == "chown32"));
        assert!(a.rules["SCMP_ARCH_X86"].iter().any(|r| r.0 == "chown32"));
        assert!(
            !x86_64.iter().any(|r| r.0 == "mkdir"),
            "restates the default: not loaded"
        );

        // Same enforcement, written differently: rules split, names reordered, a rule that
        // restates the default added, an explicit default errno of 1.
        let mut same = base();
        same["defaultErrnoRet"] = json!(1);
        same["syscalls"] = json!([
            {"names": ["arch_prctl", "read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["chown32"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ]);
        assert!(differences(&effective(&same).unwrap(), &a).is_empty());

        // Each real change is seen.
        let changes = [
            ("/defaultErrnoRet", json!(38)),
            ("/syscalls/0/action", json!("SCMP_ACT_LOG")),
            ("/syscalls/1/args/0/value", json!(9)),
            ("/syscalls/2/errnoRet", json!(13)),
            ("/architectures", json!(["SCMP_ARCH_X86_64"])),
        ];
        for (pointer, value) in changes {
            let mut changed = base();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut changed
            } else {
                changed.pointer_mut(parent).unwrap()
            };
            target[key] = value.clone();
            let d = differences(&effective(&changed).unwrap(), &a);
            assert!(!d.is_empty(), "{pointer} = {value} went unnoticed");
        }
        let mut dropped = base();
        dropped["syscalls"][0]["names"] = json!(["read", "chown32"]);
        let d = differences(&effective(&dropped).unwrap(), &a);
        assert_eq!(
            d,
            [
                "SCMP_ARCH_X86: missing (\"arch_prctl\", \"SCMP_ACT_ALLOW\", None, [])",
                "SCMP_ARCH_X86_64: missing (\"arch_prctl\", \"SCMP_ACT_ALLOW\", None, [])"
            ]
        );
    }
}
