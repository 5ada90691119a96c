"""Wires stack settings to the schema resources and exports what application stacks gate on."""

import pulumi

from infra.migrations.plan import load_batches
from infra.program_errors import reported_as_run_errors
from infra.schema import SchemaMigrations
from infra.settings import load_settings

with reported_as_run_errors():
    settings = load_settings()
    batches = load_batches(settings.migrations.sql_dir)
    schema = SchemaMigrations("schema", settings, batches)

pulumi.export("target", settings.database.target)
pulumi.export("schemaVersion", schema.schema_version)
pulumi.export("appliedBatches", schema.applied)
