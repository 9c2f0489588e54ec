//! Denials across the API: agents read the kernel's records of what a Palisade profile
//! refused, attribute them to pods, write aggregated Warning Events on the pod and on the
//! profile, count them in a metric, and `palisade denials` shows them.
//!
//! What is simulated: the nodes (agents on this machine, as in every e2e test), auditd,
//! whose log is a file this test appends records to (the text a real kernel writes, see
//! domain/src/denials/), and the host's /proc, a directory whose `<pid>/cgroup` files name
//! the processes' pods and containers (`--proc-root`). The real-node suite reads a real
//! kernel's records of real pods.

use std::io::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use palisade_domain::{AppArmorProfile, NodeProfileStatus, SeccompProfile};
use palisade_e2e::audit::{SimulatedAudit, record};
use palisade_e2e::cluster::{apply_json, scrape_metrics, wait_installed, wait_listed};
use palisade_e2e::{Cluster, Options, wait_for};
use serde_json::{Value, json};

const POLICY: &str = "#include <tunables/global>\n\nprofile deny-e2e flags=(attach_disconnected,mediate_deleted) {\n  file,\n  deny /etc/shadow r,\n}\n";
const CONTAINER: &str = "4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef";

fn avc(serial: u64, verdict: &str, fields: &str) -> String {
    record("AVC", serial, &format!("apparmor=\"{verdict}\" {fields}"))
}

fn seccomp(serial: u64, pid: u32, code: &str) -> String {
    record(
        "SECCOMP",
        serial,
        &format!(
            "auid=4294967295 uid=0 gid=0 ses=4294967295 subj=deny-e2e pid={pid} comm=\"mkdir\" exe=\"/bin/mkdir\" sig=31 arch=c000003e syscall=83 compat=0 ip=0x461189 code={code}"
        ),
    )
}

