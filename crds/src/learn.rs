//! Learning profiles from what workloads do: the kernel's audit records of a profile in
//! Complain mode (AppArmor `apparmor="ALLOWED"`) or of a seccomp filter that logs
//! (`SCMP_ACT_LOG`), turned into rules; what a node learned, and what the operator merges
//! from every node. Pure: the agent reads the records, the operator merges, the CLI applies.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kind::ProfileKind;

/// Most rules one node reports for one profile; more are counted, not listed.
pub const MAX_RULES_PER_PROFILE: usize = 256;
/// Most profiles one node reports learning for.
pub const MAX_LEARNING_PROFILES: usize = 64;
/// Most suggestions a profile's status lists.
pub const MAX_SUGGESTIONS: usize = 256;
/// Most node names a suggestion lists.
pub const MAX_SUGGESTION_NODES: usize = 5;

/// What one node learned for one profile, since the node installed its accepted content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedProfile {
    /// The profile's kind.
    pub kind: ProfileKind,
    /// The profile's name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// The profile's uid.
    #[schemars(length(max = 64))]
    pub uid: String,
    /// The accepted content the records were made under (its digest).
    #[schemars(length(max = 64))]
    pub digest: String,
    /// The rules, one per permission, sorted.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub rules: Vec<LearnedRule>,
    /// Records of rules left out to keep within the bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_rules: u32,
}

/// One permission a profile's processes used, as a rule of the profile's language.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedRule {
    /// AppArmor: one rule line (`owner /run/app.pid w,`); seccomp: a syscall name.
    #[schemars(length(max = 4200))]
    pub rule: String,
    /// How many records asked for it.
    pub count: u64,
    /// When the first of them was made.
    pub first_seen: Time,
    /// When the last of them was made.
    pub last_seen: Time,
}

/// The operator's merge of what every node learned for a profile (its status `learning`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Learning {
    /// Distinct permissions the profile's processes used that its accepted content does not
    /// grant (AppArmor, Complain mode) or that its filter logged (seccomp, `SCMP_ACT_LOG`).
    pub new_permissions: u32,
    /// When the newest of those permissions was first used: quiet since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_new_at: Option<Time>,
    /// Nodes that reported learning for the accepted content.
    pub nodes: u32,
    /// The suggested rules, sorted; `kubectl palisade learn` shows and applies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub suggestions: Vec<Suggestion>,
    /// Suggestions left out to keep within the bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_suggestions: u32,
}

/// One suggested rule, merged over the nodes that saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// The rule: an AppArmor rule line (`owner /run/app.pid w,`; `^hat ...` or `//child ...`
    /// for a hat's or child profile's), or a syscall name.
    #[schemars(length(max = 4200))]
    pub rule: String,
    /// How many records asked for it, on all nodes.
    pub count: u64,
    /// When a node first saw it.
    pub first_seen: Time,
    /// When a node last saw it.
    pub last_seen: Time,
    /// Up to 5 of the nodes that saw it.
    #[schemars(length(max = 5), inner(length(max = 253)))]
    pub nodes: Vec<String>,
    /// How many nodes saw it.
    pub node_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Merges what nodes learned for one profile at one accepted digest; reports of an older
