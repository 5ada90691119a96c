"""A batch's backfill: the parts of its backfill.toml, in keyset-paginated chunks, throttled, resumable.

For each part: a pass through `table` by `key`, one chunk at a time, each in its own short transaction
together with its progress row (progress.py). A chunk is ONE set-based statement: the page of keys
(WHERE key > cursor ORDER BY key LIMIT n, an index range scan) handed as an array to the part's chunk
function; no per-row round trip. Then the part's `sweep` until it comes back short (rows written behind the
cursor, rows skipped because another transaction held them); a sweep's keys are read before its chunk's
transaction, since a sweep query may scan the whole table. The throttle (throttle.py) sizes every chunk
and the pause before it from the chunk's duration (the longest any of its row locks is held), lock waits
(lock_timeout), whether any session waited on the backfill's locks (lock_watch.py), how long durable commits take
meanwhile (commit_watch.py; both watch beside the chunks, off their path), streaming replicas' replay lag and how
far the next checkpoint's start is (checkpoints.py), and whether a vacuum works on the part's table
(vacuum_watch.py: the chunks then keep to the budget). An adaptive chunk's statements also carry a statement
timeout just under its limit (the write-latency target while the application waits on the chunks): a chunk that a
sudden stall would keep running past it is cancelled and rolled back (then retried smaller), instead of holding its
row locks to the end. A chunk allowed past the target (nobody waited on the last ones) is cancelled by the lock
watch once it keeps a session waiting half the target.
Then every page of the tables validation.sql reads in full (from its plans) is read once, page range by page
range, sized and paced like chunks (settle.py): the first read of a page after a checkpoint writes WAL (hint bits,
pruning), which the checks' unthrottled scans would otherwise write in one burst. Then validation.sql, through the
runner's checks (with their retries); when checks fail, the sweeps run again
(a write may have landed after them) before giving up with BackfillIncomplete, which keeps everything done so
far: the next run continues."""

from __future__ import annotations

import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from . import progress, settle
from .checkpoints import CheckpointClock
from .commit_watch import CommitWatch
from . import lock_watch
from .lock_watch import LockWatch
from .backfill_errors import (BackfillDeclarationInvalid, BackfillIncomplete, BackfillPaused, ChunkTooSlow, CommitsStalled,
                              LockWatchFailed, ReplicaLagging)
from .plan import Batch, sha256_text
from .progress import PartProgress
from .sight import StatsSight, WatchedView, stats_sight
from .target import Target
from .throttle import AdaptiveThrottle, Decision, FixedThrottle, Observation, ThrottleSettings
from .vacuum_watch import VacuumWatch
from .validation import CheckResult, tables_scanned

VALIDATION_ROUNDS = 3
LOCK_CHECK_S = 1.0  # how often a running backfill checks that the migration lock is still held
FRESH_LAG_S = 0.1  # before a chunk, a replay-lag measure this recent (after the previous chunk) is reused
NO_REPLICA_RECHECK_S = 1.0  # a measure that found no streaming replica holds this long
MAX_REPLICA_WAIT_S = 600.0
# A durable commit beside the backfill waiting this long: the server is not committing at all (a synchronous standby
# gone, a disk that stopped), so are the application's writes; the backfill stops (CommitsStalled) rather than add
# to what waits. Shorter stalls only make it back off.
MAX_COMMIT_WAIT_S = 60.0
BACKEND_FLUSH_AFTER = "256kB"  # PostgreSQL's own default for checkpoint_flush_after on Linux
CANCELLED_AT_MIN_LIMIT = 8  # chunks of the smallest size cancelled in a row before the backfill gives up
CANCEL_TIMEOUT_S = 5.0  # the lock watch's cancel of a chunk: longer, and the backfill stops (LockWatchFailed)
SETTLE_LOCK_WAITS = 8  # lock waits in a row (with backoff, about 17 s at the default target) before the checks get the table

