"""The seeded template database, and identical per-scenario copies of it (CREATE DATABASE ... TEMPLATE)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from infra.localdb import LocalServer
from infra.migrations.plan import Batch

from . import workload

TEMPLATE = "bench_seeded"

# Everything a batch can add to or change in the public schema; compared before and after a failed apply.
CATALOG = """
SELECT 'table ' || c.relname || ' ' || c.relkind::text FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || '.' || conname || ' ' || contype::text || ' valid=' || convalidated
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text || ' valid=' || i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'type ' || t.typname FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'
ORDER BY 1
"""


@dataclass(frozen=True)
class Template:
    """The seeded database: row count, how long seeding took, and what the writers need from it."""

    name: str
    rows: int
    seconds: float
    job_ids: list[str]
    catalog: frozenset[str]


def build_template(server: LocalServer, baseline: Batch, rows: int) -> Template:
    """Create TEMPLATE, run the baseline batch's migration.sql (one transaction, as the engine does), seed it, VACUUM ANALYZE, freeze it as a template."""
    started = time.monotonic()
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    with psycopg.connect(server.dsn(TEMPLATE), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(baseline.migration)
        workload.seed(conn, rows)
        conn.execute("VACUUM (ANALYZE, FREEZE)")
        job_ids = workload.sample_job_ids(conn, rows)
        catalog = catalog_of(conn)
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                      .format(sql.Identifier(TEMPLATE)))
    return Template(TEMPLATE, rows, time.monotonic() - started, job_ids, catalog)


def catalog_of(conn: psycopg.Connection) -> frozenset[str]:
    return frozenset(row[0] for row in conn.execute(CATALOG))


def ledger_rows(conn: psycopg.Connection, batch: str) -> int:
    """Rows the migration ledger holds for a batch (applied or half-applied steps); 0 if there is no ledger."""
    if not conn.execute("SELECT to_regclass('schema_ledger.batch') IS NOT NULL").fetchone()[0]:
        return 0
    query = """SELECT (SELECT count(*) FROM schema_ledger.batch WHERE batch = %(b)s)
                    + (SELECT count(*) FROM schema_ledger.batch_step WHERE batch = %(b)s)"""
    return int(conn.execute(query, {"b": batch}).fetchone()[0])
