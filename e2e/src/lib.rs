//! palisade-e2e: the local control plane (real etcd + kube-apiserver) and end-to-end tests.