/// content are left out (they were made under other rules).
pub fn merge<'a>(digest: &str, reports: impl IntoIterator<Item = (&'a str, &'a LearnedProfile)>) -> Option<Learning> {
    struct Acc {
        count: u64,
        first: Time,
        last: Time,
        nodes: BTreeSet<String>,
    }
    let mut rules: BTreeMap<String, Acc> = BTreeMap::new();
    let mut nodes = 0u32;
    let mut omitted = 0u32;
    for (node, learned) in reports {
        if learned.digest != digest {
            continue;
        }
        nodes += 1;
        omitted = omitted.max(learned.omitted_rules);
        // A node reports what it likes: only rules of learning's own grammar are suggested.
        for r in learned
            .rules
            .iter()
            .filter(|r| is_learnable_rule(learned.kind, &r.rule))
        {
            let acc = rules.entry(r.rule.clone()).or_insert_with(|| Acc {
                count: 0,
                first: r.first_seen.clone(),
                last: r.last_seen.clone(),
                nodes: BTreeSet::new(),
            });
            acc.count += r.count;
            if r.first_seen.0 < acc.first.0 {
                acc.first = r.first_seen.clone();
            }
            if r.last_seen.0 > acc.last.0 {
                acc.last = r.last_seen.clone();
            }
            acc.nodes.insert(node.to_string());
        }
    }
    if nodes == 0 {
        return None;
    }
    let last_new_at = rules.values().map(|a| a.first.clone()).max_by_key(|t| t.0);
    let new_permissions = rules.len() as u32;
    let omitted_suggestions = rules.len().saturating_sub(MAX_SUGGESTIONS) as u32 + omitted;
    let suggestions = rules
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(rule, a)| Suggestion {
            rule,
            count: a.count,
            first_seen: a.first,
            last_seen: a.last,
            node_count: a.nodes.len() as u32,
            nodes: a.nodes.into_iter().take(MAX_SUGGESTION_NODES).collect(),
        })
        .collect();
    Some(Learning {
        new_permissions,
        last_new_at,
        nodes,
        suggestions,
        omitted_suggestions,
    })
}

// ---------------------------------------------------------------------------------------
// Audit records.

/// One audit record, from any of the places the kernel's records end up.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Seconds since the epoch, with milliseconds, as the kernel stamped it.
    pub time: f64,
    /// The kernel's audit serial number (unique within a boot).
    pub serial: u64,
    pub kind: RecordKind,
    /// The record's `key=value` fields (values unquoted, hex-encoded ones decoded).
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Type 1400 (`AVC`) with an `apparmor=` field.
    AppArmor,
    /// Type 1326 (`SECCOMP`).
    Seccomp,
}

impl Record {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The record's time as an API time (millisecond precision).
    pub fn api_time(&self) -> Time {
        let ms = (self.time * 1000.0).round() as i64;
        Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
    }
}

/// Where a line was read, which decides what proves it is the audit subsystem's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSource {
    /// The kernel log as `syslog(2)` gives it (`<5>[  1.234] audit: type=1400 ...`): only
    /// lines of the kernel facility at notice level whose message *starts* with the audit
    /// subsystem's `audit: type=N audit(` count. Lines that user space wrote to /dev/kmsg
    /// carry the user facility, and other kernel messages (which may print a workload's
    /// strings raw, a crashing program's name for one) start otherwise.
    KernelLog,
    /// auditd's log (root's file, written only by auditd): `[node=X ]type=T msg=audit(`.
    AuditLog,
    /// Any of the forms above, `/dev/kmsg`'s (`5,seq,usec,-;audit: ...`), `dmesg`'s
    /// (`[  1.234] audit: ...`) and the bare message: for fixtures and offline tools, never
    /// for the agent.
    Any,
}

/// Parses one line into an AppArmor or seccomp record, as [`parse_from`] with
/// [`LineSource::Any`].
pub fn parse_line(line: &str) -> Option<Record> {
    parse_from(line, LineSource::Any)
}

/// Parses one line read from `source` into an AppArmor or seccomp record; `None` for every
/// other line, and for any line whose fields do not follow the kernel's grammar exactly
/// (`key=value`, a value quoted without quotes inside, or bare without spaces or quotes):
/// a line that needs guessing is not a record.
pub fn parse_from(line: &str, source: LineSource) -> Option<Record> {
    // auditd's ENRICHED format appends interpreted fields after a 0x1d separator.
    let line = line.split('\x1d').next().unwrap_or(line);
    let body = match source {
        LineSource::KernelLog => kernel_log_body(line)?,
        LineSource::AuditLog => audit_log_body(line)?,
        LineSource::Any => kernel_log_body(line)
            .or_else(|| audit_log_body(line))
            .or_else(|| kmsg_body(line))
            .or_else(|| line.strip_prefix("audit: type="))
            .or_else(|| {
                line.strip_prefix('[')
                    .and_then(|l| skip_stamp(l))
                    .and_then(|l| l.strip_prefix("audit: type="))
            })?,
    };
    // body: `<type> audit(<stamp>:<serial>): <fields>` (auditd: `<type> msg=audit(...`).
    let (ty, rest) = body.split_once(' ')?;
    let kind = match ty {
        "1400" | "AVC" => RecordKind::AppArmor,
        "1326" | "SECCOMP" => RecordKind::Seccomp,
        _ => return None,
    };
    let rest = rest.strip_prefix("msg=").unwrap_or(rest).strip_prefix("audit(")?;
    let close = rest.find("):")?;
    let (stamp, serial) = rest[..close].split_once(':')?;
    let time: f64 = stamp.parse().ok().filter(|t: &f64| t.is_finite())?;
    let serial: u64 = serial.parse().ok()?;
    let fields = parse_fields(&rest[close + 2..])?;
    if kind == RecordKind::AppArmor && !fields.contains_key("apparmor") {
        return None;
    }
    Some(Record {
        time,
        serial,
        kind,
        fields,
    })
}

