//! The real-node suite: Palisade installed by its Helm chart on a real node (a QEMU guest
//! with Debian's kernel and AppArmor, containerd + runc, an upstream kubelet; see
//! e2e/src/realnode.rs), and pods confined for real by the profiles it puts there.
//!
//! Nothing here is simulated: the kernel enforces AppArmor and seccomp, runc applies the
//! profiles the kubelet names, and the answers come from the confined pods themselves (their
//! exit code and termination message) and from the node's kernel (its loaded-profile list
//! and audit log).
//!
//! `make test-realnode` (part of `make test`) boots the node. With
//! `PALISADE_E2E_EXISTING_CLUSTER=1` the same tests run against the cluster `KUBECONFIG`
//! names (kind, or a real one), installing the chart there unless
//! `PALISADE_E2E_SKIP_INSTALL=1`; tests that need a shell on the node are reported as
//! ignored, saying so. `PALISADE_E2E_TEST_IMAGE` names the shell image for test pods
//! (default `busybox:local`, which the real node has preloaded).
//!
//! This binary has its own main (`harness = false`): every test shares one node, which
//! takes minutes to boot. Arguments filter tests by name, as with libtest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use palisade_e2e::cluster::{NAMESPACE, apply_json, wait_for_every};
use palisade_e2e::controlplane::{binary_dir, client_from_kubeconfig, kubectl_ok};
use palisade_e2e::realnode::{DRIFT_INTERVAL, RealCluster, RealNode, progress, wait_workloads};
use serde_json::{Value, json};

/// Where the tests run, and how they reach it.
struct Env {
    client: kube::Client,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    /// The nodes tests may place pods on: the real nodes in the order listed (an existing
    /// cluster: the one test node).
    nodes: Vec<String>,
    /// Which of them the running test uses (tests that hold for every node run once per node;
    /// a test may move between nodes).
    at: std::sync::atomic::AtomicUsize,
    /// The RuntimeClass test pods run with (None: the node's default, runc).
    runtime: std::sync::Mutex<Option<&'static str>>,
    /// The real node (None: an existing cluster, no node shell).
    cluster: Option<RealCluster>,
    image: String,
    start: Instant,
}

/// A test that cannot run where it is: reported as ignored, with the reason.
#[derive(Debug)]
struct Skip(&'static str);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Skip {}

impl Env {
    /// The node test pods are placed on.
    fn node(&self) -> &str {
        &self.nodes[self.at()]
    }

    fn at(&self) -> usize {
        self.at.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Places the following test pods and node commands on node `index`.
    fn move_to(&self, index: usize) {
        self.at.store(index, std::sync::atomic::Ordering::Relaxed);
    }

    /// A test pod's manifest on the test node, with the RuntimeClass in force.
    fn pod(&self, name: &str, security: Value, annotations: Value, script: &str, restart: &str) -> Value {
        let mut pod = pod_manifest(name, self.node(), &self.image, security, annotations, script, restart);
        if let Some(class) = *self.runtime.lock().expect("runtime lock") {
            pod["spec"]["runtimeClassName"] = json!(class);
        }
        pod
    }

    fn shell(&self) -> Result<&RealNode> {
        self.cluster
            .as_ref()
            .map(|c| &c.nodes()[self.at()])
            .ok_or_else(|| anyhow!(Skip("needs a shell on the node (an existing cluster has none here)")))
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        kubectl_ok(&self.kubectl, &self.kubeconfig, args)
    }

    /// Applies a profile (server-side) and waits until it is Ready on every node.
    async fn apply_ready(&self, profile: Value) -> Result<()> {
        let kind = profile["kind"].as_str().context("kind")?.to_lowercase();
        let name = profile["metadata"]["name"].as_str().context("name")?.to_string();
        apply_json(&self.client, profile).await?;
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("{kind}/{name}"),
            "--timeout=180s",
        ])
        .with_context(|| format!("{kind} {name} not Ready: {}", self.profile_status(&kind, &name)))?;
        Ok(())
    }

    fn profile_status(&self, kind: &str, name: &str) -> String {
        self.kubectl(&["get", kind, name, "-o", "jsonpath={.status}"])
            .unwrap_or_else(|e| e.to_string())
    }

    async fn delete_profile(&self, kind: &str, name: &str) -> Result<()> {
        self.kubectl(&["delete", kind, name, "--ignore-not-found", "--timeout=120s"])?;
        Ok(())
    }

    /// Runs `script` (busybox sh) in a pod on the test node with `security` merged into its
    /// container's securityContext and `annotations` on the pod; waits until it exits and
    /// returns its exit code and termination message (everything the script printed).
    async fn run_pod(&self, name: &str, security: Value, annotations: Value, script: &str) -> Result<PodResult> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
        wait_gone(&pods, name).await?;
        let pod = self.pod(name, security, annotations, script, "Never");
        pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
            .await?;
        let result = wait_terminated(&pods, name, Duration::from_secs(240)).await;
        let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
        result
    }

    /// Starts a long-running pod `name` under AppArmor profile `apparmor` and seccomp profile
    /// `palisade/<seccomp>.json` and waits until it runs; returns the pods API.
    async fn start_sleeper(&self, name: &str, apparmor: &str, seccomp: &str) -> Result<Api<Pod>> {
        let mut security = localhost_apparmor(apparmor);
        security["seccompProfile"] =
            json!({"type": "Localhost", "localhostProfile": format!("palisade/{seccomp}.json")});
        // The shell ends on SIGTERM: a bare `sleep` as the container's first process ignores it,
        // and a node's shutdown then waits out systemd's stop timeout (90 s) for the pod.
        Ok(
            start_looping(self, name, security, "trap 'exit 0' TERM; sleep 3600 & wait")
                .await?
                .0,
        )
    }

    /// Lines of the node's kernel log (audit records included) that contain every needle.
    async fn kernel_log(&self, needles: &[&str]) -> Result<Vec<String>> {
        let log = self.shell()?.exec_ok("dmesg").await?;
        Ok(log
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect())
    }

    /// The node kernel's loaded profiles: name → mode.
    async fn loaded_profiles(&self) -> Result<BTreeMap<String, String>> {
        let text = self
            .shell()?
            .exec_ok("cat /sys/kernel/security/apparmor/profiles")
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (name, mode) = l.rsplit_once(" (")?;
                Some((name.to_string(), mode.trim_end_matches(')').to_string()))
            })
            .collect())
    }
}

#[derive(Debug)]
struct PodResult {
    exit_code: i32,
    message: String,
}

fn pod_manifest(
    name: &str,
    node: &str,
    image: &str,
    security: Value,
    annotations: Value,
    script: &str,
    restart: &str,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations,
                     "labels": {"app.kubernetes.io/part-of": "palisade-realnode-test"}},
        "spec": {
            "restartPolicy": restart,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "containers": [{
                "name": "test",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", script],
                "securityContext": security,
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "volumes": [{"name": "work", "emptyDir": {}}],
        }
    })
}

/// Waits until the pod's container has terminated; fails with its state if it does not
/// (e.g. `CreateContainerError: apparmor profile not found`).
async fn wait_terminated(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<PodResult> {
    let begin = Instant::now();
    loop {
        let pod = pods.get(name).await?;
        let status = pod.status.clone().unwrap_or_default();
        let container = status.container_statuses.as_ref().and_then(|c| c.first().cloned());
        if let Some(t) = container.as_ref().and_then(|c| c.state.as_ref()?.terminated.clone()) {
            return Ok(PodResult {
                exit_code: t.exit_code,
                message: t.message.unwrap_or_default(),
            });
        }
        if begin.elapsed() > timeout {
            bail!(
                "pod {name} did not run to completion in {timeout:?}: phase {:?}, container {:?}, conditions {:?}",
                status.phase,
                container.and_then(|c| c.state),
                status.conditions
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_gone(pods: &Api<Pod>, name: &str) -> Result<()> {
    let begin = Instant::now();
    while pods.get_opt(name).await?.is_some() {
        ensure!(
            begin.elapsed() < Duration::from_secs(120),
            "pod {name} still there after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// Polls `check` every second until it returns Some, or fails naming `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    wait_for_every(what, timeout, Duration::from_secs(1), check).await
}

// ---- profiles the tests use ----

/// A seccomp profile that allows everything but mkdir/mkdirat, which fail with `errno`.
fn seccomp_deny_mkdir(name: &str, errno: u32) -> Value {
    json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "SeccompProfile",
        "metadata": {"name": name},
        "spec": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}],
        }
    })
}

/// Raw policy for a shell container: it may run and read anything, write only under /dev,
/// /proc and /work (an emptyDir), and, with `tmp_writes`, under /tmp. A write elsewhere
/// (/tmp without `tmp_writes`) has no rule, so Enforce denies it and the kernel logs DENIED.
fn raw_policy(name: &str, tmp_writes: bool) -> String {
    let tmp = if tmp_writes { "  /tmp/** rw,\n" } else { "" };
    format!(
        "abi <abi/3.0>,\ninclude <tunables/global>\n\nprofile {name} flags=(attach_disconnected,mediate_deleted) {{\n  \
         include <abstractions/base>\n  capability,\n  network,\n  signal,\n  /** mrix,\n  /dev/** rw,\n  \
         /proc/** rw,\n  /work/** rw,\n{tmp}}}\n"
    )
}

fn apparmor_raw(name: &str, mode: &str, tmp_writes: bool) -> Value {
    json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "AppArmorProfile",
        "metadata": {"name": name},
        "spec": {"mode": mode, "policy": raw_policy(name, tmp_writes)}
    })
}

fn apparmor_abstract(name: &str) -> Value {
    json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "AppArmorProfile",
        "metadata": {"name": name},
        "spec": {
            "mode": "Enforce",
            "abstract": {
                "executable": {"allowedExecutables": ["/bin/*"], "allowedLibraries": ["/lib/**", "/usr/lib/**"]},
                "filesystem": {
                    "readOnlyPaths": ["/etc/**", "/proc/**"],
                    "readWritePaths": ["/dev/termination-log", "/work/**"],
                    "denyPaths": ["/etc/shadow"],
                },
            }
        }
    })
}

fn localhost_apparmor(profile: &str) -> Value {
    json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": profile}})
}

/// What a pod under an AppArmor profile reports: its label, then whether each write worked.
const APPARMOR_PROBE: &str = "exec > /dev/termination-log 2>&1
echo \"label: $(cat /proc/1/attr/apparmor/current 2>/dev/null || cat /proc/1/attr/current)\"
if echo x > /work/ok; then echo 'work write: ok'; fi
if echo x > /tmp/x; then echo 'tmp write: ok'; else echo 'tmp write: failed'; fi
exit 0";

fn label_of(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("label: "))
        .unwrap_or("")
        .trim()
}

// ---- the tests ----

/// A SeccompProfile applied with kubectl confines a pod that names
/// `palisade/<name>.json`: the denied syscall fails with the profile's errno, the rest work.
async fn seccomp_profile_confines_a_pod(env: &Env) -> Result<()> {
    let t0 = Instant::now();
    env.apply_ready(seccomp_deny_mkdir("rn-deny-mkdir", 122)).await?;
    progress(
        env.start,
        &format!("seccomp profile Ready {:?} after apply", t0.elapsed()),
    );
    let security = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/rn-deny-mkdir.json"}});
    let script = "exec > /dev/termination-log 2>&1
grep Seccomp: /proc/self/status
if mkdir /work/d; then echo 'mkdir: ok'; fi
if echo x > /work/f; then echo 'write: ok'; fi
exit 0";
    let r = env.run_pod("rn-seccomp", security, json!({}), script).await?;
    progress(
        env.start,
        &format!("apply -> confined pod finished: {:?}", t0.elapsed()),
    );
    ensure!(r.exit_code == 0, "pod exited {}: {}", r.exit_code, r.message);
    ensure!(
        r.message.contains("Seccomp:\t2"),
        "the pod runs without a seccomp filter: {}",
        r.message
    );
    // errno 122 is EDQUOT: only this profile could have made mkdir fail with it.
    ensure!(
        r.message.contains("Disk quota exceeded") && !r.message.contains("mkdir: ok"),
        "mkdir was not refused with the profile's errno (122): {}",
        r.message
    );
    ensure!(
        r.message.contains("write: ok"),
        "an allowed syscall failed: {}",
        r.message
    );

    // The same pod without the profile can mkdir: the refusal above is the profile's.
    let r = env
        .run_pod(
            "rn-seccomp-none",
            json!({"seccompProfile": {"type": "Unconfined"}}),
            json!({}),
            script,
        )
        .await?;
    ensure!(
        r.message.contains("mkdir: ok"),
        "unconfined pod could not mkdir: {}",
        r.message
    );
    Ok(())
}

