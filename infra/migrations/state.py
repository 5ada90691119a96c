"""What a database's ledger says as it stands, read without changing anything: applied batches (and whether
the checkout's files still match them), rollbacks that started and did not finish, and tables a preview asks
about. The program reads it before declaring any resource; the runner asks the same questions under its lock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import psycopg

from .database_errors import database_errors
from .errors import BatchChanged, RollbackIncomplete
from .ledger import Ledger, LedgerEntry
from .plan import OPTIONAL_FILES, Batch
from .steps import plan_steps, quote_ident
from .syntax import statements_sha256
from .target import Target


@dataclass(frozen=True)
class DatabaseState:
    """What the ledger says, read in one go: applied batches, and rollbacks that started and did not finish
    (batch -> where it last stopped)."""

    entries: dict[str, LedgerEntry]
    rollbacks: dict[str, str | None]
    done_steps: dict[str, dict[int, str]] = field(default_factory=dict)  # finished rollback.sql steps
    absent_tables: frozenset[str] = frozenset()  # of the tables asked about, those the database lacks

    def pending(self, batches: Sequence[Batch]) -> tuple[Batch, ...]:
        """Batches the ledger lacks; an applied batch whose migration.sql statements changed is refused."""
        for batch in batches:
            if batch.name in self.entries:
                verify_unchanged(batch, self.entries[batch.name])
        return tuple(b for b in batches if b.name not in self.entries)

    def corrected(self, batches: Sequence[Batch]) -> tuple[Batch, ...]:
        """Applied batches whose files differ from the ledger's: corrections the next run records."""
        return tuple(b for b in batches if b.name in self.entries and b.checksums != self.entries[b.name].checksums)

    def missing(self, batches: Sequence[Batch], stack: str) -> tuple[str, ...]:
        """Batches this stack applied that have no folder among `batches`."""
        names = {b.name for b in batches}
        return tuple(name for name, entry in self.entries.items() if entry.stack == stack and name not in names)

    def rollback_incomplete(self, batch: Batch) -> RollbackIncomplete | None:
        """The error that names the batch's unfinished rollback, or None when none is under way."""
        if batch.name not in self.rollbacks:
            return None
        return incomplete(batch.name, batch, self.entries.get(batch.name), self.rollbacks[batch.name],
                           self.done_steps.get(batch.name, {}))

    def incomplete_named(self, name: str) -> RollbackIncomplete:
        """The error that names an unfinished rollback, for a batch whose files may be gone."""
        entry = self.entries.get(name)
        batch = entry.recorded_batch() if entry else None
        return incomplete(name, batch, entry, self.rollbacks.get(name), self.done_steps.get(name, {}))


def read_state(target: Target, tables: Iterable[str] = ()) -> DatabaseState:
    """The ledger as it stands (read-only; a database without a ledger has applied nothing), and which of
    `tables` (names as a batch writes them, e.g. Lead or billing.Invoice) the database lacks."""
    with database_errors(target, "reading the ledger"), target.connect(autocommit=True) as conn:
        ledger = Ledger(conn)
        rollbacks = ledger.rollbacks_in_progress()
        done = {b: ledger.finished_steps(b, "rollback.sql") for b in rollbacks}
        return DatabaseState(ledger.entries(), rollbacks, done, _absent(conn, sorted(set(tables))))


def _absent(conn: psycopg.Connection, tables: list[str]) -> frozenset[str]:
    rows = conn.execute("SELECT name FROM unnest(%s::text[], %s::text[]) AS t(name, quoted) WHERE to_regclass(quoted) IS NULL",
                        (tables, [quote_ident(*t.split(".")) for t in tables])).fetchall()
    return frozenset(r[0] for r in rows)


def applied_batches(target: Target) -> dict[str, LedgerEntry]:
    return read_state(target).entries


def verify_unchanged(batch: Batch, entry: LedgerEntry) -> None:
    """Raise BatchChanged if an applied batch's migration.sql now has other statements than were applied, or
    a declaration it was applied with (backfill.toml, gate.toml) now declares something else or is gone.
    A change of comments or layout only is a correction the next run records, as are edits of
    validation.sql and rollback.sql. A declaration the ledger has no checksum of (a row recorded before the
    ledger kept them) is recorded by the next run, as it is."""
    sums = batch.checksums
    for file in OPTIONAL_FILES:
        recorded = entry.checksums.get(file)
        if recorded is not None and sums.get(file) != recorded:
            raise BatchChanged(batch.name, file, recorded, sums.get(file, "(no file)"))
    found = sums["migration.sql"]
    if found == entry.migration_sha256:
        return
    if entry.migration_statements_sha256 is None or statements_sha256(batch.migration) != entry.migration_statements_sha256:
        raise BatchChanged(batch.name, "migration.sql", entry.migration_sha256, found)


def pending_batches(target: Target, batches: Sequence[Batch]) -> tuple[Batch, ...]:
    """Batches the ledger lacks; an applied batch whose migration.sql statements changed is refused."""
    return read_state(target).pending(batches)


def incomplete(name: str, batch: Batch | None, entry: LedgerEntry | None, stopped: str | None,
                done: dict[int, str]) -> RollbackIncomplete:
    """The unfinished rollback of an applied batch, counted against the rollback.sql it runs (when the batch's
    files are at hand)."""
    total = len(plan_steps(as_recorded(batch, entry), "rollback.sql")) if batch else None
    return RollbackIncomplete(name, len(done), total, stopped)


def as_recorded(batch: Batch, entry: LedgerEntry | None) -> Batch:
    """The batch with the rollback.sql the ledger holds for it (corrections keep it current)."""
    if entry is None or entry.rollback_sql is None:
        return batch
    return replace(batch, rollback=entry.rollback_sql)
