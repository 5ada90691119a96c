"""How the engine cuts a batch into steps, and what the preview says about locks. No database."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.migrations.errors import SqlSyntaxError, UnsupportedStatement
from infra.migrations.plan import load_batches
from infra.migrations.report import describe_adoption, describe_batch, lock_lines
from infra.migrations.runner import RunSettings
from infra.migrations.steps import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    ROW_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    plan_steps,
)
from infra.migrations.syntax import check_syntax
from tests.support.batches import make_batch

ADDITIVE = """CREATE TYPE "Role" AS ENUM ('a', 'b');
CREATE TABLE "Customer" ("id" TEXT PRIMARY KEY);
CREATE INDEX "Customer_id_idx" ON "Customer" ("id");
ALTER TABLE "Lead" ADD COLUMN "customer_id" TEXT;
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") NOT VALID;
-- comments before a statement do not move its line
CREATE INDEX CONCURRENTLY "Lead_customer_id_idx" ON "Lead" ("customer_id");
ALTER TABLE "Lead" VALIDATE CONSTRAINT "Lead_customer_id_fkey";
"""


def test_new_objects_share_a_transaction_and_each_statement_on_an_existing_table_runs_alone(tmp_path: Path) -> None:
    steps = plan_steps(make_batch(tmp_path, "0001_x", ADDITIVE), "migration.sql")

    assert [(s.number, s.autocommit, [st.line for st in s.statements]) for s in steps] == [
        (1, False, [1, 2, 3]),
        (2, False, [4]),
        (3, False, [5]),
        (4, True, [7]),
        (5, False, [8]),
    ]


def test_locks_on_existing_tables_are_named_with_their_mode(tmp_path: Path) -> None:
    steps = plan_steps(make_batch(tmp_path, "0001_x", ADDITIVE), "migration.sql")
    locks = {(s.number, lock.table, lock.mode, lock.existing) for s in steps for st in s.statements for lock in st.locks}

    assert (2, "Lead", ACCESS_EXCLUSIVE, True) in locks
    assert (3, "Lead", SHARE_ROW_EXCLUSIVE, True) in locks
    assert (3, "Customer", SHARE_ROW_EXCLUSIVE, False) in locks
    assert (4, "Lead", SHARE_UPDATE_EXCLUSIVE, True) in locks


def test_the_preview_report_names_target_steps_and_locks_of_batch_1() -> None:
    batch1 = load_batches(Path(__file__).resolve().parents[2] / "sql")[1]
    text = describe_batch(batch1, "db.internal:5432/junkquote", RunSettings(lock_timeout_ms=500, lock_retries=10))

    assert text.startswith("batch 0001_add_memory_entities will be applied to db.internal:5432/junkquote (lock_timeout 500 ms")
    assert "create index concurrently Lead_customer_id_idx on Lead" in text
    assert "ACCESS EXCLUSIVE on existing table Lead: blocks reads and writes while held" in text
    assert not [line for line in lock_lines(batch1) if "Customer" in line.split(":")[0]], "new tables are not 'existing'"


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;", "BEGIN is not allowed"),
        ("SET lock_timeout = '1s';", "SET/RESET is not allowed"),
        ('CREATE INDEX ON "Lead" ("x");', "CREATE INDEX without an index name"),
    ],
)
def test_statements_the_engine_cannot_run_safely_are_refused_with_file_and_line(tmp_path: Path, sql: str, problem: str) -> None:
    with pytest.raises(UnsupportedStatement, match=f"batch '0001_x' migration.sql:1: {problem}"):
        plan_steps(make_batch(tmp_path, "0001_x", sql), "migration.sql")


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0001_x", "CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,);\n")
    with pytest.raises(SqlSyntaxError, match=r"batch '0001_x' migration.sql:3: syntax error"):
        plan_steps(batch, "migration.sql")


def test_if_exists_drops_carry_a_probe_so_a_drop_with_nothing_to_drop_takes_no_lock(tmp_path: Path) -> None:
    rollback = 'DROP INDEX CONCURRENTLY IF EXISTS "Lead_x_idx";\nALTER TABLE "Lead" DROP COLUMN IF EXISTS "x";\nDROP TABLE IF EXISTS "Customer";\nDROP TYPE IF EXISTS "Role";\nDROP TABLE "Strict";'
    steps = plan_steps(make_batch(tmp_path, "0001_x", "SELECT 1;", rollback=rollback), "rollback.sql")
    probes = [st.absent_probe for s in steps for st in s.statements]
    assert all(p is not None for p in probes[:4])
    assert probes[4] is None, "a drop without IF EXISTS always runs"


@pytest.mark.parametrize(
    ("statement", "mode"),
    [
        ('UPDATE "Lead" SET "status" = \'new\' WHERE "status" IS NULL;', "ROW EXCLUSIVE"),
        ('ALTER TABLE "Lead" RENAME COLUMN "zip" TO "postcode";', "ACCESS EXCLUSIVE"),
        ('TRUNCATE "Audit";', "ACCESS EXCLUSIVE"),
        ('DROP INDEX "Lead_phone_idx";', "ACCESS EXCLUSIVE"),
    ],
)
def test_any_statement_on_a_table_the_batch_did_not_create_runs_alone(tmp_path: Path, statement: str, mode: str) -> None:
    sql = f'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\n{statement}\nCREATE INDEX "Quote_id_idx" ON "Quote" ("id");\n'
    steps = plan_steps(make_batch(tmp_path, "0001_x", sql), "migration.sql")

    assert [[st.line for st in s.statements] for s in steps] == [[1], [2], [3]]
    assert {lock.mode for lock in steps[1].statements[0].locks if lock.existing} == {mode}


def test_if_not_exists_does_not_make_a_table_new(tmp_path: Path) -> None:
    sql = 'CREATE TABLE IF NOT EXISTS "Lead" ("id" TEXT PRIMARY KEY);\nALTER TABLE "Lead" ADD COLUMN "x" TEXT;\n'
    steps = plan_steps(make_batch(tmp_path, "0001_x", sql), "migration.sql")
    assert steps[1].statements[0].locks_existing_table


SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def test_rollback_of_batch_1_drops_its_own_tables_in_one_transaction_and_touches_lead_and_job_alone() -> None:
    steps = plan_steps(load_batches(SQL_DIR)[1], "rollback.sql")
    last = steps[-1]

    assert [s.summary for s in last.statements] == [
        "drop table Message", "drop table MemoryNote", "drop table Conversation", "drop table CustomerAddress",
        "drop table JobItem", "drop table JobEvent", "drop table Customer", "drop type MessageRole"]
    assert not last.autocommit and not last.locks_existing_table
    assert all(len(s.statements) == 1 for s in steps[:-1]), "every step on Lead or Job runs alone"
    fk_step = next(s for s in steps if "Conversation_lead_id_fkey" in s.statements[0].summary)
    assert ("Lead", ACCESS_EXCLUSIVE, True) in {(lk.table, lk.mode, lk.existing) for lk in fk_step.statements[0].locks}


def test_dropping_a_new_table_whose_foreign_key_onto_an_old_table_remains_locks_the_old_table(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0001_x", 'CREATE TABLE "Item" ("id" int, "job_id" text REFERENCES "Job" ("id"));',
                       rollback='DROP TABLE IF EXISTS "Item";')
    (step,) = plan_steps(batch, "rollback.sql")
    assert {(lk.table, lk.existing) for lk in step.statements[0].locks} == {("Item", False), ("Job", True)}


def test_a_statement_that_writes_one_table_only_reads_the_others_it_names(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0001_x", 'CREATE TABLE "Copy" ("id" text);\nINSERT INTO "Copy" SELECT "id" FROM "Lead";\n'
                                           'UPDATE "Job" SET "note" = l."name" FROM "Lead" l WHERE l."id" = "Job"."leadId";')
    locks = {(st.line, lk.table, lk.mode) for s in plan_steps(batch, "migration.sql") for st in s.statements for lk in st.locks}
    assert locks == {(2, "Lead", ACCESS_SHARE), (3, "Job", ROW_EXCLUSIVE), (3, "Lead", ACCESS_SHARE)}


@pytest.mark.parametrize("file", ["migration.sql", "validation.sql", "rollback.sql"])
def test_a_batch_file_without_statements_is_refused_before_anything_runs(tmp_path: Path, file: str) -> None:
    texts = {"migration.sql": 'CREATE TABLE "T" ("id" int);', "validation.sql": "SELECT 'c' AS check_name, true AS ok, '' AS detail;",
             "rollback.sql": 'DROP TABLE IF EXISTS "T";', file: "-- to be written\n"}
    batch = make_batch(tmp_path, "0002_empty", texts["migration.sql"], texts["validation.sql"], texts["rollback.sql"])
    with pytest.raises(UnsupportedStatement, match=f"batch '0002_empty' {file}:1: has no statements"):
        check_syntax(batch)


def test_the_preview_of_an_adopted_baseline_says_no_statement_runs() -> None:
    baseline = load_batches(SQL_DIR)[0]
    text = describe_adoption(baseline, "db.internal:5432/junkquote", RunSettings())
    assert text.startswith("batch 0000_baseline will be adopted on db.internal:5432/junkquote: none of its statements run")
    assert "create table" not in text.lower()


def test_an_explicit_lock_table_runs_in_one_transaction_with_the_statement_after_it(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0003_x", """CREATE TABLE "Note" ("id" TEXT);
LOCK TABLE "Customer" IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") NOT VALID;
ALTER TABLE "Lead" VALIDATE CONSTRAINT "Lead_customer_id_fkey";
""")
    steps = plan_steps(batch, "migration.sql")

    assert [(s.number, s.autocommit, [st.line for st in s.statements]) for s in steps] == [
        (1, False, [1]),
        (2, False, [2, 3]),  # Customer first, then the key that locks Lead and Customer: the application's order
        (3, False, [4]),
    ]
    lock = steps[1].statements[0]
    assert (lock.summary, lock.locks[0].table, lock.locks[0].mode) == (
        "lock table Customer in share row exclusive mode", "Customer", SHARE_ROW_EXCLUSIVE)


def test_batch_3_takes_the_customer_lock_before_every_foreign_key_it_adds_or_drops() -> None:
    batch = {b.name: b for b in load_batches(SQL_DIR)}["0003_require_customer_links"]
    for step in plan_steps(batch, "migration.sql"):
        summaries = [st.summary for st in step.statements]
        if any("foreign key" in s or "drop constraint" in s and "fkey" in s for s in summaries):
            assert summaries[0].startswith("lock table Customer in "), summaries
