"""Plans a batch file into steps, using PostgreSQL's own parser (pglast). No database access.

The rule that keeps existing traffic flowing: a statement that locks a table which existed before the
batch runs alone, in its own short transaction (under lock_timeout, retried); CONCURRENTLY statements
run alone on an autocommit connection; consecutive statements that touch only objects the batch itself
created share one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pglast import ast, enums, parser
from pglast.parser import ParseError

from .errors import SqlSyntaxError, UnsupportedStatement
from .plan import sha256_text

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
ROW_SHARE = "ROW SHARE"

AT = enums.AlterTableType
OBJ = enums.ObjectType
_REFUSED = {
    "TransactionStmt": "manages its own transaction (BEGIN/COMMIT); the engine runs each step in its own transaction",
    "VariableSetStmt": "sets a session variable (SET); the engine sets lock_timeout and statement_timeout itself",
}


@dataclass(frozen=True)
class Lock:
    """A table lock a statement takes, and whether that table existed before the batch."""

    table: str
    mode: str
    existing: bool


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int
    summary: str
    locks: tuple[Lock, ...]
    concurrent: bool = False
    index_name: str | None = None
    creates_table: str | None = None

    @property
    def locks_existing_table(self) -> bool:
        return any(lock.existing for lock in self.locks)


@dataclass(frozen=True)
class Step:
    """Statements run together: in one transaction, or alone on an autocommit connection."""

    number: int
    file: str
    statements: tuple[Statement, ...]
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


def split_statements(batch: str, file: str, text: str) -> list[tuple[ast.Node, str, int]]:
    """(node, sql, line) for each statement; a syntax error names the file and line."""
    try:
        raw = parser.parse_sql(text)
    except ParseError as err:
        raise SqlSyntaxError(batch, file, line_of(text, err.location), str(err.args[0])) from None
    data = text.encode("utf-8")
    out = []
    for stmt in raw:
        chunk = data[stmt.stmt_location: stmt.stmt_location + stmt.stmt_len if stmt.stmt_len else None]
        sql = chunk.decode("utf-8")
        offset = stmt.stmt_location + _leading_noise(sql)
        out.append((stmt.stmt, sql.strip(), data[:offset].count(b"\n") + 1))
    return out


def line_of(text: str, byte_offset: int) -> int:
    return text.encode("utf-8")[: max(byte_offset, 0)].count(b"\n") + 1


def _leading_noise(sql: str) -> int:
    """Bytes of whitespace and -- comments before the statement's first token."""
    i, data = 0, sql.encode("utf-8")
    while i < len(data):
        if data[i:i + 1].isspace():
            i += 1
        elif data[i:i + 2] == b"--":
            nl = data.find(b"\n", i)
            i = len(data) if nl < 0 else nl + 1
        else:
            break
    return i


def plan_steps(batch: str, file: str, text: str) -> tuple[Step, ...]:
    created: set[str] = set()
    statements = [_describe(batch, file, node, sql, line, created) for node, sql, line in split_statements(batch, file, text)]
    return tuple(_group(file, statements))


def _group(file: str, statements: list[Statement]) -> Iterator[Step]:
    pending: list[Statement] = []
    number = 0
    for stmt in statements:
        alone = stmt.concurrent or stmt.locks_existing_table
        if alone and pending:
            number += 1
            yield Step(number, file, tuple(pending), autocommit=False)
            pending = []
        if alone:
            number += 1
            yield Step(number, file, (stmt,), autocommit=stmt.concurrent)
        else:
            pending.append(stmt)
    if pending:
        yield Step(number + 1, file, tuple(pending), autocommit=False)


def qualified(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def _describe(batch: str, file: str, node: ast.Node, sql: str, line: int, created: set[str]) -> Statement:
    kind = type(node).__name__
    if kind in _REFUSED:
        raise UnsupportedStatement(batch, file, line, f"statement {_REFUSED[kind]}; remove it")

    def lock(table: str, mode: str) -> Lock:
        return Lock(table, mode, existing=table not in created)

    if isinstance(node, ast.CreateStmt):
        table = qualified(node.relation)
        created.add(table)
        refs = sorted({qualified(c.pktable) for c in _constraints(node) if c.contype == enums.ConstrType.CONSTR_FOREIGN})
        return Statement(sql, line, f"create table {table}", tuple(lock(r, SHARE_ROW_EXCLUSIVE) for r in refs),
                         creates_table=table)
    if isinstance(node, ast.IndexStmt):
        table = qualified(node.relation)
        if not node.idxname:
            raise UnsupportedStatement(batch, file, line, "CREATE INDEX needs an explicit index name (used to resume after a crash)")
        mode = SHARE_UPDATE_EXCLUSIVE if node.concurrent else SHARE
        how = "concurrently " if node.concurrent else ""
        return Statement(sql, line, f"create index {how}{node.idxname} on {table}", (lock(table, mode),),
                         concurrent=bool(node.concurrent), index_name=node.idxname)
    if isinstance(node, ast.AlterTableStmt):
        return _describe_alter(node, sql, line, lock)
    if isinstance(node, ast.DropStmt):
        return _describe_drop(node, sql, line, lock)
    return Statement(sql, line, _generic_summary(node), ())


def _constraints(node: ast.CreateStmt) -> Iterator[ast.Constraint]:
    for elt in node.tableElts or ():
        if isinstance(elt, ast.Constraint):
            yield elt
        elif isinstance(elt, ast.ColumnDef):
            yield from (c for c in elt.constraints or () if isinstance(c, ast.Constraint))


def _describe_alter(node: ast.AlterTableStmt, sql: str, line: int, lock) -> Statement:
    table = qualified(node.relation)
    locks: dict[str, str] = {}
    actions = []
    for cmd in node.cmds:
        mode, action, ref = _alter_cmd(cmd)
        actions.append(action)
        locks[table] = _stronger(locks.get(table), mode)
        if ref:
            locks[ref[0]] = _stronger(locks.get(ref[0]), ref[1])
    return Statement(sql, line, f"alter table {table}: {', '.join(actions)}", tuple(lock(t, m) for t, m in locks.items()))


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


_STRENGTH = [ROW_SHARE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, ACCESS_EXCLUSIVE]


def _stronger(a: str | None, b: str) -> str:
    return b if a is None or _STRENGTH.index(b) > _STRENGTH.index(a) else a


def _describe_drop(node: ast.DropStmt, sql: str, line: int, lock) -> Statement:
    names = [".".join(part.sval for part in obj) if isinstance(obj, tuple) else _name(obj) for obj in node.objects]
    kind = OBJ(node.removeType).name.removeprefix("OBJECT_").lower()
    how = "concurrently " if node.concurrent else ""
    locks: tuple[Lock, ...] = ()
    if node.removeType == OBJ.OBJECT_TABLE:
        locks = tuple(lock(n, ACCESS_EXCLUSIVE) for n in names)
    return Statement(sql, line, f"drop {kind} {how}{', '.join(names)}", locks, concurrent=bool(node.concurrent),
                     index_name=names[0] if node.removeType == OBJ.OBJECT_INDEX else None)


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
