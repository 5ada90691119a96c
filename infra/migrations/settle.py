"""The tables a batch's checks scan in full, as heaps to read page range by page range (backfill.py paces the reads).

A range is read with a TID range scan (WHERE ctid >= '(first,0)' AND ctid < '(end,0)', PostgreSQL 14+): only those
pages, each tuple's visibility checked, which sets its hint bits and lets the page be pruned: the WAL a later scan of
the page would otherwise write. Such a scan uses no ring buffer: the pages it reads enter shared_buffers like any read
of the application's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

DEFAULT_ROWS_PER_PAGE = 50.0  # a table never analyzed: about a hundred-byte row's worth
MAX_ROWS_PER_PAGE = 291.0  # MaxHeapTuplesPerPage with 8 kB pages


@dataclass(frozen=True)
class Heap:
    """A table's heap as found before the reads: its pages, and the rows a page holds on average."""

    schema: str
    name: str
    pages: int
    rows_per_page: float

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema != "public" else self.name

    def pages_for(self, rows: int) -> int:
        """The pages that hold about `rows` rows (at least one)."""
        return max(1, round(rows / self.rows_per_page))


# Skipped rather than waited for or failed on: the checks read the table anyway, only unpaced.
SKIPPED = (pg_errors.LockNotAvailable, pg_errors.UndefinedTable, pg_errors.InsufficientPrivilege)


def heaps(conn: psycopg.Connection, tables: Sequence[tuple[str, str]]) -> list[Heap]:
    """The permanent plain tables among (schema, name) `tables` that have pages, in that order. A table being
    altered (its lock not granted within lock_timeout), dropped meanwhile, or not readable here is left out."""
    found: list[Heap] = []
    for schema, name in tables:
        try:
            row = conn.execute(
                """SELECT pg_relation_size(c.oid) / current_setting('block_size')::int,
                          CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages END
                   FROM pg_class c
                   WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm') AND c.relpersistence = 'p'""",
                (sql.Identifier(schema, name).as_string(conn),)).fetchone()
        except SKIPPED:
            continue
        if row is None or not row[0]:
            continue
        per_page = min(max(float(row[1] or DEFAULT_ROWS_PER_PAGE), 1.0), MAX_ROWS_PER_PAGE)
        found.append(Heap(schema, name, int(row[0]), per_page))
    return found


def read_pages(conn: psycopg.Connection, heap: Heap, first: int, count: int) -> int:
    """Read pages [first, first + count) of the heap, every tuple's visibility checked; the tuples visible."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE ctid >= %s::tid AND ctid < %s::tid").format(
        sql.Identifier(heap.schema, heap.name))
    return int(conn.execute(query, (f"({first},0)", f"({first + count},0)")).fetchone()[0])
