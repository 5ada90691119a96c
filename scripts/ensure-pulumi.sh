#!/usr/bin/env bash
# Prints the directory holding a usable Pulumi CLI (pulumi + pulumi-language-python): a `pulumi` already on
# PATH at or above the pinned version, otherwise the one built (and cached) by tools/pulumi/build.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pinned="$(sed -n 's|^\tgithub.com/pulumi/pulumi/sdk/v3 v\([0-9.]*\).*|\1|p' "$root/tools/pulumi/go.mod")"

if found="$(command -v pulumi 2>/dev/null)" && command -v pulumi-language-python >/dev/null 2>&1; then
  have="$(pulumi version 2>/dev/null | sed 's/^v//')"
  if [[ -n "$have" && "$(printf '%s\n%s\n' "$pinned" "$have" | sort -V | head -n1)" == "$pinned" ]]; then
    dirname "$found"
    exit 0
  fi
fi
exec "$root/tools/pulumi/build.sh"
