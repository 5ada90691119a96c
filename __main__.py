"""Wires stack settings to the roles, the schema batches and the grants; exports what application stacks gate on."""

import pulumi

from infra.migrations.plan import load_batches
from infra.program_errors import reported_as_run_errors
from infra.schema import SchemaMigrations
from infra.schema_objects import SchemaObjects, guard_schema
from infra.settings import load_settings

with reported_as_run_errors():
    settings = load_settings()
    # Batches from migrations.rollBackFrom on are rolled back (the ledger keeps their files), not declared.
    batches = load_batches(settings.migrations.sql_dir, before=settings.migrations.roll_back_from)

access = None
if settings.access:  # a stack without roles creates no pulumi-postgresql resource (no plugin needed)
    from infra.access.component import DatabaseAccess
    from infra.access.verification import verify_access

    access = DatabaseAccess("access", settings.access, settings.database,
                            opts=pulumi.ResourceOptions(protect=settings.migrations.protected))

with reported_as_run_errors():
    drift = guard_schema(settings, batches)  # refuses `up` on a drifted schema, before any batch runs
    schema = SchemaMigrations("schema", settings, batches, role=access.migrator_role if access else None,
                              opts=pulumi.ResourceOptions(depends_on=access.schema_prerequisites if access else None))

objects = SchemaObjects("schema-objects", settings, batches, drift, after=schema.migrations,
                        opts=pulumi.ResourceOptions(parent=schema))

if access:
    access.grant_on_objects(schema.migrations)
    verification = verify_access(access, settings.access, settings.database, schema.schema_version)
    pulumi.export("roles", access.role_names)
    pulumi.export("accessChecks", verification.checks)

pulumi.export("target", settings.database.target)
pulumi.export("schemaVersion", schema.schema_version)
pulumi.export("appliedBatches", schema.applied)
pulumi.export("contextMemoryReady", schema.context_memory_ready)  # backfills applied and validated
pulumi.export("schemaObjects", objects.described)
