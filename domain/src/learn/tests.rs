use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::common::ProfileKind;

fn rule_of(line: &str) -> String {
    apparmor_rule(&parse_line(line).expect("a record")).expect("a rule")
}

#[test]
fn the_four_log_formats_parse_to_the_same_record() {
    let fields = r#"apparmor="ALLOWED" operation="open" class="file" profile="web" name="/etc/app.conf" pid=412 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    let lines = [
        format!("5,1234,98765432,-;audit: type=1400 audit(1763900000.123:45): {fields}"),
        format!("[   98.765432] audit: type=1400 audit(1763900000.123:45): {fields}"),
        format!("<5>[   98.765432] audit: type=1400 audit(1763900000.123:45): {fields}"),
        format!("type=AVC msg=audit(1763900000.123:45): {fields}"),
    ];
    let records: Vec<Record> = lines.iter().map(|l| parse_line(l).expect(l)).collect();
    for r in &records {
        assert_eq!(r, &records[0]);
    }
    let r = &records[0];
    assert_eq!((r.serial, r.kind), (45, RecordKind::AppArmor));
    assert_eq!(r.api_time().0.as_millisecond(), 1_763_900_000_123);
    assert_eq!(r.field("name"), Some("/etc/app.conf"));
    assert_eq!(apparmor_rule(r).unwrap(), "owner /etc/app.conf r,");
    // Other record types and other lines are not records.
    assert!(parse_line("audit: type=1300 audit(1763900000.123:46): arch=c000003e syscall=257").is_none());
    assert!(parse_line("[    1.0] eth0: link up").is_none());
}

#[test]
fn hex_encoded_values_are_decoded() {
    // The kernel hex-encodes a name with a space in it.
    let r = parse_line(
        "audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" operation=\"open\" class=\"file\" profile=\"p\" name=2F746D702F6120622E747874 pid=1 comm=\"sh\" requested_mask=\"w\" denied_mask=\"w\" fsuid=0 ouid=1000",
    )
    .unwrap();
    assert_eq!(r.field("name"), Some("/tmp/a b.txt"));
    assert_eq!(
        apparmor_rule(&r).unwrap(),
        "\"/tmp/a b.txt\" w,",
        "quoted; fsuid != ouid: no owner"
    );
    // auditd's ENRICHED form: the interpreted fields after 0x1d are not the record's.
    let enriched = parse_line("type=SECCOMP msg=audit(1.0:2): pid=1 comm=\"sh\" arch=c000003e syscall=0 compat=0 ip=0x1 code=0x7ffc0000\x1dARCH=x86_64 SYSCALL=read AUID=\"unset\"").unwrap();
    assert_eq!(seccomp_syscall(&enriched).unwrap(), "read");
}

