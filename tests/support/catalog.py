"""Catalog snapshots: what a schema looks like, to compare before and after."""

from __future__ import annotations

import psycopg

SNAPSHOT_QUERIES = {
    "relations": """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public' ORDER BY 1""",
    "columns": """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated
                      FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), indisvalid
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1""",
    "types": """SELECT t.typname, coalesce(string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), '')
                FROM pg_type t LEFT JOIN pg_enum e ON e.enumtypid = t.oid
                WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e' GROUP BY 1 ORDER BY 1""",
}


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Tables, columns, constraints, indexes and enum types of the public schema."""
    return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}
