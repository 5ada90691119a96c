"""What the program checks and tells before it declares the schema's resources, in preview and in up: the
syntax of every batch, the ledger (a missing folder, an unfinished rollback, changed statements), and in a
preview the account of each pending batch and correction, with its lint findings."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from .migrations.errors import BatchFolderMissing
from .migrations.lint import check_syntax, enforce, lint_batches
from .migrations.plan import Batch
from .migrations.report import describe_adoption, describe_batch, describe_correction, locked_tables, new_tables
from .migrations.state import DatabaseState, read_state
from .providers.connection_props import target_of
from .providers.run_props import run_settings
from .settings import StackSettings


def adopts(settings: StackSettings, batch: Batch) -> bool:
    """The baseline of a live database is adopted (its checks run, none of its statements)."""
    return settings.migrations.adopt_baseline and batch.number == 0


def describe_roll_back(start: str, state: DatabaseState, stack: str) -> str:
    """What `migrations.rollBackFrom` does on this run."""
    names = sorted((n for n, e in state.entries.items() if n >= start and e.stack == stack), reverse=True)
    held = f"batches from {start} on are not applied while junkquote-db:migrations.rollBackFrom is set"
    if not names:
        return f"{held}; none of them is applied"
    return f"rolls back {', '.join(names)} (newest first, with the files the ledger keeps); {held}"


def preflight(settings: StackSettings, batches: Sequence[Batch], role: str | None) -> DatabaseState:
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
        pulumi.log.info(describe_roll_back(start, state, settings.stack))
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
        run = run_settings(settings, role)
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
