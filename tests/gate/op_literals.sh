#!/usr/bin/env bash
# Counts string literals naming an ONNX op in production code outside src/ops (issue 17's
# measure; done when ≤ 15). Ops are the names in the op table (every `e("Name"` in src/ops*)
# plus the control-flow ops align names without listing them; production code is every
# src/**/*.rs except src/ops*, the test-only files (testutil.rs, passes/proptests.rs) and each
# file's trailing `mod tests { … }`.
#   tests/gate/op_literals.sh        # per-file counts and the total
set -euo pipefail
cd "$(dirname "$0")/../.."
ops="$( (grep -rhoE 'e\("[A-Za-z0-9]+"' src/ops* | sed -E 's/e\("([^"]+)"/\1/'; printf '%s\n' If Loop Scan) | sort -u)"
total=0
for f in $(find src -name '*.rs' ! -path 'src/ops*' ! -name testutil.rs ! -name proptests.rs | LC_ALL=C sort); do
    n="$(awk '/^mod tests \{/{exit} {print}' "$f" | grep -oE '"[A-Za-z0-9]+"' | tr -d '"' | grep -cxF "$ops" || true)"
    if [ "$n" -gt 0 ]; then printf '%4d %s\n' "$n" "$f"; fi
    total=$((total + n))
done
echo "total: $total"
