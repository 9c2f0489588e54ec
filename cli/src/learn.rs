//! `palisade learn`: what the nodes learned for a profile, as a diff against its policy;
//! `--apply` writes the rules into the profile, `--enforce` also leaves learning mode.

use anyhow::{Context as _, Result, bail};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use palisade_domain::learn::{self, Learning, Suggestion};
use palisade_domain::{AppArmorMode, AppArmorProfile, ProfileKind, SeccompProfile};
use serde::Serialize;
use serde_json::json;

use crate::cluster::Kind;

/// What `learn` found and did.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    pub kind: ProfileKind,
    pub name: String,
    /// `Complain`/`Enforce` for AppArmor; the default action for seccomp.
    pub mode: String,
    pub learning: Option<Learning>,
    /// The rules the profile lacks (AppArmor: combined per path), in the order written.
    pub missing: Vec<String>,
    /// Learned rules a structured (`abstract`) AppArmor profile cannot express.
    pub unexpressed: Vec<String>,
    /// The profile's text before and after (raw AppArmor policy; seccomp rules as JSON;
    /// the `abstract` as YAML).
    pub before: String,
    pub after: String,
    /// Whether the profile was changed.
    pub applied: bool,
    pub enforced: bool,
}

/// Finds the profile, computes what learning adds, and applies it when asked. The write
/// is conditional on the profile being as read; when it changed in between (the operator
/// writes its status often while nodes learn), it is read and computed again.
pub async fn learn(client: Client, name: &str, kind: Option<Kind>, apply: bool, enforce: bool) -> Result<Learned> {
    let mut attempt = 1;
    loop {
        match learn_once(client.clone(), name, kind, apply, enforce).await {
            Err(e) if attempt < 5 && is_conflict(&e) => attempt += 1,
            done => return done,
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409)
}

async fn learn_once(client: Client, name: &str, kind: Option<Kind>, apply: bool, enforce: bool) -> Result<Learned> {
    let aa: Api<AppArmorProfile> = Api::all(client.clone());
    let sc: Api<SeccompProfile> = Api::all(client.clone());
    let (a, s) = match kind {
        Some(Kind::Apparmor) => (aa.get_opt(name).await?, None),
        Some(Kind::Seccomp) => (None, sc.get_opt(name).await?),
        None => (aa.get_opt(name).await?, sc.get_opt(name).await?),
    };
    let stamp = k8s_openapi::jiff::Timestamp::now().to_string()[..10].to_string();
    match (a, s) {
        (Some(_), Some(_)) => {
            bail!("both an AppArmorProfile and a SeccompProfile are named {name}: say which with --kind")
        }
        (None, None) => bail!("no AppArmorProfile or SeccompProfile named {name}"),
        (Some(p), None) => apparmor(&aa, p, &stamp, apply, enforce).await,
        (None, Some(p)) => seccomp(&sc, p, apply, enforce).await,
    }
}

/// The suggestions to write: only rules of learning's own grammar (the operator already
/// leaves others out; a status is text anyone with write access to it could have set).
fn rules_of(learning: Option<&Learning>, kind: palisade_domain::ProfileKind) -> Vec<String> {
    learning
        .map(|l| {
            l.suggestions
                .iter()
                .filter(|s| learn::is_learnable_rule(kind, &s.rule))
                .map(|s| s.rule.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn apparmor(
    api: &Api<AppArmorProfile>,
    p: AppArmorProfile,
    stamp: &str,
    apply: bool,
    enforce: bool,
) -> Result<Learned> {
    let name = p.name_any();
    let learning = p.status.as_ref().and_then(|s| s.learning.clone());
    let rules = learn::combine(&rules_of(
        learning.as_ref(),
        palisade_domain::ProfileKind::AppArmorProfile,
    ));
    let mut spec = serde_json::Map::new();
    let (before, after, missing, unexpressed) = if let Some(policy) = &p.spec.policy {
        let (after, missing) =
            learn::add_to_policy(policy, &rules, stamp).map_err(|e| anyhow::anyhow!("spec.policy: {e}"))?;
        if after != *policy {
            spec.insert("policy".into(), json!(after));
        }
        (policy.clone(), after, missing, vec![])
    } else {
        let current = p.spec.abstract_.clone().unwrap_or_default();
        let mut new = current.clone();
        let (missing, unexpressed) = learn::add_to_abstract(&mut new, &rules);
        if new != current {
            spec.insert("abstract".into(), serde_json::to_value(&new)?);
        }
        (
            yaml_serde::to_string(&current)?,
            yaml_serde::to_string(&new)?,
            missing,
            unexpressed,
        )
    };
    let to_enforce = enforce && p.spec.mode != AppArmorMode::Enforce;
    if to_enforce {
        spec.insert("mode".into(), json!("Enforce"));
    }
    let applied = apply && !spec.is_empty();
    if applied {
        patch(api, &p, spec).await?;
    }
    Ok(Learned {
        kind: ProfileKind::AppArmorProfile,
        mode: if applied && to_enforce {
            "Enforce"
        } else {
            mode_name(p.spec.mode)
        }
        .to_string(),
        name,
        learning,
        missing,
        unexpressed,
        before,
        after,
        applied,
        enforced: applied && to_enforce,
    })
}

fn mode_name(m: AppArmorMode) -> &'static str {
    match m {
        AppArmorMode::Enforce => "Enforce",
        AppArmorMode::Complain => "Complain",
    }
}

async fn seccomp(api: &Api<SeccompProfile>, p: SeccompProfile, apply: bool, enforce: bool) -> Result<Learned> {
    let name = p.name_any();
    let learning = p.status.as_ref().and_then(|s| s.learning.clone());
    let mut new = p.spec.clone();
    let missing = learn::add_to_seccomp(
        &mut new,
        &rules_of(learning.as_ref(), palisade_domain::ProfileKind::SeccompProfile),
    );
    // Enforcing: what the filter logged by default it now refuses (EPERM unless
    // defaultErrnoRet says otherwise), and its LOG rules go.
    let to_enforce = enforce && learn::enforce_seccomp(&mut new);
    let mut spec = serde_json::Map::new();
    if new.syscalls != p.spec.syscalls {
        spec.insert("syscalls".into(), serde_json::to_value(&new.syscalls)?);
    }
    if new.default_action != p.spec.default_action {
        spec.insert("defaultAction".into(), serde_json::to_value(new.default_action)?);
    }
    let applied = apply && !spec.is_empty();
    if applied {
        patch(api, &p, spec).await?;
    }
    let text = |s: &palisade_domain::SeccompProfileSpec| -> Result<String> {
        Ok(format!(
            "defaultAction: {}\n{}",
            palisade_domain::wire_name(s.default_action),
            yaml_serde::to_string(&json!({"syscalls": s.syscalls}))?
        ))
    };
    Ok(Learned {
        kind: ProfileKind::SeccompProfile,
        mode: palisade_domain::wire_name(if applied {
            new.default_action
        } else {
            p.spec.default_action
        }),
        name,
        learning,
        before: text(&p.spec)?,
        after: text(&new)?,
        missing,
        unexpressed: vec![],
        applied,
        enforced: applied && to_enforce,
    })
}

/// A merge patch of `spec`, refused if the profile changed since it was read.
async fn patch<K>(api: &Api<K>, p: &K, spec: serde_json::Map<String, serde_json::Value>) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = json!({"metadata": {"resourceVersion": p.resource_version()}, "spec": spec});
    api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(body))
        .await
        .with_context(|| format!("updating {} {}", K::kind(&()), p.name_any()))?;
    Ok(())
}

fn ago(s: &Suggestion) -> String {
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - s.last_seen.0.as_second()).max(0);
    age(secs)
}

/// `42s`, `5m`, `3h`, `2d`, as kubectl prints ages.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The report: what was learned, then the change as a diff.
/// The report for a terminal: [`report`] with every control character escaped (rules, node
/// names and policy text come from the API and may hold anything).
pub fn text(l: &Learned) -> String {
    report(l)
        .lines()
        .map(learn::printable)
        .map(|line| line + "\n")
        .collect()
}

fn report(l: &Learned) -> String {
    let mut out = String::new();
    let kind = l.kind.name();
    let Some(learning) = &l.learning else {
        out.push_str(&format!(
            "{kind} {} ({}): nothing learned. {}\n",
            l.name,
            l.mode,
            match l.kind {
                ProfileKind::AppArmorProfile => "Nodes learn while the profile is in Complain mode and its pods run.",
                ProfileKind::SeccompProfile =>
                    "Nodes learn while the profile's filter logs (SCMP_ACT_LOG) and its pods run.",
            }
        ));
        if l.enforced {
            out.push_str(&format!("Switched to {}.\n", l.mode));
        }
        return out;
    };
    let quiet = learning
        .last_new_at
        .as_ref()
        .map(|t| {
            let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()).max(0);
            format!(", the last new one {} ago", age(secs))
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "{kind} {} ({}): {} new permission(s) seen on {} node(s){quiet}\n\n",
        l.name, l.mode, learning.new_permissions, learning.nodes
    ));
    let mut table = crate::table::new(&["RULE", "COUNT", "LAST", "NODES"], false);
    crate::table::widen(&mut table, 1, 6, true);
    crate::table::widen(&mut table, 2, 8, false);
    for s in &learning.suggestions {
        let more = s.node_count as usize - s.nodes.len().min(s.node_count as usize);
        let nodes = s.nodes.join(",") + &if more > 0 { format!(" +{more}") } else { String::new() };
        table.add_row([s.rule.as_str(), &s.count.to_string(), &ago(s), &nodes].map(|t| crate::table::cell(t, None)));
    }
    for line in crate::table::lines(&table) {
        out.push_str(&line);
        out.push('\n');
    }
    if learning.omitted_suggestions > 0 {
        out.push_str(&format!("({} more left out)\n", learning.omitted_suggestions));
    }
    out.push('\n');
    if l.missing.is_empty() {
        out.push_str("The profile already has every learned rule.\n");
    } else {
        out.push_str(&diff(&l.before, &l.after));
    }
    for r in &l.unexpressed {
        out.push_str(&format!(
            "warning: `{r}` cannot be written into spec.abstract; a raw spec.policy can have it\n"
        ));
    }
    match (l.applied, l.enforced) {
        (true, true) => out.push_str(&format!("\nApplied, and switched to {}.\n", l.mode)),
        (true, false) => out.push_str("\nApplied.\n"),
        (false, _) if !l.missing.is_empty() => {
            out.push_str("\nNothing changed: --apply writes these rules, --apply --enforce also enforces.\n")
        }
        _ => {}
    }
    out
}

