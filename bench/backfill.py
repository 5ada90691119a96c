"""`make bench-backfill`: batch 0002's backfill under concurrent writes, adaptive vs fixed vs naive, and 0003.

    python -m bench.backfill [--leads N] [--out DIR] [--no-replica] [--only adaptive,fixed-1000,...] [--rounds 2]
                             [--fixed-first] [--writer-rate TPS]

Seeds N leads (one job each) with legacy conversation data (bench/legacy.py) in a template, then on fresh
copies, with 4 writer processes running the application's post-deploy transaction (a new customer and its
lead with customer_id, a random job's status update) at WRITER_RATE transactions a second on a fixed schedule
(--writer-rate; 0 runs them flat out), runs:
- writers-alone: no backfill for 10 min (--floor-seconds), the latency the writers see by themselves here;
- adaptive: the engine's backfill (apply_batch of 0002), the throttle sized by the stack defaults;
- fixed: the same chunks at a fixed 1,000 rows, no pause (pgroll's default);
- adaptive-unstretched, only when named in --only: adaptive with the stretched limits and the lock watch off
  (ThrottleSettings.stretch_uncontended), to measure what they bring;
- each of adaptive and fixed again with a streaming replica (pg_basebackup -R), reporting its replay lag;
- tighten: batch 0003 on the adaptive scenario's database, as in production (0002 applied under traffic);
- naive, last (the contrast, and the longest to run): every part set-based over its whole table, all in one
  transaction (statements of at most NAIVE_KEYS_PER_STATEMENT keys: one jsonb value is limited to 256 MB).
Each scenario's database is dropped once measured. With --rounds 2, adaptive, adaptive-unstretched and fixed-1000
(as chosen) run again after the first round, in the reverse order, named "... (2)": a scenario varies within a run
by as much as the differences sought (bench/RESULTS.md), and two rounds in opposite orders average over its position
and some of the noise. (0003, when chosen, runs once, after the first adaptive; the floor before the first round.)
--fixed-first runs the engine's scenarios without a replica in the reverse order (fixed-1000 first in round 1, last
in round 2), to tell a scenario's position in the run from the scenario.
Writes bench/BACKFILL-RESULTS section into bench/RESULTS.md and bench/backfill-latency-N.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from infra.localdb import LocalServer, free_port
from infra.migrations.backfill import BackfillProgress, BackfillRun, ReplayLag, apply_keys, load_spec, page
from infra.migrations.plan import Batch, load_batches
from infra.migrations.runner import RunSettings, apply_batch
from infra.migrations.target import Target
from infra.migrations.throttle import ThrottleSettings

from . import legacy, wal
from .server import (BENCH_SETTINGS, FAST_LOAD, bench_server, checkpoints_requested, clone, configure, drop, machine,
                     host_settings, make_durable, quarter_of_ram, settings_in_effect)
from .backfill_report import TARGET_MS, client_starved, over_target, slowest_during, slowest_write, write
from . import cpu as cpu_use, pg_io
from .cpu import CpuSampler, CpuUse, Interval as CpuInterval, postmaster_pid
from .disk import DiskInterval, DiskSampler, during
from .host import EVERY_S, Steal, StealSampler
from .sampling import Periodic
from .stats import WindowStats, window_stats
from .writer import Sample, Writers

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "backfill_seeded"
LEAD_IN_S, TAIL_S = 3.0, 2.0
PROGRESS_EVERY_S = 60.0
# The floor: the writers alone, long enough that its slowest write is comparable with a scenario's (at 30 s it
# missed the machine's own rare stalls, which a 30-minute backfill run meets anyway).
FLOOR_S = 600.0
WRITERS_MAX_S = 4 * 3600.0  # a safety net only: at 2M leads a scenario runs for tens of minutes
# 0003's scenario needs 0002 applied first, with no writers and nothing measured: the largest fixed chunks.
PREPARE_CHUNK_ROWS = 20_000
# Naive: at most this many keys per statement. One statement cannot build a jsonb value over 256 MB, and at 2M
# leads one part's legacy history is more than that; every statement still runs in the one transaction.
NAIVE_KEYS_PER_STATEMENT = 250_000
# The writers' rate, transactions a second over the 4 clients, each on a fixed schedule (bench/writer.py). Flat out
# on this 2-core machine they reached 1,939 a second alone, and about 890 and 990 beside the adaptive and fixed
# backfills, taking as much CPU as the server (RESULTS.md, the 10:20 run): 500 is about a quarter of the first and
# over half the others, and leaves the server CPU to give a backfill, as an application on its own servers would.
# 0: flat out, as the runs in RESULTS.md before the first at this rate.
WRITER_RATE = 500.0
SCENARIOS = ("writers-alone", "adaptive", "tighten-0003", "adaptive-unstretched", "fixed-1000", "adaptive+replica",
             "fixed-1000+replica", "naive")
OPT_IN = frozenset({"adaptive-unstretched"})  # run only when named in --only


def server_settings() -> dict[str, str]:
    """shared_buffers at a quarter of RAM, where PostgreSQL's documentation starts a dedicated server: the tables
    and indexes the backfill walks (about 3.3 GB at 2M leads) fit. With 1 GB they did not: the pages the backfill
    dirtied were evicted by every session, the writers' included, then written back by the kernel in bursts that
    stalled every commit for up to 323 ms (RESULTS.md, "Backfill").

    max_wal_size: fewer checkpoints forced by the backfill's WAL volume (at 4 GB, 21 in a 30-minute backfill, each
    writing out again most of the pages the backfill walks, and each restarting the full-page images in the WAL).
    min_wal_size: at each checkpoint, old WAL segments are kept for reuse up to at least this much (counted from the
    checkpoint) instead of removed; with fewer, the backfill's WAL outruns them, and whoever needs the next segment,
    an application commit included, first writes 16 MB of zeros and flushes them (IO:WalInitWrite/WalInitSync,
    50-60 ms here). The documentation's own use for it: "spikes in WAL usage, for example when running large batch
    jobs"."""
    return BENCH_SETTINGS | {"shared_buffers": quarter_of_ram(), "max_wal_size": "16GB", "min_wal_size": "4GB"}


