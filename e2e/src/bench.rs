//! Benchmarks on the local control plane with the real operator and agents: latency,
//! bulk throughput, memory and API writes. They print numbers; they assert nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use palisade_domain::{AppArmorProfile, NodeProfileStatus, ProfileKind, SeccompProfile};
use serde_json::json;

use crate::cluster::wait_for_every;
use crate::cluster::{ProfileObject, apply_json};
use crate::{Cluster, ControlPlane, Options, wait_for};
use futures::StreamExt;

/// A `<key>: <n> kB` line of a /proc file, in MiB (0 when absent).
fn proc_mib(path: &str, key: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Resident memory of a process, MiB (VmRSS).
pub fn rss_mib(pid: u32) -> f64 {
    proc_mib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// How much of a process's resident memory is its own (anonymous: heap, stacks) rather
/// than mapped files (its code and libraries), MiB.
pub fn anon_rss_mib(pid: u32) -> f64 {
    proc_mib(&format!("/proc/{pid}/smaps_rollup"), "Anonymous:")
}

/// The three slowest samples as `#trial ms`, to tell one outlier from a slow tail.
fn slowest(samples: &[f64]) -> String {
    let mut indexed: Vec<(usize, f64)> = samples.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
    indexed
        .iter()
        .take(3)
        .map(|(i, ms)| format!("#{i} {ms:.0} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The p-th percentile (0–100) of samples, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// The API server's samples of one metric: each line's labels (as a lookup) and value.
async fn api_samples(client: &kube::Client, metric: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let prefix = format!("{metric}{{");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
            .collect();
        out.push((labels, value.parse::<f64>().unwrap_or(0.0)));
    }
    Ok(out)
}

/// Sums of a metric's mutating requests by resource (`resource/subresource` when `sub`).
async fn by_resource(client: &kube::Client, metric: &str, sub: bool) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for (labels, value) in api_samples(client, metric).await? {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let verb = label("verb").to_uppercase();
        if !matches!(
            verb.as_str(),
            "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" | "CREATE" | "UPDATE"
        ) {
            continue;
        }
        let resource = match label("subresource").as_str() {
            s if s.is_empty() || !sub => label("resource"),
            s => format!("{}/{s}", label("resource")),
        };
        *out.entry(resource).or_default() += value;
    }
    Ok(out)
}

/// Writes the API server counted, by resource: `apiserver_request_total` for mutating verbs.
pub async fn api_writes(client: &kube::Client) -> Result<BTreeMap<String, f64>> {
    by_resource(client, "apiserver_request_total", true).await
}

/// Request bytes the API server received, by resource: `apiserver_request_body_size_bytes`
/// for mutating verbs.
pub async fn api_bytes(client: &kube::Client) -> Result<BTreeMap<String, f64>> {
    by_resource(client, "apiserver_request_body_size_bytes_sum", false).await
}

/// CPU seconds a process has used (user + system).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

fn diff(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

async fn time_to_ready<K>(api: &Api<K>, name: &str, nodes: u32) -> Result<f64>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + ProfileObject,
{
    let start = Instant::now();
    crate::cluster::wait_installed(api, name, nodes).await?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn seccomp_obj(name: &str, i: usize) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": name},
        "spec": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": (i % 100) + 1}]}})
}

fn apparmor_obj(name: &str) -> serde_json::Value {
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile", "metadata": {"name": name},
        "spec": {"abstract": {"filesystem": {"readOnlyPaths": [format!("/srv/{name}/**")]}, "network": {"allowedProtocols": {"allowTcp": true}}}}})
}

/// Everything `make bench` measures, for the table and the BENCH line.
#[derive(Debug, Default)]
pub struct Results {
    pub nodes: usize,
    pub seccomp_p50: f64,
    pub seccomp_p99: f64,
    pub apparmor_p50: f64,
    pub apparmor_p99: f64,
    /// The warm-up trials: the first profile of each kind after start-up.
    pub first_seccomp: f64,
    pub first_apparmor: f64,
    pub bulk_1000_s: f64,
    /// Of it, the time to create the objects.
    pub bulk_create_s: f64,
    /// API writes during the bulk, by resource.
    pub bulk_breakdown: BTreeMap<String, f64>,
    pub agent_rss: f64,
    pub operator_rss: f64,
    pub writes_per_change: f64,
    pub change_breakdown: BTreeMap<String, f64>,
    pub steady_per_min: f64,
    pub steady_breakdown: BTreeMap<String, f64>,
}

/// A control plane and Palisade with `nodes` nodes in `dir`, emptied first.
async fn fresh_cluster(dir: &Path, nodes: usize) -> Result<Cluster> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let cp = ControlPlane::start(dir).await?;
    Cluster::start_on(
        cp,
        Options {
            nodes,
            ..Options::default()
        },
    )
    .await
}

/// `make bench`: N nodes, latency over `trials`, a bulk of `bulk` seccomp profiles.
pub async fn run(dir: &Path, nodes: usize, trials: usize, bulk: usize) -> Result<Results> {
    let t0 = Instant::now();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    say(&format!("starting the control plane, the operator and {nodes} agents"));
    let cluster = fresh_cluster(dir, nodes).await?;
    let client = cluster.cp.client().await?;
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client.clone());
    let n = nodes as u32;
    let mut r = Results {
        nodes,
        ..Default::default()
    };

    say(&format!(
        "seccomp apply → Ready on {nodes} nodes, {trials} trials after one warm-up"
    ));
    let mut samples = Vec::new();
    for i in 0..=trials {
        let name = format!("lat-sc-{i}");
        apply_json(&client, seccomp_obj(&name, i)).await?;
        samples.push(time_to_ready(&sp, &name, n).await?);
    }
    // The first profile after start-up also waits for first-time work (the operator seeing
    // every agent's heartbeat, first connections); it is reported, not counted.
    r.first_seccomp = samples.remove(0);
    (r.seccomp_p50, r.seccomp_p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    say(&format!("slowest seccomp trials: {}", slowest(&samples)));

    say(&format!(
        "AppArmor apply → Ready on {nodes} nodes, {trials} trials after one warm-up"
    ));
    let mut samples = Vec::new();
    for i in 0..=trials {
        let name = format!("lat-aa-{i}");
        apply_json(&client, apparmor_obj(&name)).await?;
        samples.push(time_to_ready(&aap, &name, n).await?);
    }
    r.first_apparmor = samples.remove(0);
    (r.apparmor_p50, r.apparmor_p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    say(&format!("slowest AppArmor trials: {}", slowest(&samples)));

    say("API writes for one profile change (after things settle)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = api_writes(&client).await?;
    sp.patch(
        "lat-sc-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"defaultErrnoRet": 7}})),
    )
    .await?;
    time_to_ready(&sp, "lat-sc-0", n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let change = diff(&api_writes(&client).await?, &before);
    // Heartbeat Leases renew on their own clock; they are counted in the steady rate.
    r.change_breakdown = change.into_iter().filter(|(k, _)| k != "leases").collect();
    r.writes_per_change = r.change_breakdown.values().sum();

    say("steady-state writes over 30 s with nothing changing");
    let before = api_writes(&client).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    r.steady_breakdown = diff(&api_writes(&client).await?, &before)
        .into_iter()
        .map(|(k, v)| (k, v * 2.0))
        .collect();
    r.steady_per_min = r.steady_breakdown.values().sum();

    say(&format!("bulk: {bulk} seccomp profiles applied at once"));
    // Applied as a GitOps tool or a script does: server-side apply, 16 requests in flight.
    // (`kubectl apply -f` of a 1000-item List sends one object after another under its
    // client-side rate limit and by itself takes most of a minute or more.)
    let writes_before = api_writes(&client).await?;
    let start = Instant::now();
    futures::stream::iter((0..bulk).map(|i| seccomp_obj(&format!("bulk-{i}"), i)))
        .map(|obj| {
            let client = client.clone();
            async move { apply_json(&client, obj).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    r.bulk_create_s = start.elapsed().as_secs_f64();
    wait_for("the bulk to be Ready everywhere", Duration::from_secs(900), || async {
        let list = sp.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with("bulk-")))
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.nodes.is_some_and(|c| c.installed == n)
                        && s.conditions.iter().any(|c| {
                            c.type_ == "Ready" && c.status == "True" && c.observed_generation == p.metadata.generation
                        })
                })
            })
            .count();
        Ok((ready == bulk).then_some(()))
    })
    .await?;
    r.bulk_1000_s = start.elapsed().as_secs_f64();
    r.bulk_breakdown = diff(&api_writes(&client).await?, &writes_before);
    // Memory at rest with 1000+ profiles: the bulk's last writes have landed and the
    // operator has handed back what the burst freed (it does every 10 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    r.agent_rss = cluster
        .agents
        .values()
        .filter_map(|a| a.proc.as_ref())
        .map(|p| rss_mib(p.pid()))
        .fold(0.0, f64::max);
    r.operator_rss = cluster
        .operators
        .iter()
        .flatten()
        .map(|p| rss_mib(p.pid()))
        .fold(0.0, f64::max);
    say("done; stopping");
    Ok(r)
}

impl Results {
    pub fn print(&self) {
        let row = |what: &str, value: String, target: &str| println!("  {what:<44} {value:>12}   {target}");
        println!();
        println!(
            "Palisade benchmark: {} simulated nodes, real etcd + kube-apiserver, {} cores",
            self.nodes,
            num_cpus()
        );
        row(
            "first profile after start-up (warm-up, not counted)",
            format!("{:.0} / {:.0} ms", self.first_seccomp, self.first_apparmor),
            "seccomp / AppArmor",
        );
        row("seccomp apply → Ready, p50", format!("{:.0} ms", self.seccomp_p50), "");
        row(
            "seccomp apply → Ready, p99",
            format!("{:.0} ms", self.seccomp_p99),
            "target < 300 ms",
        );
        row(
            "AppArmor apply → Ready, p50",
            format!("{:.0} ms", self.apparmor_p50),
            "",
        );
        row(
            "AppArmor apply → Ready, p99",
            format!("{:.0} ms", self.apparmor_p99),
            "target < 1000 ms",
        );
        row(
            "1000 seccomp profiles at once → all Ready",
            format!("{:.1} s", self.bulk_1000_s),
            &format!("of which {:.1} s creating them", self.bulk_create_s),
        );
        println!("      API writes meanwhile: {:?}", self.bulk_breakdown);
        row(
            "agent RSS (max over agents) at 1000+ profiles",
            format!("{:.1} MiB", self.agent_rss),
            "target < 12 MiB",
        );
        row(
            "operator RSS at 1000+ profiles",
            format!("{:.1} MiB", self.operator_rss),
            "target < 30 MiB",
        );
        row(
            "API writes per profile change",
            format!("{:.0}", self.writes_per_change),
            &format!("target ≤ nodes + 2 = {}", self.nodes + 2),
        );
        println!("      {:?}", self.change_breakdown);
        row(
            "API writes per minute at steady state",
            format!("{:.0}", self.steady_per_min),
            "",
        );
        println!("      {:?}", self.steady_breakdown);
        println!();
        println!(
            "BENCH-RUN nodes={} seccomp_ready_p50_ms={:.0} seccomp_ready_p99_ms={:.0} apparmor_ready_p99_ms={:.0} bulk_1000_ready_s={:.1} agent_rss_mib={:.1} operator_rss_mib={:.1} writes_per_change={:.0} steady_writes_per_min={:.0}",
            self.nodes,
            self.seccomp_p50,
            self.seccomp_p99,
            self.apparmor_p99,
            self.bulk_1000_s,
            self.agent_rss,
            self.operator_rss,
            self.writes_per_change,
            self.steady_per_min
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// One agent's costs (`palisade-dev bench-agent`): per-profile install time for each kind,
/// RSS with `count` profiles of each kind, and restart times with `count` AppArmor profiles.
pub async fn agent(dir: &Path, count: usize) -> Result<()> {
    let t0 = Instant::now();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let mut cluster = fresh_cluster(dir, 1).await?;
    let client = cluster.cp.client().await?;
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    let installed = |kind: &'static str| {
        let nps = nps.clone();
        async move {
            let s = nps.get("node-0").await?.status.unwrap_or_default();
            let kind = if kind == "Seccomp" {
                ProfileKind::SeccompProfile
            } else {
                ProfileKind::AppArmorProfile
            };
            Ok::<usize, anyhow::Error>(s.installed.of(kind).count as usize)
        }
    };
    // Measured once the agent has started up and written its first report.
    wait_for("the agent's first report", Duration::from_secs(60), || async {
        Ok(nps.get_opt("node-0").await?.and_then(|n| n.status).map(|_| ()))
    })
    .await?;
    let agent_pid = cluster.agents["node-0"].proc.as_ref().context("agent")?.pid();
    let rss_before = rss_mib(agent_pid);
    let mut rss_after = vec![];

    for (kind, label) in [("Seccomp", "seccomp"), ("AppArmor", "AppArmor")] {
        say(&format!("{count} {label} profiles on one node"));
        let items: Vec<_> = (0..count)
            .map(|i| {
                if kind == "Seccomp" {
                    seccomp_obj(&format!("b-sc-{i}"), i)
                } else {
                    apparmor_obj(&format!("b-aa-{i}"))
                }
            })
            .collect();
        let start = Instant::now();
        cluster.apply_list(label, &items)?;
        wait_for(
            &format!("{count} {label} installed"),
            Duration::from_secs(1800),
            || async { Ok((installed(kind).await? == count).then_some(())) },
        )
        .await?;
        let took = start.elapsed().as_secs_f64();
        // Settle: the last report and Event are written, then memory is what is held.
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss_after.push(rss_mib(agent_pid));
        println!(
            "  {label:<9} {count} profiles applied → installed on the node: {took:.1} s ({:.1} ms per profile, API and operator included)",
            took * 1000.0 / count as f64
        );
    }
    println!(
        "  agent RSS: {rss_before:.1} MiB with no profiles, {:.1} MiB with {count} seccomp, {:.1} MiB with {count} seccomp + {count} AppArmor profiles ({:.1} MiB of it heap)",
        rss_after[0],
        rss_after[1],
        anon_rss_mib(agent_pid)
    );
    let metrics = crate::cluster::scrape_metrics(cluster.agents["node-0"].metrics_port)
        .await
        .unwrap_or_default();
    if let (Some(sum), Some(n)) = (
        metric(&metrics, "palisade_agent_parser_duration_seconds_sum"),
        metric(&metrics, "palisade_agent_parser_duration_seconds_count"),
    ) {
        println!(
            "  apparmor_parser per load (agent metric): {:.1} ms mean over {n:.0} loads",
            sum * 1000.0 / n
        );
    }

    for (label, reboot) in [
        ("agent restart (profiles stay loaded)", false),
        ("node reboot (kernel list empty; reload from the parser cache)", true),
    ] {
        cluster.kill_agent("node-0");
        nps.patch_status(
            "node-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"installed": null, "exceptions": []}})),
        )
        .await
        .ok();
        if reboot {
            std::fs::write(cluster.node_dir("node-0").join("apparmorfs/profiles"), b"")?;
        }
        let start = Instant::now();
        cluster.start_agent("node-0")?;
        wait_for(
            "the node to report everything installed again",
            Duration::from_secs(1800),
            || async {
                Ok((installed("AppArmor").await? == count && installed("Seccomp").await? == count).then_some(()))
            },
        )
        .await?;
        println!(
            "  {label}: {:.1} s until {} profiles are reported installed",
            start.elapsed().as_secs_f64(),
            2 * count
        );
    }
    Ok(())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Operator memory at scale (`palisade-dev bench-operator`): `profiles` SeccompProfiles and
/// `nodes` Nodes, each with a live heartbeat and a NodeProfileStatus listing every profile
/// installed. No agents run: the objects are what agents would write, so this measures the
/// operator alone. Prints its RSS once every profile is Ready on every node.
pub async fn operator(dir: &Path, profiles: usize, nodes: usize) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    let t0 = Instant::now();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let cluster = fresh_cluster(dir, 0).await?;
    let client = cluster.cp.client().await?;
    let pid = cluster.operators[0].as_ref().context("operator")?.pid();
    // Idle: once it serves metrics and has settled after start-up.
    let port = cluster.operator_ports[0];
    wait_for("the operator's metrics", Duration::from_secs(30), || async {
        Ok(crate::cluster::scrape_metrics(port).await.ok().map(|_| ()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid);

    say(&format!("{profiles} SeccompProfiles"));
    let items: Vec<_> = (0..profiles).map(|i| seccomp_obj(&format!("op-{i}"), i)).collect();
    cluster.apply_list("profiles", &items)?;
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let accepted = || async {
        let list = sp.list(&ListParams::default()).await?;
        Ok::<_, anyhow::Error>(
            list.items
                .into_iter()
                .filter(|p| {
                    palisade_domain::accepted_content(p.status.as_ref())
                        .is_some_and(|a| Some(a.generation) == p.metadata.generation)
                })
                .collect::<Vec<_>>(),
        )
    };
    let objects = wait_for("every profile accepted", Duration::from_secs(600), || async {
        let a = accepted().await?;
        Ok((a.len() == profiles).then_some(a))
    })
    .await?;

    say(&format!(
        "{nodes} Nodes with heartbeats and full NodeProfileStatus objects"
    ));
    let nodes_api: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), crate::cluster::NAMESPACE);
    let nps: Api<NodeProfileStatus> = Api::all(client.clone());
    // Every profile installed at its accepted content: what an agent reports for that.
    let mut installed = palisade_domain::InstalledSet::default();
    for p in &objects {
        let accepted = palisade_domain::accepted_content(p.status.as_ref()).context("accepted")?;
        installed.add(palisade_domain::installed_key(
            ProfileKind::SeccompProfile,
            p.metadata.uid.as_deref().unwrap_or_default(),
            &accepted.digest,
        ));
    }
    let apply = PatchParams::apply("bench").force();
    for i in 0..nodes {
        let node = format!("sim-{i}");
        nodes_api
            .patch(
                &node,
                &apply,
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})),
            )
            .await?;
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
        leases
            .patch(&format!("palisade-agent-{node}"), &apply, &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": format!("palisade-agent-{node}"), "labels": {"app.kubernetes.io/name": "palisade-agent"}},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 3600, "renewTime": now}})))
            .await?;
        nps.patch(&node, &apply, &Patch::Apply(json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus", "metadata": {"name": node}, "spec": {}}))).await?;
        nps.patch_status(&node, &apply, &Patch::Apply(json!({"apiVersion": "palisade.dev/v1alpha2", "kind": "NodeProfileStatus",
            "metadata": {"name": node}, "status": {"agentVersion": "bench", "capabilities": {"apparmor": true, "seccomp": true}, "installed": {"seccomp": installed.summary()}}})))
            .await?;
    }
    let start = Instant::now();
    wait_for(
        "every profile Ready on every node",
        Duration::from_secs(900),
        || async {
            let list = sp.list(&ListParams::default()).await?;
            let ready = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.nodes)
                        .is_some_and(|c| c.installed as usize == nodes)
                })
                .count();
            Ok((ready == profiles).then_some(()))
        },
    )
    .await?;
    say(&format!("aggregated in {:.1} s", start.elapsed().as_secs_f64()));
    // Steady state: the last status writes have landed and the operator has handed back
    // what the burst freed (it does every 10 s).
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!(
        "  operator RSS: {idle:.1} MiB idle, {:.1} MiB with {profiles} profiles × {nodes} NodeProfileStatus objects ({} entries; {:.1} MiB of it heap, the rest code and libraries)",
        rss_mib(pid),
        profiles * nodes,
        anon_rss_mib(pid)
    );
    Ok(())
}

/// What `bench-scale` measures.
#[derive(Debug, Default)]
pub struct ScaleResults {
    pub nodes: usize,
    pub profiles: usize,
    /// From starting the simulated nodes to every profile Ready on all of them.
    pub converge_s: f64,
    /// One profile changed → Ready on every node, per change.
    pub change_s: Vec<f64>,
    /// API request bytes per change, by resource (heartbeat Leases left out).
    pub change_bytes: Vec<BTreeMap<String, f64>>,
    pub operator_rss: f64,
    pub operator_heap: f64,
    /// Over one idle minute.
    pub idle_cpu_s: f64,
    pub idle_reconciles: f64,
    pub idle_writes: BTreeMap<String, f64>,
}

/// The operator's reconciles so far (both kinds).
async fn reconciles(port: u16) -> f64 {
    crate::cluster::scrape_metrics(port)
        .await
        .map(|m| crate::cluster::metric_sum(&m, "palisade_reconciles_total"))
        .unwrap_or(0.0)
}

/// `palisade-dev bench-scale`: the real operator with `profiles` SeccompProfiles and `nodes`
/// simulated nodes (see `simnode`): time to converge, one change → Ready everywhere,
/// bytes written per change, the operator's memory, and an idle minute.
pub async fn scale(dir: &Path, nodes: usize, profiles: usize, changes: usize) -> Result<ScaleResults> {
    let t0 = Instant::now();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    raise_open_files();
    say(&format!(
        "starting the control plane and the operator; {profiles} SeccompProfiles"
    ));
    let cluster = fresh_cluster(dir, 0).await?;
    let client = cluster.cp.client().await?;
    let pid = cluster.operators[0].as_ref().context("operator")?.pid();
    let port = cluster.operator_ports[0];
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let items: Vec<_> = (0..profiles).map(|i| seccomp_obj(&format!("scale-{i}"), i)).collect();
    cluster.apply_list("profiles", &items)?;
    wait_for("every profile accepted", Duration::from_secs(600), || async {
        let list = sp.list(&ListParams::default()).await?;
        let accepted = list
            .items
            .iter()
            .filter(|p| palisade_domain::accepted_content(p.status.as_ref()).is_some())
            .count();
        Ok((accepted == profiles).then_some(()))
    })
    .await?;

    say(&format!("{nodes} Nodes"));
    let names: Vec<String> = (0..nodes).map(|i| format!("sim-{i:04}")).collect();
    create_nodes(&client, &names).await?;

    say(&format!(
        "{nodes} simulated nodes: each its own watch, report and heartbeat"
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let (client, name, stop) = (client.clone(), name.clone(), stop_rx.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::simnode::run(client, name.clone(), crate::cluster::NAMESPACE.into(), 60, stop).await
            {
                eprintln!("simulated node {name}: {e:#}");
            }
        });
        // Started a few at a time, as nodes join a real cluster.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let all_ready = |generation_of: Option<(String, i64)>| {
        let sp = sp.clone();
        async move {
            let list = sp.list(&ListParams::default()).await?;
            let ready = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.nodes)
                        .is_some_and(|c| c.installed as usize == nodes)
                })
                .filter(|p| match &generation_of {
                    Some((name, g)) => {
                        p.metadata.name.as_ref() != Some(name)
                            || p.status.as_ref().and_then(|s| s.observed_generation) == Some(*g)
                    }
                    None => true,
                })
                .count();
            Ok::<_, anyhow::Error>(ready)
        }
    };
    wait_for_every(
        "every profile Ready on every simulated node",
        Duration::from_secs(1800),
        Duration::from_secs(2),
        || async { Ok((all_ready(None).await? == profiles).then_some(())) },
    )
    .await?;
    let mut r = ScaleResults {
        nodes,
        profiles,
        converge_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    };
    say(&format!("converged in {:.1} s; settling", r.converge_s));
    tokio::time::sleep(Duration::from_secs(20)).await;
    r.operator_rss = rss_mib(pid);
    r.operator_heap = anon_rss_mib(pid);

    say("one idle minute: operator CPU, reconciles, API writes");
    let (cpu0, rec0, w0) = (cpu_seconds(pid), reconciles(port).await, api_writes(&client).await?);
    tokio::time::sleep(Duration::from_secs(60)).await;
    r.idle_cpu_s = cpu_seconds(pid) - cpu0;
    r.idle_reconciles = reconciles(port).await - rec0;
    r.idle_writes = diff(&api_writes(&client).await?, &w0);

    for c in 0..changes {
        let name = format!("scale-{}", c * 7 % profiles);
        say(&format!("change {}: {name} → Ready on all {nodes} nodes", c + 1));
        let (took, bytes) = one_change(&client, &name, c, nodes).await?;
        r.change_s.push(took);
        r.change_bytes.push(bytes);
    }
    say("done; stopping");
    let _ = stop_tx.send(true);
    tasks.shutdown().await;
    Ok(r)
}

