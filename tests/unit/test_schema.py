"""The schema component declares one Migration per batch, in order, with what destroy will need."""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra.migrations.plan import load_batches
from infra.schema import SchemaMigrations
from infra.settings import DatabaseSettings, StackSettings, parse_migrations
from tests.unit.mocks import RecordingMocks

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def stack_settings(**migrations: object) -> StackSettings:
    db = DatabaseSettings(host="db.internal", port=5432, name="junkquote", user="admin", sslmode="require", password="pw-unit-secret")
    return StackSettings(stack="unit", database=db, migrations=parse_migrations(dict(migrations)))


@pulumi.runtime.test
def test_one_migration_per_batch_each_depending_on_the_one_before(mocks: RecordingMocks):
    batches = load_batches(SQL_DIR)
    schema = SchemaMigrations("schema", stack_settings(), batches)

    def check(ids: list[str]) -> None:
        migrations = mocks.of_type(":Migration")
        assert [m.name for m in migrations] == [b.name for b in batches]
        assert ids == [b.name + "-id" for b in batches]

    return pulumi.Output.all(*[m.id for m in schema.migrations]).apply(check)


@pulumi.runtime.test
def test_migration_inputs_carry_sql_checksums_target_and_a_secret_password(mocks: RecordingMocks):
    batches = load_batches(SQL_DIR)
    schema = SchemaMigrations("schema", stack_settings(lockTimeout="2s"), batches)
    first = schema.migrations[0]

    def check(_: object) -> None:
        inputs = mocks.of_type(":Migration")[0].inputs
        assert inputs["batch"] == batches[0].name
        assert inputs["checksums"] == batches[0].checksums
        assert "\n".join(inputs["rollbackSql"]) == batches[0].rollback, "destroy runs the rollback stored in state"
        assert inputs["target"] == "db.internal:5432/junkquote"
        assert inputs["connection"] == {"host": "db.internal", "port": 5432, "dbname": "junkquote", "user": "admin", "sslmode": "require"}
        assert inputs["settings"]["lockTimeoutMs"] == 2000
        assert inputs["plan"] and inputs["plan"][0].startswith("step  1")

    return first.id.apply(check)


@pulumi.runtime.test
def test_the_database_password_reaches_each_migration_as_a_secret(mocks: RecordingMocks):
    schema = SchemaMigrations("schema", stack_settings(), load_batches(SQL_DIR))
    password = schema.migrations[0].password  # type: ignore[attr-defined]

    def check(is_secret: bool) -> None:
        assert is_secret, "the password output must stay secret in state"

    return pulumi.Output.from_input(password.is_secret()).apply(check)


@pulumi.runtime.test
def test_baseline_is_adopted_only_when_the_stack_says_so(mocks: RecordingMocks):
    batches = load_batches(SQL_DIR)
    schema = SchemaMigrations("schema", stack_settings(baseline="adopt"), batches)

    def check(_: object) -> None:
        adopt = {m.name: m.inputs["adopt"] for m in mocks.of_type(":Migration")}
        assert adopt == {b.name: b.number == 0 for b in batches}

    return schema.migrations[-1].id.apply(check)
