//! `palisade audit`: the cluster's confinement posture, as a list of findings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Pod, SecurityContext};
use kube::{Api, Client, ResourceExt};
use palisade_domain::{NodeProfileState, ProfileKind, ProfileStatus, SeccompProfile};
use serde::Serialize;

use palisade_domain::pods::{Effective, effective_apparmor, effective_seccomp};

use crate::cluster::Listed;

/// How much a finding matters; `--fail-on` compares with it.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// One thing an admin should look at.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub severity: Severity,
    /// `pod ns/name (container c)`, `node n`, `SeccompProfile p`, ...
    pub object: String,
    pub finding: String,
}

struct Known {
    /// SeccompProfile `status.localhostProfile` → (name, status).
    seccomp: HashMap<String, (String, Option<ProfileStatus>)>,
    /// Subdirectories Palisade's seccomp profiles live in (`palisade`, or `operator`).
    seccomp_dirs: BTreeSet<String>,
    apparmor: HashMap<String, Option<ProfileStatus>>,
    /// (node, kind, name) → where the profile stands there.
    on_nodes: BTreeMap<(String, ProfileKind, String), crate::cluster::NodeRow>,
}

impl Known {
    /// Why the profile cannot confine a pod on `node`, if it cannot.
    fn problem(
        &self,
        kind: ProfileKind,
        name: &str,
        status: Option<&ProfileStatus>,
        node: Option<&str>,
    ) -> Option<(Severity, String)> {
        if status.and_then(|s| s.accepted.as_ref()).is_none() {
            let why = status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"))
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "not validated yet".into());
            return Some((Severity::High, format!("was never accepted: {why}")));
        }
        let node = node?;
        match self.on_nodes.get(&(node.to_string(), kind, name.to_string())) {
            Some(on) if on.state == NodeProfileState::Installed && on.current => None,
            Some(on) => Some((
                Severity::Medium,
                format!("is not installed on its node {node} ({:?})", on.state),
            )),
            None => Some((Severity::Medium, format!("is not reported on its node {node}"))),
        }
    }
}

/// A pod of Palisade's agent DaemonSet (the chart's labels).
fn is_palisade_agent(pod: &Pod) -> bool {
    let labels = pod.labels();
    labels.get("app.kubernetes.io/name").is_some_and(|n| n == "palisade")
        && labels.get("app.kubernetes.io/component").is_some_and(|c| c == "agent")
}

/// What an audit reads from the API: the pods (of a namespace, or all), and the profiles,
/// reports and nodes.
pub struct Cluster {
    pub pods: Vec<Pod>,
    pub listed: Listed,
}

/// Audits pods (in `namespace`, or all), profiles and nodes.
pub async fn audit(client: Client, namespace: Option<&str>) -> Result<Vec<Finding>> {
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster = Cluster {
        pods: pods.list(&Default::default()).await?.items,
        listed: Listed::fetch(&client).await?,
    };
    Ok(findings(&cluster, namespace))
}

/// The findings of an audit, most severe first.
pub fn findings(cluster: &Cluster, namespace: Option<&str>) -> Vec<Finding> {
    let known = Known::of(cluster);
    let mut findings = node_findings(cluster, namespace);
    let mut used = BTreeSet::new();
    for pod in &cluster.pods {
        findings.extend(pod_findings(pod, &known, &mut used));
    }
    findings.extend(unused_findings(cluster, &used, namespace));
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.object.cmp(&b.object))
            .then(a.finding.cmp(&b.finding))
    });
    findings
}

impl Known {
    /// A container uses this profile: counted as used, and a finding if it cannot confine
    /// the container on its node.
    fn uses(
        &self,
        kind: ProfileKind,
        name: &str,
        status: Option<&ProfileStatus>,
        node: Option<&str>,
        used: &mut BTreeSet<(ProfileKind, String)>,
    ) -> Option<(Severity, String)> {
        used.insert((kind, name.to_string()));
        let (severity, problem) = self.problem(kind, name, status, node)?;
        Some((severity, format!("uses {} {name}, which {problem}", kind.name())))
    }

    fn of(cluster: &Cluster) -> Self {
        let mut known = Known {
            seccomp: HashMap::new(),
            seccomp_dirs: BTreeSet::from([palisade_domain::SECCOMP_SUBDIR.to_string()]),
            apparmor: cluster
                .listed
                .apparmor
                .iter()
                .map(|p| (p.name_any(), p.status.clone()))
                .collect(),
            on_nodes: cluster.listed.on_nodes(),
        };
        for p in &cluster.listed.seccomp {
            let path = p
                .status
                .as_ref()
                .and_then(|s| s.localhost_profile.clone())
                .unwrap_or_else(|| SeccompProfile::localhost_profile(&p.name_any()));
            if let Some((dir, _)) = path.split_once('/') {
                known.seccomp_dirs.insert(dir.to_string());
            }
            known.seccomp.insert(path, (p.name_any(), p.status.clone()));
        }
        known
    }
}