/// A SeccompProfile whose `architectures` lists only the other architecture (x86_64 on an
/// arm64 node, aarch64 on an amd64 one) is handled as runc handles it: runc's filter always
/// holds the node's own architecture beside the listed ones, and the rules apply to each, so
/// the pod is confined all the same (what a mixed-architecture cluster may rely on, and why
/// it should list both or none: README "Mixed architectures").
async fn seccomp_profile_for_another_architecture(env: &Env) -> Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.client.clone());
    let node = nodes.get(env.node()).await?;
    let arch = node
        .status
        .and_then(|s| s.node_info)
        .map(|i| i.architecture)
        .unwrap_or_default();
    let other = match arch.as_str() {
        "amd64" => "SCMP_ARCH_AARCH64",
        "arm64" => "SCMP_ARCH_X86_64",
        arch => bail!("the node's architecture is {arch:?}"),
    };
    let mut profile = seccomp_deny_mkdir("rn-other-arch", 122);
    profile["spec"]["architectures"] = json!([other]);
    env.apply_ready(profile).await?;
    let security = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/rn-other-arch.json"}});
    let script = "exec > /dev/termination-log 2>&1
uname -m
if mkdir /work/d; then echo 'mkdir: ok'; fi
exit 0";
    let r = env.run_pod("rn-other-arch", security, json!({}), script).await?;
    ensure!(
        r.message.contains("Disk quota exceeded") && !r.message.contains("mkdir: ok"),
        "on a {arch} node, a profile for {other} alone did not refuse mkdir with its errno: {}",
        r.message
    );
    progress(
        env.start,
        &format!("{arch} node, profile for {other} only: {}", r.message.trim()),
    );
    Ok(())
}

/// Syscalls newer than some nodes (mseal, listmount): one SeccompProfile denies them with an
/// errno. On a node whose kernel has them (its runtime's libseccomp knows the names), the
/// pod's call fails with the profile's errno; on a node whose kernel predates them the call
/// fails with ENOSYS, with or without the profile: the same profile is harmless there. What
/// the operator's libseccomp made of the names is printed (status.ignoredSyscalls).
async fn seccomp_syscalls_newer_than_some_nodes(env: &Env) -> Result<()> {
    if env.cluster.is_none() {
        return Err(anyhow!(Skip(
            "needs /bin/syscall-errno of the harness's busybox:local image"
        )));
    }
    let mut profile = seccomp_deny_mkdir("rn-new-syscalls", 122);
    profile["spec"]["syscalls"][0]["names"] = json!(["mseal", "listmount"]);
    env.apply_ready(profile).await?;
    let ignored = env.kubectl(&[
        "get",
        "seccompprofile",
        "rn-new-syscalls",
        "-o",
        "jsonpath={.status.ignoredSyscalls}",
    ])?;
    let script = "exec > /dev/termination-log 2>&1
uname -r
syscall-errno mseal
syscall-errno listmount";
    let security =
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/rn-new-syscalls.json"}});
    let bare = env
        .run_pod(
            "rn-new-syscalls",
            json!({"seccompProfile": {"type": "Unconfined"}}),
            json!({}),
            script,
        )
        .await?;
    let confined = env.run_pod("rn-new-syscalls", security, json!({}), script).await?;
    progress(
        env.start,
        &format!(
            "{}: unconfined {:?}; under the profile {:?}; the operator ignored {ignored:?}",
            env.node(),
            bare.message.trim(),
            confined.message.trim()
        ),
    );
    for name in ["mseal", "listmount"] {
        let line = |r: &PodResult| {
            r.message
                .lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let (bare, confined) = (line(&bare), line(&confined));
        if bare.contains("errno 38") {
            // The kernel predates the syscall: ENOSYS either way.
            ensure!(
                confined.contains("errno 38"),
                "{name} on a kernel without it, under the profile: {confined:?}"
            );
        } else {
            ensure!(
                !bare.is_empty() && confined.contains("errno 122"),
                "{name} on a kernel that has it ({bare:?}) was not refused with the profile's errno: {confined:?}"
            );
        }
    }
    env.delete_profile("seccompprofile", "rn-new-syscalls").await
}

/// An AppArmorProfile in Enforce (raw policy): the pod is labelled with it, a write the
/// policy does not allow fails with EACCES and the node's kernel logs DENIED; in Complain
/// the same write succeeds and the kernel logs ALLOWED.
async fn apparmor_raw_enforce_and_complain(env: &Env) -> Result<()> {
    let t0 = Instant::now();
    env.apply_ready(apparmor_raw("rn-aa-raw", "Enforce", false)).await?;
    progress(
        env.start,
        &format!("AppArmor profile Ready {:?} after apply", t0.elapsed()),
    );
    let r = env
        .run_pod(
            "rn-aa-enforce",
            localhost_apparmor("rn-aa-raw"),
            json!({}),
            APPARMOR_PROBE,
        )
        .await?;
    progress(
        env.start,
        &format!("apply -> confined pod finished: {:?}", t0.elapsed()),
    );
    ensure!(
        label_of(&r.message) == "rn-aa-raw (enforce)",
        "pod label: {}",
        r.message
    );
    ensure!(
        r.message.contains("work write: ok"),
        "an allowed write failed: {}",
        r.message
    );
    ensure!(
        r.message.contains("Permission denied") && r.message.contains("tmp write: failed"),
        "the write to /tmp was not denied with EACCES: {}",
        r.message
    );
    match env
        .kernel_log(&["apparmor=\"DENIED\"", "profile=\"rn-aa-raw\"", "/tmp/x"])
        .await
    {
        Ok(lines) => ensure!(!lines.is_empty(), "the kernel logged no DENIED record for /tmp/x"),
        Err(e) if e.is::<Skip>() => eprintln!("  (kernel log not checked: {e})"),
        Err(e) => return Err(e),
    }

    env.apply_ready(apparmor_raw("rn-aa-complain", "Complain", false))
        .await?;
    let r = env
        .run_pod(
            "rn-aa-complain",
            localhost_apparmor("rn-aa-complain"),
            json!({}),
            APPARMOR_PROBE,
        )
        .await?;
    ensure!(
        label_of(&r.message) == "rn-aa-complain (complain)",
        "pod label: {}",
        r.message
    );
    ensure!(
        r.message.contains("tmp write: ok"),
        "Complain mode blocked a write: {}",
        r.message
    );
    match env
        .kernel_log(&["apparmor=\"ALLOWED\"", "profile=\"rn-aa-complain\"", "/tmp/x"])
        .await
    {
        Ok(lines) => ensure!(!lines.is_empty(), "the kernel logged no ALLOWED record for /tmp/x"),
        Err(e) if e.is::<Skip>() => eprintln!("  (kernel log not checked: {e})"),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// AppArmor 4/5 policy on every kind of node, and the host's own parser beside the agent.
/// Three policies: rule classes of ABI 4.0 (`userns`, `io_uring`, `mqueue`), the `all` rule,
/// and a classic ABI 3.0 policy in complain mode. On each node:
/// - Palisade loads every one of them (the agent's parser is 4.1, the ABI files it ships
///   stand in for a host whose userspace has no `abi/4.0`), in the mode asked;
/// - the rule classes this node's kernel does not mediate are named in the node's report
///   (`partial`), and in the profile's `RulesNotEnforced` warning, with exactly those nodes;
/// - the host's own `apparmor_parser` loads the same policy (under another name): when it
///   does, so did Palisade, in the same kernel mode, leaving out the same rule classes.
async fn apparmor_4_policy_on_every_kind_of_node(env: &Env) -> Result<()> {
    let Some(cluster) = env.cluster.as_ref() else {
        return Err(anyhow!(Skip("needs a shell on each node")));
    };
    const POLICIES: [(&str, &str, &str); 4] = [
        (
            "rn-aa4-classes",
            "Enforce",
            "abi <abi/4.0>,\ninclude <tunables/global>\nprofile NAME {\n  include <abstractions/base>\n  file,\n  userns,\n  io_uring,\n  mqueue,\n}\n",
        ),
        ("rn-aa4-all", "Enforce", "abi <abi/4.0>,\nprofile NAME {\n  all,\n}\n"),
        (
            "rn-aa4-deny",
            "Enforce",
            "abi <abi/4.0>,\nprofile NAME {\n  file,\n  deny unix (connect) type=stream,\n  deny mqueue type=posix,\n  deny userns,\n}\n",
        ),
        (
            "rn-aa3-classic",
            "Complain",
            "abi <abi/3.0>,\ninclude <tunables/global>\nprofile NAME {\n  include <abstractions/base>\n  network inet stream,\n  signal send,\n  /tmp/** rw,\n}\n",
        ),
    ];
    for (name, mode, policy) in POLICIES {
        let profile = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name}, "spec": {"mode": mode, "policy": policy.replace("NAME", name)}});
        env.apply_ready(profile).await?;
    }
    let nps: Api<palisade_domain::NodeProfileStatus> = Api::all(env.client.clone());
    let mut left_out_nodes = Vec::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        let node_name = &env.nodes[i];
        let report = nps.get(node_name).await?.status.context("no report")?;
        let features = node
            .exec_ok("ls /sys/kernel/security/apparmor/features | tr '\\n' ' '; echo; ls /sys/kernel/security/apparmor/features/namespaces 2>/dev/null | tr '\\n' ' '")
            .await?;
        progress(
            env.start,
            &format!("[{node_name}] kernel AppArmor features: {}", features.trim()),
        );
        for (name, mode, policy) in POLICIES {
            let word = if mode == "Complain" { "complain" } else { "enforce" };
            ensure!(
                !report.exceptions.iter().any(|e| e.name == name),
                "[{node_name}] {name} not installed: {:?}",
                report.exceptions
            );
            let loaded = node
                .exec_ok(&format!(
                    "grep '^{name} (' /sys/kernel/security/apparmor/profiles || true"
                ))
                .await?;
            ensure!(
                loaded.trim() == format!("{name} ({word})"),
                "[{node_name}] the kernel lists {loaded:?}, not {name} ({word})"
            );
            let agent: Vec<String> = report
                .partial
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.not_enforced.clone())
                .unwrap_or_default();
            if name == "rn-aa4-classes" && !agent.is_empty() {
                left_out_nodes.push(node_name.clone());
            }
            // The host's own parser, on the same policy under another name, into the same kernel.
            let host_name = format!("hostcmp-{name}");
            let flag = if mode == "Complain" { "-C" } else { "" };
            let script = format!(
                "d=$(mktemp -d); cat > $d/p <<'POLICY'\n{}POLICY\n\
                 apparmor_parser --version | head -1\n\
                 out=$(apparmor_parser -r --skip-cache {flag} --warn=rule-not-enforced $d/p 2>&1); echo \"rc=$?\"\n\
                 echo \"$out\" | sed 's/^/parser: /'\n\
                 echo \"kernel: $(grep '^{host_name} (' /sys/kernel/security/apparmor/profiles)\"\n\
                 {records}\
                 apparmor_parser -R $d/p >/dev/null 2>&1; rm -rf $d",
                policy.replace("NAME", &host_name),
                // The complain-mode policy, run by the host: this kernel's audit records, as
                // the agent's learning reads them, printed for the parser's fixtures.
                records = if mode == "Complain" {
                    format!(
                        "aa-exec -p {host_name} -- /bin/sh -c 'read l < /etc/hostname; echo x > /var/tmp/rn-record; chown 65534 /var/tmp/rn-record; cat /etc/hostname; rm -f /var/tmp/rn-record' >/dev/null 2>&1\n\
                         dd if=/dev/kmsg iflag=nonblock 2>/dev/null | grep 'profile=\"{host_name}' | sed 's/^/record: /'\n"
                    )
                } else {
                    String::new()
                }
            );
            let out = node.exec_ok(&script).await?;
            let field = |key: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            // The host parser's warnings, read as the agent reads its own parser's.
            let host_stderr: String = out
                .lines()
                .filter_map(|l| l.strip_prefix("parser: "))
                .map(|l| format!("{l}\n"))
                .collect();
            let host_left_out = palisade_runtime::budget::not_enforced(host_stderr.as_bytes());
            progress(
                env.start,
                &format!(
                    "[{node_name}] {name}: Palisade loaded it ({word}), left out {agent:?}; host parser ({}): {}, left out {host_left_out:?}",
                    out.lines().next().unwrap_or_default(),
                    if field("rc=") == "0" {
                        "loaded".to_string()
                    } else {
                        format!(
                            "refused: {}",
                            out.lines()
                                .filter(|l| l.starts_with("parser: "))
                                .collect::<Vec<_>>()
                                .join(" ")
                        )
                    },
                ),
            );
            for record in out.lines().filter(|l| l.starts_with("record: ")) {
                eprintln!("  [{node_name}] {record}");
            }
            if field("rc=") == "0" {
                ensure!(
                    field("kernel:") == format!("{host_name} ({word})"),
                    "[{node_name}] the host's parser loaded {name} as {:?}, Palisade as {word}",
                    field("kernel:")
                );
                ensure!(
                    host_left_out == agent,
                    "[{node_name}] {name}: the host's parser leaves out {host_left_out:?}, Palisade {agent:?}"
                );
            }
        }
    }
    // The warning names exactly the nodes that left rule classes out.
    let status = env.profile_status("apparmorprofile", "rn-aa4-classes");
    let warning = env.kubectl(&[
        "get",
        "apparmorprofile",
        "rn-aa4-classes",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"RulesNotEnforced\")].message}",
    ])?;
    for node in &env.nodes {
        let named = [": ", "; "]
            .iter()
            .any(|sep| warning.contains(&format!("{sep}{node} (")));
        ensure!(
            named == left_out_nodes.contains(node),
            "RulesNotEnforced {warning:?} against the nodes that left rules out {left_out_nodes:?}: {status}"
        );
    }
    progress(env.start, &format!("RulesNotEnforced: {warning:?}"));
    for (name, _, _) in POLICIES {
        env.delete_profile("apparmorprofile", name).await?;
    }
    Ok(())
}

