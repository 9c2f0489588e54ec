//! Applying suggestions to a profile (`kubectl palisade learn`): learned rules added to a
//! raw AppArmor policy or to the lists of a structured `abstract`, learned syscalls allowed
//! in a seccomp profile.

use std::collections::{BTreeMap, BTreeSet};

use super::grammar::file_perms;
use crate::apparmor::{AppArmorAbstract, AppArmorPath, Capability};
use crate::render::apparmor::{PolicyError, policy_blocks};
use crate::seccomp::{SeccompAction, SeccompProfileSpec, SeccompSyscall};

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
/// unchanged. Returns the new policy and the rules added, or why none can be: no profile
/// block, no block for a scope, or braces the policy checks refuse.
pub fn add_to_policy(policy: &str, rules: &[String], stamp: &str) -> Result<(String, Vec<String>), String> {
    let blocks = blocks(policy)?;
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

/// The policy's blocks in the order they open, found as the policy checks find them; a
/// policy whose braces they refuse is refused (naming the line).
fn blocks(policy: &str) -> Result<Vec<Block>, String> {
    let spans = policy_blocks(policy).map_err(|e| match e {
        PolicyError::Policy { line, message } => format!("line {line}: {message}"),
        other => other.to_string(),
    })?;
    Ok(spans
        .into_iter()
        .map(|b| {
            let line_start = policy[..b.open].rfind('\n').map(|j| j + 1).unwrap_or(0);
            Block {
                header: policy[line_start..b.open].trim().to_string(),
                open: b.open,
                close: b.close,
                depth: b.depth,
            }
        })
        .collect())
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
pub fn add_to_abstract(abs: &mut AppArmorAbstract, rules: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut added, mut unexpressed) = (Vec::new(), Vec::new());
    // Per path, the permissions learned and the rules that asked for them: the lists have
    // no `owner`, so a path's rules are one, whatever the owner.
    let mut files: BTreeMap<String, (BTreeSet<char>, Vec<String>)> = BTreeMap::new();
    for rule in combine(rules) {
        let outcome = if let Some(cap) = rule.strip_prefix("capability ").and_then(|r| r.strip_suffix(',')) {
            add_capability(abs, cap)
        } else if let Some(net) = rule.strip_prefix("network ").and_then(|r| r.strip_suffix(',')) {
            add_network(abs, net)
        } else if let Some((_, path, perms)) = file_rule(&rule) {
            let entry = files.entry(path.to_string()).or_default();
            entry.0.extend(perms.chars());
            entry.1.push(rule.clone());
            continue;
        } else {
            Outcome::Unexpressed
        };
        match outcome {
            Outcome::Added => added.push(rule),
            Outcome::Present => {}
            Outcome::Unexpressed => unexpressed.push(rule),
        }
    }
    for (path, (perms, rules)) in files {
        match add_path(abs, &path, &perms) {
            Outcome::Added => added.extend(rules),
            Outcome::Present => {}
            Outcome::Unexpressed => unexpressed.extend(rules),
        }
    }
    (added, unexpressed)
}

/// What became of a learned rule in an `abstract`'s lists.
enum Outcome {
    /// The lists grant it now; they did not before.
    Added,
    /// The lists granted it already.
    Present,
    /// The lists cannot express it.
    Unexpressed,
}

/// `capability <cap>,`: the capability in the allowed list.
fn add_capability(abs: &mut AppArmorAbstract, cap: &str) -> Outcome {
    let Ok(cap) = serde_json::from_value::<Capability>(serde_json::Value::String(cap.to_string())) else {
        return Outcome::Unexpressed;
    };
    let caps = abs.capability.get_or_insert_with(Default::default);
    if caps.allowed_capabilities.contains(&cap) {
        return Outcome::Present;
    }
    caps.allowed_capabilities.push(cap);
    Outcome::Added
}

/// `network <family> <type>,`: TCP, UDP or raw network; other families and types cannot
/// be expressed.
fn add_network(abs: &mut AppArmorAbstract, rule: &str) -> Outcome {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let net = abs.network.get_or_insert_with(Default::default);
    let protocols = net.allowed_protocols.get_or_insert_with(Default::default);
    let flag = match words.as_slice() {
        ["inet" | "inet6", "stream"] => &mut protocols.allow_tcp,
        ["inet" | "inet6", "dgram"] => &mut protocols.allow_udp,
        ["inet" | "inet6", "raw"] | ["packet", ..] => &mut net.allow_raw,
        _ => return Outcome::Unexpressed,
    };
    if *flag == Some(true) {
        return Outcome::Present;
    }
    *flag = Some(true);
    Outcome::Added
}

/// A path with the permissions its rules learned: executable or library, and the one
/// filesystem list that grants its reads and writes.
fn add_path(abs: &mut AppArmorAbstract, path: &str, perms: &BTreeSet<char>) -> Outcome {
    let has = |c: char| perms.contains(&c);
    // Quoted or escaped names cannot go into a list (Palisade quotes list paths itself).
    if path.starts_with('"') || path.contains('\\') || ((has('k') || has('l')) && !has('w')) {
        return Outcome::Unexpressed;
    }
    let path = AppArmorPath::from(path);
    let mut changed = false;
    if has('x') || has('m') {
        changed |= add_executable(abs, &path, has('x'));
    }
    let (read, write) = (has('r') && !has('x'), has('w') || has('a'));
    if read || write {
        changed |= add_file_access(abs, &path, read, write);
    }
    if changed { Outcome::Added } else { Outcome::Present }
}

/// The path in the executables (`exec`) or the libraries; whether it was not there.
fn add_executable(abs: &mut AppArmorAbstract, path: &AppArmorPath, exec: bool) -> bool {
    let exe = abs.executable.get_or_insert_with(Default::default);
    let list = if exec {
        &mut exe.allowed_executables
    } else {
        &mut exe.allowed_libraries
    };
    if list.contains(path) {
        return false;
    }
    list.push(path.clone());
    true
}

/// The path in the one filesystem list that grants what it granted already plus what was
/// learned (the read-only and write-only lists deny the other access in Enforce mode), and
/// in no other; whether that moved it.
fn add_file_access(abs: &mut AppArmorAbstract, path: &AppArmorPath, read: bool, write: bool) -> bool {
    let fs = abs.filesystem.get_or_insert_with(Default::default);
    let before = (
        fs.read_only_paths.contains(path),
        fs.write_only_paths.contains(path),
        fs.read_write_paths.contains(path),
    );
    let read = read || before.0 || before.2;
    let write = write || before.1 || before.2;
    let after = (read && !write, write && !read, read && write);
    if after == before {
        return false;
    }
    for list in [
        &mut fs.read_only_paths,
        &mut fs.write_only_paths,
        &mut fs.read_write_paths,
    ] {
        list.retain(|p| p != path);
    }
    let list = match after {
        (true, _, _) => &mut fs.read_only_paths,
        (_, true, _) => &mut fs.write_only_paths,
        _ => &mut fs.read_write_paths,
    };
    list.push(path.clone());
    true
}

/// Allows learned syscalls in a seccomp profile: one `SCMP_ACT_ALLOW` rule with every name
/// that no argument-free `SCMP_ACT_ALLOW` rule already lists. Returns the names added.
/// (A name a `SCMP_ACT_LOG` rule lists stays logged until [`enforce_seccomp`].)
pub fn add_to_seccomp(spec: &mut SeccompProfileSpec, names: &[String]) -> Vec<String> {
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
pub fn enforce_seccomp(spec: &mut SeccompProfileSpec) -> bool {
    let before = spec.syscalls.len();
    spec.syscalls.retain(|r| r.action != SeccompAction::Log);
    let default = spec.default_action == SeccompAction::Log;
    if default {
        spec.default_action = SeccompAction::Errno;
    }
    default || spec.syscalls.len() != before
}
