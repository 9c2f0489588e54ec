#!/usr/bin/env bash
# Installs the Debian packages Palisade's builds and tests need, when missing:
#   system-deps.sh         what `make demo` needs (libseccomp to link, apparmor_parser)
#   system-deps.sh --test  also what `make test` needs (QEMU, mmdebstrap, socat,
#                          busybox-static for the real node; the arm64 cross build below)
#   system-deps.sh --cross ARCH
#                          what building for another Debian architecture needs: its cross
#                          linker and libseccomp (multiarch), qemu-user with binfmt_misc so
#                          that its packages' scripts and binaries run here
# As root it runs apt-get itself; otherwise it prints the exact command and fails.
set -euo pipefail

need=()
native=$(dpkg --print-architecture)
# A package installed for two architectures answers only to its qualified name.
pkg() { dpkg -s "$1" >/dev/null 2>&1 || dpkg -s "$1:$native" >/dev/null 2>&1 || need+=("$1"); }
foreign=""
qemu_name=""
cross() {
  local arch=$1 gcc
  # Debian's names: the cross compiler's package, and the qemu-user binfmt entry.
  case $arch in
    amd64) gcc=gcc-x86-64-linux-gnu qemu_name=x86_64 ;;
    arm64) gcc=gcc-aarch64-linux-gnu qemu_name=aarch64 ;;
    *) echo "error: no cross build for the architecture '$arch' (amd64, arm64)" >&2; exit 1 ;;
  esac
  [[ $arch == "$native" ]] && return
  foreign=$arch
  pkg "$gcc"
  pkg "libc6-dev-$arch-cross"
  pkg "libseccomp-dev:$arch"
  pkg qemu-user-static
  pkg binfmt-support
  pkg arch-test # mmdebstrap checks a foreign architecture can run with it
}
pkg libseccomp-dev
pkg pkg-config
pkg apparmor
pkg make
pkg gcc
pkg libc6-dev
if [[ "${1:-}" == --test ]]; then
  pkg qemu-system-x86
  pkg mmdebstrap
  pkg socat
  pkg e2fsprogs
  pkg busybox-static
  pkg skopeo
  pkg python3
  cross arm64
fi
[[ "${1:-}" == --cross || "${1:-}" == --node ]] && cross "${2:?system-deps.sh $1 ARCH}"
if [[ "${1:-}" == --node ]]; then
  case $2 in
    amd64) pkg qemu-system-x86 ;;
    arm64) pkg qemu-system-arm ;;
  esac
fi

# Foreign binaries (a base image's package scripts, a test of the cross-built binary) run
# under qemu-user through binfmt_misc, which a fresh container may not have mounted.
binfmt() {
  [[ -n $foreign ]] || return 0
  local qarch=$qemu_name
  [[ $(cat "/proc/sys/fs/binfmt_misc/qemu-$qarch" 2>/dev/null | head -1) == enabled ]] && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "running $foreign binaries needs qemu-$qarch registered in binfmt_misc; as root:" >&2
    echo "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-$qarch" >&2
    exit 1
  fi
  [[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable "qemu-$qarch" >&2 || update-binfmts --import "qemu-$qarch" >&2
  [[ $(head -1 "/proc/sys/fs/binfmt_misc/qemu-$qarch") == enabled ]] ||
    { echo "error: qemu-$qarch could not be registered in binfmt_misc" >&2; exit 1; }
}
((${#need[@]})) || { binfmt; exit 0; }

if [[ $(id -u) != 0 ]]; then
  echo "missing Debian packages; install them with:" >&2
  echo "  ${foreign:+sudo dpkg --add-architecture $foreign && }sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
[[ -z $foreign ]] || dpkg --add-architecture "$foreign"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
binfmt
