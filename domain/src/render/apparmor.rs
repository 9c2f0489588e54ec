//! AppArmorProfile → profile text: rendering `abstract`, and the checks a raw `policy`
//! passes before any parser sees it.

use std::fmt::Write as _;

use crate::apparmor::{AppArmorAbstract, AppArmorMode, AppArmorPath, AppArmorProfileSpec, Capability};

/// Why a profile's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("spec: exactly one of spec.policy and spec.abstract must be set")]
    PolicyXorAbstract,
    #[error("spec.policy line {line}: {message}")]
    Policy { line: usize, message: String },
    #[error("spec.abstract.{field}: {message}")]
    Abstract { field: String, message: String },
}

fn policy_err(line: usize, message: impl Into<String>) -> PolicyError {
    PolicyError::Policy {
        line,
        message: message.into(),
    }
}

/// What Palisade loads for an AppArmorProfile: the checked text and the mode, with the
/// digest of both. The one place that digest is computed: the operator publishes it as the
/// accepted content and agents load only text whose digest equals it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedPolicy {
    pub text: String,
    pub mode: AppArmorMode,
    pub digest: String,
}

/// Renders and digests a profile (see [`RenderedPolicy`]).
pub fn render(name: &str, spec: &AppArmorProfileSpec) -> Result<RenderedPolicy, PolicyError> {
    let text = profile_text(name, spec)?;
    let mode = match spec.mode {
        AppArmorMode::Enforce => "Enforce",
        AppArmorMode::Complain => "Complain",
    };
    let digest = crate::digest(format!("{mode}\n{text}").as_bytes());
    Ok(RenderedPolicy {
        text,
        mode: spec.mode,
        digest,
    })
}

/// The profile text Palisade loads for this spec under the kernel name `name`:
/// the rendered `abstract`, or the checked raw `policy`.
pub fn profile_text(name: &str, spec: &AppArmorProfileSpec) -> Result<String, PolicyError> {
    match (&spec.policy, &spec.abstract_) {
        (Some(policy), None) => {
            check_policy(name, policy)?;
            check_mode_flags(policy, spec.mode)?;
            Ok(policy.clone())
        }
        (None, Some(abs)) => render_abstract(name, abs, spec.mode),
        _ => Err(PolicyError::PolicyXorAbstract),
    }
}

/// The flags every rendered profile carries: containers see paths outside their mount
/// namespace as disconnected, and deleted files stay mediated.
const RENDERED_FLAGS: &str = "attach_disconnected,mediate_deleted";

/// Rules SPO's `abstract` template writes into every Enforce-mode profile (Docker's default
/// AppArmor protections of /proc and the EFI variables). Left out in Complain mode.
pub const ENFORCE_DEFAULT_DENIES: &[&str] = &[
    "deny @{PROC}/* w,",
    "deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}/** w,",
    "deny @{PROC}/sys/[^k]** w,",
    "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
    "deny @{PROC}/sysrq-trigger rwklx,",
    "deny @{PROC}/mem rwklx,",
    "deny @{PROC}/kmem rwklx,",
    "deny @{PROC}/kcore rwklx,",
    "deny /sys/firmware/efi/efivars/** rwklx,",
];

