//! The rule an audit record asks for: an AppArmor rule line, its path generalised as
//! aa-logprof offers, or the syscall name a seccomp filter logged.

use super::grammar::{file_perms, is_learnable_rule, printable};
use super::records::Record;
use crate::common::ProfileKind;

// ---------------------------------------------------------------------------------------
// AppArmor.

/// The top-level profile an AppArmor record's subject belongs to: `p` for `p`, its child
/// `p//child`, its learning child `p//null-/bin/cat` and its hat `p^hat`.
pub fn apparmor_root(r: &Record) -> Option<&str> {
    let profile = r.field("profile")?;
    let root = profile.split("//").next().unwrap_or(profile);
    Some(root.split('^').next().unwrap_or(root))
}

/// Where in its profile a record's rule goes: `None` for the profile itself and for the
/// learning children complain mode makes for unknown execs (`p//null-/bin/cat`, which run
/// under the profile once it has `ix` for them); `^hat` or `//child` for a hat or child
/// profile of the policy (and their own learning children).
pub fn apparmor_scope(r: &Record) -> Option<String> {
    let profile = r.field("profile")?;
    let root = apparmor_root(r)?;
    let rest = &profile[root.len()..];
    let rest = rest.find("//null-").map(|i| &rest[..i]).unwrap_or(rest);
    (!rest.is_empty()).then(|| rest.to_string())
}

/// [`apparmor_rule`] with its scope: `^hat <rule>` for a hat's, `//child <rule>` for a
/// child profile's.
pub fn apparmor_scoped_rule(r: &Record) -> Result<String, String> {
    let rule = apparmor_rule(r)?;
    let rule = match apparmor_scope(r) {
        Some(scope) => format!("{scope} {rule}"),
        None => rule,
    };
    // What was written from the record's fields is read back with the rule grammar: a
    // field value that would make anything but one of the templates is refused here.
    if !is_learnable_rule(ProfileKind::AppArmorProfile, &rule) {
        return Err(format!(
            "a record whose fields do not make a learnable rule: {:?}",
            printable(&rule)
        ));
    }
    Ok(rule)
}

/// The rule an AppArmor `ALLOWED` record asks for, or why none: a record of another kind
/// than file, capability, network, signal, ptrace or unix, or of a path the rule cannot
/// name (a disconnected path).
pub fn apparmor_rule(r: &Record) -> Result<String, String> {
    if r.field("apparmor") != Some("ALLOWED") {
        return Err(format!("not an ALLOWED record ({})", r.field("apparmor").unwrap_or("")));
    }
    let operation = r.field("operation").unwrap_or_default();
    let class = r.field("class").unwrap_or_default();
    let mask = r.field("requested_mask").or(r.field("denied_mask")).unwrap_or_default();
    if operation == "capable" || class == "cap" {
        let cap = r.field("capname").ok_or("a capability record without capname")?;
        return Ok(format!("capability {cap},"));
    }
    if operation == "signal" || class == "signal" {
        let perm = if mask.contains("receive") { "receive" } else { "send" };
        let set = r.field("signal").ok_or("a signal record without signal")?;
        let peer = r.field("peer").map(peer_root).unwrap_or("unconfined");
        return Ok(format!("signal ({perm}) set=({set}) peer={peer},"));
    }
    if operation == "ptrace" || class == "ptrace" {
        let perm = ["tracedby", "trace", "readby", "read"]
            .into_iter()
            .find(|p| mask.contains(p))
            .unwrap_or("read");
        let peer = r.field("peer").map(peer_root).unwrap_or("unconfined");
        return Ok(format!("ptrace ({perm}) peer={peer},"));
    }
    if class == "unix" {
        let perm = mask.split_whitespace().next().unwrap_or("create");
        let ty = r.field("sock_type").unwrap_or("stream");
        return Ok(format!("unix ({perm}) type={ty},"));
    }
    if class == "net" || r.fields.contains_key("family") && !r.fields.contains_key("name") {
        let family = r.field("family").ok_or("a network record without family")?;
        return Ok(match r.field("sock_type") {
            Some(ty) if !ty.is_empty() => format!("network {family} {ty},"),
            _ => format!("network {family},"),
        });
    }
    if class == "file" || r.fields.contains_key("name") && r.fields.contains_key("requested_mask") {
        let name = r.field("name").ok_or("a file record without name")?;
        if !name.starts_with('/') {
            return Err(format!(
                "a path the rule cannot name: {name:?} ({})",
                r.field("info").unwrap_or("")
            ));
        }
        let perms = file_perms(mask, operation == "exec");
        if perms.is_empty() {
            return Err(format!("no file permission in {mask:?}"));
        }
        let owner = match (r.field("fsuid"), r.field("ouid")) {
            (Some(f), Some(o)) if f == o => "owner ",
            _ => "",
        };
        let path = generalise(name);
        return Ok(format!("{owner}{path} {perms},"));
    }
    Err(format!("an {operation:?} record of class {class:?} is not learned"))
}

fn peer_root(peer: &str) -> &str {
    let root = peer.split("//").next().unwrap_or(peer);
    let root = root.split('^').next().unwrap_or(root);
    // A peer in complain mode is written `name (complain)` in some kernels.
    root.split(" (").next().unwrap_or(root)
}

