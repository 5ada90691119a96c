"""The per-batch `Migration` resources of stacks applied before the schema history (history.py) took the
batches over. The program no longer declares them, so the first `up` with the history removes them from
state; the provider stays importable under this name because their state refers to it.

Removing one rolls nothing back: the history has taken its batch over (its first run stores the batch's files
in the ledger), and `pulumi destroy` rolls the batches back through it. Before that (a `destroy` on a stack not
yet brought up with this version), removing one is refused, so that no batch leaves the state un-rolled-back.
A refresh leaves them as they are.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider

from infra.migrations.state import read_state
from infra.providers.connection_props import target_from_inputs
from infra.providers.errors import NotTakenOver
from infra.providers.reporting import engine_errors


class MigrationProvider(ResourceProvider):
    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise RuntimeError("per-batch Migration resources are no longer created; the schema history applies batches")

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Forget the resource once the history has its batch (the ledger keeps the batch's files)."""
        with engine_errors():
            entry = read_state(target_from_inputs(props)).entries.get(props["batch"])
            if entry is not None and not entry.has_files:
                raise NotTakenOver(props["batch"])