/// An `abstract` AppArmorProfile confines a pod as its rendered rules say, referenced the
/// older way: the `container.apparmor.security.beta.kubernetes.io/<container>` annotation.
async fn apparmor_abstract_via_annotation(env: &Env) -> Result<()> {
    env.apply_ready(apparmor_abstract("rn-aa-abstract")).await?;
    let annotations = json!({"container.apparmor.security.beta.kubernetes.io/test": "localhost/rn-aa-abstract"});
    let r = env
        .run_pod("rn-aa-annotation", json!({}), annotations, APPARMOR_PROBE)
        .await?;
    ensure!(
        label_of(&r.message) == "rn-aa-abstract (enforce)",
        "pod label: {}",
        r.message
    );
    ensure!(
        r.message.contains("work write: ok"),
        "a readWritePaths write failed: {}",
        r.message
    );
    ensure!(
        r.message.contains("tmp write: failed"),
        "a write outside the abstract's paths worked: {}",
        r.message
    );
    Ok(())
}

/// Editing a profile takes effect for new pods; Enforce ↔ Complain switches in place.
async fn update_in_place_and_mode_switch(env: &Env) -> Result<()> {
    // (mode, /tmp writable by the rules, label the pod must show, /tmp write works, step)
    let steps = [
        ("Enforce", false, "enforce", false, "before the edit"),
        (
            "Enforce",
            true,
            "enforce",
            true,
            "after an edit that allows /tmp writes",
        ),
        (
            "Complain",
            false,
            "complain",
            true,
            "after switching to Complain (old rules)",
        ),
        ("Enforce", false, "enforce", false, "after switching back to Enforce"),
    ];
    for (mode, tmp_rules, label, tmp_ok, step) in steps {
        env.apply_ready(apparmor_raw("rn-aa-update", mode, tmp_rules)).await?;
        let r = env
            .run_pod(
                "rn-aa-update",
                localhost_apparmor("rn-aa-update"),
                json!({}),
                APPARMOR_PROBE,
            )
            .await?;
        ensure!(
            label_of(&r.message) == format!("rn-aa-update ({label})"),
            "{step}: {}",
            r.message
        );
        let want = if tmp_ok { "tmp write: ok" } else { "tmp write: failed" };
        ensure!(r.message.contains(want), "{step}: expected {want:?}: {}", r.message);
    }
    if let Ok(loaded) = env.loaded_profiles().await {
        ensure!(
            loaded.get("rn-aa-update").map(String::as_str) == Some("enforce"),
            "kernel: {loaded:?}"
        );
    }
    env.delete_profile("apparmorprofile", "rn-aa-update").await
}

/// Deleting profiles a running pod uses is held (condition Deleting, reason InUse) while the
/// pod runs, with the profiles still on the node; once the pod is gone the AppArmor profile
/// is unloaded from the kernel and the seccomp file removed.
async fn delete_is_held_while_in_use(env: &Env) -> Result<()> {
    env.apply_ready(apparmor_raw("rn-aa-held", "Enforce", false)).await?;
    env.apply_ready(seccomp_deny_mkdir("rn-sc-held", 1)).await?;
    let pods = env.start_sleeper("rn-held", "rn-aa-held", "rn-sc-held").await?;

    env.kubectl(&["delete", "appArmorProfile", "rn-aa-held", "--wait=false"])?;
    env.kubectl(&["delete", "seccompProfile", "rn-sc-held", "--wait=false"])?;
    for (kind, name) in [("apparmorprofile", "rn-aa-held"), ("seccompprofile", "rn-sc-held")] {
        eventually(
            &format!("{kind} {name} held: Deleting/InUse"),
            Duration::from_secs(60),
            || async {
                let reason = env.kubectl(&[
                    "get",
                    kind,
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Deleting\")].reason}",
                ])?;
                Ok((reason.trim() == "InUse").then_some(()))
            },
        )
        .await?;
    }
    if let Ok(node) = env.shell() {
        ensure!(
            env.loaded_profiles().await?.contains_key("rn-aa-held"),
            "unloaded while in use"
        );
        node.exec_ok("test -f /var/lib/kubelet/seccomp/palisade/rn-sc-held.json")
            .await?;
    }

    pods.delete("rn-held", &DeleteParams::default().grace_period(0)).await?;
    wait_gone(&pods, "rn-held").await?;
    for (kind, name) in [("apparmorprofile", "rn-aa-held"), ("seccompprofile", "rn-sc-held")] {
        eventually(&format!("{kind} {name} deleted"), Duration::from_secs(120), || async {
            let out = env.kubectl(&["get", kind, name, "--ignore-not-found", "-o", "name"])?;
            Ok(out.trim().is_empty().then_some(()))
        })
        .await?;
    }
    let Ok(node) = env.shell() else {
        eprintln!("  (not checked that the kernel and the node's files no longer have them: no node shell)");
        return Ok(());
    };
    eventually(
        "rn-aa-held unloaded from the kernel",
        Duration::from_secs(60),
        || async { Ok((!env.loaded_profiles().await?.contains_key("rn-aa-held")).then_some(())) },
    )
    .await?;
    eventually(
        "rn-sc-held.json removed from the node",
        Duration::from_secs(60),
        || async {
            let e = node
                .exec("test -e /var/lib/kubelet/seccomp/palisade/rn-sc-held.json")
                .await?;
            Ok((e.code != 0).then_some(()))
        },
    )
    .await
}

/// Drift on a real kernel: a profile unloaded with `apparmor_parser -R` on the node and a
/// deleted seccomp file are put back by the agent, without any API change.
async fn drift_is_repaired(env: &Env) -> Result<()> {
    let node = env.shell()?;
    env.apply_ready(apparmor_raw("rn-aa-drift", "Enforce", false)).await?;
    env.apply_ready(seccomp_deny_mkdir("rn-sc-drift", 1)).await?;
    let file = "/var/lib/kubelet/seccomp/palisade/rn-sc-drift.json";
    let before = node.exec_ok(&format!("cat {file}")).await?;
    // Unloaded and checked in one step: the agent may put it back at its next drift check.
    node.exec_ok(&format!(
        "printf 'profile rn-aa-drift {{}}\\n' | apparmor_parser -R && \
         if grep -q '^rn-aa-drift ' /sys/kernel/security/apparmor/profiles; then echo 'apparmor_parser -R did not unload it'; exit 1; fi && \
         rm {file}"
    ))
    .await?;
    let t0 = Instant::now();
    // The suite installs the chart with a drift interval of 15 s (60 s by default); then a
    // compile and a load, slower on an emulated other architecture.
    let patience = DRIFT_INTERVAL + Duration::from_secs(90) * node.kind.patience();
    eventually("rn-aa-drift loaded again", patience, || async {
        Ok((env.loaded_profiles().await?.get("rn-aa-drift").map(String::as_str) == Some("enforce")).then_some(()))
    })
    .await?;
    let after = eventually("rn-sc-drift.json written again", patience, || async {
        let e = node.exec(&format!("cat {file}")).await?;
        Ok((e.code == 0).then_some(e.output))
    })
    .await?;
    ensure!(after == before, "the repaired file differs:\n{before}\n---\n{after}");
    progress(env.start, &format!("drift repaired in {:?}", t0.elapsed()));
    let r = env
        .run_pod(
            "rn-aa-drift",
            localhost_apparmor("rn-aa-drift"),
            json!({}),
            APPARMOR_PROBE,
        )
        .await?;
    ensure!(r.message.contains("tmp write: failed"), "after repair: {}", r.message);
    Ok(())
}

/// On every node: the agent pod restarted, the profiles stay loaded and pods keep being
/// confined. Then the nodes reboot (all at once): each kernel forgets every profile; the
/// agents load them again, and a pod that was running under one on each node comes back
/// confined by it (the kubelet does not start its container until the profile is there).
async fn agent_restart_and_node_reboot(env: &Env) -> Result<()> {
    let Some(cluster) = env.cluster.as_ref() else {
        return Err(anyhow!(Skip("reboots the node (needs the real-node harness)")));
    };
    env.apply_ready(apparmor_raw("rn-aa-reboot", "Enforce", false)).await?;
    env.apply_ready(seccomp_deny_mkdir("rn-sc-reboot", 1)).await?;

    let agents = env.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=agent",
        "-o",
        "name",
    ])?;
    let agents: Vec<&str> = agents.split_whitespace().collect();
    ensure!(agents.len() == env.nodes.len(), "agent pods: {agents:?}");
    let mut delete = vec!["-n", NAMESPACE, "delete", "--wait=true"];
    delete.extend(&agents);
    env.kubectl(&delete)?;
    progress(env.start, "agents deleted");
    wait_workloads(&env.client, Duration::from_secs(300), || cluster.stack.check_alive()).await?;
    progress(env.start, "agents back");
    let mut sleepers = vec![];
    for index in 0..env.nodes.len() {
        env.move_to(index);
        ensure!(
            env.loaded_profiles().await?.contains_key("rn-aa-reboot"),
            "profile lost over an agent restart on {}",
            env.node()
        );
        let r = env
            .run_pod(
                "rn-aa-restart",
                localhost_apparmor("rn-aa-reboot"),
                json!({}),
                APPARMOR_PROBE,
            )
            .await?;
        ensure!(
            label_of(&r.message) == "rn-aa-reboot (enforce)",
            "after the agent restart on {}: {}",
            env.node(),
            r.message
        );
        let name = format!("rn-reboot-{index}");
        sleepers.push((env.start_sleeper(&name, "rn-aa-reboot", "rn-sc-reboot").await?, name));
        progress(
            env.start,
            &format!("confined pods checked and sleeper running on {}", env.node()),
        );
    }
    env.move_to(0);

    let t0 = Instant::now();
    futures::future::try_join_all((0..env.nodes.len()).map(|i| cluster.reboot_node(i, env.start))).await?;
    progress(
        env.start,
        &format!("nodes back Ready {:?} after the reboots began", t0.elapsed()),
    );
    for node in cluster.nodes() {
        // The pod's process, found on the node by its label, is confined by both profiles.
        let confined = eventually(
            &format!("the sleeper on {} running under rn-aa-reboot", node.name),
            Duration::from_secs(300),
            || async {
                let out = node
                    .exec(
                        "for p in /proc/[0-9]*; do if grep -qx 'rn-aa-reboot (enforce)' $p/attr/current 2>/dev/null; \
                     then grep Seccomp: $p/status; cat $p/comm; fi; done",
                    )
                    .await?;
                Ok(out.output.contains("sleep").then_some(out.output))
            },
        )
        .await?;
        ensure!(
            confined.contains("Seccomp:\t2"),
            "the process on {} has no seccomp filter after the reboot: {confined}",
            node.name
        );
        node.exec_ok("test -f /var/lib/kubelet/seccomp/palisade/rn-sc-reboot.json")
            .await?;
        progress(
            env.start,
            &format!(
                "confined pod running again on {} {:?} after the reboots began",
                node.name,
                t0.elapsed()
            ),
        );
    }
    for (pods, name) in sleepers {
        pods.delete(&name, &DeleteParams::default().grace_period(0)).await?;
        wait_gone(&pods, &name).await?;
    }
    Ok(())
}