/// `syslog(2)`: `<5>`, the record's `[stamp] `, then `audit: type=`.
fn kernel_log_body(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("<5>[")?;
    skip_stamp(rest)?.strip_prefix("audit: type=")
}

/// The lines of a `syslog(2)` read that can be records. The kernel prints every line of a
/// multi-line record with that record's own prefix (`<level>[stamp] `): a container with
/// CAP_AUDIT_WRITE can send a user-space audit message with newlines and a forged
/// `audit: type=1400 ...` line in it, which the kernel prints at notice level when no auditd
/// runs. Distinct records may share a prefix too (a burst, a coarse clock), so a line with
/// the same prefix as the line before it counts only if that line was itself a kept record
/// of a kind that cannot hold a newline: an audit record the kernel writes (it escapes what
/// others give it), not a user-space message (types 1100-1199 and 2100-2999) nor any other
/// kernel message. A line without a stamp cannot be told apart: none counts.
pub fn kernel_log_records(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    let mut previous_single_line = false;
    for line in text.lines() {
        let prefix = line
            .strip_prefix('<')
            .and_then(|r| r.find("] ").map(|end| &line[..end + 3]))
            .filter(|p| p.contains(">["));
        let Some(prefix) = prefix else {
            previous = None;
            previous_single_line = false;
            continue;
        };
        let keep = previous != Some(prefix) || previous_single_line;
        if keep {
            out.push(line);
        }
        previous = Some(prefix);
        previous_single_line = keep && kernel_written_record(&line[prefix.len()..]);
    }
    out
}

/// Whether a kernel-log message is an audit record the kernel itself writes (one line).
fn kernel_written_record(message: &str) -> bool {
    let Some(ty) = message
        .strip_prefix("audit: type=")
        .and_then(|r| r.split_once(' '))
        .and_then(|(ty, rest)| rest.starts_with("audit(").then_some(ty))
        .and_then(|ty| ty.parse::<u32>().ok())
    else {
        return false;
    };
    !(1100..=1199).contains(&ty) && !(2100..=2999).contains(&ty)
}

/// `/dev/kmsg`: priority 5 (kernel facility, notice), then `audit: type=`.
fn kmsg_body(line: &str) -> Option<&str> {
    let (head, msg) = line.split_once(';')?;
    (head.split(',').next() == Some("5")).then_some(())?;
    msg.strip_prefix("audit: type=")
}

/// auditd: `type=T msg=audit(`, optionally after `node=<name> `.
fn audit_log_body(line: &str) -> Option<&str> {
    let rest = match line.strip_prefix("node=") {
        Some(r) => r.split_once(' ')?.1,
        None => line,
    };
    let body = rest.strip_prefix("type=")?;
    body.split_once(' ')?.1.starts_with("msg=audit(").then_some(body)
}

/// After `[`: a printk stamp (digits, spaces, a dot; or a caller id `T123`) and `] `.
fn skip_stamp(rest: &str) -> Option<&str> {
    let end = rest.find("] ")?;
    rest[..end]
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'.' || b == b'T' || b == b'C')
        .then(|| &rest[end + 2..])
}

/// `key=value` pairs: a value is `"quoted"` (no quote inside: the kernel hex-encodes such
/// strings), or bare without spaces or quotes (hex-encoded when the kernel had to: a bare
/// value of a string field such as `name` is decoded when it is even-length hex). Anything
/// else and the line is not a record.
fn parse_fields(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            let raw = &after[..end];
            if raw.contains('"') {
                return None;
            }
            let decoded = if HEX_FIELDS.contains(&key) {
                decode_hex(raw).unwrap_or_else(|| raw.to_string())
            } else {
                raw.to_string()
            };
            (decoded, &after[end..])
        };
        if !next.is_empty() && !next.starts_with(char::is_whitespace) {
            return None;
        }
        out.insert(key.to_string(), value);
        rest = next.trim_start();
    }
    Some(out)
}

