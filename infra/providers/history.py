"""Dynamic provider: the stack's schema history, one resource for every batch. A thin adapter over the
migration engine.

Pulumi's cost grows with the number of resources, and a project gains a batch every few weeks for years, so
the batches are not one resource each: the history's inputs list every applied batch by its checksums, and
carry in full only what a run does now:
- `pending`: batches to apply (or adopt), in order, with their files, plan and locks (`preview --diff`);
- `corrections`: applied batches whose corrected files are recorded (or whose files the ledger lacks);
- `rollBackFrom`: the first of the applied batches to roll back on purpose (`make rollback`);
- `rollbackIncomplete`: batches whose rollback stopped, so that `up` names them.

Once applied, a pending batch moves into `applied` on the next run; `diff` sees that nothing changed (the
ledger already has it with those checksums), so a run after `up` is a no-op. `delete` (`pulumi destroy`)
rolls back every batch this stack applied, newest first, with the files the ledger keeps. The provider keeps
nothing on `self` (it is pickled into state), and `destroy` needs only the outputs and the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.migrations.errors import MigrationError
from infra.migrations.plan import Batch, load_batches
from infra.migrations.runner import RunSettings, apply_batches, rollback_batches
from infra.migrations.state import read_state
from infra.migrations.target import Target
from infra.providers.backfill_props import backfill_run
from infra.providers.batch_props import batch_from_inputs
from infra.providers.connection_props import target_from_inputs
from infra.providers.engine_watch import engine_gone, exit_when_orphaned
from infra.providers.errors import DestroyRefused
from infra.providers.protection import protected_by_stack_file, protected_in_config
from infra.providers.reporting import engine_errors
from infra.providers.run_props import run_from_inputs
from infra.providers.schema_object import forget_catalog

_OUTPUTS = ("batches", "schemaVersion")
# Inputs whose change is a change of the history itself (where and how it runs).
_WATCHED = ("connection", "password", "settings", "backfill", "protected")


@dataclass(frozen=True)
class HistoryProps:
    """The property bag of the SchemaHistory resource, typed."""

    target: Target
    run: RunSettings
    protected: bool
    applied: dict[str, dict[str, str]]
    pending: tuple[Batch, ...]
    adopted: frozenset[str]
    corrections: tuple[Batch, ...]
    roll_back_from: str | None
    rollback_incomplete: tuple[str, ...]

    @classmethod
    def parse(cls, props: dict[str, Any]) -> HistoryProps:
        pending = props.get("pending") or []
        return cls(
            target=target_from_inputs(props),
            run=run_from_inputs(props["settings"], backfill=backfill_run(props), stop_reason=engine_gone),
            protected=bool(props.get("protected")),
            applied=dict(props.get("applied") or {}),
            pending=tuple(batch_from_inputs(b) for b in pending),
            adopted=frozenset(b["batch"] for b in pending if b.get("adopt")),
            corrections=tuple(batch_from_inputs(b) for b in props.get("corrections") or []),
            roll_back_from=props.get("rollBackFrom") or None,
            rollback_incomplete=tuple(props.get("rollbackIncomplete") or ()),
        )

    @property
    def files(self) -> dict[str, Batch]:
        """The batch files these props carry in full."""
        return {b.name: b for b in (*self.corrections, *self.pending)}


def recorded(props: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Batch -> checksums as a run of these props leaves the ledger: the applied batches, then what the run
    applies or corrects."""
    known = dict(props.get("applied") or {})
    for bag in (*(props.get("corrections") or ()), *(props.get("pending") or ())):
        known[bag["batch"]] = bag["checksums"]
    return known


