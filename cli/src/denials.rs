//! `palisade denials`: what the kernel refused containers under Palisade profiles, from the
//! API alone: the Warning Events the agents write (`AppArmorDenied`, `SeccompDenied`),
//! newest first, with the node; and a hint for each node that cannot report.

use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use palisade_domain::NodeProfileStatus;
use palisade_domain::denials::{
    ANNOTATION_CONTAINER, ANNOTATION_KIND, ANNOTATION_OPERATION, ANNOTATION_PROFILE, ANNOTATION_TARGET,
    REASON_APPARMOR, REASON_SECCOMP, REPORTER,
};
use palisade_domain::learn::printable;
use serde::Serialize;

/// One denial series, as its Event says.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    pub last_seen: String,
    pub first_seen: String,
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub kind: String,
    pub profile: String,
    pub operation: String,
    pub target: String,
    pub count: i32,
    pub message: String,
}

#[derive(Serialize, Debug, Default)]
pub struct Denials {
    pub denials: Vec<Denial>,
    /// Nodes whose agent cannot report denials, or reads a rate-limited log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// What to show.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub profile: Option<String>,
    /// Seconds back from now.
    pub since: Option<i64>,
}

/// `10m`, `2h`, `30s`, `1d`.
pub fn parse_since(s: &str) -> Result<i64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("--since {s}: a number and a unit (s, m, h, d)"))?;
    let unit = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("--since {s}: the unit is s, m, h or d")),
    };
    Ok(n * unit)
}

/// The denials, from their Events: a pod's (in the pod's own namespace), and those of
/// processes that exited before their pod was known (on the profile or the node, in
/// `default`). An Event counts only if it has an agent's shape (reporting component,
/// reason, target); every field is escaped before it is shown (an Event is anyone's to
/// write in their namespace, and a target is the workload's choice).
pub fn from_events(events: &[Event], filter: &Filter, now: i64) -> Vec<Denial> {
    let mut out: Vec<Denial> = events
        .iter()
        .filter(|e| {
            let reason = e.reason.as_deref();
            let namespace = e.metadata.namespace.as_deref();
            let place = match e.involved_object.kind.as_deref() {
                Some("Pod") => namespace.is_some() && e.involved_object.namespace.as_deref() == namespace,
                Some("AppArmorProfile" | "SeccompProfile" | "Node") => namespace == Some("default"),
                _ => false,
            };
            (reason == Some(REASON_APPARMOR) || reason == Some(REASON_SECCOMP))
                && e.reporting_component.as_deref() == Some(REPORTER)
                && place
                && e.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANNOTATION_TARGET))
        })
        .map(|e| {
            let a = |k: &str| {
                e.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .map(|v| printable(v))
                    .unwrap_or_default()
            };
            let pod = e.involved_object.kind.as_deref() == Some("Pod");
            let field = |v: &Option<String>| printable(v.as_deref().unwrap_or_default());
            let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
            };
            Denial {
                last_seen: time(&e.last_timestamp),
                first_seen: time(&e.first_timestamp),
                node: field(&e.reporting_instance),
                namespace: if pod {
                    field(&e.involved_object.namespace)
                } else {
                    String::new()
                },
                pod: if pod {
                    field(&e.involved_object.name)
                } else {
                    String::new()
                },
                container: if pod {
                    a(ANNOTATION_CONTAINER)
                } else {
                    "(exited process)".to_string()
                },
                kind: a(ANNOTATION_KIND),
                profile: a(ANNOTATION_PROFILE),
                operation: a(ANNOTATION_OPERATION),
                target: a(ANNOTATION_TARGET),
                count: e.count.unwrap_or(1),
                message: field(&e.message),
            }
        })
        .filter(|d| filter.pod.as_ref().is_none_or(|p| *p == d.pod))
        // A namespace asks for its pods' denials: those of no known pod are in none.
        .filter(|d| {
            filter
                .namespace
                .as_ref()
                .is_none_or(|n| !d.pod.is_empty() && *n == d.namespace)
        })
        .filter(|d| filter.profile.as_ref().is_none_or(|p| *p == d.profile))
        .filter(|d| {
            filter.since.is_none_or(|s| {
                d.last_seen
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .is_ok_and(|t| t.as_second() >= now - s)
            })
        })
        .collect();
    // Newest first (RFC 3339 stamps of one format sort as text).
    out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.pod.cmp(&b.pod)));
    out
}

