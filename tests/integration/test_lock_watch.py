"""The backfill's lock watch on a real PostgreSQL: a session waiting on a lock the watched session holds is seen,
with how long it has waited; a chunk with a patience that keeps one waiting past it is cancelled, and the waiting
session goes on; the watch's own failure reaches the backfill's thread as an error that says what to do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from infra.migrations.backfill_errors import LockWatchFailed
from infra.migrations.lock_watch import LockWatch
from infra.migrations.target import Target
from tests.support.waiting import raised, wait_until

GATE = 4242  # an advisory lock the test holds: the "chunk" waits on it while holding its row lock


def watching(target: Target, holder: psycopg.Connection) -> LockWatch:
    return LockWatch("0002_x", holder.info.backend_pid, lambda: target.connect(autocommit=True), holder.cancel_safe)


def waiting_on_row(db: psycopg.Connection, target: Target) -> int | None:
    """The pid of a session of the test database waiting for a row lock (a transaction's end), if any."""
    row = db.execute("""SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'
                        AND wait_event IN ('transactionid', 'tuple')""", (target.dbname,)).fetchone()
    return row[0] if row else None


@contextmanager
def in_background(work: object) -> Iterator[list[BaseException | None]]:
    """Runs work() in a thread; yields where its outcome lands (None: returned), joined on exit."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - the test asserts on it
            outcome.append(err)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(60)


@pytest.fixture
def table(db: psycopg.Connection) -> str:
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO t (id) VALUES (1)")
    return "t"


def test_a_session_waiting_on_a_row_a_chunk_holds_is_seen_with_how_long_it_has_waited(
        db_target: Target, db: psycopg.Connection, table: str) -> None:
    with db_target.connect() as holder, db_target.connect(autocommit=True) as app, watching(db_target, holder) as watch:
        with watch.chunk(patience_ms=None):  # no patience: only seen, never cancelled
            holder.execute("UPDATE t SET v = v + 1 WHERE id = 1")  # the row stays locked until the holder commits
            assert watch.waiter_ms() == 0  # nobody waits yet
            with in_background(lambda: app.execute("UPDATE t SET v = v + 10 WHERE id = 1")) as outcome:
                wait_until(lambda: waiting_on_row(db, db_target), "the application to wait for the row")
                wait_until(lambda: (watch.waiter_ms() or 0) >= 20, "the watch to see it wait 20 ms")
                holder.commit()
        assert outcome == [None]
        assert db.execute("SELECT v FROM t").fetchone()[0] == 11
        assert not watch.cancelled_for_waiter()


def test_a_chunk_that_keeps_a_session_waiting_past_its_patience_is_cancelled_and_the_session_goes_on(
        db_target: Target, db: psycopg.Connection, table: str) -> None:
    db.execute("SELECT pg_advisory_lock(%s)", (GATE,))  # held by the test until the end
    with db_target.connect() as holder, db_target.connect(autocommit=True) as app, watching(db_target, holder) as watch:
        def chunk() -> None:
            with watch.chunk(patience_ms=50), holder.transaction():
                holder.execute("UPDATE t SET v = v + 1 WHERE id = 1")
                holder.execute("SELECT pg_advisory_xact_lock(%s)", (GATE,))  # runs until cancelled
        with in_background(chunk) as outcome:
            wait_until(lambda: db.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted",
                                          (holder.info.backend_pid,)).fetchone(), "the chunk to wait on the gate")
            app.execute("SET statement_timeout = '120s'")  # a broken watch fails the test instead of hanging it
            app.execute("UPDATE t SET v = v + 10 WHERE id = 1")  # returns only once the chunk is gone
        assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
        assert watch.cancelled_for_waiter()
        assert (watch.waiter_ms() or 0) >= 50
    assert db.execute("SELECT v FROM t").fetchone()[0] == 10  # the chunk's update was rolled back


def test_the_watch_connection_lost_stops_the_backfill_with_what_to_do(
        db_target: Target, db: psycopg.Connection) -> None:
    with db_target.connect() as holder, watching(db_target, holder) as watch:
        pid = wait_until(lambda: db.execute("""SELECT pid FROM pg_stat_activity WHERE datname = %s
                                               AND pid NOT IN (pg_backend_pid(), %s)""",
                                            (db_target.dbname, holder.info.backend_pid)).fetchone(), "the watch's backend")[0]
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))

        with watch.chunk(patience_ms=None):  # it looks while a chunk is in flight
            failed = wait_until(lambda: raised(watch.waiter_ms, LockWatchFailed), "the watch to fail")
        assert str(failed).startswith("backfill of batch '0002_x' stopped: the watch for sessions waiting on its "
                                      "locks failed (")
        assert "\n" not in str(failed)
        with pytest.raises(LockWatchFailed):
            watch.waiter_ms()  # and again, every time it is read
