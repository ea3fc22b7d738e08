#!/usr/bin/env bash
# Step 1 of the GitHub Action (action.yml): download the released `align`
# binary for this runner, check its SHA-256, put it on PATH.
#
# Environment (set by action.yml; RUNNER_* and GITHUB_* by the runner):
#   ALIGN_VERSION   version to install: "0.1.0", "v0.1.0", "latest", or empty
#                   for the action's own ref when that is a version tag
#                   (uses: …/align@v0.1.0), else latest
#   ACTION_REF      github.action_ref
#   ACTION_REPO     github.action_repository (owner/name of this action; passed
#                   through env:, as composite run: scripts see it empty)
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_PATH, GITHUB_SERVER_URL
set -euo pipefail

# the runner's release asset; the names are those .github/workflows/release.yml
# builds (Linux: the static musl binaries, which run on any distribution)
case "$RUNNER_OS/$RUNNER_ARCH" in
    Linux/X64) target=x86_64-unknown-linux-musl ;;
    Linux/ARM64) target=aarch64-unknown-linux-musl ;;
    macOS/X64) target=x86_64-apple-darwin ;;
    macOS/ARM64) target=aarch64-apple-darwin ;;
    Windows/X64) target=x86_64-pc-windows-msvc ;;
    *) echo "::error title=align::no released align binary for $RUNNER_OS/$RUNNER_ARCH"; exit 1 ;;
esac
case "$target" in
    *windows*) asset="align-$target.zip" exe=align.exe ;;
    *) asset="align-$target.tar.gz" exe=align ;;
esac

version=${ALIGN_VERSION:-}
if [ -z "$version" ]; then
    if [[ "${ACTION_REF:-}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then version=$ACTION_REF; else version=latest; fi
fi
# empty when the action is used as `uses: ./` (a checkout of this repository,
# .github/workflows/action-test.yml): then the workflow's own repository
repo=${ACTION_REPO:-${GITHUB_REPOSITORY:-}}
[ -n "$repo" ] || { echo "::error title=align::neither github.action_repository nor GITHUB_REPOSITORY is set"; exit 1; }
releases="${GITHUB_SERVER_URL:-https://github.com}/$repo/releases"
if [ "$version" = latest ]; then
    url="$releases/latest/download/$asset"
else
    version=${version#v}
    url="$releases/download/v$version/$asset"
fi

dir="$RUNNER_TEMP/align-$version-$target"
mkdir -p "$dir"
echo "downloading $url"
curl --fail --silent --show-error --location --retry 3 -o "$dir/$asset" "$url"
curl --fail --silent --show-error --location --retry 3 -o "$dir/$asset.sha256" "$url.sha256"
expected=$(cut -d' ' -f1 <"$dir/$asset.sha256")
if command -v sha256sum >/dev/null; then
    actual=$(sha256sum "$dir/$asset" | cut -d' ' -f1)
else
    actual=$(shasum -a 256 "$dir/$asset" | cut -d' ' -f1)
fi
if [ "$expected" != "$actual" ]; then
    echo "::error title=align::$asset: SHA-256 $actual, the release says $expected"
    exit 1
fi
case "$asset" in
    *.zip) unzip -q -o "$dir/$asset" -d "$dir" ;;
    *) tar -xzf "$dir/$asset" -C "$dir" ;;
esac

installed=$("$dir/$exe" --version)
echo "installed $installed ($target)"
if [ "$version" != latest ] && [ "$installed" != "align $version" ]; then
    echo "::error title=align::asked for align $version, the release's binary says '$installed'"
    exit 1
fi
echo "$dir" >>"$GITHUB_PATH"
