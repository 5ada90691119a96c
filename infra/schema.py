"""The application's schema history as one Pulumi resource (providers/history.py): every applied batch by
its checksums, and in full the batches this run applies, corrects or rolls back. What is checked and told
before it is declared (the ledger, the preview's account of each pending batch, lint) is preflight.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from .migrations.plan import Batch
from .providers.backfill_props import backfill_inputs
from .providers.batch_props import batch_inputs
from .providers.connection_props import connection_inputs
from .providers.history import SchemaHistory
from .providers.run_props import run_inputs, run_settings
from .preflight import Preflight, adopts, preflight
from .settings import StackSettings


class SchemaMigrations(pulumi.ComponentResource):
    """The batches under sql/ as the stack's SchemaHistory: applied in order, rolled back newest first."""

    history: SchemaHistory
    context_memory_ready: pulumi.Output[bool]
    schema_version: pulumi.Output[str]
    applied: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, settings: StackSettings, batches: Sequence[Batch], *, role: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("junkquote:schema:SchemaMigrations", name, None, opts)
        ready = preflight(settings, batches, role)
        self.history = SchemaHistory("history", history_inputs(settings, batches, ready, role), pulumi.ResourceOptions(
            parent=self, protect=settings.migrations.protected))
        self.applied = self.history.batches
        self.schema_version = self.history.schemaVersion
        self.context_memory_ready = _backfills_done(batches, self.history.batches)
        self.register_outputs({"applied": self.applied, "schemaVersion": self.schema_version})

    @property
    def migrations(self) -> list[pulumi.Resource]:
        """What must exist before anything that uses the schema (grants, the schema's objects)."""
        return [self.history]


def history_inputs(settings: StackSettings, batches: Sequence[Batch], ready: Preflight,
                   role: str | None) -> dict[str, Any]:
    """The history's inputs: where and how it runs, the applied batches' checksums, and in full what runs now
    (the pending batches that do not wait on a gate or a paused backfill)."""
    state, start = ready.state, settings.migrations.roll_back_from
    kept = [b for b in batches if start is None or b.name < start]
    pending = state.pending([b for b in ready.held.declared if b in kept])
    applied = [b for b in kept if b.name in state.entries]
    corrections = [b for b in applied if b.checksums != state.entries[b.name].checksums or not state.entries[b.name].has_files]
    to_roll_back = sorted(n for n, e in state.entries.items() if start and n >= start and e.stack == settings.stack)
    return {
        **connection_inputs(settings.database),
        "settings": run_inputs(run_settings(settings, role)),
        "backfill": backfill_inputs(settings.backfill),
        "protected": settings.migrations.protected,
        "applied": {b.name: b.checksums for b in applied},
        "pending": [batch_inputs(b, adopt=adopts(settings, b)) for b in pending],
        "corrections": [batch_inputs(b, described=False) for b in corrections],
        "rollBackFrom": to_roll_back[0] if to_roll_back else None,
        "rollbackIncomplete": sorted(state.rollbacks),
    }


def _backfills_done(batches: Sequence[Batch], applied: pulumi.Output[list[dict[str, Any]]]) -> pulumi.Output[bool]:
    """True once every batch that declares a backfill is applied (its validation passed)."""
    wanted = {b.name for b in batches if b.backfill}
    if not wanted:
        return pulumi.Output.from_input(False)
    return applied.apply(lambda rows: wanted <= {r["name"] for r in rows or []})
