"""What `pulumi preview` and the pull-request review say of a batch's backfill: its parts, how far a stopped run
went, the throttle's bounds from the stack's settings, what it cannot see, and that a failure keeps the work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from infra.migrations.backfill import BackfillRun, load_spec
from infra.migrations.backfill_errors import BackfillDeclarationInvalid
from infra.migrations.backfill_outlook import BackfillOutlook, PartOutlook
from infra.migrations.plan import load_batches
from infra.migrations.report import describe_batch
from infra.migrations.runner import RunSettings
from infra.migrations.sight import StatsSight
from infra.migrations.throttle import ThrottleSettings
from infra.review.collect import review_stack
from infra.review.markdown import render
from infra.review.stack_config import settings_from_config
from tests.unit.test_review import CONFIG, applied, no_findings

BATCHES = load_batches(Path(__file__).resolve().parents[2] / "sql")
BACKFILL = BATCHES[2]
SEES = StatsSight("migrator", True)
BLIND = StatsSight("app_migrator", False)


def outlook(sight: StatsSight = SEES, customers_done: int = 0, jobs_pass_done: bool = False) -> BackfillOutlook:
    customers, jobs, history, audit = load_spec(BACKFILL).parts
    return BackfillOutlook((PartOutlook(customers, 2_000_000, customers_done),
                            PartOutlook(jobs, 2_000_000, 2_000_000 if jobs_pass_done else 0, jobs_pass_done),
                            PartOutlook(history, 2_000_000), PartOutlook(audit, None)), sight)


def preview(backfill: BackfillOutlook | None, throttle: ThrottleSettings = ThrottleSettings()) -> list[str]:
    run = RunSettings(backfill=BackfillRun(throttle=throttle))
    return describe_batch(BACKFILL, "db.internal:5432/junkquote", run, backfill=backfill).splitlines()


def test_the_preview_names_each_part_in_order_with_its_table_key_chunk_function_and_estimated_rows() -> None:
    lines = preview(outlook())

    start = next(i for i, line in enumerate(lines) if line.startswith("  then the backfill (backfill.toml), 4 parts"))
    assert lines[start + 1:start + 6] == [
        '    customers: "Lead" by "id", through customer_backfill.link_leads, then its sweep, about 2,000,000 rows',
        '    jobs: "Job" by "id", through customer_backfill.link_jobs, then its sweep, about 2,000,000 rows',
        '    lead_history: "Lead" by "id", through customer_backfill.move_lead_history, then its sweep, '
        "about 2,000,000 rows",
        '    audit_messages: "Audit" by "id", through customer_backfill.move_audit_messages, then its sweep, rows not '
        "estimated (the table is not analyzed yet, or a pending batch creates it)",
        "    then, paced like the chunks, a read of every page of the tables validation.sql scans in full (the first "
        "read of a page after a checkpoint writes WAL, which the checks would write in one burst)",
    ]


def test_the_preview_says_where_a_stopped_run_continues() -> None:
    lines = preview(outlook(customers_done=1_200_000, jobs_pass_done=True))

    assert ('    customers: "Lead" by "id", through customer_backfill.link_leads, then its sweep, about 2,000,000 rows; '
            "a stopped run went through 1,200,000 rows, it continues after them") in lines
    assert ('    jobs: "Job" by "id", through customer_backfill.link_jobs, then its sweep, about 2,000,000 rows; '
            "a stopped run finished its pass, the sweep remains") in lines


def test_a_run_of_another_version_is_said_to_be_undone_before_the_backfill_starts_over() -> None:
    lines = preview(replace(outlook(), starts_over=True))

    assert ("    a stopped run of another version of this batch is undone first (rollback.sql), then the backfill "
            "starts from the beginning") in lines


def test_the_throttle_line_follows_the_stack_target_and_chunk_bounds() -> None:
    throttle_line = next(line for line in preview(outlook(), ThrottleSettings(200, 50, 5_000))
                         if line.startswith("    throttle:"))

    assert throttle_line == (
        "    throttle: chunks of 50 to 5,000 rows, each sized to last 140 ms (for a write-latency target of 200 ms); a "
        "chunk's statements are cancelled past 180 ms (statement_timeout) and its lock waits past 140 ms "
        "(lock_timeout), and it is retried smaller; on PostgreSQL 14 and later, in a part where nobody has waited on "
        "100 chunks in a row, while no vacuum works on its table, chunks are sized to last 700 ms and cancelled "
        "past 2000 ms, or once a session has waited about 100 ms on one of their locks")


def test_a_failure_of_a_backfill_batch_keeps_its_work_and_is_not_said_to_undo_it() -> None:
    for lines in (preview(outlook()), preview(None)):  # with or without the outlook read
        assert lines[-1].startswith("  then validation.sql (")
        assert lines[-1].endswith(
            "run in a transaction that is rolled back): the checks are tried 3 times, the sweeps running again before "
            "each retry; if they still fail, or the backfill stops for any other reason (paused, a lagging replica, "
            "stalled commits, an error), what it did is kept and the next `up` continues it: only a failed step of "
            "migration.sql runs rollback.sql")


@pytest.mark.parametrize(("sight", "said"), [
    (SEES, None),
    (BLIND, 'the login user "app_migrator" cannot see which table autovacuum is working on nor how far streaming '
            "replicas have replayed, so the chunks do not make way for autovacuum nor wait for a lagging replica; "
            "grant it pg_monitor (or pg_read_all_stats) to let them"),
    (StatsSight("m", True, vacuum_view=False), 'the login user "m" cannot see which table autovacuum is working on, '
     "so the chunks do not make way for autovacuum; grant it SELECT on pg_catalog.pg_stat_progress_vacuum to let them"),
    (StatsSight("m", False, replication_view=False), 'the login user "m" cannot see which table autovacuum is working '
     "on nor how far streaming replicas have replayed, so the chunks do not make way for autovacuum nor wait for a "
     "lagging replica; grant it pg_monitor (or pg_read_all_stats) and SELECT on pg_catalog.pg_stat_replication to "
     "let them"),
])
def test_what_the_throttle_cannot_see_names_what_to_grant(sight: StatsSight, said: str | None) -> None:
    assert sight.blind_spot == said


def test_a_part_declared_as_a_single_table_is_a_declaration_error_not_a_crash() -> None:
    typo = replace(BACKFILL, backfill='[part]\nname = "customers"\ntable = "Lead"\nkey = "id"\nchunk = "f"\n')

    with pytest.raises(BackfillDeclarationInvalid, match=r"declare each part as a \[\[part\]\] table"):
        load_spec(typo)


def test_the_pull_request_review_shows_the_backfill_with_the_stacks_throttle_and_the_warning_outside_the_block(
        tmp_path: Path) -> None:
    config = {**CONFIG, "junkquote-db:backfill": {"objectValue": {"targetWriteLatency": "250ms", "maxChunkRows": 8000}}}
    settings = settings_from_config("staging", config, tmp_path)
    asked: list[list[str]] = []

    def outlooks(_target: object, batches: list) -> dict[str, BackfillOutlook]:
        asked.append([b.name for b in batches])
        return {BACKFILL.name: outlook(BLIND)}
    report = review_stack(settings, BATCHES[:3], read=lambda _t, _tables: applied(*BATCHES[:2]), lint=no_findings,
                          outlooks=outlooks)

    assert asked == [[BACKFILL.name]]
    text = render([report]).splitlines()
    block = text[text.index("```text", text.index("**Backfill**")):]
    block = block[:block.index("```", 1) + 1]
    assert '  customers: "Lead" by "id", through customer_backfill.link_leads, then its sweep, about 2,000,000 rows' \
        in block
    assert any(line.startswith("  throttle: chunks of 100 to 8,000 rows, each sized to last 175 ms (for a "
                               "write-latency target of 250 ms)") for line in block)
    assert block[-2].startswith("validation.sql (below): the checks are tried 3 times")
    warning = text[text.index("**Backfill**") + 2]
    assert warning.startswith('- :warning: the login user "app_migrator" cannot see which table autovacuum')


def test_an_empty_declaration_is_described_as_the_runner_treats_it_no_backfill() -> None:
    lines = describe_batch(replace(BACKFILL, backfill=""), "db.internal:5432/junkquote", RunSettings()).splitlines()

    assert lines[-1].endswith("if a step or a check fails, rollback.sql undoes the batch")
