"""The edges of a batch's life through the real Pulumi CLI: a folder that vanished, a rollback that stopped,
corrected files, protection set just before destroy, a preview of an adopted baseline, errors printed once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest
from pulumi import automation as auto

from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack, changes
from tests.pg import connect

pytestmark = pytest.mark.slow

BATCH1 = "0001_add_memory_entities"
NEW_TABLES = {"Customer", "CustomerAddress", "Conversation", "Message", "MemoryNote", "JobItem", "JobEvent"}


def ledger(target: Target) -> list[str]:
    with connect(target) as conn:
        return [r[0] for r in conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY batch")]


def public_tables(target: Target) -> set[str]:
    with connect(target) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def make(stack: ProjectStack, *args: str) -> subprocess.CompletedProcess[str]:
    """A target of the project's Makefile, run in the stack's project copy with the stack's backend."""
    for name in ("Makefile", "requirements.txt"):
        shutil.copy2(ROOT / name, stack.workdir / name)
    shutil.copytree(ROOT / "scripts", stack.workdir / "scripts", dirs_exist_ok=True)
    (stack.workdir / "tools" / "pulumi").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "tools" / "pulumi" / "go.mod", stack.workdir / "tools" / "pulumi" / "go.mod")
    return subprocess.run(["make", "--no-print-directory", f"VENV={ROOT / '.venv'}", f"STACK={stack.stack.name}", *args],
                          cwd=stack.workdir, env=stack.env, capture_output=True, text=True)


@pytest.fixture
def applied(make_stack: Callable[..., ProjectStack]) -> ProjectStack:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)
    return stack


# -- a folder that vanished ----------------------------------------------------------------------------

def test_a_missing_batch_folder_stops_preview_and_up_and_rolls_nothing_back(applied: ProjectStack, db_target: Target) -> None:
    with connect(db_target) as conn:
        conn.execute("""INSERT INTO "Customer" ("id", "name") VALUES ('c1', 'Kim')""")
    shutil.rmtree(applied.workdir / "sql" / BATCH1)  # an older branch checked out

    for command in (("preview",), ("up", "--yes")):
        result = applied.cli(*command)
        assert result.returncode != 0
        assert (f"stack '{applied.stack.name}' has applied '{BATCH1}' but {applied.workdir / 'sql'} has no folder for it"
                in output_of(result))
        assert f"`make rollback STACK={applied.stack.name} BATCH={BATCH1}`" in output_of(result)

    assert ledger(db_target) == ["0000_baseline", BATCH1]
    with connect(db_target) as conn:
        assert conn.execute('SELECT "name" FROM "Customer"').fetchall() == [("Kim",)]


def test_make_rollback_rolls_back_a_batch_on_purpose_even_when_its_folder_is_gone(applied: ProjectStack, db_target: Target) -> None:
    shutil.rmtree(applied.workdir / "sql" / BATCH1)

    result = make(applied, "rollback", f"BATCH={BATCH1}")

    assert result.returncode == 0, output_of(result)
    assert ledger(db_target) == ["0000_baseline"]
    assert public_tables(db_target) == {"Lead", "Job", "Audit"}
    again = applied.stack.up(on_output=lambda _: None)
    assert changes(again.summary.resource_changes) == {}, "the checkout and the stack agree again"
    assert ledger(db_target) == ["0000_baseline"], "nothing was applied again"


def test_a_batch_rolled_back_on_purpose_stays_rolled_back_until_the_setting_is_removed(applied: ProjectStack, db_target: Target) -> None:
    result = make(applied, "rollback", f"BATCH={BATCH1}")
    assert result.returncode == 0, output_of(result)
    assert f"{BATCH1} and later batches stay rolled back while junkquote-db:migrations.rollBackFrom is set" in output_of(result)

    assert changes(applied.stack.up(on_output=lambda _: None).summary.resource_changes) == {}
    assert ledger(db_target) == ["0000_baseline"], "the folder is there, and still nothing is applied again"

    applied.cli("config", "rm", "--path", "junkquote-db:migrations.rollBackFrom", check=True)
    applied.stack.up(on_output=lambda _: None)
    assert ledger(db_target) == ["0000_baseline", BATCH1]
    assert NEW_TABLES <= public_tables(db_target)