/// Writes an `abstract` description as AppArmor profile text named `name`, with the same
/// rules the Security Profiles Operator writes for the same fields (see the field docs).
///
/// `deny` rules are written only in Enforce mode: in Complain mode a deny rule would still
/// deny, which is not what a user asking to only log expects.
pub fn render_abstract(name: &str, abs: &AppArmorAbstract, mode: AppArmorMode) -> Result<String, PolicyError> {
    let enforce = mode == AppArmorMode::Enforce;
    let mut body_rules = String::new();
    let mut push = |field: &str, paths: &[AppArmorPath], perms: &str, deny: Option<&str>| -> Result<(), PolicyError> {
        for (i, path) in paths.iter().enumerate() {
            let p = checked_path(&format!("{field}[{i}]"), path)?;
            writeln!(body_rules, "  \"{p}\" {perms},").expect("String");
            if let Some(denied) = deny.filter(|_| enforce) {
                writeln!(body_rules, "  deny \"{p}\" {denied},").expect("String");
            }
        }
        Ok(())
    };
    if let Some(exe) = &abs.executable {
        push("executable.allowedExecutables", &exe.allowed_executables, "ixr", None)?;
        push("executable.allowedLibraries", &exe.allowed_libraries, "mr", None)?;
    }
    if let Some(fs) = &abs.filesystem {
        push("filesystem.readOnlyPaths", &fs.read_only_paths, "r", Some("wlk"))?;
        push("filesystem.writeOnlyPaths", &fs.write_only_paths, "wlk", Some("r"))?;
        push("filesystem.readWritePaths", &fs.read_write_paths, "rwlk", None)?;
        if enforce {
            for (i, path) in fs.deny_paths.iter().enumerate() {
                let p = checked_path(&format!("filesystem.denyPaths[{i}]"), path)?;
                writeln!(body_rules, "  deny \"{p}\" rwlkmx,").expect("String");
            }
        }
    }
    if let Some(net) = &abs.network {
        if net.allow_raw == Some(true) {
            body_rules.push_str("  network raw,\n");
        } else if enforce {
            body_rules.push_str("  deny network raw,\n");
        }
        let protocols = net.allowed_protocols.as_ref();
        if protocols.and_then(|p| p.allow_tcp) == Some(true) {
            body_rules.push_str("  network tcp,\n");
        }
        if protocols.and_then(|p| p.allow_udp) == Some(true) {
            body_rules.push_str("  network udp,\n");
        }
    }
    if let Some(caps) = &abs.capability {
        for cap in &caps.allowed_capabilities {
            let cap = serde_json::to_value(cap).expect("capability serializes");
            writeln!(body_rules, "  capability {},", cap.as_str().unwrap_or_default()).expect("String");
        }
        if caps.allowed_capabilities.contains(&Capability::SysRawio) {
            // SPO grants these with sys_rawio (filesystem checks and mounts).
            body_rules.push_str("  /sbin/fsck ixr,\n  /sbin/fsck.ext4 ixr,\n  mount,\n  remount,\n  umount,\n");
        }
    }
    if enforce {
        for rule in ENFORCE_DEFAULT_DENIES {
            writeln!(body_rules, "  {rule}").expect("String");
        }
    }

    Ok(format!(
        "# Generated by Palisade from AppArmorProfile {name}. Do not edit.\n\
         abi <abi/3.0>,\n\
         include <tunables/global>\n\
         \n\
         profile {name} flags=({RENDERED_FLAGS}) {{\n  \
         include <abstractions/base>\n\
         {body_rules}}}\n"
    ))
}

/// Re-checks a path the schema already validated, so rendering never depends on the
/// API server having enforced it.
fn checked_path<'a>(field: &str, path: &'a AppArmorPath) -> Result<&'a str, PolicyError> {
    let p = path.as_str();
    let bad = |message: &str| PolicyError::Abstract {
        field: field.to_string(),
        message: message.to_string(),
    };
    if !p.starts_with('/') {
        return Err(bad("must be an absolute path"));
    }
    if p.chars().any(|c| c.is_control() || matches!(c, '"' | '\\' | '#')) {
        return Err(bad("must not contain control characters, quotes, backslashes or '#'"));
    }
    Ok(p)
}

