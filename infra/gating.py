"""Which batches the program declares now: a pending batch waits while its gate is closed or its backfill is
paused, and every later batch waits with it. Applied batches are always declared (never withdrawn).

Waiting is not a failure: `pulumi preview` and `pulumi up` log the reason, and `up` leaves the batch pending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .backfill_settings import BackfillSettings
from .config_errors import PROJECT
from .migrations import progress
from .migrations.gate import gate_status
from .migrations.plan import Batch
from .migrations.target import Target

PendingReader = Callable[[Target, Sequence[Batch]], Sequence[Batch]]


@dataclass(frozen=True)
class Held:
    """The batches to declare, and for the first held-back batch (if any) why it waits."""

    declared: tuple[Batch, ...]
    waiting: str | None = None


def hold_back(batches: Sequence[Batch], target: Target, backfill: BackfillSettings, gates: frozenset[str],
              pending_reader: PendingReader) -> Held:
    if not any(b.gate or b.backfill for b in batches):
        return Held(tuple(batches))
    pending = {b.name for b in pending_reader(target, batches)}
    for i, batch in enumerate(batches):
        if batch.name not in pending:
            continue
        reason = _waits(batch, target, backfill, gates)
        if reason:
            later = [b.name for b in batches[i + 1:]]
            tail = f"; {', '.join(later)} wait with it" if later else ""
            return Held(tuple(batches[:i]), f"batch {batch.name} is waiting: {reason}{tail}")
    return Held(tuple(batches))


def _waits(batch: Batch, target: Target, backfill: BackfillSettings, gates: frozenset[str]) -> str | None:
    if batch.backfill and backfill.paused:
        return f"its backfill is paused by {PROJECT}:backfill.paused ({_where(batch, target)}); set it to false and run `pulumi up` to continue"
    if batch.gate:
        status = gate_status(target, batch, gates)
        if not status.open:
            off = [f"stack config {PROJECT}:gates.{status.setting_off} is not true"] if status.setting_off else []
            return "; ".join([*off, *status.unmet]) + " (it is applied by the first `pulumi up` after every condition holds)"
    return None


def _where(batch: Batch, target: Target) -> str:
    with target.connect(autocommit=True) as conn:
        parts = progress.of_batch(conn, batch.name)
    if not parts:
        return "not started"
    return ", ".join(f"{p.part} {'pass done' if p.pass_done else f'{p.rows_done:,} rows'}" for p in parts)
