//! The denial storm benchmark (`make bench-denials`): one agent with `--denials` reads
//! 100 000 denials in one minute, every one of a different path (the worst case: each would
//! be a series of its own), and the benchmark prints the agent's CPU and peak memory, the
//! Events it wrote and how many denials it counted.
//!
//! What is simulated: the node (the agent runs on this machine), auditd (a file the
//! benchmark appends real-shaped records to) and the host's /proc (a directory whose
//! `<pid>/cgroup` names the pod). The API server, etcd, the operator and the agent are real.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use palisade_domain::{AppArmorProfile, NodeProfileStatus};
use serde_json::json;

use crate::bench::{cpu_seconds, rss_mib};
use crate::cluster::{Cluster, Options, apply_json, scrape_metrics, wait_for, wait_installed};
use crate::controlplane::ControlPlane;

const CONTAINER: &str = "4b1a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef";

/// Runs the storm: `total` denials spread over `seconds`.
pub async fn run(dir: &Path, total: usize, seconds: u64) -> Result<()> {
    let t0 = Instant::now();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let log = dir.join("audit.log");
    std::fs::write(&log, "")?;
    let proc_root = dir.join("proc");
    let cp = ControlPlane::start(&dir.join("cluster")).await?;
    let cluster = Cluster::start_on(cp, Options::denials(1, &log, &proc_root)).await?;
    let client = cluster.cp.client().await?;
    apply_json(
        &client,
        json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": "storm"},
               "spec": {"mode": "Enforce", "policy": "profile storm {\n  file,\n  deny /data/** w,\n}\n"}}),
    )
    .await?;
    wait_installed(&Api::<AppArmorProfile>::all(client.clone()), "storm", 1).await?;
    let mut items = crate::cluster::denials_rbac("palisade-agent-storm");
    items.push(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "storm", "namespace": "default"},
         "spec": {"nodeName": "node-0", "containers": [{"name": "writer", "image": "app:1",
             "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "storm"}}}]}}),
    );
    cluster.apply_list("objects", &items)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "writer",
        "containerID": format!("containerd://{CONTAINER}"), "image": "app:1", "imageID": "", "ready": true, "restartCount": 0}]}});
    pods.patch_status("storm", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let uid = pods.get("storm").await?.metadata.uid.context("uid")?;
    let reports: Api<NodeProfileStatus> = Api::all(client.clone());
    wait_for("the pod published to its node", Duration::from_secs(60), || async {
        Ok((!reports.get("node-0").await?.spec.learning_pods.is_empty()).then_some(()))
    })
    .await?;
    std::fs::create_dir_all(proc_root.join("5001"))?;
    std::fs::write(
        proc_root.join("5001/cgroup"),
        format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CONTAINER}.scope\n",
            uid.replace('-', "_")
        ),
    )?;

    let pid = cluster.agents["node-0"].proc.as_ref().context("agent")?.pid();
    let (cpu0, rss0) = (cpu_seconds(pid), rss_mib(pid));
    say(&format!("{total} denials in {seconds} s, each of another path"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log)?;
    let ticks = seconds * 10;
    let per_tick = total.div_ceil(ticks as usize);
    let start = Instant::now();
    let mut written = 0usize;
    let mut peak = rss0;
    for tick in 0..ticks {
        let mut batch = String::with_capacity(per_tick * 220);
        for _ in 0..per_tick.min(total - written) {
            written += 1;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            batch.push_str(&format!(
                "type=AVC msg=audit({}.{:03}:{written}): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"storm\" name=\"/data/f{written}\" pid=5001 comm=\"writer\" requested_mask=\"w\" denied_mask=\"w\" fsuid=0 ouid=0\n",
                now.as_secs(),
                now.subsec_millis()
            ));
        }
        f.write_all(batch.as_bytes())?;
        if tick % 10 == 0 {
            peak = peak.max(rss_mib(pid));
        }
        let due = Duration::from_millis((tick + 1) * 100);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    f.flush()?;
    // Until the agent has counted every denial (it reads every 500 ms).
    let metric = format!("palisade_agent_denials_total{{kind=\"apparmor\",profile=\"storm\"}} {written}");
    let port = cluster.agents["node-0"].metrics_port;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !scrape_metrics(port).await?.contains(&metric) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent did not count {written} denials in time"
        );
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    peak = peak.max(rss_mib(pid));
    let metrics = scrape_metrics(port).await?;
    let event_writes: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("palisade_agent_denial_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let events: Api<Event> = Api::all(client);
    let stored = events
        .list(&ListParams::default().fields("reason=AppArmorDenied"))
        .await?
        .items
        .len();
    let budget = palisade_domain::denials::WRITE_BURST + took * palisade_domain::denials::WRITES_PER_SEC;
    println!(
        "denial storm: {written} denials of distinct paths in {seconds} s, counted in {took:.1} s\n\
         agent CPU: {cpu:.2} s ({:.1}% of a core)\n\
         agent RSS: {rss0:.1} MiB before, {peak:.1} MiB at most\n\
         Event writes: {event_writes:.0} (budget {budget:.0}: {} at once, then {}/s); Events stored: {stored}",
        cpu * 100.0 / took,
        palisade_domain::denials::WRITE_BURST,
        palisade_domain::denials::WRITES_PER_SEC,
    );
    println!(
        "BENCH denials={written} denials_seconds={took:.1} denials_cpu_s={cpu:.2} denials_rss_before_mib={rss0:.1} denials_rss_peak_mib={peak:.1} denials_event_writes={event_writes:.0} denials_events_stored={stored}"
    );
    anyhow::ensure!(
        event_writes <= budget.ceil(),
        "{event_writes} Event writes exceed the budget of {budget:.0}"
    );
    Ok(())
}