def write_linked(conn: psycopg.Connection, rng: random.Random, job_ids: list[str]) -> None:
    """The application after its deploy: a customer and its lead (customer_id set), and a job status update."""
    n = rng.randrange(10**9)
    with conn.transaction():
        cid = conn.execute("""INSERT INTO "Customer" ("name", "phone", "email") VALUES (%s, %s, %s) RETURNING "id" """,
                           (f"Bench {n}", f"+1666{n:09d}", f"b{n}@example.com")).fetchone()[0]
        conn.execute("""INSERT INTO "Lead" ("name", "phone", "email", "description", "customer_id")
                        VALUES (%s, %s, %s, 'couch', %s)""", (f"Bench {n}", f"+1666{n:09d}", f"b{n}@example.com", cid))
        conn.execute("""UPDATE "Job" SET "status" = %s, "updatedAt" = CURRENT_TIMESTAMP WHERE "id" = %s""",
                     (rng.choice(("scheduled", "en_route", "completed")), rng.choice(job_ids)))


@dataclass
class TimeSplit:
    """Where a backfill through the engine (adaptive or fixed chunks) spent its time: in chunk transactions (the reads
    before the checks included), the part of that in chunks not kept (rolled back at a timeout or for a waiting
    session, or a lock not taken in time), and asleep (the throttle's pauses, and the waits for a lagging replica).
    The rest is migration.sql, the queries between chunks (the next keys, a sweep's query, the replay lag, the lock
    check), the counts, and the checks."""

    chunks_s: float = 0.0
    not_kept_s: float = 0.0
    asleep_s: float = 0.0

    def cell(self) -> str:
        return f"{self.chunks_s:.0f} s / {self.not_kept_s:.0f} s / {self.asleep_s:.0f} s"


@dataclass(frozen=True)
class Done:
    """What a scenario's action returns."""

    rows: int
    longest_lock_ms: float
    outcome: str
    split: TimeSplit | None = None
    events: tuple[tuple[float, BackfillProgress], ...] = ()  # (when, event): every progress event, in order
    sleeps: tuple[tuple[float, float], ...] = ()  # (when it began, seconds): every pause the throttle asked for


