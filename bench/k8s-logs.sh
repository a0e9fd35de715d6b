#!/usr/bin/env bash
# `sgr k8s-build --attach` following a Job's log through the fake Kubernetes API server of the
# tests (test-support's fake-kube: real HTTP on loopback, kube-rs on sgr's side). Two runs:
#   throughput: the pod writes LINES lines as fast as it can; lines per second as printed by sgr,
#               from the first line to the last (a reader timestamps each line on arrival);
#   latency:    the pod writes 1000 lines every 20 ms (50 000 lines/s); each line carries its
#               write time, and the reader reports how long it took to reach sgr's stdout.
#   long line:  the pod writes one 300 MB line (carriage-return progress output, as pip and
#               downloads write without a terminal); sgr's peak RSS (GNU time) and that stdout and
#               the log file got every byte.
# Targets: >= 50 000 lines/s; write-to-print latency under 200 ms; peak RSS <= 64 MiB on the long line.
#
# Usage: bench/k8s-logs.sh [LINES] [LONG_BYTES]   (needs python3 and /usr/bin/time)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LINES=${1:-200000}
LONG_BYTES=${2:-300000000}
# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries sgr fake-kube
FAKE=$FAKE_KUBE
WORK=$(mktemp -d /tmp/sgr-bench-k8s.XXXXXX)
FAKE_PID=
cleanup() { set +e; exec 4>&- 2>/dev/null; [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
git -C "$WORK" init -q -b main

# reader: timestamps each line of stdin; prints "lines lines_per_second p50_ms p99_ms max_ms"
cat >"$WORK/reader.py" <<'PY'
import sys, time
arrivals, latencies = [], []
for line in sys.stdin.buffer:
    now = time.time_ns()
    arrivals.append(now)
    text = line.decode(errors="replace").rstrip("\n")
    if " wall=" in text:
        latencies.append((now - int(text.rsplit(" wall=", 1)[1])) / 1e6)
count = len(arrivals)
span = (arrivals[-1] - arrivals[0]) / 1e9 if count > 1 else 0
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
print(f"{count} {count / span if span else 0:.0f} {pick(0.5):.1f} {pick(0.99):.1f} {latencies[-1] if latencies else 0:.1f}")
PY

# run LINES BURST PAUSE_MS: one attached Job through a fresh fake server. The server serves until
# its stdin (a FIFO held open on fd 4) closes, so closing fd 4 stops it: nothing is left behind.
run() {
    rm -f "$WORK/hold" "$WORK/url"
    mkfifo "$WORK/hold"
    "$FAKE" "$WORK/kubeconfig" "$1" "$2" "$3" <"$WORK/hold" >"$WORK/url" &
    FAKE_PID=$!
    exec 4>"$WORK/hold"
    for _ in $(seq 1 100); do [ -s "$WORK/url" ] && break; sleep 0.05; done
    (cd "$WORK" && KUBECONFIG="$WORK/kubeconfig" "$SGR" k8s-build -q --attach --image bench --name bench \
        --no-github-token --log-file "$WORK/bench.log") | python3 "$WORK/reader.py"
    exec 4>&-
    wait "$FAKE_PID" 2>/dev/null || true
    FAKE_PID=
    sleep 1
}

read -r count rate _ _ _ < <(run "$LINES" "$LINES" 0)
echo "throughput: $count lines printed at $rate lines/s"
read -r count _ p50 p99 max < <(run 100000 1000 20)
echo "latency at 50 000 lines/s: $count lines, write-to-print p50 ${p50} ms, p99 ${p99} ms, max ${max} ms"

# long: one LONG_BYTES line; sgr's peak RSS, and the bytes that reached stdout and the log file.
rm -f "$WORK/hold" "$WORK/url"
mkfifo "$WORK/hold"
"$FAKE" "$WORK/kubeconfig" "long:$LONG_BYTES" 1 0 <"$WORK/hold" >"$WORK/url" &
FAKE_PID=$!
exec 4>"$WORK/hold"
for _ in $(seq 1 100); do [ -s "$WORK/url" ] && break; sleep 0.05; done
(cd "$WORK" && KUBECONFIG="$WORK/kubeconfig" /usr/bin/time -f "%M" -o "$WORK/rss" "$SGR" k8s-build -q \
    --attach --image bench --name bench --no-github-token --log-file "$WORK/long.log") | wc -c >"$WORK/printed"
exec 4>&-
wait "$FAKE_PID" 2>/dev/null || true
FAKE_PID=
echo "one $LONG_BYTES-byte line: sgr peak RSS $(( $(cat "$WORK/rss") / 1024 )) MiB;" \
    "stdout $(cat "$WORK/printed") bytes, log file $(wc -c <"$WORK/long.log") bytes (each line + newline)"
