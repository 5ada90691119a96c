"""The migration engine against a real PostgreSQL: apply, validate, undo, resume, refuse."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.migrations.errors import (
    AdoptionRefused,
    BatchChanged,
    ConnectionLost,
    DatabaseError,
    LockBusy,
    LockNotAcquired,
    RollbackFailed,
    RunStopped,
    SqlSyntaxError,
    StatementFailed,
    TargetUnreachable,
    UndoFailed,
    UnsupportedStatement,
    ValidationFailed,
    ValidationNotRun,
)
from infra.migrations.ledger import Ledger
from infra.migrations.lock import LOCK_KEYS
from infra.migrations.plan import Batch
from infra.migrations.steps import plan_steps
from infra.migrations import runner
from infra.migrations.runner import RunSettings, adopt_batch, apply_batch, rollback_batch
from infra.migrations.state import pending_batches
from infra.migrations.target import Target
from infra.migrations.validation import CheckResult, run_all_checks
from tests.pg import connect
from tests.support.batches import make_batch
from tests.support.catalog import snapshot
from tests.support.waiting import backend_gone, lock_waits, wait_until

FAST = RunSettings(stack="test", lock_timeout_ms=200, lock_retries=2, lock_wait_ms=1000)
PARK_KEY = 4242  # an advisory lock a test holds to park a step on it
WAITS_FOR_THE_TEST = RunSettings(stack="test", lock_timeout_ms=600_000, lock_retries=0, lock_wait_ms=1000)  # parked steps

BASE = 'CREATE TABLE "Lead" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL DEFAULT \'\');\nINSERT INTO "Lead" ("id") VALUES (\'l1\');'
BASE_ROLLBACK = 'DROP TABLE IF EXISTS "Lead";'
LINK = """CREATE TABLE "Customer" ("id" TEXT PRIMARY KEY);
CREATE INDEX "Customer_id_idx" ON "Customer" ("id");
ALTER TABLE "Lead" ADD COLUMN "customer_id" TEXT;
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE SET NULL NOT VALID;
CREATE INDEX CONCURRENTLY "Lead_customer_id_idx" ON "Lead" ("customer_id");
ALTER TABLE "Lead" VALIDATE CONSTRAINT "Lead_customer_id_fkey";
"""
LINK_CHECKS = """SELECT 'lead_customer_index_valid' AS check_name,
       coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('"Lead_customer_id_idx"')), false) AS ok,
       'Lead_customer_id_idx exists and is valid' AS detail;
SELECT 'lead_customer_fk_valid' AS check_name,
       coalesce((SELECT convalidated FROM pg_constraint WHERE conname = 'Lead_customer_id_fkey'), false) AS ok,
       'Lead_customer_id_fkey exists and is validated' AS detail;
