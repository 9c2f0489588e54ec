//! A whole local Palisade: the control plane, the operator, and one agent per simulated node.
//!
//! Each simulated node is a Node object plus its own directories:
//! `nodes/<node>/kubelet/` (kubelet root; seccomp files land in `kubelet/seccomp/palisade/`),
//! `nodes/<node>/apparmorfs/` (a SIMULATED AppArmor kernel interface: this machine's kernel
//! has no AppArmor LSM, so the agent runs with `--simulate-apparmor-kernel` and keeps the
//! `profiles` list itself, while the real apparmor_parser still compiles every profile) and
//! `nodes/<node>/state/`. A node created without AppArmor has no apparmorfs at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use palisade_domain::{AppArmorProfile, SeccompProfile};
use serde_json::json;

use crate::audit;
use crate::controlplane::{ControlPlane, free_port, repo_root};
use crate::process::Proc;

/// Namespace of the agents' heartbeats and the operator's leader Lease.
pub const NAMESPACE: &str = "palisade-system";
/// The kernel features file the simulated AppArmor kernel claims (Debian's apparmor package).
pub const SIMULATED_FEATURES: &str = "/usr/share/apparmor-features/features";

/// The container runtime a simulated Node reports (`status.nodeInfo.containerRuntimeVersion`):
/// none runs there.
pub const SIMULATED_RUNTIME: &str = "simulated://none";

/// A simulated AppArmor kernel interface: the files the agent and the parser use, and a
/// `features` directory with an entry per feature the simulated kernel claims (the top-level
/// names of [`SIMULATED_FEATURES`]), as a kernel's has.
fn simulate_apparmorfs(fs: &Path) -> Result<()> {
    std::fs::create_dir_all(fs)?;
    for f in ["profiles", ".replace", ".remove", ".load"] {
        if !fs.join(f).exists() {
            std::fs::write(fs.join(f), b"")?;
        }
    }
    let features = std::fs::read_to_string(SIMULATED_FEATURES).with_context(|| SIMULATED_FEATURES.to_string())?;
    for name in simulated_feature_names(&features) {
        std::fs::create_dir_all(fs.join("features").join(name))?;
    }
    Ok(())
}