/// Creates the Node objects the simulated nodes stand for (16 at a time).
async fn create_nodes(client: &kube::Client, names: &[String]) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let nodes_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = nodes_api.clone();
            async move {
                api.patch(
                    &name,
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                        "labels": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": name}}})),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<kube::Result<Vec<_>>>()?;
    Ok(())
}

/// Changes one profile (the `c`th change) and waits until it is Ready on all `nodes` at
/// the new generation: the time that took, and the API bytes written for it (heartbeats
/// left out).
async fn one_change(client: &kube::Client, name: &str, c: usize, nodes: usize) -> Result<(f64, BTreeMap<String, f64>)> {
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let before = api_bytes(client).await?;
    let start = Instant::now();
    let changed = sp
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"defaultErrnoRet": 90 + c}})),
        )
        .await?;
    let generation = changed.metadata.generation.unwrap_or_default();
    let one = || {
        let sp = sp.clone();
        async move {
            let p = sp.get(name).await?;
            let s = p.status.unwrap_or_default();
            let done = s.observed_generation == Some(generation)
                && s.accepted.as_ref().is_some_and(|a| a.generation == generation)
                && s.nodes.is_some_and(|n| n.installed as usize == nodes)
                && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            Ok::<_, anyhow::Error>(done.then_some(()))
        }
    };
    wait_for_every(
        "the change Ready everywhere",
        Duration::from_secs(600),
        Duration::from_millis(50),
        one,
    )
    .await?;
    let took = start.elapsed().as_secs_f64();
    // Stragglers (the last status write, Events) land; heartbeats are left out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut bytes = diff(&api_bytes(client).await?, &before);
    bytes.remove("leases");
    Ok((took, bytes))
}

