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
from .migrations.drift import DriftCheck, DriftReport, check_drift, record_unrecorded_shape
from .migrations.objects import ENUM, TABLE, SchemaObject, schema_objects
from .migrations.plan import Batch
from .providers.schema_object import SchemaChecks, SchemaEnum, SchemaTable
from .schema import database_inputs, engine_target
from .settings import StackSettings


def drift_check(settings: StackSettings, batches: Sequence[Batch]) -> DriftCheck:
    m = settings.migrations
    return DriftCheck(batches=tuple(batches), allowed=m.allowed_drift, statement_timeout_ms=m.statement_timeout_ms)


def guard_schema(settings: StackSettings, batches: Sequence[Batch]) -> DriftReport:
    """Before the batches: in a preview, warn about drift; in `up`, record a missing expected shape (a ledger
    from before shapes were recorded) and refuse to go on while the schema has drifted."""
    target, check = engine_target(settings.database), drift_check(settings, batches)
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

    def __init__(self, name: str, settings: StackSettings, batches: Sequence[Batch], expected: Shape | None, *,
                 after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("junkquote:schema:SchemaObjects", name, None, opts)
        connection = database_inputs(settings.database)
        allowed = settings.migrations.allowed_drift
        child = pulumi.ResourceOptions(parent=self, depends_on=list(after))
        self.tables, self.enums = {}, {}
        for obj in declared_objects(batches, expected, allowed):
            props = {**connection, "name": obj.name, "batches": list(obj.batches),
                     "allowedDrift": sorted(a for a in allowed if _concerns(a, obj))}
            if obj.kind == TABLE:
                self.tables[obj.name] = SchemaTable(obj.name, props, child)
            else:
                self.enums[obj.name] = SchemaEnum(obj.name, props, child)
        self.checks = SchemaChecks("schema-checks", {
            **connection, "allowedDrift": sorted(allowed),
            "validationSql": {b.name: b.validation.split("\n") for b in batches}}, child)
        self.described = pulumi.Output.from_input({
            "tables": {n: {"columns": t.columns, "indexes": t.indexes, "constraints": t.constraints} for n, t in self.tables.items()},
            "enums": {n: e.labels for n, e in self.enums.items()},
        })
        self.register_outputs({"schemaObjects": self.described})


def declared_objects(batches: Sequence[Batch], expected: Shape | None, allowed: frozenset[str]) -> list[SchemaObject]:
    """The objects the batches build, plus those only the recorded shape has (e.g. an adopted baseline's),
    less the ones the allow-list names as a whole."""
    built = {o.key: o for o in schema_objects(batches, expected.index_tables() if expected else {})}
    if expected is not None:
        for key in [(TABLE, t.name) for t in expected.tables] + [(ENUM, e.name) for e in expected.enums]:
            built.setdefault(key, SchemaObject(key[0], key[1], ()))
    return [o for key, o in sorted(built.items()) if f"{o.kind} {o.name}" not in allowed]


def _concerns(entry: str, obj: SchemaObject) -> bool:
    kind, _, name = entry.partition(" ")
    if obj.kind == ENUM:
        return entry == f"enum {obj.name}"
    return kind in ("column", "index", "constraint") and name.startswith(f"{obj.name}.")
