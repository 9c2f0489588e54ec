#!/usr/bin/env bash
# Installs the Debian packages Palisade's builds and tests need, when missing:
#   system-deps.sh         what `make demo` needs (libseccomp to link, apparmor_parser)
#   system-deps.sh --test  also what `make test` needs (QEMU, mmdebstrap, socat,
#                          busybox-static for the real node)
# As root it runs apt-get itself; otherwise it prints the exact command and fails.
set -euo pipefail

need=()
pkg() { dpkg -s "$1" >/dev/null 2>&1 || need+=("$1"); }
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
fi
((${#need[@]})) || exit 0

if [[ $(id -u) != 0 ]]; then
  echo "missing Debian packages; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
