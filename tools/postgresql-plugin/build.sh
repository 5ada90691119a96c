#!/usr/bin/env bash
# Makes the pulumi-postgresql resource plugin available to the Pulumi CLI on PATH, at the version the pinned
# Python SDK asks for (requirements.txt: pulumi-postgresql==X), in the PULUMI_HOME that CLI uses.
#
#   1. already installed at that version (`pulumi plugin ls`): nothing to do;
#   2. a cached build of the same sources: installed from the cache;
#   3. otherwise built offline from PULUMI_POSTGRESQL_SRC, a directory holding the provider's source archive
#      (pulumi-postgresql-v*-provider.tar.gz), the Terraform provider's (terraform-provider-postgresql-*.tar.gz)
#      and their SHA256SUMS; every other Go module comes from the Go module proxy.
#
# The cache key is the version plus the archives' checksums (never a path), so every checkout shares one build;
# a build goes to a private directory renamed into place, so an interrupted or concurrent build never leaves a
# half-written entry. Online, `pulumi plugin install resource postgresql vX` does the same without a build.
# Prints the installed plugin's directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="$(sed -n 's/^pulumi-postgresql==\([0-9.]*\).*/\1/p' "$root/requirements.txt")"
[[ -n "$version" ]] || { echo "requirements.txt pins no pulumi-postgresql==X; pin the Python SDK first" >&2; exit 1; }
command -v pulumi >/dev/null || { echo "pulumi is not on PATH; run this through \`make plugin\`" >&2; exit 1; }

# The plugin's directory in PULUMI_HOME when `pulumi plugin ls` lists it at the pinned version, else nothing.
installed_dir() {
  pulumi plugin ls --json 2>/dev/null | python3 -c '
import json, sys
if any(p.get("kind") == "resource" and p.get("name") == "postgresql" and p.get("version") == sys.argv[1]
       for p in json.load(sys.stdin) or []):
    print(sys.argv[2])' "$version" "${PULUMI_HOME:-$HOME/.pulumi}/plugins/resource-postgresql-v$version"
}

if dir="$(installed_dir)" && [[ -n "$dir" ]]; then
  echo "$dir"
  exit 0
fi

src="${PULUMI_POSTGRESQL_SRC:-}"
if [[ -z "$src" || ! -f "$src/SHA256SUMS" ]]; then
  echo "the pulumi-postgresql plugin v$version is not installed and PULUMI_POSTGRESQL_SRC (${src:-unset}) holds no" \
       "sources to build it; run \`pulumi plugin install resource postgresql v$version\` when online, or point" \
       "PULUMI_POSTGRESQL_SRC at a directory with the source archives and their SHA256SUMS" >&2
  exit 1
fi
key="$(printf '%s\n' "$version" | cat - "$src/SHA256SUMS" | sha256sum | cut -c1-16)"
cache="${PULUMI_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/junkquote-db}/pulumi-resource-postgresql-v$version-$key"
binary="$cache/pulumi-resource-postgresql"

build() {
  command -v go >/dev/null || { echo "go is required to build the pulumi-postgresql plugin v$version" >&2; exit 1; }
  (cd "$src" && sha256sum --quiet --check SHA256SUMS) >&2 \
    || { echo "the archives in $src do not match their SHA256SUMS; fetch them again" >&2; exit 1; }
  local provider_tar upstream_tar
  provider_tar="$(single "$src"/pulumi-postgresql-v*-provider.tar.gz)"
  upstream_tar="$(single "$src"/terraform-provider-postgresql-*.tar.gz)"
  mkdir -p "$(dirname "$cache")"
  work="$(mktemp -d "${cache}.building.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/src/upstream" "$work/out"
  tar -xzf "$provider_tar" -C "$work/src"
  tar -xzf "$upstream_tar" -C "$work/src/upstream"
  (cd "$work/src/upstream" && for p in ../patches/*.patch; do git apply "$p"; done)
  echo "building the pulumi-postgresql plugin v$version from $src (first time only, about 2 minutes)" >&2
  cd "$work/src/provider"
  VERSION="$version" go generate cmd/pulumi-resource-postgresql/main.go
  CGO_ENABLED=0 go build -o "$work/out/pulumi-resource-postgresql" \
    -ldflags "-X github.com/pulumi/pulumi-postgresql/provider/v3/pkg/version.Version=$version -s -w" \
    github.com/pulumi/pulumi-postgresql/provider/v3/cmd/pulumi-resource-postgresql
  cd "$root"
  # A concurrent build of the same key may have finished first; its result is identical, keep it.
  [[ -x "$binary" ]] || mv -T "$work/out" "$cache"
}

single() {
  [[ $# == 1 && -f "$1" ]] || { echo "expected exactly one archive matching $1 in $src" >&2; exit 1; }
  echo "$1"
}

[[ -x "$binary" ]] || build
pulumi plugin install resource postgresql "v$version" --file "$binary" >&2
dir="$(installed_dir)"
[[ -n "$dir" ]] || { echo "pulumi plugin install did not install the postgresql plugin v$version" >&2; exit 1; }
echo "$dir"
