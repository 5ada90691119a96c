"""The backfill's throttle: how many rows the next chunk takes and how long to pause first. Pure: no I/O.

The application's writes wait on a chunk when they touch a row it has locked: such a write waits until the chunk
commits, at most the chunk's duration. So while the application contends for the chunks' rows, the controller keeps
each chunk's duration within a budget: the per-stack write-latency target minus a share left for the write's own
work (CHUNK_BUDGET of the target). A lock watch beside the chunks (lock_watch.py) says whether any session waited on
the backfill's locks; it looks only while the answer can change something (hears_waiters), so not for the rest of a
part once a session has been seen waiting. After CALM_CHUNKS chunks of a part in a row that nobody waited on, in a
part where no session has been seen waiting on one, the limits stretch UNCONTENDED times (a table the application
does not write, rows it does not touch): fewer, larger chunks, for less fixed cost per row; their statement timeout
is STRETCHED_TIMEOUT times their stretched limit (not CHUNK_TIMEOUT of it), since it no longer protects a waiting
session. Such a chunk carries a patience (WAIT_PATIENCE of the target): a session that has waited that long on it
gets the chunk cancelled by the watch, rolled back, its locks released; the part's next chunks keep to the budget
until it ends (a wait seen says the application writes this part's rows: stretching again would keep one of its
writes waiting the patience each time, and throw the cancelled chunk's work away). Without the watch, chunks always
keep to the budget. With ThrottleSettings.stretch_uncontended off (the benchmark's comparison), the limits never
stretch, and no lock watch runs.

Within the limits, it sizes chunks from the measured cost per row, and it backs off on the signals the database
gives:

- the chunk took longer than its limit (the target, or the stretched one): shrink in proportion, pause as long as
  it took (waiters drain). Except for a stretched chunk that the lock watch saw nobody wait on: a session that
  waits on one gets it cancelled after the patience, so no queue forms behind it, and a pause would only lengthen
  the run (unless commits are slowing, below);
- a session waited on the chunk's locks: back within the budget at once (whatever else the chunk showed), for the
  rest of the part, sized from the cost per row; when the watch cancelled the chunk for it, its cost per row was at
  least the time it ran over its rows, and there is no pause (its locks are released) unless commits are slowing
  or stalling (below);
- the chunk ran into its statement timeout (CHUNK_TIMEOUT of the target, STRETCHED_TIMEOUT of a stretched limit:
  the server cancels it at its first check for interrupts past it, instead of letting a stall keep its row locks)
  and was rolled back: halve; its cost per
  row was at least the time it ran over the rows it was given. No pause after one such chunk (its locks are
  released), unless commits are slowing (below); with exponential backoff, at least as long as it ran, when
  timeout cancellations follow each other, or when commits are stalling meanwhile (as after a chunk the watch
  cancelled);
- the chunk could not take a lock in time (lock_timeout): halve, pause with exponential backoff;
- a durable commit timed beside the backfill since the last chunk (commit_watch.py) waited over half the target
  longer than the run's fastest: every write is stalling on the disk (WAL flushes queued behind the backfill's
  writes) or on a synchronous standby, which no lock shows. Pause with exponential backoff, keeping the size
  (smaller chunks would write the same WAL in more commits; the pause is what lets the disk catch up; a chunk
  cancelled at its timeout meanwhile is still halved, one the watch cancelled still sized to the budget, and
  either pauses at least as long as it ran). Over a fifth of the target ("slowing"): do not grow, and pause at least as
  long as the chunk took, whether it was kept or cancelled (a lock wait backs off anyway): chunks run back to
  back, so their size does not change the backfill's share of the server's CPU and disk, and a pause does (it runs
  at most half the time while commits are slow). The backoff starts over only once a probe is back under a fifth
  (after any chunk, kept or not): readings that go from stalling to slowing and back keep it growing;
- a streaming replica replays too far behind: halve (or less, to fit the budget, when the chunk was also over its
  limit; then it pauses as long as it took first, unless it was a stretched one nobody waited on and commits are
  not slowing), and wait until the lag is back under half the limit;
- a vacuum works on the part's table (vacuum_watch.py, read before each chunk): the chunks keep to the budget until
  it ends (brought back within it at once from stretched limits, sized from the cost per row), without a pause. A
  vacuum and a chunk of the same table share the CPU and the disk the application's writes need, so a chunk beside
  one may run twice as long: a stretched one would keep its row locks for most of a second, one within the budget
  is cancelled at its timeout instead and retried smaller. Holding the chunks instead (GitLab's
  AutovacuumActiveOnTable) cost about 4 % of the run, and in the run measured bought nothing against the target
  (bench/RESULTS.md, "The vacuum holds");
- a checkpoint starts within NEAR_CHECKPOINT chunks (by the WAL written per chunk, the application's included, or
  by their time and pauses plus CHECKPOINT_MARGIN_S; read after each chunk kept, checkpoints.py):
  until it has started, the chunks take an eighth of the size (CHECKPOINT_SHRINK; after a chunk rolled back meanwhile
  too) and pause as long as they took;
  once a reading shows it started, the next chunk waits CHECKPOINT_SETTLE_MS and takes the smallest size (an eighth
  when the WAL a row is not known yet), and the ones after write at most the WAL a chunk wrote before the start
  (from the WAL a row since the last reading) until a row writes at most FULL_PAGES_FADED times its WAL of before
  (FULL_PAGES_CHUNKS readings at most), growing at most twofold a chunk. At the start
  every first change of a page copies the whole page into the WAL, the application's and the backfill's alike, and
  the application's commits wait for it: a large chunk then writes many times its usual WAL at the worst moment
  (bench: 182 ms with one chunk of 7,874 rows across it, 104 ms with chunks of 1,000 back to back; 152 ms with an
  eighth of the size right after it);
- otherwise: aim at the budget from the cost per row of the recent full chunks, at most doubling per chunk,
  with no pause unless commits are slowing (a pause would not shorten any lock wait; it would only lengthen the
  run).

The cost per row is a moving average over the full chunks of the current part (each part has its own):
a chunk that came back short (the end of a pass, a sweep finding a few rows) is mostly fixed cost and would
make the next chunks needlessly small. A chunk over its limit is not noise: its cost replaces the average.

`FixedThrottle` is the comparison point (pgroll's fixed 1,000-row batches, no delay).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .checkpoints import CheckpointAhead

CHUNK_BUDGET = 0.7  # a chunk may last this fraction of the write-latency target; the rest is the write's own
CHUNK_TIMEOUT = 0.9  # a chunk still running at this fraction of the target is cancelled (and retried smaller)
MAX_GROWTH = 2.0  # at most double the chunk from one chunk to the next
COST_SMOOTHING = 0.3  # weight of the newest full chunk in the moving average of the cost per row
COMMIT_STALL = 0.5  # a probe commit over this fraction of the target: writes are stalling, back off
COMMIT_BUSY = 0.2  # over this fraction: the server is busy, do not grow, and run at most half the time
MAX_BACKOFF_MS = 5_000.0
LAG_POLL_MS = 250.0
CALM_CHUNKS = 100  # chunks of a part in a row that nobody waited on before the limits stretch
UNCONTENDED = 5.0  # the stretched limits, in multiples of the target (a chunk budget of 350 ms at 100 ms)
# A stretched chunk's statement timeout, in multiples of its "too long": the lock watch, not the timeout, keeps
# sessions from waiting on it, so the timeout only bounds a stall, and cancelling work nobody waits for is waste.
STRETCHED_TIMEOUT = 2.0
WAIT_PATIENCE = 0.5  # of the target: how long a session may wait on a stretched chunk before it is cancelled
NEAR_CHECKPOINT = 2.0  # chunks (of WAL, or of time) before a checkpoint's start, when chunks shrink for it
CHECKPOINT_MARGIN_S = 1.0  # added to the time window: a timed checkpoint starts within about a second
CHECKPOINT_SHRINK = 8  # the chunks across a checkpoint's start take 1/8 of their size
CHECKPOINT_SETTLE_MS = 1_000.0  # the backfill writes nothing this long once a checkpoint is seen to have started
# After a checkpoint's start, chunks keep to the WAL a chunk wrote before it until a row writes at most this many
# times its WAL of before (the pages it changes have had their first change since), for at most FULL_PAGES_CHUNKS
# chunks read (what the WAL a row keeps above that is then the application's own whole pages, not the backfill's).
FULL_PAGES_FADED = 1.5
FULL_PAGES_CHUNKS = 50


@dataclass(frozen=True)
class ThrottleSettings:
    """Per stack: the application's write-latency target, the bounds on chunk size, the replica lag limit. Not per
    stack: the first chunk's size, and whether the limits may stretch (the bench and the tests)."""

    target_write_latency_ms: int = 100
    min_chunk_rows: int = 100
    max_chunk_rows: int = 20_000
    max_replay_lag_ms: int = 2_000
    initial_chunk_rows: int = 1_000
    # Not a stack setting: False turns the stretched limits off, and the lock watch they need (the bench's
    # adaptive-unstretched, to measure whether they pay: bench/RESULTS.md, "Order, the watches, and the size").
    stretch_uncontended: bool = True

    @property
    def chunk_budget_ms(self) -> float:
        return self.target_write_latency_ms * CHUNK_BUDGET

    @property
    def chunk_timeout_ms(self) -> int:
        return max(1, int(self.target_write_latency_ms * CHUNK_TIMEOUT))

    def limits(self, contended: bool) -> ChunkLimits:
        """A chunk's limits while the application contends for its rows (or nobody watches), or while nobody does."""
        if contended:
            return ChunkLimits(float(self.target_write_latency_ms), self.chunk_budget_ms, self.chunk_timeout_ms, None)
        over = self.target_write_latency_ms * UNCONTENDED
        return ChunkLimits(over, over * CHUNK_BUDGET, max(1, int(over * STRETCHED_TIMEOUT)), self.wait_patience_ms)

    @property
    def wait_patience_ms(self) -> float:
        """How long a session may wait on a stretched chunk before the lock watch cancels it."""
        return self.target_write_latency_ms * WAIT_PATIENCE

    @property
    def lock_timeout_ms(self) -> int:
        """How long a chunk waits for a lock: its budget, under its timeout, so a lock wait is told as one."""
        return max(1, int(self.chunk_budget_ms))


