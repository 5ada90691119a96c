"""Drift through the real Pulumi CLI: hand edits show in refresh, block up and fail `make drift`; restoring the
objects, or a batch that makes the same change deliberately, makes the stack clean again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from infra.migrations.plan import load_batch
from infra.migrations.steps import split_statements
from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack, changes
from tests.pg import connect

pytestmark = pytest.mark.slow

HAND_EDITS = ['DROP TABLE "MemoryNote"',
              'ALTER TABLE "Lead" ADD COLUMN notes text',
              "ALTER TYPE \"MessageRole\" ADD VALUE 'bot'"]
RESTORE_ENUM = ['ALTER TYPE "MessageRole" RENAME TO "MessageRole_drifted"',
                "CREATE TYPE \"MessageRole\" AS ENUM ('user', 'assistant', 'system', 'tool')",
                'ALTER TABLE "Message" ALTER COLUMN role TYPE "MessageRole" USING role::text::"MessageRole"',
                'DROP TYPE "MessageRole_drifted"']
DELIBERATE = """ALTER TABLE "Lead" ADD COLUMN IF NOT EXISTS notes TEXT;
ALTER TYPE "MessageRole" ADD VALUE IF NOT EXISTS 'bot';
DROP TABLE IF EXISTS "MemoryNote";
"""


def edit(target: Target, *statements: str) -> None:
    with connect(target) as conn:
        for statement in statements:
            conn.execute(statement)


def memory_note_statements() -> list[str]:
    """The statements of batch 0001 that build "MemoryNote" (to restore it by hand as the batch built it)."""
    batch = load_batch(ROOT / "sql" / "0001_add_memory_entities")
    return [text for _node, text, _line in split_statements(batch, "migration.sql")
            if text.startswith(("CREATE TABLE \"MemoryNote\"", "CREATE INDEX \"MemoryNote_"))]


def refreshed(stdout: str, id_: str) -> list[str]:
    """The lines a refresh printed for the resource with this id: its header line first."""
    lines = [line.strip() for line in stdout.splitlines()]
    at = lines.index(f"[id={id_}]")
    end = next((i for i in range(at + 1, len(lines))
                if ("pulumi-python:dynamic/" in lines[i] and not lines[i].startswith("[urn=")) or lines[i] == "Resources:"),
               len(lines))
    return lines[at - 1:end]


def make_drift(stack: ProjectStack) -> subprocess.CompletedProcess[str]:
    """`make drift STACK=…` in the project copy, with the checkout's Makefile, scripts and virtualenv."""
    for name in ("Makefile", "scripts", "tools", ".venv", "requirements.txt"):
        link = stack.workdir / name
        if not link.exists():
            os.symlink(ROOT / name, link)
    return subprocess.run(["make", "--no-print-directory", "drift", f"STACK={stack.stack.name}"], cwd=stack.workdir,
                          env=stack.env, capture_output=True, text=True)


@pytest.fixture
def applied(make_stack: Callable[..., ProjectStack]) -> ProjectStack:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)
    return stack


def test_every_table_and_the_enum_are_resources_under_the_schema_and_a_fresh_stack_is_clean(applied: ProjectStack) -> None:
    urns = applied.cli("stack", "--show-urns", check=True).stdout

    for table in ("Lead", "Job", "Audit", "Customer", "MemoryNote", "Message"):
        assert f"junkquote:SchemaTable::{table}" in urns
    assert "junkquote:SchemaEnum::MessageRole" in urns
    lead = applied.outputs()["schemaObjects"]["tables"]["Lead"]
    assert "customer_id" in [c["name"] for c in lead["columns"]], "Lead as batch 0001 left it"
    assert make_drift(applied).returncode == 0
    assert changes(applied.stack.up(on_output=lambda _: None).summary.resource_changes) == {}


def test_hand_edits_show_in_refresh_block_up_and_fail_make_drift_until_the_objects_are_restored(
        applied: ProjectStack, db_target: Target) -> None:
    edit(db_target, *HAND_EDITS)
    applied.env.pop("PULUMI_SKIP_CONFIRMATIONS", None)  # `make test` exports it; it means --yes, which a preview refuses

    refresh = applied.cli("refresh", "--preview-only", "--diff")
    assert refresh.returncode == 0, refresh.stderr
    assert refreshed(refresh.stdout, "table:MemoryNote")[0].endswith("SchemaTable: (delete)")
    lead = refreshed(refresh.stdout, "table:Lead")
    assert lead[0].endswith("SchemaTable: (update)") and '+ name    : "notes"' in "\n".join(lead)
    message_role = refreshed(refresh.stdout, "enum:MessageRole")
    assert message_role[0].endswith("SchemaEnum: (update)") and '+ [4]: "bot"' in "\n".join(message_role)

    preview = applied.cli("preview", "--refresh")
    assert preview.returncode == 0, preview.stderr
    assert 'column "Lead".notes: extra (no batch built it)' in preview.stdout, "the preview warns about the drift"
    steps = " | ".join(" ".join(line.split()) for line in preview.stdout.splitlines())
    assert "~ pulumi-python:dynamic/junkquote:SchemaTable Lead update" in steps
    assert "~ pulumi-python:dynamic/junkquote:SchemaEnum MessageRole update" in steps
    assert "+ pulumi-python:dynamic/junkquote:SchemaTable MemoryNote create" in steps, "refresh found it gone"

    up = applied.cli("up", "--yes")
    assert up.returncode != 0
    assert 'table "MemoryNote": missing (the batches built it)' in up.stdout
    assert 'column "Lead".notes: extra (no batch built it)' in up.stdout
    assert "restore the objects by hand, or write a batch that makes the change deliberately" in up.stdout
    drift = make_drift(applied)
    assert drift.returncode != 0, drift.stdout

    edit(db_target, 'ALTER TABLE "Lead" DROP COLUMN notes', *RESTORE_ENUM, *memory_note_statements())

    assert make_drift(applied).returncode == 0
    assert changes(applied.stack.up(on_output=lambda _: None).summary.resource_changes) == {}


def test_a_batch_that_makes_the_hand_edits_deliberately_applies_and_leaves_the_stack_clean(
        applied: ProjectStack, db_target: Target) -> None:
    edit(db_target, *HAND_EDITS)
    applied.add_batch("0002_notes_and_bot", DELIBERATE)

    result = applied.stack.up(on_output=lambda _: None)

    assert changes(result.summary.resource_changes).get("delete") == 1, "MemoryNote leaves the stack, not the database"
    lead = applied.outputs()["schemaObjects"]["tables"]["Lead"]
    assert "notes" in [c["name"] for c in lead["columns"]]
    assert applied.outputs()["schemaObjects"]["enums"]["MessageRole"][-1] == "bot"
    assert make_drift(applied).returncode == 0


def test_an_index_on_the_allow_list_is_not_drift(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack(migrations={"allowedDrift": ["index Lead.lead_by_hand_idx"]})
    stack.stack.up(on_output=lambda _: None)
    edit(db_target, 'CREATE INDEX lead_by_hand_idx ON "Lead" (name)')

    assert make_drift(stack).returncode == 0
    edit(db_target, 'CREATE INDEX lead_other_idx ON "Lead" (name)')
    assert make_drift(stack).returncode != 0
