"""The backfill's throttle against a real streaming replica: a second PostgreSQL started from a base backup
of the first (pg_basebackup -R), whose replay the test pauses with pg_wal_replay_pause().

Both servers are throwaway embedded PostgreSQL (the replica needs a primary whose files it can copy, so
PG_TEST_DSN does not apply here). Nothing is timed by sleeping: the test pauses replay, then waits until the
primary itself reports the replica further behind than the limit, and only then lets the backfill go on.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.backfill import start_replica
from bench.legacy import LegacyShape, generate
from infra.localdb import LocalServer, free_port
from infra.migrations.backfill import BackfillProgress, BackfillRun, ReplayLag
from infra.migrations.plan import load_batches
from infra.migrations.runner import RunSettings, apply_batch
from infra.migrations.target import Target
from infra.migrations.throttle import ThrottleSettings
from tests.conftest import unavailable
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
BATCHES = {b.name: b for b in load_batches(ROOT / "sql")}
LAG_LIMIT_MS = 400
CHUNK = 40


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[LocalServer, LocalServer]]:
    with tempfile.TemporaryDirectory(prefix="jq-primary-") as primary_dir, \
            tempfile.TemporaryDirectory(prefix="jq-replica-") as replica_dir:
        primary = LocalServer(Path(primary_dir) / "data", free_port(), throwaway=True)
        try:
            primary.start()
        except (RuntimeError, OSError) as err:
            unavailable(f"no PostgreSQL server for the replica test: {err}")
        replica: LocalServer | None = None
        try:
            replica = start_replica(primary, Path(replica_dir))
            with psycopg.connect(replica.dsn(), autocommit=True) as conn:
                # Report replay progress every second (not 10 s): a caught-up replica's lag clears sooner.
                conn.execute("ALTER SYSTEM SET wal_receiver_status_interval = '1s'")
                conn.execute("SELECT pg_reload_conf()")
            yield primary, replica
        finally:
            if replica is not None:
                replica.stop()
            primary.stop()


@pytest.fixture
def legacy_db(primary_and_replica: tuple[LocalServer, LocalServer]) -> Iterator[Target]:
    primary, _ = primary_and_replica
    with psycopg.connect(primary.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS replicated WITH (FORCE)")
        admin.execute("CREATE DATABASE replicated")
    target = Target.from_dsn(primary.dsn("replicated"))
    quiet = RunSettings(stack="test", backfill=BackfillRun(sleep=lambda _s: None))
    apply_batch(target, BATCHES["0000_baseline"], quiet)
    with target.connect(autocommit=True) as conn:
        generate(conn, LegacyShape(300))
    apply_batch(target, BATCHES["0001_add_memory_entities"], quiet)
    yield target


def streaming(primary: psycopg.Connection) -> bool:
    row = primary.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()
    return bool(row and row[0])


def replay_paused(replica: psycopg.Connection) -> bool:
    return replica.execute("SELECT pg_get_wal_replay_pause_state() = 'paused'").fetchone()[0]


def write_wal(conn: psycopg.Connection) -> None:
    """A WAL record on the primary (no table involved), for the replica to stop at or to replay."""
    conn.execute("SELECT pg_logical_emit_message(false, 'junkquote-test', 'x')")


def test_a_replica_that_stops_replaying_makes_the_backfill_halve_its_chunks_and_wait_naming_replay_lag(
        primary_and_replica: tuple[LocalServer, LocalServer], legacy_db: Target) -> None:
    primary, replica = primary_and_replica
    with psycopg.connect(primary.dsn(), autocommit=True) as on_primary, \
            psycopg.connect(replica.dsn(), autocommit=True) as on_replica:
        wait_until(lambda: streaming(on_primary), "the replica to stream")
        on_replica.execute("SELECT pg_wal_replay_pause()")
        write_wal(on_primary)
        wait_until(lambda: replay_paused(on_replica), "the replica to pause its replay")
        events: list[BackfillProgress] = []

        def replica_stalls_then_recovers(event: BackfillProgress) -> None:
            events.append(event)
            if len(events) == 1:  # after the first chunk: let the lag pass the limit, as seen by the primary
                probe = ReplayLag(on_primary)
                wait_until(lambda: (probe.measure() or 0.0) > LAG_LIMIT_MS, "the replica to fall behind the limit")
            elif event.phase == "waiting":
                if replay_paused(on_replica):
                    on_replica.execute("SELECT pg_wal_replay_resume()")
                write_wal(on_primary)  # fresh WAL to replay: the primary measures the replica's lag anew

        throttle = ThrottleSettings(max_replay_lag_ms=LAG_LIMIT_MS, initial_chunk_rows=CHUNK, min_chunk_rows=10,
                                    max_chunk_rows=CHUNK)
        result = apply_batch(legacy_db, BATCHES["0002_backfill_customers"], RunSettings(stack="test", backfill=BackfillRun(
            throttle=throttle, on_progress=replica_stalls_then_recovers, sleep=lambda _s: None)))

    waits = [e for e in events if e.phase == "waiting"]
    assert waits, "the backfill never waited for the replica"
    assert waits[0].slowed_because is not None
    assert waits[0].slowed_because.startswith("replica replay lag")
    assert f"limit {LAG_LIMIT_MS / 1000:.1f} s" in waits[0].slowed_because
    assert waits[0].chunk_rows == CHUNK // 2  # halved
    assert "last slowed down: replica replay lag" in waits[0].line()  # what `pulumi up` prints
    # The first wait came before the second chunk of the first part; the chunk after it was the halved one.
    first_wait = next(i for i, e in enumerate(events) if e.phase == "waiting")
    resumed = next(e for e in events[first_wait:] if e.phase != "waiting")
    assert (resumed.part, resumed.phase) == (events[0].part, "pass")
    assert 0 < resumed.rows_done - events[0].rows_done <= CHUNK // 2
    assert all(c.ok for c in result.checks)
