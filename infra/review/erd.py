"""The tables pending batches create or change, and their foreign keys, read from migration.sql with
PostgreSQL's own parser (pglast). No database access."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pglast import ast, enums

from ..migrations.plan import Batch
from ..migrations.steps import qualified
from ..migrations.syntax import parse_statements
from .model import Column, Relation, Table

CT = enums.ConstrType
AT = enums.AlterTableType


def schema_changes(batches: Sequence[Batch]) -> tuple[tuple[Table, ...], tuple[Relation, ...]]:
    """Tables in the order the batches first touch them (new ones with every column, changed ones with the
    columns added), and every foreign key the batches declare."""
    tables: dict[str, Table] = {}
    relations: list[Relation] = []
    for batch in batches:
        for stmt in parse_statements(batch, "migration.sql"):
            _read(stmt.node, tables, relations)
    keyed = {name: _mark_foreign_keys(table, relations) for name, table in tables.items()}
    return tuple(keyed.values()), tuple(relations)


def _read(node: ast.Node, tables: dict[str, Table], relations: list[Relation]) -> None:
    if isinstance(node, ast.CreateStmt):
        name = qualified(node.relation)
        elements = node.tableElts or ()
        primary = _primary_keys(name, elements)
        columns = tuple(_column(e, primary) for e in elements if isinstance(e, ast.ColumnDef))
        tables[name] = Table(name, new=True, columns=columns)
        relations.extend(_foreign_keys(name, elements))
    elif isinstance(node, ast.AlterTableStmt) and node.objtype == enums.ObjectType.OBJECT_TABLE:
        name = qualified(node.relation)
        for cmd in node.cmds or ():
            _read_alter(name, cmd, tables, relations)


def _read_alter(name: str, cmd: ast.AlterTableCmd, tables: dict[str, Table], relations: list[Relation]) -> None:
    table = tables.get(name, Table(name, new=False))
    if cmd.subtype == AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        tables[name] = Table(name, table.new, (*table.columns, _column(cmd.def_, set())))
        relations.extend(_foreign_keys(name, [cmd.def_]))
    elif cmd.subtype == AT.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        found = list(_foreign_keys(name, [cmd.def_]))
        if found:
            tables.setdefault(name, table)
            relations.extend(found)


def _primary_keys(table: str, elements: Iterable[ast.Node]) -> set[str]:
    keys = set()
    for e in elements:
        if isinstance(e, ast.Constraint) and e.contype == CT.CONSTR_PRIMARY:
            keys |= {k.sval for k in e.keys or ()}
        if isinstance(e, ast.ColumnDef) and any(c.contype == CT.CONSTR_PRIMARY for c in e.constraints or ()):
            keys.add(e.colname)
    return keys


def _column(col: ast.ColumnDef, primary: set[str]) -> Column:
    type_name = col.typeName.names[-1].sval if col.typeName and col.typeName.names else "unknown"
    array = "[]" if col.typeName and col.typeName.arrayBounds else ""
    return Column(col.colname, type_name + array, "PK" if col.colname in primary else "")


def _foreign_keys(table: str, elements: Iterable[ast.Node]) -> Iterable[Relation]:
    for e in elements:
        if isinstance(e, ast.Constraint) and e.contype == CT.CONSTR_FOREIGN:
            yield Relation(table, qualified(e.pktable), tuple(a.sval for a in e.fk_attrs or ()))
        if isinstance(e, ast.ColumnDef):
            for c in e.constraints or ():
                if c.contype == CT.CONSTR_FOREIGN:
                    yield Relation(table, qualified(c.pktable), (e.colname,))


def _mark_foreign_keys(table: Table, relations: Sequence[Relation]) -> Table:
    fk_columns = {c for r in relations if r.child == table.name for c in r.columns}
    columns = tuple(Column(c.name, c.type, ", ".join(filter(None, (c.key, "FK" if c.name in fk_columns else ""))))
                    for c in table.columns)
    return Table(table.name, table.new, columns)
