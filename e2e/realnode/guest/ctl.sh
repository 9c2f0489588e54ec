#!/bin/bash
# The real node's command channel (see boot.sh). Each request is one line,
# "<id> <base64 of a shell command>"; each reply one line, "<id> <exit code> <base64 of its
# combined output>". Commands run one at a time, as root, with a 300 s limit.
# While the host end is not connected, reads on the port return end-of-file at once: wait
# and open it again.
port=/dev/virtio-ports/palisade.ctl
while :; do
  if [ -e "$port" ] && exec 3<>"$port"; then
    while IFS=' ' read -r id cmd <&3; do
      [ -n "$id" ] || continue
      out=$(printf '%s' "$cmd" | base64 -d | timeout 300 /bin/sh 2>&1)
      rc=$?
      printf '%s %s %s\n' "$id" "$rc" "$(printf '%s' "$out" | base64 -w0)" >&3
    done
    exec 3>&-
  fi
  sleep 0.5
done
