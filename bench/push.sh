#!/usr/bin/env bash
# `sgr push` to two registries against two sequential `docker push` of the same image, on the
# same engine: one image of about 200 MiB (FROM scratch, four 50 MiB layers of random data),
# two Debian docker-registry instances on loopback, fresh (empty) for every run so that no
# blob is already there. Then a re-run of sgr with nothing changed.
# Reports medians of RUNS runs, the ratios, and sgr's peak RSS (/usr/bin/time).
#
# With SGR_BENCH_LARGE=1, then one large-layer push: a single 2 GiB layer of random data
# (SGR_BENCH_LARGE_MIB to change it) pushed by sgr to a direct registry and to a second one
# behind a throttling TCP proxy (SGR_BENCH_THROTTLE_MIBS MiB/s, default 20: the copy takes
# well over the old 60 s whole-request deadline). Reports its time, and whether sgr retried
# or fell back to an engine push (both would show in its -v log). Minutes of machine time.
#
# Usage: bench/push.sh [RUNS]   (needs docker.io, docker-registry, time, bc, curl, python3)
# Uses DOCKER_HOST when it answers; otherwise starts a private dockerd under /tmp.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-5}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"
# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries sgr

# shellcheck source=../scripts/lib/engine.sh
. "$ROOT/scripts/lib/engine.sh"
ensure_engine sgr-bench-push

