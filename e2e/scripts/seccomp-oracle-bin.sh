#!/usr/bin/env bash
# Prints the path of seccomp-oracle: Docker's own seccomp loader (the Go module
# github.com/moby/profiles/seccomp, version pinned in e2e/seccomp-oracle/go.mod) in a tiny
# command that prints the OCI profile Docker makes from a Docker/Podman-format file. The
# corpus tests compare `palisade convert` with it.
#
# SECCOMP_ORACLE, if set to an executable, is used as it is. Otherwise it is built once into
# $PALISADE_CACHE/bin/seccomp-oracle-<source hash>/ (default ~/.cache/palisade) and reused.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$here/seccomp-oracle"

if [[ -n "${SECCOMP_ORACLE:-}" && -x "${SECCOMP_ORACLE}" ]]; then
  echo "$SECCOMP_ORACLE"
  exit 0
fi

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
key=$(cat "$module/go.mod" "$module/go.sum" "$module/main.go" | sha256sum | cut -c1-16)
out="$cache/bin/seccomp-oracle-$key"
if [[ -x "$out/seccomp-oracle" ]]; then
  echo "$out/seccomp-oracle"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build seccomp-oracle (or set SECCOMP_ORACLE)" >&2; exit 1; }
echo "building seccomp-oracle into $out (seconds, once)" >&2
mkdir -p "$out.tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
(cd "$module" && go build -trimpath -o "$out.tmp/seccomp-oracle" .)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/seccomp-oracle"
