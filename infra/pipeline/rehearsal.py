"""The rollback rehearsal on an ephemeral stack: apply, validate, destroy (every rollback.sql, newest first),
compare the catalog with a snapshot taken before the apply, apply again.

It starts from a fresh ephemeral stack (an earlier one of the same name is taken down first), so the snapshot is
the database before any batch of this stack ran: empty, or the source's schema when restored from its pg_dump (the
source's ledger comes along, so its batches are recorded as the source's and only the pending ones run, and only
those roll back). Validation is part of the apply: a failed check stops the apply with the batch undone.
"""

from __future__ import annotations

from ..migrations.snapshot import Snapshot, differences, take_snapshot
from ..migrations.target import Target
from ..providers.connection_props import target_of
from . import ephemeral
from .errors import RehearsalFailed
from .workspace import Workspace


def rehearse(ws: Workspace, req: ephemeral.Request) -> None:
    if ws.exists(req.stack):
        ws.out(f"stack '{req.stack}' exists: taking it down first, the rehearsal starts from a fresh database")
        ephemeral.down(ws, req)
    settings = ephemeral.prepare(ws, req)
    target = target_of(settings.database)
    before = _snapshot(target)
    ws.out("rehearsal 1/4: apply and validate")
    ephemeral.apply(ws, settings)
    ws.out("rehearsal 2/4: destroy (every rollback.sql of this stack, newest first)")
    ws.destroy(req.stack, "fix that batch's rollback.sql, then run `make rehearse` again (it starts over)")
    ws.out("rehearsal 3/4: compare the catalog with the snapshot taken before the apply")
    changes = differences(before, _snapshot(target))
    if changes:
        raise RehearsalFailed(req.stack, [str(c) for c in changes])
    ws.out("rehearsal 4/4: apply again")
    ephemeral.apply(ws, settings)
    ws.out(f"rollback rehearsal of stack '{req.stack}' passed: after the rollback the catalog matched the snapshot "
           f"taken before the apply, and the batches applied again")


def _snapshot(target: Target) -> Snapshot:
    with target.connect(autocommit=True) as conn:
        return take_snapshot(conn)
