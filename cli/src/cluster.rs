//! The verbs that read the cluster: `status` and `explain`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use palisade_domain::render::{apparmor as aa_render, seccomp as sc_render};
use palisade_domain::{
    AppArmorProfile, Expectation, NodeCapabilities, NodeProfileState, NodeProfileStatus, ProfileKind, ProfileStatus,
    SeccompProfile, SeccompProfileSpec, Standing, judge, nodestatus::digest_key,
};
use serde::Serialize;

/// kubectl's connection flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Connection {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
}

impl Connection {
    pub async fn client(&self) -> Result<Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None => Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig")?,
        };
        Ok(Client::try_from(config)?)
    }
}

/// Which kind a verb is about (`--kind`), when a name exists in both.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Kind {
    Seccomp,
    Apparmor,
}

/// One profile at a glance.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRow {
    pub kind: ProfileKind,
    pub name: String,
    /// `True`, `False` or `Unknown`, with the reason.
    pub ready: String,
    pub reason: String,
    pub targeted: u32,
    pub installed: u32,
    pub pending: u32,
    pub failed: u32,
    pub unsupported: u32,
    /// The warning (seccomp: `SyscallsIgnored` / `DenyFailsOpen`; AppArmor:
    /// `RuleClassesLeftOut`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Each node's entry for the profile (every node for one profile; otherwise the nodes
    /// where it is not installed).
    pub nodes: Vec<NodeRow>,
}

/// A profile on one node.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    pub state: NodeProfileState,
    /// Whether the node holds the content the operator accepted.
    pub current: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// What the node can enforce, as its report says (kernel, runtime, AppArmor features and
    /// ABIs, parser, seccomp actions).
    pub capabilities: NodeCapabilities,
}

impl NodeRow {
    /// The node's essentials for a profile of `kind`, as the table shows them beside the
    /// node: kernel and runtime, and for AppArmor, where the node has it, the parser and the
    /// ABIs.
    pub fn essentials(&self, kind: ProfileKind) -> String {
        let c = &self.capabilities;
        let mut parts: Vec<String> = Vec::new();
        if let Some(k) = &c.kernel_version {
            parts.push(format!("kernel {k}"));
        }
        parts.extend(c.container_runtime.clone());
        if kind == ProfileKind::AppArmorProfile && c.apparmor {
            if let Some(v) = &c.apparmor_parser_version {
                parts.push(format!("apparmor_parser {v}"));
            }
            if !c.apparmor_abi.is_empty() {
                parts.push(format!("abi {}", c.apparmor_abi.join(" ")));
            }
        }
        parts.join(", ")
    }
}

fn row(kind: ProfileKind, name: &str, status: Option<&ProfileStatus>) -> ProfileRow {
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let warning = status
        .and_then(|s| {
            s.conditions.iter().find(|c| {
                [
                    palisade_domain::CONDITION_SYSCALLS_IGNORED,
                    palisade_domain::CONDITION_RULES_NOT_ENFORCED,
                ]
                .contains(&c.type_.as_str())
            })
        })
        .map(|c| c.reason.clone());
    let counts = status.and_then(|s| s.nodes).unwrap_or_default();
    ProfileRow {
        kind,
        name: name.to_string(),
        ready: ready.map_or("Unknown".into(), |c| c.status.clone()),
        reason: ready.map_or("NotReconciled".into(), |c| c.reason.clone()),
        targeted: counts.targeted,
        installed: counts.installed,
        pending: counts.pending,
        failed: counts.failed,
        unsupported: counts.unsupported,
        warning,
        nodes: vec![],
    }
}

/// The profiles, node reports and nodes, as listed from the API.
#[derive(Default)]
pub struct Listed {
    pub seccomp: Vec<SeccompProfile>,
    pub apparmor: Vec<AppArmorProfile>,
    pub reports: Vec<NodeProfileStatus>,
    pub nodes: Vec<Node>,
}

