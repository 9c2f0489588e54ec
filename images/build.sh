#!/usr/bin/env bash
# Builds the operator and agent images for linux/amd64 and linux/arm64 without a container
# engine (`make image`):
#   1. the binaries, with cargo (release profile), cross-built for the architecture that is
#      not this machine's (images/cargo-arch.sh);
#   2. for each architecture, a Debian trixie base with apparmor (apparmor_parser 4.1 and the
#      abstractions and tunables it validates against) and libseccomp2, made by mmdebstrap
#      from Debian's packages (a foreign architecture's package scripts run under
#      qemu-user), built once and cached in $PALISADE_CACHE/images/ (default ~/.cache/palisade);
#   3. one image per component and architecture: that base plus a layer with the binary
#      (images/pack.py).
# Output, in target/images/, each named ${IMAGE_REGISTRY:+$IMAGE_REGISTRY/}palisade-COMPONENT:$IMAGE_TAG:
#   palisade-{operator,agent}.oci.tar        one OCI image index over both architectures:
#       skopeo copy --all oci-archive:target/images/palisade-agent.oci.tar docker://REGISTRY/palisade-agent:TAG
#   palisade-{operator,agent}-{amd64,arm64}.tar  one architecture each, as docker-archive:
#       docker load -i / podman load -i / ctr -n k8s.io images import
# IMAGE_ARCHES="amd64" (or "arm64") builds fewer. Needs root (mmdebstrap --mode=root),
# mmdebstrap and python3; e2e/scripts/system-deps.sh --test installs what it needs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tag=${IMAGE_TAG:-$(awk -F'"' '/^appVersion:/ {print $2}' charts/palisade/Chart.yaml)}
prefix=${IMAGE_REGISTRY:+${IMAGE_REGISTRY%/}/}
out=${IMAGE_OUT:-$root/target/images}
cache="${PALISADE_CACHE:-$HOME/.cache/palisade}/images"
arches=(${IMAGE_ARCHES:-amd64 arm64})
mkdir -p "$out" "$cache"
start=$(date +%s)

# The base: Debian's apparmor and libseccomp2, nothing else beyond the essential set.
base_pkgs=apparmor,libseccomp2
base_of() {
  local arch=$1 key base
  key=$( (cat "${BASH_SOURCE[0]}"; echo "trixie $arch $base_pkgs") | sha256sum | cut -c1-16)
  base="$cache/base-$arch-$key.tar"
  # Two builds at once (CI and a test run) build the base once: the second waits.
  exec 8>"$base.lock"
  flock 8
  if [[ ! -f "$base" ]]; then
    [[ $(id -u) == 0 ]] || { echo "error: building the image base needs root (mmdebstrap --mode=root)" >&2; exit 1; }
    command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
    echo "==> image base ($arch): Debian trixie + $base_pkgs (mmdebstrap, a minute or two, once)" >&2
    SOURCE_DATE_EPOCH=0 mmdebstrap --mode=root --variant=essential --architectures="$arch" \
      --include="$base_pkgs" --format=tar \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/etc/palisade-image-packages"' \
      --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
      trixie "$base.tmp" >&2
    mv "$base.tmp" "$base"
  fi
  exec 8>&-
  echo "$base"
}

layouts=$(mktemp -d "$out/.layout.XXXXXX")
trap 'rm -rf "$layouts"' EXIT
# The bases are mostly downloading and unpacking: made while cargo keeps the cores busy.
declare -A base_job
for arch in "${arches[@]}"; do
  [[ $arch == "$(dpkg --print-architecture)" ]] || e2e/scripts/system-deps.sh --cross "$arch"
  base_of "$arch" >"$layouts/base-$arch" &
  base_job[$arch]=$!
done
for arch in "${arches[@]}"; do
  echo "==> binaries ($arch, cargo build --release)" >&2
  bin=$(images/cargo-arch.sh "$arch" -p palisade-operator -p palisade-agent)
  wait "${base_job[$arch]}" || { echo "error: the $arch image base was not built" >&2; exit 1; }
  base=$(cat "$layouts/base-$arch")
  for component in operator agent; do
    user=""
    [[ $component == operator ]] && user=65532:65532 # the agent runs as root with only MAC_ADMIN (the chart)
    python3 images/pack.py --out "$out/palisade-$component-$arch.tar" --tag "${prefix}palisade-$component:$tag" \
      --arch "$arch" --oci-layout "$layouts/$component" \
      --layer "$base" --file "$bin/palisade-$component:/usr/local/bin/palisade-$component:0755" \
      --entrypoint "/usr/local/bin/palisade-$component" ${user:+--user "$user"} >&2
  done
done
for component in operator agent; do
  python3 images/pack.py --index "$layouts/$component" --tag "${prefix}palisade-$component:$tag" \
    --out "$out/palisade-$component.oci.tar" >&2
done
echo "images built in $(( $(date +%s) - start )) s in $out: palisade-{operator,agent}.oci.tar (${arches[*]}) and one tarball per architecture" >&2
