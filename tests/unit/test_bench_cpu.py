"""The bench's CPU sampler: which role each process has, and how many CPUs each role kept busy over a window."""

from __future__ import annotations

import pytest

from bench import cpu
from bench.cpu import (AUTOVACUUM, BACKFILL, BENCH, CLIENTS, REST, SERVER, WATCHES, WRITER_SESSIONS, Interval,
                       parse_stat, process_role, roles_of, server_role, tally, use_over)

ENGINE = "junkquote-db migrations (bench, bench)"


@pytest.mark.parametrize(("backend_type", "application_name", "query", "role"), [
    ("client backend", ENGINE, "SELECT customer_backfill.link_leads($1::text[])", BACKFILL),
    ("client backend", ENGINE, "SELECT coalesce(max(...)) FROM pg_locks WHERE CASE WHEN granted THEN false "
                               "ELSE 4242 = ANY(pg_blocking_pids(pid)) END", WATCHES),
    ("client backend", ENGINE, "INSERT INTO schema_ledger.commit_probe DEFAULT VALUES", WATCHES),
    ("client backend", ENGINE, "SELECT relid FROM pg_stat_progress_vacuum", WATCHES),
    ("client backend", ENGINE, "SELECT (SELECT min(replay_lsn)::text FROM pg_stat_replication)", WATCHES),
    ("client backend", ENGINE, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn FROM pg_control_checkpoint()",
     WATCHES),
    ("client backend", "bench naive backfill", "SELECT customer_backfill.link_leads($1::text[])", BACKFILL),
    ("client backend", "bench writer", "COMMIT", WRITER_SESSIONS),
    ("autovacuum worker", "", "autovacuum: VACUUM public.\"Lead\"", AUTOVACUUM),
    ("autovacuum launcher", "", "", AUTOVACUUM),
    ("walwriter", "", "", SERVER),
    ("client backend", "bench cpu sampler", "SELECT pid FROM pg_stat_activity", SERVER),
])
def test_each_server_process_has_the_role_its_activity_row_shows(backend_type: str, application_name: str,
                                                                  query: str, role: str) -> None:
    assert server_role(backend_type, application_name, query) == role


def test_an_engine_session_once_seen_watching_stays_a_watch_between_its_reads_and_the_chunk_session_stays_the_backfill() -> None:
    watches: set[int] = set()
    first = [(7, "client backend", ENGINE, "SELECT redo_lsn FROM pg_control_checkpoint()"),
             (8, "client backend", ENGINE, "SELECT customer_backfill.link_leads($1::text[])")]
    assert roles_of(first, watches) == {7: WATCHES, 8: BACKFILL}
    later = [(7, "client backend", ENGINE, "SELECT c.oid FROM pg_class c WHERE c.relname = ANY($1)"),
             (8, "client backend", ENGINE, "COMMIT")]
    assert roles_of(later, watches) == {7: WATCHES, 8: BACKFILL}
    # Once the watch's session has gone, a new engine session given its pid is not taken for a watch.
    assert roles_of([(8, "client backend", ENGINE, "COMMIT")], watches) == {8: BACKFILL}
    assert roles_of([(7, "client backend", ENGINE, "SELECT customer_backfill.link_leads($1)")], watches) == {7: BACKFILL}


def test_a_stat_line_gives_the_parent_and_the_user_plus_system_ticks_whatever_the_command_name_holds() -> None:
    fields_after_name = "S 4711 1 1 0 -1 4194560 3037 0 0 0 250 75 0 0 20 0 1 0 100 0 0"
    assert parse_stat(f"4800 (postgres) {fields_after_name}") == (4711, 325)
    assert parse_stat(f"4801 (a (weird) name) {fields_after_name}") == (4711, 325)


def test_cpu_seconds_by_role_count_a_process_that_began_in_between_from_zero_and_one_with_no_role_as_the_rest() -> None:
    before = {10: 500, 11: 100, 14: 40}
    now = {10: 600, 11: 100, 12: 30, 13: 7, 14: 45}
    roles = {10: BACKFILL, 11: WRITER_SESSIONS, 12: WRITER_SESSIONS, 13: CLIENTS}
    assert tally(now, before, roles) == {BACKFILL: 100 / cpu.TICKS_PER_S, WRITER_SESSIONS: 30 / cpu.TICKS_PER_S,
                                         CLIENTS: 7 / cpu.TICKS_PER_S, REST: 5 / cpu.TICKS_PER_S}


def test_the_average_over_a_window_counts_each_interval_for_its_share_inside_it() -> None:
    spans = [Interval(0.0, 1.0, {BACKFILL: 1.0, WRITER_SESSIONS: 0.2, REST: 0.3}),
             Interval(1.0, 2.0, {BACKFILL: 0.5, BENCH: 0.1, REST: 0.4})]
    use = use_over(spans, 0.5, 2.0, cpus=2)
    assert use is not None
    # 1.5 s of window: half of the first interval, all of the second.
    assert use.cores[BACKFILL] == pytest.approx((0.5 + 0.5) / 1.5)
    assert use.cores[WRITER_SESSIONS] == pytest.approx(0.1 / 1.5)
    assert use.cores[BENCH] == pytest.approx(0.1 / 1.5)
    assert use.cores[REST] == pytest.approx((0.15 + 0.4) / 1.5)
    assert use.busy_cores == pytest.approx((0.75 + 1.0) / 1.5)
    assert use.cell().startswith("backfill 0.67, watches 0.00, writers' sessions 0.07")
    assert use.cell().endswith("; 1.17 of 2 busy")
    assert use_over(spans, 5.0, 6.0, cpus=2) is None


def test_a_window_the_readings_cover_less_than_nine_tenths_of_has_no_average() -> None:
    spans = [Interval(0.0, 1.0, {BACKFILL: 1.0}), Interval(1.0, 2.0, {BACKFILL: 1.0})]
    assert use_over(spans, 0.0, 2.2, cpus=2) is not None  # 2.0 of 2.2 s
    assert use_over(spans, 0.0, 2.5, cpus=2) is None  # the sampler stopped at 2.0 s


def test_the_server_its_children_the_bench_and_the_bench_children_each_have_their_role_and_others_are_the_rest() -> None:
    postmaster, bench = 100, 200
    server_roles = {101: BACKFILL, 102: WRITER_SESSIONS}
    assert process_role(101, postmaster, postmaster, bench, server_roles) == BACKFILL
    assert process_role(102, postmaster, postmaster, bench, server_roles) == WRITER_SESSIONS
    assert process_role(103, postmaster, postmaster, bench, server_roles) == SERVER  # not in pg_stat_activity
    assert process_role(postmaster, 1, postmaster, bench, server_roles) == SERVER
    assert process_role(bench, 1, postmaster, bench, server_roles) == BENCH
    assert process_role(201, bench, postmaster, bench, server_roles) == CLIENTS
    assert process_role(300, 1, postmaster, bench, server_roles) == REST
