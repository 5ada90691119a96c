"""Which tables and enum types the batches build, and which batches touch each, from the parsed SQL.

No database: this is what a preview can afford. It names the schema's objects before a pending batch has
run (so `pulumi preview` lists the tables a new batch creates), and says which objects a pending batch
changes (drift on those does not block it: the batch is the deliberate change). Index names that a
statement uses without its table (DROP INDEX, ALTER INDEX) are resolved through the indexes the batches
created and the recorded shape's indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pglast import ast, enums

from .plan import Batch
from .syntax import parse_statements

OBJ = enums.ObjectType
TABLE, ENUM = "table", "enum"
ObjectKey = tuple[str, str]
"""(kind, name): ("table", "Lead") or ("enum", "MessageRole")."""


@dataclass(frozen=True)
class SchemaObject:
    """A table or enum type the batches leave in the schema, and the batches that created or changed it."""

    kind: str
    name: str
    batches: tuple[str, ...]

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Effect:
    """What one statement does to the schema's tables and enum types."""

    creates: tuple[ObjectKey, ...] = ()
    drops: tuple[ObjectKey, ...] = ()
    touches: tuple[ObjectKey, ...] = ()
    renames: tuple[tuple[ObjectKey, ObjectKey], ...] = ()


def schema_objects(batches: Sequence[Batch], index_tables: Mapping[str, str] | None = None) -> tuple[SchemaObject, ...]:
    """The tables and enum types left after every batch in order, each with the batches that touched it."""
    history: dict[ObjectKey, list[str]] = {}
    indexes = dict(index_tables or {})
    for batch in batches:
        for effect in batch_effects(batch, indexes):
            _apply(history, effect, batch.name)
    return tuple(SchemaObject(kind, name, tuple(names)) for (kind, name), names in sorted(history.items()))


def touched_by(batches: Iterable[Batch], index_tables: Mapping[str, str] | None = None) -> frozenset[ObjectKey]:
    """Every table and enum type the batches create, change, rename or drop."""
    indexes = dict(index_tables or {})
    keys: set[ObjectKey] = set()
    for batch in batches:
        for effect in batch_effects(batch, indexes):
            keys.update(effect.creates, effect.drops, effect.touches, *effect.renames)
    return frozenset(keys)


def batch_effects(batch: Batch, indexes: dict[str, str]) -> list[Effect]:
    """The effect of each statement of migration.sql; `indexes` (index -> table) learns the indexes it creates."""
    return [_effect(node, indexes) for node in _statements(batch)]


@lru_cache(maxsize=1024)
def _statements(batch: Batch) -> tuple[ast.Node, ...]:
    """migration.sql parsed once per process (the drift guard and the resources both ask)."""
    return tuple(stmt.node for stmt in parse_statements(batch, "migration.sql"))


def _apply(history: dict[ObjectKey, list[str]], effect: Effect, batch: str) -> None:
    for key in effect.drops:
        history.pop(key, None)
    for old, new in effect.renames:
        history[new] = [*history.pop(old, []), batch]
    for key in (*effect.creates, *effect.touches):
        names = history.setdefault(key, []) if key in effect.creates else history.get(key)
        if names is not None and batch not in names:
            names.append(batch)


APP_SCHEMAS = (None, "public")  # the schema the batches build (drift reads only it): unqualified or public


def _effect(node: ast.Node, indexes: dict[str, str]) -> Effect:
    """What a statement does to the application schema's tables and enum types; objects of another schema (a
    backfill's own bookkeeping tables, say) are not the application's and have no resource."""
    if not _in_app_schema(node):
        return Effect()
    if isinstance(node, ast.CreateStmt) and node.relation.relpersistence != "t":
        return Effect(creates=((TABLE, node.relation.relname),))
    if isinstance(node, ast.CreateTableAsStmt) and node.objtype == OBJ.OBJECT_TABLE:
        return Effect(creates=((TABLE, node.into.rel.relname),))
    if isinstance(node, ast.CreateEnumStmt):
        return Effect(creates=((ENUM, _last(node.typeName)),))
    if isinstance(node, ast.AlterEnumStmt):
        return Effect(touches=((ENUM, _last(node.typeName)),))
    if isinstance(node, ast.IndexStmt):
        indexes[node.idxname] = node.relation.relname
        return Effect(touches=((TABLE, node.relation.relname),))
    if isinstance(node, ast.AlterTableStmt):
        return Effect(touches=_table_or_index(node.relation.relname, node.objtype, indexes))
    if isinstance(node, ast.DropStmt):
        return _drop(node, indexes)
    if isinstance(node, ast.RenameStmt):
        return _rename(node, indexes)
    return Effect()


def _drop(node: ast.DropStmt, indexes: dict[str, str]) -> Effect:
    if node.removeType == OBJ.OBJECT_TABLE:
        return Effect(drops=tuple((TABLE, _last(names)) for names in node.objects))
    if node.removeType == OBJ.OBJECT_TYPE:
        return Effect(drops=tuple((ENUM, _last(t.names)) for t in node.objects))
    if node.removeType == OBJ.OBJECT_INDEX:
        return Effect(touches=tuple(k for names in node.objects for k in _table_or_index(_last(names), OBJ.OBJECT_INDEX, indexes)))
    return Effect()


def _rename(node: ast.RenameStmt, indexes: dict[str, str]) -> Effect:
    if node.renameType == OBJ.OBJECT_TABLE:
        return Effect(renames=(((TABLE, node.relation.relname), (TABLE, node.newname)),))
    if node.renameType == OBJ.OBJECT_TYPE:
        return Effect(renames=(((ENUM, _last(node.object)), (ENUM, node.newname)),))
    if node.renameType == OBJ.OBJECT_INDEX:
        table = indexes.pop(node.relation.relname, None)
        if table:
            indexes[node.newname] = table
        return Effect(touches=((TABLE, table),) if table else ())
    if node.relation is not None:  # a column or a constraint of a table
        return Effect(touches=((TABLE, node.relation.relname),))
    return Effect()


def _table_or_index(name: str, objtype: int, indexes: Mapping[str, str]) -> tuple[ObjectKey, ...]:
    if objtype == OBJ.OBJECT_INDEX:
        return ((TABLE, indexes[name]),) if name in indexes else ()
    return ((TABLE, name),)


def _in_app_schema(node: ast.Node) -> bool:
    relation = node.into.rel if isinstance(node, ast.CreateTableAsStmt) else getattr(node, "relation", None)
    if isinstance(relation, ast.RangeVar):
        return relation.schemaname in APP_SCHEMAS
    names = getattr(node, "typeName", None)
    if isinstance(node, (ast.CreateEnumStmt, ast.AlterEnumStmt)) and names and len(names) > 1:
        return str(names[0].sval) in APP_SCHEMAS
    return True


def _last(names: Sequence[ast.String]) -> str:
    return str(names[-1].sval)