@dataclass(frozen=True)
class ChunkLimits:
    """How long a chunk may last: over_ms is too long (shrink; pause, unless stretched and nobody waited); budget_ms
    is what sizing aims at; at timeout_ms the server cancels it (None: never); after patience_ms of a session waiting
    on it, the lock watch does (None: never, the timeout is under the target already)."""

    over_ms: float
    budget_ms: float
    timeout_ms: int | None
    patience_ms: float | None

    @property
    def over_label(self) -> str:
        if self.patience_ms is None:
            return f"target {self.over_ms:.0f} ms"
        return f"limit {self.over_ms:.0f} ms while nobody waits on its locks"


@dataclass(frozen=True)
class Observation:
    """What one chunk (or one wait) showed. rows=0 with lock_wait=False is a poll while waiting for a replica's
    replay lag. cancelled: the chunk of `rows` rows hit its statement timeout after duration_ms and changed nothing.
    commit_wait_ms: how much longer than the fastest of the run the slowest durable commit timed since the last
    chunk took, or is taking so far (None: not watched). waiter_ms: the longest any session waited for a lock of the
    backfill's during the chunk (0: nobody; None: not watched, or not looked at since hears_waiters was off);
    cancelled_for_waiter: the lock watch cancelled the chunk of `rows` rows after duration_ms for that session, and
    nothing of it was kept."""

    rows: int
    duration_ms: float
    lock_wait: bool = False
    cancelled: bool = False
    replay_lag_ms: float | None = None
    commit_wait_ms: float | None = None
    waiter_ms: float | None = None
    cancelled_for_waiter: bool = False
    checkpoint: CheckpointAhead | None = None  # read after the chunk (None: not read)

    @property
    def ms_per_row(self) -> float:
        return max(self.duration_ms, 1.0) / self.rows

    @property
    def kept(self) -> bool:
        """What the chunk did was committed: it was not rolled back (its timeout, a waiting session) and it took its
        locks in time."""
        return not (self.lock_wait or self.cancelled or self.cancelled_for_waiter)


