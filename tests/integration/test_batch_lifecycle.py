"""The edges of a batch's life against a real PostgreSQL: a rollback that stops and resumes, corrected files of
an applied batch, validation that cannot run, and a ledger written by an older version of the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.migrations.errors import (
    BatchChanged,
    BatchFilesMissing,
    BatchCorrectionRefused,
    RollbackFailed,
    RollbackIncomplete,
    ValidationNotRun,
)
from infra.migrations.ledger import Ledger
from infra.migrations.plan import Batch, load_batches
from infra.migrations.drift import DriftCheck, checks_failing
from infra.migrations.runner import RunSettings, apply_batch, apply_batches, rollback_batch, rollback_batches
from infra.migrations.state import read_state
from infra.migrations.target import Target
from tests.pg import connect
from tests.support.batches import PASSING_CHECK, make_batch
from tests.support.catalog import snapshot

ROOT = Path(__file__).resolve().parents[2]
FAST = RunSettings(stack="test", lock_timeout_ms=200, lock_retries=2, lock_wait_ms=1000)
NEW_TABLES = {"Customer", "CustomerAddress", "Conversation", "Message", "MemoryNote", "JobItem", "JobEvent"}


@pytest.fixture
def batch1(db_target: Target) -> tuple[Batch, Batch]:
    """The project's baseline and batch 0001, applied."""
    baseline, memory = load_batches(ROOT / "sql")[:2]
    apply_batch(db_target, baseline, FAST)
    apply_batch(db_target, memory, FAST)
    return baseline, memory


