"""Batch 0002's backfill and 0003's gate on a real PostgreSQL: dedupe, resume, re-run, pause, locks, rollback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from bench.legacy import LegacyShape, generate
from infra.migrations.backfill import BackfillProgress, BackfillRun, run_backfill
from infra.migrations import backfill, throttle
from infra.migrations.backfill_errors import BackfillDeclarationInvalid, BackfillPaused, ChunkTooSlow, CommitsStalled
from infra.migrations.errors import ConnectionLost, MigrationError
from infra.migrations.gate import gate_status
from infra.migrations.ledger import Ledger
from infra.migrations.lock import LOCK_KEYS
from infra.migrations.plan import load_batches
from infra.migrations.runner import RunSettings, apply_batch, rollback_batch
from infra.migrations.target import Target
from infra.migrations.throttle import ThrottleSettings
from infra.migrations.steps import split_statements
from infra.migrations.validation import CheckResult, plan_nodes, run_checks
from tests.support.waiting import backend_gone, commit_waits_on_standby, wait_until

ROOT = Path(__file__).resolve().parents[2]
BATCHES = {b.name: b for b in load_batches(ROOT / "sql")}
BASE, MEMORY = BATCHES["0000_baseline"], BATCHES["0001_add_memory_entities"]
BACKFILL, TIGHTEN = BATCHES["0002_backfill_customers"], BATCHES["0003_require_customer_links"]


class Crash(Exception):
    """Stands for the process dying between two chunks."""


def settings(on_progress=None) -> RunSettings:
    run = BackfillRun(on_progress=on_progress, sleep=lambda _s: None)
    return RunSettings(stack="test", backfill=run)


@pytest.fixture
def legacy_db(db_target: Target, db: psycopg.Connection) -> Target:
    apply_batch(db_target, BASE, settings())
    generate(db, LegacyShape(300))
    apply_batch(db_target, MEMORY, settings())
    return db_target


def add_lead(db: psycopg.Connection, phone: str | None, email: str | None, history: str | None = None) -> str:
    return db.execute("""INSERT INTO "Lead" ("phone", "email", "stateMetadata") VALUES (%s, %s, %s) RETURNING "id" """,
                      (phone, email, history)).fetchone()[0]


def customer_of(db: psycopg.Connection, lead: str) -> str | None:
    return db.execute('SELECT "customer_id" FROM "Lead" WHERE "id" = %s', (lead,)).fetchone()[0]


def counts(db: psycopg.Connection) -> tuple[int, ...]:
    return db.execute("""SELECT (SELECT count(*) FROM "Customer"), (SELECT count(*) FROM "Conversation"),
                                (SELECT count(*) FROM "Message"), (SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL)""").fetchone()


def test_one_customer_per_phone_in_any_format_per_email_in_any_case_and_per_lead_without_either(
        db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, settings())
    apply_batch(db_target, MEMORY, settings())
    same_phone = [add_lead(db, p, None) for p in ("+1 (555) 010-0042", "555-010-0042", "5550100042", "+15550100042")]
    same_email = [add_lead(db, None, e) for e in ("Kim@Example.com", " kim@example.COM ")]
    neither = [add_lead(db, None, None), add_lead(db, "", "not-an-email")]

    apply_batch(db_target, BACKFILL, settings())

    assert len({customer_of(db, lead) for lead in same_phone}) == 1
    assert len({customer_of(db, lead) for lead in same_email}) == 1
    assert len({customer_of(db, lead) for lead in neither}) == 2
    assert None not in {customer_of(db, lead) for lead in same_phone + same_email + neither}
    assert counts(db)[0] == 4


def test_a_customer_the_application_created_is_reused_not_duplicated(db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, settings())
    apply_batch(db_target, MEMORY, settings())
    app_customer = db.execute("""INSERT INTO "Customer" ("phone") VALUES ('(555) 010-0077') RETURNING "id" """).fetchone()[0]
    lead = add_lead(db, "555.010.0077", None)

    apply_batch(db_target, BACKFILL, settings())

    assert customer_of(db, lead) == app_customer
    assert counts(db)[0] == 1


def test_chunks_commit_asynchronously_wait_at_most_the_target_for_locks_write_back_what_they_evict_and_use_one_core(
        legacy_db: Target, db: psycopg.Connection) -> None:
    """Seen from inside the chunk's own transaction: a statement trigger on "Lead" notes the session's settings
    (the run's reads, a count, a sweep, the checks, run in the same session, between its chunks)."""
    db.execute("CREATE TABLE seen (synchronous_commit text, lock_timeout text, backend_flush_after text, "
               "statement_timeout text, max_parallel_workers_per_gather text)")
    db.execute("""CREATE FUNCTION note_settings() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                      INSERT INTO seen VALUES (current_setting('synchronous_commit'), current_setting('lock_timeout'),
                                               current_setting('backend_flush_after'), current_setting('statement_timeout'),
                                               current_setting('max_parallel_workers_per_gather'));
                      RETURN NULL; END $$""")
    db.execute('CREATE TRIGGER note_settings AFTER UPDATE ON "Lead" FOR EACH STATEMENT EXECUTE FUNCTION note_settings()')
    apply_batch(legacy_db, BACKFILL, settings())
    assert set(db.execute("SELECT * FROM seen").fetchall()) == {("off", "70ms", "256kB", "90ms", "0")}


def test_the_reads_between_chunks_run_without_parallel_workers_and_the_session_gets_its_setting_back_after(
        legacy_db: Target, db: psycopg.Connection) -> None:
    """A part's count and its sweeps read whole tables between two chunks, in the backfill's session, as the checks
    do (those set it for their own transaction too): seen here from the checks' call, outside any transaction, in a
    run over again from the first chunk."""
    apply_batch(legacy_db, BACKFILL, settings())
    db.execute("DELETE FROM schema_ledger.backfill_progress WHERE batch = %s", (BACKFILL.name,))
    with legacy_db.connect(autocommit=True) as conn:
        before = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]
        assert before != "0"  # the server's default: parallel plans allowed
        during: list[str] = []

        def checks() -> tuple[CheckResult, ...]:
            during.append(conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0])
            return run_checks(conn, BACKFILL, 60_000)
        run_backfill(conn, legacy_db, BACKFILL, BackfillRun(sleep=lambda _s: None), role=None, checks=checks,
                     verify_lock=lambda: None)

        assert during == ["0"]
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == before