#[test]
fn rules_for_each_class() {
    let rec =
        |f: &str| format!("audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" profile=\"p\" pid=9 comm=\"x\" {f}");
    assert_eq!(
        rule_of(&rec(r#"operation="capable" class="cap" capability=0 capname="chown""#)),
        "capability chown,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="create" class="net" family="inet" sock_type="stream" protocol=6 requested_mask="create" denied_mask="create""#
        )),
        "network inet stream,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="signal" class="signal" requested_mask="send" denied_mask="send" signal=term peer="p""#
        )),
        "signal (send) set=(term) peer=p,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="ptrace" class="ptrace" requested_mask="read" denied_mask="read" peer="unconfined""#
        )),
        "ptrace (read) peer=unconfined,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="bind" class="unix" family="unix" sock_type="stream" protocol=0 requested_mask="bind" denied_mask="bind" addr=none"#
        )),
        "unix (bind) type=stream,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="exec" class="file" info="no new privs" name="/bin/busybox" requested_mask="x" denied_mask="x" fsuid=0 ouid=0 target="p//null-/bin/busybox""#
        )),
        "owner /bin/busybox ix,"
    );
    assert_eq!(
        rule_of(&rec(
            r#"operation="mknod" class="file" name="/run/app.pid" requested_mask="c" denied_mask="c" fsuid=0 ouid=0"#
        )),
        "owner /run/app.pid w,",
        "creating a file needs write"
    );
    let disconnected = parse_line(&rec(
        r#"operation="open" class="file" info="Failed name lookup - disconnected path" error=-13 name="dev/null" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
    ))
    .unwrap();
    assert!(apparmor_rule(&disconnected).unwrap_err().contains("disconnected"));
    let mount = parse_line(&rec(r#"operation="mount" class="mount" name="/mnt""#)).unwrap();
    assert!(apparmor_rule(&mount).is_err());
}

#[test]
fn children_hats_and_learning_children_belong_to_their_profile() {
    for (profile, root) in [
        ("web", "web"),
        ("web//null-/bin/cat", "web"),
        ("web//child", "web"),
        ("web^hat", "web"),
    ] {
        let r = parse_line(&format!(
            "audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" operation=\"open\" profile=\"{profile}\" name=\"/x\" requested_mask=\"r\""
        ))
        .unwrap();
        assert_eq!(apparmor_root(&r), Some(root));
    }
    // Where each one's rules go.
    for (profile, scope, rule) in [
        ("web//null-/bin/cat", None, "/x r,"),
        ("web//child", Some("//child"), "//child /x r,"),
        ("web^hat", Some("^hat"), "^hat /x r,"),
        ("web//child//null-/bin/sh", Some("//child"), "//child /x r,"),
    ] {
        let r = parse_line(&format!(
            "audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" operation=\"open\" profile=\"{profile}\" name=\"/x\" requested_mask=\"r\" fsuid=0 ouid=1"
        ))
        .unwrap();
        assert_eq!(apparmor_scope(&r).as_deref(), scope, "{profile}");
        assert_eq!(apparmor_scoped_rule(&r).unwrap(), rule);
    }
    let runc = parse_line(
        "audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" operation=\"open\" profile=\"web\" name=\"/proc/self/fd\" comm=\"runc:[2:INIT]\" requested_mask=\"r\"",
    )
    .unwrap();
    assert!(by_runtime(&runc));
}

#[test]
fn paths_are_generalised_as_aa_logprof_offers_and_no_wider() {
    for (path, want) in [
        ("/proc/1234/status", "@{PROC}/@{pid}/status"),
        ("/proc/1/task/17/comm", "@{PROC}/@{pid}/task/@{pid}/comm"),
        ("/proc/sys/kernel/ngroups_max", "@{PROC}/sys/kernel/ngroups_max"),
        ("/proc/self", "@{PROC}/self"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/@{multiarch}/libc.so*"),
        ("/lib/aarch64-linux-gnu/libssl.so.3.0.1", "/lib/@{multiarch}/libssl.so*"),
        ("/dev/pts/3", "/dev/pts/[0-9]*"),
        ("/var/log/app.log.1", "/var/log/app.log.[0-9]*"),
        ("/tmp/worker-17", "/tmp/worker-[0-9]*"),
        ("/etc/app.conf", "/etc/app.conf"),
        ("/run/app.pid", "/run/app.pid"),
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/", "/"),
        // Names with pattern characters match themselves; spaces, commas and # are quoted.
        ("/data/f[1].txt", "/data/f\\[1\\].txt"),
        ("/data/a*b/c", "/data/a\\*b/c"),
        ("/x#y", "\"/x#y\""),
        ("/srv/my app/run-12", "\"/srv/my app/run-[0-9]*\""),
    ] {
        let got = generalise(path);
        assert_eq!(got, want, "{path}");
        assert!(!got.contains("**"), "never a blanket glob: {got}");
    }
}

#[test]
fn combine_gives_one_rule_per_path_with_the_union_of_permissions() {
    let rules: Vec<String> = [
        "owner /run/app.pid w,",
        "owner /run/app.pid r,",
        "/run/app.pid r,",
        "capability chown,",
        "owner /bin/busybox ix,",
        "owner /bin/busybox r,",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        combine(&rules),
        [
            "/run/app.pid r,",
            "capability chown,",
            "owner /bin/busybox rix,",
            "owner /run/app.pid rw,"
        ]
    );
}

#[test]
fn rules_go_inside_the_profile_block_once() {
    let policy = "#include <tunables/global>\n\nprofile web flags=(attach_disconnected) {\n  #include <abstractions/base>\n  /etc/{passwd,group} r,\n  @{PROC}/@{pid}/stat r,\n}\n";
    let rules: Vec<String> = ["owner /run/app.pid w,", "capability chown,", "/etc/{passwd,group} r,"]
        .map(String::from)
        .to_vec();
    let (out, added) = add_to_policy(policy, &rules, "2026-11-23").unwrap();
    assert_eq!(
        added,
        ["capability chown,", "owner /run/app.pid w,"],
        "the present rule is skipped"
    );
    assert_eq!(
        out,
        "#include <tunables/global>\n\nprofile web flags=(attach_disconnected) {\n  #include <abstractions/base>\n  /etc/{passwd,group} r,\n  @{PROC}/@{pid}/stat r,\n  # learned by palisade (2026-11-23)\n  capability chown,\n  owner /run/app.pid w,\n}\n"
    );
    // Idempotent: applying again adds nothing and changes nothing.
    let (again, added) = add_to_policy(&out, &rules, "2026-11-24").unwrap();
    assert!(added.is_empty());
    assert_eq!(again, out);

    // A profile on one line, without tunables: the include comes first.
    let (out, _) = add_to_policy("profile p { }", &["@{PROC}/@{pid}/status r,".to_string()], "t").unwrap();
    assert_eq!(
        out,
        "include <tunables/global>\nprofile p { \n  # learned by palisade (t)\n  @{PROC}/@{pid}/status r,\n}"
    );
    assert!(add_to_policy("# nothing here\n", &["capability chown,".to_string()], "t").is_err());
    // A hat's and a child's rules go into their own blocks, at their depth.
    let policy = "profile web {\n  /a r,\n  ^hat {\n    /b r,\n  }\n  profile child {\n  }\n}\n";
    let rules: Vec<String> = ["^hat capability chown,", "//child /c r,", "/d r,", "^hat /b r,"]
        .map(String::from)
        .to_vec();
    let (out, added) = add_to_policy(policy, &rules, "t").unwrap();
    assert_eq!(added.len(), 3, "{added:?}");
    assert_eq!(
        out,
        "profile web {\n  /a r,\n  ^hat {\n    /b r,\n    # learned by palisade (t)\n    capability chown,\n  }\n  profile child {\n    # learned by palisade (t)\n    /c r,\n  }\n  # learned by palisade (t)\n  /d r,\n}\n"
    );
    assert!(
        add_to_policy(policy, &["^other /x r,".to_string()], "t")
            .unwrap_err()
            .contains("^other")
    );
    // An empty block, a rule against the brace, a hat, a comment after the brace.
    let r = ["capability chown,".to_string()];
    for policy in [
        "profile p {}",
        "profile p { /a r,}",
        "profile p { # the app\n  /a r,\n  ^hat {\n    /b r,\n  }\n} # end\n",
    ] {
        let (out, _) = add_to_policy(policy, &r, "t").unwrap();
        let at = out.find("capability chown,").unwrap();
        let tail = &out[at..];
        assert!(
            !tail.contains("^hat") && !tail.contains("/b r,"),
            "after the hat: {out}"
        );
        assert!(
            tail.trim_end().trim_end_matches("# end").trim_end().ends_with('}'),
            "{out}"
        );
    }
}

#[test]
fn the_editor_finds_the_blocks_the_policy_checks_find() {
    use crate::render::apparmor::check_policy;
    let chown = ["capability chown,".to_string()];
    // `{app,}` is an alternation with an empty branch: its closing brace, after a comma,
    // closes no block.
    let policy = "profile p {\n  /etc/{app,} r,\n}\n";
    check_policy("p", policy).unwrap();
    let (out, added) = add_to_policy(policy, &chown, "t").unwrap();
    assert_eq!(added, chown);
    assert_eq!(
        out,
        "profile p {\n  /etc/{app,} r,\n  # learned by palisade (t)\n  capability chown,\n}\n"
    );
    check_policy("p", &out).unwrap();
    // A brace that touches its word opens no block, and braces must balance: what the
    // checks refuse, the editor does not guess at.
    for policy in ["profile p{\n}\n", "profile p {\n  /a r,\n"] {
        assert!(check_policy("p", policy).is_err(), "{policy:?}");
        assert!(add_to_policy(policy, &chown, "t").is_err(), "{policy:?}");
    }
}

#[test]
fn abstract_lists_take_what_they_can_express() {
    let mut abs = crate::apparmor::AppArmorAbstract::default();
    let rules: Vec<String> = [
        "owner /bin/busybox ix,",
        "owner /etc/app.conf r,",
        "owner /run/app.pid w,",
        "/var/cache/app rw,",
        "/usr/lib/@{multiarch}/libz.so* m,",
        "capability net_bind_service,",
        "network inet stream,",
        "signal (send) set=(term) peer=web,",
    ]
    .map(String::from)
    .to_vec();
    let (added, unexpressed) = add_to_abstract(&mut abs, &rules);
    assert_eq!(unexpressed, ["signal (send) set=(term) peer=web,"]);
    assert_eq!(added.len(), 7);
    let v = serde_json::to_value(&abs).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "executable": {"allowedExecutables": ["/bin/busybox"], "allowedLibraries": ["/usr/lib/@{multiarch}/libz.so*"]},
            "filesystem": {"readOnlyPaths": ["/etc/app.conf"], "writeOnlyPaths": ["/run/app.pid"], "readWritePaths": ["/var/cache/app"]},
            "network": {"allowedProtocols": {"allowTcp": true}},
            "capability": {"allowedCapabilities": ["net_bind_service"]},
        })
    );
    let (added, _) = add_to_abstract(&mut abs, &rules);
    assert!(added.is_empty(), "idempotent: {added:?}");
    // A read-only path that was also written moves to read-write (read-only would deny
    // the write in Enforce mode); a lock without write is not expressible.
    let (added, unexpressed) = add_to_abstract(
        &mut abs,
        &["owner /etc/app.conf w,".to_string(), "/var/lock/app k,".to_string()],
    );
    assert_eq!(added, ["owner /etc/app.conf w,"]);
    assert_eq!(unexpressed, ["/var/lock/app k,"]);
    let fs = abs.filesystem.as_ref().unwrap();
    assert!(fs.read_only_paths.is_empty());
    assert!(fs.read_write_paths.contains(&"/etc/app.conf".into()));
}

