//! A real Kubernetes node for end-to-end tests: a QEMU guest running Debian's kernel with
//! AppArmor as its active LSM, containerd + runc, kube-proxy and an upstream kubelet, joined
//! to the local control plane; Palisade installed on it by its Helm chart.
//!
//! - **Artifacts**, built once and cached outside the clone (`$PALISADE_CACHE`, default
//!   `~/.cache/palisade`): the guest image (`e2e/realnode/build-guest.sh`), the kubelet,
//!   kube-proxy and kube-scheduler (`e2e/scripts/control-plane-bin.sh --real-node`), the pause
//!   and `busybox:local` images (`e2e/realnode/test-images.sh`) and Palisade's own images
//!   (`images/build.sh`, what `make image` runs).
//! - **Network**: QEMU user networking with `restrict=on`: the guest reaches nothing but one
//!   forwarded address, 10.0.2.100:<api port>, which QEMU connects to the API server on the
//!   host's 127.0.0.1. The API server advertises that address, so the `kubernetes` Service
//!   (via kube-proxy in the guest) leads pods to it too. Pods get addresses from Debian's
//!   bridge CNI plugin.
//! - **Identity**: the kubelet authenticates with a client certificate for
//!   `system:node:<name>` (group `system:nodes`), so the Node authorizer and NodeRestriction
//!   apply; kube-proxy as `system:kube-proxy`. Every client verifies the API server's
//!   certificate, which names 10.0.2.100 and the `kubernetes` Service.
//! - **Node shell**: tests that must act on the node (unload a profile, read the kernel log)
//!   use [`RealNode::exec`], a command channel over a virtio-serial port whose host end is a
//!   unix socket in the harness's private directory; nothing listens on a network.
//! - On the host beside the API server run kube-scheduler and kube-controller-manager's
//!   deployment, replicaset, daemonset, garbage collector, serviceaccount, root CA publisher
//!   and endpointslice controllers, so the chart's workloads run as on any cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::certs::GUEST_APISERVER_IP;
use crate::cluster::NAMESPACE;
use crate::controlplane::{ControlPlane, Flavor, repo_root};
use crate::process::Proc;

/// Pod addresses: the cluster's range; node `i` gets `10.244.<i>.0/24` (the bridge CNI
/// plugin's range there).
const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The command channel's virtio-serial port name (`/dev/virtio-ports/<name>` in the guest).
const CTL_PORT: &str = "palisade.ctl";
/// Controllers of kube-controller-manager the real-node cluster runs on the host.
const CONTROLLERS: &[&str] = &[
    "deployment",
    "replicaset",
    "daemonset",
    "garbagecollector",
    "serviceaccount",
    "root-ca-cert-publisher",
    "endpointslice",
    "endpointslicemirroring",
    "namespace",
    "podgc",
    // Takes the not-ready taint the kubelet registers with off a Ready node.
    "nodelifecycle",
];

/// What a real node is: a Debian suite and an architecture, written `bookworm` (amd64) or
/// `bookworm-arm64`. An arm64 node runs under `qemu-system-aarch64` (software emulation),
/// with kubelet and kube-proxy cross-built for it and the arm64 test images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKind {
    pub suite: String,
    /// Debian's (and OCI's) architecture name: `amd64` or `arm64`.
    pub arch: &'static str,
}

impl NodeKind {
    pub fn parse(text: &str) -> Result<Self> {
        let (suite, arch) = match text.strip_suffix("-arm64") {
            Some(suite) => (suite, "arm64"),
            None => (text.strip_suffix("-amd64").unwrap_or(text), "amd64"),
        };
        if suite.is_empty() || !suite.bytes().all(|b| b.is_ascii_lowercase()) {
            bail!(
                "'{text}' is not a real node kind: a Debian suite, `-arm64` after it for arm64 (bookworm, bookworm-arm64)"
            );
        }
        Ok(Self {
            suite: suite.into(),
            arch,
        })
    }

    /// A comma-separated list of kinds (`bookworm,sid`, `bookworm,bookworm-arm64`); `1` is
    /// one bookworm node.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let kinds = match text.trim() {
            "" | "1" => vec![Self::parse("bookworm")?],
            list => list.split(',').map(|k| Self::parse(k.trim())).collect::<Result<_>>()?,
        };
        Ok(kinds)
    }

    /// `PALISADE_REAL_NODES` (what `make realnode-test REAL_NODES=...` sets), or one bookworm
    /// node.
    pub fn list_from_env() -> Result<Vec<Self>> {
        Self::parse_list(&std::env::var("PALISADE_REAL_NODES").unwrap_or_default())
    }

    /// The name the build scripts take: `bookworm`, `bookworm-arm64`.
    pub fn name(&self) -> String {
        match self.arch {
            "amd64" => self.suite.clone(),
            arch => format!("{}-{arch}", self.suite),
        }
    }

    /// Software emulation of another CPU is several times slower than of this one.
    pub fn patience(&self) -> u32 {
        if self.arch == "amd64" { 1 } else { 3 }
    }
}

