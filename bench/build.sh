#!/usr/bin/env bash
# `sgr build` against `docker build` on the same engine and the same contexts: about 100 MiB
# in 2 000 files and 1.1 GiB in 20 000 files, no cache, `FROM scratch` + `COPY . /ctx`.
# Tools: docker build with the classic builder (DOCKER_BUILDKIT=0); sgr build as it chooses
# (BuildKit on this engine); sgr build --builder classic; and docker build with BuildKit when a
# CLI that has it is here (buildx, or Debian's 20.10 CLI). For each context, RUNS builds of
# each tool, alternating; reports the medians, the ratios (target <= 1.0) and sgr's peak RSS
# (/usr/bin/time, target <= 64 MiB). sgr's labels cost one LABEL step under the classic
# builder and none under BuildKit; docker's build has none. ctx-100m-label is the 100 MiB
# context with a Dockerfile ending in a LABEL of its own (sgr's labels join it).
# SGR_BENCH_CONTEXTS="ctx-100m ..." chooses the contexts. SGR_BENCH_FRESH=1 changes a file of
# the context before every build (an edit-and-rebuild cycle: nothing sent before is reusable).
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

# The docker CLI with BuildKit: buildx when installed, else a CLI with BuildKit built in
# (Debian's docker.io 20.10 at /usr/bin/docker); none: that column is left out.
if docker buildx version >/dev/null 2>&1; then
    DOCKER_BUILDKIT_CLI=(docker buildx build --load)
elif /usr/bin/docker --version 2>/dev/null | grep -q 'version 20\.'; then
    DOCKER_BUILDKIT_CLI=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
else
    DOCKER_BUILDKIT_CLI=()
fi

# timed TOOL DIR: runs one build, prints its seconds (sgr's peak RSS goes to $WORK/rss);
# a failed build fails (its output goes to $WORK/failed.log), never a fast run.
timed() {
    local start end status=0
    docker rmi -f sgr-bench/ctx:bench >/dev/null 2>&1 || true
    if [ -n "${SGR_BENCH_FRESH:-}" ]; then
        # Every build sees a changed file: no tool can reuse what it sent before.
        date +%s.%N >"$2/data/fresh.txt"
    fi
    start=$(date +%s.%N)
    case $1 in
        docker-classic) DOCKER_BUILDKIT=0 docker build -q --no-cache -t sgr-bench/ctx:bench "$2" >"$WORK/failed.log" 2>&1 || status=$? ;;
        docker-buildkit) "${DOCKER_BUILDKIT_CLI[@]}" -q --no-cache -t sgr-bench/ctx:bench "$2" >"$WORK/failed.log" 2>&1 || status=$? ;;
        sgr) /usr/bin/time -f '%M' -o "$WORK/rss" "$SGR" build -q --no-cache --git "$2" >"$WORK/failed.log" 2>&1 || status=$? ;;
        sgr-classic) /usr/bin/time -f '%M' -o "$WORK/rss" "$SGR" build -q --no-cache --builder classic --git "$2" >"$WORK/failed.log" 2>&1 || status=$? ;;
    esac
    end=$(date +%s.%N)
    if [ "$status" -ne 0 ]; then
        echo "bench: $1 failed (exit $status) on $2:" >&2
        tail -n 20 "$WORK/failed.log" >&2
        return 1
    fi
    echo "$end - $start" | bc
}

# run_builds DIR: RUNS alternating builds of each tool; prints "TOOL=MEDIAN ... rss=MAX_KIB"
run_builds() {
    local directory=$1 rss=0 kib tool seconds
    local tools=(docker-classic sgr sgr-classic)
    [ ${#DOCKER_BUILDKIT_CLI[@]} -gt 0 ] && tools+=(docker-buildkit)
    declare -A times=()
    for run in $(seq 1 "$RUNS"); do
        local line="  run $run:"
        for tool in "${tools[@]}"; do
            seconds=$(timed "$tool" "$directory") || exit 1
            times[$tool]+="$seconds "
            line+=" $tool $seconds s,"
            if [[ $tool == sgr* ]]; then
                kib=$(tail -n 1 "$WORK/rss")
                [ "$kib" -gt "$rss" ] && rss=$kib
                line+=" (RSS $kib KiB),"
            fi
        done
        echo "${line%,}" >&2
    done
    docker rmi -f sgr-bench/ctx:bench >/dev/null 2>&1 || true
    local out=""
    for tool in "${tools[@]}"; do
        out+="$tool=$(printf '%s\n' ${times[$tool]} | median) "
    done
    echo "${out}rss=$rss"
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
ratio() { echo "scale=2; $1 / $2" | bc; }
for context in ${SGR_BENCH_CONTEXTS:-ctx-100m ctx-100m-label ctx-1g}; do
    echo "$context: $(du -sh --apparent-size "$WORK/$context/data" | cut -f1) in $(find "$WORK/$context/data" -type f | wc -l) files, $RUNS runs each" >&2
    declare -A median=()
    for pair in $(run_builds "$WORK/$context"); do median[${pair%%=*}]=${pair#*=}; done
    line=$(printf '%-14s docker build (classic) %6s s, sgr build %6s s: ratio %s; sgr --builder classic %6s s: ratio %s' \
        "$context" "${median[docker-classic]}" "${median[sgr]}" "$(ratio "${median[sgr]}" "${median[docker-classic]}")" \
        "${median[sgr-classic]}" "$(ratio "${median[sgr-classic]}" "${median[docker-classic]}")")
    if [ -n "${median[docker-buildkit]:-}" ]; then
        line+=$(printf '; docker build (BuildKit) %6s s: sgr ratio %s' "${median[docker-buildkit]}" \
            "$(ratio "${median[sgr]}" "${median[docker-buildkit]}")")
    fi
    results+=("$line; sgr peak RSS $((median[rss] / 1024)) MiB")
    unset median
done
printf '%s\n' "${results[@]}"