/// A raw policy whose `flags=(complain)` contradicts `spec.mode: Enforce` is refused with a
/// message naming the line (on a real kernel it would load in complain mode and never
/// enforce), and never reaches the node.
/// Applies a raw AppArmor policy as `name` in `mode`, waits until the operator refuses it,
/// checks it never reached the kernel, deletes it, and returns the refusal.
async fn refused_policy(env: &Env, name: &str, mode: &str, policy: &str) -> Result<String> {
    apply_json(
        &env.client,
        json!({
            "apiVersion": "palisade.dev/v1alpha1",
            "kind": "AppArmorProfile",
            "metadata": {"name": name},
            "spec": {"mode": mode, "policy": policy}
        }),
    )
    .await?;
    let message = eventually(&format!("{name} rejected"), Duration::from_secs(60), || async {
        let out = env.kubectl(&[
            "get",
            "apparmorprofile",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}|{.status.conditions[?(@.type==\"Accepted\")].message}",
        ])?;
        let (status, message) = out.split_once('|').unwrap_or(("", ""));
        Ok((status == "False").then(|| message.to_string()))
    })
    .await?;
    if env.shell().is_ok() {
        ensure!(
            !env.loaded_profiles().await?.contains_key(name),
            "a refused profile reached the kernel"
        );
    }
    env.delete_profile("apparmorprofile", name).await?;
    Ok(message)
}

async fn contradicting_flags_are_refused(env: &Env) -> Result<()> {
    let policy =
        "include <tunables/global>\nprofile rn-aa-flags flags=(complain) {\n  include <abstractions/base>\n}\n";
    let message = refused_policy(env, "rn-aa-flags", "Enforce", policy).await?;
    ensure!(
        message.contains("line 2") && message.contains("complain"),
        "the refusal does not name the line and the flag: {message}"
    );
    Ok(())
}

/// Hostile profiles on the real node: the container runtime's default profile name is
/// refused at admission (whoever loads that name first would confine every RuntimeDefault
/// container), and a RuntimeDefault pod still runs under containerd's own profile; a policy
/// whose profile attaches to host programs is refused and never reaches the kernel, nor
/// does anything it names.
async fn hostile_profiles_are_refused(env: &Env) -> Result<()> {
    let taken = apply_json(
        &env.client,
        json!({
            "apiVersion": "palisade.dev/v1alpha1",
            "kind": "AppArmorProfile",
            "metadata": {"name": "cri-containerd.apparmor.d"},
            "spec": {"mode": "Complain", "policy": "profile cri-containerd.apparmor.d flags=(complain) {\n}\n"}
        }),
    )
    .await;
    match taken {
        Err(e) => ensure!(
            format!("{e:#}").contains("metadata.name is reserved"),
            "refused for another reason: {e:#}"
        ),
        Ok(_) => bail!("an AppArmorProfile named like containerd's default profile was admitted"),
    }
    let r = env
        .run_pod(
            "rn-runtime-default",
            json!({"appArmorProfile": {"type": "RuntimeDefault"}}),
            json!({}),
            APPARMOR_PROBE,
        )
        .await?;
    ensure!(
        label_of(&r.message) == "cri-containerd.apparmor.d (enforce)",
        "a RuntimeDefault container runs under {:?}",
        label_of(&r.message)
    );

    // An attachment: the kernel would confine every program it matches, host ones included.
    let message = refused_policy(
        env,
        "rn-aa-attach",
        "Enforce",
        "profile rn-aa-attach /usr/bin/** {\n}\n",
    )
    .await?;
    ensure!(message.contains("attachment"), "refused for another reason: {message}");
    Ok(())
}

/// The chart's security promises hold for the processes really running on the node: the
/// agent is root with exactly CAP_MAC_ADMIN effective, no-new-privileges and a seccomp
/// filter (RuntimeDefault), and AppArmor-unconfined; the operator runs as 65532 with no
/// capabilities. Read from /proc on the node, not from the pod spec. With only these, the
/// agent still reports what the node can enforce: the guest's kernel release (`uname -r`),
/// every AppArmor feature its kernel lists, its runtime, ABIs and seccomp actions.
async fn chart_privileges_hold_on_the_node(env: &Env) -> Result<()> {
    let node = env.shell()?;
    let status_of = |comm: &'static str| async move {
        node.exec_ok(&format!(
            "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = {comm} ] && \
             {{ grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' $p/status; cat $p/attr/current; echo; \
             tr '\\0' '\\n' < $p/environ | grep -E '^(KUBERNETES_SERVICE_HOST|KUBECONFIG)='; }}; done; true"
        ))
        .await
    };
    let field = |text: &str, key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    };
    let agent = status_of("palisade-agent").await?;
    ensure!(!agent.trim().is_empty(), "no palisade-agent process on the node");
    // CAP_MAC_ADMIN is capability 33.
    ensure!(
        field(&agent, "CapEff:") == ["0000000200000000"],
        "agent capabilities:\n{agent}"
    );
    ensure!(field(&agent, "Uid:") == ["0"], "agent uid:\n{agent}");
    ensure!(
        field(&agent, "NoNewPrivs:") == ["1"],
        "agent may gain privileges:\n{agent}"
    );
    ensure!(
        field(&agent, "Seccomp:") == ["2"],
        "agent runs without a seccomp filter:\n{agent}"
    );
    ensure!(
        agent.contains("unconfined"),
        "agent is not AppArmor-unconfined:\n{agent}"
    );
    let operator = status_of("palisade-operat").await?; // comm is cut at 15 characters
    let hosts = env.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    let here = hosts.split_whitespace().any(|n| n == env.node());
    ensure!(
        here != operator.trim().is_empty(),
        "operator pods on {hosts:?}, palisade-operator processes on {}: {operator:?}",
        env.node()
    );
    ensure!(
        field(&operator, "Uid:").iter().all(|u| u == "65532"),
        "operator uid:\n{operator}"
    );
    ensure!(
        field(&operator, "CapEff:").iter().all(|c| c == "0000000000000000"),
        "operator capabilities:\n{operator}"
    );
    ensure!(
        field(&operator, "Seccomp:").iter().all(|s| s == "2"),
        "operator seccomp:\n{operator}"
    );
    node_reports_what_the_guest_has(env, node).await?;
    // The pod specs say the same, and no pod of the chart shares the host's namespaces.
    let specs = env.kubectl(&["-n", NAMESPACE, "get", "pods", "-o", "json"])?;
    let pods: Value = serde_json::from_str(&specs)?;
    for pod in pods["items"].as_array().context("pod list")? {
        let spec = &pod["spec"];
        for key in ["hostPID", "hostNetwork", "hostIPC"] {
            ensure!(spec[key] != json!(true), "{} sets {key}", pod["metadata"]["name"]);
        }
        for c in spec["containers"].as_array().context("containers")? {
            ensure!(
                c["securityContext"]["privileged"] != json!(true),
                "privileged container"
            );
            ensure!(
                c["securityContext"]["readOnlyRootFilesystem"] == json!(true),
                "writable root"
            );
        }
    }
    Ok(())
}

/// The node's report names what the guest itself says it has.
async fn node_reports_what_the_guest_has(env: &Env, node: &RealNode) -> Result<()> {
    let kernel = node.exec_ok("uname -r").await?;
    let listed = node.exec_ok("ls /sys/kernel/security/apparmor/features").await?;
    let features: Vec<&str> = listed.split_whitespace().collect();
    let nps: Api<palisade_domain::NodeProfileStatus> = Api::all(env.client.clone());
    let caps = nps
        .get(env.node())
        .await?
        .status
        .context("the node's report")?
        .capabilities;
    progress(
        env.start,
        &format!("{} reports {}", env.node(), serde_json::to_string(&caps)?),
    );
    ensure!(
        caps.kernel_version.as_deref() == Some(kernel.trim()),
        "reported kernel {:?}, the guest runs {:?}",
        caps.kernel_version,
        kernel.trim()
    );
    ensure!(
        features.contains(&"file") && features.iter().all(|f| caps.apparmor_features.iter().any(|c| c == f)),
        "reported AppArmor features {:?}, the guest kernel lists {features:?}",
        caps.apparmor_features
    );
    ensure!(
        caps.container_runtime
            .as_deref()
            .is_some_and(|r| r.starts_with("containerd://"))
            && caps.apparmor_abi.iter().any(|a| a == "3.0")
            && caps.seccomp_actions.iter().any(|a| a == "errno"),
        "reported runtime, ABIs or seccomp actions: {caps:?}"
    );
    Ok(())
}

/// The seccomp example users start from (examples/seccomp-profile.yaml, applied as it is)
/// lets a container start under runc and run a shell, and refuses what it leaves out
/// (mkdir: EPERM, its defaultErrnoRet).
async fn seccomp_example_runs_a_container(env: &Env) -> Result<()> {
    let file = palisade_e2e::controlplane::repo_root().join("examples/seccomp-profile.yaml");
    env.kubectl(&["apply", "-f", &file.display().to_string()])?;
    for name in ["base-runtime", "web-server"] {
        env.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("seccompprofile/{name}"),
            "--timeout=180s",
        ])?;
    }
    let security = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/web-server.json"}});
    let script = "exec > /dev/termination-log 2>&1
echo started
if mkdir /work/d; then echo 'mkdir: ok'; fi
exit 0";
    let r = env.run_pod("rn-example", security, json!({}), script).await?;
    ensure!(
        r.exit_code == 0 && r.message.contains("started"),
        "the example did not run a container: {r:?}"
    );
    ensure!(
        r.message.contains("Operation not permitted") && !r.message.contains("mkdir: ok"),
        "mkdir was not refused: {}",
        r.message
    );
    env.kubectl(&["delete", "-f", &file.display().to_string(), "--wait=true"])?;
    Ok(())
}

/// Docker's default seccomp profile goes from its JSON file to Ready with the command the
/// README gives (`palisade convert ... | kubectl apply`) and a container runs under it.
async fn docker_default_runs_a_container(env: &Env) -> Result<()> {
    let corpus = palisade_e2e::corpus::corpus_dir()?;
    let palisade = palisade_e2e::controlplane::repo_root().join("target/debug/palisade");
    let out = Command::new(&palisade)
        .arg("convert")
        .arg(corpus.join("docker/default.json"))
        .args(["--name", "docker-default"])
        .output()
        .with_context(|| format!("running {} (make bins builds it)", palisade.display()))?;
    ensure!(
        out.status.success(),
        "palisade convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &out.stdout)?;
    env.kubectl(&["apply", "-f", &file.path().display().to_string()])?;
    env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "seccompprofile/docker-default",
        "--timeout=180s",
    ])
    .with_context(|| env.profile_status("seccompprofile", "docker-default"))?;
    let security = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/docker-default.json"}});
    let script = "exec > /dev/termination-log 2>&1
grep Seccomp: /proc/self/status
echo x > /work/f && cat /work/f
exit 0";
    let r = env.run_pod("rn-docker-default", security, json!({}), script).await?;
    ensure!(
        r.exit_code == 0 && r.message.contains("Seccomp:\t2") && r.message.contains('x'),
        "a container under Docker's default profile: {r:?}"
    );
    env.delete_profile("seccompprofile", "docker-default").await
}