/// Allows one process its many watches (a connection each).
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

impl ScaleResults {
    pub fn print(&self) {
        let change_mib: Vec<f64> = self
            .change_bytes
            .iter()
            .map(|b| b.values().sum::<f64>() / (1024.0 * 1024.0))
            .collect();
        println!();
        println!(
            "Palisade scale benchmark: {} simulated nodes, {} SeccompProfiles, real etcd + kube-apiserver and operator, {} cores",
            self.nodes,
            self.profiles,
            num_cpus()
        );
        let row = |what: &str, value: String| println!("  {what:<52} {value:>14}");
        row(
            "simulated nodes started → every profile Ready on all",
            format!("{:.1} s", self.converge_s),
        );
        row(
            "1 change → Ready on all nodes, median (each)",
            format!(
                "{:.2} s ({})",
                percentile(&self.change_s, 50.0),
                self.change_s
                    .iter()
                    .map(|s| format!("{s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        row(
            "API request bytes per change, median",
            format!("{:.3} MiB", percentile(&change_mib, 50.0)),
        );
        if let Some(b) = self.change_bytes.first() {
            println!("      {b:?}");
        }
        row(
            "operator RSS",
            format!("{:.1} MiB ({:.1} MiB heap)", self.operator_rss, self.operator_heap),
        );
        row("operator CPU in an idle minute", format!("{:.2} s", self.idle_cpu_s));
        row(
            "operator reconciles in an idle minute",
            format!("{:.0}", self.idle_reconciles),
        );
        row(
            "API writes in an idle minute",
            format!("{:.0}", self.idle_writes.values().sum::<f64>()),
        );
        println!("      {:?}", self.idle_writes);
        println!();
        println!(
            "BENCH-SCALE-RUN nodes={} profiles={} converge_s={:.1} change_ready_s={:.2} change_mib={:.3} operator_rss_mib={:.1} idle_cpu_s_per_min={:.2} idle_reconciles_per_min={:.0} idle_writes_per_min={:.0} idle_non_lease_writes_per_min={:.0}",
            self.nodes,
            self.profiles,
            self.converge_s,
            percentile(&self.change_s, 50.0),
            percentile(&change_mib, 50.0),
            self.operator_rss,
            self.idle_cpu_s,
            self.idle_reconciles,
            self.idle_writes.values().sum::<f64>(),
            // (+ 0.0: an empty sum is -0.0)
            self.idle_writes
                .iter()
                .filter(|(k, _)| *k != "leases")
                .map(|(_, v)| v)
                .sum::<f64>()
                + 0.0,
        );
    }
}

/// Median, lowest and highest.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (percentile(values, 50.0), lo, hi)
}

/// The targets table over every run: median with the run-to-run spread, and the closing
/// BENCH line with every figure (medians).
pub fn summary(latency: &[Results], scale: &[ScaleResults]) {
    let mut line = vec![format!("runs={}", latency.len().max(scale.len()))];
    println!();
    println!("Summary: median (lowest–highest) over runs, each on a fresh control plane");
    let mut row = |what: &str, key: &str, values: Vec<f64>, unit: &str, digits: usize, target: &str| {
        if values.is_empty() {
            return;
        }
        let (m, lo, hi) = spread(&values);
        println!(
            "  {what:<58} {:>10} ({lo:.digits$}–{hi:.digits$})   {target}",
            format!("{m:.digits$} {unit}")
        );
        line.push(format!("{key}={m:.digits$}"));
    };
    let nodes = latency.first().map_or(0, |r| r.nodes);
    latency_rows(&mut row, latency);
    let (n, p) = scale.first().map_or((0, 0), |r| (r.nodes, r.profiles));
    scale_rows(&mut row, scale);
    println!();
    println!(
        "BENCH nodes={nodes} scale_nodes={n} scale_profiles={p} {}",
        line.join(" ")
    );
}

/// One summary row: what, its key in the `BENCH` line, the values over runs, unit, digits, target.
type Row<'a> = dyn FnMut(&str, &str, Vec<f64>, &str, usize, &str) + 'a;

fn latency_rows(row: &mut Row<'_>, latency: &[Results]) {
    let nodes = latency.first().map_or(0, |r| r.nodes);
    let of = |f: fn(&Results) -> f64| latency.iter().map(f).collect::<Vec<_>>();
    row(
        &format!("seccomp apply → Ready on all {nodes} nodes, p99"),
        "seccomp_ready_p99_ms",
        of(|r| r.seccomp_p99),
        "ms",
        0,
        "< 150 ms",
    );
    row(
        "seccomp apply → Ready, p50",
        "seccomp_ready_p50_ms",
        of(|r| r.seccomp_p50),
        "ms",
        0,
        "",
    );
    row(
        &format!("AppArmor apply → Ready on all {nodes} nodes, p99"),
        "apparmor_ready_p99_ms",
        of(|r| r.apparmor_p99),
        "ms",
        0,
        "< 500 ms",
    );
    row(
        "AppArmor apply → Ready, p50",
        "apparmor_ready_p50_ms",
        of(|r| r.apparmor_p50),
        "ms",
        0,
        "",
    );
    row(
        &format!("1000 seccomp at once → all Ready on {nodes} nodes"),
        "bulk_1000_ready_s",
        of(|r| r.bulk_1000_s),
        "s",
        1,
        "< 10 s",
    );
    row(
        "  of which creating the 1000 objects (16 in flight)",
        "bulk_create_s",
        of(|r| r.bulk_create_s),
        "s",
        1,
        "",
    );
    row(
        "agent RSS at 1000+ profiles (max over agents)",
        "agent_rss_mib",
        of(|r| r.agent_rss),
        "MiB",
        1,
        "< 12 MiB",
    );
    row(
        &format!("operator RSS at 1000+ profiles × {nodes} nodes"),
        "operator_rss_mib",
        of(|r| r.operator_rss),
        "MiB",
        1,
        "",
    );
    row(
        "API writes per profile change",
        "writes_per_change",
        of(|r| r.writes_per_change),
        "",
        0,
        "",
    );
    row(
        "API writes per minute at steady state (all heartbeats)",
        "steady_writes_per_min",
        of(|r| r.steady_per_min),
        "",
        0,
        "heartbeats only",
    );
}

fn scale_rows(row: &mut Row<'_>, scale: &[ScaleResults]) {
    let n = scale.first().map_or(0, |r| r.nodes);
    let p = scale.first().map_or(0, |r| r.profiles);
    let sc = |f: fn(&ScaleResults) -> f64| scale.iter().map(f).collect::<Vec<_>>();
    row(
        &format!("1 change → Ready on all of {n} nodes ({p} profiles present)"),
        "scale_change_ready_s",
        sc(|r| percentile(&r.change_s, 50.0)),
        "s",
        2,
        "< 10 s",
    );
    row(
        &format!("API bytes written per profile change, {n} nodes"),
        "scale_change_mib",
        sc(|r| {
            let each: Vec<f64> = r
                .change_bytes
                .iter()
                .map(|b| b.values().sum::<f64>() / 1048576.0)
                .collect();
            percentile(&each, 50.0)
        }),
        "MiB",
        3,
        "< 1 MB in all",
    );
    row(
        &format!("operator RSS at {p} profiles × {n} nodes"),
        "scale_operator_rss_mib",
        sc(|r| r.operator_rss),
        "MiB",
        1,
        "< 64 MiB",
    );
    row(
        "operator CPU per idle minute",
        "idle_cpu_s_per_min",
        sc(|r| r.idle_cpu_s),
        "s",
        2,
        "~0",
    );
    row(
        "operator reconciles per idle minute",
        "idle_reconciles_per_min",
        sc(|r| r.idle_reconciles),
        "",
        0,
        "~0",
    );
    row(
        &format!("API writes per idle minute, {n} nodes, other than heartbeats"),
        "idle_non_heartbeat_writes_per_min",
        sc(|r| {
            r.idle_writes
                .iter()
                .filter(|(k, _)| *k != "leases")
                .map(|(_, v)| v)
                .sum::<f64>()
                + 0.0
        }),
        "",
        0,
        "0 (heartbeats only)",
    );
    row(
        &format!("API writes per idle minute, {n} nodes, heartbeats"),
        "idle_heartbeat_writes_per_min",
        sc(|r| r.idle_writes.get("leases").copied().unwrap_or(0.0)),
        "",
        0,
        "",
    );
    row(
        &format!("{n} simulated nodes started → every profile Ready on all"),
        "scale_converge_s",
        sc(|r| r.converge_s),
        "s",
        1,
        "",
    );
}

/// The learning agent's cost per read of the kernel log (`make bench-learn`): a 128 KiB
/// ring (Debian's) filled with the kernel records captured on the real node
/// (domain/src/learn/fixtures/), read as the agent reads it every 500 ms: once with nothing
/// new (every line hashed and found in the previous read), once with every line new
/// (parsed and turned into a rule). Prints a closing `BENCH` line.
pub fn learn() -> Result<()> {
    let dir = crate::controlplane::repo_root().join("domain/src/learn/fixtures");
    let seccomp = std::fs::read_to_string(dir.join("seccomp-log-noratelimit.kmsg"))?;
    let apparmor = std::fs::read_to_string(dir.join("apparmor-complain-noratelimit.kmsg"))?;
    let mut ring = String::new();
    while ring.len() < 128 * 1024 {
        ring.push_str(&seccomp);
        ring.push_str(&apparmor);
    }
    let cut = ring[..128 * 1024].rfind('\n').map(|i| i + 1).unwrap_or(0);
    ring.truncate(cut);
    let runs = 200;
    let mut previous = Default::default();
    palisade_agent::audit::new_lines(&mut previous, &ring);
    let t = Instant::now();
    for _ in 0..runs {
        let new = palisade_agent::audit::new_lines(&mut previous, &ring);
        anyhow::ensure!(new.is_empty(), "a second read of the same ring found new lines");
    }
    let idle_ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let t = Instant::now();
    let mut rules = 0;
    for _ in 0..runs {
        let mut previous = Default::default();
        for line in palisade_agent::audit::new_lines(&mut previous, &ring) {
            rules += palisade_domain::learn::parse_line(&line)
                .and_then(|r| palisade_agent::learn::rule_of(&r))
                .is_some() as usize;
        }
    }
    let full_ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let lines = ring.lines().count();
    println!(
        "kernel log ring: {} KiB, {lines} lines of records; read every 500 ms\n\
         nothing new: {idle_ms:.3} ms a read ({:.3}% of a core)\n\
         all new:     {full_ms:.2} ms a read, {} distinct records turned into rules ({:.2}% of a core)",
        ring.len() / 1024,
        idle_ms / 5.0,
        rules / runs,
        full_ms / 5.0,
    );
    println!(
        "BENCH learn_ring_kib={} learn_idle_read_ms={idle_ms:.3} learn_full_read_ms={full_ms:.2}",
        ring.len() / 1024
    );
    Ok(())
}