impl Listed {
    pub async fn fetch(client: &Client) -> Result<Self> {
        let all = Default::default();
        Ok(Self {
            seccomp: Api::<SeccompProfile>::all(client.clone()).list(&all).await?.items,
            apparmor: Api::<AppArmorProfile>::all(client.clone()).list(&all).await?.items,
            reports: Api::<NodeProfileStatus>::all(client.clone()).list(&all).await?.items,
            nodes: Api::<Node>::all(client.clone()).list(&all).await?.items,
        })
    }

    /// Where every profile stands on every node that reported ([`on_nodes`]).
    pub fn on_nodes(&self) -> BTreeMap<(String, ProfileKind, String), NodeRow> {
        on_nodes(&self.seccomp, &self.apparmor, &self.reports, &self.nodes)
    }
}

/// Profiles × nodes: every profile (or the one named) with its counts, and per node where it
/// stands (for all profiles: only the nodes where it is not installed, with the messages).
pub async fn status(client: Client, name: Option<&str>, kind: Option<Kind>) -> Result<Vec<ProfileRow>> {
    let listed = Listed::fetch(&client).await?;
    let (seccomp, apparmor) = (&listed.seccomp, &listed.apparmor);
    let mut rows = Vec::new();
    if kind != Some(Kind::Apparmor) {
        for p in seccomp.iter().filter(|p| name.is_none_or(|n| p.name_any() == n)) {
            rows.push(row(ProfileKind::SeccompProfile, &p.name_any(), p.status.as_ref()));
        }
    }
    if kind != Some(Kind::Seccomp) {
        for p in apparmor.iter().filter(|p| name.is_none_or(|n| p.name_any() == n)) {
            rows.push(row(ProfileKind::AppArmorProfile, &p.name_any(), p.status.as_ref()));
        }
    }
    if let Some(name) = name
        && rows.is_empty()
    {
        bail!("no AppArmorProfile or SeccompProfile named {name:?}");
    }
    let one = name.is_some();
    for ((_, kind, profile), on) in listed.on_nodes() {
        let Some(row) = rows.iter_mut().find(|r| r.kind == kind && r.name == profile) else {
            continue;
        };
        if one || on.state != NodeProfileState::Installed || !on.current {
            row.nodes.push(on);
        }
    }
    for r in &mut rows {
        r.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    }
    rows.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(rows)
}

/// Where every profile stands on every node that reported, keyed by (node, kind, name):
/// the profiles targeting each node, judged from its report (installed, listed with a state
/// and message, unsupported, or pending while its report has not caught up).
pub fn on_nodes(
    seccomp: &[SeccompProfile],
    apparmor: &[AppArmorProfile],
    reports: &[NodeProfileStatus],
    nodes: &[Node],
) -> BTreeMap<(String, ProfileKind, String), NodeRow> {
    let expected: Vec<Expectation<'_>> = seccomp
        .iter()
        .map(Expectation::of)
        .chain(apparmor.iter().map(Expectation::of))
        .collect();
    let accepted: HashMap<(ProfileKind, &str), u64> = expected
        .iter()
        .filter_map(|e| Some(((e.kind, e.name), digest_key(e.accepted?))))
        .collect();
    let uids: HashMap<(ProfileKind, &str), &str> = expected.iter().map(|e| ((e.kind, e.name), e.uid)).collect();
    let labels: HashMap<String, BTreeMap<String, String>> =
        nodes.iter().map(|n| (n.name_any(), n.labels().clone())).collect();
    let mut out = BTreeMap::new();
    for report in reports {
        let node = report.name_any();
        let Some(status) = &report.status else { continue };
        let none = BTreeMap::new();
        for (kind, name, standing) in judge(status, labels.get(&node).unwrap_or(&none), &expected) {
            let (state, current, message) = match standing {
                Standing::Installed => {
                    // What this node's kernel leaves out of the accepted content, if anything.
                    let left_out = status
                        .partial
                        .iter()
                        .find(|p| {
                            p.kind == kind
                                && p.name == name
                                && uids.get(&(kind, name.as_str())) == Some(&p.uid.as_str())
                                && accepted.get(&(kind, name.as_str())) == Some(&digest_key(&p.digest))
                        })
                        .map(|p| {
                            let classes: Vec<&str> = p
                                .not_enforced
                                .iter()
                                .map(String::as_str)
                                .filter(|c| palisade_domain::nodestatus::is_rule_class(c))
                                .collect();
                            format!("rule classes left out on this node: {}", classes.join(", "))
                        });
                    (NodeProfileState::Installed, true, left_out.unwrap_or_default())
                }
                Standing::Listed(e) => (
                    e.state,
                    accepted.get(&(kind, name.as_str())) == Some(&digest_key(&e.digest)),
                    e.message.clone(),
                ),
                Standing::Unsupported => (
                    NodeProfileState::Unsupported,
                    true,
                    match kind {
                        ProfileKind::AppArmorProfile => status.capabilities.apparmor_reason.clone(),
                        ProfileKind::SeccompProfile => status.capabilities.seccomp_reason.clone(),
                    }
                    .unwrap_or_default(),
                ),
                Standing::Unverified => (
                    NodeProfileState::Pending,
                    false,
                    "the node's report has not caught up with the accepted content yet".into(),
                ),
            };
            let row = NodeRow {
                node: node.clone(),
                state,
                current,
                message,
                capabilities: status.capabilities.clone(),
            };
            out.insert((node.clone(), kind, name), row);
        }
    }
    out
}