#[test]
fn seccomp_records_name_the_syscall_for_their_architecture() {
    let rec = |arch: &str, nr: u32, code: &str| {
        parse_line(&format!(
            "audit: type=1326 audit(1763900000.5:77): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=cri-containerd.apparmor.d pid=812 comm=\"sh\" exe=\"/bin/busybox\" sig=0 arch={arch} syscall={nr} compat=0 ip=0x4a1b2c code={code}"
        ))
        .unwrap()
    };
    assert_eq!(seccomp_syscall(&rec("c000003e", 257, "0x7ffc0000")).unwrap(), "openat");
    assert_eq!(seccomp_syscall(&rec("c00000b7", 56, "0x7ffc0000")).unwrap(), "openat");
    assert_eq!(seccomp_syscall(&rec("40000003", 5, "0x7ffc0000")).unwrap(), "open");
    assert_eq!(
        seccomp_syscall(&rec("c000003e", 0x4000_0101, "0x7ffc0000")).unwrap(),
        "openat",
        "x32"
    );
    assert!(
        seccomp_syscall(&rec("c000003e", 257, "0x50001")).is_err(),
        "an errno record is not learned"
    );
    assert!(seccomp_syscall(&rec("deadbeef", 1, "0x7ffc0000")).is_err());
    let auditd = parse_line("type=SECCOMP msg=audit(1763900000.5:78): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=812 comm=\"sh\" exe=\"/bin/busybox\" sig=0 arch=c000003e syscall=49 compat=0 ip=0x4a1b2c code=0x7ffc0000").unwrap();
    assert_eq!(auditd.kind, RecordKind::Seccomp);
    assert_eq!(seccomp_syscall(&auditd).unwrap(), "bind");
}