def slow_job_updates(db: psycopg.Connection, times: int | None, seconds: float = 1.0) -> None:
    """The next `times` statements updating "Job" (every one: None) take `seconds`, as under a sudden I/O stall; a
    sequence counts them, since a cancelled statement's own writes are rolled back."""
    db.execute("CREATE SEQUENCE slow_updates")
    db.execute(f"""CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                      IF {'true' if times is None else f"nextval('slow_updates') <= {times}"} THEN
                          PERFORM pg_sleep({seconds}); END IF;
                      RETURN NULL; END $$""")
    db.execute('CREATE TRIGGER slow_update BEFORE UPDATE ON "Job" FOR EACH STATEMENT EXECUTE FUNCTION slow_update()')


def test_a_chunk_still_running_at_90_percent_of_the_target_is_cancelled_and_retried_smaller_holding_no_lock_longer(
        legacy_db: Target, db: psycopg.Connection) -> None:
    slow_job_updates(db, times=2)
    seen: list[BackfillProgress | float] = []  # progress events and pauses (s), in order

    apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
        throttle=ThrottleSettings(initial_chunk_rows=100, min_chunk_rows=10), on_progress=seen.append, sleep=seen.append)))

    jobs = [e for e in seen if isinstance(e, BackfillProgress) and e.part == "jobs"]
    first, second, third = jobs[:3]
    for cancelled in (first, second):
        assert " cancelled at " in (cancelled.slowed_because or "")
        assert cancelled.chunk_ms < 500  # its locks went long before the 1 s statement would have ended
        assert cancelled.rows_done == 0 and not cancelled.kept  # and nothing of it was kept, as the event says
    assert second.chunk_rows == first.chunk_rows // 2
    assert third.rows_done > 0 and third.kept
    # Every job linked once, to its lead's customer, and recorded as linked by the backfill.
    assert db.execute("""SELECT count(*) FILTER (WHERE j."customer_id" IS DISTINCT FROM l."customer_id"),
                                count(*) FILTER (WHERE k."customer_id" IS DISTINCT FROM j."customer_id")
                         FROM "Job" j JOIN "Lead" l ON l."id" = j."leadId"
                         LEFT JOIN customer_backfill.job_link k ON k."job_id" = j."id" """).fetchone() == (0, 0)


def test_chunks_of_the_smallest_size_that_keep_running_past_the_timeout_stop_the_backfill_with_what_to_do(
        legacy_db: Target, db: psycopg.Connection) -> None:
    slow_job_updates(db, times=None)
    pauses: list[float] = []
    seen: list[BackfillProgress] = []

    with pytest.raises(ChunkTooSlow) as stopped:
        apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            throttle=ThrottleSettings(initial_chunk_rows=40, min_chunk_rows=10), on_progress=seen.append,
            sleep=pauses.append)))

    assert str(stopped.value).startswith(
        "backfill of batch '0002_backfill_customers' stopped in part 'jobs' at the start of its pass: 8 chunks in a "
        "row of 10 rows, the smallest allowed, ran past their limit (")
    assert seen[-1].part == "jobs" and " cancelled at " in (seen[-1].slowed_because or "")  # the last one reported
    assert pauses[-1] == 5.0  # backed off in between, up to the longest pause
    assert counts(db)[3] == 0  # the customers part before it is kept
    assert db.execute("SELECT count(*) FROM customer_backfill.job_link").fetchone()[0] == 0


