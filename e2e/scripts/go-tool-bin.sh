#!/usr/bin/env bash
# Prints the path of a small test tool built from its Go module under e2e/<tool>/:
#   seccomp-oracle  Docker's own seccomp loader (github.com/moby/profiles/seccomp): the OCI
#                   profile Docker makes from a Docker/Podman-format file (corpus tests).
#   argocd-lua      Argo CD's Lua interpreter (github.com/yuin/gopher-lua) running a health
#                   script as Argo CD does (examples/argocd/health.lua tests).
# Versions are pinned by each module's go.mod/go.sum. Built once into
# $PALISADE_CACHE/bin/<tool>-<source hash>/ (default ~/.cache/palisade) and reused.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

tool=${1:?usage: go-tool-bin.sh seccomp-oracle|argocd-lua}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$here/$tool"
[[ -f "$module/go.mod" ]] || { echo "error: no Go module at $module" >&2; exit 1; }

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
key=$(cat "$module/go.mod" "$module/go.sum" "$module"/*.go | sha256sum | cut -c1-16)
out="$cache/bin/$tool-$key"
if [[ -x "$out/$tool" ]]; then
  echo "$out/$tool"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build $tool" >&2; exit 1; }
# Tests run in parallel: one builds, the others wait for it.
mkdir -p "$cache/bin"
exec 9>"$out.lock"
flock 9
if [[ -x "$out/$tool" ]]; then
  echo "$out/$tool"
  exit 0
fi
echo "building $tool into $out (seconds, once)" >&2
mkdir -p "$out.tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
(cd "$module" && go build -trimpath -o "$out.tmp/$tool" .)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/$tool"
