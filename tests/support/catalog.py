"""Catalog snapshots: what the public schema looks like, to compare before and after."""

from __future__ import annotations

import psycopg

# Everything of the public schema that a rollback must restore. Dropped columns are invisible (a dropped
# column only leaves an attisdropped placeholder), and OIDs and relnatts legitimately differ.
SNAPSHOT_QUERIES = {
    "pg_class": """SELECT relname, relkind, relpersistence, coalesce(reloptions, '{}') FROM pg_class
                   WHERE relnamespace = 'public'::regnamespace""",
    "pg_attribute": """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                              pg_get_expr(d.adbin, d.adrelid)
                       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                       WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "pg_constraint": """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated
                        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "pg_type": """SELECT t.typname, t.typtype, t.typcategory,
                         ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder)
                  FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace""",
    "pg_index": """SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid, x.indisready, x.indisunique,
                          x.indisprimary
                   FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                   WHERE i.relnamespace = 'public'::regnamespace""",
    "pg_trigger": """SELECT c.relname, k.conname, t.tgtype, t.tgfoid::regproc::text
                     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                     LEFT JOIN pg_constraint k ON k.oid = t.tgconstraint
                     WHERE c.relnamespace = 'public'::regnamespace""",
}


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {name: sorted(conn.execute(query).fetchall(), key=repr) for name, query in SNAPSHOT_QUERIES.items()}
