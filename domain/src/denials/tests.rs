use super::*;
use crate::learn::parse_line;

fn record(line: &str) -> Record {
    parse_line(line).expect("a record")
}

const FILE_DENIED: &str = r#"audit: type=1400 audit(1795401790.848:433): apparmor="DENIED" operation="open" class="file" profile="web//null-/bin/cat" name="/etc/shadow" pid=1917 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
const CAP_DENIED: &str = r#"audit: type=1400 audit(1795401790.850:434): apparmor="DENIED" operation="capable" class="cap" profile="web" pid=1917 comm="chown" capability=0 capname="chown""#;
const ALLOWED: &str = r#"audit: type=1400 audit(1795401790.850:435): apparmor="ALLOWED" operation="open" class="file" profile="web" name="/etc/shadow" pid=1917 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
const KILL: &str = "audit: type=1326 audit(1795401790.848:436): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=cri-containerd.apparmor.d pid=1917 comm=\"mkdir\" exe=\"/bin/busybox\" sig=31 arch=c000003e syscall=83 compat=0 ip=0x461189 code=0x80000000";
const LOG: &str = "audit: type=1326 audit(1795401790.848:438): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=cri-containerd.apparmor.d pid=1917 comm=\"mkdir\" exe=\"/bin/busybox\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x461189 code=0x7ffc0000";

#[test]
fn apparmor_denials_name_the_root_profile_the_operation_and_the_target() {
    let r = refusal_of(&record(FILE_DENIED)).unwrap();
    assert_eq!(r.kind, ProfileKind::AppArmorProfile);
    assert_eq!(r.profile.as_deref(), Some("web"));
    assert_eq!(
        (r.operation.as_str(), r.target.as_str(), r.detail.as_str()),
        ("open", "/etc/shadow", "r")
    );
    let c = refusal_of(&record(CAP_DENIED)).unwrap();
    assert_eq!((c.operation.as_str(), c.target.as_str()), ("capable", "chown"));
    assert_eq!(refusal_of(&record(ALLOWED)), None, "complain mode refuses nothing");
}

#[test]
fn seccomp_denials_are_the_actions_that_refuse() {
    let k = refusal_of(&record(KILL)).unwrap();
    assert_eq!((k.operation.as_str(), k.target.as_str()), ("kill_process", "mkdir"));
    assert_eq!(k.detail, "signal 31");
    assert_eq!(k.profile, None, "the record does not name the profile");
    assert_eq!(refusal_of(&record(LOG)), None, "SCMP_ACT_LOG allows");
}

#[test]
fn a_target_the_workload_chose_is_escaped_and_clipped() {
    let long = format!("/tmp/{}", "a".repeat(1000));
    let hex: String = format!("{long}\n").bytes().map(|b| format!("{b:02X}")).collect();
    let line = FILE_DENIED.replace("name=\"/etc/shadow\"", &format!("name={hex}"));
    let r = refusal_of(&record(&line)).unwrap();
    assert!(!r.target.contains('\n'));
    assert_eq!(
        r.target.chars().count(),
        MAX_TARGET_CHARS + 1,
        "clipped, with an ellipsis"
    );
}

fn unattributed(target: &str) -> Subject {
    Subject::Unattributed {
        kind: ProfileKind::AppArmorProfile,
        profile: Some("web".into()),
        operation: "open".into(),
        target: target.into(),
    }
}

fn pod_subject(pod: &str, target: &str) -> Subject {
    Subject::Pod {
        pod: PodRef {
            namespace: "ns".into(),
            name: pod.into(),
            uid: format!("uid-{pod}"),
        },
        container: "c".into(),
        kind: ProfileKind::AppArmorProfile,
        profile: "web".into(),
        operation: "open".into(),
        target: target.into(),
    }
}

#[test]
fn repeats_aggregate_into_one_series_written_at_most_once_a_gap() {
    let mut a = Aggregator::new(0.0);
    for i in 0..1000 {
        a.record(pod_subject("p", "/x"), Some("web"), "w", i as f64 * 0.01);
    }
    let first = a.due(10.0);
    assert_eq!(first.len(), 2, "one pod series and one profile series: {first:?}");
    assert!(first.iter().all(|w| w.first && w.series.count == 1000));
    a.record(pod_subject("p", "/x"), Some("web"), "w", 20.0);
    assert!(a.due(30.0).is_empty(), "within the repeat gap");
    let again = a.due(10.0 + REPEAT_GAP_SECS);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|w| !w.first && w.series.count == 1001));
    assert!(a.due(10.0 + 2.0 * REPEAT_GAP_SECS).is_empty(), "nothing new");
}