Sleep = Callable[[float], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Part:
    name: str
    table: str
    key: str
    chunk: str
    sweep: str | None = None


@dataclass(frozen=True)
class BackfillSpec:
    parts: tuple[Part, ...]
    sha256: str


@dataclass(frozen=True)
class BackfillProgress:
    """One progress event: after a chunk, a sweep, a wait, or at the end of a part."""

    batch: str
    part: str
    phase: str  # "pass", "sweep", "settle", "waiting", "paused", "done", "skipped" (a table not read: see settle)
    rows_done: int
    rows_total: int
    rows_per_s: float
    chunk_rows: int
    slowed_because: str | None
    chunk_ms: float = 0.0  # how long the last chunk's transaction took: no row lock of it was held longer
    unit: str = "rows"  # what rows_done counts: "pages" while the tables the checks read are settled
    kept: bool = True  # False: that chunk was rolled back (its timeout, a waiting session) or took no lock in time
    waiting_for: str | None = None  # phase "waiting": what for ("a replica")

    @property
    def eta_s(self) -> float | None:
        if self.rows_per_s <= 0 or self.rows_total <= self.rows_done:
            return None
        return (self.rows_total - self.rows_done) / self.rows_per_s

    def line(self) -> str:
        pct = 100.0 * self.rows_done / self.rows_total if self.rows_total else 100.0
        eta = f", ETA {_duration(self.eta_s)}" if self.eta_s is not None else ""
        why = f"; last slowed down: {self.slowed_because}" if self.slowed_because else ""
        phase = f"waiting for {self.waiting_for}" if self.phase == "waiting" and self.waiting_for else self.phase
        return (f"backfill {self.batch} {self.part} [{phase}]: {self.rows_done:,}/{self.rows_total:,} {self.unit} "
                f"({pct:.0f}%), {self.rows_per_s:,.0f} {self.unit}/s{eta}, chunk {self.chunk_rows:,} rows{why}")


@dataclass(frozen=True)
class BackfillRun:
    """How a backfill runs: the stack's throttle settings, or fixed chunks (benchmark), and who hears progress."""

    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    fixed_chunk_rows: int | None = None
    on_progress: Callable[[BackfillProgress], None] | None = field(default=None, compare=False)
    # Told once, as an adaptive run starts, what its throttle cannot see (sight.py), and once per watch a refusal of its
    # view that the catalog did not foretell, when it happens; the provider warns with it.
    on_note: Callable[[str], None] | None = field(default=None, compare=False)
    sleep: Sleep = field(default=time.sleep, compare=False, repr=False)
    # Asked before every chunk (and while waiting for replicas): True stops the backfill there
    # (BackfillPaused); everything done so far is kept, and the next run continues. The provider reads the stack's
    # config file.
    paused: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


def load_spec(batch: Batch) -> BackfillSpec:
    """The parts of a batch's backfill.toml; a malformed declaration names the batch and what to fix."""
    assert batch.backfill is not None
    try:
        declared = tomllib.loads(batch.backfill).get("part")
    except tomllib.TOMLDecodeError as err:
        raise BackfillDeclarationInvalid(batch.name, f"TOMLDecodeError: {err}") from None
    if not isinstance(declared, list) or not all(isinstance(p, dict) for p in declared):
        raise BackfillDeclarationInvalid(batch.name, "declare each part as a [[part]] table (name, table, key, chunk, "
                                                     "and optionally sweep)")
    try:
        parts = tuple(Part(**{k: str(v) for k, v in p.items()}) for p in declared)
    except TypeError as err:
        raise BackfillDeclarationInvalid(batch.name, f"TypeError: {err}") from None
    if not parts or len({p.name for p in parts}) != len(parts):
        raise BackfillDeclarationInvalid(batch.name, "declare at least one [[part]], each with a unique name")
    return BackfillSpec(parts, sha256_text(batch.backfill))


def run_backfill(conn: psycopg.Connection, target: Target, batch: Batch, run: BackfillRun, *, role: str | None,
                 checks: Callable[[], tuple[CheckResult, ...]], verify_lock: Callable[[], None]) -> tuple[CheckResult, ...]:
    """Every part, then the batch's checks (the runner's validation, with its retries); returns them (all
    passed) or raises BackfillIncomplete; BackfillPaused when the operator paused it between two chunks."""
    spec = load_spec(batch)
    with _as_session_user(conn, role):
        progress.ensure(conn)
        if role:
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON schema_ledger.backfill_progress TO {}")
                         .format(sql.Identifier(role)))
    # Fixed chunks (the comparison point) do not listen to the database, so they pay for no watches either.
    fixed = run.fixed_chunk_rows is not None
    watch = nullcontext() if fixed else CommitWatch(batch.name, target.connect_kept)
    # The lock watch serves the stretched limits only: without them, chunks keep to the budget whoever waits.
    watch_locks = not fixed and run.throttle.stretch_uncontended and lock_watch.supported(conn)
    waiters = LockWatch(batch.name, conn.info.backend_pid, target.connect_kept,
                        partial(conn.cancel_safe, timeout=CANCEL_TIMEOUT_S)) if watch_locks else nullcontext()
    with target.connect_kept() as monitor, watch as commits, waiters as locks:
        sight = None if fixed else stats_sight(monitor)
        if run.on_note and sight and sight.blind_spot:
            run.on_note(f"backfill {batch.name}: {sight.blind_spot}")
        filler = _Filler(conn, monitor, _Watches(commits, locks), batch, spec, run, verify_lock, sight)
        with _chunk_settings(conn, run.throttle.lock_timeout_ms):
            for part in spec.parts:
                filler.fill(part)
            filler.settle(tables_scanned(conn, batch))
            return filler.validate(checks)


