"""Prints the URN of one batch's Migration resource, read from `pulumi stack export` on stdin.

Used by `make rollback`: `pulumi stack export --stack S | python scripts/batch_urn.py 0001_add_memory_entities`.
"""

from __future__ import annotations

import json
import sys


def batch_urn(deployment: dict, batch: str) -> str | None:
    for resource in deployment.get("deployment", {}).get("resources") or []:
        if resource.get("type", "").endswith(":Migration") and resource.get("id") == batch:
            return resource["urn"]
    return None


def main() -> int:
    batch = sys.argv[1]
    urn = batch_urn(json.load(sys.stdin), batch)
    if urn is None:
        print(f"the stack has no batch '{batch}' (see `make outputs` for its applied batches)", file=sys.stderr)
        return 1
    print(urn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
