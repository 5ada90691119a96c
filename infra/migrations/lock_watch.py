"""Who waits on the backfill's locks right now, watched beside the chunks, off their path.

A chunk's row locks cost the application something only when one of its transactions needs one of those rows (or a
lock the chunk's session holds) before the chunk commits. So while a backfill runs, a thread of its own looks every
POLL_S, on a connection of its own, for sessions waiting on a lock the backfill's session holds: pg_locks (readable
by any role, unlike other roles' wait events in pg_stat_activity) for the locks not granted, pg_blocking_pids for
whom they wait on, evaluated only for those, and waitstart for how long they have waited.

The throttle reads the longest wait since its last look (throttle.py: chunks keep to the chunk budget while the
application contends for their rows, and may grow past it while nobody does). A chunk that runs past that budget
(one sized for a table nobody else was waiting on) carries a patience: once a session has waited that long on it,
the watch cancels the chunk's statement, which rolls the chunk back and releases its locks; the throttle hears that
the cancel was the watch's. The cancel is sent only while the chunk is in flight, under the same lock that ends it:
a cancel that reaches the server after the chunk's commit finds the session reading its next command, and PostgreSQL
ignores a cancel there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

import psycopg

from .backfill_errors import LockWatchFailed

POLL_S = 0.02
STOP_TIMEOUT_S = 10.0
# The longest any session waiting on a lock the backfill's session holds has waited, in ms (0 while one has just
# begun to: waitstart can be null for a moment), and how many there are.
WAITERS = """SELECT coalesce(max(extract(epoch FROM clock_timestamp() - waitstart) * 1000), 0), count(*)
             FROM pg_locks WHERE NOT granted AND %(pid)s = ANY(pg_blocking_pids(pid))"""


class LockWatch:
    """Started with `with`: a thread that looks for sessions waiting on the backfill's session (`pid`) every
    `every_s` until exit, and calls `cancel` (the backfill connection's cancel) for a chunk that keeps one waiting
    past the chunk's patience. Its own failure is raised by waited_ms(), in the backfill's thread."""

    def __init__(self, batch: str, pid: int, connect: Callable[[], psycopg.Connection], cancel: Callable[[], None],
                 every_s: float = POLL_S) -> None:
        self._batch, self._pid, self._connect, self._cancel, self._every_s = batch, pid, connect, cancel, every_s
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._worst_ms = 0.0  # the longest wait seen since the last read
        self._patience_ms: float | None = None  # set while a chunk that may be cancelled is in flight
        self._cancelled = False  # the chunk in flight (or the last one) was cancelled by the watch
        self._error: BaseException | None = None

    def __enter__(self) -> LockWatch:
        conn = self._connect()
        try:
            conn.autocommit = True
            self._conn = conn
            self._thread = threading.Thread(target=self._run, name="backfill-lock-watch", daemon=True)
            self._thread.start()
        except BaseException:
            conn.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the thread (it closes its connection). Never raises: an error of the backfill's stays the one reported."""
        assert self._thread is not None
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)

    @contextmanager
    def chunk(self, patience_ms: float | None) -> Iterator[None]:
        """A chunk in flight: with a patience, cancelled once a session has waited that long on the backfill."""
        with self._lock:
            self._patience_ms, self._cancelled = patience_ms, False
        try:
            yield
        finally:
            with self._lock:
                self._patience_ms = None

    def cancelled(self) -> bool:
        """The last chunk was cancelled by the watch (for a session it kept waiting past its patience)."""
        with self._lock:
            return self._cancelled

    def waited_ms(self) -> float:
        """The longest any session has waited on the backfill's locks since the last call (0: nobody did)."""
        with self._lock:
            if self._error is not None:
                reason = f"{type(self._error).__name__}: {self._error}".splitlines()[0]
                raise LockWatchFailed(self._batch, reason) from self._error
            worst, self._worst_ms = self._worst_ms, 0.0
        return worst

    def _run(self) -> None:
        assert self._conn is not None
        try:
            while not self._stop.wait(self._every_s):
                self._look()
        except BaseException as err:  # noqa: BLE001 - handed to the backfill's thread by waited_ms()
            with self._lock:
                if not self._stop.is_set():
                    self._error = err
        finally:
            self._conn.close()

    def _look(self) -> None:
        assert self._conn is not None
        longest, waiters = self._conn.execute(WAITERS, {"pid": self._pid}).fetchone()
        if not waiters:
            return
        with self._lock:
            self._worst_ms = max(self._worst_ms, float(longest), 1.0)
            if self._patience_ms is not None and not self._cancelled and longest >= self._patience_ms:
                self._cancelled = True
                self._cancel()
