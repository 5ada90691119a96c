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

While they write, the clients share nothing: each waits for its next write, or for the stop, on a pipe of its own
(a shared lock would let one client that lost its CPU while holding it hold up the others).

Each write also carries how long, between the end of its client's previous write and its own end, the client
process and its server session each sat runnable with no CPU (the kernel's run-queue wait, /proc/<pid>/schedstat;
0 where it cannot be read). On this 2-core machine the clients share the CPUs with the server, the backfill and the
checkpoint; an application's clients run on hosts of their own, so the client's share is this bench's, not the
database's. An approximation both ways: a write that waited behind a slow one of its client's carries in its
latency the wait that held up the one before, not in its own client wait; flat out, a wait between two writes is
charged to the second, whose latency does not include it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
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
    client_cpu_wait: float = 0.0  # s the client process was runnable with no CPU (since its previous write ended)
    server_cpu_wait: float = 0.0  # s its server session was

    @property
    def end(self) -> float:
        return self.start + self.latency


NOT_STARTED = "not started"  # a write due before the writers stopped that its client never began
Row = tuple[float, float, bool, str, float, float, float]  # a Sample as a client sends it back


class RunQueueWait:
    """How long a process has sat runnable with no CPU so far (s), from /proc/<pid>/schedstat: 0 where it cannot be
    read, and the last reading once the process is gone (so a difference of two readings is never negative)."""

    def __init__(self, pid: int | str = "thread-self") -> None:
        self._last = 0.0
        try:
            self._file: Any = open(f"/proc/{pid}/schedstat", "rb", buffering=0)
        except OSError:
            self._file = None

    def __call__(self) -> float:
        if self._file is None:
            return self._last
        try:
            self._file.seek(0)
            self._last = int(self._file.read(128).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            self._file.close()
            self._file = None
        return self._last

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


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
        self._go = ctx.Event()
        self._barrier = ctx.Barrier(clients + 1)
        self._times = ctx.Array("d", [0.0])  # the shared start
        self._out: mp.Queue = ctx.Queue()
        # At a fixed rate, each client every `interval` s, the clients' schedules staggered evenly.
        interval = clients / rate if rate else None
        pipes = [ctx.Pipe(duplex=False) for _ in range(clients)]
        self._stops = [send for _, send in pipes]  # each client's stop: when the writers stopped (monotonic s)
        self._procs = [
            ctx.Process(target=_client, name=f"bench-writer-{i}", daemon=True,
                        args=(dsn, job_ids, i, self._barrier, self._go, receive, self._times, max_seconds,
                              self._out, write, None if interval is None else (interval, interval * i / clients)))
            for i, (receive, _) in enumerate(pipes)
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
        stopped = time.monotonic()
        for send in self._stops:
            try:
                send.send(stopped)
            except OSError:  # that client has already ended (max_seconds)
                pass
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


class Session:
    """A client's connection, and the run-queue waits of the client and of its server session since it last asked."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._client = RunQueueWait()
        self._open()

    def _open(self) -> None:
        self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="bench writer")
        self._server = RunQueueWait(_local_backend(self.conn.info))
        self._since = self._waits()

    def _waits(self) -> tuple[float, float]:
        return self._client(), self._server()

    def waited(self) -> tuple[float, float]:
        """Seconds the client, and its server session, sat runnable with no CPU since the last call (or connecting).
        Read after each write, so a write carries the waits from the end of the one before to its own end: the
        client's wake-up for it and its turns during it, and, flat out, the moment between the two as well."""
        before, self._since = self._since, self._waits()
        return self._since[0] - before[0], self._since[1] - before[1]

    def reopen_if_broken(self) -> None:
        if self.conn.broken:
            self._server.close()
            self._open()

    def close(self) -> None:
        self.conn.close()
        self._server.close()
        self._client.close()


def _local_backend(info: psycopg.ConnectionInfo) -> int | str:
    """The server session's pid when it is a PostgreSQL process of this machine (the bench's server), else "none"."""
    if not (info.host.startswith("/") or info.host in ("localhost", "127.0.0.1", "::1")):
        return "none"
    try:
        return info.backend_pid if Path(f"/proc/{info.backend_pid}/comm").read_text().strip() == "postgres" else "none"
    except OSError:
        return "none"


def _stopped(stop: Connection, timeout: float) -> bool:
    """Whether the stop has come, waiting for it at most `timeout` s (select: microseconds, where poll() would round
    the wait up to the next millisecond and start every scheduled write up to 1 ms late)."""
    return bool(select.select([stop], [], [], timeout)[0])


def _client(dsn: str, job_ids: list[str], seed: int, barrier: Barrier, go: Event, stop: Connection, times: Any,
            max_seconds: float, out: mp.Queue, write: Callable[..., None] = write_once,
            schedule: tuple[float, float] | None = None) -> None:
    """Write until stopped: flat out, or with `schedule` (interval, offset) on a fixed schedule from the start."""
    rng = random.Random(seed)
    session = Session(dsn)
    rows: list[Row] = []
    try:
        barrier.wait(timeout=60)
        if not go.wait(timeout=60):
            raise RuntimeError("the writers were never released (Writers.start did not finish)")
        session.waited()  # from here on
        begun = times[0]
        deadline = begun + max_seconds
        plan = Schedule(begun + schedule[1], schedule[0]) if schedule else None
        if plan is None:
            _stopped(stop, max(0.0, begun - time.monotonic()))
            while not _stopped(stop, 0.0) and time.monotonic() < deadline:
                _one(session, rng, job_ids, rows, write)
        else:
            while plan.due < deadline and not _stopped(stop, max(0.0, plan.due - time.monotonic())):
                _one(session, rng, job_ids, rows, write, plan.take())
            until = min(_stop_time(stop), deadline) if _stopped(stop, 0.0) else deadline
            rows.extend((due, until - due, True, NOT_STARTED, until - due, 0.0, 0.0) for due in plan.missed(until))
    finally:
        out.put(rows)
        session.close()


def _stop_time(stop: Connection) -> float:
    """When the writers were stopped, as Writers.stop sent it (now, if the main process went without sending it)."""
    try:
        return float(stop.recv())
    except EOFError:
        return time.monotonic()


def _one(session: Session, rng: random.Random, job_ids: list[str], rows: list[Row],
         write: Callable[..., None] = write_once, due: float | None = None) -> None:
    """One transaction, timed from `due` (when it was scheduled to start) or from now."""
    began = time.monotonic()
    started = began if due is None else min(due, began)
    try:
        write(session.conn, rng, job_ids)
        ok, error = True, ""
    except psycopg.Error as err:
        ok, error = False, err.sqlstate or type(err).__name__
    ended = time.monotonic()
    client_wait, server_wait = session.waited()
    rows.append((started, ended - started, ok, error, began - started, client_wait, server_wait))
    if not ok:
        session.reopen_if_broken()
