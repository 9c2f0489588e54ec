//! The grammar of learned rules: exactly the rules learning writes, which the agent checks
//! as it writes them, the operator as it merges a node's report and the CLI as it applies
//! them.

use crate::common::ProfileKind;

/// Whether `rule` is one that learning writes, exactly: a syscall name (seccomp), or
/// (AppArmor), optionally after a `^hat ` or `//child ` scope, one of `capability <cap>,`,
/// `signal (send|receive) set=(<signal>) peer=<name>,`, `ptrace (<perm>) peer=<name>,`,
/// `unix (<perm>) type=<type>,`, `network <family>[ <type>],` and `[owner ]<path> <perms>,`
/// where every AppArmor pattern character of the path is escaped (the only patterns are
/// the generalisations learning makes: `@{PROC}`, `@{pid}`, `@{multiarch}`, a final
/// `[0-9]*` or `.so*`). The agent checks what it writes, the operator what a node reports
/// (a node may be hostile), the CLI what it applies: nothing else, such as `/** rwlkmix,` or
/// `change_profile -> unconfined,`, can pass as a learned rule.
pub fn is_learnable_rule(kind: ProfileKind, rule: &str) -> bool {
    if rule.len() > 4200 || rule.chars().any(char::is_control) {
        return false;
    }
    if kind == ProfileKind::SeccompProfile {
        return !rule.is_empty()
            && rule.len() <= 64
            && rule
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    }
    let rule = match rule.split_once(' ') {
        Some((scope, rest)) if scope.starts_with('^') || scope.starts_with("//") => {
            let name = scope.trim_start_matches('^').trim_start_matches("//");
            if !is_name(name) {
                return false;
            }
            rest
        }
        _ => rule,
    };
    let Some(body) = rule.strip_suffix(',') else {
        return false;
    };
    let words: Vec<&str> = body.split(' ').collect();
    match words.as_slice() {
        ["capability", cap] => CAPABILITIES.contains(cap),
        ["signal", perm, set, peer] => {
            matches!(*perm, "(send)" | "(receive)")
                && set
                    .strip_prefix("set=(")
                    .and_then(|s| s.strip_suffix(')'))
                    .is_some_and(|sig| SIGNALS.contains(&sig) || is_rt_signal(sig))
                && peer.strip_prefix("peer=").is_some_and(is_name)
        }
        ["ptrace", perm, peer] => {
            matches!(*perm, "(tracedby)" | "(trace)" | "(readby)" | "(read)")
                && peer.strip_prefix("peer=").is_some_and(is_name)
        }
        ["unix", perm, ty] => {
            perm.strip_prefix('(')
                .and_then(|p| p.strip_suffix(')'))
                .is_some_and(|p| UNIX_PERMS.contains(&p))
                && ty.strip_prefix("type=").is_some_and(|t| SOCK_TYPES.contains(&t))
        }
        ["network", family] => is_family(family),
        ["network", family, ty] => is_family(family) && SOCK_TYPES.contains(ty),
        _ => is_file_rule(body),
    }
}

/// `[owner ]<path> <perms>` (the rule's body, without its comma).
fn is_file_rule(body: &str) -> bool {
    let body = body.strip_prefix("owner ").unwrap_or(body);
    let Some((path, perms)) = body.rsplit_once(' ') else {
        return false;
    };
    let perms_ok = {
        let base = perms.strip_suffix("ix").unwrap_or(perms);
        !perms.is_empty() && base.chars().all(|c| "rwaklm".contains(c))
    };
    let (path, quoted) = match path.strip_prefix('"') {
        Some(p) => match p.strip_suffix('"') {
            Some(inner) => (inner, true),
            None => return false,
        },
        None if path.contains(|c: char| c.is_whitespace() || c == ',' || c == '#') => return false,
        None => (path, false),
    };
    perms_ok && is_learned_path(path, quoted)
}

/// A path learning writes: absolute (or under `@{PROC}`), every pattern character escaped
/// but those of its own generalisations, read left to right as the parser reads it: a
/// backslash takes the next character literally; `@{pid}` and `@{multiarch}` are the only
/// variables; `[0-9]*` or `.so*` only at the end.
fn is_learned_path(path: &str, quoted: bool) -> bool {
    let rest = match path.strip_prefix("@{PROC}") {
        Some(rest) => rest,
        None if path.starts_with('/') => path,
        None => return false,
    };
    let rest = rest
        .strip_suffix("[0-9]*")
        .or_else(|| rest.strip_suffix(".so*"))
        .unwrap_or(rest);
    // Inside quotes the parser's lexer takes `\"` as an escaped quote: a quoted path may
    // not end in a backslash.
    if quoted && rest.ends_with('\\') {
        return false;
    }
    let mut chars = rest.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            // An escape takes the next character, whatever it is (consumed by the guard).
            '\\' if chars.next().is_none() => return false,
            '\\' => {}
            '@' => {
                let var = ["@{pid}", "@{multiarch}"]
                    .into_iter()
                    .find(|v| rest[at..].starts_with(v));
                let Some(var) = var else { return false };
                // Skip the variable's other characters.
                for _ in 1..var.len() {
                    chars.next();
                }
            }
            '*' | '?' | '[' | ']' | '{' | '}' | '^' | '"' => return false,
            _ => {}
        }
    }
    true
}

/// A profile, hat or peer name as records carry them: no spaces, quotes, commas or
/// pattern characters.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '+'))
}

fn is_family(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_rt_signal(s: &str) -> bool {
    s.strip_prefix("rtmin+")
        .is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n <= 32))
}

/// The capability names AppArmor rules take.
pub const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The signal names the kernel writes in AppArmor records (and rules take).
const SIGNALS: &[&str] = &[
    "hup", "int", "quit", "ill", "trap", "abrt", "bus", "fpe", "kill", "usr1", "segv", "usr2", "pipe", "alrm", "term",
    "stkflt", "chld", "cont", "stop", "stp", "ttin", "ttou", "urg", "xcpu", "xfsz", "vtalrm", "prof", "winch", "io",
    "pwr", "sys", "emt", "exists", "lost",
];

const SOCK_TYPES: &[&str] = &["stream", "dgram", "raw", "rdm", "seqpacket", "dccp", "packet"];

const UNIX_PERMS: &[&str] = &[
    "create", "bind", "listen", "accept", "connect", "send", "receive", "getattr", "setattr", "getopt", "setopt",
    "shutdown",
];

/// `s` with control characters shown as `\u{..}` escapes: what is printed to a terminal of
/// text a workload or node may have written.
pub fn printable(s: &str) -> String {
    // Control characters, and the invisible ones that reorder or hide text (bidirectional
    // controls, zero-width characters, line and paragraph separators).
    let invisible = |c: char| {
        matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
    };
    s.chars()
        .flat_map(|c| {
            if c.is_control() || invisible(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// AppArmor file permissions for a requested mask, in the parser's canonical order: create
/// and delete need write; an exec inherits this profile (`ix`).
pub(super) fn file_perms(mask: &str, exec: bool) -> String {
    let has = |c: char| mask.contains(c);
    let mut out = String::new();
    let write = has('w') || has('c') || has('d');
    if has('r') {
        out.push('r');
    }
    if write {
        out.push('w');
    } else if has('a') {
        out.push('a');
    }
    if has('k') {
        out.push('k');
    }
    if has('l') {
        out.push('l');
    }
    if has('m') {
        out.push('m');
    }
    if exec || has('x') {
        out.push_str("ix");
    }
    out
}
