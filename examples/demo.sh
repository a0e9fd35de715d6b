#!/usr/bin/env bash
# One-command demo on a fresh Debian machine:
# 1. `sgr build`: builds sgr, and builds the FROM-scratch busybox image of examples/hello
#    through the Docker Engine API. Uses the engine at DOCKER_HOST (or /var/run/docker.sock)
#    when one answers; otherwise installs docker.io and busybox-static if needed, starts a
#    private dockerd on its own socket and data directory under /tmp, and stops it at the end.
# 2. `runner`: runs the StudioML experiment of examples/runner from a local directory queue
#    with local (file://) storage, no service and no GPU, and shows its output and results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf 'demo: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v curl >/dev/null || missing+=(curl)
[ -x /bin/busybox ] || missing+=(busybox-static)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
install -m 0755 /bin/busybox examples/hello/busybox

# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries sgr runner

# shellcheck source=../scripts/lib/engine.sh
. "$ROOT/scripts/lib/engine.sh"
ensure_engine sgr-demo
"$SGR" build --config examples/sgr.toml

log "runner: one experiment from a local directory queue, file:// storage"
RUN=$(mktemp -d /tmp/sgr-demo-runner.XXXXXX)
# The request is in the StudioML client's own format (json.dumps of its payload, one line; see
# runner/request/tests/fixtures/studioml-0.0.49.json), with file:// locations instead of S3 and
# an empty pythonenv so that the demo needs no package index. pythonver is this machine's
# python3, as the client writes the version of the Python that submitted it.
KEY=1796017734_0d3c6a4e-demo-4c1b-9d5e-7a1f2b3c4d5e
PYTHONVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mkdir -p "$RUN/store/blobstore" "$RUN/queues/local_demo"
tar -C examples/runner/workspace -cf "$RUN/store/blobstore/workspace.tar" .
sed -e "s|@STORE@|$RUN/store|g" -e "s|@PYTHONVER@|$PYTHONVER|g" examples/runner/request.json \
    >"$RUN/queues/local_demo/$(python3 -c 'import uuid; print(uuid.uuid4())')"
"$RUNNER" --queue-root "$RUN/queues" --work-dir "$RUN/work" --venv-cache "$RUN/venvs" --once --log-format text
mkdir -p "$RUN/results/output" "$RUN/results/modeldir"
tar -C "$RUN/results/output" -xf "$RUN/store/experiments/$KEY/output.tar"
tar -C "$RUN/results/modeldir" -xf "$RUN/store/experiments/$KEY/modeldir.tar"
log "the experiment's output (output/output):"
cat "$RUN/results/output/output"
log "its model (modeldir/model.json): $(cat "$RUN/results/modeldir/model.json")"
rm -rf "$RUN"