/// Fields the kernel hex-encodes when their value has spaces, quotes or control characters.
const HEX_FIELDS: &[&str] = &["name", "comm", "exe", "profile", "peer", "target", "addr", "peer_addr"];

fn decode_hex(s: &str) -> Option<String> {
    if s.len() < 2 || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Whether a record was made by the container runtime rather than by the workload: runc's
/// own processes before they exec the container's program (`runc:[0:PARENT]`,
/// `runc:[1:CHILD]`, `runc:[2:INIT]`). The workload's profile applies from that exec on.
pub fn by_runtime(r: &Record) -> bool {
    r.field("comm").is_some_and(|c| c.starts_with("runc:[") || c == "runc")
}

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
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
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

/// AppArmor file permissions for a requested mask, in the parser's canonical order: create
/// and delete need write; an exec inherits this profile (`ix`).
fn file_perms(mask: &str, exec: bool) -> String {
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
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

/// The syscall name a seccomp record logged, for the record's architecture.
pub fn seccomp_syscall(r: &Record) -> Result<String, String> {
    let code = r.field("code").unwrap_or("0x0");
    let code = u32::from_str_radix(code.trim_start_matches("0x"), 16).map_err(|_| format!("code={code}"))?;
    if code & 0xffff_0000 != SECCOMP_RET_LOG {
        return Err(format!("not a logged-and-allowed record (code={code:#x})"));
    }
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

// ---------------------------------------------------------------------------------------
// Applying suggestions.

/// The comment that marks rules added by learning.
pub const LEARNED_MARK: &str = "# learned by palisade";

/// Whether `rule` is already in `policy` (the same rule line, whitespace aside).
fn has_rule(policy: &str, rule: &str) -> bool {
    policy.lines().any(|l| l.split('#').next().unwrap_or("").trim() == rule)
}

/// A learned rule's scope: `None` for the profile itself (and its complain-mode learning
/// children), `Some("^hat")` or `Some("//child")` for a hat or child profile, whose rules
/// are written `^hat <rule>` / `//child <rule>`.
pub fn rule_scope(rule: &str) -> (Option<&str>, &str) {
    if (rule.starts_with('^') || rule.starts_with("//"))
        && let Some((scope, rest)) = rule.split_once(' ')
    {
        return (Some(scope), rest);
    }
    (None, rule)
}

/// Adds `rules` to a raw AppArmor policy: each inside its block (the top-level profile, or
/// the hat or child profile its scope names), before the block's closing brace, one rule
/// per line under a comment with `stamp` (e.g. the date), and `include <tunables/global>`
/// before the profile when a rule uses its variables and the policy has no such include.
/// Rules already in their block are skipped; with none left the policy is returned
/// unchanged. Returns the new policy and the rules added.
pub fn add_to_policy(policy: &str, rules: &[String], stamp: &str) -> Result<(String, Vec<String>), String> {
    let blocks = blocks(policy);
    let top = blocks
        .iter()
        .find(|b| b.depth == 0)
        .ok_or("the policy has no profile block to add rules to")?;
    // Per block (by its closing brace), the rules it lacks.
    let mut by_block: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for rule in rules.iter().collect::<BTreeSet<_>>() {
        let (scope, body) = rule_scope(rule);
        let block = match scope {
            None => top,
            Some(scope) => blocks
                .iter()
                .find(|b| b.depth > 0 && b.is(scope))
                .ok_or_else(|| format!("the policy has no block for {scope} (rule `{body}`)"))?,
        };
        if !has_rule(&policy[block.open + 1..block.close], body) {
            by_block.entry(block.close).or_default().push(rule.clone());
        }
    }
    let added: Vec<String> = by_block.values().flatten().cloned().collect();
    if added.is_empty() {
        return Ok((policy.to_string(), added));
    }
    let mut out = policy.to_string();
    // From the last block to the first, so earlier offsets stay valid.
    for (close, rules) in by_block.iter().rev() {
        let close = *close;
        let line_start = policy[..close].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let before_brace = &policy[line_start..close];
        let own_line = before_brace.trim().is_empty();
        let indent = format!("{}  ", if own_line { before_brace } else { "" });
        let mut text = format!("{indent}{LEARNED_MARK} ({stamp})\n");
        for r in rules {
            text.push_str(&format!("{indent}{}\n", rule_scope(r).1));
        }
        if own_line {
            out.insert_str(line_start, &text);
        } else {
            out.insert_str(close, &format!("\n{text}"));
        }
    }
    let uses_tunables = added.iter().any(|r| r.contains("@{"));
    let has_tunables = policy.lines().any(|l| {
        let l = l.trim_start().trim_start_matches('#');
        (l.starts_with("include") || l.starts_with("include if exists")) && l.contains("tunables/global")
    });
    if uses_tunables && !has_tunables {
        out = format!("include <tunables/global>\n{out}");
    }
    Ok((out, added))
}

/// A `{ ... }` block of a policy: its header (the text before `{` on its line), its braces
/// and how deep it is.
struct Block {
    header: String,
    open: usize,
    close: usize,
    depth: usize,
}

impl Block {
    /// Whether this is the hat (`^hat {`, `hat hat {`) or child (`profile child {`,
    /// `profile p//child {`) a scope names.
    fn is(&self, scope: &str) -> bool {
        let words: Vec<&str> = self.header.split_whitespace().collect();
        if let Some(hat) = scope.strip_prefix('^') {
            words.first() == Some(&scope) || words.windows(2).any(|w| w[0] == "hat" && w[1] == hat)
        } else {
            let child = scope.trim_start_matches('/');
            words
                .windows(2)
                .any(|w| w[0] == "profile" && (w[1] == child || w[1].ends_with(&format!("//{child}"))))
        }
    }
}

/// The policy's blocks, skipping comments, quoted strings, variables (`@{pid}`) and
/// alternations (`{a,b}`): a block's brace stands apart (`profile p {` ... `}`, or `{}`),
/// an alternation's touches its words.
fn blocks(policy: &str) -> Vec<Block> {
    let bytes = policy.as_bytes();
    let apart = |i: usize| i >= bytes.len() || bytes[i].is_ascii_whitespace();
    let mut stack: Vec<(String, usize)> = vec![];
    let mut out = vec![];
    let mut in_comment = false;
    let mut in_quote = false;
    for (i, c) in policy.char_indices() {
        match c {
            '\n' => in_comment = false,
            _ if in_comment => {}
            '"' => in_quote = !in_quote,
            _ if in_quote => {}
            // `#include <...>` is a directive, not a comment.
            '#' if !(policy[i..].starts_with("#include ") || policy[i..].starts_with("#include<")) => in_comment = true,
            '{' if (apart(i + 1) || bytes.get(i + 1) == Some(&b'}')) && (i == 0 || bytes[i - 1] != b'@') => {
                let line_start = policy[..i].rfind('\n').map(|j| j + 1).unwrap_or(0);
                stack.push((policy[line_start..i].trim().to_string(), i));
            }
            '}' if !stack.is_empty() && (i == 0 || apart(i - 1) || matches!(bytes[i - 1], b'{' | b',')) => {
                let (header, open) = stack.pop().expect("not empty");
                out.push(Block {
                    header,
                    open,
                    close: i,
                    depth: stack.len(),
                });
            }
            _ => {}
        }
    }
    // In the order they open.
    out.sort_by_key(|b| b.open);
    out
}

/// One file rule per path: rules for the same path (and `owner`) get the union of their
/// permissions. Other rules are kept as they are. Sorted, without duplicates.
pub fn combine(rules: &[String]) -> Vec<String> {
    let mut files: BTreeMap<(Option<&str>, bool, String), BTreeSet<char>> = BTreeMap::new();
    let mut others = BTreeSet::new();
    for r in rules {
        let (scope, body) = rule_scope(r);
        match file_rule(body) {
            Some((owner, path, perms)) => files
                .entry((scope, owner, path.to_string()))
                .or_default()
                .extend(perms.chars()),
            None => {
                others.insert(r.clone());
            }
        }
    }
    let mut out: Vec<String> = others.into_iter().collect();
    for ((scope, owner, path), perms) in files {
        let mask: String = perms.into_iter().collect();
        let exec = mask.contains('x');
        out.push(format!(
            "{}{}{path} {},",
            scope.map(|s| format!("{s} ")).unwrap_or_default(),
            if owner { "owner " } else { "" },
            file_perms(&mask, exec)
        ));
    }
    out.sort();
    out
}

/// `[owner ]<path> <perms>,` → (owner, path, perms).
fn file_rule(rule: &str) -> Option<(bool, &str, &str)> {
    let body = rule.strip_suffix(',')?;
    let (owner, body) = match body.strip_prefix("owner ") {
        Some(b) => (true, b),
        None => (false, body),
    };
    let (path, perms) = body.rsplit_once(' ')?;
    (path.starts_with('/') || path.starts_with("@{") || path.starts_with('"')).then_some((owner, path, perms))
}

/// Adds learned AppArmor rules to a structured profile's lists: executables (`ix`),
/// libraries (`m`), read-only, write-only or read-write paths, capabilities, and TCP, UDP
/// or raw network. Returns the rules added and the rules the structure cannot express
/// (signal, ptrace, unix, other network families), which need a raw `policy`. The
/// structure has no `owner`: such rules are added for every owner. A path is moved to
/// the one list that grants what it granted and what was learned (the read-only and
/// write-only lists deny the other access in Enforce mode); a lock or link without write,
/// and a quoted or escaped name, cannot be expressed.
pub fn add_to_abstract(abs: &mut crate::apparmor::AppArmorAbstract, rules: &[String]) -> (Vec<String>, Vec<String>) {
    use crate::apparmor::*;
    let (mut added, mut unexpressed) = (Vec::new(), Vec::new());
    let mut files: BTreeMap<String, (BTreeSet<char>, Vec<String>)> = BTreeMap::new();
    for rule in combine(rules) {
        if let Some(cap) = rule.strip_prefix("capability ").and_then(|r| r.strip_suffix(',')) {
            match serde_json::from_value::<Capability>(serde_json::Value::String(cap.to_string())) {
                Ok(c) => {
                    let caps = abs.capability.get_or_insert_with(Default::default);
                    if !caps.allowed_capabilities.contains(&c) {
                        caps.allowed_capabilities.push(c);
                        added.push(rule);
                    }
                }
                Err(_) => unexpressed.push(rule),
            }
            continue;
        }
        if let Some(net) = rule.strip_prefix("network ").and_then(|r| r.strip_suffix(',')) {
            let words: Vec<&str> = net.split_whitespace().collect();
            let net = abs.network.get_or_insert_with(Default::default);
            let protocols = net.allowed_protocols.get_or_insert_with(Default::default);
            let flag = match words.as_slice() {
                ["inet" | "inet6", "stream"] => &mut protocols.allow_tcp,
                ["inet" | "inet6", "dgram"] => &mut protocols.allow_udp,
                ["inet" | "inet6", "raw"] | ["packet", ..] => &mut net.allow_raw,
                _ => {
                    unexpressed.push(rule);
                    continue;
                }
            };
            if *flag != Some(true) {
                *flag = Some(true);
                added.push(rule);
            }
            continue;
        }
        let Some((_, path, perms)) = file_rule(&rule) else {
            unexpressed.push(rule);
            continue;
        };
        // The lists have no `owner`: a path's rules are one, whatever the owner.
        let entry = files
            .entry(path.to_string())
            .or_insert_with(|| (BTreeSet::new(), Vec::new()));
        entry.0.extend(perms.chars());
        entry.1.push(rule.clone());
    }
    for (path, (perms, rules)) in files {
        let has = |c: char| perms.contains(&c);
        // Quoted or escaped names cannot go into a list (Palisade quotes list paths itself).
        if path.starts_with('"') || path.contains('\\') || ((has('k') || has('l')) && !has('w')) {
            unexpressed.extend(rules);
            continue;
        }
        let path = AppArmorPath::from(path.as_str());
        let mut changed = false;
        if has('x') || has('m') {
            let exe = abs.executable.get_or_insert_with(Default::default);
            let list = if has('x') {
                &mut exe.allowed_executables
            } else {
                &mut exe.allowed_libraries
            };
            if !list.contains(&path) {
                list.push(path.clone());
                changed = true;
            }
        }
        let (mut r, mut w) = (has('r') && !has('x'), has('w') || has('a'));
        if r || w {
            // One list per path: what it grants already, plus what was learned.
            let fs = abs.filesystem.get_or_insert_with(Default::default);
            let before = (
                fs.read_only_paths.contains(&path),
                fs.write_only_paths.contains(&path),
                fs.read_write_paths.contains(&path),
            );
            r |= before.0 || before.2;
            w |= before.1 || before.2;
            let after = (r && !w, w && !r, r && w);
            if after != before {
                for list in [
                    &mut fs.read_only_paths,
                    &mut fs.write_only_paths,
                    &mut fs.read_write_paths,
                ] {
                    list.retain(|p| *p != path);
                }
                let list = match after {
                    (true, _, _) => &mut fs.read_only_paths,
                    (_, true, _) => &mut fs.write_only_paths,
                    _ => &mut fs.read_write_paths,
                };
                list.push(path.clone());
                changed = true;
            }
        }
        if changed {
            added.extend(rules);
        }
    }
    (added, unexpressed)
}

/// Allows learned syscalls in a seccomp profile: one `SCMP_ACT_ALLOW` rule with every name
/// that no argument-free `SCMP_ACT_ALLOW` rule already lists. Returns the names added.
/// (A name a `SCMP_ACT_LOG` rule lists stays logged until [`enforce_seccomp`].)
pub fn add_to_seccomp(spec: &mut crate::seccomp::SeccompProfileSpec, names: &[String]) -> Vec<String> {
    use crate::seccomp::{SeccompAction, SeccompSyscall};
    let allowed: BTreeSet<&str> = spec
        .syscalls
        .iter()
        .filter(|r| r.action == SeccompAction::Allow && r.args.is_empty())
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect();
    let new: Vec<String> = names
        .iter()
        .filter(|n| !allowed.contains(n.as_str()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !new.is_empty() {
        spec.syscalls.push(SeccompSyscall {
            names: new.clone(),
            action: SeccompAction::Allow,
            errno_ret: None,
            args: vec![],
        });
    }
    new
}

/// Leaves learning: `SCMP_ACT_LOG` as the default action becomes `SCMP_ACT_ERRNO`, and the
/// `SCMP_ACT_LOG` rules go (what they logged and the workload used, learning allowed).
/// Returns whether anything changed.
pub fn enforce_seccomp(spec: &mut crate::seccomp::SeccompProfileSpec) -> bool {
    use crate::seccomp::SeccompAction;
    let before = spec.syscalls.len();
    spec.syscalls.retain(|r| r.action != SeccompAction::Log);
    let default = spec.default_action == SeccompAction::Log;
    if default {
        spec.default_action = SeccompAction::Errno;
    }
    default || spec.syscalls.len() != before
}

/// Whether a profile is learning: enabled, accepted, and in Complain mode (AppArmor) or
/// logging (seccomp). The operator publishes the pods that use such a profile to their
/// nodes, and the agents learn for it: one judgement for both.
pub fn apparmor_learning(p: &crate::AppArmorProfile) -> bool {
    p.spec.mode == crate::AppArmorMode::Complain
        && p.spec.state == crate::ProfileState::Enabled
        && p.status.as_ref().is_some_and(|s| s.accepted.is_some())
}

/// [`apparmor_learning`] for a SeccompProfile.
pub fn seccomp_learning(p: &crate::SeccompProfile) -> bool {
    seccomp_logs(&p.spec)
        && p.spec.state == crate::ProfileState::Enabled
        && p.status.as_ref().is_some_and(|s| s.accepted.is_some())
}

/// Whether a seccomp profile logs (its default action or a rule is `SCMP_ACT_LOG`): what
/// such a filter logs is learned.
pub fn seccomp_logs(spec: &crate::seccomp::SeccompProfileSpec) -> bool {
    use crate::seccomp::SeccompAction;
    spec.default_action == SeccompAction::Log || spec.syscalls.iter().any(|r| r.action == SeccompAction::Log)
}

#[cfg(test)]
mod tests;
