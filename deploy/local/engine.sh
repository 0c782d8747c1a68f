#!/usr/bin/env bash
# A Docker engine for `make images`: the one running, else (as root) Debian's docker.io,
# installed if missing and started here the way it runs in a sandbox without iptables.
set -euo pipefail
docker=${DOCKER:-docker}

$docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "no Docker engine answers; start one (as root, this script starts Debian's)" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi
log=/var/log/yoloq-dockerd.log
# dockerd takes overlay2 where the kernel allows it and falls back to vfs by itself.
# Compose's own networks still work without the default bridge or iptables rules.
nohup dockerd --iptables=false --bridge=none >"$log" 2>&1 &
for _ in $(seq 60); do
    $docker info >/dev/null 2>&1 && { echo "dockerd started (log: $log)"; exit 0; }
    sleep 1
done
echo "dockerd did not start; see $log" >&2
exit 1
