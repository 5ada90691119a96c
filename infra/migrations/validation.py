"""Runs a batch's validation.sql: named checks, in one transaction that is always rolled back, so nothing it
does (test rows included) ever persists."""

from __future__ import annotations

from collections.abc import Sequence
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


def run_checks(conn: psycopg.Connection, batch: Batch, statement_timeout_ms: int, *,
               limits_set: bool = False) -> tuple[CheckResult, ...]:
    """Every (check_name, ok, detail) row the validation statements return; test data never persists.

    Runs without lock_timeout (waiting for its weak locks never blocks live traffic) and under statement_timeout.
    An operational failure (see database_errors.operational) is re-raised as the psycopg error, for the caller
    to retry or report as "could not validate"; any other error is a fault of validation.sql."""
    statements = split_statements(batch, "validation.sql")
    results: list[CheckResult] = []
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        if not limits_set:
            limits(cur, statement_timeout_ms)
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


def limits(cur: psycopg.Cursor, statement_timeout_ms: int) -> None:
    """statement_timeout, and no lock_timeout, for the rest of the transaction."""
    cur.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', '0', true)",
                (f"{int(statement_timeout_ms)}ms",))


def run_all_checks(conn: psycopg.Connection, batches: Sequence[Batch], statement_timeout_ms: int
                   ) -> list[tuple[Batch, tuple[CheckResult, ...] | StatementFailed]]:
    """run_checks for many batches in one transaction that is rolled back, each batch in a savepoint that is
    rolled back too (so one batch's test rows never meet another's): two round trips per batch besides its
    statements, where a transaction of its own takes four."""
    found: list[tuple[Batch, tuple[CheckResult, ...] | StatementFailed]] = []
    with conn.transaction(force_rollback=True):
        with conn.cursor() as cur:
            limits(cur, statement_timeout_ms)
        for batch in batches:
            try:
                found.append((batch, run_checks(conn, batch, statement_timeout_ms, limits_set=True)))
            except StatementFailed as err:
                found.append((batch, err))
    return found
