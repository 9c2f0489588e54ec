#!/usr/bin/env bash
# Renders the Helm chart with its default values into DIR/palisade.yaml, so that
# `kubectl apply -f manifests/` installs what `helm install` does (plus the namespace).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?usage: render-manifests.sh DIR}
helm=$("$here/e2e/scripts/helm-bin.sh")
mkdir -p "$out"
{
  echo "# Palisade, rendered from charts/palisade with its default values by 'make generate'."
  echo "# Install: kubectl apply --server-side -f manifests/   (edit the image registry first)."
  "$helm" template palisade "$here/charts/palisade" --namespace palisade-system \
    --include-crds --set createNamespace=true
} >"$out/palisade.yaml.tmp"
mv "$out/palisade.yaml.tmp" "$out/palisade.yaml"
