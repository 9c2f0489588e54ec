//! `palisade audit`: the cluster's confinement posture, as a list of findings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod, SecurityContext};
use kube::{Api, Client, ResourceExt};
use palisade_crds::{AppArmorProfile, NodeProfileState, NodeProfileStatus, ProfileKind, ProfileStatus, SeccompProfile};
use serde::Serialize;

use palisade_crds::APPARMOR_ANNOTATION_PREFIX;

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

fn kind_label(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::SeccompProfile => "SeccompProfile",
        ProfileKind::AppArmorProfile => "AppArmorProfile",
    }
}

/// A pod of Palisade's agent DaemonSet (the chart's labels).
fn is_palisade_agent(pod: &Pod) -> bool {
    let labels = pod.labels();
    labels.get("app.kubernetes.io/name").is_some_and(|n| n == "palisade")
        && labels.get("app.kubernetes.io/component").is_some_and(|c| c == "agent")
}

/// Audits pods (in `namespace`, or all), profiles and nodes.
pub async fn audit(client: Client, namespace: Option<&str>) -> Result<Vec<Finding>> {
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pods = pods.list(&Default::default()).await?.items;
    let seccomp = Api::<SeccompProfile>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    let apparmor = Api::<AppArmorProfile>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    let reports = Api::<NodeProfileStatus>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    let nodes = Api::<Node>::all(client).list(&Default::default()).await?.items;

    let mut known = Known {
        seccomp: HashMap::new(),
        seccomp_dirs: BTreeSet::from([palisade_crds::SECCOMP_SUBDIR.to_string()]),
        apparmor: apparmor.iter().map(|p| (p.name_any(), p.status.clone())).collect(),
        on_nodes: crate::cluster::on_nodes(&seccomp, &apparmor, &reports, &nodes),
    };
    for p in &seccomp {
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
    let mut findings = Vec::new();
    // A namespace's audit looks at the nodes its pods run on; a cluster's at every node.
    let pod_nodes: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    for report in &reports {
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

    let mut used: BTreeSet<(ProfileKind, String)> = BTreeSet::new();
    for pod in &pods {
        let id = format!("pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let Some(spec) = &pod.spec else { continue };
        let node = spec.node_name.as_deref();
        let pod_sc = spec.security_context.as_ref();
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| (c.name.clone(), c.security_context.clone()));
        for (container, sc) in containers {
            let object = format!("{id} (container {container})");
            let sc: Option<&SecurityContext> = sc.as_ref();
            if sc.and_then(|s| s.privileged) == Some(true) {
                findings.push(Finding {
                    severity: Severity::High,
                    object: object.clone(),
                    finding: "is privileged: no seccomp or AppArmor profile confines it".into(),
                });
                continue;
            }
            // seccomp: the container's, else the pod's.
            let profile = sc
                .and_then(|s| s.seccomp_profile.as_ref())
                .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
            match profile.map(|p| (p.type_.as_str(), p.localhost_profile.as_deref())) {
                None => findings.push(Finding {
                    severity: Severity::Medium,
                    object: object.clone(),
                    finding: "has no seccomp profile (Unconfined unless the kubelet runs with --seccomp-default)".into(),
                }),
                Some(("Unconfined", _)) => findings.push(Finding {
                    severity: Severity::High,
                    object: object.clone(),
                    finding: "runs seccomp Unconfined".into(),
                }),
                Some(("Localhost", Some(path))) => match known.seccomp.get(path) {
                    Some((name, status)) => {
                        used.insert((ProfileKind::SeccompProfile, name.clone()));
                        if let Some((severity, problem)) =
                            known.problem(ProfileKind::SeccompProfile, name, status.as_ref(), node)
                        {
                            findings.push(Finding {
                                severity,
                                object: object.clone(),
                                finding: format!("uses SeccompProfile {name}, which {problem}"),
                            });
                        }
                    }
                    None if path.split_once('/').is_some_and(|(d, _)| known.seccomp_dirs.contains(d)) => {
                        findings.push(Finding {
                            severity: Severity::High,
                            object: object.clone(),
                            finding: format!(
                                "names seccomp profile {path}, which no SeccompProfile provides: the container cannot start"
                            ),
                        })
                    }
                    None => {}
                },
                Some(_) => {}
            }
            // AppArmor: the container's field, else its annotation, else the pod's field.
            let field = sc
                .and_then(|s| s.app_armor_profile.as_ref())
                .map(|p| (p.type_.clone(), p.localhost_profile.clone()));
            let annotation = annotations
                .get(&format!("{APPARMOR_ANNOTATION_PREFIX}{container}"))
                .map(|v| match v.strip_prefix("localhost/") {
                    Some(name) => ("Localhost".to_string(), Some(name.to_string())),
                    None if v == "unconfined" => ("Unconfined".to_string(), None),
                    None => ("RuntimeDefault".to_string(), None),
                });
            let pod_field = pod_sc
                .and_then(|s| s.app_armor_profile.as_ref())
                .map(|p| (p.type_.clone(), p.localhost_profile.clone()));
            match field.or(annotation).or(pod_field) {
                None => findings.push(Finding {
                    severity: Severity::Low,
                    object: object.clone(),
                    finding: "has no AppArmor profile (the runtime's default applies on AppArmor nodes)".into(),
                }),
                // Palisade's own agent must be: only an unconfined task may load policy.
                Some((t, _)) if t == "Unconfined" && is_palisade_agent(pod) => {
                    findings.push(Finding {
                        severity: Severity::Low,
                        object: object.clone(),
                        finding: "runs AppArmor Unconfined, as Palisade's agent must (the kernel lets only an unconfined task load AppArmor policy)".into(),
                    })
                }
                Some((t, _)) if t == "Unconfined" => findings.push(Finding {
                    severity: Severity::High,
                    object: object.clone(),
                    finding: "runs AppArmor Unconfined".into(),
                }),
                Some((t, Some(name))) if t == "Localhost" => match known.apparmor.get(&name) {
                    Some(status) => {
                        used.insert((ProfileKind::AppArmorProfile, name.clone()));
                        if let Some((severity, problem)) =
                            known.problem(ProfileKind::AppArmorProfile, &name, status.as_ref(), node)
                        {
                            findings.push(Finding {
                                severity,
                                object: object.clone(),
                                finding: format!("uses AppArmorProfile {name}, which {problem}"),
                            });
                        }
                    }
                    None => findings.push(Finding {
                        severity: Severity::High,
                        object: object.clone(),
                        finding: format!(
                            "names AppArmor profile {name}, which no AppArmorProfile provides: the container cannot start unless the node has it loaded"
                        ),
                    }),
                },
                Some(_) => {}
            }
        }
    }

    let mut profiles: BTreeMap<(ProfileKind, String), ()> = BTreeMap::new();
    for p in &seccomp {
        profiles.insert((ProfileKind::SeccompProfile, p.name_any()), ());
    }
    for p in &apparmor {
        profiles.insert((ProfileKind::AppArmorProfile, p.name_any()), ());
    }
    let bases: BTreeSet<String> = seccomp
        .iter()
        .filter_map(|p| p.spec.base_profile_name.clone())
        .collect();
    for (kind, name) in profiles.keys() {
        let is_base = *kind == ProfileKind::SeccompProfile && bases.contains(name);
        if !used.contains(&(*kind, name.clone())) && !is_base {
            findings.push(Finding {
                severity: Severity::Low,
                object: format!("{} {name}", kind_label(*kind)),
                finding: if namespace.is_some() {
                    "no pod in this namespace uses it".into()
                } else {
                    "no pod uses it".into()
                },
            });
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.object.cmp(&b.object))
            .then(a.finding.cmp(&b.finding))
    });
    Ok(findings)
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
}