#[test]
fn a_storm_of_distinct_denials_stays_within_the_table_and_the_write_budget() {
    let mut a = Aggregator::new(0.0);
    let mut writes = 0usize;
    // 100 000 distinct targets in one minute, read every second.
    for second in 0..60 {
        for i in 0..(100_000 / 60) {
            let t = second as f64 + i as f64 / 2000.0;
            a.record(pod_subject("p", &format!("/f{second}-{i}")), Some("web"), "w", t);
        }
        writes += a.due(second as f64 + 1.0).len();
        assert!(a.len() <= MAX_SERIES);
    }
    let allowed = WRITE_BURST + 60.0 * WRITES_PER_SEC;
    assert!(writes as f64 <= allowed, "{writes} writes > {allowed}");
    assert!(writes > 0);
    assert!(a.overflowed > 90_000, "{}", a.overflowed);
    // The profile's series counts every denial, the overflowed ones too.
    let profile = Subject::Profile {
        kind: ProfileKind::AppArmorProfile,
        profile: "web".into(),
    };
    assert_eq!(a.series[&profile].count, (100_000 / 60) * 60);
}

#[test]
fn a_failed_write_is_due_again_a_gap_later_and_idle_series_are_forgotten() {
    let mut a = Aggregator::new(0.0);
    a.record(pod_subject("p", "/x"), Some("web"), "w", 1.0);
    let w = a.due(2.0);
    assert_eq!(w.len(), 2);
    a.failed(&w[0], 2.0);
    assert!(
        a.due(3.0).is_empty(),
        "not at once: a failing Event never takes the budget"
    );
    let again = a.due(2.0 + REPEAT_GAP_SECS);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].subject, w[0].subject);
    assert_eq!(again[0].series.count, 1);
    assert!(a.due(3.0 + REPEAT_GAP_SECS + SERIES_IDLE_SECS).is_empty());
    assert!(a.is_empty(), "written and idle");
    assert_eq!((a.own, a.profiles), (0, 0), "what is held is counted down too");
    assert!(a.per_pod.is_empty());
}

#[test]
fn a_series_that_always_fails_does_not_starve_the_others() {
    let mut a = Aggregator::new(0.0);
    let mut others_written = 0;
    for minute in 0..60 {
        let t = minute as f64 * 60.0;
        // The failing pod keeps its series alive; a new pod is denied every minute.
        a.record(pod_subject("doomed", "/x"), None, "w", t);
        a.record(pod_subject(&format!("other-{minute}"), "/x"), None, "w", t);
        for w in a.due(t + 1.0) {
            if matches!(&w.subject, Subject::Pod { pod, .. } if pod.name == "doomed") {
                a.failed(&w, t + 1.0);
            } else {
                others_written += 1;
            }
        }
    }
    assert_eq!(others_written, 60, "every other pod's Event was written in its minute");
}

#[test]
fn one_pod_cannot_hold_the_table() {
    let mut a = Aggregator::new(0.0);
    for i in 0..2000 {
        a.record(
            pod_subject("greedy", &format!("/f{i}")),
            Some("web"),
            "w",
            i as f64 * 0.01,
        );
    }
    a.record(pod_subject("victim", "/etc/shadow"), Some("db"), "r", 30.0);
    let w = a.due(31.0);
    assert!(
        w.iter()
            .any(|w| matches!(&w.subject, Subject::Pod { pod, .. } if pod.name == "victim")),
        "the victim's series got in"
    );
    let greedy = a.series.keys().filter(|s| s.pod_uid() == Some("uid-greedy")).count();
    assert_eq!(greedy, MAX_SERIES_PER_POD);
    // The profiles' series count every denial, the greedy pod's overflow too.
    let web = Subject::Profile {
        kind: ProfileKind::AppArmorProfile,
        profile: "web".into(),
    };
    assert_eq!(a.series[&web].count, 2000);
}

#[test]
fn messages_stay_under_the_api_servers_limit_and_names_are_stable() {
    let wide = "\u{1F600}".repeat(MAX_TARGET_CHARS);
    let subject = pod_subject("p", &wide);
    let mut a = Aggregator::new(0.0);
    a.record(subject.clone(), None, "w", 1.0);
    let w = a.due(2.0);
    let msg = message(&w[0].subject, &w[0].series, "node-1");
    assert!(msg.len() <= MAX_MESSAGE_BYTES, "{}", msg.len());
    let name = event_name("p", &subject, "node-1");
    assert_eq!(name, event_name("p", &subject, "node-1"));
    assert_ne!(name, event_name("p", &subject, "node-2"));
    assert!(
        name.starts_with("p.palisade-") && name.len() == "p.palisade-".len() + 16,
        "{name}"
    );
    let long = "a".repeat(253);
    assert!(event_name(&long, &subject, "n").len() <= 253);
}