/// The path a rule should name, generalised as aa-logprof offers: `/proc/<n>` (and
/// `/proc/<n>/task/<n>`) become `@{PROC}/@{pid}`, other `/proc` paths `@{PROC}`; a
/// Debian-style multiarch library directory becomes `@{multiarch}`; a shared library's
/// version suffix and a final component's trailing number become globs. Nothing wider: a
/// directory is never replaced by `*` or `**`.
pub fn generalise(path: &str) -> String {
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    // parts[0] is "" (the path is absolute).
    if parts.get(1).map(String::as_str) == Some("proc") {
        parts[1] = "@{PROC}".into();
        if parts.get(2).is_some_and(|p| is_number(p)) {
            parts[2] = "@{pid}".into();
            if parts.get(3).map(String::as_str) == Some("task") && parts.get(4).is_some_and(|p| is_number(p)) {
                parts[4] = "@{pid}".into();
            }
        }
    }
    let last = parts.len() - 1;
    for (i, p) in parts.iter_mut().enumerate() {
        if p.starts_with("@{") {
            continue;
        }
        if is_multiarch(p) {
            *p = "@{multiarch}".into();
        } else if i == last && last > 1 {
            *p = generalise_name(p);
        } else {
            *p = escape(p);
        }
    }
    // `@{PROC}` already ends in a slash.
    let path = parts.join("/").replacen("/@{PROC}/", "@{PROC}/", 1);
    // A path with a space, a comma or `#` is quoted, as the parser reads it.
    if path.contains(|c: char| c.is_whitespace() || c == ',' || c == '#') {
        format!("\"{path}\"")
    } else {
        path
    }
}

/// A file name's characters that AppArmor reads as a pattern, escaped to match themselves.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '^' | '\\' | '"' | '@') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `x86_64-linux-gnu`, `aarch64-linux-gnu`, `arm-linux-gnueabihf`, ...
fn is_multiarch(s: &str) -> bool {
    let mut it = s.splitn(3, '-');
    let (Some(cpu), Some(os), Some(abi)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    os == "linux"
        && abi.starts_with("gnu")
        && [
            "x86_64",
            "i386",
            "i686",
            "aarch64",
            "arm",
            "powerpc64le",
            "s390x",
            "riscv64",
            "mips64el",
            "loongarch64",
        ]
        .contains(&cpu)
}

/// `libssl.so.3` → `libssl.so*`; `worker-17` → `worker-[0-9]*`; `app.pid` unchanged
/// (characters AppArmor reads as a pattern escaped).
fn generalise_name(name: &str) -> String {
    let generalised = generalise_plain(name);
    if generalised == name {
        escape(name)
    } else {
        // Only the stem is the file's own text.
        let (stem, glob) =
            generalised.split_at(generalised.len() - if generalised.ends_with("[0-9]*") { 6 } else { 1 });
        format!("{}{glob}", escape(stem))
    }
}

fn generalise_plain(name: &str) -> String {
    if let Some(at) = name.find(".so.")
        && name[at + 4..].bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return format!("{}.so*", &name[..at]);
    }
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits == name.len() {
        return "[0-9]*".into();
    }
    if digits > 0 {
        let stem = &name[..name.len() - digits];
        if stem.ends_with(['-', '_', '.']) || digits >= 2 {
            return format!("{stem}[0-9]*");
        }
    }
    name.to_string()
}

// ---------------------------------------------------------------------------------------
// seccomp.

/// `code=` of a record the filter logged and allowed (`SECCOMP_RET_LOG`).
pub const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

/// The syscall name a seccomp record logged, for the record's architecture.
pub fn seccomp_syscall(r: &Record) -> Result<String, String> {
    let code = r.field("code").unwrap_or("0x0");
    let code = u32::from_str_radix(code.trim_start_matches("0x"), 16).map_err(|_| format!("code={code}"))?;
    if code & 0xffff_0000 != SECCOMP_RET_LOG {
        return Err(format!("not a logged-and-allowed record (code={code:#x})"));
    }
    syscall_name(r)
}

/// The name of a seccomp record's syscall, whatever its action.
pub fn syscall_name(r: &Record) -> Result<String, String> {
    let arch = r.field("arch").ok_or("a record without arch")?;
    let nr: i32 = r
        .field("syscall")
        .and_then(|s| s.parse().ok())
        .ok_or("a record without syscall")?;
    let (arch, nr) = scmp_arch(arch, nr).ok_or_else(|| format!("unknown audit architecture {arch}"))?;
    libseccomp::ScmpSyscall::from(nr)
        .get_name_by_arch(arch)
        .map_err(|_| format!("syscall {nr} unknown on {arch:?}"))
}

/// libseccomp's architecture for an audit architecture (`AUDIT_ARCH_*`, hex), and the
/// syscall number within it (x32 numbers carry bit 30).
fn scmp_arch(audit: &str, nr: i32) -> Option<(libseccomp::ScmpArch, i32)> {
    use libseccomp::ScmpArch::*;
    const X32_BIT: i32 = 0x4000_0000;
    let arch = match audit.to_ascii_lowercase().as_str() {
        "c000003e" if nr & X32_BIT != 0 => return Some((X32, nr)),
        "c000003e" => X8664,
        "40000003" => X86,
        "c00000b7" => Aarch64,
        "40000028" => Arm,
        "c0000015" => Ppc64Le,
        "80000015" => Ppc64,
        "80000016" => S390X,
        "c00000f3" => Riscv64,
        "c0000102" => Loongarch64,
        _ => return None,
    };
    Some((arch, nr))
}
