"""Errors of backfills and gates that a user can act on (see errors.py for the engine's others)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import Actions, MigrationError, failed_checks


def one_line(error: BaseException) -> str:
    """What a watch beside the backfill failed with, for its error's message: the type and the first line."""
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _resume(unit: str) -> str:
    """What the next apply does after a stop between two chunks: go on from there, or (stopped in the reads before
    the checks, which record nothing) those reads, then the checks."""
    return "to continue from here" if unit == "rows" else "to finish: these reads, then the checks"


def _where(part: str, unit: str, in_part: str) -> str:
    """Where a backfill stopped between two chunks: in one of its parts, or in the reads before its checks."""
    if unit != "rows":
        return f"after its chunks, while reading table {part} before the checks"
    return f"{in_part} part '{part}'"


@dataclass(eq=False)
class BackfillDeclarationInvalid(MigrationError):
    """A batch's backfill.toml or gate.toml cannot be read."""

    batch: str
    problem: str
    file: str = "backfill.toml"

    def message(self, say: Actions) -> str:
        return f"batch '{self.batch}' {self.file} is invalid: {self.problem}; fix the declaration (see the batch README)"


@dataclass(eq=False)
class BackfillIncomplete(MigrationError):
    """The backfill ran, but its validation still fails after the sweeps; everything done so far is kept."""

    batch: str
    failed: Sequence[tuple[str, str]]

    def message(self, say: Actions) -> str:
        return (f"backfill of batch '{self.batch}' is not complete ({len(self.failed)} checks fail: "
                f"{failed_checks(self.failed)}); the rows moved so far are kept and recorded, make sure the "
                f"application writes customer_id itself, then {say.apply} again")


@dataclass(eq=False)
class ReplicaLagging(MigrationError):
    """A streaming replica stayed too far behind for too long; the backfill stopped between two chunks."""

    batch: str
    part: str
    lag_ms: float
    limit_ms: int
    unit: str = "rows"  # "pages": while reading the tables the checks read (`part` names the table)

    def message(self, say: Actions) -> str:
        return (f"backfill of batch '{self.batch}' stopped {_where(self.part, self.unit, 'before a chunk of')}: a streaming "
                f"replica is {self.lag_ms / 1000:.1f} s behind (limit {self.limit_ms / 1000:.1f} s) and did not "
                f"catch up; check the replica (is replay paused?), then {say.apply} again {_resume(self.unit)}")


@dataclass(eq=False)
class CommitWatchFailed(MigrationError):
    """The probe that times commits beside the backfill failed (its connection lost, a right missing); the backfill
    stopped between two chunks."""

    batch: str
    reason: str

    def message(self, say: Actions) -> str:
        return (f"backfill of batch '{self.batch}' stopped: the probe that times commits beside it failed "
                f"({self.reason}); everything done so far is kept; check the server and that the migration user owns "
                f"schema_ledger, then {say.apply} again to continue from here")


@dataclass(eq=False)
class LockWatchFailed(MigrationError):
    """The watch for sessions waiting on the backfill's locks failed (its connection lost); the backfill stopped
    between two chunks."""

    batch: str
    reason: str

    def message(self, say: Actions) -> str:
        return (f"backfill of batch '{self.batch}' stopped: the watch for sessions waiting on its locks failed "
                f"({self.reason}); everything done so far is kept; check the server, then {say.apply} again to "
                "continue from here")


@dataclass(eq=False)
class CommitsStalled(MigrationError):
    """A durable commit beside the backfill waited longer than any healthy server makes one wait (a synchronous
    standby gone, a disk that stopped); the backfill stopped after its last chunk instead of adding to the load."""

    batch: str
    part: str
    waited_ms: float
    limit_ms: int
    unit: str = "rows"  # "pages": while reading the tables the checks read (`part` names the table)

    def message(self, say: Actions) -> str:
        return (f"backfill of batch '{self.batch}' stopped {_where(self.part, self.unit, 'in')}: a durable commit has waited "
                f"{self.waited_ms / 1000:.0f} s (limit {self.limit_ms / 1000:.0f} s), so the application's commits "
                f"are stalled too; {'every chunk' if self.unit != 'rows' else 'everything done so far'} is kept; "
                f"check synchronous_standby_names against the standbys connected (pg_stat_replication) and the "
                f"server's disk, then {say.apply} again {_resume(self.unit)}")


@dataclass(eq=False)
class BackfillPaused(MigrationError):
    """An operator paused the backfill while it ran; it stopped between two chunks."""

    batch: str
    part: str
    rows_done: int
    rows_total: int
    unit: str = "rows"  # "pages": paused while reading the tables the checks read (nothing there to keep)

    def message(self, say: Actions) -> str:
        where = _where(self.part, self.unit, "before a chunk of")
        if self.unit != "rows":
            return (f"backfill of batch '{self.batch}' paused ({say.pause_setting}) {where} ({self.rows_done:,}/"
                    f"{self.rows_total:,} {self.unit}); every chunk is kept; {say.unpause} {_resume(self.unit)}")
        return (f"backfill of batch '{self.batch}' paused ({say.pause_setting}) {where} "
                f"({self.rows_done:,}/{self.rows_total:,} rows of it done and kept); {say.unpause} to continue")


@dataclass(eq=False)
class ChunkTooSlow(MigrationError):
    """Chunks of the smallest size allowed kept running past their statement timeout; each was rolled back."""

    batch: str
    part: str
    rows: int
    took_ms: float
    attempts: int
    phase: str = "pass"  # "pass", "sweep", or "settle" (reading a table the checks read; `part` names it)
    after_key: str | None = None  # where the part's pass stands (None: at its start); for "settle", the page

    def message(self, say: Actions) -> str:
        if self.phase == "settle":
            return (f"backfill of batch '{self.batch}' stopped {_where(self.part, 'pages', '')}: {self.attempts} "
                    f"reads in a row of the pages of about {self.rows} rows (at {self.after_key}), the fewest allowed, "
                    f"ran past their limit ({self.took_ms:.0f} ms the last; 90 % of {say.throttle_setting}); every "
                    f"chunk is kept; check what slows the server (locks, I/O), or raise the target, then {say.apply} "
                    f"to validate")
        where = ("in its sweep" if self.phase != "pass" else
                 f"after key '{self.after_key}'" if self.after_key else "at the start of its pass")
        return (f"backfill of batch '{self.batch}' stopped in part '{self.part}' {where}: {self.attempts} chunks in "
                f"a row of {self.rows} rows, the smallest allowed, ran past their limit ({self.took_ms:.0f} ms the "
                f"last; 90 % of {say.throttle_setting}) and were rolled back; all earlier chunks are kept; check "
                f"what slows the server (locks, I/O) or those rows, or raise the target, then {say.apply} to continue")
