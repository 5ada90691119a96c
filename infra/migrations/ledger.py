"""The ledger: which batches this database has applied. This module is its only writer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .catalog import Shape
from .plan import Batch

SCHEMA = "schema_ledger"
UNDO_MARKER = "undo"  # batch_step.file of the row that says an undo of the batch is under way

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS schema_ledger",
    """CREATE TABLE IF NOT EXISTS schema_ledger.batch (
        batch text PRIMARY KEY,
        migration_sha256 text NOT NULL,
        validation_sha256 text NOT NULL,
        rollback_sha256 text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        duration_ms integer NOT NULL,
        applied_by text NOT NULL,
        stack text NOT NULL,
        adopted boolean NOT NULL DEFAULT false
    )""",
    """CREATE TABLE IF NOT EXISTS schema_ledger.batch_step (
        batch text NOT NULL,
        file text NOT NULL,
        step integer NOT NULL,
        sha256 text NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (batch, file, step)
    )""",
    "COMMENT ON SCHEMA schema_ledger IS 'Migration ledger of the junkquote-db project; written only by its migration engine'",
    "COMMENT ON TABLE schema_ledger.batch IS 'One row per applied SQL batch (sql/NNNN_slug)'",
    "COMMENT ON COLUMN schema_ledger.batch.batch IS 'Batch folder name, e.g. 0001_add_memory_entities'",
    "COMMENT ON COLUMN schema_ledger.batch.migration_sha256 IS 'sha256 of migration.sql as applied; an edited file is refused'",
    "COMMENT ON COLUMN schema_ledger.batch.validation_sha256 IS 'sha256 of validation.sql as applied'",
    "COMMENT ON COLUMN schema_ledger.batch.rollback_sha256 IS 'sha256 of rollback.sql as applied'",
    "COMMENT ON COLUMN schema_ledger.batch.applied_at IS 'When the batch finished applying and passed validation'",
    "COMMENT ON COLUMN schema_ledger.batch.duration_ms IS 'Wall time of apply and validation, in milliseconds'",
    "COMMENT ON COLUMN schema_ledger.batch.applied_by IS 'Operating-system user and host that ran the batch'",
    "COMMENT ON COLUMN schema_ledger.batch.stack IS 'Pulumi stack (or tool) that applied the batch'",
    "COMMENT ON COLUMN schema_ledger.batch.adopted IS 'True when recorded as applied without running it (baseline of a live database)'",
    "COMMENT ON TABLE schema_ledger.batch_step IS 'Steps finished by a batch still being applied; lets a crashed run resume'",
]
# Added after the first ledgers: created (and granted) on its own by ensure_shapes, so older ledgers gain it.
_SHAPE_DDL = [
    """CREATE TABLE IF NOT EXISTS schema_ledger.shape (
        batch text PRIMARY KEY,
        shape jsonb NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )""",
    "COMMENT ON TABLE schema_ledger.shape IS 'Shape of the application schema right after each batch was applied or adopted; drift is measured against the newest applied batch''s row'",
    "COMMENT ON COLUMN schema_ledger.shape.batch IS 'Batch after which the shape was read; a rolled-back batch''s row is ignored, and replaced if it is applied again'",
    "COMMENT ON COLUMN schema_ledger.shape.shape IS 'Per table its columns, indexes and constraints, per enum type its labels, as read from pg_catalog'",
    "COMMENT ON COLUMN schema_ledger.shape.recorded_at IS 'When the shape was read'",
]


@dataclass(frozen=True)
class LedgerEntry:
    batch: str
    migration_sha256: str
    validation_sha256: str
    rollback_sha256: str
    applied_at: datetime
    duration_ms: int
    applied_by: str
    stack: str
    adopted: bool

    @property
    def checksums(self) -> dict[str, str]:
        return {"migration.sql": self.migration_sha256, "validation.sql": self.validation_sha256,
                "rollback.sql": self.rollback_sha256}


class Ledger:
    """Reads and writes schema_ledger. Writes happen inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def ensure(self, grant_to: str | None = None) -> None:
        """Create the ledger if it is missing, and let grant_to (the role batches run as) write it."""
        if not self.exists():
            with self.conn.transaction():
                for ddl in _DDL:
                    self.conn.execute(ddl)
        if grant_to and not self._writable_by(grant_to):
            role = sql.Identifier(grant_to)
            with self.conn.transaction():
                self.conn.execute(sql.SQL("GRANT USAGE ON SCHEMA schema_ledger TO {}").format(role))
                self.conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA schema_ledger TO {}").format(role))
        self.ensure_shapes(grant_to)

    def _writable_by(self, role: str) -> bool:
        row = self.conn.execute(
            """SELECT has_schema_privilege(%s, 'schema_ledger', 'USAGE')
                      AND has_table_privilege(%s, 'schema_ledger.batch', 'INSERT, UPDATE, DELETE')
                      AND has_table_privilege(%s, 'schema_ledger.batch_step', 'INSERT, UPDATE, DELETE')""",
            (role, role, role)).fetchone()
        return bool(row and row[0])

    def exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass('schema_ledger.batch') IS NOT NULL AND to_regclass('schema_ledger.batch_step') IS NOT NULL"
        ).fetchone()
        return bool(row and row[0])

    def entries(self) -> dict[str, LedgerEntry]:
        if not self.exists():
            return {}
        with self.conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
            rows = cur.execute("SELECT * FROM schema_ledger.batch ORDER BY batch").fetchall()
        return {row.batch: row for row in rows}

    def entry(self, batch: str) -> LedgerEntry | None:
        with self.conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
            return cur.execute("SELECT * FROM schema_ledger.batch WHERE batch = %s", (batch,)).fetchone()

    def record(self, batch: Batch, *, duration_ms: int, applied_by: str, stack: str, adopted: bool = False) -> LedgerEntry:
        sums = batch.checksums
        self.forget_steps(batch.name)
        with self.conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
            row = cur.execute(
                """INSERT INTO schema_ledger.batch (batch, migration_sha256, validation_sha256, rollback_sha256,
                       duration_ms, applied_by, stack, adopted)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                (batch.name, sums["migration.sql"], sums["validation.sql"], sums["rollback.sql"],
                 duration_ms, applied_by, stack, adopted),
            ).fetchone()
        assert row is not None
        return row

    def remove(self, batch: str) -> None:
        self.conn.execute("DELETE FROM schema_ledger.batch WHERE batch = %s", (batch,))
        self.forget_steps(batch)

    def finished_steps(self, batch: str, file: str) -> dict[int, str]:
        rows = self.conn.execute(
            "SELECT step, sha256 FROM schema_ledger.batch_step WHERE batch = %s AND file = %s", (batch, file)
        ).fetchall()
        return {step: sha for step, sha in rows}

    def finish_step(self, batch: str, file: str, step: int, sha256: str) -> None:
        self.conn.execute(
            """INSERT INTO schema_ledger.batch_step (batch, file, step, sha256) VALUES (%s, %s, %s, %s)
               ON CONFLICT (batch, file, step) DO UPDATE SET sha256 = EXCLUDED.sha256, finished_at = now()""",
            (batch, file, step, sha256),
        )

    def forget_steps(self, batch: str) -> None:
        """Drop the batch's progress rows and its undo marker (the batch is back to not applied)."""
        self.conn.execute("DELETE FROM schema_ledger.batch_step WHERE batch = %s", (batch,))

    def begin_undo(self, batch: str) -> None:
        """Mark that rollback.sql is undoing the batch; until forget_steps, the next run finishes the undo first."""
        self.finish_step(batch, UNDO_MARKER, 0, "")

    def undo_pending(self, batch: str) -> bool:
        return bool(self.finished_steps(batch, UNDO_MARKER))

    # -- expected shapes -----------------------------------------------------------------------------
    def ensure_shapes(self, grant_to: str | None = None) -> None:
        """Create schema_ledger.shape if it is missing, and let grant_to (the role batches run as) write it."""
        if not self.has_shapes():
            with self.conn.transaction():
                for ddl in _SHAPE_DDL:
                    self.conn.execute(ddl)
        if grant_to and not self._shapes_writable_by(grant_to):
            self.conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON schema_ledger.shape TO {}").format(
                sql.Identifier(grant_to)))

    def _shapes_writable_by(self, role: str) -> bool:
        row = self.conn.execute("SELECT has_table_privilege(%s, 'schema_ledger.shape', 'SELECT, INSERT, UPDATE')",
                                (role,)).fetchone()
        return bool(row and row[0])

    def has_shapes(self) -> bool:
        row = self.conn.execute("SELECT to_regclass('schema_ledger.shape') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def record_shape(self, batch: str, shape: Shape) -> None:
        """The schema's shape right after `batch`, written in the caller's transaction (with the batch's row)."""
        self.conn.execute(
            """INSERT INTO schema_ledger.shape (batch, shape) VALUES (%s, %s)
               ON CONFLICT (batch) DO UPDATE SET shape = EXCLUDED.shape, recorded_at = now()""",
            (batch, Jsonb(shape.to_json())))

    def expected_shape(self) -> tuple[str, Shape | None] | None:
        """(newest applied batch, the shape recorded with it or None if it has none); None if nothing is applied."""
        if not self.exists():
            return None
        row = self.conn.execute("SELECT max(batch) FROM schema_ledger.batch").fetchone()
        if row is None or row[0] is None:
            return None
        newest = str(row[0])
        if not self.has_shapes():
            return newest, None
        found = self.conn.execute("SELECT shape FROM schema_ledger.shape WHERE batch = %s", (newest,)).fetchone()
        return newest, Shape.from_json(found[0]) if found else None
