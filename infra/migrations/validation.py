"""Runs a batch's validation.sql: named checks, in one transaction that is always rolled back, so nothing it
does (test rows included) ever persists."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .database_errors import cause, operational
from .errors import StatementFailed, UnsupportedStatement
from .plan import Batch
from .steps import split_statements

CHECK_COLUMNS = ["check_name", "ok", "detail"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks(conn: psycopg.Connection, batch: Batch, statement_timeout_ms: int) -> tuple[CheckResult, ...]:
    """Every (check_name, ok, detail) row the validation statements return; test data never persists.

    Runs without lock_timeout (waiting for its weak locks never blocks live traffic) and under statement_timeout.
    An operational failure (see database_errors.operational) is re-raised as the psycopg error, for the caller
    to retry or report as "could not validate"; any other error is a fault of validation.sql."""
    statements = split_statements(batch, "validation.sql")
    results: list[CheckResult] = []
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(statement_timeout_ms)}ms",))
        cur.execute("SELECT set_config('lock_timeout', '0', true)")
        for _node, sql, line in statements:
            try:
                cur.execute(sql)
            except psycopg.Error as err:
                if conn.broken or operational(err):
                    raise
                raise StatementFailed(batch.name, "validation.sql", line, cause(err)) from None
            if cur.description and [c.name for c in cur.description] == CHECK_COLUMNS:
                results.extend(CheckResult(str(n), ok is True, str(d or "")) for n, ok, d in cur.fetchall())
    if not results:
        raise UnsupportedStatement(batch.name, "validation.sql", 1,
                                   "returns no checks; select rows of (check_name, ok, detail)")
    return tuple(results)