/// Runs `test` with the test pods under RuntimeClass `class`, then back to the default (also
/// when `test` panics).
async fn with_runtime<T>(
    env: &Env,
    class: &'static str,
    test: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    struct Reset<'a>(&'a Env);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            if let Ok(mut runtime) = self.0.runtime.lock() {
                *runtime = None;
            }
        }
    }
    *env.runtime.lock().expect("runtime lock") = Some(class);
    let _reset = Reset(env);
    test.await
}

/// crun as well as runc (RuntimeClass `crun`, on every node): crun really starts the
/// container (its own state file where runc keeps state.json); the same SeccompProfile
/// confines a pod the same way; a profile naming a syscall that no libseccomp knows is Ready
/// with the SyscallsIgnored warning and both runtimes skip the name and enforce the rest (the
/// README's claim); Docker's default profile runs a container under both.
async fn seccomp_under_runc_and_crun(env: &Env) -> Result<()> {
    if env.cluster.is_none() {
        return Err(anyhow!(Skip(
            "needs the RuntimeClass crun the real-node harness creates"
        )));
    }
    let node = env.shell().ok();
    with_runtime(env, "crun", async {
        env.apply_ready(seccomp_deny_mkdir("rn-deny-mkdir", 122)).await?;
        let security =
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/rn-deny-mkdir.json"}});
        let (pods, _) = start_looping(env, "rn-crun", security, "exec sleep 3600").await?;
        let pod = pods.get("rn-crun").await?;
        let id = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.container_id)
            .context("the pod's container id")?;
        let id = id.trim_start_matches("containerd://").to_string();
        if let Some(node) = node {
            let state = node.exec_ok(&format!("ls /run/containerd/runc/k8s.io/{id}/")).await?;
            progress(
                env.start,
                &format!(
                    "crun's state for {id}: {}",
                    state.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            );
            ensure!(
                state.split_whitespace().any(|f| f == "status") && !state.contains("state.json"),
                "the container's runtime state is not crun's: {state}"
            );
        }
        pods.delete("rn-crun", &DeleteParams::default().grace_period(0)).await?;
        wait_gone(&pods, "rn-crun").await?;
        seccomp_profile_confines_a_pod(env).await?;
        docker_default_runs_a_container(env).await
    })
    .await?;

    let mut profile = seccomp_deny_mkdir("rn-unknown-name", 122);
    profile["spec"]["syscalls"][0]["names"] = json!(["mkdir", "mkdirat", "palisade_no_such_syscall"]);
    env.apply_ready(profile).await?;
    let warning = env.kubectl(&[
        "get",
        "seccompprofile",
        "rn-unknown-name",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"SyscallsIgnored\")].status} {.status.conditions[?(@.type==\"SyscallsIgnored\")].message}",
    ])?;
    ensure!(
        warning.starts_with("True") && warning.contains("palisade_no_such_syscall"),
        "no SyscallsIgnored warning naming the unknown name: {warning}"
    );
    let security =
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "palisade/rn-unknown-name.json"}});
    let script = "exec > /dev/termination-log 2>&1
if mkdir /work/d; then echo 'mkdir: ok'; fi
exit 0";
    for class in [None, Some("crun")] {
        let run = env.run_pod("rn-unknown-name", security.clone(), json!({}), script);
        let r = match class {
            Some(class) => with_runtime(env, class, run).await?,
            None => run.await?,
        };
        let runtime = class.unwrap_or("runc");
        ensure!(
            r.exit_code == 0 && r.message.contains("Disk quota exceeded") && !r.message.contains("mkdir: ok"),
            "under {runtime}, a profile with a name libseccomp does not know: {r:?}"
        );
    }
    env.delete_profile("seccompprofile", "rn-unknown-name").await
}

/// Real users' profiles on a real node: Docker's default seccomp profile runs a container
/// (see [`docker_default_runs_a_container`]); every AppArmor profile of the corpus (nine generated for
/// Helm charts, SPO's examples) loads into the node's kernel in the mode its spec says.
async fn corpus_on_the_real_node(env: &Env) -> Result<()> {
    let corpus = palisade_e2e::corpus::corpus_dir()?;
    docker_default_runs_a_container(env).await?;
    let options = palisade_cli::Options::default();
    let mut profiles: BTreeMap<String, Value> = BTreeMap::new();
    for rel in palisade_e2e::corpus::corpus_files(&corpus)? {
        let text = std::fs::read_to_string(corpus.join(&rel))?;
        let (objects, _) = palisade_cli::convert(&text, &rel.display().to_string(), &options)
            .map_err(|e| anyhow!("{}: {e}", rel.display()))?;
        for object in objects.into_iter().filter(|o| o["kind"] == "AppArmorProfile") {
            let name = object["metadata"]["name"].as_str().context("name")?.to_string();
            profiles.entry(name).or_insert(object);
        }
    }
    ensure!(
        profiles.len() >= 12,
        "{} AppArmor profiles in the corpus",
        profiles.len()
    );
    let t0 = Instant::now();
    for profile in profiles.values() {
        env.apply_ready(profile.clone()).await?;
    }
    progress(
        env.start,
        &format!(
            "{} corpus AppArmor profiles Ready on the node in {:?}",
            profiles.len(),
            t0.elapsed()
        ),
    );
    let loaded = env.loaded_profiles().await?;
    for (name, profile) in &profiles {
        let mode = if profile["spec"]["mode"] == "Complain" {
            "complain"
        } else {
            "enforce"
        };
        ensure!(
            loaded.get(name).map(String::as_str) == Some(mode),
            "{name}: the kernel has {:?}, the spec says {mode}",
            loaded.get(name)
        );
    }
    for name in profiles.keys() {
        env.delete_profile("apparmorprofile", name).await?;
    }
    Ok(())
}

/// The pod admission guard the chart installs, served by the operator pod on the node and
/// called by the API server on this machine (reaching it through a NodePort and QEMU's port
/// forward; a real cluster's API server reaches the chart's Service directly): a pod naming
/// a profile that does not exist is admitted with the guard's warning (the chart's default
/// mode), one naming a Ready profile without.
async fn pod_guard_on_the_real_node(env: &Env) -> Result<()> {
    webhook_via_node(
        env,
        "validatingwebhookconfiguration",
        "palisade-pod-guard",
        "/validate-pods",
    )?;

    env.apply_ready(seccomp_deny_mkdir("rn-guard-ok", 1)).await?;
    let create = |name: &str, profile: &str| -> Result<String> {
        let security =
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/{profile}.json")}});
        let pod = pod_manifest(name, env.node(), &env.image, security, json!({}), "exit 0", "Never");
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), pod.to_string())?;
        let out = Command::new(&env.kubectl)
            .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
            .args(["create", "-f"])
            .arg(file.path())
            .output()?;
        let _ = env.kubectl(&["delete", "pod", name, "--ignore-not-found", "--wait=false"]);
        ensure!(
            out.status.success(),
            "creating {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // kube-proxy programs the NodePort shortly after the Service appears: until then the
    // API server cannot reach the guard and admits without a word (failurePolicy Ignore).
    let mut attempt = 0;
    let warning = eventually(
        "the guard's warning for a missing profile",
        Duration::from_secs(90),
        || {
            attempt += 1;
            let stderr = create(&format!("rn-guard-missing-{attempt}"), "rn-guard-missing");
            async move {
                let stderr = stderr?;
                Ok(stderr.contains("Palisade: SeccompProfile").then_some(stderr))
            }
        },
    )
    .await?;
    ensure!(
        warning.contains("Warning: Palisade: SeccompProfile \"rn-guard-missing\" does not exist"),
        "{warning}"
    );
    let quiet = create("rn-guard-ok", "rn-guard-ok")?;
    ensure!(!quiet.contains("Palisade"), "a Ready profile drew a warning: {quiet}");

    webhook_via_service(
        env,
        "validatingwebhookconfiguration",
        "palisade-pod-guard",
        "/validate-pods",
    )?;
    env.delete_profile("seccompprofile", "rn-guard-ok").await
}

// ---- learning ----

/// `palisade learn ...` as a user runs it, from this machine.
fn palisade_cli(env: &Env, args: &[&str]) -> Result<String> {
    let out = Command::new(palisade_e2e::controlplane::repo_root().join("target/debug/palisade"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "palisade {}: {text}", args.join(" "));
    Ok(text)
}

/// `helm upgrade` with learning on or off, then waits for the agents to roll.
async fn set_learning(env: &Env, on: bool) -> Result<()> {
    set_chart_value(env, &format!("learning.enabled={on}")).await
}

/// `helm upgrade` with one more value set, then waits for the agents and the operator to roll.
async fn set_chart_value(env: &Env, value: &str) -> Result<()> {
    let out = Command::new(palisade_e2e::helm_binary()?)
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args(["upgrade", "palisade"])
        .arg(palisade_e2e::controlplane::repo_root().join("charts/palisade"))
        .args(["--namespace", NAMESPACE, "--reuse-values", "--set"])
        .arg(value)
        .output()?;
    ensure!(
        out.status.success(),
        "helm upgrade: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.kubectl(&[
        "rollout",
        "status",
        "daemonset/palisade-agent",
        "-n",
        NAMESPACE,
        "--timeout=300s",
    ])?;
    env.kubectl(&[
        "rollout",
        "status",
        "deployment/palisade-operator",
        "-n",
        NAMESPACE,
        "--timeout=300s",
    ])?;
    Ok(())
}

/// The learning section of a profile's status, once `check` holds for it.
async fn learned_until(
    env: &Env,
    kind: &str,
    name: &str,
    what: &str,
    check: impl Fn(&palisade_domain::learn::Learning) -> bool,
) -> Result<palisade_domain::learn::Learning> {
    let check = &check;
    eventually(what, Duration::from_secs(180), || async move {
        let v: Value = serde_json::from_str(&env.kubectl(&["get", kind, name, "-o", "json"])?)?;
        let learning: Option<palisade_domain::learn::Learning> =
            serde_json::from_value(v["status"]["learning"].clone()).ok();
        Ok(learning.filter(|l| check(l)))
    })
    .await
}

/// Sets the node up for learning from the kernel log (no auditd here: no printk rate
/// limit), turns learning on, applies `profile` and waits until the node learns for it.
/// Returns when it started.
async fn start_learning(env: &Env, profile: Value) -> Result<Instant> {
    env.shell()?.exec_ok("sysctl -w kernel.printk_ratelimit=0").await?;
    set_learning(env, true).await?;
    let t0 = Instant::now();
    let kind = profile["kind"].as_str().context("kind")?.to_lowercase();
    let name = profile["metadata"]["name"].as_str().context("name")?.to_string();
    env.apply_ready(profile).await?;
    // Every node learns (learning is on for all of them); the test's pods run on one.
    let nodes = env.nodes.len();
    learned_until(env, &kind, &name, "the nodes learning", |l| l.nodes as usize == nodes).await?;
    Ok(t0)
}

/// Waits until the profile's current generation is Ready.
async fn ready_again(env: &Env, kind: &str, name: &str) -> Result<()> {
    eventually(
        &format!("{kind} {name} Ready at its generation"),
        Duration::from_secs(180),
        || async move {
            let v: Value = serde_json::from_str(&env.kubectl(&["get", kind, name, "-o", "json"])?)?;
            let generation = v["metadata"]["generation"].as_i64();
            let ready = v["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
                c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"].as_i64() == generation
            });
            Ok(ready.then_some(()))
        },
    )
    .await
}

/// The workload both learning tests run: reads a config file, writes a pid file, listens
/// on a TCP port, signals a child, changes a file's owner (CAP_CHOWN), then says "done".
const LEARN_WORKLOAD: &str = "exec > /dev/termination-log 2>&1
cat /etc/hostname > /dev/null
echo $PPID > /tmp/app.pid
nc -l -p 8080 & P=$!
sleep 1
kill $P
touch /tmp/owned
chown 1:1 /tmp/owned
sleep 2
echo done";

