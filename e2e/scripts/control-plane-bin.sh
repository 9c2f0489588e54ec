#!/usr/bin/env bash
# Prints the directory holding etcd, kube-apiserver, kubectl and kube-controller-manager
# for the local control plane, building them first when needed.
#
# `control-plane-bin.sh --real-node` also builds what the real-node cluster needs beside
# them (e2e/realnode): kube-scheduler (host), kubelet and kube-proxy (guest), from the same
# module. `--real-node arm64` builds the guest's two for linux/arm64 too, into
# linux-arm64/ below that directory (an arm64 real node). Only the binaries that are missing
# are built.
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

cmds=(etcd kube-apiserver kubectl kube-controller-manager)
[[ "${1:-}" == --real-node ]] && cmds+=(kube-scheduler kubelet kube-proxy)
case "${2:-}" in
  "" | amd64) ;;
  arm64) cmds+=(linux-arm64/kubelet linux-arm64/kube-proxy) ;;
  *) echo "error: no real node for the architecture '$2' (amd64, arm64)" >&2; exit 1 ;;
esac

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  have=1
  for cmd in "${cmds[@]}"; do
    [[ $cmd == kubectl || -x "$KUBEBUILDER_ASSETS/$cmd" ]] || have=0
  done
  if ((have)); then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of ${cmds[*]}; building instead" >&2
fi

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
# The module's go.mod/go.sum and sources decide the build: a change there builds anew.
key=$(cat "$module/go.mod" "$module/go.sum" "$module"/*/main.go | sha256sum | cut -c1-16)
out="$cache/bin/$key"
missing=()
for cmd in "${cmds[@]}"; do [[ -x "$out/$cmd" ]] || missing+=("$cmd"); done
if ((${#missing[@]} == 0)); then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build etcd and kube-apiserver (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
# Each missing binary is built into a directory of this run's own and renamed into place:
# binaries built earlier stay where they are (another run may be using them), and a
# failed or interrupted build leaves no half-written one.
tmp="$out.tmp$$"
rm -rf "$tmp"
mkdir -p "$tmp" "$out"
trap 'rm -rf "$tmp"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1/ {print $2; exit}' "$module/go.mod")
echo "building ${missing[*]} (Kubernetes $k8s) into $out" >&2
echo "this takes several minutes on 2 cores, once; later runs reuse it" >&2
# Stamp the release so /version and `kubectl version` tell the truth.
ver="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
ver="$ver -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
start=$(date +%s)
for cmd in "${missing[@]}"; do
  echo "  go build $cmd ..." >&2
  platform=()
  if [[ $cmd == */* ]]; then # linux-ARCH/NAME: cross-built (CGO is off)
    goarch=${cmd%%/*}
    platform=(GOOS=linux "GOARCH=${goarch#linux-}")
  fi
  (cd "$module" && env "${platform[@]}" go build -trimpath -ldflags="-s -w $ver" -o "$tmp/$cmd" "./${cmd##*/}")
  mkdir -p "$(dirname "$out/$cmd")"
  mv "$tmp/$cmd" "$out/$cmd"
  echo "  $cmd built ($(( $(date +%s) - start )) s so far)" >&2
done
echo "$out"