@dataclass
class Result:
    name: str
    samples: list[Sample]
    t0: float
    start: float
    end: float
    rows: int
    longest_lock_ms: float
    outcome: str
    max_lag_ms: float | None = None
    lag_series: list[tuple[float, float]] = field(default_factory=list)
    phases: list[tuple[float, str]] = field(default_factory=list)  # (when, "part phase") at every progress event
    wal_checkpoints: int | None = None  # checkpoints the WAL volume forced during the scenario
    wal_ready: int | None = None  # WAL segments ready for reuse when the scenario began (bench/wal.py)
    wal_created: int | None = None  # WAL segments sessions had to create during it (PostgreSQL 18 and later)
    split: TimeSplit | None = None  # backfills through the engine only
    events: tuple[tuple[float, BackfillProgress], ...] = ()  # backfills through the engine only
    sleeps: tuple[tuple[float, float], ...] = ()  # backfills through the engine only
    steal: Steal | None = None  # the host's CPU time stolen during [start, end] (None: not counted here)
    disk: tuple[DiskInterval, ...] = ()  # with --samples: the data directory's disk, from the writers' start (disk.py)
    cpu: CpuUse | None = None  # the CPUs each role kept busy during [start, end] (cpu.py; None: not counted here)
    cpu_spans: tuple[CpuInterval, ...] = ()  # the CPU time by role every second, from the writers' start (cpu.py)
    written: pg_io.Written | None = None  # what the server wrote from start to the tail's end (pg_io.py; None: not counted)
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())  # monotonic -> epoch s

    def doing_at(self, when: float) -> str:
        """What the backfill was doing at `when`: the part and phase of the first progress event after it
        (nothing marks the end of migration.sql, so the first chunk shares its label)."""
        if when < self.start:
            return "nothing yet (began before the backfill)"
        if not self.phases:
            return "—"
        if when < self.phases[0][0]:
            return f"migration.sql or the first chunk of {self.phases[0][1]}"
        return next((label for t, label in self.phases if t >= when), "checks")


class LagSampler(Periodic):
    """Replay lag of the replicas, sampled every 100 ms on its own connection while a scenario runs."""

    def __init__(self, dsn: str) -> None:
        super().__init__(0.1, "bench-lag-sampler")
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.lag = ReplayLag(self.conn)
        self.series: list[tuple[float, float]] = []

    def take(self) -> bool:
        value = self.lag.measure()
        if value is not None:
            self.series.append((time.monotonic(), value))
        return True

    def finish(self) -> None:
        self.conn.close()


def seed(server: LocalServer, batches: Sequence[Batch], leads: int) -> tuple[list[str], int]:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    target = Target.from_dsn(server.dsn(TEMPLATE))
    apply_batch(target, batches[0], RunSettings(stack="bench"))
    with psycopg.connect(server.dsn(TEMPLATE), autocommit=True) as conn:
        entries = legacy.generate(conn, legacy.LegacyShape(leads))
    apply_batch(target, batches[1], RunSettings(stack="bench"))
    with psycopg.connect(server.dsn(TEMPLATE), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE, FREEZE)")
        job_ids = [r[0] for r in conn.execute('SELECT "id" FROM "Job" TABLESAMPLE SYSTEM (5) LIMIT 20000')]
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(sql.Identifier(TEMPLATE)))
    return job_ids, entries


Action = Callable[[str, list[tuple[float, str]]], Done]


def database_of(scenario: str) -> str:
    return "bench_" + re.sub(r"[^a-z0-9]+", "_", scenario.lower()).strip("_")


def _writers(dsn: str, job_ids: list[str], rate: float | None) -> Writers:
    """The application's post-deploy transaction on 4 connections: at `rate` a second in all, or flat out (None)."""
    return Writers(dsn, job_ids, write=write_linked, max_seconds=WRITERS_MAX_S, rate=rate)