@contextmanager
def _chunk_settings(conn: psycopg.Connection, lock_timeout_ms: int) -> Iterator[None]:
    """Set once for every chunk of the run, restored after:
    - lock_timeout: a chunk waits at most its budget (70 % of the write-latency target) for a row or table lock,
      under its statement timeout, so that a lock wait is told apart from a slow chunk;
    - synchronous_commit off: a chunk's commit does not wait for its WAL to reach the disk, so its row locks are
      released sooner. Safe here: a chunk's rows and its progress row commit together, so a crash loses at most
      the last chunks, all of them, and the next run does them again (the chunk functions are idempotent);
    - backend_flush_after: the pages this session evicts from shared_buffers are handed to the disk as it goes
      (default: left dirty in the kernel's page cache, which then writes them back in bursts that stall every
      other session's commit for hundreds of milliseconds);
    - max_parallel_workers_per_gather 0: the run's reads (a part's count, a sweep; the checks set it for their own
      transaction too) keep to this session's one core. A parallel plan takes up to that many more of the server's
      cores for as long as the read lasts, and the throttle, which paces chunks, does not pace a read."""
    names = ("lock_timeout", "synchronous_commit", "backend_flush_after", "max_parallel_workers_per_gather")
    before = _current(conn, names)
    _set(conn, names, (f"{int(lock_timeout_ms)}ms", "off", BACKEND_FLUSH_AFTER, "0"))
    try:
        yield
    finally:
        if not conn.broken and not conn.closed:
            _set(conn, names, before)


def _current(conn: psycopg.Connection, names: Sequence[str]) -> list[str]:
    """The session's values of `names`, in their order."""
    rows = conn.execute("SELECT current_setting(name) FROM unnest(%s::text[]) WITH ORDINALITY AS s(name, i) "
                        "ORDER BY i", (list(names),)).fetchall()
    return [value for (value,) in rows]


def _set(conn: psycopg.Connection, names: Sequence[str], values: Sequence[str]) -> None:
    conn.execute("SELECT set_config(name, value, false) FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
                 (list(names), list(values)))


@contextmanager
def _as_session_user(conn: psycopg.Connection, role: str | None) -> Iterator[None]:
    """The progress table is created by the connecting user (who owns the ledger), not the batch role."""
    if role:
        conn.execute("SET ROLE NONE")
    try:
        yield
    finally:
        if role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


@dataclass(frozen=True)
class _Watches:
    """What runs beside the chunks (adaptive runs only): durable commits timed, sessions waiting on the backfill."""

    commits: CommitWatch | None
    locks: LockWatch | None

    def commit_wait_ms(self) -> float | None:
        return self.commits.stall_ms() if self.commits else None

    def waiter_ms(self) -> float | None:
        return self.locks.waiter_ms() if self.locks else None

    def chunk(self, patience_ms: float | None, look: bool) -> AbstractContextManager[None]:
        return self.locks.chunk(patience_ms, look) if self.locks else nullcontext()

    def cancelled_for_waiter(self) -> bool:
        """The lock watch cancelled the last chunk, for a session it kept waiting."""
        return self.locks.cancelled_for_waiter() if self.locks else False


