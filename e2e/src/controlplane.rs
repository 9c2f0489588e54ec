//! A real etcd + kube-apiserver on loopback, started as local processes (the envtest way).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

use crate::certs::{GUEST_APISERVER_IP, Pki};
use crate::process::Proc;

/// Where etcd, kube-apiserver and kubectl are: `KUBEBUILDER_ASSETS` when it holds them,
/// else the directory the build script prints (building them once if needed).
pub fn binary_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("KUBEBUILDER_ASSETS") {
        let dir = PathBuf::from(dir);
        if dir.join("etcd").is_file() && dir.join("kube-apiserver").is_file() {
            return Ok(dir);
        }
    }
    let script = repo_root().join("e2e/scripts/control-plane-bin.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed; set KUBEBUILDER_ASSETS or install Go", script.display());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The repository root (the workspace this crate sits in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the API server is set up for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Simulated nodes only: no kubelet and no pod ever runs, so no controller creates
    /// ServiceAccounts and the `kubernetes` Service has no endpoint.
    Simulated,
    /// A real node joins (e2e/src/realnode.rs): the Node authorizer and NodeRestriction act
    /// on the kubelet's identity, pods get ServiceAccount tokens, and the `kubernetes`
    /// Service points at the address the guest reaches the API server at.
    RealNode,
}

/// A running control plane. Dropping it stops both processes.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    pub api_port: u16,
    pub etcd_port: u16,
    // Field order is drop order: the controller manager stops before the API server, and
    // the API server before etcd.
    pub controller_manager: Option<Proc>,
    pub apiserver: Proc,
    pub etcd: Proc,
    etcd_args: Vec<String>,
    api_args: Vec<String>,
    /// Set when the harness made `dir` itself: removed on drop unless a test failed.
    temp: std::sync::Mutex<Option<tempfile::TempDir>>,
}

impl ControlPlane {
    /// Starts a control plane in a new temporary directory, removed when it is dropped
    /// (kept, and named, when a test fails).
    pub async fn start_temp() -> Result<Self> {
        Self::start_temp_with(Flavor::Simulated).await
    }

    /// [`Self::start_temp`] for the given flavor.
    pub async fn start_temp_with(flavor: Flavor) -> Result<Self> {
        let temp = tempfile::Builder::new().prefix("palisade-e2e-").tempdir()?;
        match Self::start_with(temp.path(), flavor).await {
            Ok(mut cp) => {
                cp.temp = std::sync::Mutex::new(Some(temp));
                Ok(cp)
            }
            Err(e) => Err(e.context(format!(
                "control plane state and logs kept in {}",
                temp.keep().display()
            ))),
        }
    }

    /// Starts etcd and kube-apiserver with state under `dir`, waits until the API server is
    /// ready, writes `dir/kubeconfig`, and installs Palisade's CRDs from `crds/`.
    pub async fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, Flavor::Simulated).await
    }

    /// [`Self::start`] for the given flavor.
    pub async fn start_with(dir: &Path, flavor: Flavor) -> Result<Self> {
        let bin_dir = binary_dir()?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let pki = Pki::generate(&dir.join("pki"))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = etcd_args(&dir, &etcd_url, &peer_url);
        let etcd = Proc::spawn(
            "etcd",
            Command::new(bin_dir.join("etcd")).args(&etcd_args),
            &logs.join("etcd.log"),
        )?;

        let api_port = free_port()?;
        let api_args = apiserver_args(&dir, &pki, &etcd_url, api_port, flavor);
        let apiserver = Proc::spawn(
            "kube-apiserver",
            Command::new(bin_dir.join("kube-apiserver")).args(&api_args),
            &logs.join("kube-apiserver.log"),
        )?;

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(api_port, &pki))?;
        let cp = Self {
            dir,
            bin_dir,
            kubeconfig,
            pki,
            api_port,
            etcd_port,
            controller_manager: None,
            apiserver,
            etcd,
            temp: std::sync::Mutex::new(None),
            etcd_args,
            api_args,
        };
        cp.wait_ready(Duration::from_secs(90)).await?;
        cp.install_crds().await?;
        Ok(cp)
    }

    /// Keeps the directory (state and logs) after the control plane stops, for a failure
    /// that did not panic.
    pub fn keep_dir(&self) {
        if let Some(temp) = self.temp.lock().expect("temp lock").take() {
            let _ = temp.keep();
        }
    }

    /// Starts kube-controller-manager with only its garbage collector: the controller that
    /// deletes objects whose owners are gone (a NodeProfileStatus after its Node).
    pub fn start_garbage_collector(&mut self) -> Result<()> {
        self.start_controllers(&["garbagecollector"])
    }

    /// Starts kube-controller-manager running only `controllers` (its names, e.g.
    /// `daemonset`), as the admin.
    pub fn start_controllers(&mut self, controllers: &[&str]) -> Result<()> {
        let kcm = self.bin_dir.join("kube-controller-manager");
        if !kcm.is_file() {
            bail!(
                "{} not found: the control-plane binaries predate it (make control-plane builds it)",
                kcm.display()
            );
        }
        let mut cmd = Command::new(kcm);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--controllers={}", controllers.join(",")))
            // Published in every namespace as kube-root-ca.crt, which pods' token volumes
            // carry so in-cluster clients verify the API server.
            .arg(format!("--root-ca-file={}", self.pki.ca_cert.display()))
            .args(["--leader-elect=false", "--secure-port=0", "--v=1"]);
        self.controller_manager = Some(Proc::spawn(
            "kube-controller-manager",
            &mut cmd,
            &self.dir.join("logs/kube-controller-manager.log"),
        )?);
        Ok(())
    }

    /// Stops etcd and kube-apiserver (SIGTERM), waits `down`, and starts both again on the
    /// same ports and data; returns once the API server is ready. For fault tests.
    pub async fn restart(&mut self, down: Duration) -> Result<()> {
        self.apiserver.stop(Duration::from_secs(10));
        self.etcd.stop(Duration::from_secs(10));
        tokio::time::sleep(down).await;
        let logs = self.dir.join("logs");
        self.etcd = Proc::spawn(
            "etcd",
            Command::new(self.bin_dir.join("etcd")).args(&self.etcd_args),
            &logs.join("etcd.log"),
        )?;
        self.apiserver = Proc::spawn(
            "kube-apiserver",
            Command::new(self.bin_dir.join("kube-apiserver")).args(&self.api_args),
            &logs.join("kube-apiserver.log"),
        )?;
        self.wait_ready(Duration::from_secs(90)).await
    }

    /// An admin client (group system:masters).
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let client = self.client().await?;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                outcome => {
                    for p in [&self.etcd, &self.apiserver] {
                        p.check_alive()?;
                    }
                    if start.elapsed() > timeout {
                        bail!(
                            "kube-apiserver not ready after {timeout:?}: {outcome:?}; logs in {}",
                            self.dir.join("logs").display()
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Applies every CRD file in `crds/` (server-side) and waits until each is Established.
    pub async fn install_crds(&self) -> Result<()> {
        let client = self.client().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        for crd in crd_files()? {
            let name = crd.metadata.name.clone().context("CRD without a name")?;
            api.patch(&name, &PatchParams::apply("palisade-e2e").force(), &Patch::Apply(&crd))
                .await?;
            let established = await_condition(api.clone(), &name, conditions::is_crd_established());
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .with_context(|| format!("CRD {name} not Established in 30 s"))??;
        }
        Ok(())
    }

    /// Runs the control plane's own kubectl against it.
    pub fn kubectl(&self, args: &[&str]) -> Result<std::process::Output> {
        let kubectl = if self.bin_dir.join("kubectl").is_file() {
            self.bin_dir.join("kubectl")
        } else {
            "kubectl".into()
        };
        Command::new(kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.dir.join("kubectl-cache").display()))
            .args(args)
            .output()
            .context("running kubectl")
    }

    /// Runs kubectl and returns its stdout, failing with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        kubectl_output(args, out)
    }

    /// Writes a kubeconfig `<dir>/<name>.kubeconfig` that authenticates with `token` (a
    /// ServiceAccount token), so a process runs as that identity, RBAC and admission included.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let yaml = kubeconfig_for(self.api_port, &self.pki.ca_cert, name, &format!("token: {token}"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("control plane state and logs kept in {}", self.dir.display());
            for p in [&self.apiserver, &self.etcd] {
                p.print_tail(40);
            }
            self.keep_dir();
        }
    }
}