/// The whole text with each line marked: unchanged `  `, removed `- `, added `+ `. Myers'
/// diff (`similar`): time grows with the size times the number of changes, memory with the
/// size, and past a second the diff is still correct, only perhaps not the shortest.
fn diff(before: &str, after: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let lines = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(1))
        .diff_slices(&a, &b);
    let mut out = String::from("--- current\n+++ with the learned rules\n");
    for change in lines.iter_all_changes() {
        let mark = match change.tag() {
            similar::ChangeTag::Equal => ' ',
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        out.push_str(&format!("{mark} {}\n", change.value()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_diff_marks_inserted_lines() {
        let d = super::diff(
            "profile p {\n  /a r,\n}\n",
            "profile p {\n  /a r,\n  # learned\n  /b w,\n}\n",
        );
        assert_eq!(
            d,
            "--- current\n+++ with the learned rules\n  profile p {\n    /a r,\n+   # learned\n+   /b w,\n  }\n"
        );
        let d = super::diff(
            "defaultAction: SCMP_ACT_LOG\nx\n",
            "defaultAction: SCMP_ACT_ERRNO\nx\ny\n",
        );
        assert_eq!(
            d,
            "--- current\n+++ with the learned rules\n- defaultAction: SCMP_ACT_LOG\n+ defaultAction: SCMP_ACT_ERRNO\n  x\n+ y\n"
        );
    }

    #[test]
    fn the_learned_rules_table_lines_up_its_columns() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let three_days_ago =
            Time(k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(73));
        let suggestion = |rule: &str, count, nodes: &[&str], node_count| super::Suggestion {
            rule: rule.into(),
            count,
            first_seen: three_days_ago.clone(),
            last_seen: three_days_ago.clone(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            node_count,
        };
        let learned = super::Learned {
            kind: super::ProfileKind::AppArmorProfile,
            name: "rn-learn".into(),
            mode: "Complain".into(),
            learning: Some(super::Learning {
                new_permissions: 2,
                last_new_at: None,
                nodes: 7,
                suggestions: vec![
                    suggestion("capability chown,", 1, &["node-1"], 1),
                    suggestion("owner /tmp/app.pid w,", 12345, &["node-1", "node-2"], 7),
                ],
                omitted_suggestions: 0,
            }),
            missing: vec![],
            unexpressed: vec![],
            before: String::new(),
            after: String::new(),
            applied: false,
            enforced: false,
        };
        assert_eq!(
            super::text(&learned),
            "\
AppArmorProfile rn-learn (Complain): 2 new permission(s) seen on 7 node(s)

RULE                    COUNT  LAST      NODES
capability chown,           1  3d        node-1
owner /tmp/app.pid w,   12345  3d        node-1,node-2 +5

The profile already has every learned rule.
"
        );
    }

    /// A policy at the size limit (256 KiB) with a few lines changed: a table of every line
    /// against every line would take hundreds of MB here; the diff takes the size of the texts.
    #[test]
    fn the_diff_of_large_texts_with_few_changes_is_exact() {
        let line = |i: usize| format!("  owner /var/lib/app/data/{i:06}/** rw,");
        let before: Vec<String> = (0..8_000).map(line).collect();
        assert!(before.join("\n").len() >= 256 * 1024);
        let mut after = before.clone();
        after[10] = "  # learned".into();
        after.insert(4_000, "  capability chown,".into());
        after.remove(7_000);
        let d = super::diff(&(before.join("\n") + "\n"), &(after.join("\n") + "\n"));
        let changed: Vec<&str> = d.lines().skip(2).filter(|l| !l.starts_with("  ")).collect();
        assert_eq!(
            changed,
            [
                format!("- {}", line(10)),
                "+   # learned".into(),
                "+   capability chown,".into(),
                format!("- {}", line(6_999)),
            ]
        );
        assert_eq!(d.lines().count(), 2 + 8_000 + 2);
    }
}
