#!/usr/bin/env bash
# Builds a real-node guest: Debian with Debian's kernel (AppArmor the active LSM), systemd,
# containerd with runc and crun, the CNI plugins, iptables (kube-proxy) and busybox-static (the test
# images). Everything node-specific (certificates, kubelet, images) arrives at boot from the
# 9p share, so this image depends only on this script, guest/containerd.toml and its argument,
# and is built once, into
#   $PALISADE_CACHE/realnode/guest-<kind>-<hash of those>/  {vmlinuz, initrd, disk.img, packages.txt}
# and reused. Prints that directory on stdout; progress goes to stderr.
#
#   build-guest.sh [KIND]   KIND: a Debian suite, `-arm64` after it for an arm64 guest
#                           (default bookworm, amd64). An arm64 guest is built here through
#                           qemu-user (its package scripts) and runs under qemu-system-aarch64.
#
# Needs root, mmdebstrap and e2fsprogs, and Debian's package archive (mmdebstrap's default
# mirror for the suite). Package versions are whatever the suite serves on the day: they are
# recorded in packages.txt, and the harness prints the kernel, containerd and runc versions.
set -euo pipefail

script=$(readlink -f "${BASH_SOURCE[0]}")
kind=${1:-bookworm}
suite=${kind%-arm64}
arch=amd64 console=ttyS0
[[ $kind == *-arm64 ]] && arch=arm64 console=ttyAMA0
[[ $suite =~ ^[a-z]+$ ]] || { echo "error: '$kind' is not a Debian suite (e.g. bookworm, bookworm-arm64)" >&2; exit 1; }
cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
# containerd's configuration is baked in (the same file boot.sh installs from the share), so
# the first boot does not restart containerd: it is part of the key.
containerd_toml="$(dirname "$script")/guest/containerd.toml"
key=$( (cat "$script" "$containerd_toml"; echo "$kind") | sha256sum | cut -c1-16)
out="$cache/realnode/guest-$kind-$key"
if [[ -f "$out/disk.img" && -f "$out/vmlinuz" && -f "$out/initrd" ]]; then
  echo "$out"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "error: building the guest image needs root (mmdebstrap --mode=root)" >&2; exit 1; }
for tool in mmdebstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool is missing: apt-get install mmdebstrap e2fsprogs" >&2
    exit 1
  }
done
[[ $arch == "$(dpkg --print-architecture)" ]] || "$(dirname "$script")/../scripts/system-deps.sh" --cross "$arch"

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$(date +%s)
echo "building the real-node guest image (Debian $suite, $arch) into $out: about 2-4 minutes for amd64, 15-35 for arm64 (its package scripts run under qemu-user), once" >&2

pkgs=(
  systemd-sysv udev kmod iproute2 procps util-linux mount e2fsprogs ca-certificates
  linux-image-$arch apparmor
  containerd runc crun containernetworking-plugins iptables conntrack
  busybox-static
)
# The boot hook: mount the share and run its boot.sh (the harness's, e2e/realnode/guest/),
# on every boot, so nothing node-specific is baked into the image.
unit='[Unit]
Description=Palisade real node: run /mnt/share/boot.sh from the host
After=local-fs.target network-online.target containerd.service apparmor.service
Wants=network-online.target containerd.service
RequiresMountsFor=/mnt/share
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /mnt/share/boot.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target'

# Check-Valid-Until off: unstable's and testing's Release files expire within a week, so a
# mirror or snapshot of the archive a few days old would refuse them; the signatures are still
# checked.
mmdebstrap --mode=root --variant=minbase --architectures="$arch" --aptopt='Acquire::Check-Valid-Until "false"' --include="$(IFS=,; echo "${pkgs[*]}")" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='echo realnode > "$1/etc/hostname"' \
  --customize-hook='printf "127.0.0.1 localhost\n" > "$1/etc/hosts"' \
  --customize-hook='printf "/dev/vda / ext4 rw,relatime 0 1\nshare /mnt/share 9p trans=virtio,version=9p2000.L,msize=524288,nofail,x-systemd.device-timeout=10s 0 0\n" > "$1/etc/fstab"' \
  --customize-hook='mkdir -p "$1/mnt/share"' \
  --customize-hook='mkdir -p "$1/etc/systemd/network" && printf "[Match]\nName=eth0\n[Network]\nDHCP=ipv4\n" > "$1/etc/systemd/network/10-eth0.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd' \
  --customize-hook="printf '%s\n' '$unit' > \"\$1/etc/systemd/system/palisade-node.service\"" \
  --customize-hook='chroot "$1" systemctl enable palisade-node.service' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer getty@tty1.service serial-getty@'"$console"'.service' \
  --customize-hook="mkdir -p \"\$1/etc/containerd\" && cp '$containerd_toml' \"\$1/etc/containerd/config.toml\"" \
  --customize-hook='printf "overlay\nbr_netfilter\n" > "$1/etc/modules-load.d/k8s.conf"' \
  --customize-hook='printf "net.ipv4.ip_forward=1\nnet.bridge.bridge-nf-call-iptables=1\n" > "$1/etc/sysctl.d/99-k8s.conf"' \
  --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/.packages.txt"' \
  "$suite" "$tmp/rootfs" >&2
echo "  mmdebstrap: $(( $(date +%s) - start )) s" >&2

mv "$tmp/rootfs/.packages.txt" "$tmp/packages.txt"
cp -L "$tmp"/rootfs/boot/vmlinuz-* "$tmp/vmlinuz"
cp -L "$tmp"/rootfs/boot/initrd.img-* "$tmp/initrd"
truncate -s 8G "$tmp/disk.img"
mkfs.ext4 -q -F -L realnode -d "$tmp/rootfs" "$tmp/disk.img"
rm -rf "$tmp/rootfs"
rm -rf "$out"
mv "$tmp" "$out"
echo "  guest image ready in $(( $(date +%s) - start )) s: kernel $(awk '$1 ~ /^linux-image-[0-9]/ {print $1, $2}' "$out/packages.txt")" >&2
echo "$out"
