"""The backfill's commit watch on a real PostgreSQL: a commit that does not return reads as a stall that keeps
growing, never as a hang; the watch's own failure reaches the backfill's thread."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from infra.migrations.commit_watch import PROBE, CommitWatch
from infra.migrations.target import Target
from tests.support.waiting import commit_waits_on_standby, wait_until


def test_a_commit_waiting_for_a_standby_that_is_gone_reads_as_a_growing_stall_and_is_cancelled_on_exit(
        db_target: Target, db: psycopg.Connection, standby_gone: Callable[[bool], None]) -> None:
    with CommitWatch(lambda: db_target.connect(autocommit=True)) as watch:
        assert watch.stall_ms() < 200  # the baseline, taken on entry
        standby_gone(True)
        wait_until(lambda: commit_waits_on_standby(db, db_target.dbname, 300), "the probe to wait 300 ms")
        assert watch.stall_ms() >= 200  # still waiting: counted for as long as it has waited so far
    # Leaving the block returned although the probe's commit could never be confirmed: its wait was cancelled.
    assert not commit_waits_on_standby(db, db_target.dbname, 0)


def test_the_watch_connection_lost_is_raised_where_the_backfill_reads_the_stall(
        db_target: Target, db: psycopg.Connection) -> None:
    with CommitWatch(lambda: db_target.connect(autocommit=True)) as watch:
        pid = wait_until(lambda: db.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND query = %s",
                                            (db_target.dbname, PROBE)).fetchone(), "the probe's backend")[0]
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))

        def raised() -> BaseException | None:
            try:
                watch.stall_ms()
            except psycopg.Error as err:
                return err
            return None
        assert isinstance(wait_until(raised, "the probe to fail"), psycopg.OperationalError)
        with pytest.raises(psycopg.OperationalError):
            watch.stall_ms()  # and again, every time it is read