def run_scenario(server: LocalServer, name: str, job_ids: list[str], action: Action,
                 replica: LocalServer | None = None, *, keep: bool = False, rate: float | None = None) -> Result:
    """One scenario on a fresh copy of the template, dropped once measured unless `keep` (a later one needs it)."""
    database = database_of(name)
    wal.fill(server)  # first: what it writes evicts the page cache the copy fills
    dsn = clone(server, TEMPLATE, database)
    if replica:
        wal.wait_replayed(server, replica)
    writers = _writers(dsn, job_ids, rate)
    sampler = LagSampler(dsn) if replica else None
    try:
        if sampler:
            sampler.__enter__()
        t0 = writers.start()
        time.sleep(LEAD_IN_S)
        pool, created = wal.ready(server), wal.created_by_sessions(server)
        start = time.monotonic()
        phases: list[tuple[float, str]] = []
        counted = _ServerCounts(server, start)
        done = action(dsn, phases)
        checkpoints = counted.checkpoints()
        end = time.monotonic()
        time.sleep(TAIL_S)
        written = counted.written()
    finally:
        samples = writers.stop()
        if sampler:
            sampler.__exit__()
        if not keep:
            drop(server, database)
    created = None if created is None else wal.created_by_sessions(server) - created  # the writers' flushed on exit
    series = sampler.series if sampler else []
    inside = [v for t, v in series if start <= t <= end + TAIL_S]
    result = Result(name, samples, t0, start, end, done.rows, done.longest_lock_ms, done.outcome,
                    max(inside) if inside else None, series, phases, checkpoints, pool, created, done.split,
                    done.events, done.sleeps)
    result.written = written
    return result


class _ServerCounts:
    """What the server counts over a scenario from `start`: the checkpoints the WAL forced (read as its action ends),
    and what it wrote (pg_io.py; read after the tail: the engine's sessions report theirs as they close)."""

    def __init__(self, server: LocalServer, start: float) -> None:
        self._server, self._start = server, start
        self._checkpoints, self._io = checkpoints_requested(server), _io(server)

    def checkpoints(self) -> int:
        return checkpoints_requested(self._server) - self._checkpoints

    def written(self) -> pg_io.Written | None:
        after = _io(self._server)
        return pg_io.written_between(self._io, after, time.monotonic() - self._start)


def _io(server: LocalServer) -> pg_io.Counts | None:
    """pg_stat_io's totals now (pg_io.py)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return pg_io.snapshot(conn)


def adaptive(batch: Batch, fixed: int | None = None, stretch: bool = True) -> Action:
    def action(dsn: str, phases: list[tuple[float, str]]) -> Done:
        seen: dict[str, BackfillProgress] = {}
        longest = [0.0]
        split = TimeSplit()
        shown = [time.monotonic()]
        events: list[tuple[float, BackfillProgress]] = []
        sleeps: list[tuple[float, float]] = []

        def pause(seconds: float) -> None:
            began = time.monotonic()
            sleeps.append((began, seconds))
            time.sleep(seconds)
            split.asleep_s += time.monotonic() - began

        def on(event: BackfillProgress) -> None:
            phases.append((time.monotonic(), f"{event.part} {event.phase}"))
            events.append((phases[-1][0], event))
            split.chunks_s += event.chunk_ms / 1000
            if not event.kept:
                split.not_kept_s += event.chunk_ms / 1000
            if event.unit == "rows":  # not the reads before the checks: they hold no row lock and move no row
                seen[event.part] = event
                longest[0] = max(longest[0], event.chunk_ms)
            if event.phase == "done" or time.monotonic() - shown[0] >= PROGRESS_EVERY_S:
                shown[0] = time.monotonic()
                print(f"    {event.line()}", flush=True)
        run = BackfillRun(ThrottleSettings(stretch_uncontended=stretch), fixed_chunk_rows=fixed, on_progress=on,
                          sleep=pause)
        try:
            apply_batch(Target.from_dsn(dsn), batch, RunSettings(stack="bench", backfill=run))
            outcome = "applied and validated"
        except Exception as err:  # noqa: BLE001 - the benchmark reports whatever happened
            outcome = f"failed: {err}"
        return Done(sum(e.rows_done for e in seen.values()), longest[0], outcome, split, tuple(events), tuple(sleeps))
    return action


def naive(batch: Batch) -> Action:
    """migration.sql through the engine, then every part over its whole table in ONE transaction: each part's chunk
    function handed the table's keys in order, NAIVE_KEYS_PER_STATEMENT at a time, every row lock held to the end."""
    def action(dsn: str, phases: list[tuple[float, str]]) -> Done:
        target = Target.from_dsn(dsn)
        machinery = Batch(batch.name, batch.migration, "SELECT 'x' AS check_name, true AS ok, '' AS detail;", batch.rollback)
        apply_batch(target, machinery, RunSettings(stack="bench"))
        rows = statements = 0
        started = time.monotonic()
        try:
            with psycopg.connect(dsn, autocommit=True, application_name=cpu_use.NAIVE_APPLICATION) as conn, \
                    conn.transaction():
                for part in load_spec(batch).parts:
                    after: str | None = None
                    while True:
                        _changed, count, after = apply_keys(conn, part, page(part, after, NAIVE_KEYS_PER_STATEMENT))
                        rows, statements = rows + count, statements + 1
                        if count < NAIVE_KEYS_PER_STATEMENT:
                            break
                    phases.append((time.monotonic(), f"{part.name} (one transaction)"))
            outcome = f"one transaction ({statements} statements), committed"
        except psycopg.Error as err:
            outcome = f"failed after {time.monotonic() - started:.0f} s, rolled back: {type(err).__name__}: {err}".splitlines()[0]
        return Done(rows, (time.monotonic() - started) * 1000, outcome)
    return action


