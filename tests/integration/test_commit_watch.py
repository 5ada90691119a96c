"""The backfill's commit watch on a real PostgreSQL: a commit that does not return reads as a stall that keeps
growing, never as a hang; a session holding the probe's row is a stall too; the watch's own failure reaches the
backfill's thread as an error that says what to do."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from infra.migrations.backfill_errors import CommitWatchFailed
from infra.migrations.commit_watch import PROBE, PROBE_LOCK_TIMEOUT_MS, CommitWatch
from infra.migrations.target import Target
from tests.support.waiting import raised, commit_waits_on_standby, wait_until


def watching(target: Target) -> CommitWatch:
    return CommitWatch("0002_x", lambda: target.connect(autocommit=True))


def probe_backend(db: psycopg.Connection, target: Target) -> int:
    return wait_until(lambda: db.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND query = %s",
                                         (target.dbname, PROBE)).fetchone(), "the probe's backend")[0]


def probe_waits_for_lock_since(db: psycopg.Connection, target: Target) -> object | None:
    """When the probe's current wait for a lock began, if it is waiting for one."""
    row = db.execute("""SELECT l.waitstart FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                        WHERE a.datname = %s AND a.query = %s AND NOT l.granted AND l.waitstart IS NOT NULL""",
                     (target.dbname, PROBE)).fetchone()
    return row[0] if row else None


def test_a_commit_waiting_for_a_standby_that_is_gone_reads_as_a_growing_stall_and_is_cancelled_on_exit(
        db_target: Target, db: psycopg.Connection, standby_gone: Callable[[bool], None]) -> None:
    with watching(db_target) as watch:
        probe_backend(db, db_target)
        db.execute("DELETE FROM schema_ledger.commit_probe")  # the probe writes its row back: still a durable write
        standby_gone(True)
        wait_until(lambda: commit_waits_on_standby(db, db_target.dbname, 300), "the probe to wait 300 ms")
        assert watch.stall_ms() >= 200  # still waiting: counted for as long as it has waited so far
    # Leaving the block returned although the probe's commit could never be confirmed: its wait was cancelled.
    assert not commit_waits_on_standby(db, db_target.dbname, 0)


def test_a_session_holding_the_probe_row_from_the_start_reads_as_a_stall_never_as_the_usual_cost(
        db_target: Target, db: psycopg.Connection) -> None:
    with watching(db_target):
        pass  # creates the probe's table and row
    with db.transaction():
        db.execute("SELECT * FROM schema_ledger.commit_probe FOR UPDATE")  # as a session of a killed run would
        with watching(db_target) as watch:
            first = wait_until(lambda: probe_waits_for_lock_since(db, db_target), "the probe to wait for the row")
            # The probe gives up at its lock timeout and the next one waits again: the watch did not stop.
            wait_until(lambda: (probe_waits_for_lock_since(db, db_target) or first) > first,
                       "a later probe to wait for the row")
            assert watch.stall_ms() >= PROBE_LOCK_TIMEOUT_MS * 0.9


def test_the_watch_connection_lost_stops_the_backfill_with_what_to_do(
        db_target: Target, db: psycopg.Connection) -> None:
    with watching(db_target) as watch:
        db.execute("SELECT pg_terminate_backend(%s)", (probe_backend(db, db_target),))

        failed = wait_until(lambda: raised(watch.stall_ms, CommitWatchFailed), "the probe to fail")
        assert str(failed).startswith("backfill of batch '0002_x' stopped: the probe that times commits beside it "
                                      "failed (")  # AdminShutdown, or OperationalError if the notice was not read
        assert "\n" not in str(failed)
        with pytest.raises(CommitWatchFailed):
            watch.stall_ms()  # and again, every time it is read
