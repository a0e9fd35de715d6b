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
command -v curl >/dev/null || missing+=(curl)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
install -m 0755 /bin/busybox examples/hello/busybox

cargo build --release --locked -p sgr >&2
SGR=$ROOT/target/release/sgr

# shellcheck source=../scripts/lib/engine.sh
. "$ROOT/scripts/lib/engine.sh"
ensure_engine sgr-demo
"$SGR" build --config examples/sgr.toml