/// Checks a raw policy before any parser runs: it may include only `<...>` paths inside the
/// include directory (top level: `tunables/` only, so an include cannot define another
/// profile), and it defines exactly one top-level profile, named `name`. Child profiles
/// and hats (`name//child`) are allowed. Each error names the line.
pub fn check_policy(name: &str, policy: &str) -> Result<(), PolicyError> {
    let mut scanner = Scanner::default();
    let mut top_level: Vec<(usize, String)> = Vec::new();
    for (line_no, start, raw_line) in numbered_lines(policy) {
        let trimmed = raw_line.trim();
        if let Some(target) = include_target(trimmed) {
            check_include(line_no, target, scanner.depth() == 0)?;
            continue;
        }
        if let Some(header) = scanner.feed_line(line_no, start, raw_line)? {
            top_level.push(header);
        }
        for (line, depth, text) in std::mem::take(&mut scanner.inline_includes) {
            let target = include_target(&text).expect("kept only includes");
            check_include(line, target, depth == 0)?;
        }
    }
    scanner.check_closed(policy)?;
    match top_level.as_slice() {
        [] => Err(policy_err(
            1,
            format!("defines no profile; it must define exactly one, named {name:?}"),
        )),
        [(line, header)] => {
            let found = profile_name(*line, header)?;
            if found != name {
                return Err(policy_err(
                    *line,
                    format!("the profile is named {found:?}; it must be named {name:?}, like the object"),
                ));
            }
            check_no_attachment(*line, header)
        }
        [_, (line, header), ..] => Err(policy_err(
            *line,
            format!(
                "a second top-level profile ({:?}); a policy defines exactly one, named {name:?} (use child profiles for more)",
                profile_name(*line, header).unwrap_or_else(|_| header.clone())
            ),
        )),
    }
}