/// From no profile to an enforced, learned AppArmor profile with kubectl and `palisade`
/// alone: a near-empty profile in Complain mode, the workload runs, the node learns from
/// the kernel's records, `palisade learn --apply --enforce` writes the rules and enforces;
/// the same workload then runs, and a write outside what it did is denied.
async fn learn_apparmor_then_enforce(env: &Env) -> Result<()> {
    let name = "rn-learn";
    let t0 = start_learning(
        env,
        json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AppArmorProfile",
            "metadata": {"name": name},
            "spec": {"mode": "Complain",
                     "policy": format!("profile {name} flags=(attach_disconnected,mediate_deleted) {{\n}}\n")},
        }),
    )
    .await?;
    // A pod of the profile's owner runs on the node, and the operator publishes it to the
    // node's agent (the agents read no pods): records of the profile count from now on.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let user = pod_manifest(
        "rn-learn-user",
        env.node(),
        &env.image,
        localhost_apparmor(name),
        json!({}),
        "exec sleep 3600",
        "Always",
    );
    pods.create(&PostParams::default(), &serde_json::from_value(user)?)
        .await?;
    eventually(
        "the node's report to list the profile's pod",
        Duration::from_secs(120),
        || async {
            let v: Value =
                serde_json::from_str(&env.kubectl(&["get", "nodeprofilestatus", env.node(), "-o", "json"])?)?;
            let listed = v["spec"]["learningPods"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "default/rn-learn-user" && p["apparmor"][0] == name);
            Ok(listed.then_some(()))
        },
    )
    .await?;
    // Then a hostile workload on the learning node: an unconfined pod with the runtime's
    // default capabilities (CAP_AUDIT_WRITE among them) sends the audit subsystem a user
    // message whose text holds a newline and then a line shaped like a kernel record of the
    // learning profile. The kernel prints it to its log as two lines; the second must teach
    // nothing.
    let forged = format!(
        "palisade-realnode-forgery\naudit: type=1400 audit(@NOW@:4242): apparmor=\"ALLOWED\" operation=\"open\" class=\"file\" profile=\"{name}\" name=\"/forged/secret\" pid=1 comm=\"app\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"
    );
    let r = env
        .run_pod(
            "rn-learn-forge",
            json!({}),
            json!({}),
            &format!("exec > /dev/termination-log 2>&1\n/bin/forge-audit '{forged}'"),
        )
        .await?;
    ensure!(r.exit_code == 0, "the forged audit message was not sent: {r:?}");
    let lines = env.kernel_log(&["audit: type=1400", "/forged/secret"]).await?;
    ensure!(
        !lines.is_empty(),
        "the kernel did not print the forged line as a line of its own (nothing to test)"
    );
    let r = env
        .run_pod("rn-learn-aa", localhost_apparmor(name), json!({}), LEARN_WORKLOAD)
        .await?;
    ensure!(r.exit_code == 0 && r.message.contains("done"), "complain run: {r:?}");
    let learning = learned_until(env, "apparmorprofile", name, "the workload's rules", |l| {
        let has = |r: &str| l.suggestions.iter().any(|s| s.rule == r);
        has("capability chown,") && has("owner /tmp/app.pid w,") && has("owner /etc/hostname r,")
    })
    .await?;
    // The forged line was in the log before the workload's first record: read with them.
    ensure!(
        learning.suggestions.iter().all(|s| !s.rule.contains("forged")),
        "a forged kernel-log line was learned: {learning:?}"
    );
    pods.delete("rn-learn-user", &DeleteParams::default().grace_period(0))
        .await?;
    progress(
        env.start,
        &format!(
            "learned {} AppArmor rules in {:.1} s",
            learning.new_permissions,
            t0.elapsed().as_secs_f64()
        ),
    );
    ensure!(
        learning
            .suggestions
            .iter()
            .all(|s| !s.rule.contains("**") && s.nodes == [env.node().to_string()]),
        "{learning:?}"
    );

    let shown = palisade_cli(env, &["learn", name])?;
    println!("$ kubectl palisade learn {name}\n{shown}");
    ensure!(shown.contains("+   capability chown,"), "{shown}");
    let applied = palisade_cli(env, &["learn", name, "--apply", "--enforce"])?;
    println!("$ kubectl palisade learn {name} --apply --enforce\n{applied}");
    ensure!(applied.contains("switched to Enforce"), "{applied}");
    ready_again(env, "apparmorprofile", name).await?;
    ensure!(
        env.loaded_profiles().await?.get(name).map(String::as_str) == Some("enforce"),
        "not enforced on the node: {:?}",
        env.loaded_profiles().await?.get(name)
    );
    // Idempotent.
    let again = palisade_cli(env, &["learn", name, "--apply", "-o", "json"])?;
    ensure!(again.contains("\"applied\": false"), "{again}");

    let r = env
        .run_pod("rn-learn-aa", localhost_apparmor(name), json!({}), LEARN_WORKLOAD)
        .await?;
    ensure!(
        r.exit_code == 0 && r.message.contains("done"),
        "enforced run of the same workload: {r:?}"
    );
    let outside = "exec > /dev/termination-log 2>&1\nif echo x > /tmp/elsewhere; then echo 'write: ok'; else echo 'write: denied'; fi";
    let r = env
        .run_pod("rn-learn-aa", localhost_apparmor(name), json!({}), outside)
        .await?;
    ensure!(
        r.message.contains("write: denied"),
        "a write outside the learned set: {r:?}"
    );
    let denied = env
        .kernel_log(&["apparmor=\"DENIED\"", &format!("profile=\"{name}\""), "/tmp/elsewhere"])
        .await?;
    ensure!(!denied.is_empty(), "the kernel logged no denial of /tmp/elsewhere");
    env.delete_profile("apparmorprofile", name).await?;
    Ok(())
}

/// The same for seccomp: `defaultAction: SCMP_ACT_LOG`, learn the syscalls (the runtime's
/// after the filter is set, and the workload's), allow them and refuse the rest.
async fn learn_seccomp_then_enforce(env: &Env) -> Result<()> {
    let name = "rn-learn-sc";
    let t0 = start_learning(
        env,
        json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile",
            "metadata": {"name": name},
            "spec": {"defaultAction": "SCMP_ACT_LOG"},
        }),
    )
    .await?;
    let security =
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/{name}.json")}});
    let r = env
        .run_pod("rn-learn-sc", security.clone(), json!({}), LEARN_WORKLOAD)
        .await?;
    ensure!(r.exit_code == 0 && r.message.contains("done"), "logging run: {r:?}");
    let learning = learned_until(env, "seccompprofile", name, "the workload's syscalls", |l| {
        let has = |n: &str| l.suggestions.iter().any(|s| s.rule == n);
        ["execve", "bind", "listen", "kill", "clock_nanosleep"]
            .iter()
            .all(|n| has(n))
            && ["chown", "fchownat", "lchown"].iter().any(|n| has(n))
    })
    .await?;
    progress(
        env.start,
        &format!(
            "learned {} syscalls in {:.1} s",
            learning.new_permissions,
            t0.elapsed().as_secs_f64()
        ),
    );
    let applied = palisade_cli(env, &["learn", name, "--apply", "--enforce"])?;
    println!("$ kubectl palisade learn {name} --apply --enforce\n{applied}");
    ensure!(applied.contains("SCMP_ACT_ERRNO"), "{applied}");
    ready_again(env, "seccompprofile", name).await?;
    let r = env
        .run_pod("rn-learn-sc", security.clone(), json!({}), LEARN_WORKLOAD)
        .await?;
    ensure!(
        r.exit_code == 0 && r.message.contains("done"),
        "enforced run of the same workload: {r:?}"
    );
    let outside =
        "exec > /dev/termination-log 2>&1\nif mkdir /tmp/d; then echo 'mkdir: ok'; else echo 'mkdir: refused'; fi";
    let r = env.run_pod("rn-learn-sc", security, json!({}), outside).await?;
    ensure!(
        r.message.contains("mkdir: refused") && r.message.contains("Operation not permitted"),
        "a syscall outside the learned set: {r:?}"
    );
    env.delete_profile("seccompprofile", name).await?;
    set_learning(env, false).await?;
    Ok(())
}

/// Points the chart's webhook configuration (`kind`, `name`, its webhook at `path`) at the
/// operator through a NodePort Service the host's API server reaches (it cannot reach a
/// Service IP inside the guest), and checks the operator put its CA into the caBundle.
fn webhook_via_node(env: &Env, kind: &str, name: &str, path: &str) -> Result<()> {
    let node = env.shell()?;
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "palisade-webhook-nodeport", "namespace": NAMESPACE},
        "spec": {"type": "NodePort",
                 "selector": {"app.kubernetes.io/name": "palisade", "app.kubernetes.io/component": "operator"},
                 "ports": [{"port": 443, "targetPort": "webhook", "nodePort": palisade_e2e::realnode::WEBHOOK_NODE_PORT}]}});
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), service.to_string())?;
    env.kubectl(&["apply", "-f", &file.path().display().to_string()])?;
    let to_url = json!([
        {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
        {"op": "add", "path": "/webhooks/0/clientConfig/url",
         "value": format!("https://127.0.0.1:{}{path}", node.webhook_port)},
    ]);
    env.kubectl(&["patch", kind, name, "--type", "json", "-p", &to_url.to_string()])?;
    let bundle = env.kubectl(&["get", kind, name, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}"])?;
    ensure!(
        !bundle.trim().is_empty(),
        "the operator did not put its CA into {name}'s caBundle"
    );
    Ok(())
}

/// Undoes [`webhook_via_node`]: the configuration back at the chart's Service.
fn webhook_via_service(env: &Env, kind: &str, name: &str, path: &str) -> Result<()> {
    let back = json!([
        {"op": "remove", "path": "/webhooks/0/clientConfig/url"},
        {"op": "add", "path": "/webhooks/0/clientConfig/service",
         "value": {"name": "palisade-webhook", "namespace": NAMESPACE, "path": path, "port": 443}},
    ]);
    env.kubectl(&["patch", kind, name, "--type", "json", "-p", &back.to_string()])?;
    env.kubectl(&[
        "delete",
        "service",
        "palisade-webhook-nodeport",
        "-n",
        NAMESPACE,
        "--ignore-not-found",
    ])?;
    Ok(())
}

/// The binder, reachable from the host's API server: the NodePort Service the pod guard's
/// test uses and the MutatingWebhookConfiguration pointed at it; returns once a binding
/// binds a pod (kube-proxy programs the NodePort shortly after the Service appears; until
/// then failurePolicy Ignore admits pods unbound).
async fn binder_via_node(env: &Env) -> Result<()> {
    webhook_via_node(
        env,
        "mutatingwebhookconfiguration",
        "palisade-profile-binding",
        "/mutate-pods",
    )?;
    // The binder skips a binding whose profile does not exist: the probe's does.
    env.apply_ready(seccomp_deny_mkdir("rn-binder-probe", 1)).await?;
    let file = tempfile::NamedTempFile::new()?;
    let probe = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ProfileBinding",
        "metadata": {"name": "rn-binder-probe", "namespace": "default"},
        "spec": {"profileRef": {"kind": "SeccompProfile", "name": "rn-binder-probe"},
                 "selector": {"matchLabels": {"palisade-binder-probe": "yes"}}}});
    std::fs::write(file.path(), probe.to_string())?;
    env.kubectl(&["apply", "-f", &file.path().display().to_string()])?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mut attempt = 0;
    eventually("the binder binding a pod", Duration::from_secs(120), || {
        attempt += 1;
        let pods = pods.clone();
        let name = format!("rn-binder-probe-{attempt}");
        async move {
            let mut pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"palisade-binder-probe": "yes"}},
                "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "x"}]}}))?;
            pod = pods
                .create(
                    &PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &pod,
                )
                .await?;
            let bound = pod.spec.unwrap().containers[0]
                .security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.clone())
                .is_some();
            Ok(bound.then_some(()))
        }
    })
    .await?;
    env.kubectl(&["delete", "profilebinding", "rn-binder-probe", "-n", "default"])?;
    env.delete_profile("seccompprofile", "rn-binder-probe").await
}