# -- protection set just before destroy ----------------------------------------------------------------

def test_protection_set_just_before_make_destroy_holds(applied: ProjectStack, db_target: Target) -> None:
    applied.cli("config", "set", "--path", "junkquote-db:migrations.protected", "true", check=True)

    result = make(applied, "destroy")

    assert result.returncode != 0
    assert "protect" in output_of(result)
    assert ledger(db_target) == ["0000_baseline", BATCH1]
    assert NEW_TABLES <= public_tables(db_target)


def test_protection_set_just_before_a_plain_pulumi_destroy_holds(applied: ProjectStack, db_target: Target) -> None:
    applied.cli("config", "set", "--path", "junkquote-db:migrations.protected", "true", check=True)

    result = applied.cli("destroy", "--yes")

    assert result.returncode != 0
    assert f"refusing to roll back batch '{BATCH1}': stack '{applied.stack.name}' is protected" in output_of(result)
    assert ledger(db_target) == ["0000_baseline", BATCH1]
    assert NEW_TABLES <= public_tables(db_target)


# -- a rollback that stopped ---------------------------------------------------------------------------

def test_a_destroy_stopped_by_a_dependent_view_is_named_by_preview_and_up_and_resumes(applied: ProjectStack, db_target: Target) -> None:
    with connect(db_target) as conn:
        conn.execute('CREATE VIEW customer_report AS SELECT "id" FROM "Customer"')

    destroy = applied.cli("destroy", "--yes")
    assert destroy.returncode != 0
    assert (f"rolling back batch '{BATCH1}' stopped at rollback.sql:54 failed: cannot drop table \"Customer\" because "
            "other objects depend on it (SQLSTATE 2BP01); 9 of 10 rollback steps are done and recorded") in output_of(destroy)
    assert NEW_TABLES <= public_tables(db_target)

    partly = f"batch '{BATCH1}' is partly rolled back (9 of 10 rollback steps done; it stopped at rollback.sql:54"
    preview = applied.cli("preview")
    assert partly in output_of(preview)
    up = applied.cli("up", "--yes")
    assert up.returncode != 0 and partly in output_of(up)

    with connect(db_target) as conn:
        conn.execute("DROP VIEW customer_report")
    applied.stack.destroy(on_output=lambda _: None)
    assert public_tables(db_target) == set()
    assert ledger(db_target) == []


# -- corrected files -----------------------------------------------------------------------------------

def test_a_corrected_rollback_is_an_update_that_destroy_then_uses(applied: ProjectStack, db_target: Target) -> None:
    applied.add_batch("0002_quote", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);', rollback='DROP TABLE "Quote_typo";')
    applied.stack.up(on_output=lambda _: None)
    rollback = applied.workdir / "sql" / "0002_quote" / "rollback.sql"
    rollback.write_text('DROP TABLE IF EXISTS "Quote";\n')

    preview = applied.stack.preview(on_output=lambda _: None)
    assert preview.change_summary.get("update") == 1
    assert "rollback.sql corrected: `pulumi destroy` will run the corrected file" in preview.stdout
    applied.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        reasons = conn.execute("SELECT reason FROM schema_ledger.batch_revision WHERE batch = '0002_quote' "
                               "AND file = 'rollback.sql' ORDER BY id").fetchall()
    assert reasons == [("applied",), ("corrected",)]

    applied.stack.destroy(on_output=lambda _: None)
    assert public_tables(db_target) == set()


def test_an_applied_migration_edited_in_comments_only_is_recorded_and_a_real_edit_is_refused(applied: ProjectStack, db_target: Target) -> None:
    migration = applied.workdir / "sql" / BATCH1 / "migration.sql"
    original = migration.read_text()
    migration.write_text("-- reviewed again before the prod rollout\n" + original)

    up = applied.stack.up(on_output=lambda _: None)
    assert changes(up.summary.resource_changes) == {"update": 1}

    migration.write_text(original.replace('"name" TEXT,', '"name" VARCHAR(200),', 1))
    for run in (applied.stack.preview, applied.stack.up):
        with pytest.raises(auto.CommandError, match=f"{BATCH1}' migration.sql changed after it was applied .*its statements differ"):
            run(on_output=lambda _: None)


