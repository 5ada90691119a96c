"""Dynamic provider: one `Migration` resource per SQL batch. A thin adapter over the migration engine.

The provider object is pickled into the stack state and `pulumi destroy` runs it from there, so it keeps
nothing on `self`: every method parses its property bag into `MigrationProps` and calls the engine, and
everything `delete` needs (connection, password as a secret, rollback SQL) is in the resource's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.migrations.errors import BatchChanged, DestroyRefused
from infra.migrations.plan import BATCH_FILES, Batch
from infra.migrations.runner import ApplyResult, RunSettings, adopt_batch, apply_batch, rollback_batch
from infra.migrations.state import applied_batches
from infra.migrations.syntax import statements_sha256
from infra.migrations.target import Target
from infra.providers.backfill_props import backfill_run, backfill_spec, gate_spec
from infra.providers.engine_watch import engine_gone, exit_when_orphaned
from infra.providers.connection_props import target_from_inputs
from infra.providers.protection import protected_by_stack_file, protected_in_config
from infra.providers.reporting import engine_errors
from infra.providers.run_props import run_from_inputs

_OUTPUTS = ("appliedAt", "durationMs", "checks", "adopted")
# Inputs that only describe the SQL for people (derived from it, whose checksums are compared): a change in
# their wording is not a change to the batch.
_DESCRIPTIVE = ("plan", "locks", "backfill")
_FILE_PROPS = {"migration.sql": "migrationSql", "validation.sql": "validationSql", "rollback.sql": "rollbackSql"}


@dataclass(frozen=True)
class MigrationProps:
    """The property bag of a Migration resource, typed."""

    batch: Batch
    target: Target
    run: RunSettings
    adopt: bool
    protected: bool

    @classmethod
    def parse(cls, props: dict[str, Any]) -> MigrationProps:
        batch = Batch(props["batch"], *(file_text(props[prop]) for prop in _FILE_PROPS.values()),
                      backfill=backfill_spec(props), gate=gate_spec(props))
        target = target_from_inputs(props)
        settings = run_from_inputs(props["settings"], backfill=backfill_run(props), stop_reason=engine_gone)
        return cls(batch, target, settings, adopt=bool(props.get("adopt")), protected=bool(props.get("protected")))


def _outs(props: dict[str, Any], result: ApplyResult) -> dict[str, Any]:
    return {
        **props,
        "checksums": result.checksums,
        "appliedAt": result.applied_at,
        "durationMs": result.duration_ms,
        "adopted": result.adopted,
        "checks": [c.name for c in result.checks],
    }


class MigrationProvider(ResourceProvider):
    # Whether the config the engine hands this provider protects the stack (set by configure() in the provider's
    # own process; with `pulumi destroy --run-program` it is the config as it is now).
    protected_by_config: bool = False

    def configure(self, req: ConfigureRequest) -> None:
        self.protected_by_config = protected_in_config(req.config.get("migrations"))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """An applied batch changes only by a correction (validation.sql, rollback.sql, or migration.sql with
        the same statements), by its settings or connection, or while its rollback is unfinished."""
        old_sha = (olds.get("checksums") or {}).get("migration.sql")
        new_sha = (news.get("checksums") or {}).get("migration.sql")
        if old_sha and new_sha and old_sha != new_sha and not _same_statements(olds, news):
            with engine_errors():
                raise BatchChanged(news["batch"], "migration.sql", old_sha, new_sha)
        changed = [k for k in news if k not in (*_OUTPUTS, *_DESCRIPTIVE) and olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=["batch"], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = MigrationProps.parse(props)
        with engine_errors(), exit_when_orphaned():
            result = (adopt_batch if p.adopt else apply_batch)(p.target, p.batch, p.run)
        return CreateResult(id_=p.batch.name, outs=_outs(props, result))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Corrected files recorded, or settings or connection changed: the batch is already applied (or
        applied now, if the ledger lost it)."""
        outs = self.create(news).outs
        if not outs["checks"]:  # already applied: keep the checks recorded when it was validated
            outs["checks"] = olds.get("checks") or []
        return UpdateResult(outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        p = MigrationProps.parse(props)
        with engine_errors():
            entry = applied_batches(p.target).get(p.batch.name)
        if entry is None:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, "appliedAt": entry.applied_at.isoformat(), "adopted": entry.adopted})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        p = MigrationProps.parse(props)
        with engine_errors(), exit_when_orphaned():
            if p.protected or self.protected_by_config or protected_by_stack_file(p.run.stack):
                raise DestroyRefused(p.batch.name, p.run.stack)
            rollback_batch(p.target, p.batch, p.run)


class Migration(Resource, module="junkquote", name="Migration"):
    """A SQL batch applied to the stack's database, validated, and rolled back on destroy."""

    checksums: pulumi.Output[dict[str, str]]
    appliedAt: pulumi.Output[str]
    durationMs: pulumi.Output[int]
    checks: pulumi.Output[list[str]]
    adopted: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        outputs = dict.fromkeys(_OUTPUTS)
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(MigrationProvider(), name, {**props, **outputs}, pulumi.ResourceOptions.merge(secret, opts))


def batch_props(batch: Batch) -> dict[str, Any]:
    """The inputs that carry a batch's SQL (one list item per line, readable in `preview --diff`) and checksums."""
    return {"batch": batch.name, "checksums": batch.checksums,
            **{_FILE_PROPS[f]: batch.text(f).split("\n") for f in BATCH_FILES}}


def _same_statements(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """migration.sql edited in comments or layout only: the same statements as applied."""
    old = statements_sha256(file_text(olds.get("migrationSql") or ""))
    return old is not None and old == statements_sha256(file_text(news.get("migrationSql") or ""))


def file_text(value: str | list[str]) -> str:
    """A batch file back from its property: a list of lines (or, as first stored, one string)."""
    return value if isinstance(value, str) else "\n".join(value)
