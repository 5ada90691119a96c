"""Errors of backfills and gates that a user can act on (see errors.py for the engine's others)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import MigrationError, failed_checks


class BackfillDeclarationInvalid(MigrationError):
    """A batch's backfill.toml or gate.toml cannot be read."""

    def __init__(self, batch: str, problem: str, file: str = "backfill.toml") -> None:
        self.batch = batch
        super().__init__(f"batch '{batch}' {file} is invalid: {problem}; fix the declaration (see the batch README)")


class BackfillIncomplete(MigrationError):
    """The backfill ran, but its validation still fails after the sweeps; everything done so far is kept."""

    def __init__(self, batch: str, failed: Sequence[tuple[str, str]]) -> None:
        self.batch, self.failed = batch, tuple(failed)
        names = failed_checks(self.failed)
        super().__init__(
            f"backfill of batch '{batch}' is not complete ({len(self.failed)} checks fail: {names}); the rows moved so "
            "far are kept and recorded, make sure the application writes customer_id itself, then run `pulumi up` again"
        )


class ReplicaLagging(MigrationError):
    """A streaming replica stayed too far behind for too long; the backfill stopped between two chunks."""

    def __init__(self, batch: str, part: str, lag_ms: float, limit_ms: int) -> None:
        self.batch = batch
        super().__init__(
            f"backfill of batch '{batch}' stopped before a chunk of part '{part}': a streaming replica is "
            f"{lag_ms / 1000:.1f} s behind (limit {limit_ms / 1000:.1f} s) and did not catch up; check the replica "
            "(is replay paused?), then run `pulumi up` again to continue from here"
        )


class BackfillPaused(MigrationError):
    """An operator paused the backfill (junkquote-db:backfill.paused) while it ran; it stopped between two chunks."""

    def __init__(self, batch: str, part: str, rows_done: int, rows_total: int) -> None:
        self.batch, self.part = batch, part
        super().__init__(
            f"backfill of batch '{batch}' paused by junkquote-db:backfill.paused before a chunk of part '{part}' "
            f"({rows_done:,}/{rows_total:,} rows of it done and kept); set it to false and run `pulumi up` to continue"
        )
