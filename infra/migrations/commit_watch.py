"""How much longer than usual a durable commit takes right now, measured beside the backfill, off its path.

A commit waits until the WAL before it is on disk (the backfill's own included) and, with synchronous standbys,
until they confirm it. A server short of I/O stalls every session's commits at once, and no row lock and no
chunk duration shows it. So while a backfill runs, a thread of its own times the smallest durable write there is,
every PROBE_EVERY_S on a connection of its own: it rewrites the one row of schema_ledger.commit_probe, a table
nothing else writes (so it never waits for a lock). A transaction that writes no WAL before its commit record
commits without waiting for the flush, so the probe must write a row.

The fastest probe of the run is the usual cost (round trip and flush); what goes beyond it is the stall. The
throttle reads the worst stall since its last look, a probe still waiting counting for as long as it has waited
so far. So the chunks never wait for a probe, a stall between two chunks is seen even when it is over by the end
of the chunk, and a commit that never returns (a synchronous standby gone) reads as a stall that keeps growing,
never as a backfill that hangs. On exit, a probe still waiting is cancelled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

import psycopg

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS schema_ledger",
    """CREATE TABLE IF NOT EXISTS schema_ledger.commit_probe (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        probed_at timestamptz NOT NULL DEFAULT now()
    )""",
    "COMMENT ON TABLE schema_ledger.commit_probe IS 'Rewritten every 100 ms while a backfill runs, to time a durable commit'",
    "INSERT INTO schema_ledger.commit_probe DEFAULT VALUES ON CONFLICT (only_row) DO NOTHING",
]
PROBE = "UPDATE schema_ledger.commit_probe SET probed_at = now()"
PROBE_EVERY_S = 0.1
STOP_TIMEOUT_S = 10.0
JOIN_STEP_S = 0.1


class CommitWatch:
    """Started with `with`: times one durable commit right away (the baseline, and proof the probe works),
    then one every `every_s` in a thread until exit."""

    def __init__(self, connect: Callable[[], psycopg.Connection], every_s: float = PROBE_EVERY_S) -> None:
        self._connect, self._every_s = connect, every_s
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._fastest_ms: float | None = None
        self._worst_ms = 0.0  # the slowest probe finished since the last read
        self._waiting_since: float | None = None  # when the probe in flight began
        self._error: BaseException | None = None

    def __enter__(self) -> CommitWatch:
        self._conn = self._connect()
        self._conn.autocommit = True
        try:
            self._ensure_table()
        except BaseException:
            self._conn.close()
            raise
        self._probe_once()
        if self._error is not None:
            self._conn.close()
            raise self._error
        self._thread = threading.Thread(target=self._loop, name="backfill-commit-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        assert self._conn is not None
        give_up = time.monotonic() + STOP_TIMEOUT_S
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < give_up:
            with self._lock:
                in_flight = self._waiting_since is not None
            if in_flight:  # a commit that may never return (a synchronous standby gone): cancel its wait
                self._conn.cancel_safe(timeout=STOP_TIMEOUT_S)
            self._thread.join(JOIN_STEP_S)
        self._conn.close()

    def stall_ms(self) -> float:
        """How much longer than the fastest probe the slowest commit since the last call took, or the one in
        flight has waited so far; the probe's own failure is raised here, in the backfill's thread."""
        now = time.monotonic()
        with self._lock:
            if self._error is not None:
                raise self._error
            worst = self._worst_ms
            if self._waiting_since is not None:
                worst = max(worst, (now - self._waiting_since) * 1000)
            self._worst_ms = 0.0
            fastest = self._fastest_ms or 0.0
        return max(0.0, worst - fastest)

    def _ensure_table(self) -> None:
        assert self._conn is not None
        if self._conn.execute("SELECT to_regclass('schema_ledger.commit_probe') IS NOT NULL").fetchone()[0]:
            return
        with self._conn.transaction():
            for ddl in _DDL:
                self._conn.execute(ddl)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            if not self._probe_once():
                return

    def _probe_once(self) -> bool:
        assert self._conn is not None
        started = time.monotonic()
        with self._lock:
            self._waiting_since = started
        try:
            self._conn.execute(PROBE)
        except psycopg.Error as err:
            with self._lock:
                self._waiting_since = None
                if not self._stop.is_set():
                    self._error = err
            return False
        took = (time.monotonic() - started) * 1000
        with self._lock:
            self._waiting_since = None
            self._worst_ms = max(self._worst_ms, took)
            self._fastest_ms = took if self._fastest_ms is None else min(self._fastest_ms, took)
        return True