/// A Deployment that runs with no profile, taken to enforced by both kinds with one
/// command: `palisade learn --workload deployment/NAME --apply --enforce` creates learning
/// profiles, binds them to the Deployment's pods, restarts it, waits until the node learned
/// nothing new for a while, writes the rules, enforces and restarts it once more. Its pods
/// then run confined by both profiles, their own operations succeed, and a write and a
/// syscall they never made are refused.
async fn learn_a_workload_then_enforce(env: &Env) -> Result<()> {
    let name = "rn-wl";
    let profile = "default.rn-wl";
    env.shell()?.exec_ok("sysctl -w kernel.printk_ratelimit=0").await?;
    set_learning(env, true).await?;
    binder_via_node(env).await?;
    let script = format!(
        "{LEARN_WORKLOAD}
if [ -n \"$PROBE\" ]; then
  if echo x > /tmp/elsewhere; then echo 'write: ok'; else echo 'write: denied'; fi
  if mkdir /tmp/d; then echo 'mkdir: ok'; else echo 'mkdir: refused'; fi
  exit 0
fi
exec sleep 3600"
    );
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": env.node()},
                    "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "containers": [{"name": "app", "image": env.image, "imagePullPolicy": "IfNotPresent",
                                    "command": ["/bin/sh", "-c", script]}]}}}});
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), deployment.to_string())?;
    env.kubectl(&["apply", "-f", &file.path().display().to_string()])?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let running = |want_bound: bool| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
                .await?;
            Ok(list.items.into_iter().find(|p| {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.metadata.deletion_timestamp.is_none();
                let sc = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers[0].security_context.clone())
                    .unwrap_or_default();
                running && (sc.seccomp_profile.is_some() && sc.app_armor_profile.is_some()) == want_bound
            }))
        }
    };
    eventually(
        "the Deployment running with no profile",
        Duration::from_secs(180),
        || running(false),
    )
    .await?;

    // First for git: learn, and write the result as files instead of applying it.
    let t0 = Instant::now();
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("palisade");
    let out_dir_arg = out_dir.display().to_string();
    let workload = format!("deployment/{name}");
    let learn_workload = |extra: &[&str]| {
        let mut args = vec![
            "learn",
            "--workload",
            &workload,
            "-n",
            "default",
            "--quiet-for",
            "20s",
            "--duration",
            "5m",
        ];
        args.extend_from_slice(extra);
        palisade_cli(env, &args)
    };
    let to_files = learn_workload(&["--enforce", "--output-dir", &out_dir_arg])?;
    println!(
        "$ kubectl palisade learn --workload {workload} -n default --quiet-for 20s --enforce --output-dir DIR\n{to_files}"
    );
    progress(
        env.start,
        &format!("learned a workload in {:.1} s", t0.elapsed().as_secs_f64()),
    );
    for said in [
        format!("created AppArmorProfile {profile} (Complain)"),
        format!("created SeccompProfile {profile} (SCMP_ACT_LOG)"),
        format!("created ProfileBinding default/{name}-apparmor"),
        format!("created ProfileBinding default/{name}-seccomp"),
        format!("restarted {workload}: its new pods start under the learning profiles"),
        "quiet for 20s: done learning".to_string(),
    ] {
        ensure!(to_files.contains(&said), "missing {said:?} in:\n{to_files}");
    }
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    files.sort();
    ensure!(
        files
            == [
                format!("apparmor-{profile}.yaml"),
                format!("binding-{name}-apparmor.yaml"),
                format!("binding-{name}-seccomp.yaml"),
                format!("seccomp-{profile}.yaml")
            ],
        "{files:?}"
    );
    let aa_file: Value = yaml_serde::from_str(&std::fs::read_to_string(
        out_dir.join(format!("apparmor-{profile}.yaml")),
    )?)?;
    let sc_file: Value = yaml_serde::from_str(&std::fs::read_to_string(
        out_dir.join(format!("seccomp-{profile}.yaml")),
    )?)?;
    ensure!(
        aa_file["spec"]["mode"] == "Enforce" && sc_file["spec"]["defaultAction"] == "SCMP_ACT_ERRNO",
        "{aa_file} {sc_file}"
    );
    let live_mode: Value = serde_json::from_str(&env.kubectl(&["get", "apparmorprofile", profile, "-o", "json"])?)?;
    ensure!(
        live_mode["spec"]["mode"] == "Complain",
        "--output-dir changed the cluster"
    );
    env.kubectl(&["apply", "--dry-run=server", "-f", &out_dir_arg])?;

    // Then in the cluster: the same command continues (nothing created or restarted again),
    // applies, enforces and rolls the workload.
    let out = learn_workload(&["--apply", "--enforce"])?;
    println!("$ kubectl palisade learn --workload {workload} -n default --quiet-for 20s --apply --enforce\n{out}");
    progress(
        env.start,
        &format!("learned and enforced a workload in {:.1} s", t0.elapsed().as_secs_f64()),
    );
    for said in [
        format!("AppArmorProfile {profile} exists: learning continues in it"),
        "switched to Enforce".to_string(),
        "SCMP_ACT_ERRNO".to_string(),
        format!("restarted {workload}: its new pods start under the enforced profiles"),
    ] {
        ensure!(out.contains(&said), "missing {said:?} in:\n{out}");
    }
    ensure!(
        !out.contains("created ") && !out.contains("learning profiles"),
        "a second run created or restarted again:\n{out}"
    );
    // What --output-dir wrote is what --apply wrote.
    for (kind, file) in [("apparmorprofile", &aa_file), ("seccompprofile", &sc_file)] {
        let live: Value = serde_json::from_str(&env.kubectl(&["get", kind, profile, "-o", "json"])?)?;
        ensure!(
            live["spec"] == file["spec"],
            "{kind}: the file's spec {} differs from what --apply wrote {}",
            file["spec"],
            live["spec"]
        );
    }
    ready_again(env, "apparmorprofile", profile).await?;
    ready_again(env, "seccompprofile", profile).await?;
    ensure!(
        env.loaded_profiles().await?.get(profile).map(String::as_str) == Some("enforce"),
        "not enforced on the node: {:?}",
        env.loaded_profiles().await?.get(profile)
    );
    // The restarted pod runs bound to both, its own operations allowed (it is running).
    let pod = eventually(
        "a bound pod of the Deployment running",
        Duration::from_secs(180),
        || running(true),
    )
    .await?;
    let sc = pod.spec.unwrap().containers[0]
        .security_context
        .clone()
        .unwrap_or_default();
    ensure!(
        sc.seccomp_profile.and_then(|p| p.localhost_profile).as_deref()
            == Some(&format!("palisade/{profile}.json")[..])
            && sc.app_armor_profile.and_then(|p| p.localhost_profile).as_deref() == Some(profile),
        "the pod is not bound to both profiles"
    );

    // The same workload with its probe on: its own operations succeed, a write and a syscall
    // it never made are refused (AppArmor: EACCES; seccomp: EPERM before AppArmor is asked).
    env.kubectl(&["set", "env", &format!("deployment/{name}"), "PROBE=1"])?;
    let message = eventually("the probe's report", Duration::from_secs(240), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
                .await?;
            Ok(list.items.into_iter().find_map(|p| {
                let probing = p.spec.as_ref()?.containers[0]
                    .env
                    .as_ref()?
                    .iter()
                    .any(|e| e.name == "PROBE");
                let c = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
                let t = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.clone())
                    .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.clone()))?;
                probing.then(|| t.message.unwrap_or_default())
            }))
        }
    })
    .await?;
    ensure!(
        message.contains("done"),
        "the workload's own operations under both profiles: {message}"
    );
    ensure!(message.contains("write: denied"), "a write it never made: {message}");
    ensure!(
        message.contains("mkdir: refused") && message.contains("Operation not permitted"),
        "a syscall it never made: {message}"
    );
    let denied = env
        .kernel_log(&[
            "apparmor=\"DENIED\"",
            &format!("profile=\"{profile}\""),
            "/tmp/elsewhere",
        ])
        .await?;
    ensure!(!denied.is_empty(), "the kernel logged no denial of /tmp/elsewhere");

    env.kubectl(&["delete", "deployment", name, "--wait=true", "--timeout=120s"])?;
    env.kubectl(&[
        "delete",
        "profilebinding",
        "-n",
        "default",
        &format!("{name}-apparmor"),
        &format!("{name}-seccomp"),
    ])?;
    eventually("the Deployment's pods gone", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
                .await?;
            Ok(list.items.is_empty().then_some(()))
        }
    })
    .await?;
    env.delete_profile("apparmorprofile", profile).await?;
    env.delete_profile("seccompprofile", profile).await?;
    webhook_via_service(
        env,
        "mutatingwebhookconfiguration",
        "palisade-profile-binding",
        "/mutate-pods",
    )?;
    set_learning(env, false).await?;
    Ok(())
}

type TestFn = for<'a> fn(&'a Env) -> BoxFuture<'a, Result<()>>;

/// Where a test runs: once on the first node, once on each real node (what it proves holds
/// for every node, whatever its kind), or once on the last node (the newest kind, where it
/// means the most).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Once,
    EveryNode,
    LastNode,
}
use Scope::{EveryNode, LastNode, Once};

const TESTS: &[(&str, Scope, TestFn)] = &[
    ("chart_privileges_hold_on_the_node", EveryNode, |e| {
        chart_privileges_hold_on_the_node(e).boxed()
    }),
    ("seccomp_profile_confines_a_pod", EveryNode, |e| {
        seccomp_profile_confines_a_pod(e).boxed()
    }),
    ("seccomp_profile_for_another_architecture", EveryNode, |e| {
        seccomp_profile_for_another_architecture(e).boxed()
    }),
    ("seccomp_syscalls_newer_than_some_nodes", EveryNode, |e| {
        seccomp_syscalls_newer_than_some_nodes(e).boxed()
    }),
    ("seccomp_under_runc_and_crun", LastNode, |e| {
        seccomp_under_runc_and_crun(e).boxed()
    }),
    ("seccomp_example_runs_a_container", Once, |e| {
        seccomp_example_runs_a_container(e).boxed()
    }),
    ("apparmor_raw_enforce_and_complain", EveryNode, |e| {
        apparmor_raw_enforce_and_complain(e).boxed()
    }),
    ("apparmor_4_policy_on_every_kind_of_node", Once, |e| {
        apparmor_4_policy_on_every_kind_of_node(e).boxed()
    }),
    ("apparmor_abstract_via_annotation", Once, |e| {
        apparmor_abstract_via_annotation(e).boxed()
    }),
    ("update_in_place_and_mode_switch", EveryNode, |e| {
        update_in_place_and_mode_switch(e).boxed()
    }),
    ("contradicting_flags_are_refused", Once, |e| {
        contradicting_flags_are_refused(e).boxed()
    }),
    ("hostile_profiles_are_refused", Once, |e| {
        hostile_profiles_are_refused(e).boxed()
    }),
    ("delete_is_held_while_in_use", EveryNode, |e| {
        delete_is_held_while_in_use(e).boxed()
    }),
    ("drift_is_repaired", EveryNode, |e| drift_is_repaired(e).boxed()),
    ("corpus_on_the_real_node", Once, |e| corpus_on_the_real_node(e).boxed()),
    ("pod_guard_on_the_real_node", Once, |e| {
        pod_guard_on_the_real_node(e).boxed()
    }),
    ("agent_restart_and_node_reboot", Once, |e| {
        agent_restart_and_node_reboot(e).boxed()
    }),
    // Last: they turn learning on (the chart's other defaults are checked above).
    ("learn_apparmor_then_enforce", EveryNode, |e| {
        learn_apparmor_then_enforce(e).boxed()
    }),
    ("learn_seccomp_then_enforce", EveryNode, |e| {
        learn_seccomp_then_enforce(e).boxed()
    }),
    ("learn_a_workload_then_enforce", Once, |e| {
        learn_a_workload_then_enforce(e).boxed()
    }),
    // Last: it turns denials on.
    ("denials_are_events_and_palisade_denials_shows_them", Once, |e| {
        denials_are_events_and_palisade_denials_shows_them(e).boxed()
    }),
];

/// Starts a long-running pod that runs `script` under `security`, and waits until it runs.
async fn start_looping(env: &Env, name: &str, security: Value, script: &str) -> Result<(Api<Pod>, Instant)> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
    wait_gone(&pods, name).await?;
    let pod = env.pod(name, security, json!({}), script, "Always");
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await?;
    eventually(&format!("pod {name} running"), Duration::from_secs(180), || async {
        let p = pods.get(name).await?;
        Ok((p.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(()))
    })
    .await?;
    Ok((pods, Instant::now()))
}