fn etcd_args(dir: &Path, client_url: &str, peer_url: &str) -> Vec<String> {
    vec![
        "--name=palisade".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=palisade={peer_url}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(dir: &Path, pki: &Pki, etcd_url: &str, port: u16, flavor: Flavor) -> Vec<String> {
    let p = |path: &Path| path.display().to_string();
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", p(&pki.server_cert)),
        format!("--tls-private-key-file={}", p(&pki.server_key)),
        format!("--client-ca-file={}", p(&pki.ca_cert)),
        format!("--service-account-key-file={}", p(&pki.sa_public)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_private)),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        "--allow-privileged=true".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ];
    match flavor {
        Flavor::Simulated => args.extend([
            "--advertise-address=127.0.0.1".to_string(),
            // The kubernetes Service endpoint may not be a loopback address; no pod needs it here.
            "--endpoint-reconciler-type=none".into(),
            "--authorization-mode=RBAC".into(),
            // No controller-manager runs here to create each namespace's default
            // ServiceAccount, so the admission plugin that requires it is off.
            "--disable-admission-plugins=ServiceAccount".into(),
        ]),
        Flavor::RealNode => args.extend([
            // Pods reach the API server through the `kubernetes` Service, whose endpoint is
            // this address and port as the guest sees them (QEMU forwards it to 127.0.0.1).
            format!("--advertise-address={GUEST_APISERVER_IP}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
        ]),
    }
    args
}

fn kubeconfig_yaml(port: u16, pki: &Pki) -> String {
    let credentials = format!(
        "client-certificate: {}\n    client-key: {}",
        pki.admin_cert.display(),
        pki.admin_key.display()
    );
    kubeconfig_for(port, &pki.ca_cert, "admin", &credentials)
}

/// A kubeconfig for the local API server as `user`, with `credentials` (YAML lines of the
/// user entry).
fn kubeconfig_for(port: u16, ca: &Path, user: &str, credentials: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: palisade-local
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    {credentials}
contexts:
- name: palisade-local
  context: {{cluster: palisade-local, user: {user}}}
current-context: palisade-local
",
        ca = ca.display(),
    )
}

/// Runs `kubectl` with `kubeconfig` and returns its stdout, failing with its stderr.
pub fn kubectl_ok(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .context("running kubectl")?;
    kubectl_output(args, out)
}

fn kubectl_output(args: &[&str], out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The CRDs committed in `crds/`, which is what users apply.
pub fn crd_files() -> Result<Vec<CustomResourceDefinition>> {
    let dir = repo_root().join("crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)?;
            yaml_serde::from_str(&text).with_context(|| format!("parsing {}", f.display()))
        })
        .collect()
}
