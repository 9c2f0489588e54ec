//! palisade-e2e: the local control plane (real etcd + kube-apiserver) and end-to-end tests.

pub mod bench;
pub mod certs;
pub mod cluster;
pub mod controlplane;
pub mod process;

pub use cluster::{Cluster, Options, wait_for};
pub use controlplane::ControlPlane;