class _Filler:
    def __init__(self, conn: psycopg.Connection, monitor: psycopg.Connection, watches: _Watches,
                 batch: Batch, spec: BackfillSpec, run: BackfillRun, verify_lock: Callable[[], None],
                 sight: StatsSight | None = None) -> None:
        self.conn, self.batch, self.spec, self.run = conn, batch, spec, run
        self.verify_lock = verify_lock
        # A view the sight found withheld is not asked at all (the run's note said so); a refusal it could not foresee
        # is told once when it happens.
        self.lag = ReplayLag(monitor, readable=sight is None or sight.replication_view,
                             on_refused=self._note if sight is not None else None)  # fixed chunks wait for no replica
        # Fixed chunks (the comparison point) do not read it, as they hear no other signal.
        self.checkpoints = CheckpointClock(monitor) if run.fixed_chunk_rows is None else None
        self.vacuums = VacuumWatch(monitor, readable=sight is None or sight.vacuum_view,
                                   on_refused=self._note) if run.fixed_chunk_rows is None else None
        self.watches = watches
        self.throttle = self._new_throttle()
        self._cancelled_at_min = 0
        self._lock_waits = 0  # in a row
        self._rate = _Rate()
        self._lock_verified_at = float("-inf")  # never yet: the first chunk asks

    # -- a part ---------------------------------------------------------------------------------------
    def fill(self, part: Part) -> None:
        state = progress.load(self.conn, self.batch.name, part.name, self.spec.sha256)
        total = self._count(part)
        self._rate = _Rate()
        self.throttle.start_part()
        self._watch_vacuums(part)
        while not state.pass_done:
            after = state.last_key
            state = self._chunk(part, state, total, "pass", lambda size: page(part, after, size)).state
        self._sweep(part, state, total)

    def _count(self, part: Part) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(_table(part))
        return int(self.conn.execute(query).fetchone()[0])

    def _swept(self, part: Part, size: int) -> _Keys:
        """The keys the part's sweep finds, read before the chunk's transaction: a sweep query may scan the
        whole table, and no row lock is held while it does."""
        assert part.sweep is not None
        keys = [str(r[0]) for r in self.conn.execute(part.sweep, {"limit": size})]
        return _Keys(sql.SQL("SELECT unnest(%(keys)s::text[])"), {"keys": keys})

    # -- one chunk (of the pass or of a sweep) ----------------------------------------------------------
    def _chunk(self, part: Part, state: PartProgress, total: int, phase: str, pick: Callable[[int], _Keys]) -> _Chunk:
        """One chunk: the keys `pick` selects for the chunk size, handed to the part's chunk function in ONE
        set-based statement, saved with the part's progress row in one short transaction. Its duration is the
        longest any row lock of the chunk was held. Its statements carry a statement timeout (adaptive runs): the
        server cancels one at its first check for interrupts past it, and nothing of the chunk is kept."""
        where = _Where(part.name, state.rows_done, total, phase, state.last_key)
        self._before_chunk(where)
        size = self.throttle.chunk_rows
        keys = pick(size)  # a sweep's read may take long: the lock is asked after it, before the chunk writes
        self._verify_lock()

        def work() -> tuple[int, int, PartProgress]:
            changed, count, last = apply_keys(self.conn, part, keys)
            advanced = _advance(state, phase, count, last, size, changed)
            progress.save(self.conn, advanced)
            return changed, count, advanced

        done = self._attempt(where, size, work)
        if done is None:
            return _Chunk(state, 0, size, None)
        (changed, count, advanced), held_ms = done
        if phase == "pass":
            self._rate.add(count)
        where = replace(where, done=advanced.rows_done)
        self._after(where, self._seen(count, held_ms))
        return _Chunk(advanced, count, size, changed)

    def _attempt(self, where: _Where, size: int, work: Callable[[], _T]) -> tuple[_T, float] | None:
        """`work` for a chunk of `size` rows in one short transaction (pipelined: BEGIN goes with its first
        statement, COMMIT with its last), under the chunk's statement timeout and the lock watch's patience: what it
        returned and how long the transaction took, or None when it could not take a lock in time, ran into its
        timeout, or was cancelled by the lock watch for a session it kept waiting, and was rolled back (the
        throttle has heard why)."""
        limits = self.throttle.limits
        started = time.monotonic()
        try:
            with (self.watches.chunk(limits.patience_ms, look=self.throttle.hears_waiters), self.conn.pipeline(),
                  self.conn.transaction()):
                if limits.timeout_ms is not None:
                    self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{limits.timeout_ms}ms",))
                result = work()
        except LockWatchFailed:
            self.conn.close()  # a cancel of the watch's may still arrive: no statement runs on this session again
            raise
        except pg_errors.LockNotAvailable:
            self._cancelled_at_min = 0
            self._lock_waits += 1
            self._after(where, Observation(0, _ms(started), lock_wait=True))
            return None
        except pg_errors.QueryCanceled as err:
            took = _ms(started)
            if self.watches.cancelled_for_waiter():
                self._after(where, Observation(size, took, cancelled_for_waiter=True, waiter_ms=self.watches.waiter_ms(),
                                               commit_wait_ms=self.watches.commit_wait_ms()))
                return None
            if not self._timed_out(err, took, limits.timeout_ms):
                raise  # someone cancelled the backfill's statement: not a reason to try again
            seen = Observation(size, took, cancelled=True, commit_wait_ms=self.watches.commit_wait_ms(),
                               waiter_ms=self.watches.waiter_ms())
            self._stop_if_commits_stalled(where)  # the cause, rather than ChunkTooSlow's "check the server"
            if self._too_slow(size):
                self._emit(where, self.throttle.next(seen), took, kept=seen.kept)
                raise ChunkTooSlow(self.batch.name, where.name, size, took, self._cancelled_at_min, where.phase,
                                   where.after) from None
            self._after(where, seen)
            return None
        self._cancelled_at_min = self._lock_waits = 0
        return result, _ms(started)

    def _seen(self, rows: int, took_ms: float) -> Observation:
        """What a chunk (or read) that went through showed, with what the watches and the replicas say since the
        last one (the commit wait read first, then the replay lag), and how far the next checkpoint is now."""
        waited = self.watches.commit_wait_ms()
        return Observation(rows, took_ms, replay_lag_ms=self.lag.recent(0.0), commit_wait_ms=waited,
                           waiter_ms=self.watches.waiter_ms(),
                           checkpoint=self.checkpoints.read() if self.checkpoints else None)

    @staticmethod
    def _timed_out(err: pg_errors.QueryCanceled, took_ms: float, timeout_ms: int | None) -> bool:
        """The chunk's own statement timeout cancelled it, not someone else (pg_cancel_backend says "user
        request"; with the server's messages in another language, a cancel before the timeout is not ours)."""
        if timeout_ms is None or "user request" in (err.diag.message_primary or ""):
            return False
        return took_ms >= timeout_ms

    def _too_slow(self, size: int) -> bool:
        """Chunks of the smallest size allowed cannot shrink further: CANCELLED_AT_MIN_LIMIT of them cancelled in
        a row (with the backoff's pauses in between) stop the backfill, with what to do."""
        self._cancelled_at_min = self._cancelled_at_min + 1 if size <= self.run.throttle.min_chunk_rows else 0
        return self._cancelled_at_min >= CANCELLED_AT_MIN_LIMIT

    # -- sweeps -----------------------------------------------------------------------------------------
    def _sweep(self, part: Part, state: PartProgress, total: int) -> None:
        """Run the sweep query until it returns fewer keys than asked, or a round changes nothing."""
        while part.sweep:
            chunk = self._chunk(part, state, total, "sweep", lambda size: self._swept(part, size))
            state = chunk.state
            if chunk.changed is not None and (chunk.keys < chunk.size or chunk.changed == 0):
                break
        self._emit(_Where(part.name, state.rows_done, total, "done"))

    def sweep_all(self) -> None:
        for part in self.spec.parts:
            self._rate = _Rate()
            self.throttle.start_part()
            self._watch_vacuums(part)
            state = progress.load(self.conn, self.batch.name, part.name, self.spec.sha256)
            self._sweep(part, state, state.rows_done)

    def _watch_vacuums(self, part: Part) -> None:
        """From now on, the chunks hear of a vacuum of this part's table (adaptive runs)."""
        if self.vacuums:
            self.vacuums.watch((part.table,))

    # -- settling: the checks' first reads, paced ---------------------------------------------------------
    def settle(self, tables: Sequence[tuple[str, str]]) -> None:
        """Before the checks: every page of the tables they read in full, read in page ranges sized and paced like
        chunks (from the rows a page holds), by a throttle of their own per table (a read's cost says nothing of a
        write's, and a page of one table nothing of another's). The first read of a page after a checkpoint can
        write WAL: a hint-bit record (a full-page image, with data checksums, PostgreSQL 18's default, or
        wal_log_hints) and pruning. Done here, that WAL is spread out and backs off when commits stall or a replica
        lags, instead of being written in one unthrottled burst by the checks' scans. Nothing is recorded: a run
        that stops here reads again next time (pages read before write nothing more). A table that cannot be read
        here (locked by someone else past SETTLE_LOCK_WAITS lock waits, dropped, not readable) is left to the checks."""
        writes = self.throttle
        if self.vacuums:
            self.vacuums.watch(())  # reads: their limits never stretch
        try:
            for heap in settle.heaps(self.conn, tables):
                self.throttle = self._new_throttle(stretch=False)
                try:
                    self._settle(heap)
                except (*settle.SKIPPED, _Skipped):
                    self._emit(_Where(heap.label, 0, heap.pages, "skipped", unit="pages"))
        finally:
            self.throttle, self._rate, self._cancelled_at_min, self._lock_waits = writes, _Rate(), 0, 0

    def _settle(self, heap: settle.Heap) -> None:
        self._rate = _Rate()
        self._lock_waits = 0
        where = _Where(heap.label, 0, heap.pages, "settle", unit="pages")
        while where.done < heap.pages:
            self._before_chunk(where)
            size = self.throttle.chunk_rows
            first = where.done
            asked = heap.pages_for(size)
            count = min(asked, heap.pages - first)
            done = self._attempt(replace(where, after=f"page {first}"), size,
                                 lambda: settle.read_pages(self.conn, heap, first, count))
            if done is None:
                if self._lock_waits >= SETTLE_LOCK_WAITS:
                    raise _Skipped()
                continue
            where = replace(where, done=first + count)
            self._rate.add(count)
            # The rows asked for, or the share of them the table's last pages hold: a full read counts as a full chunk.
            rows = size if count == asked else max(1, round(size * count / asked))
            self._after(where, self._seen(rows, done[1]))
        self._emit(replace(where, phase="done"))

    def _new_throttle(self, stretch: bool = True) -> AdaptiveThrottle | FixedThrottle:
        if self.run.fixed_chunk_rows:
            return FixedThrottle(self.run.fixed_chunk_rows)
        return AdaptiveThrottle(self.run.throttle, stretch)

    # -- validation -------------------------------------------------------------------------------------
    def validate(self, checks: Callable[[], tuple[CheckResult, ...]]) -> tuple[CheckResult, ...]:
        failed: list[tuple[str, str]] = []
        for attempt in range(VALIDATION_ROUNDS):
            if attempt:
                self.sweep_all()  # a write may have landed after the last sweep
            results = checks()
            failed = [(c.name, c.detail) for c in results if not c.ok]
            if not failed:
                return results
        raise BackfillIncomplete(self.batch.name, failed)

    # -- throttle -----------------------------------------------------------------------------------------
    def _before_chunk(self, where: _Where) -> None:
        self._stop_if_paused(where)
        self._stop_if_commits_stalled(where)
        self._wait_for_replicas(where)
        self._hear_vacuum()

    def _after(self, where: _Where, seen: Observation) -> None:
        decision = self.throttle.next(seen)
        self._emit(where, decision, seen.duration_ms, kept=seen.kept)
        self._verify_lock()
        if decision.pause_ms > 0:
            self.run.sleep(decision.pause_ms / 1000)

    def _verify_lock(self) -> None:
        """The migration lock is still ours (its connection alive): asked before a chunk writes, and after one, at
        most once every LOCK_CHECK_S. A chunk can still commit after the lock was lost (within LOCK_CHECK_S and the
        chunk's own time); it does only what a chunk of the run now holding the lock would do: the chunk functions are
        idempotent and take their rows with SKIP LOCKED, and that run's sweeps find whatever its pass went by."""
        now = time.monotonic()
        if now - self._lock_verified_at >= LOCK_CHECK_S:
            self.verify_lock()
            self._lock_verified_at = now

    def _stop_if_paused(self, where: _Where) -> None:
        if self.run.paused is not None and self.run.paused():
            self._emit(replace(where, phase="paused"))
            raise BackfillPaused(self.batch.name, where.name, where.done, max(where.total, where.done), where.unit)

    def _stop_if_commits_stalled(self, where: _Where) -> None:
        """The commit watch's probe in flight has waited over MAX_COMMIT_WAIT_S: stop (CommitsStalled). Only a
        commit still waiting counts, so a stall that is over stops nothing."""
        waited = self.watches.commits.waiting_ms() if self.watches.commits else 0.0
        if waited > MAX_COMMIT_WAIT_S * 1000:
            raise CommitsStalled(self.batch.name, where.name, waited, int(MAX_COMMIT_WAIT_S * 1000), where.unit)

    def _wait_for_replicas(self, where: _Where) -> None:
        """Before a chunk: while a replica replays too far behind, wait (polling) instead of writing more."""
        deadline = time.monotonic() + MAX_REPLICA_WAIT_S
        lag = self.lag.recent(FRESH_LAG_S)
        while True:
            if lag is None or lag <= self.run.throttle.max_replay_lag_ms / 2 or isinstance(self.throttle, FixedThrottle):
                return
            if time.monotonic() > deadline:
                raise ReplicaLagging(self.batch.name, where.name, lag, self.run.throttle.max_replay_lag_ms, where.unit)
            self._wait_once(where, Observation(0, 0.0, replay_lag_ms=lag))
            lag = self.lag.measure()

    def _hear_vacuum(self) -> None:
        """Before a chunk: tell the throttle whether a vacuum works on the part's table now (it keeps the chunks
        to the budget while one does)."""
        if self.vacuums is not None:
            self.throttle.beside_vacuum(self.vacuums.working_on())

    def _wait_once(self, where: _Where, seen: Observation) -> None:
        """One poll of a wait before a chunk (for a replica): stop if paused or commits stall, tell the throttle
        what was seen and progress that it waits, check the migration lock, then pause as the throttle says (at
        least 50 ms)."""
        self._stop_if_paused(where)
        self._stop_if_commits_stalled(where)
        decision = self.throttle.next(seen)
        self._emit(replace(where, phase="waiting"), decision, waiting_for="a replica")
        self._verify_lock()
        self.run.sleep(max(decision.pause_ms, 50.0) / 1000)

    def _note(self, text: str) -> None:
        if self.run.on_note:
            self.run.on_note(f"backfill {self.batch.name}: {text}")

    def _emit(self, where: _Where, decision: Decision | None = None, chunk_ms: float = 0.0, kept: bool = True,
              waiting_for: str | None = None) -> None:
        if self.run.on_progress is None:
            return
        chunk = decision.chunk_rows if decision else self.throttle.chunk_rows
        self.run.on_progress(BackfillProgress(
            self.batch.name, where.name, where.phase, where.done, max(where.total, where.done),
            self._rate.per_second(), chunk, self.throttle.last_slowdown, chunk_ms, where.unit, kept, waiting_for))