# -- what the user reads -------------------------------------------------------------------------------

def test_the_preview_of_an_adopted_baseline_says_it_will_be_adopted_not_created(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    with connect(db_target) as conn:
        conn.execute((ROOT / "sql" / "0000_baseline" / "migration.sql").read_text())
    stack = make_stack(migrations={"baseline": "adopt"})

    out = stack.stack.preview(on_output=lambda _: None).stdout

    assert "batch 0000_baseline will be adopted on" in out
    assert "0000_baseline will be applied" not in out and "create table Lead" not in out


def test_a_failing_batch_reports_its_error_once_without_the_grpc_prefix(applied: ProjectStack) -> None:
    applied.add_batch("0002_checked", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);',
                      "SELECT 'quote_has_amount' AS check_name, false AS ok, 'column amount missing' AS detail;",
                      'DROP TABLE IF EXISTS "Quote";')
    events: list[auto.EngineEvent] = []

    with pytest.raises(auto.CommandError) as failed:
        applied.stack.up(on_output=lambda _: None, on_event=events.append)

    expected = ("batch '0002_checked' failed validation (1 checks): quote_has_amount: column amount missing; "
                "the batch was undone")
    diagnostics = [e.diagnostic_event.message.strip() for e in events
                   if e.diagnostic_event and e.diagnostic_event.severity == "error" and "0002_checked" in e.diagnostic_event.message]
    assert diagnostics == [f"error: {expected}"] or diagnostics == [expected], diagnostics
    summary = str(failed.value).split("Diagnostics:", 1)[1]
    assert summary.count("quote_has_amount") == 1
    assert "Exception calling application" not in str(failed.value) and "Traceback" not in str(failed.value)


def test_an_empty_migration_is_refused_at_preview(applied: ProjectStack, db_target: Target) -> None:
    applied.add_batch("0002_later", "-- to be written\n")

    result = applied.cli("preview")

    assert result.returncode != 0
    assert "batch '0002_later' migration.sql:1: has no statements" in output_of(result)
    assert ledger(db_target) == ["0000_baseline", BATCH1]


def test_a_port_written_as_a_quoted_string_is_accepted(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack(database={"host": db_target.host, "port": str(db_target.port), "name": db_target.dbname,
                                 "user": db_target.user, "sslmode": "disable"})
    assert stack.cli("preview").returncode == 0


def test_a_lock_on_a_table_the_target_lacks_says_the_statement_will_fail(applied: ProjectStack) -> None:
    applied.add_batch("0002_nope", 'INSERT INTO "Nope" ("id") VALUES (1);')
    out = applied.stack.preview(on_output=lambda _: None).stdout
    assert "table Nope does not exist on the target: migration.sql:1 will fail" in out
    assert "on existing table Nope" not in out


def test_a_table_only_read_by_insert_select_is_not_reported_as_written(applied: ProjectStack) -> None:
    applied.add_batch("0002_copy", 'CREATE TABLE "LeadCopy" ("id" TEXT);\nINSERT INTO "LeadCopy" SELECT "id" FROM "Lead";',
                      rollback='DROP TABLE IF EXISTS "LeadCopy";')
    out = applied.stack.preview(on_output=lambda _: None).stdout
    assert "ACCESS SHARE on existing table Lead: reads and writes continue" in out
    assert "ROW EXCLUSIVE on existing table Lead" not in out


def test_a_rollback_from_a_batch_the_stack_never_applied_rolls_nothing_back_and_says_so(applied: ProjectStack, db_target: Target) -> None:
    result = make(applied, "rollback", "BATCH=0042_nothing")
    assert result.returncode == 0, output_of(result)
    assert "batches from 0042_nothing on are not applied while junkquote-db:migrations.rollBackFrom is set; none of them is applied" in output_of(result)
    assert ledger(db_target) == ["0000_baseline", BATCH1]
