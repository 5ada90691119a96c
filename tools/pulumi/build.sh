#!/usr/bin/env bash
# Builds the Pulumi CLI and a Python language host from the published Go modules pinned in go.mod,
# and installs the SDK's two Python shims next to them. The cache key is the version plus the content of
# go.mod, go.sum and the language host's source, never their paths: every checkout of the same sources shares
# one build, and builds of different sources sit side by side. Prints the bin directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's|^\tgithub.com/pulumi/pulumi/sdk/v3 \(v[0-9.]*\).*|\1|p' "$here/go.mod")"
key="$(cd "$here" && cat go.mod go.sum cmd/pulumi-language-python/*.go | sha256sum | cut -c1-16)"
cache="${PULUMI_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/junkquote-db}/pulumi-$version-$key"
bin="$cache/bin"
stamp="$bin/.complete"

if [[ -f "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build the Pulumi CLI $version (or put pulumi >= $version on PATH)" >&2; exit 1; }
# Build into a private directory and rename it into place: a concurrent or interrupted build never leaves a
# half-written cache entry behind.
mkdir -p "$(dirname "$cache")"
work="$(mktemp -d "${cache}.building.XXXXXX")"
trap 'rm -rf "$work"' EXIT
ldflags="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version"
cd "$here"
echo "building pulumi $version into $bin (first time only, several minutes)" >&2
go build -ldflags "$ldflags" -o "$work/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
go build -ldflags "$ldflags" -o "$work/bin/pulumi-language-python" ./cmd/pulumi-language-python

sdk="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$work/bin/pulumi-language-python-exec"
install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$work/bin/pulumi-resource-pulumi-python"
touch "$work/bin/.complete"
# A concurrent build of the same key may have finished first; its result is identical, keep it.
[[ -f "$stamp" ]] || mv -T "$work" "$cache"
echo "$bin"
