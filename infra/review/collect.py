"""Gathers what a stack will do with the checked-out batches: reads its ledger (read-only), the gates, and
squawk's findings, the same way the program's preflight does (infra/preflight.py), into a StackReview."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ..gating import hold_back
from ..migrations.backfill_outlook import BackfillOutlook, read_outlooks
from ..migrations.errors import MigrationError
from ..migrations.lint import LintBlocked, LintReport, lint_batches
from ..migrations.plan import BATCH_FILES, Batch
from ..migrations.report import backfill_ending, backfill_lines, describe_correction, lock_lines, locked_tables, new_tables, step_blocks
from ..migrations.state import DatabaseState, read_state
from ..migrations.steps import plan_steps
from ..migrations.syntax import check_syntax
from ..migrations.target import Target
from ..preflight import adopts
from ..providers.connection_props import target_of
from ..providers.errors import BatchFolderMissing
from ..providers.reporting import pulumi_message
from ..providers.run_props import run_settings
from ..settings import StackSettings
from .erd import schema_changes
from .model import BatchReview, Finding, StackReview

StateReader = Callable[[Target, Iterable[str]], DatabaseState]
Linter = Callable[[Sequence[Batch]], list[LintReport]]
OutlookReader = Callable[[Target, Sequence[Batch]], dict[str, BackfillOutlook]]


def review_stack(settings: StackSettings, batches: Sequence[Batch], read: StateReader = read_state,
                 lint: Linter = lint_batches, outlooks: OutlookReader = read_outlooks) -> StackReview:
    """The review of one stack; anything that would stop `pulumi preview` or `up` becomes a blocker."""
    base = StackReview(settings.stack, settings.database.target, settings.migrations.lint)
    try:
        for batch in batches:
            check_syntax(batch)
        target = target_of(settings.database)
        state = read(target, {t for b in batches for t in locked_tables(b)})
        blockers = _blockers(settings, batches, state)
        if blockers:
            return _with(base, blockers=blockers)
        held = hold_back(batches, target, settings.backfill, settings.gates, lambda _t, c: state.pending(c))
        pending = [b for b in held.declared if b.name not in state.entries]
        reports = {r.batch: r for r in lint([b for b in pending if not adopts(settings, b)])}
        backfills = outlooks(target, [b for b in pending if not adopts(settings, b)])
    except MigrationError as err:
        return _with(base, blockers=(pulumi_message(err),))
    tables, relations = schema_changes([b for b in pending if not adopts(settings, b)])
    unaccepted = [f for r in reports.values() for f in r.unaccepted]
    blocked = (pulumi_message(LintBlocked(unaccepted)),) if unaccepted and settings.migrations.lint == "block" else ()
    return _with(base, blockers=blocked, batches=tuple(_batch(settings, b, state, pending, reports.get(b.name), backfills.get(b.name))
                                                       for b in pending),
                 waiting=held.waiting, tables=tables, relations=relations,
                 corrections=tuple(describe_correction(b, state.entries[b.name]) for b in state.corrected(batches)))


def _blockers(settings: StackSettings, batches: Sequence[Batch], state: DatabaseState) -> tuple[str, ...]:
    """A missing folder of an applied batch, unfinished rollbacks, and (raised) an edited applied batch."""
    found: list[str] = []
    start = settings.migrations.roll_back_from  # batches from there on are rolled back, not missing
    missing = [name for name in state.missing(batches, settings.stack) if start is None or name < start]
    if missing:
        found.append(pulumi_message(BatchFolderMissing(str(settings.migrations.sql_dir), missing, settings.stack)))
    found += [pulumi_message(err) for b in batches if (err := state.rollback_incomplete(b))]
    state.pending(batches)  # BatchChanged for an applied batch whose statements changed
    return tuple(found)


def _batch(settings: StackSettings, batch: Batch, state: DatabaseState, pending: Sequence[Batch],
           report: LintReport | None, backfill: BackfillOutlook | None) -> BatchReview:
    earlier = pending[:pending.index(batch)]
    created_before = {t for b in earlier for t in new_tables(b)}  # exist by the time this batch runs
    adopt = adopts(settings, batch)
    return BatchReview(
        name=batch.name,
        action="adopt" if adopt else "apply",
        steps=() if adopt else tuple(step_blocks(batch)),
        locks=() if adopt else tuple(lock_lines(batch, state.absent_tables - created_before)),
        findings=tuple(Finding(f.file, f.line, f.rule, f.message + (f" ({f.help})" if f.help else ""),
                               f.accepted_reason) for f in (report.findings if report else ())),
        checks=tuple(checks(batch)),
        sql={file: batch.text(file) for file in BATCH_FILES},
        backfill=(*backfill_lines(backfill, run_settings(settings, None).backfill.throttle),
                  f"validation.sql (below): {backfill_ending()}") if backfill else (),
        backfill_warning=backfill.sight.blind_spot if backfill else None,
    )


def checks(batch: Batch) -> list[str]:
    """Each statement of validation.sql: where it is, and the comment line just above it (what it checks)."""
    lines = batch.text("validation.sql").splitlines()
    out = []
    for step in plan_steps(batch, "validation.sql"):
        for stmt in step.statements:
            what = _comment_above(lines, stmt.line) or stmt.summary
            out.append(f"validation.sql:{stmt.line}: {what}")
    return out


def _with(base: StackReview, **changes: object) -> StackReview:
    return replace(base, **changes)  # type: ignore[arg-type]


def _comment_above(lines: list[str], line: int) -> str | None:
    """The nearest `--` comment line above a statement (blank lines skipped), without its dashes."""
    i = line - 2
    while i >= 0 and not lines[i].strip():
        i -= 1
    text = lines[i].strip() if i >= 0 else ""
    return text.strip("- ").strip() or None if text.startswith("--") else None