/// Nodes without AppArmor (a namespace's audit looks at the nodes its pods run on; a
/// cluster's at every node).
fn node_findings(cluster: &Cluster, namespace: Option<&str>) -> Vec<Finding> {
    let pod_nodes: BTreeSet<String> = cluster
        .pods
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    let mut findings = Vec::new();
    for report in &cluster.listed.reports {
        let node = report.name_any();
        let Some(status) = &report.status else { continue };
        if !status.capabilities.apparmor && (namespace.is_none() || pod_nodes.contains(&node)) {
            let why = status.capabilities.apparmor_reason.clone().unwrap_or_default();
            findings.push(Finding {
                severity: Severity::Medium,
                object: format!("node {node}"),
                finding: format!("has no AppArmor: pods there run without AppArmor confinement ({why})"),
            });
        }
    }
    findings
}

/// Each container of a pod (init containers first): privileged, its seccomp profile, its
/// AppArmor profile. Records the profiles it uses in `used`.
fn pod_findings(pod: &Pod, known: &Known, used: &mut BTreeSet<(ProfileKind, String)>) -> Vec<Finding> {
    let id = format!("pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let Some(spec) = &pod.spec else { return vec![] };
    let node = spec.node_name.as_deref();
    let mut findings = Vec::new();
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        let object = format!("{id} (container {})", c.name);
        let sc: Option<&SecurityContext> = c.security_context.as_ref();
        let mut found = |severity, finding: String| {
            findings.push(Finding {
                severity,
                object: object.clone(),
                finding,
            })
        };
        if sc.and_then(|s| s.privileged) == Some(true) {
            found(
                Severity::High,
                "is privileged: no seccomp or AppArmor profile confines it".into(),
            );
            continue;
        }
        let seccomp = effective_seccomp(spec, sc).map(|p| Effective {
            type_: p.type_.clone(),
            localhost: p.localhost_profile.clone(),
        });
        if let Some((severity, finding)) = seccomp_finding(seccomp, known, node, used) {
            found(severity, finding);
        }
        let apparmor = effective_apparmor(pod, &c.name, sc);
        if let Some((severity, finding)) = apparmor_finding(apparmor, pod, known, node, used) {
            found(severity, finding);
        }
    }
    findings
}

fn seccomp_finding(
    profile: Option<Effective>,
    known: &Known,
    node: Option<&str>,
    used: &mut BTreeSet<(ProfileKind, String)>,
) -> Option<(Severity, String)> {
    let Some(profile) = profile else {
        return Some((
            Severity::Medium,
            "has no seccomp profile (Unconfined unless the kubelet runs with --seccomp-default)".into(),
        ));
    };
    match (profile.type_.as_str(), profile.localhost.as_deref()) {
        ("Unconfined", _) => Some((Severity::High, "runs seccomp Unconfined".into())),
        ("Localhost", Some(path)) => match known.seccomp.get(path) {
            Some((name, status)) => known.uses(ProfileKind::SeccompProfile, name, status.as_ref(), node, used),
            None if path
                .split_once('/')
                .is_some_and(|(d, _)| known.seccomp_dirs.contains(d)) =>
            {
                Some((
                    Severity::High,
                    format!(
                        "names seccomp profile {path}, which no SeccompProfile provides: the container cannot start"
                    ),
                ))
            }
            None => None,
        },
        _ => None,
    }
}

fn apparmor_finding(
    profile: Option<Effective>,
    pod: &Pod,
    known: &Known,
    node: Option<&str>,
    used: &mut BTreeSet<(ProfileKind, String)>,
) -> Option<(Severity, String)> {
    let Some(profile) = profile else {
        return Some((
            Severity::Low,
            "has no AppArmor profile (the runtime's default applies on AppArmor nodes)".into(),
        ));
    };
    match (profile.type_.as_str(), profile.localhost) {
        // Palisade's own agent must be: only an unconfined task may load policy.
        ("Unconfined", _) if is_palisade_agent(pod) => Some((
            Severity::Low,
            "runs AppArmor Unconfined, as Palisade's agent must (the kernel lets only an unconfined task load AppArmor policy)".into(),
        )),
        ("Unconfined", _) => Some((Severity::High, "runs AppArmor Unconfined".into())),
        ("Localhost", Some(name)) => match known.apparmor.get(&name) {
            Some(status) => known.uses(ProfileKind::AppArmorProfile, &name, status.as_ref(), node, used),
            None => Some((
                Severity::High,
                format!(
                    "names AppArmor profile {name}, which no AppArmorProfile provides: the container cannot start unless the node has it loaded"
                ),
            )),
        },
        _ => None,
    }
}

