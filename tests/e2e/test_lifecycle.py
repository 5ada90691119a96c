"""The real Pulumi CLI on this project: up, up again, preview, destroy, protection."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pglast
import pytest
from pulumi import automation as auto

from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack, changes
from tests.pg import connect

pytestmark = pytest.mark.slow

ALL_BATCHES = ["0000_baseline", "0001_add_memory_entities"]
SCHEMA_OBJECTS = 11  # 10 tables and the enum type MessageRole


def ledger(target: Target) -> list[str]:
    with connect(target) as conn:
        if conn.execute("SELECT to_regclass('schema_ledger.batch')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY batch")]


def public_tables(target: Target) -> list[str]:
    with connect(target) as conn:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]


def test_up_applies_every_batch_and_a_second_up_changes_nothing(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack()

    first = stack.stack.up(on_output=lambda _: None)
    assert changes(first.summary.resource_changes) == {"create": 2 + 1 + 2 + SCHEMA_OBJECTS}, \
        "stack, schema component, the schema history (every batch); the objects' component, the schema's checks, one per table and enum type"
    assert ledger(db_target) == ALL_BATCHES
    outputs = stack.outputs()
    assert outputs["schemaVersion"] == "0001_add_memory_entities"
    assert [b["name"] for b in outputs["appliedBatches"]] == ALL_BATCHES
    assert all(len(b["sha256"]) == 64 and b["appliedAt"] for b in outputs["appliedBatches"])
    assert outputs["target"] == f"{db_target.host}:{db_target.port}/{db_target.dbname}"

    second = stack.stack.up(on_output=lambda _: None)
    assert changes(second.summary.resource_changes) == {}


def test_preview_of_a_pending_batch_shows_its_steps_locks_and_target(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack(batches=["0000_baseline"])
    stack.stack.up(on_output=lambda _: None)
    shutil.copytree(ROOT / "sql" / "0001_add_memory_entities", stack.workdir / "sql" / "0001_add_memory_entities")

    preview = stack.stack.preview(on_output=lambda _: None)

    out = preview.stdout
    assert f"batch 0001_add_memory_entities will be applied to {db_target.host}:{db_target.port}/{db_target.dbname}" in out
    assert "ACCESS EXCLUSIVE on existing table Lead" in out
    assert "create index concurrently Lead_customer_id_idx on Lead" in out
    assert "0000_baseline will be applied" not in out
    assert preview.change_summary.get("create") == 7 + 1, "the 7 tables and the enum type the batch creates"
    assert preview.change_summary.get("update") == 1 + 3, "the history (the batch), Lead and Job, which the batch alters, and the schema's checks"
    assert ledger(db_target) == ["0000_baseline"], "a preview runs nothing"

    diff = stack.cli("preview", "--diff", "--show-full-output")
    assert 'ALTER TABLE \\"Lead\\" ADD COLUMN \\"customer_id\\" TEXT;' in diff.stdout, "--diff shows the full SQL"


def test_destroy_rolls_back_every_batch_to_an_empty_schema_and_twice_is_harmless(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)

    stack.stack.destroy(on_output=lambda _: None)
    assert public_tables(db_target) == []
    assert ledger(db_target) == []
    again = stack.stack.destroy(on_output=lambda _: None)
    assert changes(again.summary.resource_changes) == {}


def test_destroy_of_a_protected_stack_is_refused_and_the_data_stays(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack(migrations={"protected": True, "lint": "block"})
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        conn.execute("""INSERT INTO "Customer" ("id", "name") VALUES ('c1', 'Kim')""")

    with pytest.raises(auto.CommandError, match="protect"):
        stack.stack.destroy(on_output=lambda _: None)

    assert ledger(db_target) == ALL_BATCHES
    with connect(db_target) as conn:
        assert conn.execute('SELECT "name" FROM "Customer"').fetchall() == [("Kim",)]


def test_a_live_database_adopts_the_baseline_and_destroy_never_drops_its_tables(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    with connect(db_target) as conn:  # the tables Prisma created long ago, with data
        conn.execute((ROOT / "sql" / "0000_baseline" / "migration.sql").read_text())
        conn.execute("""INSERT INTO "Lead" ("id", "name") VALUES ('lead-1', 'Ann')""")
    stack = make_stack(migrations={"baseline": "adopt"})

    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        adopted = dict(conn.execute("SELECT batch, adopted FROM schema_ledger.batch").fetchall())
    assert adopted == {"0000_baseline": True, "0001_add_memory_entities": False}

    stack.stack.destroy(on_output=lambda _: None)
    assert public_tables(db_target) == ["Audit", "Job", "Lead"], "batch 0001 rolled back, the adopted baseline kept"
    with connect(db_target) as conn:
        assert conn.execute('SELECT "name" FROM "Lead"').fetchall() == [("Ann",)]


def test_after_a_restore_from_an_older_backup_refresh_then_up_applies_the_batch_again(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:  # what restoring a backup taken before batch 0001 looks like
        for statement in pglast.split((ROOT / "sql" / "0001_add_memory_entities" / "rollback.sql").read_text()):
            conn.execute(statement)
        conn.execute("DELETE FROM schema_ledger.batch WHERE batch = '0001_add_memory_entities'")

    preview = stack.stack.preview(on_output=lambda _: None)
    assert "batch 0001_add_memory_entities will be applied" in preview.stdout
    stack.stack.refresh(on_output=lambda _: None)
    stack.stack.up(on_output=lambda _: None)

    assert ledger(db_target) == ALL_BATCHES
    assert "Customer" in public_tables(db_target)