/// Prints a progress line with the time since `start` (a real-node run takes minutes; the
/// test binary runs with --nocapture so these show as they happen).
pub fn progress(start: Instant, what: &str) {
    eprintln!("[realnode {:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// Runs a build script that prints a directory on stdout (progress on stderr).
fn script_dir(script: &Path, args: &[&str]) -> Result<PathBuf> {
    let out = run_script(script, args, std::process::Stdio::piped())?;
    Ok(PathBuf::from(String::from_utf8(out)?.trim()))
}

/// Runs one of the project's scripts, its stderr (progress, and what went wrong) shown as it
/// comes; returns its stdout when `stdout` is piped. A failure names the script: the
/// script's own error is the line above.
fn run_script(script: &Path, args: &[&str], stdout: std::process::Stdio) -> Result<Vec<u8>> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        let relative = script.strip_prefix(repo_root()).unwrap_or(script).display().to_string();
        let command: Vec<&str> = std::iter::once(relative.as_str()).chain(args.iter().copied()).collect();
        bail!("{} failed", command.join(" "));
    }
    Ok(out.stdout)
}

/// Everything a real node is made of, built (once) or found in the cache.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// vmlinuz, initrd, disk.img, packages.txt.
    pub guest: PathBuf,
    /// The Kubernetes binaries (control plane, kube-scheduler, kubelet, kube-proxy).
    pub k8s_bin: PathBuf,
    /// The kubelet and kube-proxy for the node's architecture.
    pub node_bin: PathBuf,
    pub kind: NodeKind,
    /// Image archives to import on the node, docker-archive tarballs of its architecture: the
    /// test images and Palisade's (the per-architecture tarballs `make image` writes beside
    /// the multi-architecture index; importing the index costs a software-emulated node
    /// minutes of hashing the other architecture's layers).
    pub images: Vec<PathBuf>,
}

impl Artifacts {
    /// Builds what is missing for each kind of node: the Kubernetes binaries, the guest
    /// images (in parallel: mostly downloading and unpacking), the test images, and
    /// Palisade's images with the project's own image build (`make image`).
    ///
    /// `sid` stands for "the newest Debian": when unstable cannot be installed on the day
    /// (its packages are broken now and then), this says so loudly and builds testing
    /// (`forky`) in its place, never skipping the node.
    pub fn build_all(kinds: &[NodeKind], start: Instant) -> Result<Vec<Self>> {
        let root = repo_root();
        let script = |path: &str| root.join(path);
        let inherit = std::process::Stdio::inherit;
        let mut arches: Vec<&'static str> = kinds.iter().map(|k| k.arch).collect();
        arches.sort_unstable();
        arches.dedup();
        // QEMU, mmdebstrap, socat...: installed when missing (as root), as `make test` does.
        progress(start, "Debian packages (e2e/scripts/system-deps.sh --test, --node)");
        run_script(&script("e2e/scripts/system-deps.sh"), &["--test"], inherit())?;
        for arch in &arches {
            run_script(&script("e2e/scripts/system-deps.sh"), &["--node", arch], inherit())?;
        }
        let mut k8s = std::collections::BTreeMap::new();
        for arch in &arches {
            progress(
                start,
                &format!("Kubernetes binaries (control-plane-bin.sh --real-node {arch})"),
            );
            let dir = script_dir(&script("e2e/scripts/control-plane-bin.sh"), &["--real-node", arch])?;
            k8s.insert(*arch, dir);
        }
        // One build per distinct kind (two builds of one kind would share its directory).
        let mut distinct: Vec<&NodeKind> = vec![];
        for kind in kinds {
            if !distinct.contains(&kind) {
                distinct.push(kind);
            }
        }
        let built: Vec<Result<(NodeKind, PathBuf)>> = std::thread::scope(|scope| {
            let builds: Vec<_> = distinct
                .iter()
                .map(|kind| scope.spawn(move || build_guest(kind, start)))
                .collect();
            builds
                .into_iter()
                .map(|b| {
                    b.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the guest build panicked")))
                })
                .collect()
        });
        let guests: Vec<Result<(NodeKind, PathBuf)>> = kinds
            .iter()
            .map(|kind| {
                let i = distinct
                    .iter()
                    .position(|k| *k == kind)
                    .expect("every kind is in distinct");
                match &built[i] {
                    Ok(guest) => Ok(guest.clone()),
                    Err(e) => Err(anyhow::anyhow!("{e:#}")),
                }
            })
            .collect();
        let mut test_images = std::collections::BTreeMap::new();
        for arch in &arches {
            progress(start, &format!("pause and busybox:local images ({arch})"));
            test_images.insert(*arch, script_dir(&script("e2e/realnode/test-images.sh"), &[arch])?);
        }
        progress(start, "Palisade's images (images/build.sh, as make image)");
        run_script(&root.join("images/build.sh"), &[], inherit())?;
        let palisade_images = root.join("target/images");
        let mut all = vec![];
        for guest in guests {
            let (kind, guest) = guest?;
            let k8s_bin = k8s[kind.arch].clone();
            let node_bin = match kind.arch {
                "amd64" => k8s_bin.clone(),
                arch => k8s_bin.join(format!("linux-{arch}")),
            };
            let images = vec![
                test_images[kind.arch].join("pause.tar"),
                test_images[kind.arch].join("busybox.tar"),
                palisade_images.join(format!("palisade-operator-{}.tar", kind.arch)),
                palisade_images.join(format!("palisade-agent-{}.tar", kind.arch)),
            ];
            for image in &images {
                if !image.is_file() {
                    bail!("{} was not built", image.display());
                }
            }
            all.push(Self {
                guest,
                k8s_bin,
                node_bin,
                kind,
                images,
            });
        }
        progress(start, "artifacts ready");
        Ok(all)
    }

