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
from .syntax import statements_sha256

SCHEMA = "schema_ledger"
# batch_step.file of the row that says rollback.sql is running for the batch: to undo a batch that failed
# while being applied (no ledger row yet), or to roll back an applied one (its ledger row stays until done).
UNDO_MARKER = "undo"
ROLLBACK_MARKER = "rollback"

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
    # Added later: each statement is idempotent, so an older ledger is brought up to date in place.
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS migration_statements_sha256 text",
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS rollback_sql text",
    "ALTER TABLE schema_ledger.batch_step ADD COLUMN IF NOT EXISTS note text",
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS migration_sql text",
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS validation_sql text",
    """CREATE TABLE IF NOT EXISTS schema_ledger.batch_revision (
        id bigserial PRIMARY KEY,
        batch text NOT NULL,
        file text NOT NULL,
        sha256 text NOT NULL,
        reason text NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        recorded_by text NOT NULL,
        stack text NOT NULL
    )""",
    "COMMENT ON COLUMN schema_ledger.batch.migration_statements_sha256 IS "
    "'sha256 of migration.sql''s statements as PostgreSQL parses them (comments and layout ignored)'",
    "COMMENT ON COLUMN schema_ledger.batch.rollback_sql IS 'The rollback.sql that rolls the batch back (corrections replace it)'",
    "COMMENT ON COLUMN schema_ledger.batch.migration_sql IS 'The migration.sql as applied (rollback plans and drift checks read it when the folder is gone)'",
    "COMMENT ON COLUMN schema_ledger.batch.validation_sql IS 'The validation.sql that checks the batch (corrections replace it); refresh runs it read-only'",
    "COMMENT ON COLUMN schema_ledger.batch_step.note IS 'On a rollback or undo marker row: where and why it last stopped'",
    # Added with the declarations' checksums: NULL for a batch without the file, and on rows recorded before
    # (the next run of that batch records it, see state.verify_unchanged).
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS backfill_sha256 text",
    "ALTER TABLE schema_ledger.batch ADD COLUMN IF NOT EXISTS gate_sha256 text",
    "COMMENT ON COLUMN schema_ledger.batch.backfill_sha256 IS "
    "'sha256 of backfill.toml as parsed (comments and layout ignored) when applied; NULL: no such file, or not kept yet'",
    "COMMENT ON COLUMN schema_ledger.batch.gate_sha256 IS "
    "'sha256 of gate.toml as parsed (comments and layout ignored) when applied; NULL: no such file, or not kept yet'",
    "COMMENT ON TABLE schema_ledger.batch_revision IS "
    "'Every checksum a batch file has had while applied: applied, adopted, corrected (validation.sql, rollback.sql) "
    "or reformatted (migration.sql, same statements)'",
]
_COLUMNS = ("batch", "migration_sha256", "validation_sha256", "rollback_sha256", "applied_at", "duration_ms",
            "applied_by", "stack", "adopted", "migration_statements_sha256", "rollback_sql", "migration_sql",
            "validation_sql", "backfill_sha256", "gate_sha256")

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
    migration_statements_sha256: str | None = None
    rollback_sql: str | None = None  # None on rows recorded before the ledger kept it
    migration_sql: str | None = None  # None on rows recorded before the ledger kept the files
    validation_sql: str | None = None
    backfill_sha256: str | None = None  # None: the batch has no backfill.toml, or the row predates its checksum
    gate_sha256: str | None = None

    @property
    def checksums(self) -> dict[str, str]:
        """As Batch.checksums: the three SQL files, and the declarations the ledger has a checksum of."""
        sums = {"migration.sql": self.migration_sha256, "validation.sql": self.validation_sha256,
                "rollback.sql": self.rollback_sha256}
        declared = {"backfill.toml": self.backfill_sha256, "gate.toml": self.gate_sha256}
        return sums | {file: sha for file, sha in declared.items() if sha is not None}

    def recorded_batch(self) -> Batch | None:
        """The batch as the ledger holds it (the files it was applied with, corrections included); None for a
        row recorded before the ledger kept the files."""
        if self.migration_sql is None or self.validation_sql is None or self.rollback_sql is None:
            return None
        return Batch(self.batch, self.migration_sql, self.validation_sql, self.rollback_sql)

    @property
    def has_files(self) -> bool:
        return self.recorded_batch() is not None


