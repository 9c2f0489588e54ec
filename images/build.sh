#!/usr/bin/env bash
# Builds the operator and agent images for linux/amd64 and linux/arm64 without a container
# engine (`make image`):
#   1. the binaries, with cargo (release profile), cross-built for the architecture that is
#      not this machine's (images/cargo-arch.sh);
#   2. for each architecture, a Debian trixie base with apparmor (apparmor_parser 4.1 and the
#      abstractions and tunables it validates against; its ABI files copied to
#      /usr/share/palisade/apparmor-abi, where the agent finds them under the host's
#      /etc/apparmor.d) and libseccomp2, made by mmdebstrap
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

# The base: Debian's apparmor and libseccomp2, nothing else beyond the essential set. Its
# cache key is this recipe (suite, architecture, packages, mmdebstrap's options), so an
# edit elsewhere in this script rebuilds nothing; delete the cache to take newer packages.
base_pkgs=apparmor,libseccomp2
mmdebstrap_opts=(--mode=root --variant=essential --include="$base_pkgs" --format=tar
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/etc/palisade-image-packages"'
  --customize-hook='mkdir -p "$1/usr/share/palisade/apparmor-abi" && cp -a "$1/etc/apparmor.d/abi" "$1/usr/share/palisade/apparmor-abi/"'
  --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*')
base_of() {
  local arch=$1 key base
  key=$(printf '%s\n' trixie "$arch" "${mmdebstrap_opts[@]}" | sha256sum | cut -c1-16)
  base="$cache/base-$arch-$key.tar"
  # Two builds at once (CI and a test run) build the base once: the second waits.
  exec 8>"$base.lock"
  flock 8
  if [[ ! -f "$base" ]]; then
    [[ $(id -u) == 0 ]] || { echo "error: building the image base needs root (mmdebstrap --mode=root)" >&2; exit 1; }
    command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
    echo "==> image base ($arch): Debian trixie + $base_pkgs (mmdebstrap, a minute or two, once)" >&2
    SOURCE_DATE_EPOCH=0 mmdebstrap --architectures="$arch" "${mmdebstrap_opts[@]}" trixie "$base.tmp" >&2
    mv "$base.tmp" "$base"
  fi
  exec 8>&-
  echo "$base"
}

# One build at a time writes target/images (a test run and `make image`, say).
exec 9>"$out/.build.lock"
flock 9
layouts=$(mktemp -d "$out/.layout.XXXXXX")
# On an early exit, a base still being made is stopped, not orphaned.
trap 'kill $(jobs -p) 2>/dev/null || true; wait || true; rm -rf "$layouts"' EXIT
# The bases are mostly downloading and unpacking: made while cargo keeps the cores busy.
declare -A base_job
for arch in "${arches[@]}"; do
  [[ $arch == "$(dpkg --print-architecture)" ]] || e2e/scripts/system-deps.sh --cross "$arch"
  base_of "$arch" >"$layouts/base-$arch" &
  base_job[$arch]=$!
done
declare -A bin_of base_path
for arch in "${arches[@]}"; do
  echo "==> binaries ($arch, cargo build --release)" >&2
  bin_of[$arch]=$(images/cargo-arch.sh "$arch" -p palisade-operator -p palisade-agent)
  wait "${base_job[$arch]}" || { echo "error: the $arch image base was not built" >&2; exit 1; }
  base_path[$arch]=$(cat "$layouts/base-$arch")
done
# The same binaries, bases, names and packer as the last build: its images stand.
inputs=$( (echo "${prefix}:$tag:${arches[*]}"; sha256sum images/pack.py
  for arch in "${arches[@]}"; do
    echo "${base_path[$arch]}"
    sha256sum "${bin_of[$arch]}"/palisade-{operator,agent} | cut -c1-64
  done) | sha256sum | cut -c1-64)
outputs=("$out"/palisade-{operator,agent}.oci.tar)
for arch in "${arches[@]}"; do outputs+=("$out"/palisade-{operator,agent}-"$arch".tar); done
if [[ $(cat "$out/.inputs" 2>/dev/null) == "$inputs" ]] && ls "${outputs[@]}" >/dev/null 2>&1; then
  echo "images unchanged (same binaries and bases) in $out" >&2
  exit 0
fi
rm -f "$out/.inputs"
for arch in "${arches[@]}"; do
  bin=${bin_of[$arch]} base=${base_path[$arch]}
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
echo "$inputs" >"$out/.inputs"
echo "images built in $(( $(date +%s) - start )) s in $out: palisade-{operator,agent}.oci.tar (${arches[*]}) and one tarball per architecture" >&2
