#!/usr/bin/env bash
# Builds the two images every real node needs besides Palisade's, with no registry and no
# container engine, as docker-archive tarballs (images/pack.py):
#   pause.tar    registry.k8s.io/pause:3.10 (the pod sandbox): guest/pause.c, built static
#   busybox.tar  busybox:local: Debian's busybox-static (every applet linked) and /tmp, for
#                test pods and `make up` users, /bin/forge-audit (guest/forge-audit.c:
#                the learning test's hostile workload) and /bin/syscall-errno
#                (guest/syscall-errno.c: a syscall by number, for names busybox lacks)
#   test-images.sh [ARCH]  for amd64 (default) or arm64 (cross-compiled; arm64's
#                          busybox-static fetched from Debian and run under qemu-user to list
#                          its applets)
# Cached in $PALISADE_CACHE/realnode/images-<arch>-<hash>/; prints that directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
arch=${1:-amd64}
cc=gcc
busybox=${BUSYBOX:-/bin/busybox}
if [[ $arch != "$(dpkg --print-architecture)" ]]; then
  "$root/e2e/scripts/system-deps.sh" --cross "$arch"
  cc=$(case $arch in amd64) echo x86_64-linux-gnu-gcc ;; arm64) echo aarch64-linux-gnu-gcc ;; esac)
  [[ -n $cc ]] || { echo "error: no test images for the architecture '$arch'" >&2; exit 1; }
  deb_dir="${PALISADE_CACHE:-$HOME/.cache/palisade}/realnode/busybox-$arch"
  if [[ ! -x $deb_dir/bin/busybox ]]; then
    rm -rf "$deb_dir.tmp" && mkdir -p "$deb_dir.tmp"
    (cd "$deb_dir.tmp" && apt-get download -q "busybox-static:$arch" >&2 && dpkg-deb -x busybox-static_*.deb root)
    mkdir -p "$deb_dir/bin" && mv "$deb_dir.tmp/root/bin/busybox" "$deb_dir/bin/busybox"
    rm -rf "$deb_dir.tmp"
  fi
  busybox=$deb_dir/bin/busybox
fi
[[ -x $busybox ]] && "$busybox" --list >/dev/null 2>&1 || {
  echo "error: $busybox (Debian's busybox-static) is missing: apt-get install busybox-static" >&2
  exit 1
}
key=$(cat "${BASH_SOURCE[0]}" "$here/guest/pause.c" "$here/guest/forge-audit.c" "$here/guest/syscall-errno.c" "$root/images/pack.py" "$busybox" | sha256sum | cut -c1-16)
out="${PALISADE_CACHE:-$HOME/.cache/palisade}/realnode/images-$arch-$key"
if [[ -f $out/pause.tar && -f $out/busybox.tar ]]; then
  echo "$out"
  exit 0
fi
tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
"$cc" -static -O2 -o "$tmp/pause" "$here/guest/pause.c"
"$cc" -static -O2 -o "$tmp/forge-audit" "$here/guest/forge-audit.c"
"$cc" -static -O2 -o "$tmp/syscall-errno" "$here/guest/syscall-errno.c"
python3 "$root/images/pack.py" --out "$tmp/pause.tar" --tag registry.k8s.io/pause:3.10 --arch "$arch" \
  --file "$tmp/pause:/pause:0755" --entrypoint /pause >&2
# busybox: the binary at /bin/busybox and every applet as a link to it.
links=()
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || links+=(--symlink "/bin/$applet:busybox")
done
python3 "$root/images/pack.py" --out "$tmp/busybox.tar" --tag busybox:local --arch "$arch" \
  --file "$busybox:/bin/busybox:0755" "${links[@]}" --file "$tmp/forge-audit:/bin/forge-audit:0755" \
  --file "$tmp/syscall-errno:/bin/syscall-errno:0755" \
  --dir /tmp:1777 --entrypoint /bin/sh >&2
rm -f "$tmp/pause" "$tmp/forge-audit" "$tmp/syscall-errno"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