@dataclass(frozen=True)
class Decision:
    """The next chunk's size, the pause before it, and (when it slowed down) why."""

    chunk_rows: int
    pause_ms: float
    slowed_because: str | None = None


class AdaptiveThrottle:
    """Chunk size and pause from the last observation; keeps the last reason it slowed down."""

    def __init__(self, settings: ThrottleSettings, stretch: bool = True) -> None:
        self.settings = settings
        # False: the limits never stretch (reads: their cost is WAL, not lock waits; or the settings say so)
        self._stretch = stretch and settings.stretch_uncontended
        self.chunk_rows = self._clamp(settings.initial_chunk_rows)
        self._backoff_ms = 0.0
        self._ms_per_row: float | None = None
        self._cancelled = False  # the last chunk was cancelled at its timeout
        self._calm = 0  # chunks of this part in a row that the lock watch saw nobody wait on
        self._contended = False  # a session was seen waiting on one of this part's chunks: no stretching
        self._checkpoint: CheckpointAhead | None = None  # the last reading
        self._wal_from: int | None = None  # the WAL position read right after the last chunk (None: a gap since)
        self._wal_per_row: float | None = None  # WAL bytes from one chunk's reading to the next's, per row
        self._before_checkpoint: int | None = None  # the size before the chunks shrank for a checkpoint's start
        self._full_pages: _FullPages | None = None  # since a checkpoint's start, while rows write whole pages
        self._vacuum: str | None = None  # the part's table, while a vacuum works on it
        self.last_slowdown: str | None = None

    @property
    def limits(self) -> ChunkLimits:
        """The next chunk's limits: stretched after CALM_CHUNKS chunks in a row that nobody waited on, in a part
        where no session has waited on the backfill, while no vacuum works on its table."""
        return self.settings.limits(contended=not self._stretch or self._contended or self._calm < CALM_CHUNKS
                                    or self._vacuum is not None)

    def beside_vacuum(self, table: str | None) -> None:
        """Before a chunk: the part's table a vacuum is working on now (None: none). While one does, the chunks
        keep to the budget (the next one brought within it at once); once it has ended, the limits are what they
        were. Says why when it changes the limits."""
        before = self.limits
        self._vacuum = table
        if table is not None and self.limits.budget_ms < before.budget_ms:
            self.chunk_rows = self._within(before, self.chunk_rows)
            self.last_slowdown = (f"a vacuum is working on {table}: chunks keep to the "
                                  f"{self.settings.chunk_budget_ms:.0f} ms budget until it ends")

    @property
    def hears_waiters(self) -> bool:
        """Whether a session seen waiting on the next chunk can still change anything: the limits may stretch in
        this part, or have. Once one was seen, the part keeps to the budget until it ends, whoever waits: the lock
        watch's looks beside its chunks would cost the server CPU for nothing."""
        return self._stretch and not self._contended

    def start_part(self) -> None:
        """A new part has its own cost per row and its own contention: forget the last one's. The chunk size
        carries over, brought back within the budget if the limits were stretched."""
        stretched = self.limits
        self._ms_per_row = None
        self._wal_per_row = self._wal_from = self._before_checkpoint = self._full_pages = None
        self._calm = 0
        self._contended = False
        self._vacuum = None
        self.chunk_rows = self._within(stretched, self.chunk_rows)

    def next(self, seen: Observation) -> Decision:
        before = self.limits  # the chunk's own, before this observation changes them
        decision = self._decide(seen, before)
        decision = replace(decision, chunk_rows=self._within(before, decision.chunk_rows))
        decision = self._around_checkpoint(seen, decision)
        self.chunk_rows = decision.chunk_rows
        if decision.slowed_because:
            self.last_slowdown = decision.slowed_because
        return decision

    def _decide(self, seen: Observation, before: ChunkLimits) -> Decision:
        s = self.settings
        if seen.lock_wait:
            # Someone holds a lock the chunk needs (its own rows are taken with SKIP LOCKED: a key, a table): that
            # says nothing of whether the application waits on this part's rows, so only the count starts again.
            self._calm = 0
            return self._back_off(self.chunk_rows // 2, 0.0,
                                  f"lock wait: the chunk could not take its locks within {s.lock_timeout_ms} ms")
        waited = self._hear_waiters(seen)
        if seen.cancelled_for_waiter:
            self._contended = True
            self._ms_per_row = max(self._ms_per_row or 0.0, seen.ms_per_row)  # at least; it did not finish
            self._cancelled = False
            return self._rolled_back(seen, int(self.limits.budget_ms / self._ms_per_row),
                                     f"{waited or 'a session waited on the backfill'}: chunk of {seen.rows} rows "
                                     f"cancelled at {seen.duration_ms:.0f} ms and rolled back")
        if seen.cancelled:
            self._ms_per_row = max(self._ms_per_row or 0.0, seen.ms_per_row)  # at least; it did not finish
            reason = (f"chunk of {seen.rows} rows cancelled at {seen.duration_ms:.0f} ms (limit {before.timeout_ms} ms) "
                      "and rolled back")
            again, self._cancelled = self._cancelled, True
            return self._rolled_back(seen, self.chunk_rows // 2, reason, again)
        self._cancelled = False
        over = seen.rows > 0 and seen.duration_ms > before.over_ms
        if over:
            # Not noise: the cost per row has risen, so it replaces the average (the next chunks must not grow
            # back from the old, cheaper cost).
            self._ms_per_row = seen.ms_per_row
        scaled = int(self.chunk_rows * self.limits.budget_ms / seen.duration_ms) if over else self.chunk_rows
        if self._stalling(seen):
            return self._back_off(scaled, seen.duration_ms if over else 0.0,
                                  f"commits stalling: a commit waited {seen.commit_wait_ms:.0f} ms longer than "
                                  f"usual (target {s.target_write_latency_ms} ms)")
        # Commits slowing: every session waits longer for the server; a pause as long as the chunk gives it back.
        slowing = self._slowing(seen)
        if not slowing:
            self._backoff_ms = 0.0  # commits are back to usual: the next stall's backoff starts over
        # Over its limit: waiters may have queued behind it (not behind a stretched one nobody waited on).
        waiters_queued = over and (before.patience_ms is None or seen.waiter_ms != 0)
        drain_ms = seen.duration_ms if waiters_queued or slowing else 0.0
        took = f"chunk of {seen.rows} rows took {seen.duration_ms:.0f} ms ({before.over_label})" if over else None
        if over and slowing:
            took = f"{took}; {slowing}"
        if seen.replay_lag_ms is not None and seen.replay_lag_ms > s.max_replay_lag_ms / 2 and (
                seen.rows == 0 or seen.replay_lag_ms > s.max_replay_lag_ms):
            # The lag halves the chunk; a chunk also over its limit shrinks to fit the budget if that is smaller.
            because = [f"replica replay lag {seen.replay_lag_ms / 1000:.1f} s (limit {s.max_replay_lag_ms / 1000:.1f} s)",
                       took if over else slowing, waited]
            return Decision(self._clamp(min(self.chunk_rows // 2, scaled)), max(LAG_POLL_MS, drain_ms),
                            "; ".join(b for b in because if b))
        if seen.rows == 0:
            return Decision(self.chunk_rows, 0.0)
        if over:
            return Decision(self._clamp(scaled), drain_ms, took)
        # A waiter, or a chunk the watch did not see to its end, is the reason only when it ended stretched limits
        # (within the budget, the cost was).
        if before.patience_ms is not None and self.limits.patience_ms is None and not waited:
            waited = (f"the lock watch did not see the chunk of {seen.rows} rows to its end (chunks keep to the "
                      f"{s.chunk_budget_ms:.0f} ms budget)")
        return self._aim(seen, waited if before.patience_ms is not None else None, drain_ms, slowing)

    def _around_checkpoint(self, seen: Observation, decision: Decision) -> Decision:
        """Shrink the chunks that may run across a checkpoint's start (from the reading after this chunk), and
        pace the ones after it by their WAL until their rows no longer write whole pages. Without a reading (a chunk
        not kept, a wait), only the caps already set hold."""
        now, last = seen.checkpoint, self._checkpoint
        if now is None:
            self._wal_from = None  # a wait, a chunk not kept: the WAL until the next reading is not one chunk's
            decision = self._after_start(decision, None)
            if self._before_checkpoint is None:
                return decision
            small = self._clamp(self._before_checkpoint // CHECKPOINT_SHRINK)  # still before the start foreseen
            return self._shrunk(decision, small, 0.0, f"a checkpoint starts soon: chunks of {small} rows until it has")
        self._checkpoint = now
        before_per_row, per_row = self._wal_per_row, None
        if self._wal_from is not None and seen.rows > 0 and now.wal_at > self._wal_from:
            per_row = (now.wal_at - self._wal_from) / seen.rows  # the application's WAL meanwhile too: wider
            if self._full_pages is None:  # whole pages after a start would widen the next start's window for long
                self._wal_per_row = _smoothed(self._wal_per_row, per_row)
        self._wal_from = now.wal_at
        decision = self._after_start(decision, per_row)
        if now.past:
            if last is None or last.past:
                return decision
            full = self._before_checkpoint or self.chunk_rows
            self._before_checkpoint = None
            self._full_pages = _FullPages(full * before_per_row, before_per_row, 0, self._clamp(0)) if (
                before_per_row) else None
            small = self._clamp(0 if self._full_pages else full // CHECKPOINT_SHRINK)
            return self._shrunk(decision, small, CHECKPOINT_SETTLE_MS,
                                "a checkpoint has just started (each page's first change after it copies the whole "
                                f"page into the WAL): a pause of {CHECKPOINT_SETTLE_MS:.0f} ms, then chunks from "
                                f"{small} rows")
        full = max(decision.chunk_rows, self._before_checkpoint or 0)
        wal_window = NEAR_CHECKPOINT * full * (self._wal_per_row or 0.0)
        chunk_ms = full * self._ms_per_row if self._ms_per_row else seen.duration_ms
        time_window = NEAR_CHECKPOINT * (chunk_ms + decision.pause_ms) / 1000 + CHECKPOINT_MARGIN_S
        if now.wal_bytes > wal_window and now.seconds > time_window:
            self._before_checkpoint = None
            return decision
        self._before_checkpoint = full
        small = self._clamp(full // CHECKPOINT_SHRINK)
        soon = (f"{now.wal_bytes / 2 ** 20:.1f} MB of WAL" if now.wal_bytes <= wal_window
                else f"{now.seconds:.1f} s")
        return self._shrunk(decision, small, seen.duration_ms,
                            f"a checkpoint starts within {soon} (each page's first change after it copies the whole "
                            f"page into the WAL): chunks of {small} rows, each followed by a pause as long, until it has")

    def _after_start(self, decision: Decision, per_row: float | None) -> Decision:
        """While a checkpoint's first changes of pages are still being written, a chunk writes at most the WAL a
        chunk wrote before the start (its size then times the WAL a row then): the application's commits wait for
        all the WAL before theirs, and a chunk of the usual size then writes many times its usual WAL (bench: a
        chunk of an eighth of the size took 310 ms against 43, right after a start, and writes went to 152 ms).
        Sized from the WAL a row since the last reading: the application's WAL in that time, pauses included,
        counts as the chunk's, which errs small. It ends once a row writes at most FULL_PAGES_FADED times its WAL of
        before, or after FULL_PAGES_CHUNKS readings; without a reading, the last size allowed holds."""
        paced = self._full_pages
        if paced is None:
            return decision  # no checkpoint started lately, or nothing to pace by
        if per_row is None:
            return self._shrunk(decision, paced.rows, 0.0,
                                f"a checkpoint has started: chunks of {paced.rows} rows at most")
        if per_row <= paced.per_row * FULL_PAGES_FADED or paced.readings >= FULL_PAGES_CHUNKS:
            self._full_pages = None  # its rows write about what they did before, or what is left is not theirs
            return decision
        rows = self._clamp(int(paced.chunk_wal / per_row))
        self._full_pages = replace(paced, readings=paced.readings + 1, rows=rows)
        return self._shrunk(decision, rows, 0.0,
                            f"a checkpoint has started: a row writes {per_row / 1024:.1f} kB of WAL against "
                            f"{paced.per_row / 1024:.1f} kB before (whole pages): chunks of {rows} rows, to write no "
                            "more WAL a chunk than before it")

    def _shrunk(self, decision: Decision, rows: int, pause_ms: float, reason: str) -> Decision:
        """At most `rows`, after at least `pause_ms`; the reason added when either changes the decision."""
        if decision.chunk_rows <= rows and decision.pause_ms >= pause_ms:
            return decision
        because = f"{decision.slowed_because}; {reason}" if decision.slowed_because else reason
        return Decision(min(rows, decision.chunk_rows), max(pause_ms, decision.pause_ms), because)

    def _hear_waiters(self, seen: Observation) -> str | None:
        """Count the chunks in a row that nobody waited on; when a session waited, say so. A chunk not watched
        starts the count again, unless it was shorter than the patience: nobody can have waited that long on it,
        so it neither counts nor resets. A watched chunk that someone waited on, however briefly, ends stretching
        for the rest of the part: a wait seen says the application writes these rows; a chunk not seen says
        nothing either way."""
        if seen.rows == 0:
            return None  # a poll while waiting: no chunk ran
        if not seen.waiter_ms:
            if seen.waiter_ms is not None:
                self._calm += 1
            elif seen.duration_ms >= self.settings.wait_patience_ms:
                self._calm = 0
            return None
        self._calm, self._contended = 0, True
        return (f"a session waited {seen.waiter_ms:.0f} ms on the backfill's locks (this part's chunks keep to the "
                f"{self.settings.chunk_budget_ms:.0f} ms budget)")

    def _within(self, before: ChunkLimits, rows: int) -> int:
        """`rows`, brought within the budget when the limits have just come back from stretched: from the cost per
        row when known, else in proportion (a chunk sized for the stretched budget would run into the timeout)."""
        budget_ms = self.limits.budget_ms
        if budget_ms >= before.budget_ms:
            return rows
        fits = budget_ms / self._ms_per_row if self._ms_per_row else rows * budget_ms / before.budget_ms
        return self._clamp(min(rows, int(fits)))

    def _rolled_back(self, seen: Observation, rows: int, reason: str, again: bool = False) -> Decision:
        """After a chunk that was rolled back, its locks released: `rows` right away, unless commits are slowing
        (a pause as long as it ran), or stalling, or `again` (the second timeout cancellation in a row):
        exponential backoff, at least as long as it ran."""
        stalling = self._stalling(seen)
        if stalling:
            reason += f"; commits stalling: a commit waited {seen.commit_wait_ms:.0f} ms longer than usual"
        if again or stalling:
            return self._back_off(rows, seen.duration_ms, reason)
        slowing = self._slowing(seen)
        if not slowing:
            self._backoff_ms = 0.0  # commits are back to usual: the next stall's backoff starts over
        return Decision(self._clamp(rows), seen.duration_ms if slowing else 0.0,
                        f"{reason}; {slowing}" if slowing else reason)

    def _slowing(self, seen: Observation) -> str | None:
        """A chunk's commit watch read a wait over COMMIT_BUSY of the target (and not over COMMIT_STALL: that is a
        stall): why the next chunk waits as long as this one took."""
        if seen.rows == 0 or seen.commit_wait_ms is None or self._stalling(seen):
            return None
        if seen.commit_wait_ms <= self.settings.target_write_latency_ms * COMMIT_BUSY:
            return None
        return (f"commits slowing: a commit waited {seen.commit_wait_ms:.0f} ms longer than usual (a pause as long "
                "as the chunk took)")

    def _stalling(self, seen: Observation) -> bool:
        return seen.commit_wait_ms is not None and seen.commit_wait_ms > self.settings.target_write_latency_ms * COMMIT_STALL

    def _back_off(self, rows: int, at_least_ms: float, reason: str) -> Decision:
        """A pause that doubles (from the target up to MAX_BACKOFF_MS) while the signal lasts, before `rows`."""
        self._backoff_ms = min(max(self._backoff_ms * 2, float(self.settings.target_write_latency_ms)), MAX_BACKOFF_MS)
        return Decision(self._clamp(rows), max(self._backoff_ms, at_least_ms), reason)

    def _aim(self, seen: Observation, waited: str | None, pause_ms: float, slowing: str | None) -> Decision:
        s = self.settings
        budget_ms = self.limits.budget_ms
        ms_per_row = self._cost_per_row(seen)
        ideal = int(budget_ms / ms_per_row)
        size = min(ideal, int(self.chunk_rows * MAX_GROWTH))
        lag_near = seen.replay_lag_ms is not None and seen.replay_lag_ms > s.max_replay_lag_ms / 2
        reason = None
        if size < self.chunk_rows:
            reason = waited or f"chunk of {seen.rows} rows took {seen.duration_ms:.0f} ms (budget {budget_ms:.0f} ms)"
        if slowing:
            size = min(size, self.chunk_rows)
            reason = f"{reason}; {slowing}" if reason else slowing
        if lag_near:
            size = min(size, self.chunk_rows)
            reason = "; ".join(filter(None, (f"replica replay lag {seen.replay_lag_ms / 1000:.1f} s is over half the limit",
                                             reason)))
        return Decision(self._clamp(size), pause_ms, reason)

    def _cost_per_row(self, seen: Observation) -> float:
        """ms per row: the moving average over full chunks (a short chunk only counts while there is none)."""
        cost = seen.ms_per_row
        if seen.rows >= self.chunk_rows:
            self._ms_per_row = _smoothed(self._ms_per_row, cost)
        return self._ms_per_row if self._ms_per_row is not None else cost

    def _clamp(self, rows: int) -> int:
        return max(self.settings.min_chunk_rows, min(self.settings.max_chunk_rows, rows))


@dataclass(frozen=True)
class _FullPages:
    """What chunks keep to after a checkpoint's start: the WAL of a chunk before it and the WAL a row wrote then
    (bytes), the readings paced since, and the size the last one allowed."""

    chunk_wal: float
    per_row: float
    readings: int
    rows: int


def _smoothed(average: float | None, newest: float) -> float:
    """The moving average with the newest value weighing COST_SMOOTHING (the first value starts it)."""
    return newest if average is None else COST_SMOOTHING * newest + (1 - COST_SMOOTHING) * average


class FixedThrottle:
    """Fixed chunks, no pause (pgroll's default); only a lock wait backs off, so the run can finish."""

    def __init__(self, chunk_rows: int = 1_000) -> None:
        self.chunk_rows = chunk_rows
        self.last_slowdown: str | None = None

    @property
    def limits(self) -> ChunkLimits:
        """None that binds: a fixed chunk runs to its end however long it takes."""
        return ChunkLimits(float("inf"), float("inf"), None, None)

    @property
    def hears_waiters(self) -> bool:
        return False

    def start_part(self) -> None:
        pass

    def beside_vacuum(self, table: str | None) -> None:
        """Fixed chunks take no notice of a vacuum (fixed-size runs do not look for one)."""

    def next(self, seen: Observation) -> Decision:
        if seen.lock_wait:
            self.last_slowdown = "lock wait"
            return Decision(self.chunk_rows, 100.0, self.last_slowdown)
        return Decision(self.chunk_rows, 0.0)