#[tokio::test]
async fn denials_become_aggregated_events_on_the_pod_and_the_profile_and_palisade_denials_shows_them() {
    let SimulatedAudit {
        dir: _dir,
        log,
        proc_root,
    } = SimulatedAudit::new().unwrap();
    let (cluster, client, _, _) = Cluster::started(Options::denials(2, &log, &proc_root)).await.unwrap();
    for profile in [
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": "deny-e2e"},
               "spec": {"mode": "Enforce", "policy": POLICY}}),
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": "kill-e2e"},
               "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}]}}),
    ] {
        apply_json(&client, profile).await.unwrap();
    }
    wait_installed(&Api::<AppArmorProfile>::all(client.clone()), "deny-e2e", 2)
        .await
        .unwrap();
    wait_installed(&Api::<SeccompProfile>::all(client.clone()), "kill-e2e", 2)
        .await
        .unwrap();

    // The chart's denials RBAC (`denials.enabled`): reports `get`, Events `create`/`patch`.
    let subdir = palisade_domain::SECCOMP_SUBDIR;
    let mut items = palisade_e2e::cluster::denials_rbac("palisade-agent-denials-e2e");
    items.extend([
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": "default"},
         "spec": {"nodeName": "node-0", "containers": [{"name": "web", "image": "app:1",
             "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "deny-e2e"},
                                 "seccompProfile": {"type": "Localhost", "localhostProfile": format!("{subdir}/kill-e2e.json")}}}]}}),
        // A pod whose container the kubelet reports only after its first denial.
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "namespace": "default"},
         "spec": {"nodeName": "node-0", "containers": [{"name": "late-c", "image": "app:1",
             "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "deny-e2e"}}}]}}),
        // A pod on the same node with no Palisade profile: its records are not Palisade's.
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": "default"},
         "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "app:1"}]}}),
    ]);
    cluster.apply_list("objects", &items).unwrap();
    // The kubelet's report of the container (no kubelet runs here).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "web", "containerID": format!("containerd://{CONTAINER}"),
        "image": "app:1", "imageID": "", "ready": true, "restartCount": 0}]}});
    pods.patch_status("app", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let uid = pods.get("app").await.unwrap().metadata.uid.unwrap();
    let plain_uid = pods.get("plain").await.unwrap().metadata.uid.unwrap();
    let late_uid = pods.get("late").await.unwrap().metadata.uid.unwrap();
    let late_container = "7".repeat(64);

    // The operator publishes the pod (an enforcing profile: denials publish every pod of a
    // Palisade profile), with its container's name, to node-0 only.
    let reports: Api<NodeProfileStatus> = Api::all(client.clone());
    let published = wait_for(
        "the operator to publish node-0's pods",
        Duration::from_secs(60),
        || async {
            let pods = reports.get("node-0").await?.spec.learning_pods;
            Ok(pods
                .into_iter()
                .find(|p| p.containers.iter().any(|c| c.name.as_deref() == Some("web"))))
        },
    )
    .await
    .unwrap();
    assert_eq!(published.apparmor, ["deny-e2e"]);
    assert_eq!(published.containers[0].seccomp.as_deref(), Some("kill-e2e"));
    assert!(reports.get("node-1").await.unwrap().spec.learning_pods.is_empty());

    // The host's /proc: 5001 is the app's container, 5002 the plain pod, 5003 the host.
    let cgroup = |pod: &str, container: &str| {
        format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{container}.scope\n",
            pod.replace('-', "_")
        )
    };
    for (pid, text) in [
        (5001, cgroup(&uid, CONTAINER)),
        (5002, cgroup(&plain_uid, &"e".repeat(64))),
        (5003, "0::/system.slice/cron.service\n".to_string()),
        (5004, cgroup(&late_uid, &late_container)),
    ] {
        std::fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
        std::fs::write(proc_root.join(pid.to_string()).join("cgroup"), text).unwrap();
    }

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let open = |pid: u32| {
        format!(
            r#"operation="open" class="file" profile="deny-e2e" name="/etc/shadow" pid={pid} comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#
        )
    };
    let mut serial = 100;
    let mut next = || {
        serial += 1;
        serial
    };
    for _ in 0..50 {
        f.write_all(avc(next(), "DENIED", &open(5001)).as_bytes()).unwrap();
    }
    f.write_all(
        avc(
            next(),
            "DENIED",
            r#"operation="capable" class="cap" profile="deny-e2e" pid=5001 comm="chown" capability=0 capname="chown""#,
        )
        .as_bytes(),
    )
    .unwrap();
    f.write_all(seccomp(next(), 5001, "0x80000000").as_bytes()).unwrap();
    // Not counted: allowed; a pod without the profile; the host; another profile; a log action.
    f.write_all(avc(next(), "ALLOWED", &open(5001)).as_bytes()).unwrap();
    f.write_all(avc(next(), "DENIED", &open(5002)).as_bytes()).unwrap();
    f.write_all(avc(next(), "DENIED", &open(5003)).as_bytes()).unwrap();
    f.write_all(avc(next(), "DENIED", &open(5001).replace("deny-e2e", "someone-else")).as_bytes())
        .unwrap();
    f.write_all(seccomp(next(), 5001, "0x7ffc0000").as_bytes()).unwrap();
    f.write_all(avc(next(), "DENIED", &open(5004)).as_bytes()).unwrap();
    // Processes that exited before their records were read (5999 is in no /proc): their pod
    // is not known. The AppArmor one names its profile; the seccomp one names no filter.
    f.write_all(avc(next(), "DENIED", &open(5999)).as_bytes()).unwrap();
    f.write_all(seccomp(next(), 5999, "0x80000000").as_bytes()).unwrap();
    // From before the agent started: not read as a denial.
    f.write_all(
        format!(
            "type=AVC msg=audit(1700000000.000:{}): apparmor=\"DENIED\" {}\n",
            next(),
            open(5001)
        )
        .as_bytes(),
    )
    .unwrap();
    f.flush().unwrap();
    // The late pod's container is reported a moment after its denial.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "late-c",
        "containerID": format!("containerd://{late_container}"), "image": "app:1", "imageID": "", "ready": true, "restartCount": 0}]}});
    pods.patch_status("late", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    // The pod's Events: one per (container, profile, operation, target), with counts.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let of_app = |e: &Event| e.involved_object.name.as_deref() == Some("app");
    let pod_events = wait_for("the pod's denial Events", Duration::from_secs(60), || async {
        let list = events.list(&ListParams::default()).await?.items;
        let mine: Vec<Event> = list.into_iter().filter(|e| of_app(e)).collect();
        Ok((mine.len() >= 3).then_some(mine))
    })
    .await
    .unwrap();
    assert_eq!(pod_events.len(), 3, "{pod_events:#?}");
    let find = |reason: &str, needle: &str| {
        pod_events
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("{reason} {needle} in {pod_events:#?}"))
    };
    let shadow = find("AppArmorDenied", "/etc/shadow");
    assert_eq!(shadow.count, Some(50));
    assert_eq!(shadow.type_.as_deref(), Some("Warning"));
    assert_eq!(shadow.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(shadow.reporting_instance.as_deref(), Some("node-0"));
    assert_eq!(
        shadow.message.as_deref(),
        Some("container web: AppArmorProfile deny-e2e denied open /etc/shadow (r), 50 times")
    );
    assert_eq!(find("AppArmorDenied", "capable chown").count, Some(1));
    let kill = find("SeccompDenied", "mkdir");
    assert!(
        kill.message
            .as_deref()
            .unwrap()
            .contains("SeccompProfile kill-e2e denied kill_process mkdir")
    );
    assert!(
        !events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("plain")),
        "the plain pod's records are not Palisade's"
    );

    // A denial that came before its container was reported names the container all the same.
    let late = wait_for("the late pod's Event", Duration::from_secs(60), || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|e| e.involved_object.name.as_deref() == Some("late")))
    })
    .await
    .unwrap();
    assert_eq!(
        late.message.as_deref(),
        Some("container late-c: AppArmorProfile deny-e2e denied open /etc/shadow (r), once")
    );

    // The profile's Event says how often, in how many pods, on which node.
    let profile_event = wait_for("the profile's denial Event", Duration::from_secs(60), || async {
        Ok(events.list(&ListParams::default()).await?.items.into_iter().find(|e| {
            e.involved_object.kind.as_deref() == Some("AppArmorProfile")
                && e.reason.as_deref() == Some("AppArmorDenied")
        }))
    })
    .await
    .unwrap();
    assert_eq!(profile_event.involved_object.name.as_deref(), Some("deny-e2e"));
    let msg = profile_event.message.unwrap();
    assert!(
        msg.starts_with("AppArmorProfile deny-e2e denied ") && msg.contains(" on node node-0 in the last "),
        "{msg}"
    );

    // The exited processes' denials: on the profile (AppArmor), on the node (seccomp).
    let exited = wait_listed(
        &events,
        "the exited processes' Events",
        |e| {
            e.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("palisade.dev/target"))
                && e.involved_object.kind.as_deref() != Some("Pod")
        },
        |list| list.len() >= 2,
    )
    .await
    .unwrap();
    let on = |kind: &str| {
        exited
            .iter()
            .find(|e| e.involved_object.kind.as_deref() == Some(kind))
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| panic!("an Event on the {kind}: {exited:#?}"))
    };
    assert_eq!(
        on("AppArmorProfile"),
        "AppArmorProfile deny-e2e denied open /etc/shadow (r) on node node-0, once, to a process that exited before its pod could be told"
    );
    assert!(on("Node").starts_with("seccomp: kill_process mkdir (signal 31) on node node-0, once"));

    // The metric, per kind and profile.
    let metrics = scrape_metrics(cluster.agents["node-0"].metrics_port).await.unwrap();
    assert!(
        metrics.contains("palisade_agent_denials_total{kind=\"apparmor\",profile=\"deny-e2e\"} 53"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_agent_denials_total{kind=\"seccomp\",profile=\"kill-e2e\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_agent_denials_total{kind=\"seccomp\",profile=\"(unattributed)\"} 1"),
        "{metrics}"
    );

    // `palisade denials`: from the API alone, newest first, with the node.
    let (ok, out, err) = cluster.palisade(&["denials", "--profile", "deny-e2e", "-o", "json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["denials"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "the pods' three and the exited process's: {out}");
    assert!(rows.iter().all(|r| r["node"] == "node-0"));
    assert_eq!(
        rows.iter()
            .filter(|r| r["pod"] == "app" && r["container"] == "web")
            .count(),
        2,
        "{out}"
    );
    assert!(rows[0]["lastSeen"].as_str() >= rows[1]["lastSeen"].as_str());
    assert!(v.get("hints").is_none(), "both nodes report denials: {out}");
    let (ok, table, _) = cluster.palisade(&["denials", "app", "-n", "default", "--since", "10m"]);
    assert!(ok);
    assert!(table.starts_with("LAST SEEN"), "{table}");
    assert!(
        table.contains("default/app") && table.contains("apparmor/deny-e2e") && table.contains("open /etc/shadow"),
        "{table}"
    );
    assert!(
        table.contains("seccomp/kill-e2e") && table.contains("kill_process mkdir"),
        "{table}"
    );
    let (ok, none, _) = cluster.palisade(&["denials", "-n", "kube-system"]);
    assert!(ok);
    assert!(none.starts_with("No denials found."), "{none}");
}