REGISTRY_PIDS=()
REGISTRY_DIR=$(mktemp -d /tmp/sgr-bench-registry.XXXXXX)
stop_registries() {
    local pid
    for pid in "${REGISTRY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    REGISTRY_PIDS=()
    rm -rf "${REGISTRY_DIR:?}"/*
}
cleanup() { set +e; stop_registries; rm -rf "$REGISTRY_DIR"; [ -n "${ENGINE_PID:-}" ] && stop_engine; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# start_registry: an empty registry; its address in $REGISTRY (not a subshell: the PID is kept)
start_registry() {
    local port dir
    port=$(free_port)
    dir=$REGISTRY_DIR/$port
    mkdir -p "$dir/data"
    printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$dir/data" "$port" >"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    REGISTRY_PIDS+=("$!")
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.05; done
    REGISTRY="127.0.0.1:$port"
}

# The image: four layers of 50 MiB of random data (pushes compress; random data does not shrink).
IMAGE=sgr-bench/push:1
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    context=$WORK/push-image
    rm -rf "$context"
    mkdir -p "$context"
    for layer in 1 2 3 4; do head -c $((50 * 1024 * 1024)) /dev/urandom >"$context/layer$layer.bin"; done
    printf 'FROM scratch\nCOPY layer1.bin /\nCOPY layer2.bin /\nCOPY layer3.bin /\nCOPY layer4.bin /\n' >"$context/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$context" >/dev/null
fi
echo "image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MiB", $1 / 1048576 }')" >&2

median() { sort -n | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }

docker_times=() sgr_times=() rerun_times=() rss=0
for run in $(seq 1 "$RUNS"); do
    start_registry; first=$REGISTRY; start_registry; second=$REGISTRY
    start=$(now)
    for registry in "$first" "$second"; do
        docker tag "$IMAGE" "$registry/sgr-bench/push:1"
        docker push -q "$registry/sgr-bench/push:1" >/dev/null
    done
    docker_times+=("$(echo "$(now) - $start" | bc)")
    for registry in "$first" "$second"; do docker rmi "$registry/sgr-bench/push:1" >/dev/null; done
    stop_registries

    start_registry; first=$REGISTRY; start_registry; second=$REGISTRY
    start=$(now)
    /usr/bin/time -f '%M' -o "$WORK/push-rss" \
        "$SGR" push -q --image "$IMAGE" --registry "$first" --registry "$second" >/dev/null
    sgr_times+=("$(echo "$(now) - $start" | bc)")
    kib=$(tail -n 1 "$WORK/push-rss")
    [ "$kib" -gt "$rss" ] && rss=$kib
    start=$(now)
    "$SGR" push -q --image "$IMAGE" --registry "$first" --registry "$second" >"$WORK/push-rerun"
    rerun_times+=("$(echo "$(now) - $start" | bc)")
    grep -q "up to date" "$WORK/push-rerun" || { echo "the re-run was not up to date" >&2; cat "$WORK/push-rerun" >&2; exit 1; }
    for registry in "$first" "$second"; do docker rmi "$registry/sgr-bench/push:1" >/dev/null 2>&1 || true; done
    stop_registries
    echo "  run $run: docker ${docker_times[-1]} s, sgr ${sgr_times[-1]} s, sgr re-run ${rerun_times[-1]} s, sgr RSS $kib KiB" >&2
done

docker_median=$(printf '%s\n' "${docker_times[@]}" | median)
sgr_median=$(printf '%s\n' "${sgr_times[@]}" | median)
rerun_median=$(printf '%s\n' "${rerun_times[@]}" | median)
echo "two sequential docker push: median ${docker_median} s"
echo "sgr push to both:           median ${sgr_median} s, ratio $(echo "scale=2; $sgr_median / $docker_median" | bc)"
echo "sgr push re-run:            median ${rerun_median} s, ratio to the first push $(echo "scale=3; $rerun_median / $sgr_median" | bc)"
echo "sgr peak RSS: $((rss / 1024)) MiB"

[ "${SGR_BENCH_LARGE:-0}" = 1 ] || exit 0

# A throttling TCP proxy (tc is not available here): each direction at RATE bytes/s.
THROTTLE_PY=$WORK/throttle.py
cat >"$THROTTLE_PY" <<'PY'
import asyncio, sys
listen, upstream, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(max(1, int(rate / 20)))
            if not data:
                break
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(len(data) / rate)
    finally:
        writer.close()
async def handle(client_reader, client_writer):
    host, port = upstream.rsplit(":", 1)
    server_reader, server_writer = await asyncio.open_connection(host, int(port))
    await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer),
                         return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY

LARGE_MIB=${SGR_BENCH_LARGE_MIB:-2048}
THROTTLE_MIBS=${SGR_BENCH_THROTTLE_MIBS:-20}
LARGE=sgr-bench/large:1
if ! docker image inspect "$LARGE" >/dev/null 2>&1; then
    context=$WORK/large-image
    rm -rf "$context"
    mkdir -p "$context"
    head -c $((LARGE_MIB * 1024 * 1024)) /dev/urandom >"$context/layer.bin"
    printf 'FROM scratch\nCOPY layer.bin /\n' >"$context/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$LARGE" "$context" >/dev/null
    rm -rf "$context"
fi
start_registry; direct=$REGISTRY; start_registry; slow_upstream=$REGISTRY
slow_port=$(free_port)
python3 "$THROTTLE_PY" "$slow_port" "$slow_upstream" "$((THROTTLE_MIBS * 1024 * 1024))" &
REGISTRY_PIDS+=("$!")
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$slow_port/v2/" && break; sleep 0.05; done
start=$(now)
status=0
"$SGR" -v push --image "$LARGE" --registry "$direct" --registry "127.0.0.1:$slow_port" \
    >"$WORK/large-out" 2>"$WORK/large-log" || status=$?
seconds=$(echo "$(now) - $start" | bc)
retries=$(grep -c -e 'retrying' -e 'pushing through the engine' "$WORK/large-log" || true)
echo "large layer (${LARGE_MIB} MiB, one registry behind ${THROTTLE_MIBS} MiB/s): exit $status in ${seconds} s, ${retries} retry or fallback line(s)"
for registry in "$direct" "127.0.0.1:$slow_port"; do docker rmi "$registry/sgr-bench/large:1" >/dev/null 2>&1 || true; done
stop_registries
[ "$status" = 0 ] && [ "$retries" = 0 ]
