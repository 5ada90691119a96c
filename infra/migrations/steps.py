"""Plans a batch file into steps, using PostgreSQL's own parser (pglast). No database access.

The rule that keeps existing traffic flowing: a statement that locks a table which existed before the
batch runs alone, in its own short transaction (under lock_timeout, retried); CONCURRENTLY statements
run alone on an autocommit connection; consecutive statements that touch only objects the batch itself
created share one transaction. An explicit LOCK TABLE joins the statement after it, in one transaction: a
batch states the order in which it takes its locks (the application's order, parent table first), so that a
statement that locks two tables (a foreign key) does not deadlock with the application's transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from pglast import ast, enums

from .plan import Batch, sha256_text
from .syntax import accepted_statements

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
ROW_SHARE = "ROW SHARE"
ACCESS_SHARE = "ACCESS SHARE"

AT = enums.AlterTableType
OBJ = enums.ObjectType


@dataclass(frozen=True)
class Lock:
    """A table lock a statement takes, and whether that table existed before the batch."""

    table: str
    mode: str
    existing: bool


@dataclass(frozen=True)
class PlannedStatement:
    """One statement of a step: its SQL, where it starts, what it does and which table locks it takes."""

    sql: str
    line: int
    summary: str
    locks: tuple[Lock, ...]
    concurrent: bool = False
    index_name: str | None = None
    index_table: str | None = None  # the indexed table, quoted for to_regclass (CREATE INDEX only)
    creates_table: str | None = None
    # A query (and its parameters) returning true when this IF EXISTS drop has nothing left to drop.
    absent_probe: tuple[str, tuple[object, ...]] | None = None
    explicit_lock: bool = False  # LOCK TABLE: runs in one transaction with the statement after it

    @property
    def locks_existing_table(self) -> bool:
        return any(lock.existing for lock in self.locks)


@dataclass(frozen=True)
class Step:
    """Statements run together: in one transaction, or alone on an autocommit connection."""

    number: int
    file: str
    statements: tuple[PlannedStatement, ...]
    autocommit: bool

    @property
    def sha256(self) -> str:
        return sha256_text("\n".join(s.sql for s in self.statements))

    @property
    def line(self) -> int:
        return self.statements[0].line

    @property
    def locks_existing_table(self) -> bool:
        return any(s.locks_existing_table for s in self.statements)


def split_statements(batch: Batch, file: str) -> list[tuple[ast.Node, str, int]]:
    """(node, sql, line) for each statement; a syntax error or a refused statement names the file and line."""
    text = batch.text(file)
    return [(stmt.node, text[stmt.start:stmt.end].strip(), stmt.line) for stmt in accepted_statements(batch, file)]


@dataclass
class _Scope:
    """What the planner knows while it walks a file: the objects the batch created (a statement that only
    touches those takes no lock live traffic feels), and the batch's foreign keys from its own tables onto
    tables that existed before it (conname -> (table, referenced table)), which lock the referenced table
    when they are dropped."""

    created: set[str]
    foreign_keys: dict[str, tuple[str, str]]


@lru_cache(maxsize=256)
def plan_steps(batch: Batch, file: str) -> tuple[Step, ...]:
    """The steps of one batch file (cached: the program, the report and the runner all ask for them).

    rollback.sql is planned with what migration.sql created already known, so dropping the batch's own objects
    shares one transaction (a failure leaves them all in place), while anything on an older table runs alone."""
    scope = _batch_scope(batch) if file == "rollback.sql" else _Scope(set(), {})
    statements = [_describe(node, sql, line, scope) for node, sql, line in split_statements(batch, file)]
    return tuple(_group(file, statements))


def _batch_scope(batch: Batch) -> _Scope:
    """The objects migration.sql creates, and its foreign keys onto older tables."""
    scope = _Scope(set(), {})
    for node, sql, line in split_statements(batch, "migration.sql"):
        _describe(node, sql, line, scope)
    return scope


def _group(file: str, statements: list[PlannedStatement]) -> Iterator[Step]:
    pending: list[PlannedStatement] = []
    held: list[PlannedStatement] = []  # LOCK TABLE statements waiting for the statement they lock for
    number = 0
    for stmt in statements:
        alone = stmt.concurrent or stmt.locks_existing_table
        if (alone or stmt.explicit_lock) and pending:
            number += 1
            yield Step(number, file, tuple(pending), autocommit=False)
            pending = []
        if stmt.explicit_lock:
            held.append(stmt)
        elif held:
            number += 1
            yield Step(number, file, (*held, stmt), autocommit=False)
            held = []
        elif alone:
            number += 1
            yield Step(number, file, (stmt,), autocommit=stmt.concurrent)
        else:
            pending.append(stmt)
    for rest in (pending, held):
        if rest:
            number += 1
            yield Step(number, file, tuple(rest), autocommit=False)


def qualified(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def _describe(node: ast.Node, sql: str, line: int, scope: _Scope) -> PlannedStatement:
    created = scope.created

    def lock(table: str, mode: str) -> Lock:
        return Lock(table, mode, existing=table not in created)

    if isinstance(node, ast.CreateStmt):
        table = qualified(node.relation)
        if not node.if_not_exists:  # IF NOT EXISTS says the table may already be there, in use
            created.add(table)
        fks = [c for c in _constraints(node) if c.contype == enums.ConstrType.CONSTR_FOREIGN]
        for fk in fks:
            _remember_foreign_key(scope, fk.conname, table, qualified(fk.pktable))
        refs = sorted({qualified(c.pktable) for c in fks})
        return PlannedStatement(sql, line, f"create table {table}", tuple(lock(r, SHARE_ROW_EXCLUSIVE) for r in refs),
                         creates_table=table)
    if isinstance(node, ast.IndexStmt):
        table = qualified(node.relation)
        mode = SHARE_UPDATE_EXCLUSIVE if node.concurrent else SHARE
        how = "concurrently " if node.concurrent else ""
        created.add(f"index:{node.idxname}")
        return PlannedStatement(sql, line, f"create index {how}{node.idxname} on {table}", (lock(table, mode),),
                         concurrent=bool(node.concurrent), index_name=node.idxname,
                         index_table=quote_ident(*filter(None, (node.relation.schemaname, node.relation.relname))))
    if isinstance(node, ast.AlterTableStmt):
        return _describe_alter(node, sql, line, lock, scope)
    if isinstance(node, ast.DropStmt):
        return _describe_drop(node, sql, line, lock, scope)
    if isinstance(node, ast.LockStmt):
        mode = _LOCK_MODES[node.mode]
        tables = [qualified(rv) for rv in node.relations]
        return PlannedStatement(sql, line, f"lock table {', '.join(tables)} in {mode.lower()} mode",
                                tuple(lock(t, mode) for t in tables), explicit_lock=True)
    if isinstance(node, ast.ViewStmt):
        created.add(qualified(node.view))
    written = _written_table(node)
    mode = _GENERIC_MODES.get(type(node), ACCESS_EXCLUSIVE)
    tables = sorted({t for t in range_vars(node) if t not in created})
    locks = tuple(lock(t, mode if written in (None, t) else ACCESS_SHARE) for t in tables)
    return PlannedStatement(sql, line, _generic_summary(node), locks)


# Locks of statements the planner has no specific rule for, on every table they name that the batch did not
# create; anything not listed is assumed to take ACCESS EXCLUSIVE (RENAME, TRUNCATE, LOCK, triggers, ...).
# A statement that writes one table (INSERT, UPDATE, DELETE, MERGE) only reads the others it names.
_GENERIC_MODES: dict[type, str] = {
    ast.InsertStmt: ROW_EXCLUSIVE, ast.UpdateStmt: ROW_EXCLUSIVE, ast.DeleteStmt: ROW_EXCLUSIVE,
    ast.MergeStmt: ROW_EXCLUSIVE, ast.SelectStmt: ACCESS_SHARE, ast.ViewStmt: ACCESS_SHARE,
    ast.CreateTableAsStmt: ACCESS_SHARE, ast.CreateTrigStmt: SHARE_ROW_EXCLUSIVE,
}
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def _written_table(node: ast.Node) -> str | None:
    """The one table a DML statement writes (None for other statements: every table gets the same mode)."""
    if isinstance(node, _WRITES) and isinstance(node.relation, ast.RangeVar):
        return qualified(node.relation)
    return None


def _remember_foreign_key(scope: _Scope, name: str | None, table: str, referenced: str) -> None:
    """An unnamed one is remembered too (under a key no DROP CONSTRAINT can name): it goes with its table."""
    if table in scope.created and referenced not in scope.created:
        scope.foreign_keys[name or f"unnamed {len(scope.foreign_keys)}"] = (table, referenced)


def range_vars(node: object) -> Iterator[str]:
    """Every table (or view) name a statement mentions, anywhere in its tree."""
    if isinstance(node, ast.RangeVar):
        yield qualified(node)
    elif isinstance(node, ast.Node):
        for slot in type(node).__slots__:
            yield from range_vars(getattr(node, slot, None))
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from range_vars(item)


def _constraints(node: ast.CreateStmt) -> Iterator[ast.Constraint]:
    for elt in node.tableElts or ():
        if isinstance(elt, ast.Constraint):
            yield elt
        elif isinstance(elt, ast.ColumnDef):
            yield from (c for c in elt.constraints or () if isinstance(c, ast.Constraint))


def _describe_alter(node: ast.AlterTableStmt, sql: str, line: int, lock, scope: _Scope) -> PlannedStatement:
    table = qualified(node.relation)
    locks: dict[str, str] = {}
    actions = []
    for cmd in node.cmds:
        mode, action, ref = _alter_cmd(cmd)
        if cmd.subtype == AT.AT_AddConstraint and cmd.def_.contype == enums.ConstrType.CONSTR_FOREIGN:
            _remember_foreign_key(scope, cmd.def_.conname, table, qualified(cmd.def_.pktable))
        if cmd.subtype == AT.AT_DropConstraint and cmd.name in scope.foreign_keys:
            ref = (scope.foreign_keys.pop(cmd.name)[1], ACCESS_EXCLUSIVE)  # its triggers on the referenced table go too
        actions.append(action)
        locks[table] = _stronger(locks.get(table), mode)
        if ref:
            locks[ref[0]] = _stronger(locks.get(ref[0]), ref[1])
    return PlannedStatement(sql, line, f"alter table {table}: {', '.join(actions)}", tuple(lock(t, m) for t, m in locks.items()),
                     absent_probe=_alter_drop_probe(node))


def _alter_cmd(cmd: ast.AlterTableCmd) -> tuple[str, str, tuple[str, str] | None]:
    if cmd.subtype == AT.AT_AddColumn:
        return ACCESS_EXCLUSIVE, f"add column {cmd.def_.colname}", None
    if cmd.subtype == AT.AT_ValidateConstraint:
        return SHARE_UPDATE_EXCLUSIVE, f"validate constraint {cmd.name}", None
    if cmd.subtype == AT.AT_AddConstraint and cmd.def_.contype == enums.ConstrType.CONSTR_FOREIGN:
        valid = "" if cmd.def_.initially_valid else " not valid"
        ref = qualified(cmd.def_.pktable)
        return SHARE_ROW_EXCLUSIVE, f"add foreign key {cmd.def_.conname}{valid} -> {ref}", (ref, SHARE_ROW_EXCLUSIVE)
    if cmd.subtype == AT.AT_AddConstraint:
        return ACCESS_EXCLUSIVE, f"add constraint {cmd.def_.conname}", None
    name = AT(cmd.subtype).name.removeprefix("AT_")
    target = cmd.name or ""
    return ACCESS_EXCLUSIVE, f"{_words(name)} {target}".strip(), None


_STRENGTH = [ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
             ACCESS_EXCLUSIVE]
# LockStmt.mode is PostgreSQL's lock mode number (lockdefs.h: AccessShareLock = 1 ... AccessExclusiveLock = 8).
_LOCK_MODES = {1: ACCESS_SHARE, 2: ROW_SHARE, 3: ROW_EXCLUSIVE, 4: SHARE_UPDATE_EXCLUSIVE, 5: SHARE,
               6: SHARE_ROW_EXCLUSIVE, 7: EXCLUSIVE, 8: ACCESS_EXCLUSIVE}


def _stronger(a: str | None, b: str) -> str:
    return b if a is None or _STRENGTH.index(b) > _STRENGTH.index(a) else a


def _describe_drop(node: ast.DropStmt, sql: str, line: int, lock, scope: _Scope) -> PlannedStatement:
    created = scope.created
    names = [".".join(part.sval for part in obj) if isinstance(obj, tuple) else _name(obj) for obj in node.objects]
    kind = OBJ(node.removeType).name.removeprefix("OBJECT_").lower()
    how = "concurrently " if node.concurrent else ""
    locks: tuple[Lock, ...] = ()
    if node.removeType == OBJ.OBJECT_TABLE:
        # A dropped table's foreign keys onto older tables go with it, and lock those tables too.
        referenced = sorted({ref for table, ref in scope.foreign_keys.values() if table in names})
        locks = tuple(lock(n, ACCESS_EXCLUSIVE) for n in [*names, *referenced])
    elif node.removeType == OBJ.OBJECT_INDEX:
        mode = SHARE_UPDATE_EXCLUSIVE if node.concurrent else ACCESS_EXCLUSIVE
        locks = tuple(Lock(f"table of index {n}", mode, existing=f"index:{n}" not in created) for n in names)
    return PlannedStatement(sql, line, f"drop {kind} {how}{', '.join(names)}", locks, concurrent=bool(node.concurrent),
                     index_name=names[0] if node.removeType == OBJ.OBJECT_INDEX else None,
                     absent_probe=_drop_probe(node))


def quote_ident(*parts: str) -> str:
    """A (possibly schema-qualified) name quoted as PostgreSQL would read it back."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


