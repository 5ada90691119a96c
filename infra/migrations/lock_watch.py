"""Who waits on the backfill's locks, watched beside each chunk, off its path.

A chunk's row locks cost the application something only when one of its transactions needs one of those rows (or a
lock the chunk's session holds) before the chunk commits. So while a chunk is in flight, a thread of its own looks
every POLL_S, on a connection of its own, for sessions waiting on a lock the backfill's session holds: pg_locks
(readable by any role, unlike other roles' wait events in pg_stat_activity) for the locks not granted,
pg_blocking_pids for whom they wait on, evaluated only for those, and waitstart (PostgreSQL 14 and later) for how
long they have waited for that lock. Between chunks it does not look: the backfill's session then holds no row lock.
Nor does it look during a chunk the throttle has nothing to learn from (the reads before the checks, which never
stretch; a part where a session was already seen waiting, which keeps to the budget until it ends): each look is a
query, every POLL_S, that takes every lock-manager partition lock for a moment, on a server whose CPU the chunks
and the application share.

"Nobody waited on the chunk" takes a look that began within COVERED_POLLS of the watch's cycles (a poll interval
plus the last look's own time) of the chunk's end: a session that began to wait after the last look has waited at
most that long unseen (over a stretched chunk's patience, at the default target, once a look takes over 5 ms).
The first look, at or soon after the chunk's start, may come before the chunk holds any row lock, so alone it
covers only a chunk that ends soon after it; a chunk during which no look finished (one shorter than a look), or
whose later looks were held up, has not been watched. A wait that was seen is reported however the looks after it
went: it is a lower bound.

The throttle reads the longest wait seen during the last chunk (throttle.py: chunks keep to the chunk budget while
the application contends for their rows, and may grow past it while nobody does). A chunk that may run past that
budget carries a patience: once a session has waited that long for a lock the chunk holds, the watch cancels the
chunk's statement, which rolls the chunk back and releases its locks; the throttle hears that the cancel was the
watch's. A look is only acted on if the chunk it was made during is still the one in flight, and the cancel is sent
while that chunk is in flight, under the lock that ends it. libpq returns from a cancel once the server has taken the
request: one that reaches the server after the chunk's commit finds the session reading its next command, where
PostgreSQL ignores it. A cancel that fails or times out may still arrive later, on whatever statement runs then: the
chunk's end raises LockWatchFailed, so the backfill stops instead of running another statement on that session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

import psycopg

from .backfill_errors import LockWatchFailed, one_line
from .beside import start_beside

POLL_S = 0.02
COVERED_POLLS = 2  # a chunk is watched when a look began at most this many cycles (interval + look) before its end
STOP_TIMEOUT_S = 10.0
LOOK_TIMEOUT_MS = 5_000  # a look held up this long fails the watch (LockWatchFailed): the server is in trouble
WAITSTART_SINCE = 140000  # pg_locks.waitstart
# The longest any session waiting on a lock the backfill's session holds has waited for it, in ms (0 while one has
# just begun to: waitstart can be null for a moment), and how many there are. Reading pg_locks takes every
# lock-manager partition lock (shared) and each session's fast-path locks for a moment; CASE: pg_blocking_pids,
# which does the same again, runs only for the locks not granted.
WAITERS = """SELECT coalesce(max(extract(epoch FROM clock_timestamp() - waitstart) * 1000), 0), count(*)
             FROM pg_locks WHERE CASE WHEN granted THEN false ELSE %(pid)s = ANY(pg_blocking_pids(pid)) END"""


def supported(conn: psycopg.Connection) -> bool:
    """The server has what the watch reads; without it, chunks keep to the budget (nobody watches)."""
    return conn.info.server_version >= WAITSTART_SINCE


class LockWatch:
    """Started with `with`: a thread that, while a chunk is in flight (chunk()), looks every `every_s` for sessions
    waiting on the backfill's session (`pid`), and calls `cancel` (the backfill connection's cancel, with a timeout)
    for a chunk that keeps one waiting past the chunk's patience. Its own failure is raised by waiter_ms(), or at the
    end of the chunk whose cancel failed, in the backfill's thread."""

    def __init__(self, batch: str, pid: int, connect: Callable[[], psycopg.Connection], cancel: Callable[[], None],
                 every_s: float = POLL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._batch, self._pid, self._connect, self._cancel, self._every_s = batch, pid, connect, cancel, every_s
        self._clock = clock
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._in_flight = threading.Event()  # a chunk is in flight: look
        self._lock = threading.Lock()
        self._chunk = 0  # which chunk is (or was last) in flight
        self._looks = 0  # looks finished during it
        self._last_look_at = 0.0  # when the last of them began (clock)
        self._last_look_s = 0.0  # how long it took
        self._worst_ms = 0.0  # the longest wait seen during it
        self._patience_ms: float | None = None  # set while a chunk that may be cancelled is in flight
        self._cancelled = False  # the watch cancelled it
        self._cancel_failed: BaseException | None = None  # a cancel of the watch's failed (it may still arrive)
        self._unwatched = False  # no look finished during it, or none near its end and nobody seen waiting
        self._error: BaseException | None = None

    def __enter__(self) -> LockWatch:
        self._conn, self._thread = start_beside("backfill-lock-watch", self._connect, _prepare, self._run)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the thread (it closes its connection); a look still running is cancelled. Never raises: an error of
        the backfill's stays the one reported."""
        assert self._thread is not None and self._conn is not None
        self._stop.set()
        self._in_flight.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            try:
                self._conn.cancel_safe(timeout=STOP_TIMEOUT_S)
            except psycopg.Error:
                pass  # the connection is gone: so is its look

    @contextmanager
    def chunk(self, patience_ms: float | None, look: bool = True) -> Iterator[None]:
        """A chunk in flight, watched: with a patience, cancelled once a session has waited that long on it. A
        cancel that failed raises LockWatchFailed here, once the chunk is over. look=False: nothing to learn from
        this chunk's waiters (the throttle's part keeps to the budget already); it reads as not watched."""
        assert look or patience_ms is None, "a chunk that may be cancelled for a waiter must be watched"
        with self._lock:
            self._chunk += 1
            self._looks, self._worst_ms = 0, 0.0
            self._patience_ms, self._cancelled = patience_ms, False
            if look:
                self._in_flight.set()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.clear()
                self._patience_ms = None
                cycle_s = self._every_s + self._last_look_s
                self._unwatched = not self._looks or (
                    not self._worst_ms and self._clock() - self._last_look_at > COVERED_POLLS * cycle_s)
                failed = self._cancel_failed
            if failed is not None:
                raise self._failed(failed) from failed

    def cancelled_for_waiter(self) -> bool:
        """The watch cancelled the last chunk, for a session it kept waiting past its patience."""
        with self._lock:
            return self._cancelled

    def waiter_ms(self) -> float | None:
        """The longest any session waited for a lock of the backfill's during the last chunk, as seen (0: nobody;
        None: not watched, that is no look finished during it, or nobody was seen waiting and the last look began
        more than COVERED_POLLS cycles, a poll interval and that look's own time each, before its end)."""
        with self._lock:
            if self._error is not None:
                raise self._failed(self._error) from self._error
            return None if self._unwatched else self._worst_ms

    def _failed(self, error: BaseException) -> LockWatchFailed:
        return LockWatchFailed(self._batch, one_line(error))

    def _run(self, conn: psycopg.Connection) -> None:
        try:
            while self._in_flight.wait() and not self._stop.is_set():
                self._look(conn)
                self._stop.wait(self._every_s)
        except BaseException as err:  # noqa: BLE001 - handed to the backfill's thread by waiter_ms()
            with self._lock:
                if not self._stop.is_set():
                    self._error = err
        finally:
            conn.close()

    def _look(self, conn: psycopg.Connection) -> None:
        with self._lock:
            chunk = self._chunk
        began = self._clock()
        longest, waiters = conn.execute(WAITERS, {"pid": self._pid}).fetchone()
        with self._lock:
            if chunk != self._chunk or not self._in_flight.is_set():
                return  # the chunk looked at is over: what was seen was another chunk's
            self._looks += 1
            self._last_look_at, self._last_look_s = began, self._clock() - began
            if waiters:
                self._worst_ms = max(self._worst_ms, float(longest), 1.0)
                if (self._patience_ms is not None and not self._cancelled and self._cancel_failed is None
                        and longest >= self._patience_ms):
                    self._cancel_chunk()

    def _cancel_chunk(self) -> None:
        """Under the lock: cancel the chunk in flight. A cancel that failed may still reach the server later, on
        another statement: the chunk's end raises."""
        try:
            self._cancel()
        except BaseException as err:  # noqa: BLE001 - raised at the chunk's end, and by every read after
            self._cancel_failed = self._error = err
            return
        self._cancelled = True


def _prepare(conn: psycopg.Connection) -> None:
    """The watch's session: a look held up past LOOK_TIMEOUT_MS fails instead of hanging."""
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{LOOK_TIMEOUT_MS}ms",))
