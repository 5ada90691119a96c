"""Runs a batch's validation.sql: named checks, in one transaction that is always rolled back, so nothing it
does (test rows included) ever persists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast
from pglast.visitors import Visitor

from .database_errors import cause, operational
from .errors import StatementFailed, UnsupportedStatement
from .plan import Batch
from .steps import split_statements

CHECK_COLUMNS = ["check_name", "ok", "detail"]
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
SERIAL = "set_config('max_parallel_workers_per_gather', '0', true)"  # the checks' plans: no parallel workers


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks(conn: psycopg.Connection, batch: Batch, statement_timeout_ms: int, *,
               limits_set: bool = False, isolated: bool = True) -> tuple[CheckResult, ...]:
    """Every (check_name, ok, detail) row the validation statements return; test data never persists.

    Runs without lock_timeout (waiting for its weak locks never blocks live traffic), under statement_timeout, and
    without parallel workers (see limits).
    An operational failure (see database_errors.operational) is re-raised as the psycopg error, for the caller
    to retry or report as "could not validate"; any other error is a fault of validation.sql. `isolated=False`
    runs in the caller's transaction as it stands (for checks that only read), whose limits the caller has set."""
    assert isolated or limits_set, "checks in the caller's transaction run under the limits it has set"
    statements = split_statements(batch, "validation.sql")
    results: list[CheckResult] = []
    with conn.transaction(force_rollback=True) if isolated else nullcontext(), conn.cursor() as cur:
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
    """For the rest of the transaction: statement_timeout; no lock_timeout; and no parallel workers. Checks
    that read whole tables would otherwise plan parallel scans (two workers by default) and take every core of
    a small server from the live traffic beside them; on one core they take longer and leave the rest."""
    cur.execute(f"SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', '0', true), {SERIAL}",
                (f"{int(statement_timeout_ms)}ms",))


Outcome = tuple[CheckResult, ...] | StatementFailed | UnsupportedStatement


def run_all_checks(conn: psycopg.Connection, batches: Sequence[Batch], statement_timeout_ms: int
                   ) -> list[tuple[Batch, Outcome]]:
    """run_checks for many batches in one transaction that is rolled back (what a refresh runs). A validation.sql
    that writes (test rows) runs in a savepoint rolled back after it, so no batch's rows meet another's; one that
    only reads runs as it is, one round trip per statement. A failing read aborts the transaction: it is rolled
    back and the batches after it run in a new one."""
    found: list[tuple[Batch, Outcome]] = []
    todo = list(batches)
    while todo:
        try:
            with conn.transaction(force_rollback=True):
                with conn.cursor() as cur:
                    limits(cur, statement_timeout_ms)
                while todo:
                    found.append((todo[0], _outcome(conn, todo[0], statement_timeout_ms)))
                    todo.pop(0)
        except _Aborted as aborted:
            found.append((todo.pop(0), aborted.error))
    return found


class _Aborted(Exception):
    def __init__(self, error: StatementFailed | UnsupportedStatement) -> None:
        super().__init__(str(error))
        self.error = error


def _outcome(conn: psycopg.Connection, batch: Batch, statement_timeout_ms: int) -> Outcome:
    reads = reads_only(batch)
    try:
        return run_checks(conn, batch, statement_timeout_ms, limits_set=True, isolated=not reads)
    except StatementFailed as err:
        if reads:
            raise _Aborted(err) from None  # the transaction is aborted: roll it back, go on in a new one
        return err
    except UnsupportedStatement as err:
        return err


def reads_only(batch: Batch) -> bool:
    """validation.sql is plain SELECTs: no data-changing statement, CTE or SELECT INTO anywhere in it."""
    return all(isinstance(node, ast.SelectStmt) and not _Writes()(node) for node, _sql, _line in
               split_statements(batch, "validation.sql"))


class _Writes(Visitor):
    """Whether a statement tree holds a statement that changes data (a data-modifying CTE) or SELECT INTO."""

    def __call__(self, node: ast.Node) -> bool:  # type: ignore[override]
        self.found = False
        super().__call__(node)
        return self.found

    def visit_InsertStmt(self, _ancestors: object, _node: ast.Node) -> None:
        self.found = True

    visit_UpdateStmt = visit_DeleteStmt = visit_MergeStmt = visit_InsertStmt

    def visit_IntoClause(self, _ancestors: object, _node: ast.Node) -> None:
        self.found = True


def tables_scanned(conn: psycopg.Connection, batch: Batch) -> tuple[tuple[str, str], ...]:
    """(schema, table) of every table the plans of validation.sql's SELECTs read in full, as the server would run
    them now (EXPLAIN, nothing executed, without parallel workers as the checks run; views and partitions resolved
    by the planner): a sequential scan, or an index scan with no condition (a full index order, e.g. under a merge
    join), whose heap fetches reach every page not yet all-visible. In order, each once; the system catalogs left out. A statement the server cannot plan yet (it reads
    what an earlier statement creates) adds nothing."""
    found: list[tuple[str, str]] = []
    with conn.transaction(force_rollback=True):
        conn.execute(f"SELECT {SERIAL}")  # planned as the checks run
        for node, statement, _line in split_statements(batch, "validation.sql"):
            if not isinstance(node, ast.SelectStmt):
                continue
            try:
                with conn.transaction():
                    plan = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {statement}").fetchone()[0][0]["Plan"]
            except psycopg.Error:
                if conn.broken:
                    raise
                continue
            for scan in plan_nodes(plan):
                name = (scan.get("Schema", ""), scan.get("Relation Name", ""))
                if _reads_in_full(scan) and all(name) and name[0] not in SYSTEM_SCHEMAS and name not in found:
                    found.append(name)
    return tuple(found)


def _reads_in_full(scan: dict[str, Any]) -> bool:
    return scan["Node Type"] == "Seq Scan" or (
        scan["Node Type"] in ("Index Scan", "Index Only Scan") and not scan.get("Index Cond"))


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan of EXPLAIN (FORMAT JSON) and every node under it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)
