"""Dynamic provider: the schema's tables and enum types as resources, and the schema's checks. Thin over the
drift engine (infra/migrations/drift.py); the batches own the SQL, these resources only describe the result.

- `create`/`update` (after the batches ran) describe the object as recorded in the ledger with the newest
  applied batch: what the batches built.
- `read` (`pulumi refresh`) describes it as the live catalog has it, so drift shows as a diff of the
  affected resource, and a dropped table or type makes the resource gone.
- `delete` changes nothing in the database: dropping an object is a batch's job.

Like the migration provider it keeps nothing on `self` (it is pickled into state); everything read needs is
in the resource's properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.migrations.catalog import Shape
from infra.migrations.drift import DriftCheck, checks_failing, expected_objects, live_objects, unexpected_objects, without_allowed
from infra.migrations.errors import ObjectNotBuilt
from infra.migrations.objects import ENUM, TABLE
from infra.migrations.plan import Batch
from infra.migrations.target import Target
from infra.providers.inputs import target_from_inputs
from infra.providers.reporting import engine_errors

# The inputs: a change to any of them updates the resource (its description is read again).
_INPUTS = ("kind", "name", "batches", "allowedDrift", "target", "connection")
_TABLE_OUTPUTS = ("columns", "indexes", "constraints")
_ENUM_OUTPUTS = ("labels",)


@dataclass(frozen=True)
class ObjectProps:
    """The property bag of a SchemaTable or SchemaEnum, typed."""

    kind: str
    name: str
    target: Target
    allowed: frozenset[str]

    @classmethod
    def parse(cls, props: dict[str, Any]) -> ObjectProps:
        return cls(props["kind"], props["name"], target_from_inputs(props), frozenset(props.get("allowedDrift") or ()))


def describe(shape: Shape, kind: str, name: str) -> dict[str, Any] | None:
    """The outputs of one object of a shape; None if the shape has no such object."""
    if kind == ENUM:
        enum = shape.enum(name)
        return None if enum is None else {"labels": list(enum.labels)}
    table = shape.table(name)
    return None if table is None else table.to_json()


def _changed(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    return [k for k in _INPUTS if olds.get(k) != news.get(k)]


class SchemaObjectProvider(ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = _changed(olds, news)
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k in ("kind", "name")],
                          stables=["kind", "name"], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = ObjectProps.parse(props)
        with engine_errors():
            newest, expected = expected_objects(p.target)
            shape = expected if expected is not None else live_objects(p.target)
            outs = describe(without_allowed(shape, p.allowed), p.kind, p.name)
            if outs is None:
                raise ObjectNotBuilt(p.kind, p.name, shape.schema, newest or "none")
        return CreateResult(id_=f"{p.kind}:{p.name}", outs={**props, **outs})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        p = ObjectProps.parse(props)
        with engine_errors():
            outs = describe(without_allowed(live_objects(p.target), p.allowed), p.kind, p.name)
        if outs is None:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, **outs})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Forget the resource; the object itself stays (a batch drops objects, never Pulumi)."""


class SchemaTable(Resource, module="junkquote", name="SchemaTable"):
    """A table of the application's schema as the batches built it: columns, indexes, constraints."""

    columns: pulumi.Output[list[dict[str, Any]]]
    indexes: pulumi.Output[dict[str, Any]]
    constraints: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(SchemaObjectProvider(), name, {**props, "kind": TABLE, **dict.fromkeys(_TABLE_OUTPUTS)},
                         pulumi.ResourceOptions.merge(secret, opts))


class SchemaEnum(Resource, module="junkquote", name="SchemaEnum"):
    """An enum type of the application's schema as the batches built it: its labels in order."""

    labels: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(SchemaObjectProvider(), name, {**props, "kind": ENUM, **dict.fromkeys(_ENUM_OUTPUTS)},
                         pulumi.ResourceOptions.merge(secret, opts))


# -- the schema as a whole ----------------------------------------------------------------------------
def survey(props: dict[str, Any]) -> dict[str, Any]:
    """Tables and enum types that no batch built (and the allow-list does not name), and the applied
    batches' validation checks that fail, as read now."""
    target = target_from_inputs(props)
    allowed = frozenset(props.get("allowedDrift") or ())
    batches = tuple(Batch(name, "", "\n".join(lines), "") for name, lines in sorted((props.get("validationSql") or {}).items()))
    _newest, expected = expected_objects(target)
    live = live_objects(target)
    unexpected = unexpected_objects(expected, live, allowed) if expected is not None else []
    failed = checks_failing(target, DriftCheck(batches=batches))
    return {"unexpectedObjects": unexpected, "failedChecks": [f"{c.batch}/{c.check}" for c in failed]}


class SchemaChecksProvider(ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("validationSql", "allowedDrift", "target", "connection")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys), replaces=[], stables=[],
                          delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with engine_errors():
            return CreateResult(id_=f"checks@{props['connection']['dbname']}", outs={**props, **survey(props)})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with engine_errors():
            return ReadResult(id_, {**props, **survey(props)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the checks only read."""


class SchemaChecks(Resource, module="junkquote", name="SchemaChecks"):
    """The schema as a whole: objects no batch built, and the applied batches' validation checks that fail
    (recorded by `up`; `refresh` shows a change in either as drift)."""

    unexpectedObjects: pulumi.Output[list[str]]
    failedChecks: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(SchemaChecksProvider(), name, {**props, "unexpectedObjects": None, "failedChecks": None},
                         pulumi.ResourceOptions.merge(secret, opts))
