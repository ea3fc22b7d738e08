#!/usr/bin/env bash
# The behaviour gate of issue 17: align's outputs must not move when code moves.
#
#   tests/gate/byte_identical.sh record DIR [ALIGN_BIN]   # record every fixture's outputs into DIR
#   tests/gate/byte_identical.sh diff A B                 # 0 differences → exit 0, else list them, exit 1
#
# For every .onnx under fixtures/ (recursively, *.aligned.onnx skipped), and every fuzz input
# (fuzz/corpus/, fuzz/regressions/: malformed and adversarial models), it records
#   align MODEL -o OUT --no-verify --json  → the written OUT bytes, the JSON (every "millis"
#                                            timing object removed), stderr and the exit code
#   align report MODEL --json              → JSON, stderr, exit code
#   align check MODEL --json               → JSON, stderr, exit code
#   align report MODEL --svg SVG           → the SVG picture (beyond the brief: it reads the report too)
# ALIGN_BIN defaults to target/debug/align (build it first: `cargo build`). Record once on the
# untouched branch, once after a change, then diff the two folders. OUT is written to one fixed
# scratch path (so a path echoed in the output is the same in both runs): do not run two
# recordings at once.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

strip_millis() { # stdin JSON → the same JSON without "millis" keys; non-JSON passes unchanged
    python3 -c '
import json, sys
raw = sys.stdin.read()
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "millis"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
try:
    print(json.dumps(strip(json.loads(raw)), indent=1))
except ValueError:
    sys.stdout.write(raw)
'
}

record() {
    local dir="$1" bin="${2:-$root/target/debug/align}"
    local scratch=/tmp/align-gate-scratch
    rm -rf "$dir" "$scratch" && mkdir -p "$dir" "$scratch"
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    cd "$root"
    local n=0
    while IFS= read -r model; do
        local key="${model//\//__}"
        local out="$scratch/out.onnx"
        rm -f "$scratch"/out.onnx*
        local rc=0
        "$bin" "$model" -o "$out" --no-verify --json >"$scratch/stdout" 2>"$dir/$key.align.stderr" || rc=$?
        echo "$rc" >"$dir/$key.align.rc"
        strip_millis <"$scratch/stdout" >"$dir/$key.align.json"
        for f in "$scratch"/out.onnx*; do
            [ -e "$f" ] && mv "$f" "$dir/$key.written${f#"$scratch"/out.onnx}"
        done
        rc=0
        "$bin" report "$model" --svg "$dir/$key.report.svg" >/dev/null 2>"$dir/$key.svg.stderr" || rc=$?
        echo "$rc" >"$dir/$key.svg.rc"
        for cmd in report check; do
            rc=0
            "$bin" "$cmd" "$model" --json >"$scratch/stdout" 2>"$dir/$key.$cmd.stderr" || rc=$?
            echo "$rc" >"$dir/$key.$cmd.rc"
            strip_millis <"$scratch/stdout" >"$dir/$key.$cmd.json"
        done
        n=$((n + 1))
    done < <(find fixtures fuzz/corpus fuzz/regressions -name '*.onnx' ! -name '*.aligned.onnx' | LC_ALL=C sort)
    local fx
    fx="$(find "$dir" -name 'fixtures__*.align.rc' | wc -l)"
    echo "$n models ($fx fixtures, $((n - fx)) fuzz inputs)" >"$dir/MODELS"
    echo "recorded $n models into $dir"
}

compare() {
    local a="$1" b="$2"
    local diffs
    diffs="$(diff -rq "$a" "$b" | wc -l)" || true
    diff -rq "$a" "$b" || true
    echo "gate: $(cat "$a/MODELS"), $diffs differences"
    [ "$diffs" -eq 0 ]
}

case "${1:-}" in
    record) record "${2:?record DIR [ALIGN_BIN]}" "${3:-}" ;;
    diff) compare "${2:?diff A B}" "${3:?diff A B}" ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