"""
LINK_ROLLBACK = """DROP INDEX CONCURRENTLY IF EXISTS "Lead_customer_id_idx";
ALTER TABLE "Lead" DROP CONSTRAINT IF EXISTS "Lead_customer_id_fkey";
ALTER TABLE "Lead" DROP COLUMN IF EXISTS "customer_id";
DROP TABLE IF EXISTS "Customer";
"""


@pytest.fixture
def base(tmp_path: Path, db_target: Target) -> Batch:
    batch = make_batch(tmp_path, "0000_base", BASE, rollback=BASE_ROLLBACK)
    apply_batch(db_target, batch, FAST)
    return batch


@pytest.fixture
def link(tmp_path: Path) -> Batch:
    return make_batch(tmp_path, "0001_link", LINK, LINK_CHECKS, LINK_ROLLBACK)


def test_apply_runs_the_batch_validates_it_and_records_it_in_the_ledger(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    result = apply_batch(db_target, link, FAST)

    assert [c.name for c in result.checks] == ["lead_customer_index_valid", "lead_customer_fk_valid"]
    assert all(c.ok for c in result.checks)
    entry = Ledger(db).entry("0001_link")
    assert entry is not None
    assert entry.checksums == link.checksums
    assert entry.stack == "test" and "@" in entry.applied_by and not entry.adopted
    assert db.execute("SELECT count(*) FROM schema_ledger.batch_step").fetchone() == (0,)


def test_applying_an_applied_batch_again_runs_nothing(db_target: Target, base: Batch, link: Batch) -> None:
    first = apply_batch(db_target, link, FAST)
    again = apply_batch(db_target, link, FAST)
    assert again.already_applied and again.applied_at == first.applied_at


def test_apply_refuses_batch_edited_after_apply(tmp_path: Path, db_target: Target, base: Batch, link: Batch) -> None:
    apply_batch(db_target, link, FAST)
    edited = make_batch(tmp_path / "edited", "0001_link", LINK.replace('"id" TEXT PRIMARY KEY', '"id" UUID PRIMARY KEY'),
                        LINK_CHECKS, LINK_ROLLBACK)
    with pytest.raises(BatchChanged, match="add a new batch instead of editing an applied one"):
        apply_batch(db_target, edited, FAST)
    with pytest.raises(BatchChanged, match="0001_link.*migration.sql"):
        pending_batches(db_target, [base, edited])


def test_pending_batches_lists_what_the_ledger_lacks(db_target: Target, base: Batch, link: Batch) -> None:
    assert pending_batches(db_target, [base, link]) == (link,)


def test_sql_error_mid_batch_leaves_the_database_as_it_was(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    before = snapshot(db)
    broken = make_batch(tmp_path, "0001_broken", LINK.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX CONCURRENTLY \"x\" ON \"Nope\" (a);\nCREATE INDEX CONCURRENTLY", 1), LINK_CHECKS, LINK_ROLLBACK)

    with pytest.raises(StatementFailed, match=r"0001_broken' migration.sql:5 failed: relation \"Nope\" does not exist.*the batch was undone"):
        apply_batch(db_target, broken, FAST)

    assert snapshot(db) == before
    assert Ledger(db).entry("0001_broken") is None
    assert db.execute("SELECT count(*) FROM schema_ledger.batch_step").fetchone() == (0,)


def test_corrected_batch_applies_after_a_failed_one(tmp_path: Path, db_target: Target, base: Batch, link: Batch) -> None:
    broken = make_batch(tmp_path / "v1", "0001_link", LINK + "SELECT * FROM nope;", LINK_CHECKS, LINK_ROLLBACK)
    with pytest.raises(StatementFailed):
        apply_batch(db_target, broken, FAST)
    assert not apply_batch(db_target, link, FAST).already_applied


def test_failed_validation_undoes_the_batch_and_names_every_failed_check(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    before = snapshot(db)
    checks = LINK_CHECKS + "SELECT 'customer_has_rows' AS check_name, false AS ok, 'expected 1 row, found 0' AS detail;\n" \
        "SELECT 'lead_has_email' AS check_name, NULL::boolean AS ok, 'column email missing' AS detail;"
    batch = make_batch(tmp_path, "0001_link", LINK, checks, LINK_ROLLBACK)

    with pytest.raises(ValidationFailed, match="customer_has_rows: expected 1 row, found 0; lead_has_email") as failure:
        apply_batch(db_target, batch, FAST)

    assert [name for name, _ in failure.value.failed] == ["customer_has_rows", "lead_has_email"]
    assert snapshot(db) == before


def test_validation_test_data_never_persists(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    checks = """INSERT INTO "Lead" ("id") VALUES ('probe');
SELECT 'probe_inserted' AS check_name, EXISTS (SELECT 1 FROM "Lead" WHERE "id" = 'probe') AS ok, '' AS detail;"""
    apply_batch(db_target, make_batch(tmp_path, "0001_probe", "SELECT 1;", checks), FAST)
    assert db.execute("""SELECT count(*) FROM "Lead" WHERE "id" = 'probe'""").fetchone() == (0,)


def test_validation_runs_without_parallel_workers_so_live_traffic_keeps_the_other_cores(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    assert db.execute("SHOW max_parallel_workers_per_gather").fetchone() != ("0",)  # the server's default plans them
    checks = """SELECT 'one_core' AS check_name, current_setting('max_parallel_workers_per_gather') = '0' AS ok,
       'max_parallel_workers_per_gather ' || current_setting('max_parallel_workers_per_gather') AS detail;"""

    result = apply_batch(db_target, make_batch(tmp_path, "0001_probe", "SELECT 1;", checks), FAST)

    assert [(c.name, c.ok) for c in result.checks] == [("one_core", True)]


def test_refresh_runs_every_batchs_checks_without_parallel_workers_after_a_failed_read_and_beside_test_rows(
        tmp_path: Path, db: psycopg.Connection, base: Batch) -> None:
    one_core = "SELECT 'one_core' AS check_name, current_setting('max_parallel_workers_per_gather') = '0' AS ok, '' AS detail;"
    failing_read = make_batch(tmp_path / "a", "0001_broken", "SELECT 1;", "SELECT * FROM nope;")
    reads = make_batch(tmp_path / "b", "0002_reads", "SELECT 1;", one_core)
    writes = make_batch(tmp_path / "c", "0003_writes", "SELECT 1;", """INSERT INTO "Lead" ("id") VALUES ('probe');\n""" + one_core)

    outcomes = dict((batch.name, outcome) for batch, outcome in run_all_checks(db, [failing_read, reads, writes], 60_000))

    assert isinstance(outcomes["0001_broken"], StatementFailed)
    assert outcomes["0002_reads"] == outcomes["0003_writes"] == (CheckResult("one_core", True, ""),)


def test_resume_drops_an_invalid_index_left_by_a_crash_and_skips_finished_steps(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    # What a run killed during CREATE INDEX CONCURRENTLY leaves: steps 1-3 recorded, an INVALID index.
    db.execute(LINK.split('CREATE INDEX CONCURRENTLY')[0].replace(";\n", ";\n"))
    db.execute('CREATE INDEX "Lead_customer_id_idx" ON "Lead" ("customer_id")')
    db.execute("""UPDATE pg_index SET indisvalid = false WHERE indexrelid = '"Lead_customer_id_idx"'::regclass""")
    ledger = Ledger(db)
    from infra.migrations.steps import plan_steps
    for step in plan_steps(link, "migration.sql")[:3]:
        ledger.finish_step(link.name, "migration.sql", step.number, step.sha256)

    result = apply_batch(db_target, link, FAST)

    assert all(c.ok for c in result.checks)
    assert db.execute("""SELECT indisvalid FROM pg_index WHERE indexrelid = '"Lead_customer_id_idx"'::regclass""").fetchone() == (True,)


def test_rollback_returns_to_the_previous_catalog_and_is_harmless_twice(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    before = snapshot(db)
    apply_batch(db_target, link, FAST)

    assert rollback_batch(db_target, link, FAST) is True
    assert rollback_batch(db_target, link, FAST) is False
    assert snapshot(db) == before
    assert Ledger(db).entry("0001_link") is None


def test_adopting_records_a_batch_without_running_it_after_its_checks_pass(tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    db.execute('CREATE TABLE "Lead" ("id" TEXT PRIMARY KEY)')
    checks = "SELECT 'lead_exists' AS check_name, to_regclass('\"Lead\"') IS NOT NULL AS ok, 'table Lead' AS detail;"
    baseline = make_batch(tmp_path, "0000_base", "CREATE TABLE \"Lead\" (\"id\" TEXT PRIMARY KEY);", checks, BASE_ROLLBACK)

    result = adopt_batch(db_target, baseline, FAST)
    assert result.adopted

    rollback_batch(db_target, baseline, FAST)
    assert db.execute("SELECT to_regclass('\"Lead\"') IS NOT NULL").fetchone() == (True,), "an adopted baseline is never dropped"


def test_adopting_refuses_a_database_that_does_not_match(tmp_path: Path, db_target: Target) -> None:
    checks = "SELECT 'lead_exists' AS check_name, to_regclass('\"Lead\"') IS NOT NULL AS ok, 'table Lead missing' AS detail;"
    baseline = make_batch(tmp_path, "0000_base", "SELECT 1;", checks)
    with pytest.raises(AdoptionRefused, match="cannot adopt batch '0000_base'.*lead_exists: table Lead missing.*nothing was recorded"):
        adopt_batch(db_target, baseline, FAST)


def test_a_second_run_waits_then_names_the_holder_of_the_migration_lock(db_target: Target, base: Batch, link: Batch) -> None:
    with connect(db_target) as holder:
        holder.execute("SET application_name = 'other deploy'")
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEYS)
        started = time.monotonic()
        with pytest.raises(LockBusy, match="pid \\d+, 'other deploy'"):
            apply_batch(db_target, link, FAST)
        assert time.monotonic() - started >= FAST.lock_wait_ms / 1000


def test_a_statement_that_cannot_take_its_lock_is_retried_then_the_batch_is_undone(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    before = snapshot(db)
    with connect(db_target) as blocker:
        blocker.execute("BEGIN")
        blocker.execute('SELECT * FROM "Lead" FOR UPDATE')
        with pytest.raises(LockNotAcquired, match=r"migration.sql:3 could not take its lock in 3 attempts of 200 ms"):
            apply_batch(db_target, link, FAST)
        blocker.execute("ROLLBACK")
    assert snapshot(db) == before


def test_a_blocker_that_ends_within_the_retry_budget_only_delays_the_batch(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    patient = RunSettings(stack="test", lock_timeout_ms=200, lock_retries=50, lock_wait_ms=1000)
    with connect(db_target) as blocker, ThreadPoolExecutor(max_workers=1) as pool:
        blocker.execute("BEGIN")
        blocker.execute('SELECT * FROM "Lead" FOR UPDATE')
        run = pool.submit(apply_batch, db_target, link, patient)
        attempts: set[object] = set()

        def retried() -> bool:  # a second attempt (a new query_start) is waiting: the first one gave up
            attempts.update(start for _, start in lock_waits(db, db_target.dbname, 'ALTER TABLE "Lead" ADD COLUMN%'))
            return len(attempts) >= 2 or run.done()

        wait_until(retried, "the lock-taking step to be retried")
        blocker.execute("ROLLBACK")
        result = run.result()
    assert len(attempts) >= 2
    assert all(c.ok for c in result.checks)


def test_a_terminated_connection_is_reported_and_the_next_run_resumes(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    parked = LINK.replace('CREATE INDEX CONCURRENTLY', f'SELECT pg_advisory_xact_lock({PARK_KEY});\nCREATE INDEX CONCURRENTLY', 1)
    batch = make_batch(tmp_path, "0001_link", parked, LINK_CHECKS, LINK_ROLLBACK)

    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        run = pool.submit(apply_batch, db_target, batch, WAITS_FOR_THE_TEST)
        (pid, _), = wait_until(lambda: lock_waits(db, db_target.dbname, "SELECT pg_advisory_xact_lock%", "advisory"), "step 4 to wait")
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(ConnectionLost, match=r"connection to .* was lost during migration.sql step 4 .*completed steps are recorded, apply again to resume"):
            run.result()
    assert sorted(Ledger(db).finished_steps("0001_link", "migration.sql")) == [1, 2, 3]

    result = apply_batch(db_target, batch, WAITS_FOR_THE_TEST)
    assert all(c.ok for c in result.checks)


def test_checks_that_lose_the_migration_lock_undo_nothing_and_the_next_run_validates_again(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    parked_check = f"SELECT 'parked' AS check_name, (SELECT true FROM (SELECT pg_advisory_xact_lock({PARK_KEY})) p) AS ok, '' AS detail;\n"
    batch = make_batch(tmp_path, "0001_link", LINK, parked_check + LINK_CHECKS, LINK_ROLLBACK)

    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        run = pool.submit(apply_batch, db_target, batch, FAST)
        (checks_pid, _), = wait_until(lambda: lock_waits(db, db_target.dbname, "SELECT 'parked'%", "advisory"), "the checks to wait")
        lock_pid = migration_lock_holder(db)
        db.execute("SELECT pg_terminate_backend(%s)", (lock_pid,))  # the migration lock goes first...
        wait_until(lambda: backend_gone(db, lock_pid), "the migration lock's session to end")
        db.execute("SELECT pg_terminate_backend(%s)", (checks_pid,))  # ...then the checks' connection
        with pytest.raises(ConnectionLost, match=r"the migration lock's connection; another run may now hold the lock\); "
                                                 r"completed steps are recorded, apply again to resume"):
            run.result()

    assert not Ledger(db).undo_pending("0001_link"), "no undo was begun without the lock"
    assert Ledger(db).entry("0001_link") is None
    assert sorted(Ledger(db).finished_steps("0001_link", "migration.sql")) == [s.number for s in plan_steps(batch, "migration.sql")]
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'Lead_customer_id_fkey' AND convalidated").fetchone() == (1,)
    result = apply_batch(db_target, batch, FAST)
    assert [c.name for c in result.checks] == ["parked", "lead_customer_index_valid", "lead_customer_fk_valid"]
    assert all(c.ok for c in result.checks) and Ledger(db).entry("0001_link") is not None


def test_checks_that_cannot_reconnect_undo_nothing_and_the_next_run_validates_again(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch, monkeypatch: pytest.MonkeyPatch) -> None:
    parked_check = f"SELECT 'parked' AS check_name, (SELECT true FROM (SELECT pg_advisory_xact_lock({PARK_KEY})) p) AS ok, '' AS detail;\n"
    batch = make_batch(tmp_path, "0001_link", LINK, parked_check + LINK_CHECKS, LINK_ROLLBACK)
    connects = 0
    real_connect = runner._Run._connect

    def the_second_connect_fails(run: runner._Run) -> psycopg.Connection:  # the run's own, then the reconnect
        nonlocal connects
        connects += 1
        if connects == 2:
            raise TargetUnreachable(db_target.display(), "too many connections for role \"app\"")
        return real_connect(run)
    monkeypatch.setattr(runner._Run, "_connect", the_second_connect_fails)

    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        run = pool.submit(apply_batch, db_target, batch, FAST)
        (checks_pid, _), = wait_until(lambda: lock_waits(db, db_target.dbname, "SELECT 'parked'%", "advisory"), "the checks to wait")
        db.execute("SELECT pg_terminate_backend(%s)", (checks_pid,))
        with pytest.raises(ValidationNotRun, match=r"could not validate batch '0001_link' .*terminating connection due to "
                                                   r"administrator command .*then reconnecting failed: too many connections.*"
                                                   r"no check failed and nothing was undone"):
            run.result()

    assert connects == 2
    assert not Ledger(db).undo_pending("0001_link") and Ledger(db).entry("0001_link") is None
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'Lead_customer_id_fkey' AND convalidated").fetchone() == (1,)
    assert all(c.ok for c in apply_batch(db_target, batch, FAST).checks)


def test_a_step_that_finishes_after_the_migration_lock_was_lost_is_rolled_back_not_recorded(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    parked = f"SELECT pg_advisory_xact_lock({PARK_KEY});\n" + LINK
    batch = make_batch(tmp_path, "0001_link", parked, LINK_CHECKS, LINK_ROLLBACK)
    first = plan_steps(batch, "migration.sql")[0]
    assert not first.autocommit and any('CREATE TABLE "Customer"' in s.sql for s in first.statements)


    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        run = pool.submit(apply_batch, db_target, batch, WAITS_FOR_THE_TEST)
        lose_the_migration_lock_while_parked(db, db_target, holder)  # the step then runs to its end, without the lock
        with pytest.raises(ConnectionLost, match=r"another run may now hold the lock"):
            run.result()

    assert db.execute("""SELECT to_regclass('"Customer"')""").fetchone() == (None,), "the step's work was rolled back"
    assert Ledger(db).finished_steps("0001_link", "migration.sql") == {}
    assert not Ledger(db).undo_pending("0001_link")
    assert all(c.ok for c in apply_batch(db_target, batch, FAST).checks)


def test_the_migration_lock_outlives_a_long_step_on_a_server_that_ends_idle_sessions(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    parked = LINK.replace('CREATE INDEX CONCURRENTLY', f'SELECT pg_advisory_xact_lock({PARK_KEY});\nCREATE INDEX CONCURRENTLY', 1)
    batch = make_batch(tmp_path, "0001_link", parked, LINK_CHECKS, LINK_ROLLBACK)
    database = sql.Identifier(db_target.dbname)

    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        db.execute(sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '1s'").format(database))  # new sessions
        try:
            run = pool.submit(apply_batch, db_target, batch, WAITS_FOR_THE_TEST)
            wait_until(lambda: lock_waits(db, db_target.dbname, "SELECT pg_advisory_xact_lock%", "advisory"), "the step to wait")
            lock_pid = migration_lock_holder(db)
            wait_until(lambda: idle_ms(db, lock_pid) is None or idle_ms(db, lock_pid) >= 3000,
                       "the lock's session to be idle three times the timeout")
            assert idle_ms(db, lock_pid) is not None, "the server ended the lock's session"
            holder.execute("SELECT pg_advisory_unlock(%s)", (PARK_KEY,))
            result = run.result()
        finally:
            db.execute(sql.SQL("ALTER DATABASE {} RESET idle_session_timeout").format(database))
    assert all(c.ok for c in result.checks) and Ledger(db).entry("0001_link") is not None


def idle_ms(db: psycopg.Connection, pid: int) -> float | None:
    """How long the session has been idle (None: it is gone)."""
    row = db.execute("""SELECT CASE WHEN state = 'idle' THEN extract(epoch FROM clock_timestamp() - state_change) * 1000
                               ELSE 0 END FROM pg_stat_activity WHERE pid = %s""", (pid,)).fetchone()
    return None if row is None else float(row[0])


def lose_the_migration_lock_while_parked(db: psycopg.Connection, db_target: Target, holder: psycopg.Connection) -> None:
    """Once a statement of the run waits on PARK_KEY (held by `holder`), the server ends the migration lock's session;
    then the statement is let go."""
    wait_until(lambda: lock_waits(db, db_target.dbname, "SELECT pg_advisory_xact_lock%", "advisory"), "a step to wait")
    lock_pid = migration_lock_holder(db)
    db.execute("SELECT pg_terminate_backend(%s)", (lock_pid,))
    wait_until(lambda: backend_gone(db, lock_pid), "the migration lock's session to end")
    holder.execute("SELECT pg_advisory_unlock(%s)", (PARK_KEY,))


def migration_lock_holder(db: psycopg.Connection) -> int:
    (pid,), = db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objid = %s "
                         "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                         LOCK_KEYS).fetchall()
    return pid


def test_a_run_asked_to_stop_stops_before_the_next_step_keeps_what_it_did_and_the_next_run_resumes(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    asked: list[int] = []

    def stop_before_the_third_step() -> str | None:
        asked.append(1)
        return "the caller is gone" if len(asked) == 3 else None

    stopping = replace(FAST, stop_reason=stop_before_the_third_step)
    with pytest.raises(RunStopped, match=r"stopped before migration.sql step 3 of batch '0001_link': the caller is gone; completed steps are recorded"):
        apply_batch(db_target, link, stopping)

    assert sorted(Ledger(db).finished_steps("0001_link", "migration.sql")) == [1, 2]
    assert db.execute("""SELECT count(*) FROM information_schema.columns WHERE column_name = 'customer_id'""").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'Lead_customer_id_fkey'").fetchone() == (0,)
    assert Ledger(db).entry("0001_link") is None and not Ledger(db).undo_pending("0001_link")
    assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
    assert all(c.ok for c in apply_batch(db_target, link, FAST).checks)


def test_batches_run_as_the_configured_role_which_then_owns_what_they_create(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    role = f"migrator_{db_target.dbname}"
    ident = sql.Identifier(role)
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
    try:
        db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident))
        db.execute(sql.SQL('ALTER TABLE "Lead" OWNER TO {}').format(ident))
        apply_batch(db_target, link, RunSettings(stack="test", role=role, lock_timeout_ms=200, lock_retries=2, lock_wait_ms=1000))

        owners = dict(db.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall())
        assert owners == {"Lead": role, "Customer": role}
        assert Ledger(db).entry("0001_link") is not None
    finally:
        db.execute(sql.SQL("REASSIGN OWNED BY {} TO postgres").format(ident))
        db.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        db.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_user_without_privileges_gets_one_line_naming_the_cause(db_target: Target, db: psycopg.Connection, link: Batch) -> None:
    user = f"weak_{db_target.dbname}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'weak-pw'").format(sql.Identifier(user)))
    db.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db_target.dbname)))
    try:
        weak = Target(db_target.host, db_target.port, db_target.dbname, user, "weak-pw")
        with pytest.raises(DatabaseError, match=r"apply of batch '0001_link' on .* failed: permission denied for database .*SQLSTATE 42501.*check the connecting user's privileges"):
            apply_batch(weak, link, FAST)
    finally:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def test_an_interrupted_undo_is_finished_before_the_corrected_batch_runs(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    migration = 'CREATE TABLE "R" ("id" int);\nCREATE TABLE "S" ("id" int);\nALTER TABLE "Lead" ADD COLUMN "q" int;\n'
    broken = make_batch(tmp_path / "v1", "0001_rs", migration + "SELECT * FROM nope;\n", rollback='DROP TABLE IF EXISTS "R";\nDROP TABLE "Missing";\n')

    with pytest.raises(StatementFailed, match=r"migration.sql:4 failed: .*nope.*undoing it failed too \(rollback.sql:2 failed: .*Missing"):
        apply_batch(db_target, broken, FAST)
    assert Ledger(db).undo_pending("0001_rs"), "the half-done undo is recorded"
    with pytest.raises(UndoFailed, match=r"undoing batch '0001_rs' failed \(rollback.sql:2 failed: .*Missing.*\); .*the next run undoes them first"):
        apply_batch(db_target, broken, FAST)  # still broken: the next run tries the undo again, not the batch

    fixed = make_batch(tmp_path / "v2", "0001_rs", migration,
                       rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS "q";\nDROP TABLE IF EXISTS "S";\nDROP TABLE IF EXISTS "R";\n')
    apply_batch(db_target, fixed, FAST)

    tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"R", "S", "Lead"} <= tables
    assert Ledger(db).entry("0001_rs") is not None and not Ledger(db).undo_pending("0001_rs")


def test_a_run_that_loses_the_migration_lock_while_undoing_says_what_the_batch_failed_on_and_the_next_run_finishes_the_undo(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    migration = 'CREATE TABLE "T" ("id" int);\nALTER TABLE "Lead" ADD COLUMN "q" int;\n'
    broken = make_batch(tmp_path / "v1", "0001_t", migration + "SELECT * FROM nope;\n",
                        rollback=f'SELECT pg_advisory_xact_lock({PARK_KEY});\nALTER TABLE "Lead" DROP COLUMN IF EXISTS "q";\n'
                                 'DROP TABLE IF EXISTS "T";\n')

    with connect(db_target) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        run = pool.submit(apply_batch, db_target, broken, WAITS_FOR_THE_TEST)
        lose_the_migration_lock_while_parked(db, db_target, holder)  # the undo's first step
        with pytest.raises(ConnectionLost, match=r"another run may now hold the lock\), while undoing batch '0001_t' after "
                                                 r"migration.sql:3 failed: relation \"nope\" does not exist .*apply again to resume"):
            run.result()

    assert Ledger(db).undo_pending("0001_t"), "the undo had begun under the lock: the next run finishes it"
    assert public_columns(db, "Lead") >= {"q"}, "the undo's step rolled back with its transaction"
    fixed = make_batch(tmp_path / "v2", "0001_t", migration, rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS "q";\nDROP TABLE IF EXISTS "T";\n')
    assert all(c.ok for c in apply_batch(db_target, fixed, FAST).checks)
    assert Ledger(db).entry("0001_t") is not None and not Ledger(db).undo_pending("0001_t")


def public_columns(db: psycopg.Connection, table: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))}


def test_a_validation_sql_that_does_not_parse_stops_the_batch_before_its_migration_runs(
        tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    unparsable = "SELECT 'x' AS check_name, true AS ok, '' AS detail FROM;"
    batch = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);', unparsable, 'DROP TABLE "Missing";')  # no undo

    with pytest.raises(SqlSyntaxError, match=r"^batch '0001_t' validation.sql:1: syntax error"):
        apply_batch(db_target, batch, FAST)
    assert db.execute("""SELECT to_regclass('"T"')""").fetchone() == (None,), "migration.sql did not run"
    assert Ledger(db).finished_steps("0001_t", "migration.sql") == {} and not Ledger(db).undo_pending("0001_t")


def test_a_validation_sql_without_checks_whose_undo_fails_says_both(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    batch = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);', "SELECT 1;", rollback='DROP TABLE "Missing";\n')

    with pytest.raises(UnsupportedStatement, match=r"^batch '0001_t' validation.sql:1: returns no checks; select rows of "
                                                   r"\(check_name, ok, detail\); undoing it failed too \(rollback.sql:1 "
                                                   r"failed: .*Missing.*\); .*the next run undoes them first"):
        apply_batch(db_target, batch, FAST)
    assert Ledger(db).undo_pending("0001_t")


def test_a_failing_rollback_on_destroy_says_the_batch_is_still_applied(tmp_path: Path, db_target: Target, db: psycopg.Connection, base: Batch) -> None:
    batch = make_batch(tmp_path, "0001_t", 'CREATE TABLE "T" ("id" int);', rollback='DROP TABLE "T";\nDROP TABLE "Nope";\n')
    apply_batch(db_target, batch, FAST)

    with pytest.raises(RollbackFailed, match=r"rolling back batch '0001_t' stopped at rollback.sql:2 failed: .*Nope.*; "
                                             r"1 of 2 rollback steps are done and recorded, the batch stays recorded as applied"):
        rollback_batch(db_target, batch, FAST)
    assert Ledger(db).entry("0001_t") is not None


def test_a_stack_only_rolls_back_what_it_applied(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    apply_batch(db_target, link, FAST)
    other = RunSettings(stack="other-stack", lock_timeout_ms=200, lock_retries=2, lock_wait_ms=1000)

    assert rollback_batch(db_target, link, other) is False
    assert Ledger(db).entry("0001_link") is not None
    assert db.execute("SELECT to_regclass('\"Customer\"') IS NOT NULL").fetchone() == (True,)


def test_create_index_concurrently_waits_for_old_snapshots_without_the_lock_timeout(db_target: Target, db: psycopg.Connection, base: Batch, link: Batch) -> None:
    impatient = RunSettings(stack="test", lock_timeout_ms=100, lock_retries=0, lock_wait_ms=1000)
    with connect(db_target) as reader, ThreadPoolExecutor(max_workers=1) as pool:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM pg_class")  # a long report on an unrelated table
        run = pool.submit(apply_batch, db_target, link, impatient)

        def waited_past_lock_timeout() -> bool:
            return bool(lock_waits(db, db_target.dbname, "CREATE INDEX CONCURRENTLY%", "virtualxid",
                                   waited_ms=10 * impatient.lock_timeout_ms)) or run.done()

        wait_until(waited_past_lock_timeout, "the index build to wait for the open snapshot")
        assert not run.done(), "the build is still waiting for the reader, ten lock_timeouts later"
        reader.execute("COMMIT")
        result = run.result()
    assert all(c.ok for c in result.checks)