/// `status` as a table.
pub fn status_table(rows: &[ProfileRow], colour: bool) -> String {
    let mut table = crate::table::new(
        &[
            "KIND",
            "NAME",
            "READY",
            "REASON",
            "INSTALLED",
            "PENDING",
            "FAILED",
            "UNSUPPORTED",
            "WARNING",
        ],
        colour,
    );
    for r in rows {
        let paint = (r.ready != "True").then_some(comfy_table::Color::DarkRed);
        let kind = r.kind.slug();
        table.add_row(
            [
                kind,
                &r.name,
                &r.ready,
                &r.reason,
                &format!("{}/{}", r.installed, r.targeted),
                &r.pending.to_string(),
                &r.failed.to_string(),
                &r.unsupported.to_string(),
                r.warning.as_deref().unwrap_or_default(),
            ]
            .map(|text| crate::table::cell(text, paint)),
        );
    }
    let mut out = String::new();
    for (i, line) in crate::table::lines(&table).enumerate() {
        out.push_str(&line);
        out.push('\n');
        if i == 0 {
            continue;
        }
        for n in &rows[i - 1].nodes {
            let state = format!("{:?}", n.state);
            let stale = if n.current || n.state != NodeProfileState::Installed {
                ""
            } else {
                " (not the accepted content)"
            };
            let message = if n.message.is_empty() {
                String::new()
            } else {
                format!(": {}", n.message)
            };
            let essentials = match n.essentials(rows[i - 1].kind) {
                e if e.is_empty() => e,
                e => format!(" [{e}]"),
            };
            out.push_str(&format!("  {} {state}{stale}{essentials}{message}\n", n.node));
        }
    }
    out
}

/// One rule of a profile's effective seccomp filter and where it came from.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExplainedRule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `spec.syscalls[i]`, or `spec.syscalls[i] of base SeccompProfile "x"`.
    pub from: String,
}

/// What a profile enforces after inheritance, as the nodes get it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Explained {
    pub kind: ProfileKind,
    pub name: String,
    /// Seccomp: the default action (and errno); AppArmor: the mode.
    pub default: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ExplainedRule>,
    /// AppArmor: the policy text loaded into the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The digest of this rendering, and whether it is the content the operator accepted.
    pub digest: String,
    pub accepted: bool,
}

