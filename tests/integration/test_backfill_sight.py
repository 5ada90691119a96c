"""What a login user without the privileges of pg_read_all_stats lets the backfill's throttle see, on a real
PostgreSQL: autovacuum's (or anyone else's) vacuum of the part's table is hidden from it, so the chunks cannot make
way for it; the run says so once as it starts, and the preview's outlook says so before."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bench.legacy import LegacyShape, generate
from infra.migrations.backfill import BackfillProgress, BackfillRun
from infra.migrations.backfill_errors import BackfillPaused
from infra.migrations.backfill_outlook import read_outlooks
from infra.migrations.ledger import Ledger
from infra.migrations.plan import load_batches
from infra.migrations.runner import RunSettings, apply_batch
from infra.migrations.sight import stats_sight
from infra.migrations.target import Target
from infra.migrations.throttle import ThrottleSettings
from infra.migrations.vacuum_watch import VacuumWatch
from tests.support.waiting import wait_until

BATCHES = {b.name: b for b in load_batches(Path(__file__).resolve().parents[2] / "sql")}
BASE, MEMORY = BATCHES["0000_baseline"], BATCHES["0001_add_memory_entities"]
BACKFILL = BATCHES["0002_backfill_customers"]
PASSWORD = "sight-pw"


def quick() -> RunSettings:
    return RunSettings(stack="test", backfill=BackfillRun(sleep=lambda _s: None))


@contextmanager
def login_user(db: psycopg.Connection, target: Target, name: str) -> Iterator[Target]:
    """A login user of the test server with no other privilege; what it comes to own is given back, then it is
    dropped (roles outlive the test's database)."""
    user = sql.Identifier(f"{name}_{target.dbname}")
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, sql.Literal(PASSWORD)))
    try:
        yield Target(target.host, target.port, target.dbname, f"{name}_{target.dbname}", PASSWORD)
    finally:
        db.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(user))
        db.execute(sql.SQL("DROP OWNED BY {}").format(user))
        db.execute(sql.SQL("DROP ROLE {}").format(user))


def legacy_schema_owned_by(owner: Target, db: psycopg.Connection, target: Target) -> None:
    """The application's schema created by `owner` (the baseline, then 0001), with legacy data seeded between the
    two, so that it owns what the backfill changes."""
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(target.dbname),
                                                                   sql.Identifier(owner.user)))
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner.user)))
    apply_batch(owner, BASE, quick())
    generate(db, LegacyShape(60))
    apply_batch(owner, MEMORY, quick())


@contextmanager
def vacuum_held_on_lead(target: Target, db: psycopg.Connection) -> Iterator[None]:
    """A VACUUM (FREEZE) of "Lead" that cannot end while a cursor keeps one of its pages pinned."""
    pinner, vacuum = target.connect(), target.connect(autocommit=True)
    vacuuming = threading.Thread(target=vacuum.execute, args=('VACUUM (FREEZE) "Lead"',))
    try:
        pinner.execute('DECLARE pin CURSOR FOR SELECT "id" FROM "Lead"')
        pinner.execute("FETCH 1 FROM pin")
        vacuuming.start()
        wait_until(lambda: db.execute("SELECT wait_event = 'BufferPin' FROM pg_stat_activity WHERE pid = %s",
                                      (vacuum.info.backend_pid,)).fetchone()[0], "the vacuum waiting for the pinned page")
        yield
    finally:
        pinner.close()
        if vacuuming.ident:
            vacuuming.join()
        vacuum.close()


def test_a_vacuum_of_the_parts_table_is_hidden_from_a_login_user_until_it_has_pg_monitor(
        db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, quick())
    generate(db, LegacyShape(50))
    with login_user(db, db_target, "watcher") as watcher, vacuum_held_on_lead(db_target, db):
        with watcher.connect(autocommit=True) as plain:
            watch = VacuumWatch(plain)
            watch.watch(("Lead",))
            assert watch.working_on() is None
            assert stats_sight(plain).blind_spot is not None

        db.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(watcher.user)))
        with watcher.connect(autocommit=True) as monitoring:
            watch = VacuumWatch(monitoring)
            watch.watch(("Lead",))
            assert watch.working_on() == '"Lead"'
            assert stats_sight(monitoring).blind_spot is None


def test_a_backfill_run_by_a_login_user_without_those_privileges_nor_the_replication_view_says_so_once_and_completes(
        db_target: Target, db: psycopg.Connection) -> None:
    with login_user(db, db_target, "owner") as owner:
        legacy_schema_owned_by(owner, db, db_target)
        db.execute("REVOKE SELECT ON pg_catalog.pg_stat_replication FROM PUBLIC")  # as a service may withhold it
        assert read_outlooks(owner, [BACKFILL])[BACKFILL.name].sight.blind_spot is not None  # what the preview shows

        notes: list[str] = []
        apply_batch(owner, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            sleep=lambda _s: None, on_note=notes.append)))

        assert notes == [f'backfill {BACKFILL.name}: the login user "{owner.user}" cannot see which table autovacuum '
                         "is working on nor how far streaming replicas have replayed, so the chunks do not make way "
                         "for autovacuum nor wait for a lagging replica; grant it pg_monitor (or pg_read_all_stats) "
                         "and SELECT on pg_catalog.pg_stat_replication to let them"]
        assert db.execute('SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL').fetchone()[0] == 0


