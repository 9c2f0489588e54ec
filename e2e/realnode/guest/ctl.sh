#!/bin/bash
# The real node's command channel (see boot.sh). Each request is one line,
# "<id> <base64 of a shell command>"; each reply one line, "<id> <exit code> <base64 of its
# combined output>". Commands run one at a time, as root, with a 300 s limit.
port=/dev/virtio-ports/palisade.ctl
exec 3<>"$port"
while IFS=' ' read -r id cmd <&3; do
  [ -n "$id" ] || continue
  out=$(printf '%s' "$cmd" | base64 -d | timeout 300 /bin/sh 2>&1)
  rc=$?
  printf '%s %s %s\n' "$id" "$rc" "$(printf '%s' "$out" | base64 -w0)" >&3
done
