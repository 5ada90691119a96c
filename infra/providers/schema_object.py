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

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.migrations.catalog import Shape
from infra.migrations.drift import DriftCheck, checks_failing, expected_objects, live_objects, unexpected_objects, without_allowed
from infra.migrations.errors import ObjectNotBuilt
from infra.migrations.objects import ENUM, TABLE
from infra.migrations.plan import Batch
from infra.migrations.state import applied_batches
from infra.migrations.target import Target
from infra.providers.connection_props import target_from_inputs
from infra.providers.reporting import engine_errors

# The inputs besides `expected`: a change to any of them updates the resource.
_INPUTS = ("kind", "name", "batches", "allowedDrift", "target", "connection")
_DESCRIPTION = {TABLE: ("columns", "indexes", "constraints"), ENUM: ("labels",)}


@dataclass(frozen=True)
class ObjectProps:
    """The property bag of a SchemaTable or SchemaEnum, typed. `expected` is the object as recorded in the
    ledger after the newest batch (None if that shape lacks it)."""

    kind: str
    name: str
    target: Target
    allowed: frozenset[str]
    expected: dict[str, Any] | None

    @classmethod
    def parse(cls, props: dict[str, Any]) -> ObjectProps:
        return cls(props["kind"], props["name"], target_from_inputs(props), frozenset(props.get("allowedDrift") or ()),
                   props.get("expected"))


def describe(shape: Shape, kind: str, name: str) -> dict[str, Any] | None:
    """The description (outputs) of one object of a shape; None if the shape has no such object."""
    if kind == ENUM:
        enum = shape.enum(name)
        return None if enum is None else {"labels": list(enum.labels)}
    table = shape.table(name)
    return None if table is None else table.to_json()


def drifted(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """Described properties of olds (state, or what a refresh read) that differ from the expected ones."""
    described = _DESCRIPTION.get(news.get("kind", ""), ())
    expected = news.get("expected")
    if not isinstance(expected, dict):  # unknown in a preview: a pending batch changes the object
        return list(described)
    return [k for k in described if olds.get(k) != expected.get(k)]


class SchemaObjectProvider(ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """In `up`: the batches changed the object (or an input changed). In `refresh` (olds: what was read):
        the live object differs from what the batches built, i.e. drift."""
        changed = [k for k in _INPUTS if olds.get(k) != news.get(k)] + drifted(olds, news)
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k in ("kind", "name")],
                          stables=["kind", "name"], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = ObjectProps.parse(props)
        if p.expected is None:
            with engine_errors():
                newest, shape = expected_objects(p.target)
                raise ObjectNotBuilt(p.kind, p.name, shape.schema if shape else "?", newest or "none")
        return CreateResult(id_=f"{p.kind}:{p.name}", outs={**props, **p.expected})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        p = ObjectProps.parse(props)
        with engine_errors():
            outs = describe(without_allowed(catalog_as_read(p.target), p.allowed), p.kind, p.name)
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
        super().__init__(SchemaObjectProvider(), name, {**props, "kind": TABLE, **dict.fromkeys(_DESCRIPTION[TABLE])},
                         pulumi.ResourceOptions.merge(secret, opts))


class SchemaEnum(Resource, module="junkquote", name="SchemaEnum"):
    """An enum type of the application's schema as the batches built it: its labels in order."""

    labels: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(SchemaObjectProvider(), name, {**props, "kind": ENUM, **dict.fromkeys(_DESCRIPTION[ENUM])},
                         pulumi.ResourceOptions.merge(secret, opts))


# One provider process serves one Pulumi command, and a `refresh` reads every object: the live catalog is read
# once for all of them (the first read to need it), then shared. Only reads use it; create and update, which
# run after the batches, read afresh.
_CATALOG: dict[tuple[str, int, str, str], Shape] = {}
_CATALOG_LOCK = threading.Lock()


def catalog_as_read(target: Target) -> Shape:
    """The live catalog as this process's refresh reads it (read once per database)."""
    key = (target.host, target.port, target.dbname, target.user)
    with _CATALOG_LOCK:
        if key not in _CATALOG:
            _CATALOG[key] = live_objects(target)
        return _CATALOG[key]


# -- the schema as a whole ----------------------------------------------------------------------------
def survey(props: dict[str, Any], live: Callable[[Target], Shape] = live_objects) -> dict[str, Any]:
    """Tables and enum types that no batch built (and the allow-list does not name), and the applied
    batches' validation checks that fail, as read now."""
    target = target_from_inputs(props)
    allowed = frozenset(props.get("allowedDrift") or ())
    batches = tuple(Batch(name, "", e.validation_sql, "") for name, e in sorted(applied_batches(target).items())
                    if e.validation_sql is not None)
    _newest, expected = expected_objects(target)
    found = live(target)
    unexpected = unexpected_objects(expected, found, allowed) if expected is not None else []
    failed = checks_failing(target, DriftCheck(batches=batches))
    return {"unexpectedObjects": unexpected, "failedChecks": [f"{c.batch}/{c.check}" for c in failed]}


class SchemaChecksProvider(ResourceProvider):
    _INPUTS = ("validations", "allowedDrift", "target", "connection")

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """In `refresh` (olds: what was read): an object no batch built, or a check failing that did not fail
        when `up` last ran the checks."""
        new_failures = set(olds.get("failedChecks") or ()) - set(olds.get("acceptedFailures") or ())
        changes = any(olds.get(k) != news.get(k) for k in self._INPUTS) or bool(olds.get("unexpectedObjects")) or bool(new_failures)
        return DiffResult(changes=changes, replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with engine_errors():
            found = survey(props)
        return CreateResult(id_=f"checks@{props['connection']['dbname']}",
                            outs={**props, **found, "acceptedFailures": found["failedChecks"]})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with engine_errors():
            return ReadResult(id_, {**props, **survey(props, catalog_as_read)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the checks only read."""


class SchemaChecks(Resource, module="junkquote", name="SchemaChecks"):
    """The schema as a whole: objects no batch built, and the applied batches' validation checks that fail.
    A check that already fails when `up` runs them (a later batch deliberately changed what an earlier batch
    checks) is accepted; `refresh` reports any object no batch built and any newly failing check."""

    unexpectedObjects: pulumi.Output[list[str]]
    failedChecks: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        outputs = dict.fromkeys(("unexpectedObjects", "failedChecks", "acceptedFailures"))
        super().__init__(SchemaChecksProvider(), name, {**props, **outputs},
                         pulumi.ResourceOptions.merge(secret, opts))
