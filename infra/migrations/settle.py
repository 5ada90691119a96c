"""The tables a batch's checks read, as heaps to read page range by page range (backfill.py paces the reads).

A range is read with a TID range scan (WHERE ctid >= '(first,0)' AND ctid < '(end,0)', PostgreSQL 14+): only those
pages, each tuple's visibility checked, which sets its hint bits and lets the page be pruned, the WAL a later scan
of the page would otherwise write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

DEFAULT_ROWS_PER_PAGE = 50.0  # a table never analyzed: about a hundred-byte row's worth


@dataclass(frozen=True)
class Heap:
    """A table's heap as it stood when its settling started: its pages, and the rows a page holds on average."""

    schema: str
    name: str
    pages: int
    rows_per_page: float

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema != "public" else self.name

    def pages_for(self, rows: int) -> int:
        """The pages that hold about `rows` rows (at least one)."""
        return max(1, int(rows / self.rows_per_page))

    def rows_in(self, pages: int) -> int:
        return max(1, int(pages * self.rows_per_page))


def heaps(conn: psycopg.Connection, tables: Sequence[tuple[str, ...]]) -> list[Heap]:
    """The plain tables among `tables` (names as written, schema-qualified or found on the search_path) that exist
    and have pages, in that order, each once. Views, CTE names and partitioned parents have no heap of their own."""
    found: list[Heap] = []
    for parts in tables:
        row = conn.execute(
            """SELECT n.nspname, c.relname, pg_relation_size(c.oid) / current_setting('block_size')::int,
                      CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm')""",
            (sql.Identifier(*parts).as_string(conn),)).fetchone()
        if row is None or row[2] == 0:
            continue
        heap = Heap(row[0], row[1], int(row[2]), float(row[3] or DEFAULT_ROWS_PER_PAGE))
        if all((h.schema, h.name) != (heap.schema, heap.name) for h in found):
            found.append(heap)
    return found


def read_pages(conn: psycopg.Connection, heap: Heap, first: int, count: int) -> int:
    """Read pages [first, first + count) of the heap, every tuple's visibility checked; the tuples visible."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE ctid >= %s::tid AND ctid < %s::tid").format(
        sql.Identifier(heap.schema, heap.name))
    return int(conn.execute(query, (f"({first},0)", f"({first + count},0)")).fetchone()[0])
