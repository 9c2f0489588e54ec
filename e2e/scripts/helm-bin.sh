#!/usr/bin/env bash
# Prints the path of the helm binary `make chart-check` and `make generate` use.
#
# 1. HELM, if set to an executable, is used as it is.
# 2. Otherwise helm is built from its Go module, at the version e2e/helm/go.mod pins, into
#    $PALISADE_CACHE/bin/helm-<module hash>/ (default ~/.cache/palisade), once, and reused.
#    A helm found on PATH is not used: its version would decide what `make generate` writes.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$here/helm"

if [[ -n "${HELM:-}" && -x "${HELM}" ]]; then
  echo "$HELM"
  exit 0
fi

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
key=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-16)
out="$cache/bin/helm-$key"
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build helm (or set HELM)" >&2; exit 1; }
version=$(awk '$1 == "helm.sh/helm/v4" {print $2; exit}' "$module/go.mod")
echo "building helm $version into $out (about 2 minutes on 2 cores, once)" >&2
mkdir -p "$out.tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
(cd "$module" && go build -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  -o "$out.tmp/helm" helm.sh/helm/v4/cmd/helm)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/helm"
