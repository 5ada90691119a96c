"""What a pending batch's backfill will go through, read before it runs (for `pulumi preview` and the pull-request
review): each part's table and its size as the planner estimates it, where a stopped run left the part, and what
the login user lets the throttle see (sight.py). Read-only, and cheap on a large table: no row is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from . import progress
from .backfill import Part, load_spec
from .database_errors import database_errors
from .ledger import Ledger
from .plan import Batch
from .sight import StatsSight, stats_sight
from .steps import plan_steps
from .target import Target

# reltuples is -1 for a table never vacuumed or analyzed (PostgreSQL 14 on): not known, rather than empty.
ESTIMATE = "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END FROM pg_class c WHERE c.oid = to_regclass(%s)"
PROGRESS_TABLE = "SELECT to_regclass('schema_ledger.backfill_progress') IS NOT NULL"


@dataclass(frozen=True)
class PartOutlook:
    """One part: what it pages through, about how many rows (None: not known, or the table does not exist yet),
    and how far a stopped run's pass went (rows_done 0: from the start)."""

    part: Part
    estimated_rows: int | None
    rows_done: int = 0
    pass_done: bool = False


@dataclass(frozen=True)
class BackfillOutlook:
    """The parts; what the login user lets the throttle see; starts_over: a stopped run of another version of the
    batch (or its interrupted undo) is undone first, and the backfill starts from the beginning."""

    parts: tuple[PartOutlook, ...]
    sight: StatsSight
    starts_over: bool = False


def read_outlook(conn: psycopg.Connection, batch: Batch) -> BackfillOutlook:
    """The outlook of a batch that declares a backfill (BackfillDeclarationInvalid for a malformed one)."""
    spec = load_spec(batch)
    ledger = Ledger(conn)
    starts_over = ledger.exists() and (ledger.undo_pending(batch.name) or ledger.other_version_started(
        batch.name, {s.number: s.sha256 for s in plan_steps(batch, "migration.sql")}))
    started = not starts_over and bool(conn.execute(PROGRESS_TABLE).fetchone()[0])
    parts = []
    for part in spec.parts:
        row = conn.execute(ESTIMATE, (sql.Identifier(*part.table.split(".")).as_string(conn),)).fetchone()
        state = progress.load(conn, batch.name, part.name, spec.sha256) if started else None
        parts.append(PartOutlook(part, row[0] if row else None, state.rows_done if state else 0,
                                 state.pass_done if state else False))
    return BackfillOutlook(tuple(parts), stats_sight(conn), starts_over)


def read_outlooks(target: Target, batches: Sequence[Batch]) -> dict[str, BackfillOutlook]:
    """The outlook of each of `batches` that declares a backfill, by batch name (one connection for all)."""
    with_backfill = [b for b in batches if b.backfill]
    if not with_backfill:
        return {}
    with database_errors(target, "reading the backfill's progress"), target.connect(autocommit=True) as conn:
        return {b.name: read_outlook(conn, b) for b in with_backfill}