/// The effective rules of a SeccompProfile (inheritance resolved, each rule's origin), or
/// the policy text of an AppArmorProfile.
pub async fn explain(client: Client, name: &str, kind: Option<Kind>) -> Result<Explained> {
    if kind != Some(Kind::Apparmor) {
        let all = Api::<SeccompProfile>::all(client.clone())
            .list(&Default::default())
            .await?;
        let specs: BTreeMap<String, SeccompProfileSpec> =
            all.items.iter().map(|p| (p.name_any(), p.spec.clone())).collect();
        if let Some(profile) = all.items.iter().find(|p| p.name_any() == name) {
            let rendered =
                sc_render::render(name, &profile.spec, |n| specs.get(n)).map_err(|e| anyhow::anyhow!("{e}"))?;
            let accepted = profile.status.as_ref().and_then(|s| s.accepted.as_ref());
            let default = match rendered.oci.default_errno_ret {
                Some(errno) => format!(
                    "{} (errno {errno})",
                    palisade_domain::wire_name(rendered.oci.default_action)
                ),
                None => palisade_domain::wire_name(rendered.oci.default_action),
            };
            let rules = rendered
                .oci
                .syscalls
                .iter()
                .zip(&rendered.origins)
                .map(|(r, origin)| ExplainedRule {
                    names: r.names.clone(),
                    action: palisade_domain::wire_name(r.action),
                    errno_ret: r.errno_ret,
                    args: r
                        .args
                        .iter()
                        .map(|a| {
                            format!(
                                "arg{} {} {}{}",
                                a.index,
                                palisade_domain::wire_name(a.op),
                                a.value,
                                if a.value_two != 0 {
                                    format!(" {}", a.value_two)
                                } else {
                                    String::new()
                                }
                            )
                        })
                        .collect(),
                    from: origin.field(),
                })
                .collect();
            return Ok(Explained {
                kind: ProfileKind::SeccompProfile,
                name: name.to_string(),
                default,
                architectures: rendered
                    .oci
                    .architectures
                    .iter()
                    .map(|a| palisade_domain::wire_name(*a))
                    .collect(),
                bases: rendered.bases.clone(),
                rules,
                policy: None,
                accepted: accepted.is_some_and(|a| a.digest == rendered.digest),
                digest: rendered.digest,
            });
        }
    }
    if kind != Some(Kind::Seccomp)
        && let Some(profile) = Api::<AppArmorProfile>::all(client).get_opt(name).await?
    {
        let rendered = aa_render::render(name, &profile.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let accepted = profile.status.as_ref().and_then(|s| s.accepted.as_ref());
        return Ok(Explained {
            kind: ProfileKind::AppArmorProfile,
            name: name.to_string(),
            default: format!("{:?}", rendered.mode),
            architectures: vec![],
            bases: vec![],
            rules: vec![],
            policy: Some(rendered.text.clone()),
            accepted: accepted.is_some_and(|a| a.digest == rendered.digest),
            digest: rendered.digest,
        });
    }
    bail!("no SeccompProfile or AppArmorProfile named {name:?}")
}

/// `explain` as text.
pub fn explain_text(e: &Explained) -> String {
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", e.kind.name(), e.name));
    let accepted = if e.accepted {
        "the content the operator accepted"
    } else {
        "NOT the content the operator accepted (nodes keep the accepted one)"
    };
    out.push_str(&format!(
        "content: {} ({accepted})\n",
        &e.digest[..12.min(e.digest.len())]
    ));
    match e.kind {
        ProfileKind::SeccompProfile => {
            out.push_str(&format!("default: {}\n", e.default));
            if !e.architectures.is_empty() {
                out.push_str(&format!("architectures: {}\n", e.architectures.join(", ")));
            }
            if !e.bases.is_empty() {
                out.push_str(&format!("inherits: {}\n", e.bases.join(" -> ")));
            }
            out.push_str("rules (after inheritance):\n");
            for r in &e.rules {
                let errno = r.errno_ret.map(|n| format!(" errno {n}")).unwrap_or_default();
                let args = if r.args.is_empty() {
                    String::new()
                } else {
                    format!(" if {}", r.args.join(" and "))
                };
                out.push_str(&format!(
                    "  {}{errno}{args}: {}\n    from {}\n",
                    r.action,
                    r.names.join(", "),
                    r.from
                ));
            }
        }
        ProfileKind::AppArmorProfile => {
            out.push_str(&format!("mode: {}\n\n", e.default));
            out.push_str(e.policy.as_deref().unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<ProfileRow> {
        let mut rows = [
            (
                ProfileKind::AppArmorProfile,
                "cli-aa",
                "True",
                "Installed",
                [3, 2, 0, 0, 1],
            ),
            (
                ProfileKind::SeccompProfile,
                "cli-child",
                "False",
                "Pending",
                [3, 1, 2, 0, 0],
            ),
        ]
        .map(|(kind, name, ready, reason, counts)| ProfileRow {
            kind,
            name: name.into(),
            ready: ready.into(),
            reason: reason.into(),
            targeted: counts[0],
            installed: counts[1],
            pending: counts[2],
            failed: counts[3],
            unsupported: counts[4],
            warning: None,
            nodes: vec![],
        });
        rows[0].nodes.push(NodeRow {
            node: "node-2".into(),
            state: NodeProfileState::Unsupported,
            current: false,
            message: "AppArmor is not enabled on this node".into(),
            capabilities: NodeCapabilities {
                kernel_version: Some("7.2.13-amd64".into()),
                container_runtime: Some("containerd://2.1.9".into()),
                apparmor_abi: vec!["4.0".into()],
                seccomp_actions: vec!["log".into()],
                ..Default::default()
            },
        });
        let bookworm = NodeCapabilities {
            apparmor: true,
            kernel_version: Some("6.1.0-28-amd64".into()),
            container_runtime: Some("containerd://1.6.20".into()),
            apparmor_parser_version: Some("3.0.8".into()),
            apparmor_abi: vec!["3.0".into(), "kernel-5.4-vanilla".into()],
            ..Default::default()
        };
        rows[1].nodes.push(NodeRow {
            node: "node-0".into(),
            state: NodeProfileState::Pending,
            current: false,
            message: String::new(),
            capabilities: bookworm.clone(),
        });
        rows[1].nodes.push(NodeRow {
            node: "node-1".into(),
            state: NodeProfileState::Pending,
            current: false,
            message: String::new(),
            capabilities: NodeCapabilities::default(),
        });
        rows[0].nodes.push(NodeRow {
            node: "node-0".into(),
            state: NodeProfileState::Installed,
            current: true,
            message: String::new(),
            capabilities: bookworm,
        });
        rows[1].warning = Some("SyscallsIgnored: x".into());
        rows.into()
    }

    #[test]
    fn the_status_table_lines_up_its_columns_with_each_nodes_line_under_its_profile() {
        assert_eq!(
            status_table(&rows(), false),
            "\
KIND      NAME       READY  REASON     INSTALLED  PENDING  FAILED  UNSUPPORTED  WARNING
apparmor  cli-aa     True   Installed  2/3        0        0       1
  node-2 Unsupported [kernel 7.2.13-amd64, containerd://2.1.9]: AppArmor is not enabled on this node
  node-0 Installed [kernel 6.1.0-28-amd64, containerd://1.6.20, apparmor_parser 3.0.8, abi 3.0 kernel-5.4-vanilla]
seccomp   cli-child  False  Pending    1/3        2        0       0            SyscallsIgnored: x
  node-0 Pending [kernel 6.1.0-28-amd64, containerd://1.6.20]
  node-1 Pending
"
        );
    }

    #[test]
    fn the_status_table_paints_only_profiles_that_are_not_ready() {
        let painted = status_table(&rows(), true);
        let lines: Vec<&str> = painted.lines().collect();
        assert!(lines[..4].iter().all(|l| !l.contains('\x1b')), "{painted:?}");
        assert!(lines[4].starts_with('\x1b'), "{painted:?}");
        assert_eq!(strip_ansi(&painted), status_table(&rows(), false));
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| *c == 'm');
            } else {
                out.push(c);
            }
        }
        out
    }
}
