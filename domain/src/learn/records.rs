//! The kernel's audit records, read from the lines the agent reads (the kernel log or
//! auditd's log) and from the other forms fixtures and tools hold.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