    /// `<package> <version>` of the guest's kernel, containerd, runc and apparmor.
    pub fn guest_versions(&self) -> String {
        let packages = std::fs::read_to_string(self.guest.join("packages.txt")).unwrap_or_default();
        packages
            .lines()
            .filter(|l| {
                let name = l.split(' ').next().unwrap_or("");
                (name.starts_with("linux-image-") && !["linux-image-amd64", "linux-image-arm64"].contains(&name))
                    || ["containerd", "runc", "apparmor", "libseccomp2"].contains(&name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Builds (or finds) the guest image of `kind`; unstable falls back to testing, loudly.
fn build_guest(kind: &NodeKind, start: Instant) -> Result<(NodeKind, PathBuf)> {
    let script = repo_root().join("e2e/realnode/build-guest.sh");
    progress(
        start,
        &format!("guest image (e2e/realnode/build-guest.sh {})", kind.name()),
    );
    match script_dir(&script, &[&kind.name()]) {
        Ok(dir) => Ok((kind.clone(), dir)),
        Err(e) if kind.suite == "sid" => {
            let forky = NodeKind {
                suite: "forky".into(),
                arch: kind.arch,
            };
            let banner = "!".repeat(78);
            eprintln!(
                "{banner}\n!! Debian unstable (sid) cannot be installed today ({e:#}):\n\
                 !! the node of kind {} is built from testing ({}) instead.\n{banner}",
                kind.name(),
                forky.name()
            );
            progress(
                start,
                &format!("guest image (e2e/realnode/build-guest.sh {})", forky.name()),
            );
            let dir = script_dir(&script, &[&forky.name()])?;
            Ok((forky, dir))
        }
        Err(e) => Err(e),
    }
}

/// The guest: a running QEMU and its command channel.
pub struct RealNode {
    pub name: String,
    pub kind: NodeKind,
    /// A port on the host's 127.0.0.1 that QEMU forwards to the node's
    /// [`WEBHOOK_NODE_PORT`]: the way the host's API server reaches a webhook served in the
    /// node (through a NodePort Service the test creates).
    pub webhook_port: u16,
    /// The harness's directory for this node: share/ (the guest's /mnt/share), console.log.
    pub dir: PathBuf,
    qemu: Proc,
    ctl_socket: PathBuf,
    ctl: tokio::sync::Mutex<Option<BufReader<UnixStream>>>,
    next_id: AtomicU64,
}

/// The NodePort the host's [`RealNode::webhook_port`] leads to.
pub const WEBHOOK_NODE_PORT: u16 = 30443;

/// Where a node stands in its cluster: its place in the list, and its name there.
///
/// Each guest has its own QEMU user network, so nodes do not reach each other: each gets its
/// own address (10.0.2.<15 + index>) and pod range (10.244.<index>.0/24) all the same, so
/// that no two Node or Pod objects claim one address.
#[derive(Clone, Debug)]
pub struct Place {
    pub index: usize,
    /// The Node's name: `realnode` alone, `realnode-<kind>` in a list of several.
    pub name: String,
}

impl Place {
    /// The places of `kinds` in one cluster.
    pub fn of(kinds: &[NodeKind]) -> Vec<Self> {
        let mut places: Vec<Self> = vec![];
        for (index, kind) in kinds.iter().enumerate() {
            let mut name = match kinds.len() {
                1 => "realnode".to_string(),
                _ => format!("realnode-{}", kind.name()),
            };
            if places.iter().any(|p| p.name == name) {
                name = format!("{name}-{}", index + 1);
            }
            places.push(Self { index, name });
        }
        places
    }

    /// The guest's address on its user network (the kubelet's node IP).
    fn ip(&self) -> String {
        format!("10.0.2.{}", 15 + self.index)
    }
}

/// What a command run on the node returned.
#[derive(Debug)]
pub struct Exec {
    pub code: i32,
    pub output: String,
}

/// The directory the guest mounts: its scripts, configuration, identities, the node
/// binaries and the images to import.
fn prepare_share(cp: &ControlPlane, artifacts: &Artifacts, at: &Place, dir: &Path) -> Result<PathBuf> {
    let share = dir.join("share");
    let config = share.join("config");
    for d in [&config, &share.join("bin"), &share.join("images"), &share.join("out")] {
        std::fs::create_dir_all(d)?;
    }
    let guest_src = repo_root().join("e2e/realnode/guest");
    for f in ["boot.sh", "ctl.sh"] {
        std::fs::copy(guest_src.join(f), share.join(f))?;
    }
    std::fs::copy(guest_src.join("containerd.toml"), config.join("containerd.toml"))?;
    std::fs::write(
        share.join("node.env"),
        format!("NODE_NAME={}\nNODE_IP={}\nPOD_CIDR={CLUSTER_CIDR}\n", at.name, at.ip()),
    )?;

    // Identities: the kubelet as system:node:<name>, kube-proxy as system:kube-proxy.
    std::fs::copy(&cp.pki.ca_cert, config.join("ca.crt"))?;
    cp.pki.client_cert(
        &config,
        "kubelet",
        &format!("system:node:{}", at.name),
        Some("system:nodes"),
    )?;
    cp.pki.client_cert(&config, "kube-proxy", "system:kube-proxy", None)?;
    let server = format!("https://{GUEST_APISERVER_IP}:{}", cp.api_port);
    for who in ["kubelet", "kube-proxy"] {
        std::fs::write(config.join(format!("{who}.kubeconfig")), guest_kubeconfig(&server, who))?;
    }
    std::fs::write(config.join("kubelet.yaml"), KUBELET_CONFIG)?;
    std::fs::write(config.join("10-bridge.conflist"), bridge_conflist(at.index))?;

    for bin in ["kubelet", "kube-proxy"] {
        link_or_copy(&artifacts.node_bin.join(bin), &share.join("bin").join(bin))?;
    }
    for image in &artifacts.images {
        let name = image.file_name().context("image file name")?;
        // The operator runs on the first node alone (see [`RealNodeStack::helm_install`]);
        // an import costs the others most of a minute under emulation.
        if at.index > 0 && name.to_string_lossy().starts_with("palisade-operator-") {
            continue;
        }
        link_or_copy(image, &share.join("images").join(name))?;
    }
    Ok(share)
}

/// QEMU running the guest under software emulation (KVM only when asked for), its disk a
/// snapshot, `share` mounted, the API server forwarded in and the webhook port out.
fn qemu_command(
    artifacts: &Artifacts,
    at: &Place,
    dir: &Path,
    share: &Path,
    ctl_socket: &Path,
    webhook_port: u16,
    api_port: u16,
) -> Command {
    let console = dir.join("console.log");
    let accel = std::env::var("PALISADE_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let tcg = ["-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"];
    let (mut cmd, serial) = match artifacts.kind.arch {
        "arm64" => {
            let mut cmd = Command::new("qemu-system-aarch64");
            cmd.args(["-machine", "virt"]).args(tcg);
            (cmd, "ttyAMA0")
        }
        _ => {
            let mut cmd = Command::new("qemu-system-x86_64");
            match accel.as_str() {
                // /dev/kvm may exist and still be unable to run a stock kernel (a paravirtual
                // KVM): software emulation is the default, KVM only when asked for.
                "kvm" => cmd.args(["-enable-kvm", "-cpu", "host"]),
                _ => cmd.args(tcg),
            };
            (cmd, "ttyS0")
        }
    };
    let g = artifacts.guest.as_path();
    cmd.args([
        "-smp",
        "2",
        "-m",
        "3072",
        "-display",
        "none",
        "-nodefaults",
        "-monitor",
        "none",
    ])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .arg("-kernel")
    .arg(g.join("vmlinuz"))
    .arg("-initrd")
    .arg(g.join("initrd"))
    .arg("-append")
    .arg(format!(
        "root=/dev/vda rw console={serial} apparmor=1 security=apparmor \
             systemd.unified_cgroup_hierarchy=1 net.ifnames=0 panic=-1 mitigations=off"
    ))
    // -snapshot: the image stays pristine; the guest's writes live as long as QEMU
    // (a guest reboot keeps them, like a real node's disk).
    .arg("-drive")
    .arg(format!(
        "file={},if=virtio,format=raw,cache=unsafe",
        g.join("disk.img").display()
    ))
    .arg("-snapshot")
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=share,security_model=none,id=share",
        share.display()
    ))
    .arg("-netdev")
    .arg(format!(
        "user,id=n0,restrict=on,dhcpstart={ip},guestfwd=tcp:{GUEST_APISERVER_IP}:{port}-cmd:socat STDIO TCP:127.0.0.1:{port},\
         hostfwd=tcp:127.0.0.1:{webhook_port}-:{WEBHOOK_NODE_PORT}",
        port = api_port,
        ip = at.ip(),
    ))
    .args(["-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci"])
    .arg("-chardev")
    .arg(format!(
        "socket,id=ctl,path={},server=on,wait=off",
        ctl_socket.display()
    ))
    .args(["-device", "virtio-serial-pci", "-device"])
    .arg(format!("virtserialport,chardev=ctl,name={CTL_PORT}"));
    cmd
}

impl RealNode {
    /// Lays out the share (scripts, configuration, certificates, binaries, images) and starts
    /// QEMU. Returns at once; [`RealCluster::start`] waits for the Node to be Ready.
    pub fn boot(cp: &ControlPlane, artifacts: &Artifacts, at: &Place, dir: &Path) -> Result<Self> {
        let share = prepare_share(cp, artifacts, at, dir)?;
        let ctl_socket = dir.join("ctl.sock");
        let webhook_port = crate::controlplane::free_port()?;
        let mut cmd = qemu_command(artifacts, at, dir, &share, &ctl_socket, webhook_port, cp.api_port);
        let qemu = Proc::spawn("qemu", &mut cmd, &dir.join("qemu.log"))?;
        Ok(Self {
            name: at.name.clone(),
            kind: artifacts.kind.clone(),
            webhook_port,
            dir: dir.to_path_buf(),
            qemu,
            ctl_socket,
            ctl: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// Fails, with the ends of the node's logs, if QEMU has exited.
    pub fn check_alive(&self) -> Result<()> {
        self.qemu
            .check_alive()
            .with_context(|| format!("node {}'s QEMU exited\n{}", self.name, self.log_tails(40)))
    }

    /// The last lines of the console, boot, kubelet and kube-proxy logs.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for (name, path) in [
            ("console", self.dir.join("console.log")),
            ("boot.sh", self.dir.join("share/out/boot.log")),
            ("kubelet", self.dir.join("share/out/kubelet.log")),
            ("kube-proxy", self.dir.join("share/out/kube-proxy.log")),
        ] {
            let all = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = all.lines().collect();
            text.push_str(&format!(
                "--- last {lines} lines of node {}'s {name} log ({}) ---\n{}\n",
                self.name,
                path.display(),
                all[all.len().saturating_sub(lines)..].join("\n")
            ));
        }
        text
    }

    /// Runs `script` with /bin/sh as root on the node and returns its exit code and combined
    /// output (at most 300 s).
    pub async fn exec(&self, script: &str) -> Result<Exec> {
        self.check_alive()?;
        let mut guard = self.ctl.lock().await;
        let result = tokio::time::timeout(Duration::from_secs(330), self.exec_locked(&mut guard, script)).await;
        match result {
            Ok(Ok(exec)) => Ok(exec),
            Ok(Err(e)) => {
                *guard = None;
                Err(e.context(format!("running on the node: {script}")))
            }
            Err(_) => {
                *guard = None;
                bail!("no answer from the node in 330 s to: {script}")
            }
        }
    }

    async fn exec_locked(&self, conn: &mut Option<BufReader<UnixStream>>, script: &str) -> Result<Exec> {
        if conn.is_none() {
            let stream = UnixStream::connect(&self.ctl_socket)
                .await
                .with_context(|| format!("connecting to {}", self.ctl_socket.display()))?;
            *conn = Some(BufReader::new(stream));
        }
        let stream = conn.as_mut().expect("connected above");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = format!("{id} {}\n", BASE64.encode(script));
        stream.get_mut().write_all(line.as_bytes()).await?;
        loop {
            let mut reply = String::new();
            if stream.read_line(&mut reply).await? == 0 {
                bail!("the node closed the command channel");
            }
            let mut parts = reply.trim_end().splitn(3, ' ');
            let (Some(rid), Some(code)) = (parts.next(), parts.next()) else {
                continue;
            };
            // Replies to requests that timed out earlier are skipped.
            if rid != id.to_string() {
                continue;
            }
            let output = BASE64
                .decode(parts.next().unwrap_or(""))
                .context("the node's reply is not base64")?;
            return Ok(Exec {
                code: code.parse().context("exit code")?,
                output: String::from_utf8_lossy(&output).into_owned(),
            });
        }
    }

    /// Runs `script` on the node and fails unless it exits 0; returns its output.
    pub async fn exec_ok(&self, script: &str) -> Result<String> {
        let exec = self.exec(script).await?;
        if exec.code != 0 {
            bail!("on the node, `{script}` exited {}: {}", exec.code, exec.output.trim());
        }
        Ok(exec.output)
    }

    /// Waits until the command channel answers (the guest has booted its service).
    pub async fn wait_shell(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let mut guard = self.ctl.lock().await;
                let r = self.exec_locked(&mut guard, "echo ready").await;
                if r.is_err() {
                    *guard = None;
                }
                r
            })
            .await;
            match attempt {
                Ok(Ok(e)) if e.output.trim() == "ready" => return Ok(()),
                _ => {
                    *self.ctl.lock().await = None;
                    self.check_alive()?;
                    if start.elapsed() > timeout {
                        bail!(
                            "the node's command channel did not answer in {timeout:?}\n{}",
                            self.log_tails(30)
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(60));
        }
        // The guest's disk is a snapshot: stopping QEMU loses nothing worth keeping.
        self.qemu.kill();
    }
}

/// What real nodes add to a control plane: kube-scheduler and the controllers on the host,
/// the nodes themselves, and Palisade installed by its chart. It borrows the control plane, so
/// a [`crate::Cluster`] of simulated nodes can run beside it (`make up REAL_NODES=1`).
pub struct RealNodeStack {
    // Field order is drop order: the nodes stop first.
    /// In the order they were listed; the first hosts the operator (see [`Self::helm_install`]).
    pub nodes: Vec<RealNode>,
    pub scheduler: Proc,
}

/// The local control plane with real nodes and Palisade installed by its chart.
pub struct RealCluster {
    // Field order is drop order: the nodes stop first, the control plane last.
    pub stack: RealNodeStack,
    pub cp: ControlPlane,
}

impl RealCluster {
    /// Builds or finds the artifacts of the node kinds `PALISADE_REAL_NODES` lists (one
    /// bookworm node by default), starts the control plane and host controllers, boots the
    /// nodes, waits until they are Ready, and installs Palisade with `helm install`.
    pub async fn start(start: Instant) -> Result<Self> {
        let kinds = NodeKind::list_from_env()?;
        let artifacts = tokio::task::spawn_blocking(move || Artifacts::build_all(&kinds, start)).await??;
        let mut cp = ControlPlane::start_temp_with(Flavor::RealNode).await?;
        let stack = RealNodeStack::start(&mut cp, &artifacts, start).await?;
        Ok(Self { stack, cp })
    }

    /// The first node: the one the tests that run once use.
    pub fn node(&self) -> &RealNode {
        &self.stack.nodes[0]
    }

    pub fn nodes(&self) -> &[RealNode] {
        &self.stack.nodes
    }

    /// Reboots node `index`'s guest (`systemctl reboot`; QEMU stays, so the disk keeps its
    /// state) and waits until its Node is Ready again after the reboot.
    pub async fn reboot_node(&self, index: usize, start: Instant) -> Result<()> {
        let node = &self.stack.nodes[index];
        let boot_id = node.exec_ok("cat /proc/sys/kernel/random/boot_id").await?;
        // The reply may not arrive: the guest goes down.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            node.exec("systemctl --no-block reboot; echo rebooting"),
        )
        .await;
        *node.ctl.lock().await = None;
        progress(start, &format!("node {} asked to reboot", node.name));
        node.wait_shell(Duration::from_secs(900) * node.kind.patience()).await?;
        let new_id = node.exec_ok("cat /proc/sys/kernel/random/boot_id").await?;
        if new_id == boot_id {
            bail!("the node {} did not reboot (same boot id)", node.name);
        }
        let slowest = node
            .exec("systemd-analyze blame --no-pager 2>/dev/null | head -n 8 | tr -s ' ' | paste -sd ';'")
            .await
            .map(|o| o.output)
            .unwrap_or_default();
        progress(
            start,
            &format!(
                "node {} rebooted; waiting for Ready (slowest units so far: {})",
                node.name,
                slowest.trim()
            ),
        );
        self.stack
            .wait_node_ready(node, &self.cp, start, Duration::from_secs(600) * node.kind.patience())
            .await
    }
}

impl RealNodeStack {
    /// Starts kube-scheduler and the controllers on `cp` (a [`Flavor::RealNode`] control
    /// plane), boots one node per artifact set (all at once), waits until they are Ready,
    /// and installs Palisade with `helm install`. On failure the control plane's directory
    /// (its logs and the nodes') is kept, and named.
    pub async fn start(cp: &mut ControlPlane, artifacts: &[Artifacts], start: Instant) -> Result<Self> {
        let kinds: Vec<NodeKind> = artifacts.iter().map(|a| a.kind.clone()).collect();
        let places = Place::of(&kinds);
        for (a, at) in artifacts.iter().zip(&places) {
            progress(
                start,
                &format!(
                    "node {} ({}) guest packages: {}",
                    at.name,
                    a.kind.name(),
                    a.guest_versions()
                ),
            );
        }
        progress(
            start,
            &format!("control plane on 127.0.0.1:{} ({})", cp.api_port, cp.dir.display()),
        );
        cp.start_controllers(CONTROLLERS)?;
        let mut cmd = Command::new(artifacts[0].k8s_bin.join("kube-scheduler"));
        cmd.arg(format!("--kubeconfig={}", cp.kubeconfig.display())).args([
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]);
        let scheduler = Proc::spawn("kube-scheduler", &mut cmd, &cp.dir.join("logs/kube-scheduler.log"))?;
        let mut nodes = vec![];
        for (a, at) in artifacts.iter().zip(&places) {
            let dir = match places.len() {
                1 => cp.dir.join("realnode"),
                _ => cp.dir.join(&at.name),
            };
            std::fs::create_dir_all(&dir)?;
            match RealNode::boot(cp, a, at, &dir) {
                Ok(node) => nodes.push(node),
                Err(e) => {
                    cp.keep_dir();
                    return Err(e.context(format!("state and logs kept in {}", cp.dir.display())));
                }
            }
            progress(
                start,
                &format!(
                    "QEMU started for {} (console: {})",
                    at.name,
                    dir.join("console.log").display()
                ),
            );
        }
        let stack = Self { nodes, scheduler };
        let ready = async {
            let boots = stack.nodes.iter().map(|node| async {
                let begin = Instant::now();
                let patience = node.kind.patience();
                stack
                    .wait_node_ready(node, cp, start, Duration::from_secs(900) * patience)
                    .await?;
                progress(
                    start,
                    &format!(
                        "node {} Ready ({:.0} s after QEMU started)",
                        node.name,
                        begin.elapsed().as_secs_f64()
                    ),
                );
                node.wait_shell(Duration::from_secs(120) * patience).await
            });
            futures::future::try_join_all(boots).await?;
            // Every guest's containerd offers crun beside runc (e2e/realnode/guest/containerd.toml).
            let classes: Api<RuntimeClass> = Api::all(cp.client().await?);
            let crun = serde_json::from_value(serde_json::json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "crun"}, "handler": "crun"}))?;
            classes.create(&Default::default(), &crun).await?;
            stack.helm_install(cp, start).await
        };
        if let Err(e) = ready.await {
            cp.keep_dir();
            return Err(e.context(format!("state and logs kept in {}", cp.dir.display())));
        }
        Ok(stack)
    }

    /// Fails, with the ends of its logs, if a node's QEMU or the scheduler has exited.
    pub fn check_alive(&self) -> Result<()> {
        for node in &self.nodes {
            node.check_alive()?;
        }
        self.scheduler.check_alive()
    }

    /// Waits until `node`'s Node reports Ready (the kubelet registered, runtime and CNI up),
    /// printing progress every 30 s.
    pub async fn wait_node_ready(
        &self,
        node: &RealNode,
        cp: &ControlPlane,
        start: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let nodes: Api<Node> = Api::all(cp.client().await?);
        let begin = Instant::now();
        let mut last_note = Instant::now();
        loop {
            let ready = nodes
                .get_opt(&node.name)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| node_ready(&n));
            if ready {
                return Ok(());
            }
            node.check_alive()?;
            self.scheduler.check_alive()?;
            if begin.elapsed() > timeout {
                bail!("node {} not Ready after {timeout:?}\n{}", node.name, node.log_tails(40));
            }
            if last_note.elapsed() > Duration::from_secs(30) {
                let boot = std::fs::read_to_string(node.dir.join("share/out/boot.log")).unwrap_or_default();
                progress(
                    start,
                    &format!(
                        "waiting for node {}: {}",
                        node.name,
                        boot.lines()
                            .last()
                            .unwrap_or("guest still booting (no boot.sh output yet)")
                    ),
                );
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// `helm install` of charts/palisade with its default values (security settings
    /// untouched; only the drift check runs every 15 s instead of 60, so that
    /// `drift_is_repaired` waits less), then waits until the agent DaemonSet and the operator Deployment are
    /// available on the nodes.
    ///
    /// With several nodes, the operator's replicas are kept on the first: each guest has its
    /// own user network, so the API server reaches the pod guard's webhook only through the
    /// node [`RealNode::webhook_port`] leads to, and only to a pod on that node.
    pub async fn helm_install(&self, cp: &ControlPlane, start: Instant) -> Result<()> {
        let helm = crate::helm_binary()?;
        let chart = repo_root().join("charts/palisade");
        let mut cmd = Command::new(&helm);
        cmd.arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .args(["install", "palisade"])
            .arg(&chart)
            .args(["--namespace", NAMESPACE, "--create-namespace"])
            .args(["--set", &format!("agent.driftInterval={}", DRIFT_INTERVAL.as_secs())]);
        if self.nodes.len() > 1 {
            let selector =
                serde_json::json!({"kubernetes.io/os": "linux", "kubernetes.io/hostname": self.nodes[0].name});
            cmd.arg("--set-json").arg(format!("operator.nodeSelector={selector}"));
        }
        let out = cmd.output().context("running helm install")?;
        if !out.status.success() {
            bail!("helm install: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        progress(
            start,
            "helm install palisade: done; waiting for the agent and operator pods",
        );
        let patience = self.nodes.iter().map(|n| n.kind.patience()).max().unwrap_or(1);
        wait_workloads(&cp.client().await?, Duration::from_secs(600) * patience, || {
            self.check_alive()
        })
        .await?;
        progress(
            start,
            &format!(
                "Palisade running on {} real node(s) (agent DaemonSet and operator Deployment available)",
                self.nodes.len()
            ),
        );
        Ok(())
    }
}

/// The agents' drift interval on the real nodes (`agent.driftInterval`).
pub const DRIFT_INTERVAL: Duration = Duration::from_secs(15);

/// Waits until the agent DaemonSet has a ready pod on every node it schedules to and the
/// operator Deployment has all its replicas available.
pub async fn wait_workloads(client: &kube::Client, timeout: Duration, alive: impl Fn() -> Result<()>) -> Result<()> {
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let deploy: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let begin = Instant::now();
    loop {
        let agent = ds.get_opt("palisade-agent").await?.and_then(|d| d.status);
        let operator = deploy.get_opt("palisade-operator").await?;
        let agent_ready = agent
            .as_ref()
            .is_some_and(|s| s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled);
        let want = operator.as_ref().and_then(|d| d.spec.replicas).unwrap_or(1);
        let operator_ready = operator
            .as_ref()
            .and_then(|d| d.status.as_ref()?.available_replicas)
            .is_some_and(|n| n >= want);
        if agent_ready && operator_ready {
            return Ok(());
        }
        alive()?;
        if begin.elapsed() > timeout {
            bail!(
                "Palisade not running after {timeout:?}: agent DaemonSet status {agent:?}, operator Deployment status {:?}",
                operator.and_then(|d| d.status)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// A kubeconfig for a guest component: the API server by the address the guest reaches it
/// at, verified against the cluster CA, with the component's client certificate.
fn guest_kubeconfig(server: &str, who: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: /etc/kubernetes/pki/ca.crt
users:
- name: {who}
  user:
    client-certificate: /etc/kubernetes/pki/{who}.crt
    client-key: /etc/kubernetes/pki/{who}.key
contexts:
- name: local
  context: {{cluster: local, user: {who}}}
current-context: local
"
    )
}

/// The kubelet's configuration: containerd as the runtime, webhook authentication and
/// authorization (the API server decides who may use the kubelet's API), eviction
/// thresholds low enough for a small test disk.
const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
address: 0.0.0.0
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
failSwapOn: false
resolvConf: \"\"
registerNode: true
rotateCertificates: false
serializeImagePulls: true
syncFrequency: 10s
nodeStatusUpdateFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {\"memory.available\": \"50Mi\", \"nodefs.available\": \"1%\", \"imagefs.available\": \"1%\"}
";

/// Debian's bridge CNI plugin: pods on cni0 with addresses from node `index`'s range
/// (10.244.<index>.0/24), their traffic to anything else masqueraded behind the node's address.
fn bridge_conflist(index: usize) -> String {
    let subnet = format!("10.244.{index}.0/24");
    format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "palisade-realnode",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
    {{"type": "loopback"}}
  ]
}}
"#
    )
}
