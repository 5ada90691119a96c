"""The bench's writers on a real PostgreSQL: a write held up by the database counts the hold in its latency, and
none of it as its client's, or its server session's, wait for a CPU; stopping them returns every write due."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from bench.writer import NOT_STARTED, Writers
from infra.migrations.plan import load_batches
from infra.migrations.runner import RunSettings, apply_batch
from infra.migrations.target import Target
from tests.pg import connect, dsn_of
from tests.support.waiting import lock_waits, wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE = {b.name: b for b in load_batches(ROOT / "sql")}["0000_baseline"]
RATE = 50.0  # writes a second: one every 20 ms


def a_job(db: psycopg.Connection) -> str:
    lead = db.execute("""INSERT INTO "Lead" ("name") VALUES ('Kim') RETURNING "id" """).fetchone()[0]
    return str(db.execute("""INSERT INTO "Job" ("leadId", "status") VALUES (%s, 'scheduled') RETURNING "id" """,
                          (lead,)).fetchone()[0])


def writes_committed(db: psycopg.Connection) -> int:
    return db.execute("""SELECT count(*) FROM "Lead" WHERE "name" LIKE 'Bench %'""").fetchone()[0]


def test_a_write_held_by_a_row_lock_counts_the_hold_as_latency_and_none_of_it_as_a_wait_for_a_cpu(
        db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, RunSettings(stack="test"))
    job = a_job(db)
    dsn = dsn_of(db_target)
    writers = Writers(dsn, [job], clients=1, rate=RATE, max_seconds=120)
    with connect(db_target) as holder:
        holder.autocommit = False
        holder.execute('SELECT 1 FROM "Job" WHERE "id" = %s FOR UPDATE', (job,))
        began = writers.start()
        wait_until(lambda: lock_waits(db, db_target.dbname, '%UPDATE "Job"%'), "the writer waiting on the held row")
        seen_waiting = time.monotonic()
        wait_until(lambda: lock_waits(db, db_target.dbname, '%UPDATE "Job"%', waited_ms=200),
                   "the writer to have waited 0.2 s")
        released = time.monotonic()
        holder.rollback()
    written = writes_committed(db)
    wait_until(lambda: writes_committed(db) >= written + 2, "the writer to go on after the held write")
    samples = writers.stop()

    held = samples[0]  # the first write, due at the start: the one that met the held row
    hold = released - seen_waiting
    assert held.start == began and held.ok and held.end >= released
    assert held.client_cpu_wait <= held.latency - hold  # asleep on its socket meanwhile
    assert held.server_cpu_wait <= held.latency - hold  # asleep on the lock meanwhile
    assert all(s.client_cpu_wait >= 0 and s.server_cpu_wait >= 0 for s in samples)
    assert any(s.late > 0 for s in samples if s.start > held.start and s.error != NOT_STARTED)  # due behind it


def test_stopped_writers_return_every_write_due_until_the_stop(db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, RunSettings(stack="test"))
    job = a_job(db)
    dsn = dsn_of(db_target)
    writers = Writers(dsn, [job], clients=2, rate=RATE, max_seconds=120)
    began = writers.start()
    wait_until(lambda: writes_committed(db) >= 10, "ten writes")
    stopping = time.monotonic()
    samples = writers.stop()

    steps = [(s.start - began) * RATE for s in samples]
    assert all(abs(k - round(k)) < 1e-6 for k in steps)  # every one due on the two staggered schedules
    due = [round(k) for k in steps]
    assert len(due) == len(set(due))  # each once, from one client or the other
    # Every write due before the stop is there, started or not: none lost.
    before_stop = {k for k in due if began + k / RATE < stopping}
    assert before_stop == set(range(len(before_stop))) and len(before_stop) >= 10
