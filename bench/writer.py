"""The concurrent writer: separate processes (no shared GIL), one connection each, every transaction timed.

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
                 write: Callable[..., None] = write_once) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._barrier = ctx.Barrier(clients + 1)
        self._out: mp.Queue = ctx.Queue()
        self._procs = [
            ctx.Process(target=_client, name=f"bench-writer-{i}", daemon=True,
                        args=(dsn, job_ids, i, self._barrier, self._stop, max_seconds, self._out, write))
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
            out: mp.Queue, write: Callable[..., None] = write_once) -> None:
    rng = random.Random(seed)
    conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    barrier.wait(timeout=60)
    deadline = time.monotonic() + max_seconds
    rows: list[tuple[float, float, bool, str]] = []
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            conn = _one(conn, dsn, rng, job_ids, rows, write)
    finally:
        out.put(rows)
        conn.close()


def _one(conn: psycopg.Connection, dsn: str, rng: random.Random, job_ids: list[str],
         rows: list[tuple[float, float, bool, str]], write: Callable[..., None] = write_once) -> psycopg.Connection:
    started = time.monotonic()
    try:
        write(conn, rng, job_ids)
        rows.append((started, time.monotonic() - started, True, ""))
    except psycopg.Error as err:
        rows.append((started, time.monotonic() - started, False, err.sqlstate or type(err).__name__))
        if conn.broken:
            conn = psycopg.connect(dsn, autocommit=True, application_name="bench writer")
    return conn
