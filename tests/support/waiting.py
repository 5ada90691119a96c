"""Waiting on conditions the test can observe in the database, instead of sleeping and hoping.

A test parks the system on something it controls (a lock it holds, a snapshot it keeps open), waits here
until pg_stat_activity / pg_locks show the backend parked on it, then acts. The deadline only guards
against a hang; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import pytest

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

DEADLINE_S = 300.0
POLL_S = 0.02


def wait_until(condition: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S) -> T:
    """The first truthy value of condition(), polled; fails naming `what` if it never comes."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        value = condition()
        if value:
            return value
        time.sleep(POLL_S)
    pytest.fail(f"gave up after {deadline_s:.0f}s waiting for {what}")


def active_backend(conn: psycopg.Connection, dbname: str, query_like: str) -> int | None:
    """The pid of a backend of dbname running a statement like `query_like` (ILIKE pattern), if any."""
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND query ILIKE %s",
        (dbname, query_like)).fetchone()
    return row[0] if row else None


def lock_waits(conn: psycopg.Connection, dbname: str, query_like: str, locktype: str | None = None,
               waited_ms: int = 0) -> list[tuple[int, object]]:
    """(pid, query_start) of each backend of dbname whose statement like `query_like` waits for a lock
    (of `locktype`, if given) and has waited at least waited_ms."""
    return conn.execute(
        """SELECT a.pid, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE a.datname = %s AND a.query ILIKE %s AND NOT l.granted
             AND (%s::text IS NULL OR l.locktype = %s::text)
             AND l.waitstart IS NOT NULL AND clock_timestamp() - l.waitstart >= make_interval(secs => %s)""",
        (dbname, query_like, locktype, locktype, waited_ms / 1000)).fetchall()


def backend_gone(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,)


def commit_waits_on_standby(conn: psycopg.Connection, dbname: str, waited_ms: int) -> bool:
    """A backend of dbname has waited at least waited_ms for a synchronous standby to confirm its commit."""
    return conn.execute(
        """SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = %s AND wait_event = 'SyncRep'
             AND clock_timestamp() - query_start >= make_interval(secs => %s)""",
        (dbname, waited_ms / 1000)).fetchone()[0]


def raised(call: Callable[[], object], error: type[E]) -> E | None:
    """The `error` call() raises, or None when it returns: a condition for wait_until."""
    try:
        call()
    except error as err:
        return err
    return None
