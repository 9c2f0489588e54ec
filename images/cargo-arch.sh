#!/usr/bin/env bash
# Builds release binaries for one Debian architecture and prints the directory they are in:
#   images/cargo-arch.sh ARCH -p palisade-operator -p palisade-agent
# The machine's own architecture is a plain `cargo build --release`. Another is cross-built:
# Rust's standard library for that target (rustup), Debian's cross linker, and that
# architecture's libseccomp from Debian (multiarch), so the binary links against the same
# library soname the image's Debian base carries.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
arch=${1:?images/cargo-arch.sh ARCH [cargo build args]}
shift
case $arch in
  amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
  *) echo "error: no build for the architecture '$arch' (amd64, arm64)" >&2; exit 1 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
# Run from a test (the real-node harness builds the images), the environment holds what
# cargo set for that test; a dependency's build script that reads CARGO_MANIFEST_DIR would
# take it for a change and rebuild everything above it.
for var in $(compgen -e); do
  case $var in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_PRIMARY_PACKAGE | \
      CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$var" ;;
  esac
done
if [[ $arch == "$(dpkg --print-architecture)" ]]; then
  cargo build --release --locked -q "$@" >&2
  echo "$target_dir/release"
  exit 0
fi

"$root/e2e/scripts/system-deps.sh" --cross "$arch"
if ! rustup target list --installed | grep -qx "$triple"; then
  echo "==> rustup target add $triple" >&2
  rustup target add "$triple" >&2
fi
linker_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_LINKER
env "$linker_var=$gnu-gcc" LIBSECCOMP_LIB_PATH="/usr/lib/$gnu" \
  cargo build --release --locked -q --target "$triple" "$@" >&2
echo "$target_dir/$triple/release"
