"""The property bag of one batch inside the schema history, both directions: written by the program from a
batch folder (its files one list item per line, readable in `preview --diff`, its checksums, and the plan and
locks people read), read back by the provider as the engine's Batch."""

from __future__ import annotations

from typing import Any

from infra.migrations.plan import BATCH_FILES, Batch
from infra.migrations.report import lock_lines, step_lines

FILE_PROPS = {"migration.sql": "migrationSql", "validation.sql": "validationSql", "rollback.sql": "rollbackSql"}
DECLARATION_PROPS = {"backfill.toml": "backfillSpec", "gate.toml": "gateSpec"}


def batch_inputs(batch: Batch, *, adopt: bool = False, described: bool = True) -> dict[str, Any]:
    """A batch as inputs; `described` adds the plan and locks (for batches about to run)."""
    bag: dict[str, Any] = {"batch": batch.name, "checksums": batch.checksums,
                           **{FILE_PROPS[f]: batch.text(f).split("\n") for f in BATCH_FILES}}
    if adopt:
        bag["adopt"] = True
    if described:
        bag.update(plan=step_lines(batch), locks=lock_lines(batch))
    for file, prop in DECLARATION_PROPS.items():  # the provider checksums them with the SQL files
        if file in batch.declarations:
            bag[prop] = batch.text(file).split("\n")
    return bag


def batch_from_inputs(bag: dict[str, Any]) -> Batch:
    backfill, gate = (bag.get(prop) for prop in DECLARATION_PROPS.values())
    return Batch(bag["batch"], *(file_text(bag[prop]) for prop in FILE_PROPS.values()),
                 backfill=backfill if backfill is None else file_text(backfill),
                 gate=gate if gate is None else file_text(gate))


def file_text(value: str | list[str]) -> str:
    """A batch file back from its property: a list of lines (or, as first stored, one string)."""
    return value if isinstance(value, str) else "\n".join(value)
