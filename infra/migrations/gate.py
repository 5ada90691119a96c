"""A pending batch's gate (gate.toml): a stack setting that must be on, and preconditions that must hold.

Read-only: the preconditions run in a transaction that is rolled back. A gated batch whose gate is closed is
not applied; the program leaves it (and every later batch) pending and says why.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import psycopg

from .backfill_errors import BackfillDeclarationInvalid
from .plan import Batch
from .target import Target


@dataclass(frozen=True)
class Precondition:
    name: str
    query: str  # returns one count; the precondition holds when it is 0


@dataclass(frozen=True)
class Gate:
    setting: str
    preconditions: tuple[Precondition, ...]


@dataclass(frozen=True)
class GateStatus:
    """Why a gated batch may not be applied yet: its setting is off, or preconditions do not hold."""

    setting_off: str | None  # the gate's setting, while the stack does not turn it on
    unmet: tuple[str, ...]  # each precondition that does not hold yet, with what it counted

    @property
    def open(self) -> bool:
        return self.setting_off is None and not self.unmet


def load_gate(batch: Batch) -> Gate:
    assert batch.gate is not None
    try:
        doc = tomllib.loads(batch.gate)
        pre = tuple(Precondition(str(p["name"]), str(p["query"])) for p in doc.get("precondition", []))
        return Gate(str(doc["setting"]), pre)
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise BackfillDeclarationInvalid(batch.name, f"{type(err).__name__}: {err}", "gate.toml") from None


def gate_status(target: Target, batch: Batch, open_settings: frozenset[str]) -> GateStatus:
    """Whether the batch may be applied now, and if not every reason why."""
    gate = load_gate(batch)
    with target.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        unmet = _unmet(conn, gate.preconditions)
    return GateStatus(None if gate.setting in open_settings else gate.setting, tuple(unmet))


def _unmet(conn: psycopg.Connection, preconditions: tuple[Precondition, ...]) -> list[str]:
    out = []
    for p in preconditions:
        try:
            with conn.transaction():
                count = int(conn.execute(p.query).fetchone()[0])
        except psycopg.Error as err:
            out.append(f"{p.name}: cannot be checked yet ({(err.diag.message_primary or str(err)).strip()})")
            continue
        if count:
            out.append(f"{p.name}: {count:,}")
    return out
