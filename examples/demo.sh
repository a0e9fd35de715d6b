#!/usr/bin/env bash
# One-command demo of `sgr build` on a fresh Debian machine: builds sgr, and builds the
# FROM-scratch busybox image of examples/hello through the Docker Engine API. Uses the
# engine at DOCKER_HOST (or /var/run/docker.sock) when one answers; otherwise installs
# docker.io and busybox-static if needed, starts a private dockerd on its own socket and data
# directory under /tmp, and stops it again at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf 'demo: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
install -m 0755 /bin/busybox examples/hello/busybox

cargo build --release --locked -p sgr >&2
SGR=$ROOT/target/release/sgr

engine_answers() { curl -sf --max-time 2 --unix-socket "${1#unix://}" http://localhost/_ping >/dev/null 2>&1; }
HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
if [[ "$HOST" == unix://* ]] && engine_answers "$HOST"; then
    log "using the engine at $HOST"
else
    WORK=$(mktemp -d /tmp/sgr-demo.XXXXXX)
    HOST="unix://$WORK/docker.sock"
    log "starting a private dockerd at $HOST"
    setsid dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" -H "$HOST" \
        --bridge=none --iptables=false --ip-masq=false --containerd-namespace sgr-demo \
        --containerd-plugins-namespace sgr-demo-plugins >"$WORK/dockerd.log" 2>&1 </dev/null &
    DOCKERD=$!
    stop_engine() {
        set +e
        kill -TERM -- "-$DOCKERD" 2>/dev/null
        wait "$DOCKERD" 2>/dev/null
        grep -o " $WORK[^ ]*" /proc/mounts | sort -r | while read -r mount; do umount -l "$mount"; done
        rm -rf "$WORK"
    }
    trap stop_engine EXIT
    for _ in $(seq 1 150); do engine_answers "$HOST" && break; sleep 0.2; done
    engine_answers "$HOST" || { tail -n 20 "$WORK/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
fi
DOCKER_HOST=$HOST "$SGR" build --config examples/sgr.toml
