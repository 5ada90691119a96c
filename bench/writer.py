"""The concurrent writer: separate processes (no shared GIL), one connection each, every transaction timed.

Two ways to drive them:
- flat out (rate None): each client starts its next transaction as soon as the last one ends (a closed loop). On
  this 2-core machine the clients then take as much CPU as the server, and while a write stalls its client issues
  nothing, so a stall counts once per client however long it lasts;
- at a fixed rate (transactions a second, over all clients): each client is a stream of transactions on its own
  connection, on a fixed schedule (every clients/rate s, the clients' schedules staggered evenly from one shared
  start), as requests arriving at an application would, whatever the database is doing. A transaction's latency
  counts from when it was due: a client still waiting on a stalled write is late for the next ones, and each of
  them counts that lateness too (the correction for coordinated omission, as wrk2 and HdrHistogram make it). The
  writes still due when the writers stop, never started, count as well, with their wait so far (a lower bound).
  A stream's writes queue behind its own connection only: an application with a pool would hand them to another
  connection, so these latencies are on the high side of such an application's. After a long stall a stream
  catches up by writing back to back, flat out, until it is on schedule again.

Timestamps are time.monotonic() (CLOCK_MONOTONIC, one clock for every process on Linux), so samples from
the writers line up with the apply window measured in the main process.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import psycopg

from .workload import write_once

CLIENTS = 4
JOIN_GRACE_S = 30.0
START_MARGIN_S = 0.05  # the shared start: this long after every client has connected, for each to be waiting


@dataclass(frozen=True)
class Sample:
    """One writer transaction: when it started (monotonic s; on a schedule, when it was due), how long it took (s),
    how it ended, and how late it started (s; the not-started ones at the end: their wait so far)."""

    start: float
    latency: float
    ok: bool
    error: str = ""
    late: float = 0.0

    @property
    def end(self) -> float:
        return self.start + self.latency


NOT_STARTED = "not started"  # a write due before the writers stopped that its client never began
Row = tuple[float, float, bool, str, float]  # a Sample as a client sends it back


@dataclass
class Schedule:
    """When one client's writes are due: every `interval` s from `first`."""

    first: float
    interval: float
    taken: int = 0

    @property
    def due(self) -> float:
        return self.first + self.taken * self.interval

    def take(self) -> float:
        """The next write's due time (late or not, the one after it stays due when it was going to be)."""
        due = self.due
        self.taken += 1
        return due

    def missed(self, until: float) -> list[float]:
        """The due times before `until` not taken: writes the client never started."""
        due: list[float] = []
        while self.due < until:
            due.append(self.take())
        return due


class Writers:
    """CLIENTS writer processes writing until stop() (or max_seconds, whichever is first): flat out, or at `rate`
    transactions a second over all of them."""

    def __init__(self, dsn: str, job_ids: list[str], *, clients: int = CLIENTS, max_seconds: float = 900.0,
                 write: Callable[..., None] = write_once, rate: float | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._go = ctx.Event()
        self._barrier = ctx.Barrier(clients + 1)
        self._times = ctx.Array("d", [0.0, 0.0])  # the shared start, when the writers were stopped
        self._out: mp.Queue = ctx.Queue()
        # At a fixed rate, each client every `interval` s, the clients' schedules staggered evenly.
        interval = clients / rate if rate else None
        self._procs = [
            ctx.Process(target=_client, name=f"bench-writer-{i}", daemon=True,
                        args=(dsn, job_ids, i, self._barrier, self._go, self._stop, self._times, max_seconds,
                              self._out, write, None if interval is None else (interval, interval * i / clients)))
            for i in range(clients)
        ]
        self.started_at = 0.0

    def start(self) -> float:
        """Start every client (each connected first); returns the monotonic time at which they all begin writing."""
        for proc in self._procs:
            proc.start()
        self._barrier.wait(timeout=60)
        self._times[0] = self.started_at = time.monotonic() + START_MARGIN_S
        self._go.set()
        return self.started_at

    def stop(self) -> list[Sample]:
        """Stop the clients and return every transaction they ran (and, on a schedule, every one due that they did
        not start), ordered by start time."""
        self._times[1] = time.monotonic()
        self._stop.set()
        rows: list[Row] = []
        deadline = time.monotonic() + JOIN_GRACE_S
        for _ in self._procs:
            try:
                rows.extend(self._out.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
        self._reap()
        return sorted((Sample(*r) for r in rows), key=lambda s: s.start)

    def _reap(self) -> None:
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def _client(dsn: str, job_ids: list[str], seed: int, barrier: Barrier, go: Event, stop: Event, times: Any,
            max_seconds: float, out: mp.Queue, write: Callable[..., None] = write_once,
            schedule: tuple[float, float] | None = None) -> None:
    """Write until stopped: flat out, or with `schedule` (interval, offset) on a fixed schedule from the start."""
    rng = random.Random(seed)
    conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    rows: list[Row] = []
    try:
        barrier.wait(timeout=60)
        if not go.wait(timeout=60):
            raise RuntimeError("the writers were never released (Writers.start did not finish)")
        begun = times[0]
        deadline = begun + max_seconds
        plan = Schedule(begun + schedule[1], schedule[0]) if schedule else None
        if plan is None:
            stop.wait(max(0.0, begun - time.monotonic()))
            while not stop.is_set() and time.monotonic() < deadline:
                conn = _one(conn, dsn, rng, job_ids, rows, write)
        else:
            while not stop.wait(max(0.0, plan.due - time.monotonic())) and plan.due < deadline:
                conn = _one(conn, dsn, rng, job_ids, rows, write, plan.take())
            until = min(times[1], deadline) if stop.is_set() else deadline
            rows.extend((due, until - due, True, NOT_STARTED, until - due) for due in plan.missed(until))
    finally:
        out.put(rows)
        conn.close()


def _one(conn: psycopg.Connection, dsn: str, rng: random.Random, job_ids: list[str], rows: list[Row],
         write: Callable[..., None] = write_once, due: float | None = None) -> psycopg.Connection:
    """One transaction, timed from `due` (when it was scheduled to start) or from now."""
    began = time.monotonic()
    started = began if due is None else min(due, began)
    try:
        write(conn, rng, job_ids)
        rows.append((started, time.monotonic() - started, True, "", began - started))
    except psycopg.Error as err:
        rows.append((started, time.monotonic() - started, False, err.sqlstate or type(err).__name__, began - started))
        if conn.broken:
            conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    return conn