#[test]
fn seccomp_suggestions_are_one_allow_rule_added_once() {
    let mut spec: crate::seccomp::SeccompProfileSpec = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
    }))
    .unwrap();
    assert!(seccomp_logs(&spec));
    let names: Vec<String> = ["write", "read", "openat", "write"].map(String::from).to_vec();
    assert_eq!(add_to_seccomp(&mut spec, &names), ["openat", "write"]);
    assert_eq!(spec.syscalls.len(), 2);
    assert!(add_to_seccomp(&mut spec, &names).is_empty());
    assert_eq!(spec.syscalls.len(), 2);
    spec.syscalls
        .push(serde_json::from_value(serde_json::json!({"names": ["openat"], "action": "SCMP_ACT_LOG"})).unwrap());
    assert!(enforce_seccomp(&mut spec));
    assert!(!seccomp_logs(&spec), "neither the default nor a rule logs");
    assert_eq!(spec.default_action, crate::seccomp::SeccompAction::Errno);
    assert_eq!(spec.syscalls.len(), 2, "the LOG rule went");
    assert!(!enforce_seccomp(&mut spec));
}

#[test]
fn merging_nodes_counts_permissions_and_keeps_first_and_last_seen() {
    let t = |ms: i64| Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap());
    let rule = |r: &str, count: u64, first: i64, last: i64| LearnedRule {
        rule: r.into(),
        count,
        first_seen: t(first),
        last_seen: t(last),
    };
    let learned = |digest: &str, rules: Vec<LearnedRule>| LearnedProfile {
        kind: ProfileKind::AppArmorProfile,
        name: "web".into(),
        uid: "u".into(),
        digest: digest.into(),
        rules,
        omitted_rules: 0,
    };
    let a = learned(
        "d1",
        vec![
            rule("capability chown,", 2, 1000, 5000),
            rule("network inet stream,", 1, 3000, 3000),
        ],
    );
    let b = learned("d1", vec![rule("capability chown,", 5, 500, 9000)]);
    let old = learned("d0", vec![rule("capability kill,", 1, 100, 100)]);
    let m = merge("d1", [("node-a", &a), ("node-b", &b), ("node-c", &old)]).unwrap();
    assert_eq!(
        (m.new_permissions, m.nodes),
        (2, 2),
        "the old content's report is left out"
    );
    assert_eq!(m.last_new_at, Some(t(3000)));
    let chown = &m.suggestions[0];
    assert_eq!(chown.rule, "capability chown,");
    assert_eq!((chown.count, chown.node_count), (7, 2));
    assert_eq!((chown.first_seen.clone(), chown.last_seen.clone()), (t(500), t(9000)));
    assert_eq!(chown.nodes, ["node-a", "node-b"]);
    assert!(merge("d2", [("node-a", &a)]).is_none());
}