def test_a_chunk_cancelled_by_someone_else_is_not_retried(legacy_db: Target, db: psycopg.Connection) -> None:
    """pg_cancel_backend from an operator: the chunk's statement fails as a cancel, before any timeout."""
    db.execute("CREATE SEQUENCE cancels")
    db.execute("""CREATE FUNCTION cancel_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                      PERFORM nextval('cancels');
                      RAISE EXCEPTION 'canceling statement due to user request' USING ERRCODE = 'query_canceled';
                  END $$""")
    db.execute('CREATE TRIGGER cancel_update BEFORE UPDATE ON "Job" FOR EACH STATEMENT EXECUTE FUNCTION cancel_update()')

    with pytest.raises(MigrationError, match="canceling statement due to user request"):
        apply_batch(legacy_db, BACKFILL, settings())

    assert db.execute("SELECT last_value FROM cancels").fetchone()[0] == 1  # one attempt, no retry


def test_a_crash_between_chunks_resumes_after_the_last_committed_chunk_without_duplicates(
        legacy_db: Target, db: psycopg.Connection) -> None:
    chunks: list[BackfillProgress] = []

    def die_after_three(event: BackfillProgress) -> None:
        chunks.append(event)
        if len(chunks) == 3:
            raise Crash

    small = RunSettings(stack="test", backfill=BackfillRun(fixed_chunk_rows=50, on_progress=die_after_three,
                                                           sleep=lambda _s: None))
    with pytest.raises(Crash):
        apply_batch(legacy_db, BACKFILL, small)
    done = db.execute("SELECT rows_done FROM schema_ledger.backfill_progress WHERE part = 'customers'").fetchone()[0]
    assert done == 150

    resumed: list[BackfillProgress] = []
    apply_batch(legacy_db, BACKFILL, settings(resumed.append))

    first_customers = next(e for e in resumed if e.part == "customers")
    assert first_customers.rows_done > 150  # started after the three committed chunks
    assert db.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == \
        db.execute("SELECT count(*) FROM customer_backfill.customer_key WHERE created").fetchone()[0]


def test_a_backfill_that_lost_the_migration_lock_before_its_first_chunk_writes_nothing_and_the_next_run_does_it_all(
        legacy_db: Target, db: psycopg.Connection) -> None:
    lost: list[int] = []

    def lose_the_lock_once() -> bool:  # asked before every chunk: here, the server ends the lock's session first
        if not lost:
            (pid,), = db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s "
                                 "AND objid = %s AND database = (SELECT oid FROM pg_database WHERE datname = "
                                 "current_database())", LOCK_KEYS).fetchall()
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_until(lambda: backend_gone(db, pid), "the migration lock's session to end")
            lost.append(pid)
        return False

    losing = RunSettings(stack="test", backfill=BackfillRun(paused=lose_the_lock_once, sleep=lambda _s: None))
    with pytest.raises(ConnectionLost, match=r"another run may now hold the lock"):
        apply_batch(legacy_db, BACKFILL, losing)

    assert db.execute("SELECT count(*) FROM schema_ledger.backfill_progress").fetchone() == (0,)
    assert db.execute('SELECT count(*) FROM "Lead" WHERE "customer_id" IS NOT NULL').fetchone() == (0,)
    assert not Ledger(db).undo_pending(BACKFILL.name)
    result = apply_batch(legacy_db, BACKFILL, settings())
    assert all(c.ok for c in result.checks)


def test_rows_written_behind_the_cursor_during_the_backfill_are_picked_up_by_the_sweep(
        legacy_db: Target, db: psycopg.Connection) -> None:
    written: list[str] = []

    def app_writes_during_the_pass(event: BackfillProgress) -> None:
        if event.part == "customers" and event.phase == "pass" and not written:
            written.append(add_lead(db, None, "late@example.com", '{"history": [{"role": "user", "text": "hi"}]}'))
            db.execute("""UPDATE "Lead" SET "id" = '0' WHERE "id" = %s""", (written[0],))  # behind any cursor
            written[0] = "0"

    result = apply_batch(legacy_db, BACKFILL, settings(app_writes_during_the_pass))

    assert customer_of(db, "0") is not None
    assert db.execute("""SELECT count(*) FROM customer_backfill.message WHERE legacy_ref = 'state:0:1'""").fetchone()[0] == 1
    assert all(c.ok for c in result.checks)


def test_a_held_lock_makes_the_throttle_back_off_and_the_backfill_finishes_once_it_is_released(
        legacy_db: Target, db: psycopg.Connection) -> None:
    blocker = legacy_db.connect()
    blocker.execute('LOCK TABLE "Job" IN SHARE MODE')  # blocks the jobs part's row updates
    seen: list[BackfillProgress] = []

    def release_once_it_backed_off(event: BackfillProgress) -> None:
        seen.append(event)
        if event.slowed_because and event.slowed_because.startswith("lock wait") and not blocker.closed:
            blocker.rollback()
            blocker.close()

    apply_batch(legacy_db, BACKFILL, settings(release_once_it_backed_off))

    backed_off = [e for e in seen if e.slowed_because and e.slowed_because.startswith("lock wait")]
    assert backed_off and backed_off[0].part == "jobs"
    assert counts(db)[3] == 0


