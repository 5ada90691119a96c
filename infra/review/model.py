"""What the review report shows, as plain data: the renderer (markdown.py) is a pure function of these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["apply", "adopt"]


@dataclass(frozen=True)
class Finding:
    """A squawk finding on a pending batch; `accepted_reason` is set when the batch accepts the rule."""

    file: str
    line: int
    rule: str
    message: str
    accepted_reason: str | None = None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    key: str = ""  # "PK", "FK", "PK, FK" or ""


@dataclass(frozen=True)
class Table:
    """A table a batch creates (new) or changes (the columns it adds)."""

    name: str
    new: bool
    columns: tuple[Column, ...] = ()


@dataclass(frozen=True)
class Relation:
    """A foreign key: `child` (its `columns`) references `parent`."""

    child: str
    parent: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class BatchReview:
    """One pending batch: how it applies, where it takes locks, what squawk says, what its backfill goes through,
    which checks run."""

    name: str
    action: Action
    steps: tuple[str, ...]
    locks: tuple[str, ...]
    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    sql: dict[str, str]  # file name -> text
    backfill: tuple[str, ...] = ()  # a batch that declares one: its parts, throttle and what failure keeps, per line
    backfill_warning: str | None = None  # what the login user keeps its throttle from seeing


@dataclass(frozen=True)
class StackReview:
    """What one stack will do: blockers first, then the pending batches, a batch waiting on its gate, the
    corrections of applied batches that `up` records."""

    stack: str
    target: str  # host:port/db, never a password
    lint_policy: str
    blockers: tuple[str, ...] = ()
    batches: tuple[BatchReview, ...] = ()
    waiting: str | None = None
    corrections: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    relations: tuple[Relation, ...] = ()

    @property
    def summary(self) -> str:
        """One line: apply N batches, adopt, wait on a gate, or nothing."""
        if self.blockers:
            return "blocked: nothing will run until the blockers are resolved"
        parts = []
        applied = [b.name for b in self.batches if b.action == "apply"]
        adopted = [b.name for b in self.batches if b.action == "adopt"]
        if adopted:
            parts.append(f"adopt {', '.join(adopted)}")
        if applied:
            parts.append(f"apply {len(applied)} batch{'es' if len(applied) != 1 else ''} ({', '.join(applied)})")
        if self.corrections:
            parts.append(f"record {len(self.corrections)} corrected batch file set(s)")
        if self.waiting:
            parts.append("wait on a paused backfill" if "paused" in self.waiting else "wait on a gate")
        return "; then ".join(parts) if parts else "nothing: every batch is applied"