REPLICA_SLOT = "bench_replica"


def start_replica(server: LocalServer, tmp: Path) -> LocalServer:
    """A streaming replica of `server` from a base backup (pg_basebackup -R), on its own port, with a replication
    slot: the primary keeps every segment the replica has not received yet, however fast the WAL pool's fill
    writes (without one, its checkpoint can recycle a segment not yet sent, and the replica stops streaming).
    stop_replica drops the slot, or the primary would keep all WAL from then on."""
    data = tmp / "replica"
    data.mkdir(mode=0o700)
    if server.system_user:
        shutil.chown(data, server.system_user, server.system_user)
        os.chmod(tmp, 0o755)
    server._run(server.bin_dir / "pg_basebackup", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
                "-D", str(data), "-R", "-X", "stream", "-c", "fast", "-C", "-S", REPLICA_SLOT)
    replica = LocalServer(data, free_port(), bin_dir=server.bin_dir)
    replica.start()
    return replica


def stop_replica(server: LocalServer, replica: LocalServer) -> None:
    replica.stop()
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (REPLICA_SLOT,))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill")
    parser.add_argument("--leads", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    parser.add_argument("--no-replica", action="store_true")
    parser.add_argument("--floor-seconds", type=float, default=FLOOR_S, help="how long writers-alone measures")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run (default: all but "
                        f"{', '.join(sorted(OPT_IN))}), of: {', '.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=1,
                        help="2: adaptive, adaptive-unstretched and fixed-1000 (as chosen) again, in the reverse order")
    parser.add_argument("--fixed-first", action="store_true",
                        help="run the engine's scenarios in the reverse order: fixed-1000 first (and last with --rounds 2)")
    parser.add_argument("--writer-rate", type=float, default=WRITER_RATE,
                        help="the writers' transactions a second, on a fixed schedule (0: flat out)")
    parser.add_argument("--samples", type=Path, default=None,
                        help="also write each scenario's writes, progress events and the data directory's disk every "
                             "0.1 s, with UTC times, as CSV here, and the server's log (statements over 50 ms and "
                             "every autovacuum run logged)")
    args = parser.parse_args(argv)
    if args.writer_rate < 0:
        parser.error("--writer-rate must be 0 (flat out) or more")
    rate = args.writer_rate or None
    # Stopped from outside (kill, timeout): leave as on Ctrl-C, so the servers stop and their data is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = set(filter(None, args.only.split(",")))
    if wanted - set(SCENARIOS):
        parser.error(f"unknown scenario {', '.join(sorted(wanted - set(SCENARIOS)))}; choose from {', '.join(SCENARIOS)}")

    def chosen(name: str) -> bool:
        return name in wanted or (not wanted and name not in OPT_IN)
    batches = load_batches(REPO / "sql")
    b2, b3 = batches[2], batches[3]
    load = os.getloadavg()[0]
    results: list[Result] = []
    with bench_server(server_settings()) as server, tempfile.TemporaryDirectory(prefix="jq-replica-") as tmp, \
            StealSampler() as host, (DiskSampler(server.data_dir) if args.samples else nullcontext()) as disk, \
            _cpu_sampler(server) as cpu:
        configure(server, FAST_LOAD, reload=True)
        t = time.monotonic()
        job_ids, entries = seed(server, batches, args.leads)
        make_durable(server)
        seed_s = time.monotonic() - t
        print(f"seeded {args.leads:,} leads, {entries:,} legacy entries in {seed_s:.0f} s", flush=True)
        if args.samples:
            configure(server, DIAGNOSTIC_LOGGING, reload=True)
            if disk is not None and disk.device is None:
                print(f"the disk holding {server.data_dir} is not in /proc/diskstats: no disk samples", flush=True)
        info, settings = machine(server), f"server: {settings_in_effect(server)}; host: {host_settings()}"

        def record(result: Result) -> None:
            """Print it, and rewrite the report with every scenario so far (a run cut short keeps its figures)."""
            result.steal = host.over(result.start, result.end)
            if cpu is not None:
                result.cpu = cpu.over(result.start, result.end)
                result.cpu_spans = cpu.spans(result.t0, result.end + TAIL_S)
            if disk is not None:
                result.disk = tuple(disk.over(result.t0, result.end + TAIL_S))
            results.append(result)
            _print(result)
            if args.samples:
                dump_samples(args.samples, result)
                shutil.copyfile(server.data_dir / "server.log", args.samples / "server.log")  # the run's so far
            write(args.out, args.leads, entries, seed_s, info, settings, load, results, quiet=True, rate=rate)

        # The backfills through the engine, in this order.
        engine = [(name, action) for name, action in (
            ("adaptive", adaptive(b2)), ("adaptive-unstretched", adaptive(b2, stretch=False)),
            ("fixed-1000", adaptive(b2, 1000))) if chosen(name)]
        if args.fixed_first:
            engine.reverse()
        first = [("writers-alone", writers_alone(args.floor_seconds))] if chosen("writers-alone") else []
        for name, action in first + engine:
            print(f"scenario {name} ...", flush=True)
            keep = name == "adaptive" and chosen("tighten-0003")
            result = run_scenario(server, name, job_ids, action, keep=keep, rate=rate)
            record(result)
            if keep:  # 0003 right away, on the database the adaptive backfill left (dropped after)
                print("scenario tighten-0003 ...", flush=True)
                applied = result.outcome == "applied and validated"
                if not applied:
                    drop(server, database_of(name))
                record(_tighten(server, job_ids, b2, b3, database_of(name) if applied else None, rate))
        if args.rounds == 2:
            for name, action in reversed(engine):
                print(f"scenario {name} (2) ...", flush=True)
                record(run_scenario(server, f"{name} (2)", job_ids, action, rate=rate))
        if not args.no_replica and (chosen("adaptive+replica") or chosen("fixed-1000+replica")):
            replica = start_replica(server, Path(tmp))
            try:
                for name, action in (("adaptive+replica", adaptive(b2)), ("fixed-1000+replica", adaptive(b2, 1000))):
                    if chosen(name):
                        print(f"scenario {name} ...", flush=True)
                        record(run_scenario(server, name, job_ids, action, replica, rate=rate))
            finally:
                stop_replica(server, replica)
        if chosen("tighten-0003") and not chosen("adaptive"):  # else it ran right after adaptive
            print("scenario tighten-0003 ...", flush=True)
            record(_tighten(server, job_ids, b2, b3, None, rate))
        if chosen("naive"):  # last: the contrast, and the longest to run
            print("scenario naive ...", flush=True)
            record(run_scenario(server, "naive", job_ids, naive(b2), rate=rate))
    return 0


# With --samples: what the server did beside the slow writes (a slow statement, an autovacuum or autoanalyze run),
# in the log kept with the samples. A few lines a second; the measured scenarios are otherwise unchanged.
DIAGNOSTIC_LOGGING = {"log_min_duration_statement": "50", "log_autovacuum_min_duration": "0"}


def writers_alone(seconds: float) -> Action:
    """No backfill: what the writers see on this machine by themselves (the floor of every other scenario)."""
    def action(_dsn: str, _phases: list[tuple[float, str]]) -> Done:
        time.sleep(seconds)  # the measuring window itself: the writers run meanwhile
        return Done(0, 0.0, "no backfill (writers alone)")
    return action


def _tighten(server: LocalServer, job_ids: list[str], b2: Batch, b3: Batch, applied: str | None,
             rate: float | None = None) -> Result:
    """0003, measured with writers on, on a database where 0002 has been applied: the adaptive scenario's when
    it ran (0002 applied under traffic, as in production), else a copy of the template where 0002 is applied
    first with the writers stopped. The outcome says which. The database is dropped after, whatever happens."""
    database = applied or "bench_tighten"
    try:
        if applied:  # no fill: the backfill just ran through the pool, and what a fill writes would evict its database
            dsn, on = server.dsn(applied), "after the adaptive scenario's 0002"
        else:
            wal.fill(server)
            dsn, on = clone(server, TEMPLATE, database), "after 0002 applied with no writers"
            apply_batch(Target.from_dsn(dsn), b2,
                        RunSettings(stack="bench", backfill=BackfillRun(fixed_chunk_rows=PREPARE_CHUNK_ROWS)))
        with psycopg.connect(dsn, autocommit=True) as conn:
            # As in production some time after 0002: autovacuum has processed the rewritten rows. (An autovacuum
            # still running holds SHARE UPDATE EXCLUSIVE and is only cancelled after deadlock_timeout, 1 s, which is
            # longer than lock_timeout: 0003 would retry until it gives up.)
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")  # every scenario starts right after a checkpoint
        writers = _writers(dsn, job_ids, rate)
        t0 = writers.start()
        try:
            time.sleep(LEAD_IN_S)
            pool, created = wal.ready(server), wal.created_by_sessions(server)
            start = time.monotonic()
            counted = _ServerCounts(server, start)
            try:
                apply_batch(Target.from_dsn(dsn), b3, RunSettings(stack="bench"))
                outcome = f"applied ({on})"
            except Exception as err:  # noqa: BLE001
                outcome = f"failed ({on}): {err}"
            checkpoints = counted.checkpoints()
            end = time.monotonic()
            time.sleep(TAIL_S)
            written = counted.written()
        finally:
            samples = writers.stop()
        created = None if created is None else wal.created_by_sessions(server) - created  # flushed on the writers' exit
    finally:
        drop(server, database)
    return Result("tighten-0003", samples, t0, start, end, 0, 0.0, outcome, wal_checkpoints=checkpoints,
                  wal_ready=pool, wal_created=created, written=written)


def _lateness(w: WindowStats) -> str:
    """On a schedule: how late the writes that started began, and how many never did (nothing when flat out)."""
    if not (w.late_max_ms or w.not_started):
        return ""
    return f", started late by up to {w.late_max_ms:.0f} ms, not started {w.not_started}"


def _cpu_sampler(server: LocalServer) -> CpuSampler | nullcontext[None]:
    """The CPU by role (cpu.py), where the postmaster's pid can be read."""
    pid = postmaster_pid(server.data_dir)
    return CpuSampler(server.dsn(), pid) if pid is not None else nullcontext()


def dump_samples(directory: Path, r: Result) -> None:
    """<scenario>.writes.csv (every write: when due, its latency and lateness, how it ended, and how long its client
    and its server session each waited for a CPU, bench/writer.py) and
    <scenario>.events.csv (every progress event of a backfill through the engine: after each chunk, the chunk's
    duration, the next one's size and the last reason the throttle slowed down, which stays until the next one)
    and <scenario>.sleeps.csv (every pause it asked for) and <scenario>.disk.csv (the data directory's disk every
    0.1 s: writes and flushes completed and their mean time, requests in flight, the share of time busy, the page
    cache's dirty and under-writeback memory; disk.py) and <scenario>.cpu.csv (every second, the CPU seconds each role
    used; cpu.py), times as UTC epoch seconds, to lay beside the server's log."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = database_of(r.name)
    with open(directory / f"{stem}.writes.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["due_epoch_s", "latency_ms", "late_ms", "ok", "error", "client_cpu_wait_ms",
                      "server_cpu_wait_ms"])
        for s in r.samples:
            out.writerow([f"{s.start + r.wall_offset:.4f}", f"{s.latency * 1000:.2f}", f"{s.late * 1000:.2f}",
                          int(s.ok), s.error, f"{s.client_cpu_wait * 1000:.2f}", f"{s.server_cpu_wait * 1000:.2f}"])
    with open(directory / f"{stem}.events.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["epoch_s", "part", "phase", "done", "unit", "chunk_ms", "kept", "next_chunk_rows", "last_slowdown"])
        out.writerows([f"{t + r.wall_offset:.4f}", e.part, e.phase, e.rows_done, e.unit, f"{e.chunk_ms:.1f}",
                       int(e.kept), e.chunk_rows, e.slowed_because or ""] for t, e in r.events)
    with open(directory / f"{stem}.sleeps.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["epoch_s", "seconds"])
        out.writerows([f"{t + r.wall_offset:.4f}", f"{seconds:.3f}"] for t, seconds in r.sleeps)
    if r.disk:
        with open(directory / f"{stem}.disk.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["epoch_s", "seconds", "writes", "write_await_ms", "flushes", "flush_await_ms", "in_flight",
                          "busy", "dirty_kb", "writeback_kb"])
            out.writerows([f"{d.start + r.wall_offset:.4f}", f"{d.end - d.start:.3f}", d.writes,
                           f"{d.write_await_ms:.2f}", d.flushes, f"{d.flush_await_ms:.2f}", d.in_flight,
                           f"{d.busy:.2f}", d.dirty_kb, d.writeback_kb] for d in r.disk)
    if r.cpu_spans:
        with open(directory / f"{stem}.cpu.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(cpu_use.csv_header())
            out.writerows(cpu_use.csv_row(c, r.wall_offset) for c in r.cpu_spans)


def _print(r: Result) -> None:
    w = window_stats(r.samples, r.start, r.end)
    lag = f", max replay lag {r.max_lag_ms / 1000:.2f} s" if r.max_lag_ms is not None else ""
    print(f"  {r.name}: {r.outcome}; {r.end - r.start:.1f} s, {r.rows / max(r.end - r.start, 1e-9):,.0f} rows/s, "
          f"writes max {w.max_ms:.0f} ms p99 {w.p99_ms:.0f} ms, failed {w.failed}{_lateness(w)}, "
          f"over {TARGET_MS:.0f} ms {over_target(r)} (client CPU-starved {client_starved(r)}), "
          f"max less client wait {w.max_less_client_wait_ms:.0f} ms, "
          f"longest lock {r.longest_lock_ms:.0f} ms{lag}"
          f"; slowest write during: {slowest_during(r)}; WAL-forced checkpoints {r.wal_checkpoints}"
          f"; WAL segments ready at start {r.wal_ready}, created by sessions {r.wal_created}"
          f"{'; in chunks / not kept / asleep ' + r.split.cell() if r.split else ''}"
          f"{_stolen(r)}"
          f"{'; CPUs busy on average: ' + r.cpu.cell() if r.cpu else ''}"
          f"{'; the server wrote: ' + r.written.cell() if r.written else ''}"
          f"{'; the disk during the slowest write: ' + _disk_at_slowest(r) if r.disk else ''}",
          flush=True)


def _stolen(r: Result) -> str:
    return f"; CPU stolen by the hypervisor (mean / worst ~{EVERY_S} s) {r.steal.cell()}" if r.steal else ""


def _disk_at_slowest(r: Result) -> str:
    """What the disk did while the write slowest_during() names was waiting."""
    slowest = slowest_write(r)
    return during(r.disk, slowest.start, slowest.start + slowest.latency) if slowest else "—"


if __name__ == "__main__":
    sys.exit(main())
