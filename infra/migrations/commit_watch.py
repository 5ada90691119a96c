"""How much longer than usual a durable commit takes right now, measured beside the backfill, off its path.

A commit waits until the WAL before it is on disk (the backfill's own included) and, with synchronous standbys,
until they confirm it. A server short of I/O stalls every session's commits at once, and no row lock and no
chunk duration shows it. So while a backfill runs, a thread of its own times the smallest durable write there is,
every PROBE_EVERY_S on a connection of its own (synchronous_commit on): it upserts the one row of
schema_ledger.commit_probe, a table nothing else writes. A transaction that writes no WAL before its commit record
commits without waiting for the flush, so the probe must write a row; a probe that cannot take the row within
PROBE_LOCK_TIMEOUT_MS (a session left behind by a killed run still holding it) counts as a stall that long.

The fastest probe of the run is the usual cost (round trip and flush); what goes beyond it is the stall. The
throttle reads the worst stall since its last look, a probe still waiting counting for as long as it has waited
so far. So the chunks never wait for a probe, a stall between two chunks is seen even when it is over by the end
of the chunk, and a commit that never returns (a synchronous standby gone) reads as a stall that keeps growing,
never as a backfill that hangs. On exit, a probe still waiting is cancelled; the thread closes its connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

import psycopg

from .backfill_errors import CommitWatchFailed, one_line
from .beside import start_beside

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS schema_ledger",
    """CREATE TABLE IF NOT EXISTS schema_ledger.commit_probe (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        probed_at timestamptz NOT NULL DEFAULT now()
    )""",
    "COMMENT ON TABLE schema_ledger.commit_probe IS 'Rewritten every 100 ms while a backfill runs, to time a durable commit'",
    "INSERT INTO schema_ledger.commit_probe DEFAULT VALUES ON CONFLICT (only_row) DO NOTHING",
]
PROBE = ("INSERT INTO schema_ledger.commit_probe DEFAULT VALUES "
         "ON CONFLICT (only_row) DO UPDATE SET probed_at = now()")
PROBE_EVERY_S = 0.1
PROBE_LOCK_TIMEOUT_MS = 1_000
STOP_TIMEOUT_S = 10.0


class CommitWatch:
    """Started with `with`: a thread times one durable commit right away (the baseline), then one every `every_s`
    until exit. Its own failure is raised by stall_ms(), in the backfill's thread, as CommitWatchFailed."""

    def __init__(self, batch: str, connect: Callable[[], psycopg.Connection], every_s: float = PROBE_EVERY_S) -> None:
        self._batch, self._connect, self._every_s = batch, connect, every_s
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._fastest_ms: float | None = None
        self._worst_ms = 0.0  # the slowest probe finished since the last read
        self._waiting_since: float | None = None  # when the probe in flight began
        self._error: BaseException | None = None

    def __enter__(self) -> CommitWatch:
        self._conn, self._thread = start_beside("backfill-commit-watch", self._connect, _prepare, self._run)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the thread; a probe still waiting (a commit that may never return) is cancelled. Never raises: an
        error of the backfill's stays the one reported. A thread that does not stop in time closes its connection
        itself when its probe returns."""
        assert self._conn is not None and self._thread is not None
        with self._lock:  # together with _probe_once's check: no probe starts after this unseen
            self._stop.set()
            in_flight = self._waiting_since is not None
        if in_flight:
            try:
                self._conn.cancel_safe(timeout=STOP_TIMEOUT_S)
            except psycopg.Error:
                pass  # the connection is gone: so is its wait
        self._thread.join(STOP_TIMEOUT_S)

    def stall_ms(self) -> float:
        """How much longer than the fastest probe the slowest commit since the last call took, or the one in
        flight has waited so far."""
        now = time.monotonic()
        with self._lock:
            if self._error is not None:
                raise CommitWatchFailed(self._batch, one_line(self._error)) from self._error
            worst = self._worst_ms
            if self._waiting_since is not None:
                worst = max(worst, (now - self._waiting_since) * 1000)
            self._worst_ms = 0.0
            fastest = self._fastest_ms or 0.0
        return max(0.0, worst - fastest)

    def waiting_ms(self) -> float:
        """How long the probe in flight has waited so far (0 when none is): a commit that has not returned yet."""
        now = time.monotonic()
        with self._lock:
            return 0.0 if self._waiting_since is None else (now - self._waiting_since) * 1000

    def _run(self, conn: psycopg.Connection) -> None:
        try:
            while self._probe_once(conn) and not self._stop.wait(self._every_s):
                pass
        finally:
            conn.close()

    def _probe_once(self, conn: psycopg.Connection) -> bool:
        with self._lock:
            if self._stop.is_set():
                return False
            started = self._waiting_since = time.monotonic()
        timed_out = False
        try:
            conn.execute(PROBE)
        except psycopg.errors.LockNotAvailable:
            timed_out = True  # waited PROBE_LOCK_TIMEOUT_MS for the row: a stall that long, never the usual cost
        except BaseException as err:  # noqa: BLE001 - handed to the backfill's thread by stall_ms()
            with self._lock:
                self._waiting_since = None
                if not self._stop.is_set():
                    self._error = err
            return False
        took = (time.monotonic() - started) * 1000
        with self._lock:
            self._waiting_since = None
            self._worst_ms = max(self._worst_ms, took)
            if not timed_out:
                self._fastest_ms = took if self._fastest_ms is None else min(self._fastest_ms, took)
        return True


def _prepare(conn: psycopg.Connection) -> None:
    """The probe's session: durable commits, a bounded wait for its row; its table, created on first use."""
    conn.execute("SELECT set_config('synchronous_commit', 'on', false), set_config('lock_timeout', %s, false)",
                 (f"{PROBE_LOCK_TIMEOUT_MS}ms",))
    if not conn.execute("SELECT to_regclass('schema_ledger.commit_probe') IS NOT NULL").fetchone()[0]:
        with conn.transaction():
            for ddl in _DDL:
                conn.execute(ddl)
