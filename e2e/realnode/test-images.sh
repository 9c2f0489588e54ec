#!/usr/bin/env bash
# Builds the two images every real node needs besides Palisade's, with no registry and no
# container engine, as docker-archive tarballs (images/pack.py):
#   pause.tar    registry.k8s.io/pause:3.10 (the pod sandbox): guest/pause.c, built static
#   busybox.tar  busybox:local: Debian's busybox-static (every applet linked) and /tmp, for
#                test pods and `make up` users, and /bin/forge-audit (guest/forge-audit.c:
#                the learning test's hostile workload)
# Cached in $PALISADE_CACHE/realnode/images-<hash>/; prints that directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
busybox=${BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] && "$busybox" --list >/dev/null 2>&1 || {
  echo "error: $busybox (Debian's busybox-static) is missing: apt-get install busybox-static" >&2
  exit 1
}
key=$(cat "${BASH_SOURCE[0]}" "$here/guest/pause.c" "$here/guest/forge-audit.c" "$root/images/pack.py" "$busybox" | sha256sum | cut -c1-16)
out="${PALISADE_CACHE:-$HOME/.cache/palisade}/realnode/images-$key"
if [[ -f $out/pause.tar && -f $out/busybox.tar ]]; then
  echo "$out"
  exit 0
fi
tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
gcc -static -O2 -o "$tmp/pause" "$here/guest/pause.c"
gcc -static -O2 -o "$tmp/forge-audit" "$here/guest/forge-audit.c"
python3 "$root/images/pack.py" --out "$tmp/pause.tar" --tag registry.k8s.io/pause:3.10 \
  --file "$tmp/pause:/pause:0755" --entrypoint /pause >&2
# busybox: the binary at /bin/busybox and every applet as a link to it.
links=()
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || links+=(--symlink "/bin/$applet:busybox")
done
python3 "$root/images/pack.py" --out "$tmp/busybox.tar" --tag busybox:local \
  --file "$busybox:/bin/busybox:0755" "${links[@]}" --file "$tmp/forge-audit:/bin/forge-audit:0755" \
  --dir /tmp:1777 --entrypoint /bin/sh >&2
rm -f "$tmp/pause" "$tmp/forge-audit"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