/// Refuses a top-level profile whose `flags=(...)` set a mode other than `spec.mode`: the
/// kernel loads a profile in the mode its flags say (`flags=(complain)` with `mode: Enforce`
/// would never enforce), so `spec.mode` alone decides, and a contradicting flag is an error
/// naming its line. A flag that agrees is accepted.
pub fn check_mode_flags(policy: &str, mode: AppArmorMode) -> Result<(), PolicyError> {
    let mut scanner = Scanner::default();
    for (line_no, start, raw_line) in numbered_lines(policy) {
        if include_target(raw_line.trim()).is_some() {
            continue;
        }
        let Some((line, header)) = scanner.feed_line(line_no, start, raw_line)? else {
            continue;
        };
        let Some(flags) = header_flags(&header) else {
            continue;
        };
        let want = mode.kernel_word();
        for flag in flags {
            if MODE_FLAGS.contains(&flag.as_str()) && flag != want {
                let spec_mode = serde_json::to_value(mode).expect("mode serializes");
                return Err(policy_err(
                    line,
                    format!(
                        "flags=({flag}) sets the profile's mode, which contradicts spec.mode {}: remove the mode flag and set spec.mode (Enforce or Complain) instead",
                        spec_mode.as_str().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Profile flags that set its mode in the kernel.
const MODE_FLAGS: &[&str] = &["enforce", "complain", "kill", "unconfined", "prompt", "default_allow"];

/// The flags a block header declares (`flags=(a, b)` or `(a b)`), lower-cased.
fn header_flags(header: &str) -> Option<Vec<String>> {
    // The `flags` keyword, not the letters inside a name like `my-flags`: the one that
    // follows whitespace and that `=` and `(` follow.
    let inner = header.match_indices("flags").find_map(|(at, _)| {
        if !header[..at].ends_with(char::is_whitespace) {
            return None;
        }
        header[at + "flags".len()..]
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .strip_prefix('(')
    })?;
    let inner = &inner[..inner.find(')')?];
    Some(
        inner
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|f| !f.is_empty())
            .map(str::to_ascii_lowercase)
            .collect(),
    )
}

/// `#include <x>`, `include <x>`, `include if exists <x>`, or the quoted forms: the target.
fn include_target(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("#include").or_else(|| line.strip_prefix("include"))?;
    if !rest.starts_with(char::is_whitespace) && !rest.starts_with(['<', '"']) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("if exists").map(str::trim_start).unwrap_or(rest);
    Some(rest.trim_end().trim_end_matches(',').trim_end())
}

fn check_include(line: usize, target: &str, top_level: bool) -> Result<(), PolicyError> {
    let Some(path) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
        return Err(policy_err(
            line,
            format!("include {target}: only <...> includes from the AppArmor include directory are allowed"),
        ));
    };
    if path.starts_with('/') || path.split('/').any(|part| part == "..") || path.is_empty() {
        return Err(policy_err(
            line,
            format!("include <{path}>: the path must stay inside the include directory"),
        ));
    }
    if top_level && !path.starts_with("tunables/") {
        return Err(policy_err(
            line,
            format!(
                "include <{path}> outside the profile: only tunables/ may be included there, so no other profile is defined"
            ),
        ));
    }
    Ok(())
}

/// Follows block braces across lines, ignoring comments, quoted strings, variables
/// (`@{X}`) and glob alternations (`/{a,b}`): the one reading of where a block starts and
/// ends, for the checks and for the learning editor ([`policy_blocks`]).
#[derive(Default)]
struct Scanner {
    globs: usize,
    parens: usize,
    /// Text since the last top-level statement ended: the header of a block opened next.
    pending: String,
    pending_line: usize,
    /// Includes found inside a line (after a comma, or a `#include` where a comment would
    /// start): `(line, depth, the text from the include on)`.
    inline_includes: Vec<(usize, usize, String)>,
    /// Where the blocks still open start in the policy, the innermost last.
    open_blocks: Vec<usize>,
    /// The blocks closed so far, in the order they close.
    blocks: Vec<Block>,
}

impl Scanner {
    /// How many blocks are open.
    fn depth(&self) -> usize {
        self.open_blocks.len()
    }

    /// A comma outside blocks, globs and flag lists ends a top-level statement.
    fn ends_statement(&self) -> bool {
        self.depth() == 0 && self.globs == 0 && self.parens == 0
    }

    /// Whether every block opened was closed, or the error naming the last line.
    fn check_closed(&self, policy: &str) -> Result<(), PolicyError> {
        if self.depth() == 0 {
            return Ok(());
        }
        Err(policy_err(
            policy.lines().count().max(1),
            "unbalanced braces: a profile block is not closed",
        ))
    }

    /// Scans one line, which starts at byte `start` of the policy; returns the header of a
    /// top-level block it opens.
    fn feed_line(&mut self, line_no: usize, start: usize, line: &str) -> Result<Option<(usize, String)>, PolicyError> {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let mut opened = None;
        let mut in_quote = false;
        let mut i = 0;
        while i < chars.len() {
            let (at, c) = chars[i];
            let prev = if i == 0 { ' ' } else { chars[i - 1].1 };
            let next = chars.get(i + 1).map_or(' ', |&(_, c)| c);
            match c {
                '"' => in_quote = !in_quote,
                _ if in_quote => {}
                // The parser reads `#include` as an include wherever it stands.
                '#' => {
                    let rest = &line[at..];
                    if include_target(rest).is_some() {
                        self.inline_includes.push((line_no, self.depth(), rest.to_string()));
                    }
                    break;
                }
                '{' if (prev.is_whitespace() || prev == ')') && (next.is_whitespace() || next == '}') => {
                    if self.depth() == 0 {
                        let header = self.pending.trim().to_string();
                        if header.is_empty() {
                            return Err(policy_err(line_no, "a block opens without a profile name"));
                        }
                        opened = Some((self.pending_line, header));
                        self.pending.clear();
                    }
                    self.open_blocks.push(start + at);
                }
                '{' => self.globs += 1,
                '}' if self.globs > 0 => self.globs -= 1,
                '}' => {
                    let Some(open) = self.open_blocks.pop() else {
                        return Err(policy_err(line_no, "'}' closes a block that was never opened"));
                    };
                    self.blocks.push(Block {
                        open,
                        close: start + at,
                        depth: self.depth(),
                    });
                }
                '(' => self.parens += 1,
                ')' => self.parens = self.parens.saturating_sub(1),
                ',' => {
                    let rest = line[at + 1..].trim_start();
                    if include_target(rest).is_some() {
                        self.inline_includes.push((line_no, self.depth(), rest.to_string()));
                    }
                    if self.ends_statement() {
                        self.pending.clear();
                    }
                }
                _ => {}
            }
            if self.depth() == 0 && c != '}' && !(c == ',' && self.ends_statement()) {
                if self.pending.trim().is_empty() {
                    self.pending_line = line_no;
                }
                self.pending.push(c);
            }
            i += 1;
        }
        if in_quote {
            return Err(policy_err(line_no, "unterminated quoted string"));
        }
        if self.depth() == 0 && self.pending.trim_start().starts_with("@{") {
            self.pending.clear(); // a variable assignment ends at the end of its line
        }
        if self.depth() == 0 && !self.pending.is_empty() {
            self.pending.push(' ');
        }
        Ok(opened)
    }
}

/// A `{ ... }` block of a policy: where its braces stand (byte offsets into the policy) and
/// how many blocks enclose it (0: a top-level profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub open: usize,
    pub close: usize,
    pub depth: usize,
}

/// The blocks of a policy, in the order they open, found as [`check_policy`] finds them:
/// comments, quoted strings, variables (`@{X}`) and glob alternations (`/{a,b}`) skipped.
/// A block's brace stands apart (`profile p {`, `{}`); an alternation's touches its words.
pub(crate) fn policy_blocks(policy: &str) -> Result<Vec<Block>, PolicyError> {
    let mut scanner = Scanner::default();
    for (line_no, start, raw_line) in numbered_lines(policy) {
        if include_target(raw_line.trim()).is_none() {
            scanner.feed_line(line_no, start, raw_line)?;
        }
    }
    scanner.check_closed(policy)?;
    let mut blocks = scanner.blocks;
    blocks.sort_by_key(|b| b.open);
    Ok(blocks)
}

/// The lines of a policy as [`str::lines`] gives them, each with its number and the byte
/// offset where it starts.
fn numbered_lines(policy: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    policy
        .split_inclusive('\n')
        .scan(0, |start, piece| {
            let at = *start;
            *start += piece.len();
            Some((at, piece))
        })
        .enumerate()
        .map(|(idx, (at, piece))| {
            let line = piece
                .strip_suffix('\n')
                .map_or(piece, |l| l.strip_suffix('\r').unwrap_or(l));
            (idx + 1, at, line)
        })
}

/// Refuses an attachment on the top-level profile (`profile p /usr/bin/** {`, or an
/// `xattrs=` condition): the kernel would confine every matching program on the node, host
/// processes included, while Palisade's profiles are for the containers that name them.
fn check_no_attachment(line: usize, header: &str) -> Result<(), PolicyError> {
    let mut tokens = header.split_whitespace();
    if tokens.next() != Some("profile") {
        return Ok(()); // `name {`: the name is the only word before the flags
    }
    tokens.next(); // the name
    let Some(next) = tokens.next() else {
        return Ok(());
    };
    if next.starts_with("flags") || next.starts_with('(') {
        return Ok(());
    }
    let what = if next.starts_with("xattrs") {
        "an xattrs= attachment condition".to_string()
    } else {
        format!("the attachment {next}")
    };
    Err(policy_err(
        line,
        format!(
            "{what} would confine every matching program on each node, host processes included: remove it; pods choose the profile by name (securityContext.appArmorProfile), and child profiles may keep their attachments"
        ),
    ))
}

/// The profile name a top-level block header declares.
fn profile_name(line: usize, header: &str) -> Result<String, PolicyError> {
    let mut tokens = header.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    let raw = match first {
        "profile" => tokens
            .next()
            .ok_or_else(|| policy_err(line, "'profile' must be followed by a name"))?,
        "hat" => return Err(policy_err(line, "a hat must be inside its profile")),
        _ if first.starts_with('^') => {
            return Err(policy_err(line, "a hat must be inside its profile"));
        }
        _ => first,
    };
    let name = raw.trim_matches('"');
    if name.starts_with(':') {
        return Err(policy_err(
            line,
            format!("profile {name:?}: policy namespaces are not allowed"),
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn abstract_of(v: serde_json::Value) -> AppArmorAbstract {
        serde_json::from_value(v).unwrap()
    }

    fn example() -> AppArmorAbstract {
        abstract_of(json!({
            "executable": {"allowedExecutables": ["/usr/bin/nginx"], "allowedLibraries": ["/lib/x86_64-linux-gnu/**"]},
            "filesystem": {
                "readOnlyPaths": ["/etc/nginx/**"],
                "writeOnlyPaths": ["/var/log/nginx/*.log"],
                "readWritePaths": ["/srv/my data/{a,b}/**"],
                "denyPaths": ["/etc/shadow"],
            },
            "network": {"allowRaw": true, "allowedProtocols": {"allowTcp": true, "allowUdp": false}},
            "capability": {"allowedCapabilities": ["net_bind_service", "setuid"]},
        }))
    }

    #[test]
    fn renders_abstract_as_one_named_profile() {
        let text = render_abstract("web", &example(), AppArmorMode::Enforce).unwrap();
        let expected = "\
# Generated by Palisade from AppArmorProfile web. Do not edit.
abi <abi/3.0>,
include <tunables/global>

profile web flags=(attach_disconnected,mediate_deleted) {
  include <abstractions/base>
  \"/usr/bin/nginx\" ixr,
  \"/lib/x86_64-linux-gnu/**\" mr,
  \"/etc/nginx/**\" r,
  deny \"/etc/nginx/**\" wlk,
  \"/var/log/nginx/*.log\" wlk,
  deny \"/var/log/nginx/*.log\" r,
  \"/srv/my data/{a,b}/**\" rwlk,
  deny \"/etc/shadow\" rwlkmx,
  network raw,
  network tcp,
  capability net_bind_service,
  capability setuid,
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/mem rwklx,
  deny @{PROC}/kmem rwklx,
  deny @{PROC}/kcore rwklx,
  deny /sys/firmware/efi/efivars/** rwklx,
}
";
        assert_eq!(text, expected);
        check_policy("web", &text).expect("rendered text passes the raw-policy checks");
    }

    #[test]
    fn blocks_are_found_where_their_braces_stand() {
        let policy = "include <tunables/global>\r\nprofile p {\r\n  /{a,b} r,\r\n  ^hat {}\r\n}\r\n";
        let hat = policy.find("{}").unwrap();
        assert_eq!(
            policy_blocks(policy).unwrap(),
            [
                Block {
                    open: policy.find("{\r").unwrap(),
                    close: policy.rfind('}').unwrap(),
                    depth: 0
                },
                Block {
                    open: hat,
                    close: hat + 1,
                    depth: 1
                },
            ]
        );
    }

    #[test]
    fn a_mode_flag_that_contradicts_spec_mode_is_refused_naming_its_line() {
        let policy = "include <tunables/global>\n\nprofile p flags=(attach_disconnected, complain) {\n}\n";
        let err = check_mode_flags(policy, AppArmorMode::Enforce).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.policy line 3: flags=(complain) sets the profile's mode, which contradicts spec.mode Enforce: \
             remove the mode flag and set spec.mode (Enforce or Complain) instead"
        );
        check_mode_flags(policy, AppArmorMode::Complain).expect("an agreeing flag is fine");
        let kill = check_mode_flags("profile p flags=(kill) {\n}\n", AppArmorMode::Complain).unwrap_err();
        assert!(kill.to_string().contains("flags=(kill)"), "{kill}");
        // Child profiles' flags are the user's business; only the top-level block is checked.
        check_mode_flags(
            "profile p {\n  profile c flags=(complain) {\n  }\n}\n",
            AppArmorMode::Enforce,
        )
        .unwrap();
        check_mode_flags("profile p flags=(attach_disconnected) {\n}\n", AppArmorMode::Enforce).unwrap();
        // A name with "flags" in it is not the flags keyword.
        let named = check_mode_flags("profile my-flags flags=(complain) {\n}\n", AppArmorMode::Enforce).unwrap_err();
        assert!(named.to_string().contains("line 1: flags=(complain)"), "{named}");
    }

    #[test]
    fn an_attachment_on_the_top_level_profile_is_refused_naming_its_line() {
        let err = check_policy("p", "include <tunables/global>\nprofile p /usr/bin/** {\n}\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("spec.policy line 2: the attachment /usr/bin/** would confine every matching program"),
            "{text}"
        );
        assert!(text.contains("securityContext.appArmorProfile"), "{text}");
        let err = check_policy("p", "profile p xattrs=(security.tagged=allowed) {\n}\n").unwrap_err();
        assert!(err.to_string().contains("xattrs= attachment condition"), "{err}");
        // Flags after the name, and children with attachments, are fine.
        check_policy("p", "profile p flags=(attach_disconnected) {\n}\n").unwrap();
        check_policy("p", "profile p (attach_disconnected) {\n}\n").unwrap();
        check_policy("p", "p {\n}\n").unwrap();
        check_policy("p", "profile p {\n  profile c /usr/bin/helper {\n  }\n}\n").unwrap();
    }

    #[test]
    fn complain_mode_leaves_out_deny_rules() {
        let text = render_abstract("web", &example(), AppArmorMode::Complain).unwrap();
        assert!(!text.contains("deny"), "{text}");
        assert!(text.contains("\"/etc/nginx/**\" r,"));
    }

    #[test]
    fn network_and_sys_rawio_mean_what_they_mean_in_spo() {
        let abs = abstract_of(json!({"network": {"allowedProtocols": {"allowUdp": true}},
            "capability": {"allowedCapabilities": ["sys_rawio"]}}));
        let text = render_abstract("p", &abs, AppArmorMode::Enforce).unwrap();
        for rule in [
            "  deny network raw,\n",
            "  network udp,\n",
            "  capability sys_rawio,\n  /sbin/fsck ixr,\n  /sbin/fsck.ext4 ixr,\n  mount,\n  remount,\n  umount,\n",
        ] {
            assert!(text.contains(rule), "{rule:?} in {text}");
        }
        assert!(!text.contains("network tcp"), "{text}");
        let complain = render_abstract("p", &abs, AppArmorMode::Complain).unwrap();
        assert!(!complain.contains("deny"), "{complain}");
        // Without a network section, no network rule at all (as in SPO): abstractions/base
        // decides.
        let none = render_abstract("p", &abstract_of(json!({})), AppArmorMode::Enforce).unwrap();
        assert!(!none.contains("network"), "{none}");
        assert!(
            none.contains("deny @{PROC}/kcore rwklx,"),
            "the default denies in Enforce"
        );
    }

    #[test]
    fn a_path_cannot_break_out_of_its_rule() {
        for bad in [
            "/tmp/x\" rw,\n  /etc/shadow",
            "/a\n/b",
            "/a#b",
            "/a\\b",
            "relative/path",
        ] {
            let abs = abstract_of(json!({"filesystem": {"readOnlyPaths": ["/fine", bad]}}));
            let err = render_abstract("p", &abs, AppArmorMode::Enforce).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("spec.abstract.filesystem.readOnlyPaths[1]: "),
                "{bad:?}: {err}"
            );
        }
        // A comma is literal inside the quotes: one rule, one path.
        let abs = abstract_of(json!({"filesystem": {"readOnlyPaths": ["/tmp/x, /etc/shadow rw"]}}));
        let text = render_abstract("p", &abs, AppArmorMode::Enforce).unwrap();
        assert!(text.contains("  \"/tmp/x, /etc/shadow rw\" r,\n"), "{text}");
    }

    #[test]
    fn profile_text_needs_exactly_one_source() {
        let both: AppArmorProfileSpec =
            serde_json::from_value(json!({"policy": "profile p {}", "abstract": {}})).unwrap();
        assert_eq!(profile_text("p", &both).unwrap_err(), PolicyError::PolicyXorAbstract);
        let none: AppArmorProfileSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(profile_text("p", &none).unwrap_err(), PolicyError::PolicyXorAbstract);
        let raw: AppArmorProfileSpec = serde_json::from_value(json!({"policy": "profile p {\n}\n"})).unwrap();
        assert_eq!(profile_text("p", &raw).unwrap(), "profile p {\n}\n");
    }

    const GOOD: &str = r#"# Last Modified: by aa-logprof
abi <abi/3.0>,
#include <tunables/global>
@{APP_DIRS}={/opt/app,/srv/app}

profile my-app flags=(complain) {
  #include <abstractions/base>
  include if exists <local/my-app>
  @{APP_DIRS}/** r,
  /{usr/,}bin/* ix,   # a comment with { braces }
  "/path with space/{a,b}" rw,
  profile helper {
    /bin/true ix,
  }
  ^hat {
    /tmp/** rw,
  }
}
"#;

    #[test]
    fn accepts_a_policy_with_children_hats_variables_and_globs() {
        check_policy("my-app", GOOD).unwrap();
    }

    #[test]
    fn rejects_a_profile_named_otherwise() {
        let err = check_policy("other", GOOD).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.policy line 6: the profile is named \"my-app\"; it must be named \"other\", like the object"
        );
        let err = check_policy("p", "/usr/bin/foo {\n}\n").unwrap_err();
        assert!(err.to_string().contains("named \"/usr/bin/foo\""), "{err}");
    }

    #[test]
    fn accepts_empty_blocks_on_one_line() {
        check_policy("p", "profile p {}\n").unwrap();
        let err = check_policy("p", "profile p {}\nprofile q {}\n").unwrap_err();
        assert!(err.to_string().contains("(\"q\")"), "{err}");
    }

    #[test]
    fn rejects_a_second_top_level_profile() {
        let policy = "profile p {\n}\n\nprofile docker-default {\n  /** rw,\n}\n";
        let err = check_policy("p", policy).unwrap_err();
        assert_eq!(
            err,
            policy_err(
                4,
                "a second top-level profile (\"docker-default\"); a policy defines exactly one, named \"p\" (use child profiles for more)"
            )
        );
    }

    #[test]
    fn rejects_no_profile_and_unbalanced_braces() {
        for (policy, why) in [
            ("# nothing\n", "defines no profile"),
            ("profile p {\n  /a r,\n", "unbalanced"),
            ("profile p {\n}\n}\n", "line 3"),
            ("profile p {\n \"/a r,\n}\n", "line 2: unterminated"),
        ] {
            let err = check_policy("p", policy).unwrap_err().to_string();
            assert!(err.contains(why), "{policy:?}: {err}");
        }
    }

    #[test]
    fn rejects_includes_that_leave_the_include_directory() {
        for (line, why) in [
            ("#include \"/etc/shadow\"", "only <...> includes"),
            ("include </etc/passwd>", "must stay inside"),
            ("include <abstractions/../../../etc/shadow>", "must stay inside"),
            ("include if exists \"local/x\"", "only <...> includes"),
            // Where the parser still reads an include: after a comma, or a `#include` in
            // the middle of a line (which a comment scanner would skip).
            ("/x r, #include \"/etc/shadow\"", "only <...> includes"),
            ("/y r, include \"/etc/shadow\"", "only <...> includes"),
            ("/z r, #include if exists </etc/passwd>", "must stay inside"),
        ] {
            let policy = format!("profile p {{\n  {line}\n}}\n");
            let err = check_policy("p", &policy).unwrap_err();
            assert!(
                err.to_string().starts_with("spec.policy line 2: ") && err.to_string().contains(why),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn a_mid_line_include_at_the_top_is_a_top_level_include() {
        let err = check_policy("p", "abi <abi/3.0>, #include if exists <usr.bin.man>\nprofile p {\n}\n").unwrap_err();
        assert!(err.to_string().contains("outside the profile"), "{err}");
    }

    #[test]
    fn rejects_top_level_includes_that_could_define_profiles() {
        let err = check_policy("p", "include <usr.sbin.cupsd>\nprofile p {\n}\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.policy line 1: include <usr.sbin.cupsd> outside the profile"),
            "{err}"
        );
        check_policy(
            "p",
            "include <tunables/global>\nprofile p {\n  include <usr.sbin.cupsd>\n}\n",
        )
        .unwrap();
    }

    #[test]
    fn rejects_top_level_hats_and_namespaces() {
        assert!(
            check_policy("p", "^p {\n}\n")
                .unwrap_err()
                .to_string()
                .contains("hat must be inside")
        );
        assert!(
            check_policy("p", "hat p {\n}\n")
                .unwrap_err()
                .to_string()
                .contains("hat must be inside")
        );
        let err = check_policy(":ns:p", "profile :ns:p {\n}\n").unwrap_err();
        assert!(err.to_string().contains("namespaces are not allowed"), "{err}");
    }
}