def public_tables(db: psycopg.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def column_exists(db: psycopg.Connection, table: str, column: str) -> bool:
    row = db.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                     (table, column)).fetchone()
    return row == (1,)


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition the test controls the outcome of (no deadline: the test harness bounds the run)."""
    event = threading.Event()
    while not condition():
        event.wait(0.05)


# -- a rollback that stops ------------------------------------------------------------------------------

def test_a_rollback_blocked_by_a_dependent_view_keeps_every_new_table_and_resumes_once_it_is_gone(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, batch1: tuple[Batch, Batch]) -> None:
    baseline, memory = batch1
    db.execute('CREATE VIEW customer_report AS SELECT "id", "name" FROM "Customer"')

    with pytest.raises(RollbackFailed, match=r"rolling back batch '0001_add_memory_entities' stopped at rollback.sql:54 "
                                             r"failed: cannot drop table \"Customer\" because other objects depend on it "
                                             r"\(SQLSTATE 2BP01\); 9 of 10 rollback steps are done and recorded"):
        rollback_batch(db_target, memory, FAST)

    assert NEW_TABLES <= public_tables(db), "the batch's own tables are dropped together, or not at all"
    assert not column_exists(db, "Lead", "customer_id"), "steps before the failing one stay done"
    assert Ledger(db).entry(memory.name) is not None, "the batch stays recorded while its rollback is unfinished"
    state = read_state(db_target)
    assert str(state.rollback_incomplete(memory)).startswith(
        "batch '0001_add_memory_entities' is partly rolled back (9 of 10 rollback steps done; it stopped at rollback.sql:54")
    later = make_batch(tmp_path, "0002_later", 'CREATE TABLE "Later" ("id" int);', rollback='DROP TABLE IF EXISTS "Later";')
    with pytest.raises(RollbackIncomplete, match="; roll back again to finish the rollback"):
        apply_batch(db_target, later, FAST)

    db.execute("DROP VIEW customer_report")
    assert rollback_batch(db_target, memory, FAST) is True

    assert public_tables(db) == {"Lead", "Job", "Audit"}
    assert Ledger(db).entry(memory.name) is None
    assert read_state(db_target).rollbacks == {}
    assert db.execute("SELECT count(*) FROM schema_ledger.batch_step").fetchone() == (0,)


def test_a_resumed_rollback_skips_the_steps_it_already_finished(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    base = make_batch(tmp_path / "b", "0000_base", 'CREATE TABLE "Lead" ("id" int PRIMARY KEY);', rollback='DROP TABLE IF EXISTS "Lead";')
    apply_batch(db_target, base, FAST)
    # The first statement fails if it runs twice; the second fails until the test creates "Gate".
    batch = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);\nCREATE TABLE "Log" ("n" int);',
                       rollback='INSERT INTO "Lead" VALUES (1);\nDROP TABLE "Gate";\nDROP TABLE IF EXISTS "T", "Log";')
    apply_batch(db_target, batch, FAST)

    with pytest.raises(RollbackFailed, match="rollback.sql:2 failed: table \"Gate\" does not exist"):
        rollback_batch(db_target, batch, FAST)
    db.execute('CREATE TABLE "Gate" ()')
    rollback_batch(db_target, batch, FAST)

    assert db.execute('SELECT count(*) FROM "Lead"').fetchone() == (1,), "the finished INSERT step did not run again"
    assert public_tables(db) == {"Lead"}


# -- corrections of an applied batch -------------------------------------------------------------------

def test_a_corrected_rollback_is_recorded_with_its_history_and_used_by_the_next_rollback(
        tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    applied = make_batch(tmp_path / "v1", "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE "Nope";')
    apply_batch(db_target, applied, FAST)
    corrected = make_batch(tmp_path / "v2", "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE IF EXISTS "T";')

    result = apply_batch(db_target, corrected, FAST)

    assert result.already_applied and result.checksums == corrected.checksums
    history = Ledger(db).revisions("0001_t")
    assert [(f, reason) for f, _, reason in history if f == "rollback.sql"] == [("rollback.sql", "applied"), ("rollback.sql", "corrected")]
    assert [sha for f, sha, _ in history if f == "rollback.sql"] == [applied.checksums["rollback.sql"], corrected.checksums["rollback.sql"]]
    rollback_batch(db_target, applied, FAST)  # the SQL stored when it was applied: the ledger's correction wins
    assert public_tables(db) == set()


def test_a_comment_or_layout_edit_of_an_applied_migration_is_recorded_not_refused(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    applied = make_batch(tmp_path / "v1", "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE IF EXISTS "T";')
    apply_batch(db_target, applied, FAST)
    reformatted = make_batch(tmp_path / "v2", "0001_t", '-- why T exists\nCREATE TABLE "T" (\n    "id" integer\n);\n',
                             rollback='DROP TABLE IF EXISTS "T";')

    assert read_state(db_target).pending([reformatted]) == ()
    apply_batch(db_target, reformatted, FAST)

    assert Ledger(db).entry("0001_t").migration_sha256 == reformatted.checksums["migration.sql"]
    assert Ledger(db).revisions("0001_t")[-1][2] == "reformatted"
    changed = make_batch(tmp_path / "v3", "0001_t", 'CREATE TABLE "T" ("id" bigint);', rollback='DROP TABLE IF EXISTS "T";')
    with pytest.raises(BatchChanged, match="its statements differ, not only comments or layout; add a new batch"):
        apply_batch(db_target, changed, FAST)


def test_a_corrected_validation_that_fails_on_the_live_database_is_not_recorded(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    applied = make_batch(tmp_path / "v1", "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE IF EXISTS "T";')
    apply_batch(db_target, applied, FAST)
    wrong = make_batch(tmp_path / "v2", "0001_t", 'CREATE TABLE "T" ("id" int);',
                       "SELECT 'u_exists' AS check_name, to_regclass('\"U\"') IS NOT NULL AS ok, 'table U' AS detail;",
                       'DROP TABLE IF EXISTS "T";')

    with pytest.raises(BatchCorrectionRefused, match="corrected validation.sql of applied batch '0001_t' fails.*u_exists: table U"):
        apply_batch(db_target, wrong, FAST)
    assert Ledger(db).entry("0001_t").checksums == applied.checksums


# -- validation that cannot run ------------------------------------------------------------------------

AUDIT_CHECK = """SELECT 'audit_readable' AS check_name, (SELECT count(*) >= 0 FROM "Audit") AS ok, 'Audit can be read' AS detail;"""


@pytest.fixture
def audit(tmp_path: Path, db_target: Target) -> Batch:
    base = make_batch(tmp_path / "b", "0000_base", 'CREATE TABLE "Audit" ("id" int);', rollback='DROP TABLE IF EXISTS "Audit";')
    apply_batch(db_target, base, FAST)
    return make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);\nCREATE TABLE "U" ("id" int);', AUDIT_CHECK,
                      'DROP TABLE IF EXISTS "T", "U";')


def validation_waiting(db: psycopg.Connection) -> bool:
    row = db.execute("""SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                        AND application_name LIKE 'junkquote-db migrations%%' AND wait_event_type = 'Lock'""").fetchone()
    return bool(row and row[0])


def test_validation_waits_for_a_lock_held_elsewhere_instead_of_failing_the_batch(
        db_target: Target, db: psycopg.Connection, audit: Batch) -> None:
    results: list[object] = []
    with connect(db_target) as holder:
        holder.execute("BEGIN")
        holder.execute('LOCK "Audit"')  # idle in transaction, as in an open psql session
        runner = threading.Thread(target=lambda: results.append(apply_batch(db_target, audit, FAST)))
        runner.start()
        wait_until(lambda: validation_waiting(db))
        holder.execute("COMMIT")
        runner.join()

    assert Ledger(db).entry(audit.name) is not None
    assert [c.name for c in results[0].checks] == ["audit_readable"]


def test_validation_that_cannot_get_its_lock_in_time_says_so_and_undoes_nothing(
        db_target: Target, db: psycopg.Connection, audit: Batch) -> None:
    impatient = RunSettings(stack="test", lock_timeout_ms=200, lock_retries=2, lock_wait_ms=1000, statement_timeout_ms=300)
    with connect(db_target) as holder:
        holder.execute("BEGIN")
        holder.execute('LOCK "Audit"')
        with pytest.raises(ValidationNotRun, match=r"could not validate batch '0001_t' on .*canceling statement due to "
                                                   r"statement timeout \(SQLSTATE 57014\).*no check failed and nothing was undone"):
            apply_batch(db_target, audit, impatient)
        holder.execute("COMMIT")

    assert {"T", "U"} <= public_tables(db), "the applied steps stay"
    assert Ledger(db).entry(audit.name) is None
    assert Ledger(db).finished_steps(audit.name, "migration.sql"), "and stay recorded"
    result = apply_batch(db_target, audit, FAST)
    assert Ledger(db).entry(audit.name) is not None and all(c.ok for c in result.checks)


def test_validation_past_the_servers_temp_file_limit_says_so_at_once_and_undoes_nothing(
        tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    sorts = ("SELECT 'sorted' AS check_name, count(*) = 200000 AS ok, '' AS detail "
             "FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY md5(g::text)) s;")
    batch = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);', sorts, 'DROP TABLE IF EXISTS "T";')
    database = sql.Identifier(db_target.dbname)
    db.execute(sql.SQL("ALTER DATABASE {} SET temp_file_limit = '128kB'").format(database))
    db.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '64kB'").format(database))
    try:
        with pytest.raises(ValidationNotRun, match=r"could not validate batch '0001_t' on .*temporary file size exceeds "
                                                   r'"?temp_file_limit"? \(128kB\) \(SQLSTATE 53400\); 1 attempts\).*'
                                                   r"no check failed and nothing was undone"):
            apply_batch(db_target, batch, FAST)
    finally:
        db.execute(sql.SQL("ALTER DATABASE {} RESET temp_file_limit").format(database))
        db.execute(sql.SQL("ALTER DATABASE {} RESET work_mem").format(database))

    assert "T" in public_tables(db) and Ledger(db).entry(batch.name) is None
    assert not Ledger(db).undo_pending(batch.name)
    assert all(c.ok for c in apply_batch(db_target, batch, FAST).checks)


# -- an older ledger -------------------------------------------------------------------------------------

OLD_LEDGER = [
    "CREATE SCHEMA schema_ledger",
    """CREATE TABLE schema_ledger.batch (batch text PRIMARY KEY, migration_sha256 text NOT NULL,
        validation_sha256 text NOT NULL, rollback_sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
        duration_ms integer NOT NULL, applied_by text NOT NULL, stack text NOT NULL, adopted boolean NOT NULL DEFAULT false)""",
    """CREATE TABLE schema_ledger.batch_step (batch text NOT NULL, file text NOT NULL, step integer NOT NULL,
        sha256 text NOT NULL, finished_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (batch, file, step))""",
]


def test_a_ledger_written_by_an_older_engine_is_read_and_brought_up_to_date(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    first = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" ("id" int);', rollback='DROP TABLE IF EXISTS "Lead";')
    for ddl in OLD_LEDGER:
        db.execute(ddl)
    db.execute('CREATE TABLE "Lead" ("id" int)')
    sums = first.checksums
    db.execute("INSERT INTO schema_ledger.batch VALUES (%s, %s, %s, %s, now(), 1, 'old', 'test', false)",
               (first.name, sums["migration.sql"], sums["validation.sql"], sums["rollback.sql"]))

    assert read_state(db_target).pending([first]) == ()
    second = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE IF EXISTS "T";')
    apply_batch(db_target, second, FAST)

    entries = read_state(db_target).entries
    assert entries["0000_base"].rollback_sql is None and entries["0001_t"].rollback_sql == second.rollback
    rollback_batch(db_target, first, FAST)  # a row without its rollback.sql runs the one from state
    assert public_tables(db) == {"T"}


def test_the_catalog_after_a_resumed_rollback_is_the_catalog_before_the_batch(
        db_target: Target, db: psycopg.Connection) -> None:
    baseline, memory = load_batches(ROOT / "sql")[:2]
    apply_batch(db_target, baseline, FAST)
    before = snapshot(db)
    apply_batch(db_target, memory, FAST)
    db.execute('CREATE VIEW blocker AS SELECT 1 FROM "MemoryNote"')
    with pytest.raises(RollbackFailed):
        rollback_batch(db_target, memory, FAST)
    db.execute("DROP VIEW blocker")
    rollback_batch(db_target, memory, FAST)
    assert snapshot(db) == before


def test_the_preview_learns_which_locked_tables_the_target_lacks(tmp_path: Path, db_target: Target) -> None:
    apply_batch(db_target, make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" ("id" int);'), FAST)
    assert read_state(db_target, ["Lead", "Nope", "public.Lead"]).absent_tables == {"Nope"}


# -- many batches at once: what the schema history runs -----------------------------------------------------

def test_rollback_batches_rolls_back_newest_first_with_the_files_the_ledger_keeps(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" ("id" int);', rollback='DROP TABLE IF EXISTS "Lead";')
    child = make_batch(tmp_path, "0001_child", 'CREATE TABLE "Child" ("lead" int);\nALTER TABLE "Lead" ADD PRIMARY KEY ("id");\n'
                       'ALTER TABLE "Child" ADD CONSTRAINT "child_lead" FOREIGN KEY ("lead") REFERENCES "Lead" ("id");',
                       rollback='DROP TABLE IF EXISTS "Child";\nALTER TABLE "Lead" DROP CONSTRAINT IF EXISTS "Lead_pkey";')
    apply_batches(db_target, [base, child], FAST)

    done = rollback_batches(db_target, FAST, {})  # no files given: every one comes from the ledger

    assert done == ("0001_child", "0000_base"), "newest first: Child goes before the table it references"
    assert public_tables(db) == set() and read_state(db_target).entries == {}


def test_rollback_batches_from_a_batch_keeps_the_ones_before_it(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    batches = [make_batch(tmp_path, f"000{i}_t{i}", f'CREATE TABLE "T{i}" ("id" int);', rollback=f'DROP TABLE IF EXISTS "T{i}";')
               for i in range(3)]
    apply_batches(db_target, batches, FAST)

    assert rollback_batches(db_target, FAST, {}, start="0001_t1") == ("0002_t2", "0001_t1")
    assert public_tables(db) == {"T0"}
    assert list(read_state(db_target).entries) == ["0000_t0"]


def test_a_row_recorded_before_the_ledger_kept_files_gains_them_when_the_batch_is_applied_again(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" ("id" int);', rollback='DROP TABLE IF EXISTS "Lead";')
    apply_batch(db_target, base, FAST)
    db.execute("UPDATE schema_ledger.batch SET migration_sql = NULL, validation_sql = NULL, rollback_sql = NULL")
    assert not read_state(db_target).entries["0000_base"].has_files

    with pytest.raises(BatchFilesMissing, match="restore sql/0000_base"):
        rollback_batches(db_target, FAST, {})
    assert public_tables(db) == {"Lead"}, "nothing was rolled back without its files"

    apply_batches(db_target, [base], FAST)  # what the history runs for such a row: records its files
    assert read_state(db_target).entries["0000_base"].recorded_batch() == replace(base, backfill=None, gate=None)
    assert rollback_batches(db_target, FAST, {}) == ("0000_base",)
    assert public_tables(db) == set()


def test_refresh_runs_every_applied_batchs_checks_each_apart_from_the_others(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    rows = "SELECT 'one_lead' AS check_name, count(*) = 1 AS ok, count(*)::text AS detail FROM \"Lead\";"
    insert = 'INSERT INTO "Lead" VALUES (1);\n' + rows
    first = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" ("id" int);', insert, 'DROP TABLE IF EXISTS "Lead";')
    second = make_batch(tmp_path, "0001_again", 'CREATE TABLE "T" ("id" int);', insert, 'DROP TABLE IF EXISTS "T";')
    broken = make_batch(tmp_path, "0002_broken", 'CREATE TABLE "U" ("id" int);', PASSING_CHECK, 'DROP TABLE IF EXISTS "U";')
    apply_batches(db_target, [first, second, broken], FAST)

    reading_broken = replace(broken, validation='SELECT nope FROM "U";')  # only reads: runs without a savepoint
    failing = checks_failing(db_target, DriftCheck(batches=(first, reading_broken, second)))

    assert [(f.batch, f.check) for f in failing] == [("0002_broken", "validation.sql:1")], \
        "each batch's test row is rolled back before the next batch's checks run, and a broken file fails alone"
    assert db.execute('SELECT count(*) FROM "Lead"').fetchone() == (0,), "nothing the checks did persists"
