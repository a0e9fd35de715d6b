#!/usr/bin/env bash
# Times rendering as a whole process, `sgr stencil` (which also reads git, the
# version file and the environment) against the compiled Go reference
# (text/template + sprig, given the same context as JSON):
#   1. a 300-line multi-document YAML template, in this checkout;
#   2. studio-go-runner's build.yaml (2021, ../shared/reference/) inside generated
#      git checkouts of 3 000 and 100 000 files (cached in $WORK), where a context
#      gathered whole would scan every file for git.dirty.
#
# Usage: bench/stencil.sh [RUNS]   (needs hyperfine, golang-go, golang-github-masterminds-sprig-dev)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-200}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"
command -v hyperfine >/dev/null || { echo "bench/stencil.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }

# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
# SGR_BENCH_BIN: a release binary built beforehand (a shared target directory may be
# rebuilt by another checkout while the benchmark runs).
release_binaries sgr
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

# 2. build.yaml in generated checkouts.
BUILD_YAML=$ROOT/../shared/reference/studio-go-runner/4f816e5c/build.yaml
[ -f "$BUILD_YAML" ] || { echo "bench/stencil.sh: $BUILD_YAML is absent (shared/ beside the clone)" >&2; exit 2; }
for FILES in 3000 100000; do
    CHECKOUT=$WORK/checkout-$FILES/studio-go-runner
    if [ ! -f "$CHECKOUT/.done" ]; then
        rm -rf "$WORK/checkout-$FILES"
        mkdir -p "$CHECKOUT"
        python3 - "$CHECKOUT" "$FILES" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for index in range(count):
    directory = os.path.join(root, "pkg", f"d{index // 100:04d}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"f{index % 100:03d}.go"), "w") as handle:
        handle.write(f"package d\n\n// file {index}\nconst N{index} = {index}\n")
with open(os.path.join(root, "README.md"), "w") as handle:
    handle.write("# studio-go-runner\n\nVersion: <repo-version>0.13.1</repo-version>\n")
PY
        (cd "$CHECKOUT" && git init -q -b feature/197_hybrid && git add -A \
            && git -c user.name=bench -c user.email=bench@example.invalid commit -q -m generated \
            && git remote add origin https://github.com/leaf-ai/studio-go-runner.git && touch .done)
    fi
    (
        cd "$CHECKOUT"
        "$SGR" stencil -q --print-context </dev/null >"$WORK/context-$FILES.json"
        "$SGR" stencil -q "$BUILD_YAML" >"$WORK/sgr-$FILES.out"
        "$WORK/stencil-reference" "$BUILD_YAML" "$WORK/context-$FILES.json" >"$WORK/go-$FILES.out"
        cmp "$WORK/sgr-$FILES.out" "$WORK/go-$FILES.out" >&2 && echo "build.yaml, $FILES files: outputs identical" >&2
        hyperfine --runs "$RUNS" --warmup 10 -N --export-json "$WORK/stencil-$FILES.json" \
            -n "sgr stencil build.yaml ($FILES files)" "$SGR stencil -q $BUILD_YAML" \
            -n "Go text/template + sprig ($FILES files)" "$WORK/stencil-reference $BUILD_YAML $WORK/context-$FILES.json" >&2
    )
    python3 - "$WORK/stencil-$FILES.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for result in results:
    print(f'{result["command"]:45s} median {result["median"] * 1000:7.2f} ms  mean {result["mean"] * 1000:7.2f} ms  max {result["max"] * 1000:7.2f} ms')
print(f'ratio sgr/Go (median): {results[0]["median"] / results[1]["median"]:.2f}')
PY
done
