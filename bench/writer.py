"""The concurrent writer: separate processes (no shared GIL), one connection each, every transaction timed.

Two ways to drive them:
- flat out (rate None): each client starts its next transaction as soon as the last one ends (a closed loop). On
  this 2-core machine the clients then take as much CPU as the server, and while a write stalls its client issues
  nothing, so a stall counts once per client however long it lasts;
- at a fixed rate (transactions a second, over all clients): each client starts its transactions on a schedule,
  as requests arriving at an application would, whatever the database is doing. A transaction's latency counts
  from when it was scheduled: a client still waiting on a stalled write is late for the next ones, and each of them
  counts that lateness too (the correction for coordinated omission, as wrk2 and HdrHistogram make it).

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

import psycopg

from .workload import write_once

CLIENTS = 4
JOIN_GRACE_S = 30.0


@dataclass(frozen=True)
class Sample:
    """One writer transaction: when it started (monotonic s), how long it took (s), and how it ended."""

    start: float
    latency: float
    ok: bool
    error: str = ""

    @property
    def end(self) -> float:
        return self.start + self.latency


class Writers:
    """CLIENTS writer processes hammering the database until stop() (or max_seconds, whichever is first)."""

    def __init__(self, dsn: str, job_ids: list[str], *, clients: int = CLIENTS, max_seconds: float = 900.0,
                 write: Callable[..., None] = write_once, rate: float | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._barrier = ctx.Barrier(clients + 1)
        self._out: mp.Queue = ctx.Queue()
        # At a fixed rate, each client every `interval` s, the clients' schedules staggered evenly.
        interval = clients / rate if rate else None
        self._procs = [
            ctx.Process(target=_client, name=f"bench-writer-{i}", daemon=True,
                        args=(dsn, job_ids, i, self._barrier, self._stop, max_seconds, self._out, write,
                              None if interval is None else (interval, interval * i / clients)))
            for i in range(clients)
        ]
        self.started_at = 0.0

    def start(self) -> float:
        """Start every client; returns the monotonic time at which they all began writing."""
        for proc in self._procs:
            proc.start()
        self._barrier.wait(timeout=60)
        self.started_at = time.monotonic()
        return self.started_at

    def stop(self) -> list[Sample]:
        """Stop the clients and return every transaction they ran, ordered by start time."""
        self._stop.set()
        rows: list[tuple[float, float, bool, str]] = []
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


def _client(dsn: str, job_ids: list[str], seed: int, barrier: Barrier, stop: Event, max_seconds: float,
            out: mp.Queue, write: Callable[..., None] = write_once,
            schedule: tuple[float, float] | None = None) -> None:
    """Write until stopped: flat out, or with `schedule` (interval, offset) on a fixed schedule from the start."""
    rng = random.Random(seed)
    conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    barrier.wait(timeout=60)
    begun = time.monotonic()
    deadline = begun + max_seconds
    rows: list[tuple[float, float, bool, str]] = []
    due = begun + schedule[1] if schedule else None
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if due is not None:
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                conn = _one(conn, dsn, rng, job_ids, rows, write, due)
                due += schedule[0]  # late or not: the next one is due when it was going to be
            else:
                conn = _one(conn, dsn, rng, job_ids, rows, write)
    finally:
        out.put(rows)
        conn.close()


def _one(conn: psycopg.Connection, dsn: str, rng: random.Random, job_ids: list[str],
         rows: list[tuple[float, float, bool, str]], write: Callable[..., None] = write_once,
         due: float | None = None) -> psycopg.Connection:
    """One transaction, timed from `due` (when it was scheduled to start) or from now."""
    started = time.monotonic() if due is None else min(due, time.monotonic())
    try:
        write(conn, rng, job_ids)
        rows.append((started, time.monotonic() - started, True, ""))
    except psycopg.Error as err:
        rows.append((started, time.monotonic() - started, False, err.sqlstate or type(err).__name__))
        if conn.broken:
            conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    return conn
