"""The application's schema as Pulumi resources: one Migration per SQL batch, in order.

During a preview the component also reads the ledger (read-only) to find the pending batches, and for
each one logs what will run and which locks it takes, and lints it (squawk) under the stack's policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from .migrations.errors import BatchFolderMissing
from .gating import hold_back
from .migrations.lint import check_syntax, enforce, lint_batches
from .migrations.plan import Batch
from .migrations.report import (
    describe_adoption,
    describe_batch,
    describe_correction,
    lock_lines,
    locked_tables,
    new_tables,
    step_lines,
)
from .migrations.runner import RunSettings
from .migrations.state import DatabaseState, read_state
from .migrations.target import Target
from .providers.backfill_props import backfill_inputs
from .providers.inputs import connection_inputs
from .providers.migration import Migration, batch_props
from .settings import DatabaseSettings, StackSettings


def run_settings(settings: StackSettings, role: str | None) -> RunSettings:
    m = settings.migrations
    return RunSettings(stack=settings.stack, lock_timeout_ms=m.lock_timeout_ms, statement_timeout_ms=m.statement_timeout_ms,
                       lock_retries=m.lock_retries, lock_wait_ms=m.lock_wait_ms, role=role)


def engine_target(db: DatabaseSettings) -> Target:
    return Target(host=db.host, port=db.port, dbname=db.name, user=db.user, password=db.password, sslmode=db.sslmode)


def database_inputs(db: DatabaseSettings) -> dict[str, Any]:
    return connection_inputs(db.host, db.port, db.name, db.user, db.sslmode, db.password)


def _common_props(settings: StackSettings, run: RunSettings) -> dict[str, Any]:
    return {
        **database_inputs(settings.database),
        "settings": {"stack": run.stack, "lockTimeoutMs": run.lock_timeout_ms, "statementTimeoutMs": run.statement_timeout_ms,
                     "lockRetries": run.lock_retries, "lockWaitMs": run.lock_wait_ms, "role": run.role},
        "protected": settings.migrations.protected,
    }


class SchemaMigrations(pulumi.ComponentResource):
    """Every batch under sql/ as a Migration resource, each depending on the one before."""

    migrations: list[Migration]
    context_memory_ready: pulumi.Output[bool]
    schema_version: pulumi.Output[str]
    applied: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, settings: StackSettings, batches: Sequence[Batch], *, role: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("junkquote:schema:SchemaMigrations", name, None, opts)
        run = run_settings(settings, role)
        state = preflight(settings, batches, run)
        common = _common_props(settings, run)
        # Gated or paused batches wait (gating.py): not declared yet, with the reason logged.
        held = hold_back(batches, engine_target(settings.database), settings.backfill, settings.gates,
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


def adopts(settings: StackSettings, batch: Batch) -> bool:
    """The baseline of a live database is adopted (its checks run, none of its statements)."""
    return settings.migrations.adopt_baseline and batch.number == 0


def preflight(settings: StackSettings, batches: Sequence[Batch], run: RunSettings) -> DatabaseState:
    """Before any resource is declared, in preview and in up: the syntax of every batch; the ledger, so that an
    applied batch whose folder is missing stops the run (declaring the others would roll it back) and an
    unfinished rollback is named. In a preview, what each pending batch will do, each correction, and the lint
    findings; a blocking lint policy is enforced in `up` too, so `pulumi up --skip-preview` cannot bypass it."""
    for batch in batches:
        check_syntax(batch)
    state = read_state(engine_target(settings.database), {t for b in batches for t in locked_tables(b)})
    missing = state.missing(batches, settings.stack)
    if missing:
        raise BatchFolderMissing(str(settings.migrations.sql_dir), missing, settings.stack)
    pending = state.pending(batches)
    for batch in batches:
        incomplete = state.rollback_incomplete(batch)
        if incomplete:
            pulumi.log.warn(str(incomplete))
    dry_run = pulumi.runtime.is_dry_run()
    if not dry_run and settings.migrations.lint != "block":
        return state
    to_lint = [b for b in pending if not adopts(settings, b)]  # an adopted batch runs none of its statements
    warnings = enforce(lint_batches(to_lint), settings.migrations.lint) if to_lint else []
    if dry_run:
        for batch in state.corrected(batches):
            pulumi.log.info(describe_correction(batch, state.entries[batch.name]))
        created_before: set[str] = set()  # tables an earlier pending batch creates exist by the time it runs
        for batch in pending:
            describe = describe_adoption if adopts(settings, batch) else describe_batch
            pulumi.log.info(describe(batch, settings.database.target, run, state.absent_tables - created_before))
            created_before |= new_tables(batch)
        for line in warnings:
            pulumi.log.warn(line)
    return state