class _Skipped(Exception):
    """A table's reads before the checks gave up: the checks read it themselves."""


@dataclass(frozen=True)
class _Where:
    """Where the backfill stands, for its progress events and errors: the part (or the table being settled),
    how far through it (in `unit`), the phase, and the pass's cursor (or the first page of a settle read)."""

    name: str
    done: int
    total: int
    phase: str
    after: str | None = None
    unit: str = "rows"


@dataclass(frozen=True)
class _Chunk:
    """What one chunk did: the part's progress after it, keys picked of size asked, rows changed (None: it
    could not take its locks in time and changed nothing)."""

    state: PartProgress
    keys: int
    size: int
    changed: int | None


def _advance(state: PartProgress, phase: str, count: int, last: str | None, size: int, changed: int) -> PartProgress:
    """The part's progress after a chunk: a pass chunk moves the keyset cursor, a sweep chunk only counts."""
    state = replace(state, rows_changed=state.rows_changed + changed)
    if phase != "pass":
        return state
    return replace(state, last_key=last if count else state.last_key, pass_done=count < size,
                   rows_done=state.rows_done + count, chunks=state.chunks + 1)


@dataclass(frozen=True)
class _Keys:
    """A query that returns a chunk's keys (as text, in order), with its parameters."""

    query: sql.Composable
    params: dict[str, Any]