_RELATION_KINDS = {OBJ.OBJECT_TABLE, OBJ.OBJECT_INDEX, OBJ.OBJECT_SEQUENCE, OBJ.OBJECT_VIEW, OBJ.OBJECT_MATVIEW}


def _drop_probe(node: ast.DropStmt) -> tuple[str, tuple[object, ...]] | None:
    if not node.missing_ok:
        return None
    if node.removeType in _RELATION_KINDS:
        names = [quote_ident(*(p.sval for p in obj)) for obj in node.objects]
        return "SELECT bool_and(to_regclass(n) IS NULL) FROM unnest(%s::text[]) AS n", (names,)
    if node.removeType == OBJ.OBJECT_TYPE:
        names = [quote_ident(*(p.sval for p in obj.names)) for obj in node.objects]
        return "SELECT bool_and(to_regtype(n) IS NULL) FROM unnest(%s::text[]) AS n", (names,)
    return None


def _alter_drop_probe(node: ast.AlterTableStmt) -> tuple[str, tuple[object, ...]] | None:
    if len(node.cmds) != 1 or not node.cmds[0].missing_ok:
        return None
    cmd, table = node.cmds[0], quote_ident(*filter(None, (node.relation.schemaname, node.relation.relname)))
    if cmd.subtype == AT.AT_DropColumn:
        return ("SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attname = %s AND attnum > 0 AND NOT attisdropped)", (table, cmd.name))
    if cmd.subtype == AT.AT_DropConstraint:
        return "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s)", (table, cmd.name)
    return None


def _name(obj: ast.Node) -> str:
    if isinstance(obj, ast.TypeName):
        return ".".join(p.sval for p in obj.names)
    return str(getattr(obj, "sval", obj))


def _generic_summary(node: ast.Node) -> str:
    if isinstance(node, ast.CreateEnumStmt):
        return f"create enum type {'.'.join(p.sval for p in node.typeName)}"
    return _words(type(node).__name__.removesuffix("Stmt"))


def _words(camel: str) -> str:
    out = "".join(f" {c.lower()}" if c.isupper() else c for c in camel)
    return out.replace("_", " ").strip()
