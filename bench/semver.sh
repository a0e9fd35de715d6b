#!/usr/bin/env bash
# Times `sgr semver pre` (and rc, sort) in a repository with 100 000 commits
# and 1 000 tags, side by side with the shell pipeline a build.sh user runs
# without duat (git CLI for the branch, grep/sed for the version).
#
# Usage: bench/semver.sh [RUNS]   (needs hyperfine: apt-get install hyperfine)
# Prints hyperfine's table and the medians in milliseconds; record them in bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-200}
WORK=${SGR_BENCH_WORK:-$ROOT/bench/work}
REPO=$WORK/repo-100k
command -v hyperfine >/dev/null || { echo "bench/semver.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }

# shellcheck source=../scripts/lib/release-build.sh
. "$ROOT/scripts/lib/release-build.sh"
release_binaries sgr

if [ ! -f "$REPO/.complete" ]; then
    rm -rf "$REPO"
    mkdir -p "$REPO"
    git -C "$REPO" init -q -b feature/197_hybrid
    # 100 000 commits (each touching a counter file) and 1 000 tags, through fast-import.
    python3 - "$REPO" <<'PY' | git -C "$REPO" fast-import --quiet
import sys
readme = b"# Bench\n\nVersion: <repo-version>0.9.9</repo-version>\n"
out = sys.stdout.buffer
out.write(b"blob\nmark :1\ndata %d\n%s\n" % (len(readme), readme))
for number in range(1, 100_001):
    counter = b"%d\n" % number
    out.write(b"commit refs/heads/feature/197_hybrid\nmark :%d\n" % (number + 1))
    out.write(b"committer Bench <bench@example.invalid> %d +0000\n" % (1_500_000_000 + number))
    message = b"commit %d\n" % number
    out.write(b"data %d\n%s" % (len(message), message))
    if number > 1:
        out.write(b"from :%d\n" % number)
    out.write(b"M 100644 :1 README.md\n")
    out.write(b"M 100644 inline counter\ndata %d\n%s\n" % (len(counter), counter))
for tag in range(1000):
    out.write(b"reset refs/tags/0.%d.%d\nfrom :%d\n\n" % (tag // 100, tag % 100, 2 + tag * 100))
PY
    git -C "$REPO" checkout -q -f feature/197_hybrid
    touch "$REPO/.complete"
fi
echo "commits: $(git -C "$REPO" rev-list --count HEAD), tags: $(git -C "$REPO" tag | wc -l)" >&2

cd "$REPO"
export SOURCE_DATE_EPOCH=1548443444
shell_pre='v=$(sed -n "s:.*<repo-version>\(.*\)</repo-version>.*:\1:p" README.md | head -n1); b=$(git rev-parse --abbrev-ref HEAD | tr -c "0-9A-Za-z\n" "-"); echo "$v-$b-$(date +%s)"'
hyperfine --runs "$RUNS" --warmup 10 -N --export-json "$WORK/semver.json" \
    -n "sgr semver pre" "$SGR semver pre" \
    -n "sgr semver rc (1000 tags)" "$SGR semver rc --dry-run" \
    -n "sgr semver sort (1000 tags)" "$SGR semver sort" \
    -n "shell: sed + git rev-parse + date" "bash -c '$shell_pre'" >&2
python3 - "$WORK/semver.json" <<'PY'
import json, sys
for result in json.load(open(sys.argv[1]))["results"]:
    print(f'{result["command"]:40s} median {result["median"] * 1000:7.2f} ms  mean {result["mean"] * 1000:7.2f} ms  max {result["max"] * 1000:7.2f} ms')
PY
