#!/usr/bin/env bash
# Builds the Pulumi CLI and a Python language host from the published Go modules pinned in go.mod,
# and installs the SDK's two Python shims next to them. The result is cached per version, so a second
# run costs nothing. Prints the bin directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's|^\tgithub.com/pulumi/pulumi/sdk/v3 \(v[0-9.]*\).*|\1|p' "$here/go.mod")"
cache="${PULUMI_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/junkquote-db}/pulumi-$version"
bin="$cache/bin"
stamp="$bin/.complete-$(sha256sum "$here/go.mod" "$here/go.sum" "$here/cmd/pulumi-language-python/main.go" | sha256sum | cut -c1-16)"

if [[ -f "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build the Pulumi CLI $version (or put pulumi >= $version on PATH)" >&2; exit 1; }
mkdir -p "$bin"
ldflags="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version"
cd "$here"
echo "building pulumi $version into $bin (first time only, several minutes)" >&2
go build -ldflags "$ldflags" -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
go build -ldflags "$ldflags" -o "$bin/pulumi-language-python" ./cmd/pulumi-language-python

sdk="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"
rm -f "$bin"/.complete-*
touch "$stamp"
echo "$bin"
