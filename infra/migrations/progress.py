"""Where a backfill stands, per batch and part: schema_ledger.backfill_progress. This module is its only writer.

A chunk's transaction updates its part's row together with the data it moved, so after a crash the next run
starts after the last committed chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS schema_ledger",
    """CREATE TABLE IF NOT EXISTS schema_ledger.backfill_progress (
        batch text NOT NULL,
        part text NOT NULL,
        spec_sha256 text NOT NULL,
        last_key text,
        pass_done boolean NOT NULL DEFAULT false,
        rows_done bigint NOT NULL DEFAULT 0,
        rows_changed bigint NOT NULL DEFAULT 0,
        chunks integer NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (batch, part)
    )""",
    "COMMENT ON TABLE schema_ledger.backfill_progress IS 'Where each part of a batch''s backfill stands; a crashed run resumes after last_key'",
    "COMMENT ON COLUMN schema_ledger.backfill_progress.last_key IS 'Key of the last row of the last committed chunk (keyset cursor)'",
    "COMMENT ON COLUMN schema_ledger.backfill_progress.pass_done IS 'The keyset pass reached the end of the table; only sweeps remain'",
    "COMMENT ON COLUMN schema_ledger.backfill_progress.rows_done IS 'Rows the pass has gone through'",
    "COMMENT ON COLUMN schema_ledger.backfill_progress.rows_changed IS 'Rows the chunk function reported as changed (linked or moved)'",
]


@dataclass(frozen=True)
class PartProgress:
    batch: str
    part: str
    spec_sha256: str
    last_key: str | None
    pass_done: bool
    rows_done: int
    rows_changed: int
    chunks: int


def ensure(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT to_regclass('schema_ledger.backfill_progress') IS NOT NULL").fetchone()
    if row and row[0]:
        return
    with conn.transaction():
        for ddl in _DDL:
            conn.execute(ddl)


def load(conn: psycopg.Connection, batch: str, part: str, spec_sha256: str) -> PartProgress:
    """The part's progress; a row left by another version of the backfill declaration starts over."""
    with conn.cursor(row_factory=class_row(PartProgress)) as cur:
        row = cur.execute(
            """SELECT batch, part, spec_sha256, last_key, pass_done, rows_done, rows_changed, chunks
               FROM schema_ledger.backfill_progress WHERE batch = %s AND part = %s""", (batch, part)).fetchone()
    if row is None or row.spec_sha256 != spec_sha256:
        return PartProgress(batch, part, spec_sha256, None, False, 0, 0, 0)
    return row


def save(conn: psycopg.Connection, p: PartProgress) -> None:
    """Upsert inside the caller's transaction (the chunk's)."""
    conn.execute(
        """INSERT INTO schema_ledger.backfill_progress
               (batch, part, spec_sha256, last_key, pass_done, rows_done, rows_changed, chunks)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (batch, part) DO UPDATE SET spec_sha256 = EXCLUDED.spec_sha256, last_key = EXCLUDED.last_key,
               pass_done = EXCLUDED.pass_done, rows_done = EXCLUDED.rows_done, rows_changed = EXCLUDED.rows_changed,
               chunks = EXCLUDED.chunks, updated_at = now()""",
        (p.batch, p.part, p.spec_sha256, p.last_key, p.pass_done, p.rows_done, p.rows_changed, p.chunks))


def forget(conn: psycopg.Connection, batch: str) -> None:
    """Drop a batch's progress (its rollback ran: a new apply starts from the beginning)."""
    row = conn.execute("SELECT to_regclass('schema_ledger.backfill_progress') IS NOT NULL").fetchone()
    if row and row[0]:
        with conn.transaction():
            conn.execute("DELETE FROM schema_ledger.backfill_progress WHERE batch = %s", (batch,))


def of_batch(conn: psycopg.Connection, batch: str) -> list[PartProgress]:
    row = conn.execute("SELECT to_regclass('schema_ledger.backfill_progress') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return []
    with conn.cursor(row_factory=class_row(PartProgress)) as cur:
        return cur.execute(
            """SELECT batch, part, spec_sha256, last_key, pass_done, rows_done, rows_changed, chunks
               FROM schema_ledger.backfill_progress WHERE batch = %s ORDER BY started_at, part""", (batch,)).fetchall()