/// The top-level names of a flattened AppArmor features file (`caps {mask {...}} file {...}`).
pub fn simulated_feature_names(text: &str) -> Vec<String> {
    let spaced = text.replace('{', " { ").replace('}', " } ");
    let (mut depth, mut last, mut out) = (0usize, None, Vec::new());
    for token in spaced.split_whitespace() {
        match token {
            "{" => {
                if depth == 0 {
                    out.extend(last.take().map(str::to_string));
                }
                depth += 1;
            }
            "}" => depth = depth.saturating_sub(1),
            word => last = Some(word),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A simulated node's /proc (`--proc-root`), as far as the agent reads it for its report: the
/// kernel's release and seccomp actions, this machine's (the kernel the simulated node runs).
/// A test may rewrite them and restart the agent (a node booted into another kernel).
fn simulate_proc(proc: &Path) -> Result<()> {
    let kernel = proc.join("sys/kernel");
    std::fs::create_dir_all(kernel.join("seccomp"))?;
    for file in ["osrelease", "seccomp/actions_avail"] {
        let real = Path::new("/proc/sys/kernel").join(file);
        if !kernel.join(file).exists() {
            std::fs::write(
                kernel.join(file),
                std::fs::read(&real).with_context(|| real.display().to_string())?,
            )?;
        }
    }
    Ok(())
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    /// Operator replicas (leader election picks one).
    pub operators: usize,
    /// Seconds between the agents' drift checks.
    pub drift_interval: u64,
    /// Nodes (by index) that have no AppArmor.
    pub without_apparmor: Vec<usize>,
    /// Install manifests/ (RBAC, admission policy) and run the operator and each agent as
    /// its ServiceAccount, each agent with a token bound to a Pod on its node, as in a real
    /// cluster. Off: every process is cluster admin.
    pub shipped_identities: bool,
    /// The chart is installed already (by helm, beside a real node): the manifests are not
    /// applied again.
    pub chart_installed: bool,
    /// Simulated Nodes carry `kubernetes.io/os: linux`, as kubelets set it. Off beside a real
    /// node, so the chart's DaemonSet and Deployment (which select that label) leave them
    /// alone: no kubelet would ever run their pods.
    pub os_label: bool,
    /// Extra arguments for every agent.
    pub agent_args: Vec<String>,
    /// Extra arguments for every operator.
    pub operator_args: Vec<String>,
    /// The subdirectory of the kubelet's seccomp directory agents write to (and the
    /// operator names in `localhostProfile`): the chart's `agent.seccompSubdir`.
    pub seccomp_subdir: String,
}

impl Options {
    /// `nodes` agents that report denials read from `log` (auditd's, simulated), with
    /// `proc_root` standing for the host's /proc, and an operator that publishes each node's
    /// pods of Palisade profiles to its agent.
    pub fn denials(nodes: usize, log: &Path, proc_root: &Path) -> Self {
        Self {
            nodes,
            agent_args: audit::agent_args("--denials", log, proc_root),
            operator_args: vec!["--denials".into()],
            ..Self::default()
        }
    }

    /// An operator that serves its webhooks on `127.0.0.1:port`, with `extra` arguments.
    pub fn webhook(port: u16, extra: &[&str]) -> Self {
        let mut operator_args = vec!["--webhook-address".to_string(), format!("127.0.0.1:{port}")];
        operator_args.extend(extra.iter().map(|a| a.to_string()));
        Self {
            operator_args,
            ..Self::default()
        }
    }
}

/// What the chart's `denials.enabled` grants the agents beyond the default manifests (get of
/// node reports, create and patch of Events), as objects to apply, named `name`.
pub fn denials_rbac(name: &str) -> Vec<serde_json::Value> {
    agent_role(
        name,
        json!([{"apiGroups": ["palisade.dev"], "resources": ["nodeprofilestatuses"], "verbs": ["get"]},
               {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]),
    )
}

/// What the chart's `learning.enabled` grants the agents beyond the default manifests (get of
/// node reports), as objects to apply, named `name`.
pub fn learning_rbac(name: &str) -> Vec<serde_json::Value> {
    agent_role(
        name,
        json!([{"apiGroups": ["palisade.dev"], "resources": ["nodeprofilestatuses"], "verbs": ["get"]}]),
    )
}

/// A ClusterRole `name` with `rules`, bound to the agents' ServiceAccount.
fn agent_role(name: &str, rules: serde_json::Value) -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
               "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": "palisade-agent", "namespace": NAMESPACE}]}),
    ]
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 3,
            operators: 1,
            drift_interval: 60,
            without_apparmor: vec![],
            shipped_identities: true,
            chart_installed: false,
            os_label: true,
            agent_args: vec![],
            operator_args: vec![],
            seccomp_subdir: palisade_domain::SECCOMP_SUBDIR.into(),
        }
    }
}

/// A running agent and the node it simulates.
pub struct Agent {
    pub node: String,
    pub proc: Option<Proc>,
    pub metrics_port: u16,
    /// Who the agent is: its ServiceAccount token, or the admin kubeconfig.
    pub kubeconfig: PathBuf,
}

pub struct Cluster {
    // Field order is drop order: Palisade's processes stop before the control plane.
    pub agents: BTreeMap<String, Agent>,
    pub operators: Vec<Option<Proc>>,
    pub operator_ports: Vec<u16>,
    pub operator_kubeconfig: PathBuf,
    pub options: Options,
    pub bin_dir: PathBuf,
    pub cp: ControlPlane,
}

