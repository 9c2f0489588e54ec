//! palisade-dev: runs Palisade locally on a real etcd + kube-apiserver with simulated nodes
//! (`up`, `down`, `demo`). See the README's "Run it locally".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use kube::Api;
use palisade_domain::{AppArmorProfile, SeccompProfile};
use palisade_e2e::cluster::examples_dir;
use palisade_e2e::controlplane::Flavor;
use palisade_e2e::realnode::{Artifacts, NodeKind, RealNodeStack};
use palisade_e2e::{Cluster, ControlPlane, Options, wait_for};

#[derive(Parser)]
#[command(name = "palisade-dev", about = "Run Palisade locally")]
struct Cli {
    /// Where the control plane, node directories and kubeconfig live.
    #[arg(long, env = "PALISADE_DEV_DIR", default_value = ".palisade-dev", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane, the operator and NODES agents; run until Ctrl-C or `down`.
    Up {
        #[arg(long, env = "NODES", default_value_t = 3)]
        nodes: usize,
        /// A real node (a QEMU guest with a kubelet) beside the simulated ones: `1` or a
        /// node kind, a Debian suite with `-arm64` after it for arm64 (`bookworm`,
        /// `bookworm-arm64`); `0`, none. Palisade then runs from its chart, see README
        /// "A real node".
        #[arg(long, env = "REAL_NODES", default_value = "0")]
        real_nodes: String,
    },
    /// Stop what `up` started.
    Down,
    /// Start, apply examples/, wait until every profile is Ready, show the result, stop.
    Demo {
        #[arg(long, env = "NODES", default_value_t = 3)]
        nodes: usize,
        /// Keep it running afterwards (like `up`).
        #[arg(long, env = "KEEP", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
        keep: bool,
    },
    /// Measure latency, bulk throughput, memory and API writes (`make bench`).
    Bench {
        #[arg(long, env = "NODES", default_value_t = 20)]
        nodes: usize,
        #[arg(long, default_value_t = 50)]
        trials: usize,
        #[arg(long, default_value_t = 1000)]
        bulk: usize,
        /// Runs of each part (fresh control plane each); the summary gives medians and spread.
        #[arg(long, env = "RUNS", default_value_t = 3)]
        runs: usize,
        /// Simulated nodes of the scale part (0 skips it).
        #[arg(long, env = "SCALE_NODES", default_value_t = 1000)]
        scale_nodes: usize,
        /// Profiles present in the scale part.
        #[arg(long, default_value_t = 1000)]
        scale_profiles: usize,
    },
    /// Measure the operator's memory with PROFILES profiles × NODES NodeProfileStatus objects.
    BenchOperator {
        #[arg(long, default_value_t = 1000)]
        profiles: usize,
        #[arg(long, default_value_t = 100)]
        nodes: usize,
    },
    /// Scale: PROFILES SeccompProfiles on NODES simulated nodes (`make bench`'s scale part).
    BenchScale {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        profiles: usize,
        /// One-profile changes measured.
        #[arg(long, default_value_t = 5)]
        changes: usize,
    },
    /// Measure one agent: install cost per kind, RSS and restart time with COUNT profiles.
    BenchAgent {
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Measure what learning costs the agent per read of the kernel log.
    BenchLearn,
    /// A denial storm: one agent reads this many denials of distinct paths in one minute.
    BenchDenials {
        #[arg(long, default_value_t = 100_000)]
        denials: usize,
    },
}

fn step(start: Instant, what: &str) {
    println!("[{:>5.1}s] {what}", start.elapsed().as_secs_f64());
}

async fn start(dir: &Path, nodes: usize, t0: Instant) -> Result<Cluster> {
    prepare_dir(dir)?;
    step(t0, "starting etcd and kube-apiserver (real binaries, loopback only)");
    let cp = ControlPlane::start(dir).await?;
    std::fs::write(dir.join("pid"), std::process::id().to_string())?;
    step(
        t0,
        &format!(
            "control plane ready on https://127.0.0.1:{}; CRDs installed",
            cp.api_port
        ),
    );
    let cluster = Cluster::start_on(
        cp,
        Options {
            nodes,
            ..Options::default()
        },
    )
    .await?;
    step(
        t0,
        &format!(
            "operator and {nodes} node agents started (simulated nodes: {})",
            cluster.dir().join("nodes").display()
        ),
    );
    Ok(cluster)
}

/// `make up REAL_NODES=1` (or a list of kinds, `bookworm,sid`): a control plane with real
/// nodes (Palisade installed on them by helm; see e2e/src/realnode.rs) and `nodes` simulated
/// nodes beside them, whose agents run here as the chart's ServiceAccount.
async fn up_real(dir: &Path, nodes: usize, real_nodes: &str) -> Result<()> {
    let kinds = NodeKind::parse_list(real_nodes)?;
    let t0 = Instant::now();
    prepare_dir(dir)?;
    let artifacts = tokio::task::spawn_blocking(move || Artifacts::build_all(&kinds, t0)).await??;
    let mut cp = ControlPlane::start_with(dir, Flavor::RealNode).await?;
    std::fs::write(dir.join("pid"), std::process::id().to_string())?;
    let stack = RealNodeStack::start(&mut cp, &artifacts, t0).await?;
    let cluster = Cluster::start_on(
        cp,
        Options {
            nodes,
            operators: 0,
            chart_installed: true,
            os_label: false,
            ..Options::default()
        },
    )
    .await?;
    let names: Vec<&str> = stack.nodes.iter().map(|n| n.name.as_str()).collect();
    step(
        t0,
        &format!("{nodes} simulated nodes beside the real nodes {}", names.join(", ")),
    );
    println!();
    println!("  export KUBECONFIG={}", cluster.cp.kubeconfig.display());
    println!("  kubectl get nodes; kubectl -n palisade-system get pods -o wide");
    for node in &stack.nodes {
        println!(
            "  kubectl run -it --rm try --image=busybox:local --restart=Never --overrides='{{\"spec\":{{\"nodeName\":\"{}\"}}}}' -- sh",
            node.name
        );
        println!(
            "    {} logs: {}/share/out/, console: {}/console.log",
            node.name,
            node.dir.display(),
            node.dir.display()
        );
    }
    println!();
    println!("Running; Ctrl-C or `make down` stops everything.");
    wait_signal().await;
    println!("stopping");
    drop(stack);
    drop(cluster);
    let _ = std::fs::remove_file(dir.join("pid"));
    Ok(())
}

/// Refuses to start over a running palisade-dev, and clears the directory.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.join("pid").exists() {
        let pid = std::fs::read_to_string(dir.join("pid"))?;
        if Path::new(&format!("/proc/{}", pid.trim())).exists() {
            bail!(
                "palisade-dev is already running (pid {}); run `make down` first",
                pid.trim()
            );
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    Ok(())
}

fn print_usage(cluster: &Cluster) {
    println!();
    println!("  export KUBECONFIG={}", cluster.cp.kubeconfig.display());
    println!("  kubectl get apparmorprofiles,seccompprofiles,nodeprofilestatuses");
    println!(
        "  node files: {}/<node>/kubelet/seccomp/palisade/, .../apparmorfs/profiles",
        cluster.dir().join("nodes").display()
    );
    println!(
        "  logs:       {}/logs/, operator-0.log, nodes/<node>/agent.log",
        cluster.dir().display()
    );
    println!();
    println!("Running; Ctrl-C or `make down` stops everything.");
}

async fn wait_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

async fn demo(dir: &Path, nodes: usize, keep: bool) -> Result<()> {
    let t0 = Instant::now();
    let cluster = start(dir, nodes, t0).await?;
    step(t0, &format!("kubectl apply -f {}", examples_dir().display()));
    cluster.apply(&examples_dir())?;
    let client = cluster.cp.client().await?;
    let sp: Api<SeccompProfile> = Api::all(client.clone());
    let aap: Api<AppArmorProfile> = Api::all(client);
    wait_for("every example profile Ready", Duration::from_secs(60), || async {
        let mut ready = true;
        for p in sp.list(&Default::default()).await?.items {
            ready &= is_ready(p.status.as_ref(), p.metadata.generation);
        }
        for p in aap.list(&Default::default()).await?.items {
            ready &= is_ready(p.status.as_ref(), p.metadata.generation);
        }
        Ok(ready.then_some(()))
    })
    .await?;
    step(t0, "every profile is Ready");
    println!();
    let out = cluster.kubectl(&["get", "apparmorprofiles,seccompprofiles"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!();
    for node in cluster.agents.keys() {
        println!("{node}:");
        println!("  seccomp   {}/", cluster.seccomp_dir(node).display());
        for f in cluster.seccomp_files(node) {
            println!("            {f}");
        }
        let loaded = cluster.apparmor_loaded(node);
        let list: Vec<String> = loaded.iter().map(|(n, m)| format!("{n} ({m})")).collect();
        println!("  apparmor  {}", list.join(", "));
    }
    println!();
    if keep {
        print_usage(&cluster);
        wait_signal().await;
    }
    step(t0, "stopping");
    drop(cluster);
    let _ = std::fs::remove_file(dir.join("pid"));
    Ok(())
}

fn is_ready(status: Option<&palisade_domain::ProfileStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation)
    })
}

