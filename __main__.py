"""Wires stack settings to the roles, the schema batches and the grants; exports what application stacks gate on."""

import pulumi

from infra.access.stack_access import stack_access
from infra.backup import backup_before_apply
from infra.migrations.plan import load_batches
from infra.program_errors import reported_as_run_errors
from infra.schema import SchemaMigrations
from infra.schema_objects import SchemaObjects, guard_schema
from infra.settings import load_settings

with reported_as_run_errors():
    settings = load_settings()
    # Batches from migrations.rollBackFrom on are rolled back (the ledger keeps their files), not declared.
    batches = load_batches(settings.migrations.sql_dir, before=settings.migrations.roll_back_from)
    access = stack_access(settings)  # nothing for a stack without roles (no pulumi-postgresql resource, no plugin)
    drift = guard_schema(settings, batches)  # refuses `up` on a drifted schema, before any batch runs
    backup = backup_before_apply(settings, batches)  # migrations.backupBeforeApply: pg_dump before a pending batch
    schema = SchemaMigrations("schema", settings, batches, role=access.migrator_role,
                              opts=pulumi.ResourceOptions(depends_on=access.schema_prerequisites))
    objects = SchemaObjects("schema-objects", settings, batches, drift, after=schema.migrations,
                            opts=pulumi.ResourceOptions(parent=schema))
    access_outputs = access.after_schema(schema.migrations, schema.schema_version)  # grants, then their check

pulumi.export("target", settings.database.target)
pulumi.export("schemaVersion", schema.schema_version)
pulumi.export("appliedBatches", schema.applied)
pulumi.export("contextMemoryReady", schema.context_memory_ready)  # backfills applied and validated
pulumi.export("schemaObjects", objects.described)
for name, value in {**access_outputs, **backup}.items():  # roles, accessChecks; preApplyBackup
    pulumi.export(name, value)