/// Where cargo put the operator and agent binaries: `PALISADE_BIN_DIR`, or the target
/// directory this test binary was built into.
pub fn palisade_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PALISADE_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("exe has a directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for bin in ["palisade-agent", "palisade-operator"] {
        if !dir.join(bin).is_file() {
            bail!(
                "{} not found in {}: run `cargo build --bins` first (make test does)",
                bin,
                dir.display()
            );
        }
    }
    Ok(dir)
}

impl Cluster {
    /// [`Cluster::start`], with what most tests take first: a client of its API server and the
    /// APIs of the two profile kinds.
    pub async fn started(options: Options) -> Result<(Self, kube::Client, Api<SeccompProfile>, Api<AppArmorProfile>)> {
        let cluster = Self::start(options).await?;
        let client = cluster.cp.client().await?;
        let (sp, aap) = (Api::all(client.clone()), Api::all(client.clone()));
        Ok((cluster, client, sp, aap))
    }

    /// Starts a control plane in a temporary directory and Palisade on it.
    pub async fn start(options: Options) -> Result<Self> {
        let cp = ControlPlane::start_temp().await?;
        Self::start_on(cp, options).await
    }

    /// Starts Palisade (operator and agents) on a running control plane.
    pub async fn start_on(cp: ControlPlane, options: Options) -> Result<Self> {
        let bin_dir = palisade_bin_dir()?;
        let client = cp.client().await?;
        let ns: Api<Namespace> = Api::all(client.clone());
        ns.patch(
            NAMESPACE,
            &PatchParams::apply("palisade-e2e"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})),
        )
        .await?;
        let operator_kubeconfig = if options.shipped_identities {
            if !options.chart_installed {
                install_manifests(&cp)?;
            }
            let token = cp.kubectl_ok(&[
                "create",
                "token",
                "palisade-operator",
                "-n",
                NAMESPACE,
                "--duration=24h",
            ])?;
            cp.token_kubeconfig("operator", token.trim())?
        } else {
            cp.kubeconfig.clone()
        };
        let mut cluster = Self {
            agents: BTreeMap::new(),
            operators: vec![],
            operator_ports: vec![],
            operator_kubeconfig,
            options: options.clone(),
            bin_dir,
            cp,
        };
        for i in 0..options.operators {
            cluster.operator_ports.push(free_port()?);
            cluster.operators.push(None);
            cluster.start_operator(i)?;
        }
        for i in 0..options.nodes {
            cluster
                .add_node(
                    &format!("node-{i}"),
                    !options.without_apparmor.contains(&i),
                    BTreeMap::new(),
                )
                .await?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.cp.dir
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.cp.dir.join("nodes").join(node)
    }

    /// `<kubelet-root>/seccomp/palisade` of a node.
    pub fn seccomp_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node)
            .join("kubelet/seccomp")
            .join(&self.options.seccomp_subdir)
    }

    /// The simulated kernel's list of loaded AppArmor profiles on a node: name → mode.
    pub fn apparmor_loaded(&self, node: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.node_dir(node).join("apparmorfs/profiles")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (name, mode) = l.rsplit_once(" (")?;
                Some((name.to_string(), mode.trim_end_matches(')').to_string()))
            })
            .collect()
    }

    /// Seccomp profiles (`*.json`) in a node's Palisade seccomp directory (not the agent's
    /// `.palisade-owned` record).
    pub fn seccomp_files(&self, node: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.seccomp_dir(node))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Creates a Node object and its directories, and starts its agent.
    pub async fn add_node(&mut self, node: &str, apparmor: bool, labels: BTreeMap<String, String>) -> Result<()> {
        let dir = self.node_dir(node);
        std::fs::create_dir_all(dir.join("kubelet"))?;
        std::fs::create_dir_all(dir.join("state"))?;
        if apparmor {
            simulate_apparmorfs(&dir.join("apparmorfs"))?;
        }
        simulate_proc(&dir.join("proc"))?;
        let mut all_labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), node.to_string())]);
        if self.options.os_label {
            all_labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        }
        all_labels.extend(labels);
        let nodes: Api<Node> = Api::all(self.cp.client().await?);
        nodes
            .patch(
                node,
                &PatchParams::apply("palisade-e2e"),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": all_labels}}),
                ),
            )
            .await?;
        // What a kubelet says of its node: the kernel this machine runs (the simulated
        // node's), and a runtime that says it is none.
        let kernel = std::fs::read_to_string(dir.join("proc/sys/kernel/osrelease")).unwrap_or_default();
        let info = json!({"kernelVersion": kernel.trim(), "containerRuntimeVersion": SIMULATED_RUNTIME,
                          "operatingSystem": "linux", "architecture": go_arch()});
        nodes
            .patch_status(
                node,
                &PatchParams::apply("palisade-e2e"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                                     "status": {"nodeInfo": info}})),
            )
            .await?;
        let kubeconfig = if self.options.shipped_identities {
            agent_identity(&self.cp, node)?
        } else {
            self.cp.kubeconfig.clone()
        };
        self.agents.insert(
            node.to_string(),
            Agent {
                node: node.to_string(),
                proc: None,
                metrics_port: free_port()?,
                kubeconfig,
            },
        );
        self.start_agent(node)
    }

    /// Deletes a Node object and stops its agent (its files stay, as on a dead machine).
    pub async fn delete_node(&mut self, node: &str) -> Result<()> {
        if let Some(mut agent) = self.agents.remove(node)
            && let Some(p) = agent.proc.as_mut()
        {
            p.stop(Duration::from_secs(5));
        }
        let nodes: Api<Node> = Api::all(self.cp.client().await?);
        nodes.delete(node, &DeleteParams::default()).await?;
        Ok(())
    }

    /// (Re)starts a node's agent process.
    pub fn start_agent(&mut self, node: &str) -> Result<()> {
        let dir = self.node_dir(node);
        let drift = self.options.drift_interval;
        let bin = self.bin_dir.join("palisade-agent");
        let features = self.kernel_features(node);
        let agent = self.agents.get_mut(node).context("unknown node")?;
        // While the agent was down another process may have taken its port (free ports
        // are handed out to every test running beside this one): then it gets a new one.
        if std::net::TcpListener::bind(("127.0.0.1", agent.metrics_port)).is_err() {
            agent.metrics_port = free_port()?;
        }
        let kubeconfig = agent.kubeconfig.clone();
        let addr = format!("127.0.0.1:{}", agent.metrics_port);
        let mut cmd = Command::new(bin);
        cmd.env("KUBECONFIG", &kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("PALISADE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .args(["--node-name", node, "--namespace", NAMESPACE])
            .arg("--kubelet-root")
            .arg(dir.join("kubelet"))
            .arg("--apparmorfs")
            .arg(dir.join("apparmorfs"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--metrics-address", &addr, "--health-address", &addr])
            .args(["--drift-interval", &drift.to_string()])
            .arg("--simulate-apparmor-kernel")
            .arg(features)
            .args(["--seccomp-subdir", &self.options.seccomp_subdir])
            .args(&self.options.agent_args);
        // The node's simulated /proc, unless the test gives the agents one of its own.
        if !self.options.agent_args.iter().any(|a| a == "--proc-root") {
            cmd.arg("--proc-root").arg(dir.join("proc"));
        }
        agent.proc = Some(Proc::spawn(&format!("agent {node}"), &mut cmd, &dir.join("agent.log"))?);
        Ok(())
    }

    /// The features file a node's simulated kernel claims: [`SIMULATED_FEATURES`] unless
    /// [`Cluster::set_kernel_features`] gave the node its own.
    pub fn kernel_features(&self, node: &str) -> PathBuf {
        let own = self.node_dir(node).join("kernel-features");
        if own.exists() {
            own
        } else {
            PathBuf::from(SIMULATED_FEATURES)
        }
    }

    /// Gives a node's simulated kernel [`SIMULATED_FEATURES`] plus `extra` (flattened
    /// features, such as `dbus {mask {send\n}\n}`) and restarts its agent, as a node booted
    /// into a newer kernel: the agent compiles for the new features from then on.
    pub fn set_kernel_features(&mut self, node: &str, extra: &str) -> Result<()> {
        let base = std::fs::read_to_string(SIMULATED_FEATURES).with_context(|| SIMULATED_FEATURES.to_string())?;
        let text = format!("{base}{extra}");
        let fs = self.node_dir(node).join("apparmorfs");
        for name in simulated_feature_names(&text) {
            std::fs::create_dir_all(fs.join("features").join(name))?;
        }
        std::fs::write(self.node_dir(node).join("kernel-features"), text)?;
        // The new kernel starts with nothing loaded.
        std::fs::write(fs.join("profiles"), b"")?;
        self.kill_agent(node);
        self.start_agent(node)
    }

    /// SIGKILLs a node's agent (a crash).
    pub fn kill_agent(&mut self, node: &str) {
        if let Some(p) = self.agents.get_mut(node).and_then(|a| a.proc.as_mut()) {
            p.kill();
        }
    }

    /// Starts operator replica `i`.
    pub fn start_operator(&mut self, i: usize) -> Result<()> {
        if std::net::TcpListener::bind(("127.0.0.1", self.operator_ports[i])).is_err() {
            self.operator_ports[i] = free_port()?;
        }
        let addr = format!("127.0.0.1:{}", self.operator_ports[i]);
        let mut cmd = Command::new(self.bin_dir.join("palisade-operator"));
        cmd.env("KUBECONFIG", &self.operator_kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("PALISADE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .args(["--namespace", NAMESPACE, "--identity", &format!("operator-{i}")])
            .args(["--seccomp-subdir", &self.options.seccomp_subdir])
            .args(["--metrics-address", &addr, "--health-address", &addr])
            .args(&self.options.operator_args);
        let log = self.cp.dir.join(format!("operator-{i}.log"));
        self.operators[i] = Some(Proc::spawn(&format!("operator-{i}"), &mut cmd, &log)?);
        Ok(())
    }

    /// SIGKILLs operator replica `i`.
    pub fn kill_operator(&mut self, i: usize) {
        if let Some(p) = self.operators[i].as_mut() {
            p.kill();
        }
    }

    /// Runs `kubectl` against the cluster.
    pub fn kubectl(&self, args: &[&str]) -> Result<std::process::Output> {
        self.cp.kubectl(args)
    }

    /// Applies files or directories with kubectl; fails with kubectl's words.
    /// Runs the `palisade` CLI (the debug build) against this cluster: success, stdout, stderr.
    pub fn palisade(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(crate::controlplane::repo_root().join("target/debug/palisade"))
            .arg("--kubeconfig")
            .arg(&self.cp.kubeconfig)
            .args(args)
            .output()
            .expect("the palisade binary runs (cargo build --bins)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Applies `items` as one List, written to `<name>.json` in the cluster's directory.
    pub fn apply_list(&self, name: &str, items: &[serde_json::Value]) -> Result<()> {
        let file = self.dir().join(format!("{name}.json"));
        std::fs::write(
            &file,
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?,
        )?;
        self.apply(&file)
    }

    pub fn apply(&self, path: &Path) -> Result<()> {
        let out = self.kubectl(&["apply", "-f", &path.display().to_string()])?;
        if !out.status.success() {
            bail!(
                "kubectl apply -f {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Every process's log tail, for a failing test.
    pub fn print_logs(&self, lines: usize) {
        for p in self.operators.iter().flatten() {
            p.print_tail(lines);
        }
        for a in self.agents.values() {
            if let Some(p) = &a.proc {
                p.print_tail(lines);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs(30);
        }
    }
}

/// Polls `check` every 50 ms until it returns `Ok(Some(v))` or `timeout` passes; the
/// error names what was awaited and the last state seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    wait_for_every(what, timeout, Duration::from_millis(50), check).await
}

/// [`wait_for`], polling every `interval` (for checks that cost more, like a command on a
/// real node).
pub async fn wait_for_every<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what} {last}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// A profile's status once its current generation has a condition of this type with
/// this status (`"True"`/`"False"`).
pub async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
) -> Result<palisade_domain::ProfileStatus>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + ProfileObject,
{
    wait_status(api, name, &format!("{name}: {type_}={status}"), |s, generation| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.observed_generation == generation)
    })
    .await
}

/// A profile's status once `holds` is true of it and the profile's current generation.
async fn wait_status<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    holds: impl Fn(&palisade_domain::ProfileStatus, Option<i64>) -> bool,
) -> Result<palisade_domain::ProfileStatus>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + ProfileObject,
{
    wait_for(what, Duration::from_secs(60), || async {
        let p = api.get(name).await?;
        let generation = p.meta().generation;
        Ok(p.profile_status().filter(|s| holds(s, generation)))
    })
    .await
}

/// Both profile kinds, for [`wait_condition`].
pub trait ProfileObject {
    fn profile_status(&self) -> Option<palisade_domain::ProfileStatus>;
}

impl ProfileObject for palisade_domain::SeccompProfile {
    fn profile_status(&self) -> Option<palisade_domain::ProfileStatus> {
        self.status.clone()
    }
}

impl ProfileObject for palisade_domain::AppArmorProfile {
    fn profile_status(&self) -> Option<palisade_domain::ProfileStatus> {
        self.status.clone()
    }
}

/// Applies a YAML/JSON object given as a JSON value (server-side apply as the test).
pub async fn apply_json(client: &kube::Client, obj: serde_json::Value) -> Result<()> {
    let kind = obj["kind"].as_str().context("kind")?.to_string();
    let name = obj["metadata"]["name"].as_str().context("name")?.to_string();
    let ar = match kind.as_str() {
        "SeccompProfile" => kube::core::ApiResource::erase::<palisade_domain::SeccompProfile>(&()),
        "AppArmorProfile" => kube::core::ApiResource::erase::<palisade_domain::AppArmorProfile>(&()),
        other => bail!("apply_json does not know {other}"),
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    api.patch(&name, &PatchParams::apply("palisade-e2e").force(), &Patch::Apply(obj))
        .await?;
    Ok(())
}

/// Waits for Events with `reason` about the object named `name` (Events about
/// cluster-scoped objects go to `default`) and returns them.
pub async fn wait_events(
    client: &kube::Client,
    reason: &str,
    name: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    wait_listed(
        &events,
        &format!("a {reason} Event about {name}"),
        |e| e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name),
        |hits| !hits.is_empty(),
    )
    .await
}

/// Waits until the objects of `api` that `keep` selects are `enough`, and returns them.
pub async fn wait_listed<K>(
    api: &Api<K>,
    what: &str,
    keep: impl Fn(&K) -> bool,
    enough: impl Fn(&[K]) -> bool,
) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(what, Duration::from_secs(60), || async {
        let kept: Vec<K> = api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|o| keep(o))
            .collect();
        Ok(enough(&kept).then_some(kept))
    })
    .await
}

/// What a node's report vouches for, by (kind, name): where each profile targeting the node
/// stands there (read as `kubectl palisade status` reads it). An Installed row with
/// `current` holds the accepted content.
pub async fn node_standing(
    client: &kube::Client,
    node: &str,
) -> Result<BTreeMap<(palisade_domain::ProfileKind, String), palisade_cli::cluster::NodeRow>> {
    let listed = palisade_cli::cluster::Listed::fetch(client).await?;
    Ok(listed
        .on_nodes()
        .into_iter()
        .filter(|((n, _, _), _)| n == node)
        .map(|((_, kind, name), row)| ((kind, name), row))
        .collect())
}

/// Waits until the profile is Ready at its current generation and installed on exactly
/// `nodes` nodes. (Ready alone can come before a just-started agent is counted.)
pub async fn wait_installed<K>(api: &Api<K>, name: &str, nodes: u32) -> Result<palisade_domain::ProfileStatus>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + ProfileObject,
{
    wait_status(api, name, &format!("{name} Ready on {nodes} nodes"), |s, generation| {
        s.nodes.is_some_and(|n| n.installed == nodes && n.targeted == nodes)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation)
    })
    .await
}

/// Installs manifests/palisade.yaml as users do (`kubectl apply --server-side`): the
/// ServiceAccounts, RBAC and admission policy the processes then run under. Nothing runs
/// the Deployment and DaemonSet objects here (no controller-manager, no kubelet).
pub fn install_manifests(cp: &ControlPlane) -> Result<()> {
    let path = repo_root().join("manifests/palisade.yaml");
    cp.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &path.display().to_string(),
    ])
    .context("installing manifests/")?;
    Ok(())
}

