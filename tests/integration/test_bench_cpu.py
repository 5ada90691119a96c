"""The bench's CPU sampler on a real PostgreSQL: each of the server's processes is counted in the role its session
plays, from pg_stat_activity, and an engine session seen watching stays a watch between its reads."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import psycopg

from bench.cpu import BACKFILL, ENGINE_APPLICATION, SAMPLER_APPLICATION, WATCHES, WRITER_SESSIONS, CpuSampler, parse_stat
from infra.migrations.lock_watch import WAITERS
from infra.migrations.target import Target
from tests.pg import dsn_of
from tests.support.waiting import wait_until

ENGINE = f"{ENGINE_APPLICATION} (test, cpu)"


def postmaster_of(backend_pid: int) -> int:
    """The server's postmaster: the parent of one of its backends (the server runs on this machine)."""
    return parse_stat(Path(f"/proc/{backend_pid}/stat").read_text())[0]


def test_an_engine_session_busy_on_a_query_counts_as_the_backfill_and_one_seen_watching_stays_a_watch(
        db_target: Target) -> None:
    engine = replace(db_target, application_name=ENGINE)
    with engine.connect(autocommit=True) as chunks, engine.connect(autocommit=True) as watch:
        chunks_pid, watch_pid = chunks.info.backend_pid, watch.info.backend_pid
        with CpuSampler(dsn_of(db_target), postmaster_of(chunks_pid), every_s=0.05) as sampler:
            watch.execute(WAITERS, {"pid": chunks_pid})
            wait_until(lambda: sampler.roles.get(watch_pid) == WATCHES, "the sampler to see the watch's query")
            watch.execute("SELECT 1")  # between its reads the monitor runs other queries
            readings = len(sampler.intervals)
            wait_until(lambda: len(sampler.intervals) >= readings + 2, "two more readings")
            assert sampler.roles.get(watch_pid) == WATCHES

            start = time.monotonic()
            chunks.execute("SELECT count(*) FROM generate_series(1, 3000000)")
            end = time.monotonic()
    use = sampler.over(start, end)
    assert use is not None
    assert use.cores[BACKFILL] > 0
    assert use.cores[BACKFILL] > use.cores[WATCHES]
    assert use.cores[WRITER_SESSIONS] == 0


def test_the_sampler_keeps_reading_through_a_lost_connection_and_reconnects(db_target: Target, db: psycopg.Connection) -> None:
    engine = replace(db_target, application_name=ENGINE)
    with engine.connect(autocommit=True) as chunks:
        chunks_pid = chunks.info.backend_pid
        with CpuSampler(dsn_of(db_target), postmaster_of(chunks_pid), every_s=0.05) as sampler:
            first = wait_until(lambda: sampler_session(db), "the sampler's session")
            wait_until(lambda: sampler.roles.get(chunks_pid) == BACKFILL, "the sampler to see the engine's session")
            db.execute("SELECT pg_terminate_backend(%s)", (first,))
            readings = len(sampler.intervals)
            again = wait_until(lambda: sampler_session(db) not in (None, first) and sampler_session(db), "a new session")
            wait_until(lambda: len(sampler.intervals) >= readings + 2, "two more readings")
            assert sampler.roles.get(chunks_pid) == BACKFILL
    assert again != first


def sampler_session(db: psycopg.Connection) -> int | None:
    row = db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (SAMPLER_APPLICATION,)).fetchone()
    return row[0] if row else None