def changed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Whether a run of `news` has work after the run that left `olds` (in `up`: the last outputs; in `refresh`:
    those outputs with the ledger as read now). A batch applied by the last run and now listed as applied is
    no work; neither is a rollback whose batches the ledger no longer has. Rows of other stacks sharing the
    ledger are not this history's business."""
    stack = (news.get("settings") or {}).get("stack")
    rows = olds.get("batches") or []
    in_ledger = {b["name"] for b in rows}
    mine = {b["name"] for b in rows if b.get("stack") == stack}
    wanted = recorded(news)
    start = news.get("rollBackFrom")
    return (recorded(olds) != wanted or not set(wanted) <= in_ledger
            or bool(start and any(name >= start for name in mine))
            or bool(news.get("rollbackIncomplete"))
            or any(olds.get(k) != news.get(k) for k in _WATCHED))


class SchemaHistoryProvider(ResourceProvider):
    # Whether the config the engine hands this provider protects the stack (see migration.py).
    protected_by_config: bool = False

    def configure(self, req: ConfigureRequest) -> None:
        self.protected_by_config = protected_in_config(req.config.get("migrations"))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A change when the run has work, where or how it runs changed, or the ledger holds other batches than
        the last run left (one rolled back or recorded outside this stack's runs)."""
        return DiffResult(changes=changed(olds, news), replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = HistoryProps.parse(props)
        with engine_errors(), exit_when_orphaned():
            self._refuse_unfinished(p)
            if p.roll_back_from:
                self._refuse_if_protected(p, p.roll_back_from)
                forget_catalog()
                rollback_batches(p.target, p.run, {**checkout_batches(), **p.files}, start=p.roll_back_from)
            if p.corrections or p.pending:
                forget_catalog()
            apply_batches(p.target, (*p.corrections, *p.pending), p.run, adopted=p.adopted)
            outs = {**props, **ledger_outputs(p.target)}
        return CreateResult(id_="schema-history", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        p = HistoryProps.parse(props)
        with engine_errors():
            return ReadResult(id_, {**props, **ledger_outputs(p.target)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Roll back every batch this stack applied, newest first (refused on a protected stack)."""
        p = HistoryProps.parse(props)
        with engine_errors(), exit_when_orphaned():
            newest = props.get("schemaVersion") or "every batch"
            self._refuse_if_protected(p, newest)
            forget_catalog()
            rollback_batches(p.target, p.run, {**checkout_batches(), **p.files})

    def _refuse_if_protected(self, p: HistoryProps, batch: str) -> None:
        if p.protected or self.protected_by_config or protected_by_stack_file(p.run.stack):
            raise DestroyRefused(batch, p.run.stack)

    @staticmethod
    def _refuse_unfinished(p: HistoryProps) -> None:
        if not p.rollback_incomplete:
            return
        state = read_state(p.target)
        for name in p.rollback_incomplete:
            if name in state.rollbacks and not (p.roll_back_from and name >= p.roll_back_from):
                raise state.incomplete_named(name)


def ledger_outputs(target: Target) -> dict[str, Any]:
    """Per-batch detail from the ledger: name, checksum, when and how it was applied; the newest batch."""
    entries = read_state(target).entries
    batches = [{"name": e.batch, "sha256": e.migration_sha256, "appliedAt": e.applied_at.isoformat(),
                "adopted": e.adopted, "stack": e.stack} for e in sorted(entries.values(), key=lambda e: e.batch)]
    return {"batches": batches, "schemaVersion": batches[-1]["name"] if batches else "none"}


def checkout_batches(sql_dir: Path | None = None) -> dict[str, Batch]:
    """The batch folders of the checkout the provider runs in, for ledger rows that lack their files."""
    try:
        return {b.name: b for b in load_batches(sql_dir or Path.cwd() / "sql")}
    except (MigrationError, OSError):
        return {}


class SchemaHistory(Resource, module="junkquote", name="SchemaHistory"):
    """Every SQL batch of the stack: applied, validated, and rolled back newest first on destroy."""

    batches: pulumi.Output[list[dict[str, Any]]]
    schemaVersion: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(SchemaHistoryProvider(), name, {**props, **dict.fromkeys(_OUTPUTS)},
                         pulumi.ResourceOptions.merge(secret, opts))