def test_a_superuser_is_told_nothing_and_the_preview_reads_where_a_stopped_run_left_each_part(
        db_target: Target, db: psycopg.Connection) -> None:
    apply_batch(db_target, BASE, quick())
    generate(db, LegacyShape(60))
    apply_batch(db_target, MEMORY, quick())
    db.execute('ANALYZE "Lead", "Job", "Audit"')
    notes: list[str] = []
    kept: list[BackfillProgress] = []

    def count_kept_chunks(event: BackfillProgress) -> None:
        if event.phase == "pass" and event.kept:
            kept.append(event)
    # Chunks of exactly 20 rows: a target this long cancels none, and no shrinking goes under the minimum.
    every_chunk_20_rows = ThrottleSettings(target_write_latency_ms=60_000, min_chunk_rows=20, max_chunk_rows=20,
                                           initial_chunk_rows=20)
    with pytest.raises(BackfillPaused):
        apply_batch(db_target, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            every_chunk_20_rows, on_progress=count_kept_chunks, sleep=lambda _s: None, on_note=notes.append,
            paused=lambda: len(kept) >= 2)))

    outlook = read_outlooks(db_target, [BACKFILL])[BACKFILL.name]
    leads = db.execute('SELECT count(*) FROM "Lead"').fetchone()[0]
    assert [(p.part.name, p.estimated_rows, p.rows_done, p.pass_done) for p in outlook.parts][:2] == [
        ("customers", leads, 40, False), ("jobs", leads, 0, False)]
    assert outlook.sight.blind_spot is None
    assert notes == []

    ledger = Ledger(db)
    ledger.finish_step(BACKFILL.name, "migration.sql", 1, "the sha256 of another version's step")
    restarted = read_outlooks(db_target, [BACKFILL])[BACKFILL.name]
    assert restarted.starts_over and [p.rows_done for p in restarted.parts] == [0, 0, 0, 0]


def test_a_view_the_login_user_may_not_read_gives_no_signal_and_is_not_asked_again_in_the_run(
        db_target: Target, db: psycopg.Connection) -> None:
    """As behind a proxy or a managed service that does not expose pg_stat_progress_vacuum: here the view's SELECT
    is revoked from PUBLIC in the test's database (each database has its own catalog views)."""
    apply_batch(db_target, BASE, quick())
    generate(db, LegacyShape(50))
    with login_user(db, db_target, "proxied") as proxied, vacuum_held_on_lead(db_target, db):
        db.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(proxied.user)))
        db.execute("REVOKE SELECT ON pg_catalog.pg_stat_progress_vacuum FROM PUBLIC")
        with proxied.connect(autocommit=True) as monitor:
            watch = VacuumWatch(monitor)
            watch.watch(("Lead",))
            assert watch.working_on() is None  # refused: no signal, no error
            assert stats_sight(monitor).blind_spot == (
                f'the login user "{proxied.user}" cannot see which table autovacuum is working on, so the chunks do '
                "not make way for autovacuum; grant it SELECT on pg_catalog.pg_stat_progress_vacuum to let them")

            db.execute("GRANT SELECT ON pg_catalog.pg_stat_progress_vacuum TO PUBLIC")
            assert watch.working_on() is None  # not asked again
            fresh = VacuumWatch(monitor)
            fresh.watch(("Lead",))
            assert fresh.working_on() == '"Lead"'  # the next run's watch asks


@pytest.mark.parametrize(("view", "said"), [
    ("pg_stat_replication", "the replicas' replay lag could not be read (permission denied for view pg_stat_replication "
                            "(SQLSTATE 42501)), so the chunks do not wait for a lagging replica for the rest of this "
                            "run; let the login user read pg_catalog.pg_stat_replication (GRANT SELECT, or a proxy "
                            "that passes the query)"),
    ("pg_stat_progress_vacuum", "autovacuum's work could not be read (permission denied for view "
                                "pg_stat_progress_vacuum (SQLSTATE 42501)), so the chunks do not make way for a vacuum "
                                "of their table for the rest of this run; let the login user read "
                                "pg_catalog.pg_stat_progress_vacuum (GRANT SELECT, or a proxy that passes the query)"),
])
def test_a_watched_view_withheld_once_the_run_has_started_is_said_once_with_its_cause_and_the_run_completes(
        view: str, said: str, db_target: Target, db: psycopg.Connection) -> None:
    with login_user(db, db_target, "monitored") as owner:
        db.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(owner.user)))
        legacy_schema_owned_by(owner, db, db_target)
        withheld: list[bool] = []

        def before_the_first_chunk() -> bool:
            """After the run has read what its login user may see: the view is withheld (the sight saw it readable).
            The pause is asked before the replicas' lag is first read, before every chunk."""
            if not withheld:
                db.execute(sql.SQL("REVOKE SELECT ON {} FROM PUBLIC").format(sql.Identifier("pg_catalog", view)))
                withheld.append(True)
            return False
        notes: list[str] = []
        apply_batch(owner, BACKFILL, RunSettings(stack="test", backfill=BackfillRun(
            sleep=lambda _s: None, on_note=notes.append, paused=before_the_first_chunk)))

        assert notes == [f"backfill {BACKFILL.name}: {said}"]
        assert db.execute('SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL').fetchone()[0] == 0