class Ledger:
    """Reads and writes schema_ledger. Writes happen inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def ensure(self, grant_to: str | None = None) -> None:
        """Create the ledger if it is missing (or bring an older one up to date), and let grant_to (the role
        batches run as) write it."""
        if not self.current():
            with self.conn.transaction():
                for ddl in _DDL:
                    self.conn.execute(ddl)
        if grant_to and not self._writable_by(grant_to):
            role = sql.Identifier(grant_to)
            with self.conn.transaction():
                self.conn.execute(sql.SQL("GRANT USAGE ON SCHEMA schema_ledger TO {}").format(role))
                self.conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA schema_ledger TO {}").format(role))
                self.conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA schema_ledger TO {}").format(role))
        self.ensure_shapes(grant_to)

    def _writable_by(self, role: str) -> bool:
        row = self.conn.execute(
            """SELECT has_schema_privilege(%s, 'schema_ledger', 'USAGE')
                      AND has_table_privilege(%s, 'schema_ledger.batch', 'INSERT, UPDATE, DELETE')
                      AND has_table_privilege(%s, 'schema_ledger.batch_step', 'INSERT, UPDATE, DELETE')
                      AND has_table_privilege(%s, 'schema_ledger.batch_revision', 'INSERT')
                      AND has_sequence_privilege(%s, 'schema_ledger.batch_revision_id_seq', 'USAGE')""",
            (role,) * 5).fetchone()
        return bool(row and row[0])

    def exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass('schema_ledger.batch') IS NOT NULL AND to_regclass('schema_ledger.batch_step') IS NOT NULL"
        ).fetchone()
        return bool(row and row[0])

    def current(self) -> bool:
        """The ledger exists with every table and column this version of the engine writes."""
        row = self.conn.execute(
            """SELECT to_regclass('schema_ledger.batch_revision') IS NOT NULL
                      AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schema_ledger.batch')
                                  AND attname = 'validation_sql' AND NOT attisdropped)
                      AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schema_ledger.batch')
                                  AND attname = 'gate_sha256' AND NOT attisdropped)
                      AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schema_ledger.batch_step')
                                  AND attname = 'note' AND NOT attisdropped)"""
        ).fetchone()
        return bool(row and row[0])

    def entries(self) -> dict[str, LedgerEntry]:
        if not self.exists():
            return {}
        return {row.batch: row for row in self._select(sql.SQL("ORDER BY batch"))}

    def entry(self, batch: str) -> LedgerEntry | None:
        rows = self._select(sql.SQL("WHERE batch = %s"), (batch,))
        return rows[0] if rows else None

    def _select(self, tail: sql.Composable, params: tuple[object, ...] = ()) -> list[LedgerEntry]:
        """Ledger rows; columns an older ledger lacks read as NULL (it is brought up to date on the next run)."""
        columns = self._columns("schema_ledger.batch")
        fields = sql.SQL(", ").join(
            sql.Identifier(c) if c in columns else sql.SQL("NULL AS {}").format(sql.Identifier(c)) for c in _COLUMNS)
        query = sql.SQL("SELECT {} FROM schema_ledger.batch {}").format(fields, tail)
        with self.conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
            return cur.execute(query, params).fetchall()

    def _columns(self, table: str) -> set[str]:
        rows = self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (table,)).fetchall()
        return {r[0] for r in rows}

    def record(self, batch: Batch, *, duration_ms: int, applied_by: str, stack: str, adopted: bool = False) -> LedgerEntry:
        sums = batch.checksums
        self.forget_steps(batch.name)
        self.conn.execute(
            """INSERT INTO schema_ledger.batch (batch, migration_sha256, validation_sha256, rollback_sha256,
                   duration_ms, applied_by, stack, adopted, migration_statements_sha256, rollback_sql,
                   migration_sql, validation_sql, backfill_sha256, gate_sha256)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (batch.name, sums["migration.sql"], sums["validation.sql"], sums["rollback.sql"],
             duration_ms, applied_by, stack, adopted, statements_sha256(batch.migration), batch.rollback,
             batch.migration, batch.validation, sums.get("backfill.toml"), sums.get("gate.toml")),
        )
        for file in sums:
            self._revision(batch.name, file, sums[file], "adopted" if adopted else "applied", applied_by, stack)
        entry = self.entry(batch.name)
        assert entry is not None
        return entry

    def correct(self, batch: Batch, entry: LedgerEntry, *, recorded_by: str, stack: str) -> LedgerEntry:
        """Record the batch's current files for an applied batch whose migration.sql has the same statements:
        corrected validation.sql or rollback.sql, reformatted migration.sql. Earlier checksums stay in
        batch_revision."""
        sums = batch.checksums
        self.conn.execute(
            """UPDATE schema_ledger.batch SET migration_sha256 = %s, validation_sha256 = %s, rollback_sha256 = %s,
                   migration_statements_sha256 = %s, rollback_sql = %s, migration_sql = %s, validation_sql = %s,
                   backfill_sha256 = %s, gate_sha256 = %s
               WHERE batch = %s""",
            (sums["migration.sql"], sums["validation.sql"], sums["rollback.sql"], statements_sha256(batch.migration),
             batch.rollback, batch.migration, batch.validation, sums.get("backfill.toml"), sums.get("gate.toml"),
             batch.name),
        )
        for file, sha in sums.items():
            if entry.checksums.get(file) != sha:
                self._revision(batch.name, file, sha, _correction_reason(file, entry), recorded_by, stack)
        corrected = self.entry(batch.name)
        assert corrected is not None
        return corrected

    def keep_files(self, batch: Batch) -> None:
        """Store the files of a batch recorded before the ledger kept them (its checksums match the ledger's)."""
        sums = batch.checksums
        self.conn.execute(
            """UPDATE schema_ledger.batch SET migration_statements_sha256 = coalesce(migration_statements_sha256, %s),
                   rollback_sql = %s, migration_sql = %s, validation_sql = %s
               WHERE batch = %s AND migration_sha256 = %s AND validation_sha256 = %s AND rollback_sha256 = %s""",
            (statements_sha256(batch.migration), batch.rollback, batch.migration, batch.validation, batch.name,
             sums["migration.sql"], sums["validation.sql"], sums["rollback.sql"]))

    def _revision(self, batch: str, file: str, sha256: str, reason: str, by: str, stack: str) -> None:
        self.conn.execute(
            "INSERT INTO schema_ledger.batch_revision (batch, file, sha256, reason, recorded_by, stack) "
            "VALUES (%s, %s, %s, %s, %s, %s)", (batch, file, sha256, reason, by, stack))

    def revisions(self, batch: str) -> list[tuple[str, str, str]]:
        """(file, sha256, reason) of every revision of the batch's files, oldest first."""
        rows = self.conn.execute(
            "SELECT file, sha256, reason FROM schema_ledger.batch_revision WHERE batch = %s ORDER BY id", (batch,))
        return [tuple(r) for r in rows.fetchall()]

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

    def begin(self, batch: str, marker: str) -> None:
        """Mark that rollback.sql runs for the batch (UNDO_MARKER or ROLLBACK_MARKER); until forget_steps,
        the next run finishes it first."""
        self.conn.execute(
            """INSERT INTO schema_ledger.batch_step (batch, file, step, sha256) VALUES (%s, %s, 0, '')
               ON CONFLICT (batch, file, step) DO NOTHING""", (batch, marker))

    def stopped(self, batch: str, marker: str, note: str) -> None:
        """Where and why the rollback (or undo) of the batch last stopped."""
        self.conn.execute(
            "UPDATE schema_ledger.batch_step SET note = %s, finished_at = now() WHERE batch = %s AND file = %s AND step = 0",
            (note, batch, marker))

    def undo_pending(self, batch: str) -> bool:
        return bool(self.finished_steps(batch, UNDO_MARKER))

    def other_version_started(self, batch: str, steps: dict[int, str]) -> bool:
        """A stopped run finished steps of migration.sql that are not these (step number -> sha256): it ran
        another version of the batch, which the next run undoes before starting over."""
        return any(steps.get(number) != sha for number, sha in self.finished_steps(batch, "migration.sql").items())

    def rollbacks_in_progress(self) -> dict[str, str | None]:
        """Applied batches whose rollback started and has not finished: batch -> where it last stopped."""
        if not self.exists():
            return {}
        note = "note" if "note" in self._columns("schema_ledger.batch_step") else "NULL"
        rows = self.conn.execute(
            sql.SQL("SELECT batch, {} FROM schema_ledger.batch_step WHERE file = %s AND step = 0 ORDER BY batch").format(
                sql.SQL(note)), (ROLLBACK_MARKER,)).fetchall()
        return {batch: text for batch, text in rows}
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

    def shape_after(self, batch: str) -> Shape | None:
        """The shape recorded right after `batch` was applied (None if there is none)."""
        if not self.has_shapes():
            return None
        found = self.conn.execute("SELECT shape FROM schema_ledger.shape WHERE batch = %s", (batch,)).fetchone()
        return Shape.from_json(found[0]) if found else None

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


def _correction_reason(file: str, entry: LedgerEntry) -> str:
    """Why a file's checksum changes on an applied batch: a declaration first recorded (the row predates
    declarations' checksums), migration.sql reformatted (same statements), or a corrected file."""
    if file not in entry.checksums:
        return "recorded"
    return "reformatted" if file == "migration.sql" else "corrected"