def apply_keys(conn: psycopg.Connection, part: Part, keys: _Keys) -> tuple[int, int, str | None]:
    """(rows changed, keys handed over, the last of them) for one statement: the keys in order, as an array,
    passed to the part's chunk function."""
    query = sql.SQL("SELECT {fn}(k), cardinality(k), k[cardinality(k)] FROM (SELECT array({keys}) AS k) AS page").format(
        fn=sql.Identifier(*part.chunk.split(".")), keys=keys.query)
    changed, count, last = conn.execute(query, keys.params).fetchone()
    return int(changed or 0), int(count), last


def page(part: Part, after: str | None, size: int) -> _Keys:
    """The pass's next keys: keyset pagination on the part's key (an index range scan), after the cursor."""
    key = sql.Identifier(part.key)
    where = sql.SQL("") if after is None else sql.SQL(" WHERE {k} > %(after)s").format(k=key)
    query = sql.SQL("SELECT {k}::text FROM {t}{where} ORDER BY {k} LIMIT %(limit)s").format(k=key, t=_table(part), where=where)
    return _Keys(query, {"after": after, "limit": size})


def _table(part: Part) -> sql.Identifier:
    return sql.Identifier(*part.table.split("."))


class ReplayLag:
    """How far behind the slowest streaming replica replays, in ms (None without replicas or without the
    right to see pg_stat_replication's positions: pg_monitor or superuser; always None with readable=False, the
    view known withheld before the run; None from then on when the query is refused, said once through on_refused
    with the server's cause).

    The primary's WAL position is sampled after every chunk; a replica's lag is the time since the primary
    was at the position the replica has replayed (so it grows while replay is stopped), or the server's
    own replay_lag when that is larger."""

    QUERY = """SELECT pg_current_wal_lsn()::text,
                      (SELECT min(replay_lsn)::text FROM pg_stat_replication WHERE state = 'streaming'),
                      (SELECT max(extract(epoch FROM replay_lag) * 1000) FROM pg_stat_replication WHERE state = 'streaming'),
                      (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')"""

    def __init__(self, monitor: psycopg.Connection, *, readable: bool = True,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.monitor = monitor
        self._view = WatchedView(monitor, "pg_stat_replication", what="the replicas' replay lag",
                                 unheeded="wait for a lagging replica", readable=readable, on_refused=on_refused)
        self.samples: deque[tuple[float, int]] = deque(maxlen=4096)
        self._last: tuple[float, float | None] | None = None

    def recent(self, max_age_s: float) -> float | None:
        """The last measure when it is at most max_age_s old (taken right after the previous chunk), or at most
        NO_REPLICA_RECHECK_S old when it found no streaming replica (one that connects is seen within that); else
        a new one. Without replicas, most chunks then pay for no query."""
        if self._last is not None:
            age, lag = time.monotonic() - self._last[0], self._last[1]
            if age <= max_age_s or (lag is None and age <= NO_REPLICA_RECHECK_S):
                return lag
        return self.measure()

    def measure(self) -> float | None:
        rows = self._view.fetchall(self.QUERY)
        if rows is None:
            return None
        current, replayed, server_lag, replicas = rows[0]
        now = time.monotonic()
        self.samples.append((now, _lsn(current)))
        lag = None if not replicas or replayed is None else self._lag_ms(now, _lsn(replayed), server_lag)
        self._last = (now, lag)
        return lag

    def _lag_ms(self, now: float, behind: int, server_lag: float | None) -> float:
        oldest_unreplayed = next((t for t, lsn in self.samples if lsn > behind), None)
        tracked = (now - oldest_unreplayed) * 1000 if oldest_unreplayed is not None else 0.0
        return max(tracked, float(server_lag or 0.0))


class _Rate:
    """Rows per second over the last 30 s of a part."""

    WINDOW_S = 30.0

    def __init__(self) -> None:
        self.points: deque[tuple[float, int]] = deque()
        self.points.append((time.monotonic(), 0))
        self.total = 0

    def add(self, rows: int) -> None:
        self.total += rows
        now = time.monotonic()
        self.points.append((now, self.total))
        while len(self.points) > 2 and now - self.points[1][0] > self.WINDOW_S:
            self.points.popleft()

    def per_second(self) -> float:
        (t0, r0), (t1, r1) = self.points[0], self.points[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
