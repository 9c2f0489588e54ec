//! palisade-e2e: the local control plane (real etcd + kube-apiserver) and end-to-end tests.

pub mod audit;
pub mod bench;
pub mod certs;
pub mod cluster;
pub mod controlplane;
pub mod corpus;
pub mod process;
pub mod realnode;
pub mod simnode;
pub mod storm;

pub use cluster::{Cluster, Options, node_standing, wait_for};
pub use controlplane::ControlPlane;

/// The helm binary: `HELM` if set, else the one e2e/scripts/helm-bin.sh builds (once) from
/// the version e2e/helm/go.mod pins.
pub fn helm_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(h) = std::env::var("HELM") {
        return Ok(h.into());
    }
    let script = controlplane::repo_root().join("e2e/scripts/helm-bin.sh");
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        anyhow::bail!("{} failed", script.display());
    }
    Ok(String::from_utf8(out.stdout)?.trim().into())
}

/// A test tool built from its Go module under e2e/<tool>/ by e2e/scripts/go-tool-bin.sh
/// (once, cached): `seccomp-oracle` (Docker's seccomp loader) or `argocd-lua` (Argo CD's
/// Lua interpreter).
pub fn go_tool(tool: &str) -> anyhow::Result<std::path::PathBuf> {
    let script = controlplane::repo_root().join("e2e/scripts/go-tool-bin.sh");
    let out = std::process::Command::new(&script)
        .arg(tool)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        anyhow::bail!("{} {tool} failed", script.display());
    }
    Ok(String::from_utf8(out.stdout)?.trim().into())
}
