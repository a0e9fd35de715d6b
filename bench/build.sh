#!/usr/bin/env bash
# `sgr build` against `docker build` (classic builder, DOCKER_BUILDKIT=0) on the same engine
# and the same contexts: about 100 MiB in 2 000 files and 1.1 GiB in 20 000 files, no cache,
# `FROM scratch` + `COPY . /ctx`. For each context, RUNS builds of each tool, alternating;
# reports the medians, their ratio (target <= 1.0 on each) and sgr's peak RSS (/usr/bin/time,
# target <= 64 MiB). sgr's labels cost one builder step (one LABEL instruction), docker's
# build none: the ratio includes that step. ctx-100m-label is the 100 MiB context with a
# Dockerfile ending in a LABEL of its own (sgr's labels join it: the same steps for both).
# SGR_BENCH_CONTEXTS="ctx-100m ..." chooses the contexts.
#
# Usage: [SGR_BENCH_BIN=path] bench/build.sh [RUNS]   (needs docker.io for dockerd and the docker CLI, and time)
# Uses DOCKER_HOST when it answers; otherwise starts a private dockerd under /tmp.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-5}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"
# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
# SGR_BENCH_BIN (or SGR_BENCH_BINARY): an sgr release binary already built from this checkout (skips cargo).
release_binaries sgr
# A private copy: another build in a shared target directory cannot replace it mid-bench.
cp "$SGR" "$WORK/sgr"
SGR=$WORK/sgr
"$SGR" build --help | grep -q -- '--only' || { echo "bench: $SGR is not this checkout's sgr" >&2; exit 1; }

# shellcheck source=../scripts/lib/engine.sh
. "$ROOT/scripts/lib/engine.sh"
ensure_engine sgr-bench

# make_context DIR FILES BYTES_PER_FILE
make_context() {
    local directory=$1
    if [ -f "$directory/.complete" ]; then return; fi
    rm -rf "$directory"
    mkdir -p "$directory"
    python3 - "$directory" "$2" "$3" <<'PY'
import os, sys
root, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(size)
for index in range(files):
    directory = os.path.join(root, "data", f"{index // 1000:03d}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{index:05d}.bin"), "wb") as handle:
        handle.write(block[index % 97:] + block[:index % 97])
PY
    printf 'FROM scratch\nCOPY . /ctx\n' >"$directory/Dockerfile"
    printf '.git\nDockerfile\n' >"$directory/.dockerignore"
    printf 'Version: <repo-version>1.0.0</repo-version>\n' >"$directory/README.md"
    printf '[[image]]\nname = "sgr-bench/ctx"\ndockerfile = "Dockerfile"\ncontext = "."\ntags = ["bench"]\n' >"$directory/sgr.toml"
    git -C "$directory" init -q -b main
    touch "$directory/.complete"
}

median() { sort -n | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }'; }

# run_builds DIR LABEL: prints "docker_median sgr_median sgr_rss_max_kib"
run_builds() {
    local directory=$1 docker_times=() sgr_times=() rss=0 start end kib
    for run in $(seq 1 "$RUNS"); do
        docker rmi -f sgr-bench/ctx:bench >/dev/null 2>&1 || true
        start=$(date +%s.%N)
        DOCKER_BUILDKIT=0 docker build -q --no-cache -t sgr-bench/ctx:bench "$directory" >/dev/null 2>&1
        end=$(date +%s.%N)
        docker_times+=("$(echo "$end - $start" | bc)")
        docker rmi -f sgr-bench/ctx:bench >/dev/null 2>&1 || true
        start=$(date +%s.%N)
        /usr/bin/time -f '%M' -o "$WORK/rss" "$SGR" build -q --no-cache --git "$directory" >/dev/null
        end=$(date +%s.%N)
        sgr_times+=("$(echo "$end - $start" | bc)")
        kib=$(tail -n 1 "$WORK/rss")
        [ "$kib" -gt "$rss" ] && rss=$kib
        echo "  run $run: docker ${docker_times[-1]} s, sgr ${sgr_times[-1]} s, sgr RSS $kib KiB" >&2
    done
    docker rmi -f sgr-bench/ctx:bench >/dev/null 2>&1 || true
    echo "$(printf '%s\n' "${docker_times[@]}" | median) $(printf '%s\n' "${sgr_times[@]}" | median) $rss"
}

make_context "$WORK/ctx-100m" 2000 53687
make_context "$WORK/ctx-1g" 20000 53687
# The same 100 MiB context with a Dockerfile that ends in a LABEL of its own, for both tools:
# sgr's labels join that instruction, so both run the same steps.
if [ ! -f "$WORK/ctx-100m-label/.complete" ]; then
    rm -rf "$WORK/ctx-100m-label"
    cp -al "$WORK/ctx-100m" "$WORK/ctx-100m-label"
    rm -f "$WORK/ctx-100m-label/Dockerfile"
    printf 'FROM scratch\nCOPY . /ctx\nLABEL org.example.team=ml\n' >"$WORK/ctx-100m-label/Dockerfile"
fi
results=()
for context in ${SGR_BENCH_CONTEXTS:-ctx-100m ctx-100m-label ctx-1g}; do
    echo "$context: $(du -sh --apparent-size "$WORK/$context/data" | cut -f1) in $(find "$WORK/$context/data" -type f | wc -l) files, $RUNS runs each" >&2
    read -r docker_median sgr_median rss < <(run_builds "$WORK/$context")
    results+=("$(printf '%-9s docker build median %6s s, sgr build median %6s s, ratio %s, sgr peak RSS %s MiB' \
        "$context" "$docker_median" "$sgr_median" "$(echo "scale=2; $sgr_median / $docker_median" | bc)" "$((rss / 1024))")")
done
printf '%s\n' "${results[@]}"
