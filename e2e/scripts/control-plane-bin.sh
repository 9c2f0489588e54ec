#!/usr/bin/env bash
# Prints the directory holding etcd, kube-apiserver, kubectl and kube-controller-manager
# for the local control plane, building them first when needed.
#
# 1. If KUBEBUILDER_ASSETS names a directory with etcd, kube-apiserver and
#    kube-controller-manager (the envtest convention, e.g. from setup-envtest, plus the
#    controller manager, which envtest does not ship), that directory is used as it is.
# 2. Otherwise the binaries are built from their Go modules (e2e/controlplane) into
#    $PALISADE_CACHE/bin/<module hash>/ (default ~/.cache/palisade), once, and reused.
# Progress goes to stderr; stdout is only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$here/controlplane"

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -x "$KUBEBUILDER_ASSETS/etcd" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/kube-controller-manager" ]]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks etcd, kube-apiserver or kube-controller-manager; building instead" >&2
fi

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
# The module's go.mod/go.sum and sources decide the build: a change there builds anew.
key=$(cat "$module/go.mod" "$module/go.sum" "$module"/*/main.go | sha256sum | cut -c1-16)
out="$cache/bin/$key"
if [[ -x "$out/etcd" && -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/kube-controller-manager" ]]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build etcd and kube-apiserver (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
mkdir -p "$out.tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1/ {print $2; exit}' "$module/go.mod")
echo "building etcd, kube-apiserver, kubectl and kube-controller-manager (Kubernetes $k8s) into $out" >&2
echo "this takes several minutes on 2 cores, once; later runs reuse it" >&2
# Stamp the release so /version and `kubectl version` tell the truth.
ver="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
ver="$ver -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
start=$(date +%s)
for cmd in etcd kube-apiserver kubectl kube-controller-manager; do
  echo "  go build $cmd ..." >&2
  (cd "$module" && go build -trimpath -ldflags="-s -w $ver" -o "$out.tmp/$cmd" "./$cmd")
  echo "  $cmd built ($(( $(date +%s) - start )) s so far)" >&2
done
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