/// Profiles no pod uses (a seccomp base is used by its children).
fn unused_findings(cluster: &Cluster, used: &BTreeSet<(ProfileKind, String)>, namespace: Option<&str>) -> Vec<Finding> {
    let bases: BTreeSet<String> = cluster
        .listed
        .seccomp
        .iter()
        .filter_map(|p| p.spec.base_profile_name.clone())
        .collect();
    let profiles: BTreeSet<(ProfileKind, String)> = cluster
        .listed
        .seccomp
        .iter()
        .map(|p| (ProfileKind::SeccompProfile, p.name_any()))
        .filter(|(_, name)| !bases.contains(name))
        .chain(
            cluster
                .listed
                .apparmor
                .iter()
                .map(|p| (ProfileKind::AppArmorProfile, p.name_any())),
        )
        .collect();
    profiles
        .difference(used)
        .map(|(kind, name)| Finding {
            severity: Severity::Low,
            object: format!("{} {name}", kind.name()),
            finding: if namespace.is_some() {
                "no pod in this namespace uses it".into()
            } else {
                "no pod uses it".into()
            },
        })
        .collect()
}

/// Findings as a table.
pub fn table(findings: &[Finding], colour: bool) -> String {
    if findings.is_empty() {
        return "no findings\n".into();
    }
    let mut table = crate::table::new(&["SEVERITY", "OBJECT", "FINDING"], colour);
    for f in findings {
        let paint = match f.severity {
            Severity::High => Some(comfy_table::Color::DarkRed),
            Severity::Medium => Some(comfy_table::Color::DarkYellow),
            Severity::Low => None,
        };
        let severity = format!("{:?}", f.severity).to_lowercase();
        table.add_row([
            crate::table::cell(&severity, paint),
            crate::table::cell(&f.object, None),
            crate::table::cell(&f.finding, None),
        ]);
    }
    crate::table::lines(&table).map(|line| line + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_findings_table_lines_up_its_columns_and_paints_the_severe() {
        let finding = |severity, object: &str, finding: &str| Finding {
            severity,
            object: object.into(),
            finding: finding.into(),
        };
        let findings = [
            finding(
                Severity::High,
                "pod bad/unconfined (container app)",
                "runs seccomp Unconfined",
            ),
            finding(Severity::Medium, "node node-2", "has no AppArmor"),
            finding(Severity::Low, "pod bad/bare (container app)", "has no AppArmor profile"),
        ];
        assert_eq!(
            table(&findings, false),
            "\
SEVERITY  OBJECT                              FINDING
high      pod bad/unconfined (container app)  runs seccomp Unconfined
medium    node node-2                         has no AppArmor
low       pod bad/bare (container app)        has no AppArmor profile
"
        );
        let painted = table(&findings, true);
        let lines: Vec<&str> = painted.lines().collect();
        assert!(
            lines[1].starts_with('\x1b') && lines[2].starts_with('\x1b'),
            "{painted:?}"
        );
        assert!(lines[1].contains("high") && lines[2].contains("medium"));
        assert!(!lines[0].contains('\x1b') && !lines[3].contains('\x1b'), "{painted:?}");
        assert_eq!(table(&[], true), "no findings\n");
    }

    use serde_json::json;

    fn cluster(pods: Vec<serde_json::Value>) -> Cluster {
        Cluster {
            pods: pods.into_iter().map(|p| serde_json::from_value(p).unwrap()).collect(),
            listed: Listed::default(),
        }
    }

    fn of<'a>(findings: &'a [Finding], container: &str) -> Vec<&'a str> {
        findings
            .iter()
            .filter(|f| f.object.ends_with(&format!("(container {container})")))
            .map(|f| f.finding.as_str())
            .collect()
    }

    #[test]
    fn each_container_is_judged_by_the_profiles_kubernetes_applies_to_it() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": {
                "container.apparmor.security.beta.kubernetes.io/annotated": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/own": "unconfined",
            }},
            "spec": {
                "securityContext": {
                    "seccompProfile": {"type": "Unconfined"},
                    "appArmorProfile": {"type": "RuntimeDefault"},
                },
                "initContainers": [{"name": "init", "image": "i"}],
                "containers": [
                    // Its own fields win over the annotation and the pod's.
                    {"name": "own", "image": "i", "securityContext": {
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "appArmorProfile": {"type": "RuntimeDefault"}}},
                    // The annotation wins over the pod's field.
                    {"name": "annotated", "image": "i"},
                    {"name": "privileged", "image": "i", "securityContext": {"privileged": true}},
                ],
            },
        });
        let findings = findings(&cluster(vec![pod]), None);
        assert!(of(&findings, "own").is_empty(), "{findings:?}");
        assert_eq!(
            of(&findings, "annotated"),
            ["runs AppArmor Unconfined", "runs seccomp Unconfined"]
        );
        assert_eq!(of(&findings, "init"), ["runs seccomp Unconfined"]);
        assert_eq!(
            of(&findings, "privileged"),
            ["is privileged: no seccomp or AppArmor profile confines it"]
        );
    }
}