/// The denial Events of a pod, once `check` holds for them.
async fn denial_events(
    env: &Env,
    pod: &str,
    what: &str,
    check: impl Fn(&[k8s_openapi::api::core::v1::Event]) -> bool,
) -> Result<Vec<k8s_openapi::api::core::v1::Event>> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(env.client.clone(), "default");
    let check = &check;
    let events = &events;
    eventually(what, Duration::from_secs(120), || async move {
        let mine: Vec<_> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(pod)
                    && matches!(e.reason.as_deref(), Some("AppArmorDenied" | "SeccompDenied"))
            })
            .collect();
        Ok(check(&mine).then_some(mine))
    })
    .await
}

/// What an enforcing profile refuses reaches the admin without a shell on the node: a
/// Warning Event on the pod naming the container, profile and path, an Event on the
/// profile, and `palisade denials`; a seccomp kill is visible the same way; and a pod that
/// makes denials as fast as it can gets a bounded number of Events.
async fn denials_are_events_and_palisade_denials_shows_them(env: &Env) -> Result<()> {
    env.shell()?.exec_ok("sysctl -w kernel.printk_ratelimit=0").await?;
    set_chart_value(env, "denials.enabled=true").await?;
    let aa = "rn-denials";
    env.apply_ready(apparmor_raw(aa, "Enforce", false)).await?;
    // A write the policy has no rule for, from the long-lived shell (a builtin): denied.
    let (pods, running) = start_looping(
        env,
        "rn-denied",
        localhost_apparmor(aa),
        "while true; do echo x > /tmp/denied 2>/dev/null; sleep 1; done",
    )
    .await?;
    let events = denial_events(env, "rn-denied", "an AppArmorDenied Event on the pod", |es| {
        es.iter()
            .any(|e| e.message.as_deref().is_some_and(|m| m.contains("/tmp/denied")))
    })
    .await?;
    let seen_after = running.elapsed();
    let logged = env.kernel_log(&["apparmor=\"DENIED\"", "/tmp/denied"]).await?.len();
    progress(
        env.start,
        &format!("{logged} DENIED record(s) of /tmp/denied in the kernel log"),
    );
    let e = &events[0];
    let msg = e.message.clone().unwrap_or_default();
    ensure!(e.reason.as_deref() == Some("AppArmorDenied"), "{e:?}");
    ensure!(e.type_.as_deref() == Some("Warning"), "{e:?}");
    ensure!(
        msg.starts_with(&format!("container test: AppArmorProfile {aa} denied ")) && msg.contains("/tmp/denied"),
        "{msg}"
    );
    ensure!(e.reporting_instance.as_deref() == Some(env.node()), "{e:?}");
    // Written seconds after the kernel's record (both stamps have second precision).
    let secs = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0.as_second());
    let lag = secs(&e.metadata.creation_timestamp)
        .zip(secs(&e.first_timestamp))
        .map(|(c, f)| c - f)
        .context("the Event's stamps")?;
    ensure!(lag <= 10, "the Event was written {lag} s after the kernel's record");
    ensure!(
        seen_after < Duration::from_secs(60),
        "the Event came {seen_after:?} after the pod started"
    );
    progress(
        env.start,
        &format!("denial Event written {lag} s after the kernel's record: {msg}"),
    );
    let described = env.kubectl(&["describe", "pod", "rn-denied", "-n", "default"])?;
    ensure!(
        described.contains("AppArmorDenied") && described.contains("/tmp/denied"),
        "{described}"
    );
    if let Some(i) = described.find("Events:") {
        println!("$ kubectl describe pod rn-denied\n...\n{}", &described[i..]);
    }
    let table = palisade_cli(env, &["denials", "rn-denied", "-n", "default"])?;
    ensure!(
        table.contains("default/rn-denied")
            && table.contains(&format!("apparmor/{aa}"))
            && table.contains("/tmp/denied"),
        "{table}"
    );
    ensure!(table.contains(env.node()), "{table}");
    println!("{table}");
    let profile_events = env.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &format!("involvedObject.kind=AppArmorProfile,involvedObject.name={aa},reason=AppArmorDenied"),
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    ensure!(
        profile_events.contains(&format!("AppArmorProfile {aa} denied")) && profile_events.contains("in 1 pod on node"),
        "{profile_events}"
    );
    let _ = pods.delete("rn-denied", &DeleteParams::default().grace_period(0)).await;
    wait_gone(&pods, "rn-denied").await?;

    // A seccomp kill: the killed child has exited by the time its record is read, and the
    // record does not say whose filter killed it (a process may set its own): the denial
    // is reported on the node, for no pod and no profile.
    let sc = "rn-denials-kill";
    env.apply_ready(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "SeccompProfile", "metadata": {"name": sc},
        "spec": {"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]},
    }))
    .await?;
    let security = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": format!("palisade/{sc}.json")}});
    let (pods, _) = start_looping(
        env,
        "rn-killed",
        security,
        "while true; do /bin/mkdir /work/d 2>/dev/null; sleep 2; done",
    )
    .await?;
    let node = env.node().to_string();
    let events = denial_events(env, &node, "a SeccompDenied Event on the node", |es| {
        es.iter().any(|e| e.reason.as_deref() == Some("SeccompDenied"))
    })
    .await?;
    let msg = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SeccompDenied"))
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    ensure!(
        msg.starts_with("seccomp: kill_process mkdir (signal 31) on node "),
        "{msg}"
    );
    let table = palisade_cli(env, &["denials"])?;
    ensure!(
        table.contains("seccomp/(unknown)") && table.contains("kill_process mkdir"),
        "{table}"
    );
    println!("{table}");
    let _ = pods.delete("rn-killed", &DeleteParams::default().grace_period(0)).await;
    wait_gone(&pods, "rn-killed").await?;
    // A storm: denials of ever new paths as fast as the shell goes, for 20 seconds.
    let (pods, started) = start_looping(
        env,
        "rn-storm",
        localhost_apparmor(aa),
        "i=0; while true; do i=$((i+1)); echo x > /tmp/s$i 2>/dev/null; done",
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let events = denial_events(env, "rn-storm", "the storm pod's Events", |es| !es.is_empty()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let budget = palisade_domain::denials::WRITE_BURST + elapsed * palisade_domain::denials::WRITES_PER_SEC;
    ensure!(
        (events.len() as f64) <= budget,
        "{} Events for the storm pod in {elapsed:.0} s, over the node's budget of {budget:.0}",
        events.len()
    );
    let denied: i64 = events.iter().map(|e| e.count.unwrap_or(1) as i64).sum();
    // The kernel's ring holds the latest of them: a storm it is.
    let in_ring = env
        .kernel_log(&["apparmor=\"DENIED\"", &format!("profile=\"{aa}\""), "name=\"/tmp/s"])
        .await?
        .len();
    ensure!(in_ring >= 100, "only {in_ring} storm denials in the kernel log");
    progress(
        env.start,
        &format!(
            "storm: {} Events (budget {budget:.0}) counting {denied} denials in {elapsed:.0} s ({in_ring} in the kernel's ring)",
            events.len()
        ),
    );
    let _ = pods.delete("rn-storm", &DeleteParams::default().grace_period(0)).await;
    wait_gone(&pods, "rn-storm").await?;
    let agent_restarts = env.kubectl(&[
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        "app.kubernetes.io/component=agent",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
    ])?;
    ensure!(
        agent_restarts.split_whitespace().all(|n| n == "0"),
        "the agent restarted during the storm: {agent_restarts}"
    );
    Ok(())
}

async fn environment(start: Instant) -> Result<Env> {
    let kubectl = binary_dir()?.join("kubectl");
    let image = std::env::var("PALISADE_E2E_TEST_IMAGE").unwrap_or_else(|_| "busybox:local".into());
    if std::env::var("PALISADE_E2E_EXISTING_CLUSTER").is_ok_and(|v| v == "1") {
        let kubeconfig = PathBuf::from(std::env::var("KUBECONFIG").context("an existing cluster needs KUBECONFIG")?);
        let client = client_from_kubeconfig(&kubeconfig).await?;
        if std::env::var("PALISADE_E2E_SKIP_INSTALL").is_err() {
            let helm = palisade_e2e::helm_binary()?;
            let out = Command::new(helm)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["upgrade", "--install", "palisade"])
                .arg(palisade_e2e::controlplane::repo_root().join("charts/palisade"))
                .args(["--namespace", NAMESPACE, "--create-namespace"])
                .output()?;
            ensure!(
                out.status.success(),
                "helm install: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        wait_workloads(&client, Duration::from_secs(600), || Ok(())).await?;
        // PALISADE_E2E_NODE, or the first node whose kubelet reports Ready.
        let node = match std::env::var("PALISADE_E2E_NODE") {
            Ok(node) => node,
            Err(_) => {
                let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
                nodes
                    .list(&Default::default())
                    .await?
                    .items
                    .into_iter()
                    .find(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    })
                    .and_then(|n| n.metadata.name)
                    .context("the cluster has no Ready node")?
            }
        };
        progress(start, &format!("existing cluster: test pods run on node {node}"));
        return Ok(Env {
            client,
            kubectl,
            kubeconfig,
            nodes: vec![node],
            at: Default::default(),
            runtime: Default::default(),
            cluster: None,
            image,
            start,
        });
    }
    let cluster = RealCluster::start(start).await?;
    Ok(Env {
        client: cluster.cp.client().await?,
        kubectl,
        kubeconfig: cluster.cp.kubeconfig.clone(),
        nodes: cluster.nodes().iter().map(|n| n.name.clone()).collect(),
        at: Default::default(),
        runtime: Default::default(),
        cluster: Some(cluster),
        image,
        start,
    })
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, ..)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, ..) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let start = Instant::now();
        println!("\nrunning {} tests (real node)", selected.len());
        let env = match environment(start).await {
            Ok(env) => env,
            Err(e) => {
                println!("real-node setup failed: {e:#}");
                println!("\ntest result: FAILED. 0 passed; {} failed; 0 ignored", selected.len());
                return ExitCode::FAILURE;
            }
        };
        let (mut passed, mut failed, mut ignored) = (0, 0, 0);
        let mut failures = vec![];
        // (test, node index) in order: a test for every node runs on each before the next test.
        let runs: Vec<(&str, TestFn, usize)> = selected
            .iter()
            .flat_map(|(name, scope, test)| {
                let nodes = match scope {
                    Once => 0..1,
                    EveryNode => 0..env.nodes.len(),
                    LastNode => env.nodes.len() - 1..env.nodes.len(),
                };
                nodes.map(move |at| (*name, *test, at))
            })
            .collect();
        for (name, test, at) in runs {
            env.move_to(at);
            let t0 = Instant::now();
            let name = match env.nodes.len() {
                1 => name.to_string(),
                _ => format!("{name} [{}]", env.node()),
            };
            progress(start, &format!("{name} ..."));
            let outcome = std::panic::AssertUnwindSafe(test(&env)).catch_unwind().await;
            let outcome = outcome.unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(anyhow!("panicked: {msg}"))
            });
            match outcome {
                Ok(()) => {
                    passed += 1;
                    println!("test {name} ... ok ({:.1} s)", t0.elapsed().as_secs_f64());
                }
                Err(e) if e.downcast_ref::<Skip>().is_some() => {
                    ignored += 1;
                    println!("test {name} ... ignored, {e}");
                }
                Err(e) => {
                    failed += 1;
                    println!("test {name} ... FAILED ({:.1} s)", t0.elapsed().as_secs_f64());
                    failures.push((name, format!("{e:#}")));
                }
            }
        }
        if !failures.is_empty() {
            println!("\nfailures:");
            for (name, e) in &failures {
                println!("---- {name} ----\n{e}\n");
            }
            if let Some(c) = &env.cluster {
                for node in c.nodes() {
                    println!("{}", node.log_tails(40));
                }
                c.cp.keep_dir();
                println!("control plane and node state and logs kept in {}", c.cp.dir.display());
            }
        }
        println!(
            "\ntest result: {}. {passed} passed; {failed} failed; {ignored} ignored; finished in {:.1}s",
            if failed == 0 { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