/// A user's or a machine's error is printed as its chain of causes, never as a backtrace.
fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up { nodes, real_nodes } if real_nodes != "0" => up_real(&cli.dir, nodes, &real_nodes).await,
        Cmd::Up { nodes, .. } => {
            let cluster = start(&cli.dir, nodes, Instant::now()).await?;
            print_usage(&cluster);
            wait_signal().await;
            println!("stopping");
            drop(cluster);
            let _ = std::fs::remove_file(cli.dir.join("pid"));
            Ok(())
        }
        Cmd::Down => {
            let pid_file = cli.dir.join("pid");
            let Ok(pid) = std::fs::read_to_string(&pid_file) else {
                println!("nothing is running (no {})", pid_file.display());
                return Ok(());
            };
            let pid: i32 = pid.trim().parse().context("pid file")?;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..300 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    println!("stopped");
                    let _ = std::fs::remove_file(&pid_file);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bail!("pid {pid} did not stop in 30 s")
        }
        Cmd::Demo { nodes, keep } => demo(&cli.dir, nodes, keep).await,
        Cmd::Bench {
            nodes,
            trials,
            bulk,
            runs,
            scale_nodes,
            scale_profiles,
        } => {
            let mut latency = Vec::new();
            for run in 1..=runs.max(1) {
                eprintln!("== run {run}/{runs}: {nodes} nodes with real agents");
                let results = palisade_e2e::bench::run(&cli.dir, nodes, trials, bulk).await?;
                results.print();
                latency.push(results);
            }
            let mut scale = Vec::new();
            for run in 1..=runs.max(1) {
                if scale_nodes == 0 {
                    break;
                }
                eprintln!("== scale run {run}/{runs}: {scale_nodes} simulated nodes, {scale_profiles} profiles");
                let results = palisade_e2e::bench::scale(&cli.dir, scale_nodes, scale_profiles, 5).await?;
                results.print();
                scale.push(results);
            }
            palisade_e2e::bench::summary(&latency, &scale);
            Ok(())
        }
        Cmd::BenchOperator { profiles, nodes } => palisade_e2e::bench::operator(&cli.dir, profiles, nodes).await,
        Cmd::BenchScale {
            nodes,
            profiles,
            changes,
        } => {
            let results = palisade_e2e::bench::scale(&cli.dir, nodes, profiles, changes).await?;
            results.print();
            Ok(())
        }
        Cmd::BenchAgent { count } => palisade_e2e::bench::agent(&cli.dir, count).await,
        Cmd::BenchLearn => palisade_e2e::bench::learn(),
        Cmd::BenchDenials { denials } => palisade_e2e::storm::run(&cli.dir, denials, 60).await,
    }
}