/// What a kubelet does for the DaemonSet pod on `node`, in the part that decides who the
/// agent is: a Pod of ServiceAccount palisade-agent bound to the node, and a token bound to
/// that Pod (so the API server sees the node name in the agent's user info). Returns a
/// kubeconfig with that token.
pub fn agent_identity(cp: &ControlPlane, node: &str) -> Result<PathBuf> {
    let pod = format!("palisade-agent-{node}");
    // A Node of the same name may have come and gone: its Pod's token would name the old
    // Node's uid and be refused.
    cp.kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        NAMESPACE,
        &pod,
        "--ignore-not-found",
        "--grace-period=0",
        "--force",
    ])?;
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "palisade", "app.kubernetes.io/component": "agent"}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "palisade-agent",
            "containers": [{"name": "agent", "image": "palisade-agent"}],
            // Like the DaemonSet's pods: a node lifecycle controller (beside a real node)
            // must not evict it from a simulated Node that never reports status.
            "tolerations": [{"operator": "Exists"}],
        },
    });
    let file = cp.dir.join(format!("{pod}.json"));
    std::fs::write(&file, manifest.to_string())?;
    cp.kubectl_ok(&["create", "-f", &file.display().to_string()])?;
    let token = cp.kubectl_ok(&[
        "create",
        "token",
        "palisade-agent",
        "-n",
        NAMESPACE,
        "--bound-object-kind=Pod",
        &format!("--bound-object-name={pod}"),
        "--duration=24h",
    ])?;
    cp.token_kubeconfig(&format!("agent-{node}"), token.trim())
}

/// The Prometheus text a process serves on `127.0.0.1:<port>/metrics`.
pub async fn scrape_metrics(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// The sum of every sample of a metric whose line starts with `prefix` (name and labels).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Points the chart's webhook configuration `name` (a Validating- or
/// MutatingWebhookConfiguration, `K`) at `url` instead of its Service (the operator runs on
/// this machine), and waits until the operator has put its CA into the caBundle; returns it.
pub async fn webhook_at_url<K>(client: &kube::Client, name: &str, url: &str) -> Result<Vec<u8>>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
{
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &kube::core::ApiResource::erase::<K>(&()));
    let to_url = json!([
        {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
        {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": url},
    ]);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(to_url)?),
    )
    .await?;
    wait_for("the operator's CA in the caBundle", Duration::from_secs(90), || async {
        let config = serde_json::to_value(api.get(name).await?)?;
        let bundle: Option<k8s_openapi::ByteString> =
            serde_json::from_value(config["webhooks"][0]["clientConfig"]["caBundle"].clone())?;
        Ok(bundle.map(|b| b.0))
    })
    .await
}

/// This machine's architecture as Kubernetes names it (GOARCH: amd64, arm64), for the
/// simulated Nodes' nodeInfo.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
