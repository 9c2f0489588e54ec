#!/bin/sh
# Runs in the real-node guest at every boot (palisade-node.service, from the 9p share the
# harness prepares, e2e/src/realnode.rs): starts the control channel, installs the node's
# identity and configuration, imports the images, then starts kube-proxy and the kubelet.
# Logs: /mnt/share/out/{boot,kubelet,kube-proxy}.log (the host keeps them for failures).
set -eu
S=/mnt/share
O=$S/out
mkdir -p "$O"
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$(up)] $*" | tee -a "$O/boot.log"; }
. "$S/node.env"
log "boot.sh: node $NODE_NAME, kernel $(uname -r), lsm $(cat /sys/kernel/security/lsm)"

# The host's way in for what a test needs a node shell for (unloading a profile, reading the
# kernel log): a line-based command channel on a virtio-serial port only the host's harness
# can open (a unix socket in its private directory). Nothing listens on the network.
systemd-run --quiet --unit=palisade-ctl --property=Restart=always --property=RestartSec=1 \
  --property=StartLimitIntervalSec=0 /bin/bash "$S/ctl.sh"

mkdir -p /etc/kubernetes/pki /etc/cni/net.d /var/lib/kubelet /usr/local/bin /var/lib/palisade-node
cp "$S/config/ca.crt" "$S/config/kubelet.crt" "$S/config/kubelet.key" \
  "$S/config/kube-proxy.crt" "$S/config/kube-proxy.key" /etc/kubernetes/pki/
chmod 600 /etc/kubernetes/pki/*.key
cp "$S/config/kubelet.kubeconfig" "$S/config/kube-proxy.kubeconfig" "$S/config/kubelet.yaml" /etc/kubernetes/
cp "$S/config/10-bridge.conflist" /etc/cni/net.d/
# A file on the share is known by its size and modification time: reading it whole (a
# compare, a checksum) at every boot costs a minute under emulation. A new build on the host
# is a new file, so a new stamp; what a stamp names was installed or imported once.
stamp() { stat -c '%s-%Y' "$1"; }
for b in kubelet kube-proxy; do
  mark=/var/lib/palisade-node/installed-$b-$(stamp "$S/bin/$b")
  [ -e "$mark" ] && [ -x "/usr/local/bin/$b" ] && continue
  install -m 0755 "$S/bin/$b" "/usr/local/bin/$b"
  rm -f /var/lib/palisade-node/installed-"$b"-*
  touch "$mark"
done
if ! cmp -s "$S/config/containerd.toml" /etc/containerd/config.toml; then
  cp "$S/config/containerd.toml" /etc/containerd/config.toml
  systemctl restart containerd
fi
log "config installed"

# Images: built on the host (pause, busybox:local, Palisade's agent, and its operator on the
# node that runs it), imported once per file (its stamp); a reboot keeps them.
for t in "$S"/images/*.tar; do
  mark=/var/lib/palisade-node/imported-$(basename "$t")-$(stamp "$t")
  [ -e "$mark" ] && continue
  ctr -n k8s.io images import "$t" >> "$O/boot.log" 2>&1
  touch "$mark"
  log "imported $(basename "$t")"
done

systemd-run --quiet --unit=kube-proxy --property=Restart=always --property=RestartSec=2 \
  --property=StandardOutput=append:"$O/kube-proxy.log" --property=StandardError=append:"$O/kube-proxy.log" \
  /usr/local/bin/kube-proxy --kubeconfig=/etc/kubernetes/kube-proxy.kubeconfig \
  --hostname-override="$NODE_NAME" --cluster-cidr="$POD_CIDR" --proxy-mode=iptables \
  --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 --v=1
systemd-run --quiet --unit=kubelet --property=Restart=always --property=RestartSec=2 \
  --property=StandardOutput=append:"$O/kubelet.log" --property=StandardError=append:"$O/kubelet.log" \
  /usr/local/bin/kubelet --config=/etc/kubernetes/kubelet.yaml \
  --kubeconfig=/etc/kubernetes/kubelet.kubeconfig --hostname-override="$NODE_NAME" \
  --node-ip="$NODE_IP" --v=1
log "kube-proxy and kubelet started"
