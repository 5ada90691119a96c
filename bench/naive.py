"""The comparison point: the same batch applied the way `psql -1 -f` or `prisma migrate deploy` would.

naive_statements() rewrites migration.sql with PostgreSQL's own parser (pglast): CREATE INDEX loses
CONCURRENTLY, ADD CONSTRAINT ... NOT VALID becomes a validated ADD CONSTRAINT, and the now redundant
VALIDATE CONSTRAINT statements are dropped. apply_naive() runs the result in ONE transaction, with no
lock_timeout, so every lock it takes is held until the final COMMIT.
"""

from __future__ import annotations

import time

import psycopg
from pglast import ast, enums, parse_sql
from pglast.stream import RawStream

AT = enums.AlterTableType


def naive_statements(migration_sql: str) -> list[str]:
    out = []
    for raw in parse_sql(migration_sql):
        node = _naive(raw.stmt)
        if node is not None:
            out.append(RawStream()(node))
    return out


def _naive(node: ast.Node) -> ast.Node | None:
    if isinstance(node, ast.IndexStmt):
        node.concurrent = False
    if isinstance(node, ast.AlterTableStmt):
        cmds = [cmd for cmd in node.cmds if cmd.subtype != AT.AT_ValidateConstraint]
        if not cmds:
            return None
        for cmd in cmds:
            _validate_now(cmd)
        node.cmds = tuple(cmds)
    return node


def _validate_now(cmd: ast.AlterTableCmd) -> None:
    if cmd.subtype == AT.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        cmd.def_.skip_validation = False
        cmd.def_.initially_valid = True


def apply_naive(dsn: str, statements: list[str]) -> float:
    """Run every statement in one transaction; returns the seconds it took."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True, application_name="bench naive apply") as conn:
        with conn.transaction():
            for stmt in statements:
                conn.execute(stmt)
    return time.monotonic() - started