#[test]
fn the_profile_series_counts_a_ten_minute_window_and_its_pods() {
    let mut a = Aggregator::new(0.0);
    a.record(pod_subject("p", "/x"), Some("web"), "w", 1.0);
    a.record(pod_subject("q", "/x"), Some("web"), "w", 2.0);
    let w = a.due(3.0);
    let profile = w.iter().find(|w| matches!(w.subject, Subject::Profile { .. })).unwrap();
    assert_eq!(profile.series.pods.len(), 2);
    assert_eq!(
        message(&profile.subject, &profile.series, "node-1"),
        "AppArmorProfile web denied 2 times in 2 pods on node node-1 in the last 1 minutes"
    );
    let pod = w.iter().find(|w| matches!(w.subject, Subject::Pod { .. })).unwrap();
    assert_eq!(
        message(&pod.subject, &pod.series, "node-1"),
        "container c: AppArmorProfile web denied open /x (w), once"
    );
    // Eleven minutes on, a new window.
    a.record(unattributed("/y"), Some("web"), "w", 2.0 + PROFILE_WINDOW_SECS + 60.0);
    let later = a.due(2.0 + PROFILE_WINDOW_SECS + 120.0);
    let profile = later
        .iter()
        .find(|w| matches!(w.subject, Subject::Profile { .. }))
        .unwrap();
    assert_eq!(profile.series.count, 1);
    assert!(profile.series.pods.is_empty());
}

/// The records the agent reads from a real node's kernel log (syslog(2)), captured on the
/// real node (Debian 12: kernel 6.1, AppArmor 3.0.8, containerd 1.6.20, runc 1.1.5):
/// a pod under an enforcing profile writing /tmp/x, chown, ping and nc; a pod whose
/// profile kills mkdir (KILL_PROCESS, then KILL_THREAD); and a program in a pod that loads
/// its own filter with SECCOMP_FILTER_FLAG_LOG (errno, then trap): runc 1.1 refuses to start
/// a container whose profile has `flags`, and without the flag the kernel logs neither.
fn from_node(text: &str) -> Vec<Refusal> {
    crate::learn::kernel_log_records(text)
        .into_iter()
        .filter_map(|l| crate::learn::parse_from(l, crate::learn::LineSource::KernelLog))
        .filter_map(|r| refusal_of(&r))
        .collect()
}

#[test]
fn real_apparmor_denials_name_what_was_refused() {
    let got: Vec<(String, String, String)> = from_node(include_str!("fixtures/apparmor-denied.syslog"))
        .into_iter()
        .map(|r| {
            assert_eq!(r.profile.as_deref(), Some("fx-aa"));
            (r.operation, r.target, r.detail)
        })
        .collect();
    let want = [
        ("mknod", "/tmp/x", "c"),
        ("capable", "chown", ""),
        ("capable", "net_raw", ""),
        ("create", "inet6 stream", "create"),
        ("create", "inet stream", "create"),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
}

#[test]
fn real_seccomp_kills_and_logged_errno_and_trap_are_denials() {
    let kills = from_node(include_str!("fixtures/seccomp-kill.syslog"));
    let ops: Vec<(&str, &str, &str)> = kills
        .iter()
        .map(|r| (r.operation.as_str(), r.target.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("kill_process", "mkdir", "signal 31"),
            ("kill_thread", "mkdir", "signal 31")
        ]
    );
    let logged = from_node(include_str!("fixtures/seccomp-logflag.syslog"));
    let ops: Vec<(&str, &str)> = logged
        .iter()
        .map(|r| (r.operation.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(ops, [("errno", "mkdir"), ("trap", "mkdir")]);
    assert!(
        logged
            .iter()
            .all(|r| r.kind == ProfileKind::SeccompProfile && r.profile.is_none())
    );
}

#[test]
fn invisible_characters_that_reorder_text_are_escaped() {
    let line = FILE_DENIED.replace(
        "name=\"/etc/shadow\"",
        &format!(
            "name={}",
            "/tmp/\u{202E}gpj.exe"
                .bytes()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        ),
    );
    let r = refusal_of(&record(&line)).unwrap();
    assert_eq!(r.target, "/tmp/\\u{202e}gpj.exe");
}
