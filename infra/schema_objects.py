"""The schema's tables and enum types as resources, and the drift guard that runs before any batch.

`guard_schema` compares the live schema with the shape recorded after the newest applied batch: a preview
warns about each difference, `up` refuses to run (so no batch is applied on a drifted schema, and nothing is
"repaired"). `SchemaObjects` declares one SchemaTable or SchemaEnum per object that the batches build (read
from their SQL, so a preview lists the tables a pending batch creates) or that the recorded shape holds (the
baseline's live tables), each after the batches, plus one SchemaChecks for the schema as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from .migrations.catalog import Shape
from .migrations.drift import DriftCheck, DriftReport, check_drift, expected_objects, record_unrecorded_shape, without_allowed
from .migrations.objects import ENUM, TABLE, SchemaObject, schema_objects, touched_by
from .migrations.plan import Batch
from .providers.schema_object import SchemaChecks, SchemaEnum, SchemaTable, describe
from .providers.connection_props import connection_inputs, target_of
from .settings import StackSettings


def drift_check(settings: StackSettings, batches: Sequence[Batch]) -> DriftCheck:
    m = settings.migrations
    return DriftCheck(batches=tuple(batches), allowed=m.allowed_drift, statement_timeout_ms=m.statement_timeout_ms)


def guard_schema(settings: StackSettings, batches: Sequence[Batch]) -> DriftReport:
    """Before the batches: in a preview, warn about drift; in `up`, record a missing expected shape (a ledger
    from before shapes were recorded) and refuse to go on while the schema has drifted."""
    target, check = target_of(settings.database), drift_check(settings, batches)
    report = check_drift(target, check)
    if report.unrecorded and not pulumi.runtime.is_dry_run():
        report = record_unrecorded_shape(target, check, settings.migrations.lock_wait_ms)
    for diff in report.deferred:
        pulumi.log.info(f"drift on {diff} is made deliberate by a pending batch that changes it")
    if report.unrecorded and report.clean:
        pulumi.log.info(f"the schema's shape after batch '{report.newest}' is recorded by the next `pulumi up`")
    if not report.clean:
        if not pulumi.runtime.is_dry_run():
            raise report.error()
        pulumi.log.warn(str(report.error()))
    return report


class SchemaObjects(pulumi.ComponentResource):
    """Every table and enum type of the schema as a resource (described, never changed, by Pulumi)."""

    tables: dict[str, SchemaTable]
    enums: dict[str, SchemaEnum]
    described: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, settings: StackSettings, batches: Sequence[Batch], report: DriftReport, *,
                 after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("junkquote:schema:SchemaObjects", name, None, opts)
        connection = connection_inputs(settings.database)
        allowed = settings.migrations.allowed_drift
        child = pulumi.ResourceOptions(parent=self, depends_on=list(after))
        expected = report.expected
        pending = [b for b in batches if b.name in report.pending]
        changing = touched_by(pending, expected.index_tables() if expected else {}) if pending else frozenset()
        recorded = _recorded_after(settings, after, allowed)
        self.tables, self.enums = {}, {}
        start = settings.migrations.roll_back_from
        rolling_back = bool(start and report.newest and report.newest >= start)  # every object is read after the run
        for obj in declared_objects(batches, expected, allowed):
            known = expected is not None and obj.key not in changing and not rolling_back
            described = (describe(without_allowed(expected, allowed), obj.kind, obj.name) if known and expected
                         else recorded.apply(lambda shape, o=obj: describe(shape, o.kind, o.name) if shape else None))
            props = {**connection, "name": obj.name, "batches": list(obj.batches), "expected": described,
                     "allowedDrift": sorted(a for a in allowed if _concerns(a, obj))}
            if obj.kind == TABLE:
                self.tables[obj.name] = SchemaTable(obj.name, props, child)
            else:
                self.enums[obj.name] = SchemaEnum(obj.name, props, child)
        self.checks = SchemaChecks("schema-checks", {
            **connection, "allowedDrift": sorted(allowed),
            "validations": {b.name: b.checksums["validation.sql"] for b in batches}}, child)
        self.described = pulumi.Output.from_input({
            "tables": {n: {"columns": t.columns, "indexes": t.indexes, "constraints": t.constraints} for n, t in self.tables.items()},
            "enums": {n: e.labels for n, e in self.enums.items()},
        })
        self.register_outputs({"schemaObjects": self.described})


def _recorded_after(settings: StackSettings, after: Sequence[pulumi.Resource], allowed: frozenset[str]) -> pulumi.Output[Shape | None]:
    """The shape recorded with the newest batch, read once the batches have run (unknown in a preview of
    pending batches: Pulumi shows the objects they change as to be updated)."""
    target = target_of(settings.database)

    def read(_ids: list[Any]) -> Shape | None:
        _newest, shape = expected_objects(target)
        return without_allowed(shape, allowed) if shape else None

    ids = [r.id for r in after if isinstance(r, pulumi.CustomResource)]
    return pulumi.Output.all(*ids).apply(read)


def declared_objects(batches: Sequence[Batch], expected: Shape | None, allowed: frozenset[str]) -> list[SchemaObject]:
    """The objects the batches build, plus those of the recorded shape that no batch mentions (e.g. an adopted
    baseline's extra tables), less the ones the allow-list names as a whole."""
    indexes = expected.index_tables() if expected else {}
    built = {o.key: o for o in schema_objects(batches, indexes)}
    if expected is not None:
        seen = touched_by(batches, indexes)  # what a batch drops or renames is gone, whatever the old shape says
        for key in [(TABLE, t.name) for t in expected.tables] + [(ENUM, e.name) for e in expected.enums]:
            if key not in seen:
                built.setdefault(key, SchemaObject(key[0], key[1], ()))
    return [o for key, o in sorted(built.items()) if f"{o.kind} {o.name}" not in allowed]


def _concerns(entry: str, obj: SchemaObject) -> bool:
    kind, _, name = entry.partition(" ")
    if obj.kind == ENUM:
        return entry == f"enum {obj.name}"
    return kind in ("column", "index", "constraint") and name.startswith(f"{obj.name}.")