// Fixtures: kernel log records captured on the real node (Debian bookworm kernel
// 6.1.0-56-amd64, containerd 1.6.20, runc 1.1.5, kubelet v1.37.1, no auditd, 2026-11-23), as
// /dev/kmsg and dmesg print them. A busybox pod ran under the AppArmor profile
//   profile learn-demo flags=(attach_disconnected,mediate_deleted) { }
// in Complain mode, doing: write and read /tmp/app.conf, read /etc/hostname, write
// /tmp/app.pid and /run/app.pid, listen with nc on TCP 8080 and kill it, chown and chmod a
// file, read /proc/self/status and /proc/1/cmdline, send SIGTERM to a child. A second pod
// ran under a seccomp profile `{defaultAction: SCMP_ACT_LOG}` doing cat, echo, nc -l, sleep.
// `-noratelimit` files were captured with kernel.printk_ratelimit=0; `apparmor-complain.kmsg`
// with the default rate limit (10 of 44 records printed); `ratelimit-suppressed.kmsg` holds
// the kernel's notice of the dropped ones.

fn fixture_rules(text: &str) -> Vec<String> {
    rules_of(text, "learn-demo")
}

/// The combined rules the records of profile `root` (and its children) in `text` give.
fn rules_of(text: &str, root: &str) -> Vec<String> {
    let rules: Vec<String> = text
        .lines()
        .filter_map(parse_line)
        .filter(|r| apparmor_root(r) == Some(root) && !by_runtime(r))
        .filter_map(|r| apparmor_rule(&r).ok())
        .collect();
    combine(&rules)
}

#[test]
fn real_apparmor_records_become_the_workloads_rules() {
    let kmsg = include_str!("fixtures/apparmor-complain-noratelimit.kmsg");
    let dmesg = include_str!("fixtures/apparmor-complain-noratelimit.dmesg");
    assert_eq!(kmsg.lines().count(), 41);
    assert!(kmsg.lines().all(|l| parse_line(l).is_some()), "every line is a record");
    let rules = fixture_rules(kmsg);
    assert_eq!(rules, fixture_rules(dmesg), "both log forms give the same rules");
    assert_eq!(
        rules,
        [
            // chown of a file owned by another user: no owner qualifier.
            "/tmp/x w,",
            "capability fowner,",
            "capability fsetid,",
            // The exec of a child, which ran as learn-demo//null-/bin/busybox: it inherits.
            "owner /bin/busybox rix,",
            "owner /dev/null rw,",
            "owner /etc/hostname r,",
            "owner /run/ w,",
            "owner /run/app.pid w,",
            "owner /tmp/app.conf rw,",
            "owner /tmp/app.pid w,",
            "owner /tmp/x rw,",
            "owner @{PROC}/@{pid}/cmdline r,",
            "owner @{PROC}/@{pid}/status r,",
            "signal (receive) set=(term) peer=learn-demo,",
            "signal (send) set=(term) peer=learn-demo,",
        ]
    );
}

