"""The per-batch `Migration` resources of stacks applied before the schema history (history.py) took the
batches over. The program no longer declares them, so the first `up` with the history removes them from
state; the provider stays importable under this name because their state refers to it.

Removing one rolls nothing back: the history has taken its batch over (and `pulumi destroy` rolls the
batches back through it). A refresh leaves them as they are.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider


class MigrationProvider(ResourceProvider):
    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise RuntimeError("per-batch Migration resources are no longer created; the schema history applies batches")

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Forget the resource: its batch belongs to the schema history now, and stays applied."""
