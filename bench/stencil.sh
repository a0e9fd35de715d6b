#!/usr/bin/env bash
# Times rendering a 300-line multi-document YAML template as a whole process:
# `sgr stencil` (which also reads git, the version file and the environment)
# against the compiled Go reference (text/template + sprig, given the same
# context as JSON), in this checkout.
#
# Usage: bench/stencil.sh [RUNS]   (needs hyperfine, golang-go, golang-github-masterminds-sprig-dev)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-200}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"
command -v hyperfine >/dev/null || { echo "bench/stencil.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }

cargo build --release --locked -p sgr --manifest-path "$ROOT/Cargo.toml" >&2
SGR=$ROOT/target/release/sgr
(cd "$ROOT/tests/reference/stencil" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$WORK/go-cache" \
    go build -o "$WORK/stencil-reference" .)

# 12 documents of 25 lines: the constructs of studio-go-runner's build.yaml.
TEMPLATE=$WORK/stencil-300.yaml.tmpl
: >"$TEMPLATE"
for index in $(seq 1 12); do
    cat >>"$TEMPLATE" <<DOC
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: build-{{.duat.module}}-$index
  namespace: {{ default "ci-go-runner" .Namespace }}
  labels:
    branch: {{.duat.gitBranch | replace "_" "-" | replace "/" "-" }}
    version: "{{.duat.version}}"
    user: {{ expandenv "\$USER" }}
  annotations:
    hash: "{{.duat.gitHash}}"
    token: '{{ expandenv "\$GITHUB_TOKEN" | b64enc }}'
data:
  LOG: {{ env "RUNNER_BUILD_LOG" | default "build.log" }}
  GPUS: "{{ expandenv "\$NVIDIA_VISIBLE_DEVICES" | empty | ternary "0" "2" }}"
  AMQP: "amqp://\${RABBITMQ_SERVICE_SERVICE_HOST}:5672/"
{{- range \$key, \$value := .labels }}
  {{ upper \$key }}: {{ quote \$value }}
{{- end }}
  IMAGE: {{ .image | default "leafai/runner" }}:{{ .duat.version }}
  MODULE: {{ .duat.module | upper }}
  JSON: '{{ toJson .labels }}'
  INDEX: "$index"
  TRIMMED: {{ trim "  spaced  " }}
DOC
done
echo "template: $(wc -l <"$TEMPLATE") lines" >&2

cd "$ROOT"
VALUES="--values-file=$WORK/values.yaml"
printf 'labels:\n  app: studio\n  tier: gpu\n  zone: a\nimage: leafai/runner\n' >"$WORK/values.yaml"
"$SGR" stencil -q "$VALUES" --print-context >"$WORK/context.json"
"$SGR" stencil -q "$VALUES" "$TEMPLATE" >"$WORK/sgr.out"
"$WORK/stencil-reference" "$TEMPLATE" "$WORK/context.json" >"$WORK/go.out"
cmp "$WORK/sgr.out" "$WORK/go.out" >&2 && echo "outputs identical" >&2

hyperfine --runs "$RUNS" --warmup 10 -N --export-json "$WORK/stencil.json" \
    -n "sgr stencil (git + version + env + render)" "$SGR stencil -q $VALUES $TEMPLATE" \
    -n "Go text/template + sprig (render only)" "$WORK/stencil-reference $TEMPLATE $WORK/context.json" >&2
python3 - "$WORK/stencil.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for result in results:
    print(f'{result["command"]:45s} median {result["median"] * 1000:7.2f} ms  mean {result["mean"] * 1000:7.2f} ms')
print(f'ratio sgr/Go (median): {results[0]["median"] / results[1]["median"]:.2f}')
PY
