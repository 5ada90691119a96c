"""The application's schema as Pulumi resources: one Migration per SQL batch, in order. What is checked and
told before they are declared (the ledger, the preview's account of each pending batch, lint) is preflight.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from .gating import hold_back
from .migrations.plan import Batch
from .migrations.report import lock_lines, step_lines
from .providers.backfill_props import backfill_inputs
from .providers.connection_props import connection_inputs, target_of
from .providers.migration import Migration, batch_props
from .providers.run_props import run_inputs, run_settings
from .preflight import adopts, preflight
from .settings import StackSettings


def _common_props(settings: StackSettings, role: str | None) -> dict[str, Any]:
    return {**connection_inputs(settings.database), "settings": run_inputs(run_settings(settings, role)),
            "protected": settings.migrations.protected}


class SchemaMigrations(pulumi.ComponentResource):
    """Every batch under sql/ as a Migration resource, each depending on the one before."""

    migrations: list[Migration]
    context_memory_ready: pulumi.Output[bool]
    schema_version: pulumi.Output[str]
    applied: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, settings: StackSettings, batches: Sequence[Batch], *, role: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("junkquote:schema:SchemaMigrations", name, None, opts)
        state = preflight(settings, batches, role)
        common = _common_props(settings, role)
        # Gated or paused batches wait (gating.py): not declared yet, with the reason logged.
        held = hold_back(batches, target_of(settings.database), settings.backfill, settings.gates,
                         lambda _target, candidates: state.pending(candidates))
        if held.waiting:
            pulumi.log.info(held.waiting)
        self.migrations = []
        for batch in held.declared:
            props = {**batch_props(batch), **common, "adopt": adopts(settings, batch), "plan": step_lines(batch),
                     "locks": lock_lines(batch), **backfill_inputs(batch, settings.backfill)}
            if batch.name in state.rollbacks:  # shows as an update, whose run says how to finish the rollback
                props["rollbackIncomplete"] = True
            depends = self.migrations[-1:]
            self.migrations.append(Migration(batch.name, props, pulumi.ResourceOptions(
                parent=self, depends_on=depends, protect=settings.migrations.protected)))
        self.applied = pulumi.Output.all(*[_applied(m) for m in self.migrations])
        last = self.migrations[-1] if self.migrations else None
        self.schema_version = last.id if last else pulumi.Output.from_input("none")
        self.context_memory_ready = _backfills_done(batches, self.migrations)
        self.register_outputs({"applied": self.applied, "schemaVersion": self.schema_version})


def _backfills_done(batches: Sequence[Batch], migrations: Sequence[Migration]) -> pulumi.Output[bool]:
    """True once every batch that declares a backfill is applied (its validation passed)."""
    declared = {m.pulumi_resource_name: m for m in migrations}
    wanted = [b.name for b in batches if b.backfill]
    if not wanted or any(name not in declared for name in wanted):
        return pulumi.Output.from_input(False)
    return pulumi.Output.all(*[declared[name].appliedAt for name in wanted]).apply(lambda at: all(at))


def _applied(m: Migration) -> pulumi.Output[dict[str, Any]]:
    return pulumi.Output.all(m.id, m.checksums, m.appliedAt).apply(
        lambda v: {"name": v[0], "sha256": (v[1] or {}).get("migration.sql"), "appliedAt": v[2]})
