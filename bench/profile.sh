#!/bin/sh
# Where align spends memory and time on one model (the evidence behind the
# "Findings" section of docs/benchmarks.md).
#
#   bench/profile.sh [ALIGN] [MODEL]
#
# ALIGN defaults to target/release/align, MODEL to bench/out/yolov5s_pruned.onnx.
# Needs valgrind (massif) and perf. Writes bench/out/profile/:
#   massif.noverify.txt   heap over time and the allocation tree at the peak
#   perf.verify.txt       where CPU time goes in a verified run (flat, by symbol)
#   perf.noverify.txt     the same for --no-verify
#   stages.json           align --json summaries (millis per stage)
# Function names resolve with any build; source lines need debug info, e.g.
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release.
set -eu
ALIGN=${1:-target/release/align}
MODEL=${2:-bench/out/yolov5s_pruned.onnx}
OUT=bench/out/profile
mkdir -p "$OUT"

echo "== stages (--json millis)"
{
  "$ALIGN" "$MODEL" --no-verify -o "$OUT/a.onnx" --json
  "$ALIGN" "$MODEL" -o "$OUT/a.onnx" --json
} > "$OUT/stages.json" || true
grep -A5 '"millis": {' "$OUT/stages.json" || true

echo "== massif, --no-verify"
valgrind --tool=massif --massif-out-file="$OUT/massif.noverify.out" \
  "$ALIGN" "$MODEL" --no-verify -o "$OUT/a.onnx" -q 2>/dev/null
ms_print "$OUT/massif.noverify.out" > "$OUT/massif.noverify.txt"
PEAK=$(grep -o '[0-9]* (peak)' "$OUT/massif.noverify.txt" | cut -d' ' -f1)
echo "peak snapshot ($PEAK): n, time(i), total(B), useful-heap(B), extra-heap(B), stacks(B)"
grep -m1 -E "^ +$PEAK " "$OUT/massif.noverify.txt"
echo "allocation tree at the peak: $OUT/massif.noverify.txt"

echo "== perf, verified and --no-verify"
perf record -q -g -o "$OUT/perf.verify.data" "$ALIGN" "$MODEL" -o "$OUT/a.onnx" -q 2>/dev/null || true
perf report -q -i "$OUT/perf.verify.data" --no-children --sort dso,symbol --percent-limit 1 -g none \
  2>/dev/null > "$OUT/perf.verify.txt"
head -25 "$OUT/perf.verify.txt"
perf record -q -g -F 4000 -o "$OUT/perf.noverify.data" "$ALIGN" "$MODEL" --no-verify -o "$OUT/a.onnx" -q 2>/dev/null
perf report -q -i "$OUT/perf.noverify.data" --no-children --sort dso,symbol --percent-limit 1 -g none \
  2>/dev/null > "$OUT/perf.noverify.txt"
head -25 "$OUT/perf.noverify.txt"
echo "wrote $OUT"
