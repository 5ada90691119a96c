"""What the program checks and tells before it declares the schema's resources, in preview and in up: the
syntax of every batch, the ledger (a missing folder, an unfinished rollback, changed statements), and in a
preview the account of each pending batch and correction, with its lint findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from .gating import Held, hold_back

from .migrations.backfill_outlook import BackfillOutlook, read_outlooks
from .migrations.lint import check_syntax, enforce, lint_batches
from .migrations.plan import Batch
from .migrations.runner import RunSettings
from .migrations.report import describe_adoption, describe_batch, describe_correction, locked_tables, new_tables
from .migrations.state import DatabaseState, read_state
from .providers.connection_props import target_of
from .providers.errors import BatchFolderMissing, RollbackRefused
from .providers.reporting import pulumi_message
from .providers.run_props import run_settings
from .settings import StackSettings

FULL_SQL = "  full SQL: `pulumi preview --diff --show-full-output` (properties migrationSql, validationSql, rollbackSql)"


def adopts(settings: StackSettings, batch: Batch) -> bool:
    """The baseline of a live database is adopted (its checks run, none of its statements)."""
    return settings.migrations.adopt_baseline and batch.number == 0


def _account(settings: StackSettings, batch: Batch, run: RunSettings, absent: frozenset[str],
             backfill: BackfillOutlook | None) -> str:
    """What a pending batch will do; for one that runs its SQL, how to see all of it."""
    if adopts(settings, batch):
        return describe_adoption(batch, settings.database.target, run, absent)
    return f"{describe_batch(batch, settings.database.target, run, absent, backfill)}\n{FULL_SQL}"


def check_roll_back(start: str, settings: StackSettings, state: DatabaseState) -> str:
    """What a deliberate rollback does on this run; refused on a protected stack, or when the batch named is not
    one this stack applied (a typo would otherwise roll back the wrong batches)."""
    stack = settings.stack
    if settings.migrations.protected:
        raise RollbackRefused(start, stack, "the stack is protected (junkquote-db:migrations.protected)")
    entry = state.entries.get(start)
    if entry is None or entry.stack != stack:
        mine = [n for n, e in state.entries.items() if e.stack == stack]
        raise RollbackRefused(start, stack, f"the stack has not applied it (applied: {', '.join(mine) or 'none'})")
    names = sorted((n for n, e in state.entries.items() if n >= start and e.stack == stack), reverse=True)
    return (f"this run rolls back {', '.join(names)} (newest first, with the files the ledger keeps); the next "
            "`pulumi up` applies them again unless their folders are gone from the checkout")


@dataclass(frozen=True)
class Preflight:
    """The ledger as read before the resources are declared, and which batches the program declares now."""

    state: DatabaseState
    held: Held


def preflight(settings: StackSettings, batches: Sequence[Batch], role: str | None) -> Preflight:
    """Before any resource is declared, in preview and in up: the syntax of every batch; the ledger, so that an
    applied batch whose folder is missing stops the run (declaring the others would roll it back) and an
    unfinished rollback is named. In a preview, what each pending batch will do, each correction, and the lint
    findings; a blocking lint policy is enforced in `up` too, so `pulumi up --skip-preview` cannot bypass it."""
    for batch in batches:
        check_syntax(batch)
    state = read_state(target_of(settings.database), {t for b in batches for t in locked_tables(b)})
    start = settings.migrations.roll_back_from
    missing = [name for name in state.missing(batches, settings.stack) if start is None or name < start]
    if missing:
        raise BatchFolderMissing(str(settings.migrations.sql_dir), missing, settings.stack)
    pending = state.pending([b for b in batches if start is None or b.name < start])
    if start:
        pulumi.log.info(check_roll_back(start, settings, state))
    # Gated or paused batches wait (gating.py): not declared yet, with the reason logged.
    held = hold_back(batches, target_of(settings.database), settings.backfill, settings.gates,
                     lambda _target, candidates: state.pending(candidates))
    if held.waiting:
        pulumi.log.info(held.waiting)
    for batch in batches:
        incomplete = state.rollback_incomplete(batch)
        if incomplete:
            pulumi.log.warn(pulumi_message(incomplete))
    dry_run = pulumi.runtime.is_dry_run()
    if not dry_run and settings.migrations.lint != "block":
        return Preflight(state, held)
    to_lint = [b for b in pending if not adopts(settings, b)]  # an adopted batch runs none of its statements
    warnings = enforce(lint_batches(to_lint), settings.migrations.lint) if to_lint else []
    if dry_run:
        run = run_settings(settings, role)
        for batch in state.corrected(batches):
            pulumi.log.info(describe_correction(batch, state.entries[batch.name]))
        created_before: set[str] = set()  # tables an earlier pending batch creates exist by the time it runs
        declared = [b for b in pending if b in held.declared]  # a waiting batch is told by held.waiting
        outlooks = read_outlooks(target_of(settings.database), [b for b in declared if not adopts(settings, b)])
        for batch in declared:
            outlook = outlooks.get(batch.name)
            pulumi.log.info(_account(settings, batch, run, state.absent_tables - created_before, outlook))
            if outlook and outlook.sight.blind_spot:
                pulumi.log.warn(f"batch {batch.name}: {outlook.sight.blind_spot}")
            created_before |= new_tables(batch)
        for line in warnings:
            pulumi.log.warn(line)
    return Preflight(state, held)
