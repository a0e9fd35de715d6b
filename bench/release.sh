#!/usr/bin/env bash
# `sgr release` uploading one 500 MiB asset (plus SHA256SUMS) to the fake GitHub of the tests
# (test-support's fake-github: real HTTP on loopback, API and uploads on separate ports; it
# hashes uploads as they arrive and keeps nothing). Side by side: the same file uploaded with
# `curl -T -X POST` (what a release script without a tool does). Reports wall time and peak RSS
# (/usr/bin/time) of each, median of RUNS; sgr's time includes hashing the file and the
# release lookups. Target: sgr's peak RSS <= 64 MiB.
#
# Usage: bench/release.sh [RUNS]   (needs time, curl, python3, git)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-3}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"
# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries sgr fake-github
FAKE=$FAKE_GITHUB
TOKEN=bench-token

ASSET=$WORK/release-asset.bin
if [ ! -f "$ASSET" ] || [ "$(stat -c %s "$ASSET")" -ne $((500 * 1024 * 1024)) ]; then
    head -c $((500 * 1024 * 1024)) /dev/urandom >"$ASSET"
fi

REPO=$(mktemp -d /tmp/sgr-bench-release.XXXXXX)
FAKE_PID=
cleanup() { set +e; exec 4>&- 2>/dev/null; [ -n "$FAKE_PID" ] && wait "$FAKE_PID" 2>/dev/null; rm -rf "$REPO"; }
trap cleanup EXIT
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.email=b@example.invalid -c user.name=bench commit -q --allow-empty -m bench
git -C "$REPO" remote add origin https://github.com/leaf-ai/bench.git

# fake-github serves until its stdin (a FIFO held open on fd 4) closes.
mkfifo "$REPO/hold"
"$FAKE" leaf-ai bench "$TOKEN" <"$REPO/hold" >"$REPO/url" &
FAKE_PID=$!
exec 4>"$REPO/hold"
for _ in $(seq 1 100); do [ -s "$REPO/url" ] && break; sleep 0.05; done
API=$(head -n 1 "$REPO/url")

median() { sort -n | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }

sgr_times=() curl_times=() sgr_rss=0 curl_rss=0
for run in $(seq 1 "$RUNS"); do
    printf 'Version: <repo-version>1.0.%s</repo-version>\n' "$run" >"$REPO/README.md"
    start=$(now)
    GITHUB_TOKEN=$TOKEN /usr/bin/time -f '%M' -o "$WORK/release-rss" \
        "$SGR" release -q --git "$REPO" --api-url "$API" "$ASSET" >/dev/null
    sgr_times+=("$(echo "$(now) - $start" | bc)")
    kib=$(tail -n 1 "$WORK/release-rss"); [ "$kib" -gt "$sgr_rss" ] && sgr_rss=$kib

    upload=$(curl -sf -H "Authorization: Bearer $TOKEN" -d "{\"tag_name\":\"curl-$run\"}" \
        "$API/repos/leaf-ai/bench/releases" | python3 -c 'import json,sys; print(json.load(sys.stdin)["upload_url"].split("{")[0])')
    start=$(now)
    /usr/bin/time -f '%M' -o "$WORK/release-curl-rss" curl -sf -X POST -o /dev/null -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/octet-stream' -T "$ASSET" "$upload?name=release-asset.bin"
    curl_times+=("$(echo "$(now) - $start" | bc)")
    kib=$(tail -n 1 "$WORK/release-curl-rss"); [ "$kib" -gt "$curl_rss" ] && curl_rss=$kib
    echo "  run $run: sgr ${sgr_times[-1]} s, curl ${curl_times[-1]} s" >&2
done
sgr_median=$(printf '%s\n' "${sgr_times[@]}" | median)
curl_median=$(printf '%s\n' "${curl_times[@]}" | median)
echo "sgr release (500 MiB asset + SHA256SUMS): median ${sgr_median} s, peak RSS $((sgr_rss / 1024)) MiB"
echo "curl -T (500 MiB asset):                  median ${curl_median} s, peak RSS $((curl_rss / 1024)) MiB"
echo "ratio sgr/curl: $(echo "scale=2; $sgr_median / $curl_median" | bc)"