def test_a_stretched_chunk_that_keeps_an_application_write_waiting_is_cancelled_and_the_write_goes_on(
        legacy_db: Target, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks nobody waited on stretch their limits (after CALM_CHUNKS chunks, none here: a chunk of 10 rows is
    over before the watch's first look, so none would count); the fifth chunk of the jobs part holds its rows' locks
    and stays running, parked in a trigger until the test lets it go. The
    application updates the first 100 jobs: it waits on that chunk's rows, and returns while the chunk is still
    parked (the test lets it go only after), because the lock watch cancelled the chunk after the patience (half the
    4 s target; its statement timeout would come at 40 s, and says so otherwise). The chunk is done again once the
    test lets it go; the application's updates are kept."""
    monkeypatch.setattr(throttle, "CALM_CHUNKS", 0)
    db.execute("CREATE SEQUENCE job_chunks")
    db.execute("""CREATE FUNCTION park_fifth_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                      IF nextval('job_chunks') = 5 THEN  -- a sequence: a cancelled chunk does not count again
                          WHILE NOT pg_try_advisory_xact_lock(4242) LOOP PERFORM pg_sleep(0.01); END LOOP;
                      END IF;
                      RETURN NULL; END $$""")
    db.execute('CREATE TRIGGER park_fifth_chunk AFTER UPDATE ON "Job" FOR EACH STATEMENT EXECUTE FUNCTION park_fifth_chunk()')
    db.execute("SELECT pg_advisory_lock(4242)")
    seen: list[BackfillProgress] = []
    stretched = ThrottleSettings(target_write_latency_ms=4_000, initial_chunk_rows=10, min_chunk_rows=10,
                                 max_chunk_rows=10)
    run = RunSettings(stack="test", backfill=BackfillRun(throttle=stretched, on_progress=seen.append,
                                                         sleep=lambda _s: None))
    outcome: list[BaseException | None] = []

    def backfill_in_background() -> None:
        try:
            apply_batch(legacy_db, BACKFILL, run)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - asserted below
            outcome.append(err)
    worker = threading.Thread(target=backfill_in_background, daemon=True)
    worker.start()
    wait_until(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
                                  (legacy_db.dbname,)).fetchone(), "the fifth chunk to park")
    with legacy_db.connect(autocommit=True) as app:
        app.execute("SET statement_timeout = '120s'")  # a watch that never cancels fails the test, not hangs it
        app.execute("""UPDATE "Job" SET "status" = 'completed'
                       WHERE "id" IN (SELECT "id" FROM "Job" ORDER BY "id" LIMIT 100)""")
    db.execute("SELECT pg_advisory_unlock(4242)")
    worker.join(120)

    assert outcome == [None]
    yielded = [e for e in seen if e.part == "jobs" and (e.slowed_because or "").startswith("a session waited")]
    assert yielded and " cancelled at " in (yielded[0].slowed_because or "")
    assert yielded[0].rows_done == 40  # the four chunks before it; nothing of the fifth was kept
    assert db.execute("""SELECT count(*) FILTER (WHERE "status" = 'completed'), count(*) FILTER (WHERE "customer_id" IS NULL)
                         FROM (SELECT * FROM "Job" ORDER BY "id" LIMIT 100) AS j""").fetchone() == (100, 0)


def test_commits_stalling_on_a_standby_that_is_gone_make_the_throttle_back_off_though_no_lock_is_held(
        legacy_db: Target, db: psycopg.Connection, standby_gone: Callable[[bool], None]) -> None:
    """A stall of every durable commit shows in none of the chunk's own measures: the chunks commit without
    waiting for their WAL, and hold no lock anyone waits for. After the first chunk, the server starts waiting
    for a synchronous standby that is not there, and the test waits until the commit watch's probe has waited
    over half the 100 ms target; the next chunk's decision backs off. Then commits go through again, and the
    backfill finishes."""
    seen: list[BackfillProgress | float] = []  # progress events and pauses (s), in order
    stalled = [False]

    def on(event: BackfillProgress) -> None:
        seen.append(event)
        if not stalled[0]:
            stalled[0] = True
            standby_gone(True)
            wait_until(lambda: commit_waits_on_standby(db, legacy_db.dbname, 100), "the commit watch to wait 100 ms")
        elif (event.slowed_because or "").startswith("commits stalling"):
            standby_gone(False)
    small = ThrottleSettings(initial_chunk_rows=100, min_chunk_rows=10)

    apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
        throttle=small, on_progress=on, sleep=seen.append)))

    first, second, pause = seen[0], seen[1], seen[2]
    assert isinstance(first, BackfillProgress) and not first.slowed_because
    assert isinstance(second, BackfillProgress)
    assert (second.slowed_because or "").startswith("commits stalling: a commit waited")
    assert pause == 0.1  # the backoff's first pause: the target
    assert second.chunk_rows == first.chunk_rows  # the size stays; the pause lets the disk or standby catch up
    assert counts(db)[3] == 0  # and it finished


