"""The review report: what it says for each situation a reviewer meets, rendered without any I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from infra.migrations.ledger import LedgerEntry
from infra.migrations.lint import LintFinding, LintReport
from infra.migrations.plan import Batch
from infra.migrations.state import DatabaseState
from infra.review.collect import review_stack
from infra.review.erd import schema_changes
from infra.review.markdown import render
from infra.review.model import BatchReview, Finding, Relation, StackReview, Table
from infra.review.stack_config import settings_from_config
from tests.support.batches import make_batch

PASSWORD = "pr-report-S3cret;'\""
CONFIG = {
    "junkquote-db:database": {"objectValue": {"host": "db.example", "port": 5432, "name": "junkquote", "user": "admin"}},
    "junkquote-db:password": {"value": PASSWORD, "secret": True},
    "junkquote-db:migrations": {"objectValue": {"lint": "block"}},
}
ADD_NOTE = 'CREATE TABLE "Note" (id text PRIMARY KEY, lead_id text REFERENCES "Lead"(id));\nALTER TABLE "Lead" ADD COLUMN note_count integer;\n'


def applied(*batches: Batch, stack: str = "staging") -> DatabaseState:
    entries = {b.name: LedgerEntry(b.name, b.checksums["migration.sql"], b.checksums["validation.sql"],
                                   b.checksums["rollback.sql"], datetime.now(timezone.utc), 0, "test", stack, False)
               for b in batches}
    return DatabaseState(entries, {})


def no_findings(batches: object) -> list[LintReport]:
    return [LintReport(b.name, ()) for b in batches]  # type: ignore[attr-defined]


def review(tmp_path: Path, state: DatabaseState, batches: list[Batch], lint=no_findings, config=CONFIG) -> StackReview:
    settings = settings_from_config("staging", config, tmp_path)
    return review_stack(settings, batches, read=lambda _t, _tables: state, lint=lint)


def test_a_pending_batch_is_reported_with_its_steps_locks_checks_and_sql(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    note = make_batch(tmp_path, "0001_note", ADD_NOTE)
    result = review(tmp_path, applied(base), [base, note])
    assert result.summary == "apply 1 batch (0001_note)"
    batch = result.batches[0]
    assert any("migration.sql:1" in s and "create table Note" in s for s in batch.steps)
    assert any(lock.startswith("ACCESS EXCLUSIVE on existing table Lead") for lock in batch.locks)
    assert batch.checks == ("validation.sql:1: select",)
    assert batch.sql["migration.sql"] == ADD_NOTE


def test_the_markdown_never_contains_the_password(tmp_path: Path) -> None:
    note = make_batch(tmp_path, "0001_note", ADD_NOTE)
    text = render([review(tmp_path, applied(), [note])])
    assert "db.example:5432/junkquote" in text
    assert PASSWORD not in text and "S3cret" not in text


def test_nothing_pending_says_nothing(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    assert review(tmp_path, applied(base), [base]).summary == "nothing: every batch is applied"


def test_a_changed_applied_batch_is_a_blocker(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    edited = replace(base, migration='CREATE TABLE "Lead" (id bigint PRIMARY KEY);')
    result = review(tmp_path, applied(base), [edited])
    assert result.summary.startswith("blocked")
    assert "add a new batch instead of editing an applied one" in result.blockers[0]


def test_a_missing_folder_of_an_applied_batch_is_a_blocker(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    result = review(tmp_path, applied(base), [])
    assert "has applied '0000_base' but" in result.blockers[0]
    assert "make rollback STACK=staging BATCH=0000_base" in result.blockers[0]


def test_an_unfinished_rollback_is_a_blocker(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    state = replace(applied(base), rollbacks={"0000_base": "rollback.sql:1"})
    result = review(tmp_path, state, [base])
    assert "is partly rolled back" in result.blockers[0]


def test_a_baseline_is_adopted_without_lint_or_steps(tmp_path: Path) -> None:
    base = make_batch(tmp_path, "0000_base", 'CREATE TABLE "Lead" (id text PRIMARY KEY);')
    config = {**CONFIG, "junkquote-db:migrations": {"objectValue": {"baseline": "adopt"}}}
    linted: list[str] = []
    result = review(tmp_path, applied(), [base], lint=lambda bs: linted.extend(b.name for b in bs) or [], config=config)
    assert result.summary == "adopt 0000_base"
    assert result.batches[0].steps == () and linted == []


def test_lint_findings_keep_their_acceptance_reason(tmp_path: Path) -> None:
    note = make_batch(tmp_path, "0001_note", ADD_NOTE)
    findings = (LintFinding("0001_note", "migration.sql", 2, "adding-field-with-default", "msg", None, "small table"),
                LintFinding("0001_note", "migration.sql", 1, "prefer-bigint-over-int", "use bigint", "help"))
    result = review(tmp_path, applied(), [note], lint=lambda bs: [LintReport("0001_note", findings)])
    assert [(f.rule, f.accepted_reason) for f in result.batches[0].findings] == [
        ("adding-field-with-default", "small table"), ("prefer-bigint-over-int", None)]
    assert result.batches[0].findings[1].message == "use bigint (help)"
    blocker, = result.blockers  # lint: block, and one finding is not accepted
    assert blocker.startswith("migration lint blocked 1 unaccepted finding(s): 0001_note migration.sql:1 prefer-bigint-over-int;")


def test_under_lint_warn_unaccepted_findings_are_no_blocker(tmp_path: Path) -> None:
    note = make_batch(tmp_path, "0001_note", ADD_NOTE)
    finding = LintFinding("0001_note", "migration.sql", 1, "prefer-bigint-over-int", "use bigint", None)
    config = {**CONFIG, "junkquote-db:migrations": {"objectValue": {"lint": "warn"}}}
    result = review(tmp_path, applied(), [note], lint=lambda bs: [LintReport("0001_note", (finding,))], config=config)
    assert result.blockers == () and result.summary == "apply 1 batch (0001_note)"


def sample() -> StackReview:
    batch = BatchReview(
        name="0001_note", action="apply",
        steps=("step  1 [transaction] migration.sql:1: create table Note",),
        locks=("SHARE ROW EXCLUSIVE on existing table Lead: blocks writes while held (migration.sql:1, transaction)",
               "SHARE UPDATE EXCLUSIVE on existing table Job: reads and writes continue (migration.sql:3, autocommit, writes continue)"),
        findings=(Finding("migration.sql", 1, "require-concurrent-index-creation", "use concurrently"),
                  Finding("migration.sql", 3, "adding-field-with-default", "rewrite", "the table is small")),
        checks=("validation.sql:2: Note exists",),
        sql={"migration.sql": "CREATE TABLE \"Note\" (id text);\n-- ``` not a fence\n", "rollback.sql": "DROP TABLE \"Note\";"},
    )
    return StackReview("staging", "db.example:5432/junkquote", "block", batches=(batch,),
                       tables=(Table("Note", True, ()), Table("billing.Invoice", False, ())),
                       relations=(Relation("Note", "Lead", ("lead_id",)),))


def test_blockers_come_before_every_stack_section() -> None:
    blocked = StackReview("prod", "db.prod:5432/junkquote", "block", blockers=("batch '0001' migration.sql changed",))
    text = render([sample(), blocked])
    assert text.index("## :no_entry: Blockers") < text.index("## Stack `staging`")
    assert "- **prod**: batch '0001' migration.sql changed" in text
    assert "| `prod` | `db.prod:5432/junkquote` | blocked: nothing will run" in text


def test_locks_say_whether_writes_wait() -> None:
    text = render([sample()])
    assert ":warning: **writes wait**: SHARE ROW EXCLUSIVE on existing table Lead" in text
    assert ":white_check_mark: **writes continue**: SHARE UPDATE EXCLUSIVE on existing table Job" in text


def test_findings_show_location_rule_and_the_reason_of_an_accepted_one() -> None:
    text = render([sample()])
    assert "- :x: `migration.sql:1` `require-concurrent-index-creation`: use concurrently" in text
    assert "accepted, `migration.sql:3` `adding-field-with-default`: rewrite; reason: the table is small" in text


def test_the_full_sql_is_in_a_collapsed_block_whose_fence_no_sql_can_close() -> None:
    text = render([sample()])
    assert "<details><summary>migration.sql (3 lines)</summary>" in text
    assert '````sql\nCREATE TABLE "Note" (id text);\n-- ``` not a fence\n````' in text


def test_the_er_diagram_names_tables_and_foreign_keys_in_mermaid_syntax() -> None:
    text = render([sample()])
    assert "```mermaid\nerDiagram\n" in text
    assert '    Note }o--|| Lead : "lead_id"' in text
    assert "    billing__Invoice {" in text
    assert "New: `Note`. Changed (columns added): `billing.Invoice`." in text


def test_schema_changes_read_new_tables_added_columns_and_foreign_keys(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0001_note", ADD_NOTE + 'ALTER TABLE "Lead" ADD CONSTRAINT f FOREIGN KEY (note_count) REFERENCES "Count"(n);\n')
    tables, relations = schema_changes([batch])
    note, lead = tables
    assert (note.name, note.new, [(c.name, c.type, c.key) for c in note.columns]) == (
        "Note", True, [("id", "text", "PK"), ("lead_id", "text", "FK")])
    assert (lead.name, lead.new, [(c.name, c.type, c.key) for c in lead.columns]) == (
        "Lead", False, [("note_count", "int4", "FK")])
    assert relations == (Relation("Note", "Lead", ("lead_id",)), Relation("Lead", "Count", ("note_count",)))


def test_a_waiting_gate_is_what_the_stack_will_do() -> None:
    waiting = StackReview("prod", "t", "block", waiting="batch 0003 is waiting: gate closed")
    assert waiting.summary == "wait on a gate"
    assert "**Waiting:** batch 0003 is waiting: gate closed" in render([waiting])
