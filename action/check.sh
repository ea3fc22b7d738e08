#!/usr/bin/env bash
# Step 2 of the GitHub Action (action.yml): expand the glob patterns and run
# `align check --format github` on every model they match, in one call.
#
# Environment (set by action.yml):
#   FILES      glob patterns separated by spaces or newlines; ** matches any
#              number of folders; a pattern that matches no file fails
#   MULTIPLE   the channel multiple
#   STRICT     "true": pinned dims fail too (--strict)
#   ARGS       more arguments for align check, split on spaces
set -euo pipefail
# globstar needs bash 4 (the runners' bash; macOS's /bin/bash 3.2 is not it)
if [ "${BASH_VERSINFO[0]}" -lt 4 ]; then echo "::error title=align::bash 4 or later needed, this is $BASH_VERSION"; exit 1; fi
shopt -s globstar nullglob

models=()
read -r -d '' -a patterns <<<"$FILES" || true
[ ${#patterns[@]} -gt 0 ] || { echo "::error title=align::the files input is empty"; exit 1; }
for pattern in "${patterns[@]}"; do
    # shellcheck disable=SC2206 # the pattern is meant to glob
    matched=($pattern)
    if [ ${#matched[@]} -eq 0 ]; then
        echo "::error title=align::no file matches '$pattern'"
        exit 1
    fi
    models+=("${matched[@]}")
done

opts=(--format github --multiple "${MULTIPLE:-8}")
[ "${STRICT:-false}" = true ] && opts+=(--strict)
read -r -a extra <<<"${ARGS:-}" || true
echo "align check ${opts[*]}${extra[*]:+ ${extra[*]}} (${#models[@]} models)"
exec align check "${opts[@]}" "${extra[@]}" -- "${models[@]}"
