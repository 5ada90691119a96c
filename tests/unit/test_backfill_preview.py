"""What `pulumi preview` and the pull-request review say of a batch's backfill: its parts, how far a stopped run
went, the throttle's bounds from the stack's settings, what it cannot see, and that failed checks keep the work."""

from __future__ import annotations

from pathlib import Path

from infra.migrations.backfill import BackfillRun, load_spec
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


def outlook(sight: StatsSight = SEES, customers_done: int = 0) -> BackfillOutlook:
    customers, jobs, history, audit = load_spec(BACKFILL).parts
    return BackfillOutlook((PartOutlook(customers, 2_000_000, customers_done), PartOutlook(jobs, 2_000_000),
                            PartOutlook(history, 2_000_000), PartOutlook(audit, None)), sight)


def preview(backfill: BackfillOutlook, throttle: ThrottleSettings = ThrottleSettings()) -> list[str]:
    run = RunSettings(backfill=BackfillRun(throttle=throttle))
    return describe_batch(BACKFILL, "db.internal:5432/junkquote", run, backfill=backfill).splitlines()


def test_the_preview_names_each_part_in_order_with_its_table_key_chunk_function_and_estimated_rows() -> None:
    lines = preview(outlook())

    start = next(i for i, line in enumerate(lines) if line.startswith("  then the backfill (backfill.toml), 4 parts"))
    assert lines[start + 1:start + 5] == [
        '    customers: "Lead" by "id", through customer_backfill.link_leads, about 2,000,000 rows',
        '    jobs: "Job" by "id", through customer_backfill.link_jobs, about 2,000,000 rows',
        '    lead_history: "Lead" by "id", through customer_backfill.move_lead_history, about 2,000,000 rows',
        '    audit_messages: "Audit" by "id", through customer_backfill.move_audit_messages, rows not estimated '
        "(the table is not analyzed yet, or an earlier batch creates it)",
    ]


def test_the_preview_says_where_a_stopped_run_continues() -> None:
    lines = preview(outlook(customers_done=1_200_000))

    assert ('    customers: "Lead" by "id", through customer_backfill.link_leads, about 2,000,000 rows; a stopped run '
            "went through 1,200,000 rows, it continues after them") in lines


def test_the_throttle_line_follows_the_stack_target_and_chunk_bounds() -> None:
    throttle_line = next(line for line in preview(outlook(), ThrottleSettings(200, 50, 5_000))
                         if line.startswith("    throttle:"))

    assert throttle_line.startswith("    throttle: chunks of 50 to 5,000 rows, sized for a write-latency target of "
                                    "200 ms: each holds its row locks at most 180 ms (its statement timeout)")
    assert "chunks may run 700 ms (cancelled at 2000 ms)" in throttle_line
    assert "one that keeps a session waiting 100 ms is cancelled and rolled back" in throttle_line


def test_a_login_user_without_pg_read_all_stats_is_a_warning_saying_what_to_grant() -> None:
    warnings = [line for line in preview(outlook(BLIND)) if line.startswith("    warning:")]

    assert warnings == ['    warning: the login user "app_migrator" lacks the privileges of pg_read_all_stats, so the '
                        "throttle cannot see which table autovacuum is working on nor how far streaming replicas have "
                        "replayed, and its chunks wait for neither; grant it pg_monitor (or pg_read_all_stats) to let them"]
    assert not [line for line in preview(outlook(SEES)) if "warning" in line]


def test_failed_checks_of_a_backfill_keep_its_work_and_are_not_said_to_undo_the_batch() -> None:
    last = preview(outlook())[-1]

    assert "if a check still fails after 3 rounds of sweeps, the backfill stops and keeps what it did" in last
    assert "if a step or a check fails" not in last
    assert "if a step of migration.sql fails, rollback.sql undoes the batch" in last


def test_the_pull_request_review_shows_the_backfill_of_a_pending_batch(tmp_path: Path) -> None:
    settings = settings_from_config("staging", CONFIG, tmp_path)
    seen: list[list[str]] = []

    def outlooks(_target: object, batches: list) -> dict[str, BackfillOutlook]:
        seen.append([b.name for b in batches])
        return {BACKFILL.name: outlook(BLIND)}
    report = review_stack(settings, BATCHES[:3], read=lambda _t, _tables: applied(*BATCHES[:2]), lint=no_findings,
                          outlooks=outlooks)

    assert seen == [[BACKFILL.name]]
    text = render([report])
    assert "**Backfill**" in text
    assert '  customers: "Lead" by "id", through customer_backfill.link_leads, about 2,000,000 rows' in text
    assert 'warning: the login user "app_migrator" lacks the privileges of pg_read_all_stats' in text