/// The same complain-mode policy run by the host on both kinds of real node (the real-node
/// suite prints these records): Debian 12's kernel 6.1 and Debian unstable's kernel 7.2,
/// whose records also carry `class="file"` and report `getattr`.
#[test]
fn kernel_6_and_kernel_7_records_give_the_same_rules() {
    let rules = |text: &str| -> Vec<String> {
        assert!(text.lines().all(|l| parse_line(l).is_some()), "every line is a record");
        rules_of(text, "hostcmp-rn-aa3-classic")
    };
    let k6 = include_str!("fixtures/apparmor-complain-kernel6.1.kmsg");
    let k7 = include_str!("fixtures/apparmor-complain-kernel7.2.kmsg");
    assert!(k7.lines().all(|l| l.contains(r#"class="file""#)) && !k6.contains("class="));
    assert!(k7.contains(r#"operation="getattr""#) && !k6.contains("getattr"));
    let common = [
        "owner /etc/hostname r,",
        "owner /etc/ld.so.cache r,",
        "owner /usr/bin/chown rix,",
        "owner /usr/lib/@{multiarch}/ld-linux-x86-64.so* r,",
        // (the libc line differs below only because printk's rate limit let kernel 6's
        // mmap record of libc through and kernel 7's not)
        "owner /usr/lib/@{multiarch}/libc.so* LIBC,",
        "owner /var/tmp/rn-record w,",
    ];
    let with = |libc: &str| -> Vec<String> { common.iter().map(|r| r.replace("LIBC", libc)).collect() };
    assert_eq!(rules(k6), with("rm"), "kernel 6.1");
    assert_eq!(rules(k7), with("r"), "kernel 7.2: getattr and class= change nothing");
}

#[test]
fn rate_limited_logs_still_parse_and_say_what_was_dropped() {
    let text = include_str!("fixtures/apparmor-complain.kmsg");
    // Status records (profile loads) are records but no rule.
    let records: Vec<Record> = text.lines().filter_map(parse_line).collect();
    assert_eq!(records.len(), 16);
    let allowed = records.iter().filter(|r| apparmor_rule(r).is_ok()).count();
    assert_eq!(allowed, 10, "printk let 10 of the pod's 44 records through");
    let suppressed = include_str!("fixtures/ratelimit-suppressed.kmsg");
    assert!(
        suppressed
            .lines()
            .any(|l| l.contains("kauditd_printk_skb") && l.contains("callbacks suppressed"))
    );
}

#[test]
fn real_seccomp_records_name_the_syscalls_of_workload_and_runtime() {
    let text = include_str!("fixtures/seccomp-log-noratelimit.kmsg");
    let records: Vec<Record> = text.lines().filter_map(parse_line).collect();
    assert_eq!(records.len(), 346);
    assert!(records.iter().all(|r| r.kind == RecordKind::Seccomp));
    let names: BTreeSet<String> = records.iter().map(|r| seccomp_syscall(r).unwrap()).collect();
    // The workload: nc's socket calls, sleep, cat; runc's own after the filter is set
    // (the runtime needs these too to start the container under the filter).
    for n in [
        "socket",
        "bind",
        "listen",
        "accept",
        "clock_nanosleep",
        "openat",
        "execve",
        "capset",
        "setuid",
    ] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
    assert_eq!(names.len(), 48);
    let serials: Vec<u64> = records.iter().map(|r| r.serial).collect();
    assert!(
        serials.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps without the rate limit"
    );
}

/// Hostile input: text a workload can make appear in the kernel log, or fields shaped to
/// write something other than a learned rule. None of it may become a suggestion.
#[test]
fn only_the_audit_subsystem_speaks_for_the_kernel_log() {
    let fields = r#"apparmor="ALLOWED" operation="open" class="file" profile="web" name="/etc/app.conf" pid=412 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    let real = format!("<5>[   98.765432] audit: type=1400 audit(1763900000.123:45): {fields}");
    assert!(parse_from(&real, LineSource::KernelLog).is_some());
    for forged in [
        // Written to /dev/kmsg by user space: the user facility (1 << 3 | 5).
        format!("<13>[   98.765432] audit: type=1400 audit(1763900000.123:45): {fields}"),
        // Another kernel message that printed a workload's string (a program name) first.
        format!("<5>[   98.765432] evil[123]: audit: type=1400 audit(1763900000.123:45): {fields}"),
        format!("<4>[   98.765432] audit: type=1400 audit(1763900000.123:45): {fields}"),
        format!("<5>[   98.765432] x type=1400 audit(1763900000.123:45): {fields}"),
    ] {
        assert!(parse_from(&forged, LineSource::KernelLog).is_none(), "{forged}");
    }
    // auditd's file takes only auditd's own line shape.
    assert!(parse_from(&format!("type=AVC msg=audit(1.0:2): {fields}"), LineSource::AuditLog).is_some());
    assert!(
        parse_from(
            &format!("junk type=AVC msg=audit(1.0:2): {fields}"),
            LineSource::AuditLog
        )
        .is_none()
    );
    // A user-space audit message (CAP_AUDIT_WRITE, which containers have by default) whose
    // text held a newline and then a record: auditd 3.0.9 (Debian 12) wrote the newline as
    // a space, so the forged record is the middle of a USER_AVC line. Captured from auditd.
    let captured = "type=USER_AVC msg=audit(1796595894.890:2): pid=8545 uid=0 auid=4294967295 ses=4294967295 msg='palisade-auditd-forge type=AVC msg=audit(1796595894.892:4242): apparmor=\"ALLOWED\" operation=\"open\" profile=\"x\" name=\"/forged/secret\"'\u{1d}UID=\"root\" AUID=\"unset\"";
    assert!(parse_from(captured, LineSource::AuditLog).is_none());
    assert!(parse_from(captured, LineSource::Any).is_none());
}

#[test]
fn fields_that_would_write_other_rules_are_refused() {
    let rec = |f: &str| {
        format!("<5>[ 1.0] audit: type=1400 audit(1.0:1): apparmor=\"ALLOWED\" profile=\"p\" pid=9 comm=\"x\" {f}")
    };
    // A value that closes its quote early leaves text the grammar does not take.
    assert!(
        parse_from(
            &rec(r#"operation="open" class="file" name="/x" /** rwlkmix," requested_mask="r""#),
            LineSource::KernelLog
        )
        .is_none()
    );
    // Each field shaped to smuggle a rule in: the record gives no rule.
    for f in [
        r#"operation="capable" class="cap" capability=0 capname="chown, /** rwlkmix""#,
        r#"operation="signal" class="signal" signal=kill peer="x, change_profile -> unconfined" requested_mask="send""#,
        r#"operation="create" class="net" family="inet, /** rwlkmix" sock_type="stream""#,
        r#"operation="create" class="unix" sock_type="stream, /** w" requested_mask="create""#,
    ] {
        let r = parse_from(&rec(f), LineSource::KernelLog).expect(f);
        assert!(apparmor_scoped_rule(&r).is_err(), "{f}: {:?}", apparmor_scoped_rule(&r));
    }
    // A file whose name is a glob is learned as that one file, its pattern escaped.
    let r = parse_from(
        &rec(r#"operation="open" class="file" name="/**" requested_mask="r" fsuid=0 ouid=0"#),
        LineSource::KernelLog,
    )
    .unwrap();
    assert_eq!(apparmor_scoped_rule(&r).unwrap(), "owner /\\*\\* r,");
    // A child profile name that is not a name.
    let r = parse_from(
        &rec(r#"operation="open" class="file" name="/x" requested_mask="r""#)
            .replace("profile=\"p\"", "profile=\"p//a,b\""),
        LineSource::KernelLog,
    )
    .unwrap();
    assert!(apparmor_scoped_rule(&r).is_err());
}

#[test]
fn the_rule_grammar_takes_learned_rules_and_nothing_else() {
    use crate::common::ProfileKind::{AppArmorProfile as AA, SeccompProfile as SC};
    for ok in [
        "capability chown,",
        "owner /etc/app.conf r,",
        "\"/tmp/a b.txt\" w,",
        "@{PROC}/@{pid}/stat r,",
        "/usr/lib/@{multiarch}/libssl.so* mr,",
        "/var/log/worker-[0-9]* w,",
        "/bin/busybox rix,",
        "//child /x r,",
        "^hat network inet stream,",
        "signal (send) set=(term) peer=unconfined,",
        "ptrace (read) peer=web,",
        "unix (connect) type=stream,",
        "/\\*\\* r,",
    ] {
        assert!(is_learnable_rule(AA, ok), "{ok}");
    }
    for bad in [
        "/** rwlkmix,",
        "change_profile -> unconfined,",
        "/x r, /** w,",
        "owner /x rw",
        "/x rwx,",
        "/x Ux,",
        "capability chown,\n/** w,",
        "network inet, /** w,",
        "deny /x r,",
        "\"/x\" r, \"/y\" w,",
        "/tmp/{a,b} r,",
        "@{HOME}/** r,",
        "x r,",
    ] {
        assert!(!is_learnable_rule(AA, bad), "{bad}");
    }
    assert!(is_learnable_rule(SC, "openat"));
    assert!(!is_learnable_rule(SC, "openat,read"));
    assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
}

/// Captured on this machine's kernel (6.18): a container with only CAP_AUDIT_WRITE sent a
/// user-space audit message (type 1107) with newlines; without auditd the kernel prints it
/// at notice level, and `syslog(2)` gives each of its lines the record's own prefix. The
/// second line looks like an AppArmor record; it is a continuation and never one.
#[test]
fn a_user_space_audit_message_cannot_forge_a_kernel_record() {
    let read = "<6>[ 3742.700001] eth0: link up\n\
<5>[ 3742.704529] audit: type=1107 audit(1796587924.521:2): pid=12980 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='palisade-review-test-ns\n\
<5>[ 3742.704529] audit: type=1400 audit(1765000000.123:4242): apparmor=\"ALLOWED\" operation=\"open\" class=\"file\" profile=\"victim\" name=\"/etc/shadow\" pid=1 comm=\"x\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n\
<5>[ 3742.704529] end'\n\
<5>[ 3743.100000] audit: type=1400 audit(1796587925.000:3): apparmor=\"ALLOWED\" operation=\"open\" class=\"file\" profile=\"web\" name=\"/etc/app.conf\" pid=7 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n\
[ 3743.2] no level\n";
    let forged = read.lines().nth(2).unwrap();
    assert!(
        parse_from(forged, LineSource::KernelLog).is_some(),
        "alone, the forged line looks like a record: the test can fail"
    );
    let records: Vec<Record> = kernel_log_records(read)
        .into_iter()
        .filter_map(|l| parse_from(l, LineSource::KernelLog))
        .collect();
    let profiles: Vec<&str> = records.iter().filter_map(|r| r.field("profile")).collect();
    assert_eq!(profiles, ["web"], "only the real record, never the continuation");
}

#[test]
fn rules_that_read_one_way_here_and_another_way_in_the_parser_are_refused() {
    use crate::common::ProfileKind::AppArmorProfile as AA;
    for bad in [
        "\"/a\\@{pid}\" r, file, capability, network, change_profile -> unconfined, #\" r,",
        "/x\\@{pid}* rwlkmix,",
        "\"/a\\@{multi@{pid}arch}\" r, file, #\" r,",
        "\"/tmp/a \\\\\" r,",
        "/x@{HOME} r,",
    ] {
        assert!(!is_learnable_rule(AA, bad), "{bad}");
    }
    assert!(is_learnable_rule(AA, "@{PROC}/@{pid}/task/@{pid}/stat r,"));
    assert!(
        is_learnable_rule(AA, "/x/\\@\\{pid\\} r,"),
        "a file really named @{{pid}}, escaped"
    );
}

/// Captured on the real node (QEMU, kernel 6.1): a burst of seccomp records printed with one
/// stamp. Distinct kernel records sharing a prefix all count; what follows a user-space
/// message with the same prefix does not.
#[test]
fn a_burst_of_records_with_one_stamp_all_count() {
    let rec = |nr: u32| {
        format!(
            "<5>[  268.423198] audit: type=1326 audit(1796591340.732:{nr}): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=cri-containerd.apparmor.d pid=3460 comm=\"sh\" exe=\"/bin/busybox\" sig=0 arch=c000003e syscall={nr} compat=0 ip=0x460a63 code=0x7ffc0000"
        )
    };
    let burst: Vec<String> = (0..16).map(rec).collect();
    let read = burst.join("\n");
    assert_eq!(kernel_log_records(&read).len(), 16);
    // A user-space message in the middle of the burst: what follows it with the same
    // prefix may be its own lines, and counts no more.
    let mut mixed = burst[..3].to_vec();
    mixed.push("<5>[  268.423198] audit: type=1107 audit(1796591340.732:99): pid=1 uid=0 msg='x".into());
    mixed.push(rec(40));
    mixed.push("<5>[  268.500000] audit: type=1326 audit(1796591340.800:41): auid=0 uid=0 gid=0 ses=1 pid=3 comm=\"sh\" exe=\"/bin/sh\" sig=0 arch=c000003e syscall=41 compat=0 ip=0x1 code=0x7ffc0000".into());
    let mixed = mixed.join("\n");
    let kept: Vec<&str> = kernel_log_records(&mixed)
        .into_iter()
        .filter(|l| parse_from(l, LineSource::KernelLog).is_some())
        .collect();
    assert_eq!(kept.len(), 4, "{kept:#?}");
    assert!(!kept.iter().any(|l| l.contains("syscall=40 ")));
}