def test_a_commit_that_never_returns_stops_the_backfill_with_what_was_done_kept(
        legacy_db: Target, db: psycopg.Connection, standby_gone: Callable[[bool], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A synchronous standby that stays gone: after the first chunk, the test waits until the commit watch's probe
    has waited past the limit (lowered to 200 ms here). The backfill stops with CommitsStalled before its next
    chunk, without pausing first; the chunk done is kept, the waiting probe is cancelled, and once commits go
    through again the next run finishes."""
    monkeypatch.setattr(backfill, "MAX_COMMIT_WAIT_S", 0.2)
    seen: list[BackfillProgress] = []
    pauses: list[float] = []

    def on(event: BackfillProgress) -> None:
        seen.append(event)
        if len(seen) == 1:
            standby_gone(True)
            wait_until(lambda: commit_waits_on_standby(db, legacy_db.dbname, 300), "the commit watch to wait 300 ms")
        else:  # it went on: let its commits through, or the ledger's would wait for the standby forever
            standby_gone(False)
            pytest.fail("the backfill ran another chunk while every commit was stalled")
    small = ThrottleSettings(initial_chunk_rows=100, min_chunk_rows=10)

    with pytest.raises(CommitsStalled) as stopped:
        apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            throttle=small, on_progress=on, sleep=pauses.append)))

    assert stopped.value.part == "customers" and stopped.value.waited_ms > 200
    assert pauses == []  # stopped right away, not after a backoff
    assert not commit_waits_on_standby(db, legacy_db.dbname, 0)  # the probe's wait was cancelled on the way out
    standby_gone(False)
    kept = db.execute("SELECT rows_done FROM schema_ledger.backfill_progress WHERE part = 'customers'").fetchone()[0]
    assert kept == seen[0].rows_done == 100
    apply_batch(legacy_db, BACKFILL, settings())
    assert counts(db)[3] == 0


def test_rollback_removes_what_the_backfill_made_and_keeps_what_the_application_wrote(
        legacy_db: Target, db: psycopg.Connection) -> None:
    before = counts(db)
    apply_batch(legacy_db, BACKFILL, settings())
    app_customer = db.execute("""INSERT INTO "Customer" ("name") VALUES ('app') RETURNING "id" """).fetchone()[0]
    app_lead = add_lead(db, "555-999-0000", None)
    db.execute('UPDATE "Lead" SET "customer_id" = %s WHERE "id" = %s', (app_customer, app_lead))
    relinked = db.execute("""UPDATE "Lead" SET "customer_id" = %s
                             WHERE "id" = (SELECT min("id") FROM "Lead" WHERE "id" <> %s) RETURNING "id" """,
                          (app_customer, app_lead)).fetchone()[0]

    rollback_batch(legacy_db, BACKFILL, settings())

    assert customer_of(db, app_lead) == app_customer
    assert customer_of(db, relinked) == app_customer  # re-linked by the application: left alone
    assert db.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == 1
    assert db.execute('SELECT count(*) FROM "Message"').fetchone()[0] == before[2] == 0
    assert db.execute("SELECT to_regnamespace('customer_backfill')").fetchone()[0] is None


def test_the_tighten_gate_stays_closed_while_the_setting_is_off_or_a_null_remains(
        legacy_db: Target, db: psycopg.Connection) -> None:
    closed = gate_status(legacy_db, TIGHTEN, frozenset())
    assert not closed.open
    assert closed.setting_off == "appWritesCustomerId"
    assert any(r.startswith("leads without a customer: 300") for r in closed.unmet)

    apply_batch(legacy_db, BACKFILL, settings())
    assert gate_status(legacy_db, TIGHTEN, frozenset({"appWritesCustomerId"})).open
    add_lead(db, None, None)
    still = gate_status(legacy_db, TIGHTEN, frozenset({"appWritesCustomerId"}))
    assert (still.setting_off, still.unmet) == (None, ("leads without a customer: 1",))


def test_tighten_makes_the_links_not_null_and_restricts_deleting_a_customer_with_leads(
        legacy_db: Target, db: psycopg.Connection) -> None:
    apply_batch(legacy_db, BACKFILL, settings())
    apply_batch(legacy_db, TIGHTEN, settings())

    with pytest.raises(psycopg.errors.NotNullViolation):
        add_lead(db, None, None)
    # PostgreSQL 15 reports a RESTRICT key as a foreign-key violation (23503), later versions as 23001.
    with pytest.raises((psycopg.errors.RestrictViolation, psycopg.errors.ForeignKeyViolation)):
        db.execute('DELETE FROM "Customer" WHERE "id" = (SELECT "customer_id" FROM "Lead" LIMIT 1)')
    rules = db.execute("""SELECT conname, confdeltype FROM pg_constraint
                          WHERE conname IN ('Lead_customer_id_fkey', 'Job_customer_id_fkey') ORDER BY 1""").fetchall()
    assert rules == [("Job_customer_id_fkey", "r"), ("Lead_customer_id_fkey", "r")]


def rerun(target: Target, db: psycopg.Connection, on_progress=None) -> tuple[CheckResult, ...]:
    """The backfill of 0002 again from the first key of every part (its progress forgotten), as a run after
    a lost ledger would: every chunk function meets rows it has already done."""
    db.execute("DELETE FROM schema_ledger.backfill_progress WHERE batch = %s", (BACKFILL.name,))
    with target.connect(autocommit=True) as conn:
        return run_backfill(conn, target, BACKFILL, BackfillRun(on_progress=on_progress, sleep=lambda _s: None),
                            role=None, checks=lambda: run_checks(conn, BACKFILL, 60_000), verify_lock=lambda: None)


def test_a_rerun_of_a_finished_backfill_duplicates_nothing_and_picks_up_what_the_application_wrote_since(
        legacy_db: Target, db: psycopg.Connection) -> None:
    apply_batch(legacy_db, BACKFILL, settings())
    done = counts(db)
    moved = db.execute("SELECT count(*) FROM customer_backfill.message").fetchone()[0]
    repeat_customer = db.execute('SELECT "phone" FROM "Lead" WHERE "phone" IS NOT NULL ORDER BY "id" LIMIT 1').fetchone()[0]
    known = add_lead(db, repeat_customer, None)  # an old contact, written by a not yet updated application
    new = add_lead(db, "555-777-0001", None, '{"history": [{"role": "user", "text": "a"}, {"role": "bot", "text": "b"}]}')

    checks = rerun(legacy_db, db)

    assert all(c.ok for c in checks)
    customers, conversations, messages, unlinked = counts(db)
    assert (customers, conversations, messages, unlinked) == (done[0] + 1, done[1] + 1, done[2] + 2, 0)
    assert db.execute("SELECT count(*) FROM customer_backfill.message").fetchone()[0] == moved + 2
    first = db.execute('SELECT "customer_id" FROM "Lead" WHERE "phone" = %s AND "id" <> %s LIMIT 1',
                       (repeat_customer, known)).fetchone()[0]
    assert customer_of(db, known) == first  # the customer the first run created for that phone
    assert customer_of(db, new) is not None


def test_pausing_from_config_stops_a_running_backfill_between_chunks_and_the_next_run_continues_there(
        legacy_db: Target, db: psycopg.Connection) -> None:
    paused = [False]
    chunks: list[BackfillProgress] = []

    def operator_pauses_after_two_chunks(event: BackfillProgress) -> None:
        chunks.append(event)
        if sum(e.phase == "pass" for e in chunks) == 2:
            paused[0] = True

    run = BackfillRun(fixed_chunk_rows=40, on_progress=operator_pauses_after_two_chunks, sleep=lambda _s: None,
                      paused=lambda: paused[0])
    with pytest.raises(BackfillPaused, match=r"paused \(by the stack's backfill pause setting\) before a chunk of part 'customers' \(80/300 rows"):
        apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=run))

    stopped_at = db.execute("SELECT rows_done, pass_done FROM schema_ledger.backfill_progress "
                            "WHERE part = 'customers'").fetchone()
    assert stopped_at == (80, False)  # two whole chunks, committed
    assert db.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = %s", (BACKFILL.name,)).fetchone()[0] == 0
    assert counts(db)[3] == 300 - 80

    resumed: list[BackfillProgress] = []
    result = apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
        fixed_chunk_rows=40, on_progress=resumed.append, sleep=lambda _s: None, paused=lambda: False)))

    assert next(e for e in resumed if e.part == "customers").rows_done == 120  # the third chunk came next
    assert all(c.ok for c in result.checks)
    assert counts(db)[3] == 0
    assert db.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == \
        db.execute("SELECT count(*) FROM customer_backfill.customer_key WHERE created").fetchone()[0]


@dataclass(frozen=True)
class ChecksWal:
    """The WAL records the checks wrote as they ran (EXPLAIN (ANALYZE, WAL) of each statement): in all, and in their
    sequential scans (the whole-table reads); and the pages holding rows the application wrote that nobody had read
    before the checkpoint. With data checksums, the first hint bit set on a page after a checkpoint writes a record
    (FPI_FOR_HINT: the page's image, in production), as pruning a page does."""

    records: int
    in_seq_scans: int
    unread_pages: int


def backfill_with_a_checkpoint_before_the_checks(target: Target, db: psycopg.Connection
                                                 ) -> tuple[list[BackfillProgress], ChecksWal]:
    """The whole backfill, with, once its last part is done, rows the application wrote (audit rows no part moves)
    and a CHECKPOINT (a long backfill has one somewhere); its progress events, and the WAL its checks then wrote."""
    events: list[BackfillProgress] = []
    measured: list[tuple[int, int]] = []

    def hear(event: BackfillProgress) -> None:
        events.append(event)
        if (event.part, event.phase) == ("audit_messages", "done"):
            db.execute("""INSERT INTO "Audit" ("action", "data") SELECT 'lead.viewed', jsonb_build_object('n', n)
                          FROM generate_series(1, 3000) AS n""")
            db.execute("CHECKPOINT")

    def checks(conn: psycopg.Connection) -> tuple[CheckResult, ...]:
        plans = []
        with conn.transaction(force_rollback=True):
            for _node, statement, _line in split_statements(BACKFILL, "validation.sql"):
                plans.append(conn.execute(f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) {statement}").fetchone()[0][0]["Plan"])
        if not measured:
            measured.append((sum(p["WAL Records"] for p in plans),
                             sum(n["WAL Records"] for p in plans for n in plan_nodes(p) if n["Node Type"] == "Seq Scan")))
        return run_checks(conn, BACKFILL, 60_000)

    with pytest.raises(BackfillPaused):  # migration.sql applied, paused before the first chunk
        apply_batch(target, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(paused=lambda: True)))
    for (table,) in db.execute("""SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                                  WHERE schemaname IN ('public', 'customer_backfill')""").fetchall():
        db.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")  # no plan changes, no one else reading
    with target.connect(autocommit=True) as conn:
        # Small reads to start with (from 10 rows' worth of pages): every table takes several.
        run = BackfillRun(throttle=ThrottleSettings(initial_chunk_rows=10, min_chunk_rows=10), on_progress=hear,
                          sleep=lambda _s: None)
        run_backfill(conn, target, BACKFILL, run, role=None, checks=lambda: checks(conn), verify_lock=lambda: None)
    unread = db.execute("""SELECT count(DISTINCT (ctid::text::point)[0]) FROM "Audit" WHERE "action" = 'lead.viewed'""")
    return events, ChecksWal(*measured[0], unread.fetchone()[0])


def test_before_its_checks_the_backfill_reads_every_page_they_read_so_that_their_scans_write_no_wal(
        legacy_db: Target, db: psycopg.Connection) -> None:
    events, wal = backfill_with_a_checkpoint_before_the_checks(legacy_db, db)

    assert wal.in_seq_scans == 0
    # What is left: the spot checks' index probes (a heap fetch or an index entry marked dead: a record per page).
    assert wal.records < wal.unread_pages
    settled = [e for e in events if e.phase == "settle"]
    assert settled and all(e.unit == "pages" for e in settled)
    assert {"Lead", "Audit"} <= {e.part for e in settled}  # the tables the checks scan in full at any size
    lead = [(e.rows_done, e.rows_total) for e in settled if e.part == "Lead"]
    assert len(lead) > 1 and lead == sorted(lead) and lead[-1][0] == lead[-1][1]  # range by range, to its last page
    last_chunk = max(i for i, e in enumerate(events) if e.phase in ("pass", "sweep"))
    assert last_chunk < events.index(settled[0])  # after every chunk


def test_without_those_reads_the_checks_write_wal_for_every_page_they_are_first_to_read(
        legacy_db: Target, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The measure above can see them: no table settled, the checks are the first to read the pages."""
    monkeypatch.setattr(backfill.settle, "heaps", lambda _conn, _tables: [])
    events, wal = backfill_with_a_checkpoint_before_the_checks(legacy_db, db)

    assert wal.in_seq_scans >= wal.unread_pages > 0
    assert not [e for e in events if e.phase == "settle"]


def test_pausing_while_the_checked_tables_are_read_keeps_every_chunk_and_the_next_run_reads_and_validates(
        legacy_db: Target, db: psycopg.Connection) -> None:
    reading: list[BackfillProgress] = []

    def hear(event: BackfillProgress) -> None:
        if event.phase == "settle":
            reading.append(event)

    with pytest.raises(BackfillPaused) as paused:
        apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            on_progress=hear, sleep=lambda _s: None, paused=lambda: bool(reading))))

    assert "after its chunks, while reading table" in str(paused.value)
    assert counts(db)[3] == 0  # every lead linked, and kept
    assert db.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = %s", (BACKFILL.name,)).fetchone()[0] == 0
    again: list[BackfillProgress] = []
    result = apply_batch(legacy_db, BACKFILL, settings(again.append))
    assert all(c.ok for c in result.checks) and not result.already_applied
    assert not [e for e in again if e.phase == "pass"]  # no part passed through again
    assert {"Lead", "Audit"} <= {e.part for e in again if e.phase == "settle"}  # the reads, from the start


def test_a_table_someone_holds_locked_is_left_to_the_checks_instead_of_waited_for(
        legacy_db: Target, db: psycopg.Connection) -> None:
    events: list[BackfillProgress] = []
    with legacy_db.connect() as holder:

        def hear(event: BackfillProgress) -> None:
            if event.phase == "settle" and not [e for e in events if e.phase == "settle"]:
                holder.execute('LOCK TABLE "Audit" IN ACCESS EXCLUSIVE MODE')  # e.g. a rewrite queued meanwhile
            if (event.part, event.phase) == ("Audit", "skipped"):
                holder.commit()  # released: the checks can read it
            events.append(event)

        result = apply_batch(legacy_db, BACKFILL, settings(hear))

    assert all(c.ok for c in result.checks)
    assert ("Audit", "skipped") in [(e.part, e.phase) for e in events]
    assert ("Lead", "done") in [(e.part, e.phase) for e in events if e.unit == "pages"]
    waits = [e for e in events if e.part == "Audit" and e.phase == "settle"]
    assert len(waits) == backfill.SETTLE_LOCK_WAITS and all(e.rows_done == 0 for e in waits)
    assert all("lock wait" in (e.slowed_because or "") for e in waits)


def test_chunks_go_on_beside_a_vacuum_of_their_table_and_the_throttle_hears_of_it_before_each_chunk(
        legacy_db: Target, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    pinner, vacuum = legacy_db.connect(), legacy_db.connect(autocommit=True)
    vacuuming = threading.Thread(target=vacuum.execute, args=('VACUUM (FREEZE) "Lead"',))

    def before_the_first_chunk() -> bool:
        """Once migration.sql has run: a VACUUM (FREEZE) of "Lead" that cannot end while a cursor of the test's
        keeps a page of it pinned."""
        if not vacuuming.is_alive() and pinner.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            pinner.execute('DECLARE pin CURSOR FOR SELECT "id" FROM "Lead"')
            pinner.execute("FETCH 1 FROM pin")
            vacuuming.start()
            wait_until(lambda: db.execute("SELECT wait_event = 'BufferPin' FROM pg_stat_activity WHERE pid = %s",
                                          (vacuum.info.backend_pid,)).fetchone()[0],
                       "the vacuum waiting for the pinned page")
        return False

    heard: list[tuple[str, str | None]] = []  # before each chunk: (its part, the table a vacuum works on)
    kept_in: list[tuple[str, float, str | None]] = []  # the limits brought back to the budget: part, budget, why
    events: list[BackfillProgress] = []
    before_chunk, told = backfill._Filler._before_chunk, throttle.AdaptiveThrottle.beside_vacuum

    def chunk_of(self: backfill._Filler, where: backfill._Where) -> None:
        heard.append((where.name, None))
        before_chunk(self, where)

    def beside_vacuum(self: throttle.AdaptiveThrottle, table: str | None) -> None:
        heard[-1] = (heard[-1][0], table)
        stretched_ms = self.limits.budget_ms
        told(self, table)
        if self.limits.budget_ms < stretched_ms:
            kept_in.append((heard[-1][0], self.limits.budget_ms, self.last_slowdown))

    monkeypatch.setattr(backfill._Filler, "_before_chunk", chunk_of)
    monkeypatch.setattr(throttle.AdaptiveThrottle, "beside_vacuum", beside_vacuum)
    monkeypatch.setattr(throttle, "CALM_CHUNKS", 0)  # the limits would stretch at once: the vacuum keeps them in
    run = BackfillRun(on_progress=events.append, sleep=lambda _s: None, paused=before_the_first_chunk)
    try:
        result = apply_batch(legacy_db, BACKFILL, RunSettings(stack="test", backfill=run))
        still_held = vacuuming.is_alive()  # the whole backfill ran beside it
    finally:
        pinner.close()  # the page is let go: the vacuum ends
        if vacuuming.ident:
            vacuuming.join()
        vacuum.close()

    assert still_held and all(c.ok for c in result.checks)
    assert not any(e.phase == "waiting" for e in events)  # no chunk waited for it
    tables = {p.name: p.table for p in backfill.load_spec(BACKFILL).parts}
    assert {part for part, _ in heard} >= set(tables)
    for part, table in heard:
        if part in tables:
            assert table == ('"Lead"' if tables[part] == "Lead" else None), part  # only "Lead" is being vacuumed
    why = 'a vacuum is working on "Lead": chunks keep to the 70 ms budget until it ends'
    assert kept_in == [("customers", 70.0, why), ("lead_history", 70.0, why)]  # once each: then they stay there
    assert why in {e.slowed_because for e in events if e.part == "customers"}  # and progress says so
    assert counts(db)[3] == 0  # every lead was linked


def test_a_malformed_backfill_declaration_stops_the_batch_before_its_migration_runs(
        legacy_db: Target, db: psycopg.Connection) -> None:
    typo = replace(BACKFILL, backfill='[part]\nname = "customers"\ntable = "Lead"\nkey = "id"\n'
                                       'chunk = "customer_backfill.link_leads"\n')

    with pytest.raises(BackfillDeclarationInvalid, match=r"backfill.toml is invalid: declare each part as a \[\[part\]\]"):
        apply_batch(legacy_db, typo, settings())

    assert db.execute("SELECT to_regnamespace('customer_backfill')").fetchone()[0] is None  # migration.sql never ran
