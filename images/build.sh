#!/usr/bin/env bash
# Builds the operator and agent images without a container engine (`make image`):
#   1. the binaries, with cargo (release profile);
#   2. a Debian trixie base with apparmor (apparmor_parser 4.1 and the abstractions and
#      tunables it validates against) and libseccomp2, made by mmdebstrap from Debian's
#      packages, built once and cached in $PALISADE_CACHE/images/ (default ~/.cache/palisade);
#   3. one image per component: that base plus a layer with the binary, written as a
#      docker-archive tarball by images/pack.py.
# Output: target/images/palisade-{operator,agent}.tar, named
#   ${IMAGE_REGISTRY:+$IMAGE_REGISTRY/}palisade-{operator,agent}:$IMAGE_TAG
# Load them with `docker load -i`, `podman load -i` or `ctr -n k8s.io images import`, or push
# them with `skopeo copy docker-archive:target/images/palisade-agent.tar docker://REGISTRY/...`.
# Needs root (mmdebstrap --mode=root), mmdebstrap and python3.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tag=${IMAGE_TAG:-$(awk -F'"' '/^appVersion:/ {print $2}' charts/palisade/Chart.yaml)}
prefix=${IMAGE_REGISTRY:+${IMAGE_REGISTRY%/}/}
out=${IMAGE_OUT:-$root/target/images}
cache="${PALISADE_CACHE:-$HOME/.cache/palisade}/images"
mkdir -p "$out" "$cache"
start=$(date +%s)

echo "==> binaries (cargo build --release)" >&2
cargo build --release --locked -q -p palisade-operator -p palisade-agent >&2

# The base: Debian's apparmor and libseccomp2, nothing else beyond the essential set.
base_pkgs=apparmor,libseccomp2
key=$( (cat "${BASH_SOURCE[0]}"; echo "trixie $base_pkgs") | sha256sum | cut -c1-16)
base="$cache/base-$key.tar"
# Two builds at once (CI and a test run) build the base once: the second waits.
mkdir -p "$cache"
exec 8>"$base.lock"
flock 8
if [[ ! -f "$base" ]]; then
  [[ $(id -u) == 0 ]] || { echo "error: building the image base needs root (mmdebstrap --mode=root)" >&2; exit 1; }
  command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
  echo "==> image base: Debian trixie + $base_pkgs (mmdebstrap, about a minute, once)" >&2
  SOURCE_DATE_EPOCH=0 mmdebstrap --mode=root --variant=essential --include="$base_pkgs" --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/etc/palisade-image-packages"' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    trixie "$base.tmp" >&2
  mv "$base.tmp" "$base"
fi

for component in operator agent; do
  user=""
  [[ $component == operator ]] && user=65532:65532 # the agent runs as root with only MAC_ADMIN (the chart)
  python3 images/pack.py --out "$out/palisade-$component.tar" --tag "${prefix}palisade-$component:$tag" \
    --layer "$base" --file "target/release/palisade-$component:/usr/local/bin/palisade-$component:0755" \
    --entrypoint "/usr/local/bin/palisade-$component" ${user:+--user "$user"} >&2
done
echo "images built in $(( $(date +%s) - start )) s: $out/palisade-operator.tar, $out/palisade-agent.tar" >&2