/// A hint for each node whose agent does not report denials or reads a rate-limited log.
pub fn hints(reports: &[NodeProfileStatus]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        let name = r.metadata.name.clone().unwrap_or_default();
        match r.status.as_ref().and_then(|s| s.capabilities.denials.as_deref()) {
            None => out.push(format!(
                "node {}: denials are not reported (install the chart with denials.enabled=true)",
                printable(&name)
            )),
            Some(source) if source.contains("rate-limited") => out.push(format!(
                "node {}: reads the {}: bursts of denials are dropped by the kernel (set kernel.printk_ratelimit=0, or run auditd)",
                printable(&name),
                printable(source)
            )),
            Some(_) => {}
        }
    }
    out
}

pub async fn denials(client: Client, filter: &Filter) -> anyhow::Result<Denials> {
    let events: Api<Event> = match &filter.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut all = Vec::new();
    for reason in [REASON_APPARMOR, REASON_SECCOMP] {
        let lp = ListParams::default().fields(&format!("reason={reason}"));
        all.extend(events.list(&lp).await?.items);
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let reports: Api<NodeProfileStatus> = Api::all(client);
    let hints = match reports.list(&ListParams::default()).await {
        Ok(list) => hints(&list.items),
        Err(e) => vec![format!("the nodes' reports could not be read: {e}")],
    };
    Ok(Denials {
        denials: from_events(&all, filter, now),
        hints,
    })
}

pub fn table(d: &Denials) -> String {
    let mut out = String::new();
    if d.denials.is_empty() {
        out.push_str("No denials found.\n");
    } else {
        let mut t = crate::table::new(
            &["LAST SEEN", "NODE", "POD", "CONTAINER", "PROFILE", "DENIED", "COUNT"],
            false,
        );
        for x in &d.denials {
            let kind = match x.kind.as_str() {
                "AppArmorProfile" => "apparmor",
                "SeccompProfile" => "seccomp",
                other => other,
            };
            t.add_row(vec![
                crate::table::cell(&x.last_seen, None),
                crate::table::cell(&x.node, None),
                crate::table::cell(
                    &if x.pod.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{}/{}", x.namespace, x.pod)
                    },
                    None,
                ),
                crate::table::cell(&x.container, None),
                crate::table::cell(
                    &if x.profile.is_empty() {
                        format!("{kind}/(unknown)")
                    } else {
                        format!("{kind}/{}", x.profile)
                    },
                    None,
                ),
                crate::table::cell(&format!("{} {}", x.operation, x.target), None),
                crate::table::cell(&x.count.to_string(), None),
            ]);
        }
        for line in crate::table::lines(&t) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    for h in &d.hints {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The time the tests' events are read at (seconds since the epoch).
    fn now() -> i64 {
        "2026-12-07T10:10:00Z"
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
            .as_second()
    }

    fn event(pod: &str, profile: &str, last: &str, component: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{pod}.x"), "namespace": "ns", "annotations": {
                ANNOTATION_PROFILE: profile, ANNOTATION_KIND: "AppArmorProfile", ANNOTATION_CONTAINER: "c",
                ANNOTATION_OPERATION: "open", ANNOTATION_TARGET: "/etc/shadow"}},
            "involvedObject": {"kind": "Pod", "namespace": "ns", "name": pod},
            "reason": REASON_APPARMOR, "count": 3, "lastTimestamp": last, "firstTimestamp": last,
            "reportingComponent": component, "reportingInstance": "node-1",
        }))
        .unwrap()
    }

    #[test]
    fn only_the_agents_events_count_newest_first_and_filtered() {
        let events = [
            event("a", "web", "2026-12-07T10:00:00Z", REPORTER),
            event("b", "web", "2026-12-07T10:05:00Z", REPORTER),
            event("c", "db", "2026-12-07T09:00:00Z", REPORTER),
            event("forged", "web", "2026-12-07T10:06:00Z", "someone"),
        ];
        let now = now();
        let all = from_events(&events, &Filter::default(), now);
        assert_eq!(all.iter().map(|d| d.pod.as_str()).collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(
            (all[0].node.as_str(), all[0].count, all[0].target.as_str()),
            ("node-1", 3, "/etc/shadow")
        );
        let web = Filter {
            profile: Some("web".into()),
            since: Some(parse_since("30m").unwrap()),
            ..Default::default()
        };
        assert_eq!(from_events(&events, &web, now).len(), 2);
        let recent = Filter {
            since: Some(parse_since("6m").unwrap()),
            ..Default::default()
        };
        assert_eq!(from_events(&events, &recent, now).len(), 1);
        assert!(parse_since("5 minutes").is_err());
    }

    #[test]
    fn events_out_of_place_are_dropped_and_every_field_is_escaped() {
        let now = now();
        // Written in its own namespace about a pod in another: not the agent's.
        let mut elsewhere = event("coredns", "web", "2026-12-07T10:00:00Z", REPORTER);
        elsewhere.involved_object.namespace = Some("kube-system".into());
        let mut ansi = event("a", "web", "2026-12-07T10:00:00Z", REPORTER);
        ansi.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION_TARGET.into(), "/x\u{1b}[1A\u{1b}[2K\u{202e}".into());
        let got = from_events(&[elsewhere, ansi], &Filter::default(), now);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].target, "/x\\u{1b}[1A\\u{1b}[2K\\u{202e}");
        assert!(
            !table(&Denials {
                denials: got,
                hints: vec![]
            })
            .contains('\u{1b}')
        );
    }

    #[test]
    fn denials_of_exited_processes_show_on_their_profile_or_node() {
        let now = now();
        let on = |kind: &str, name: &str, profile: Option<&str>| -> Event {
            let mut annotations = json!({ANNOTATION_KIND: "SeccompProfile", ANNOTATION_OPERATION: "kill_process", ANNOTATION_TARGET: "mkdir"});
            if let Some(p) = profile {
                annotations[ANNOTATION_PROFILE] = json!(p);
            }
            serde_json::from_value(json!({
                "metadata": {"name": "x", "namespace": "default", "annotations": annotations},
                "involvedObject": {"kind": kind, "name": name},
                "reason": REASON_SECCOMP, "count": 2, "lastTimestamp": "2026-12-07T10:00:00Z",
                "reportingComponent": REPORTER, "reportingInstance": "node-1",
            }))
            .unwrap()
        };
        let in_default = Filter {
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert!(
            from_events(&[on("Node", "node-1", None)], &in_default, now).is_empty(),
            "of no pod, so in no pod's namespace"
        );
        let got = from_events(&[on("Node", "node-1", None)], &Filter::default(), now);
        assert_eq!(
            (got[0].pod.as_str(), got[0].container.as_str()),
            ("", "(exited process)")
        );
        let text = table(&Denials {
            denials: got,
            hints: vec![],
        });
        assert!(
            text.contains("seccomp/(unknown)") && text.contains("kill_process mkdir"),
            "{text}"
        );
        // The profile's own summary Event names no target: not a row.
        let mut summary = on("SeccompProfile", "web", Some("web"));
        summary.metadata.annotations.as_mut().unwrap().remove(ANNOTATION_TARGET);
        assert!(from_events(&[summary], &Filter::default(), now).is_empty());
    }

    #[test]
    fn nodes_that_cannot_report_get_a_hint() {
        let report = |name: &str, denials: Option<&str>| -> NodeProfileStatus {
            serde_json::from_value(
                json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
                "metadata": {"name": name}, "spec": {},
                "status": {"capabilities": {"denials": denials}}}),
            )
            .unwrap()
        };
        let h = hints(&[
            report("off", None),
            report("limited", Some("kernel log, rate-limited (kernel.printk_ratelimit=5)")),
            report("fine", Some("auditd")),
        ]);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h[0].contains("node off") && h[0].contains("denials.enabled"));
        assert!(h[1].contains("node limited") && h[1].contains("printk_ratelimit=0"));
    }
}
