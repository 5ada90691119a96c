"""A catalog snapshot of every application schema, and the differences between two snapshots. No writes.

What a rollback rehearsal compares: before the batches apply, and after they are rolled back. Per schema, the
tables and enum types as catalog.py reads them (columns with type, nullability and default; indexes; constraints
with their foreign-key actions; enum labels in order), compared with drift.py's comparison; besides, the schemas
themselves, views, sequences, functions and procedures (with their full definition) and triggers. The ledger's
schema is left out: its rows are the rollback's own record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from .catalog import LEDGER_SCHEMA, Shape, read_shape
from .drift import Difference, compare

_SCHEMAS = """SELECT nspname FROM pg_namespace
              WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', %s)
                AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' ORDER BY 1"""
# Other objects, keyed "kind schema.name" -> definition, in the schemas above.
_OTHERS = {
    "view": """SELECT n.nspname || '.' || c.relname, c.relkind::text || ': ' || pg_get_viewdef(c.oid)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('v', 'm') AND n.nspname::text = ANY(%s)""",
    "sequence": """SELECT n.nspname || '.' || c.relname,
                          format('%%s start %%s increment %%s min %%s max %%s cycle %%s', format_type(s.seqtypid, NULL),
                                 s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
                   FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname::text = ANY(%s)""",
    "function": """SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                          pg_get_functiondef(p.oid)
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname::text = ANY(%s) AND p.prokind IN ('f', 'p')
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "trigger": """SELECT n.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
                  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE NOT t.tgisinternal AND n.nspname::text = ANY(%s)""",
}


@dataclass(frozen=True)
class Snapshot:
    """The application schemas of one database at one moment."""

    shapes: Mapping[str, Shape] = field(default_factory=dict)
    others: Mapping[str, str] = field(default_factory=dict)  # "kind schema.name" -> definition


@dataclass(frozen=True)
class Change:
    """One way `after` differs from `before`, in a reviewer's terms."""

    thing: str
    change: str  # gone | left behind | changed
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.thing}: {self.detail}" if self.change == "changed" else f"{self.thing}: {self.change}"


def take_snapshot(conn: psycopg.Connection) -> Snapshot:
    """Every application schema's shape and other objects, read in one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        schemas = [row[0] for row in conn.execute(_SCHEMAS, (LEDGER_SCHEMA,))]
        shapes = {schema: read_shape(conn, schema) for schema in schemas}
        others = {f"{kind} {name}": str(definition) for kind, query in _OTHERS.items()
                  for name, definition in conn.execute(query, (schemas,))}
    return Snapshot(shapes, others)


def differences(before: Snapshot, after: Snapshot) -> list[Change]:
    """What `after` has that `before` had not, lacks, or has otherwise; empty when they are the same."""
    found: list[Change] = []
    for schema in sorted(set(before.shapes) | set(after.shapes)):
        if schema not in after.shapes:
            found.append(Change(f'schema "{schema}"', "gone"))
        elif schema not in before.shapes:
            found.append(Change(f'schema "{schema}"', "left behind"))
        else:
            found += [_change(schema, d) for d in compare(before.shapes[schema], after.shapes[schema])]
    for key in sorted(set(before.others) | set(after.others)):
        old, new = before.others.get(key), after.others.get(key)
        if old != new:
            change = "gone" if new is None else "left behind" if old is None else "changed"
            found.append(Change(key, change, "definition differs" if change == "changed" else ""))
    return found


def _change(schema: str, diff: Difference) -> Change:
    thing = f'{diff.kind} {schema}."{diff.owner}"' + (f".{diff.name}" if diff.name else "")
    change = {"missing": "gone", "extra": "left behind"}.get(diff.change, "changed")
    return Change(thing, change, diff.detail)
