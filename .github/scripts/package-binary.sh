#!/usr/bin/env bash
# Packs a built `align` binary as the release asset the GitHub Action
# (action/install.sh) downloads: align-TARGET.tar.gz (align-TARGET.zip for
# Windows) holding the binary, README.md, CHANGELOG.md and docs/cli.md, and
# beside it ASSET.sha256 ("HASH  ASSET", as sha256sum prints it).
#
#   package-binary.sh TARGET BINARY OUTDIR
#
# Used by .github/workflows/release.yml and by .ci/run, which installs the
# result through action/install.sh so a change of names on either side fails.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 TARGET BINARY OUTDIR" >&2; exit 2; }
target=$1 binary=$2 outdir=$3
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
case "$target" in
    *windows*) exe=align.exe; asset="align-$target.zip" ;;
    *) exe=align; asset="align-$target.tar.gz" ;;
esac
cp "$binary" "$stage/$exe"
chmod +x "$stage/$exe"
cp "$root/README.md" "$root/CHANGELOG.md" "$stage/"
cp "$root/docs/cli.md" "$stage/cli.md"
rm -f "$outdir/$asset"
case "$asset" in
    *.zip) (cd "$stage" && 7z a -tzip "$outdir/$asset" "$exe" README.md CHANGELOG.md cli.md >/dev/null) ;;
    *) tar -C "$stage" -czf "$outdir/$asset" "$exe" README.md CHANGELOG.md cli.md ;;
esac
if command -v sha256sum >/dev/null; then
    (cd "$outdir" && sha256sum "$asset" >"$asset.sha256")
else
    (cd "$outdir" && shasum -a 256 "$asset" >"$asset.sha256")
fi
echo "$outdir/$asset"
