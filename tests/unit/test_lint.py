"""Migration lint: pglast syntax checks and squawk findings on real batch folders. No database."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.migrations.errors import SqlSyntaxError, UnsupportedStatement
from infra.migrations.plan import Batch
from infra.migrations.validation import reads_only
from infra.migrations.lint import (
    LintBlocked,
    LintDirectiveInvalid,
    LintReport,
    check_syntax,
    enforce,
    lint_batch,
    lint_batches,
)
from tests.support.batches import make_batch

CREATE_CONVERSATION = 'CREATE TABLE "Conversation" (id bigint PRIMARY KEY, lead_id bigint, x text);\n'


def rules_at(report: LintReport) -> set[tuple[int, str]]:
    return {(f.line, f.rule) for f in report.findings}


# --- syntax (pglast) ---------------------------------------------------------------------------------------


def test_check_syntax_accepts_a_valid_batch(tmp_path: Path) -> None:
    check_syntax(make_batch(tmp_path, "0001_ok", CREATE_CONVERSATION))


def test_syntax_error_on_line_7_of_migration_names_file_and_line(tmp_path: Path) -> None:
    migration = "-- one\nSELECT 1;\n\n/* four\n five */\nSELECT 'é';\nSELEC 2;\nSELECT 3;\n"
    batch = make_batch(tmp_path, "0001_bad", migration)
    with pytest.raises(SqlSyntaxError, match=r"'0001_bad' migration\.sql:7: syntax error") as caught:
        check_syntax(batch)
    assert (caught.value.file, caught.value.line) == ("migration.sql", 7)


def test_a_syntax_error_says_syntax_error_once(tmp_path: Path) -> None:
    with pytest.raises(SqlSyntaxError) as caught:
        check_syntax(make_batch(tmp_path, "0001_bad", 'CREATE TABLE "T" ("a" int int);\n'))
    assert str(caught.value) == ("batch '0001_bad' migration.sql:1: syntax error at or near \"int\"; "
                                 "fix the SQL before applying")


def test_syntax_error_line_is_right_after_multibyte_characters(tmp_path: Path) -> None:
    migration = "SELECT 'ééééééééééééééééééé';\nSELECT 'ü';\nSELECT 1 FROM;\n"
    with pytest.raises(SqlSyntaxError) as caught:
        check_syntax(make_batch(tmp_path, "0001_bad", migration))
    assert caught.value.line == 3


def test_syntax_error_in_validation_names_validation_file(tmp_path: Path) -> None:
    validation = "\n" * 6 + "SELECT 'x' AS check_name, true AS ok '' AS detail;\n"
    with pytest.raises(SqlSyntaxError, match=r"validation\.sql:7:") as caught:
        check_syntax(make_batch(tmp_path, "0001_bad", CREATE_CONVERSATION, validation=validation))
    assert (caught.value.file, caught.value.line) == ("validation.sql", 7)


def test_syntax_error_at_end_of_input_points_at_last_line(tmp_path: Path) -> None:
    with pytest.raises(SqlSyntaxError) as caught:
        check_syntax(make_batch(tmp_path, "0001_bad", CREATE_CONVERSATION, rollback="SELECT 1;\nSELECT (1\n\n"))
    assert (caught.value.file, caught.value.line) == ("rollback.sql", 2)


@pytest.mark.parametrize("statement", ["BEGIN;", "COMMIT;", "ROLLBACK;", "START TRANSACTION;"])
def test_transaction_control_in_a_batch_is_refused(tmp_path: Path, statement: str) -> None:
    batch = make_batch(tmp_path, "0001_tx", f"{CREATE_CONVERSATION}{statement}\n")
    with pytest.raises(UnsupportedStatement, match=r"migration\.sql:2: .* not allowed in a batch file") as caught:
        check_syntax(batch)
    assert caught.value.line == 2


@pytest.mark.parametrize("statement", ["SET lock_timeout = '1s';", "SET LOCAL search_path TO app;", "RESET ALL;"])
def test_set_in_a_batch_is_refused(tmp_path: Path, statement: str) -> None:
    batch = make_batch(tmp_path, "0001_set", CREATE_CONVERSATION, rollback=f"{statement}\nSELECT 1;\n")
    with pytest.raises(UnsupportedStatement, match=r"rollback\.sql:1: SET/RESET is not allowed"):
        check_syntax(batch)


@pytest.mark.parametrize("statement", ['CREATE INDEX ON "Lead" (x);', 'CREATE INDEX CONCURRENTLY ON "Lead" (x);'])
def test_unnamed_create_index_is_refused(tmp_path: Path, statement: str) -> None:
    batch = make_batch(tmp_path, "0001_idx", f"SELECT 1;\n\n{statement}\n")
    with pytest.raises(UnsupportedStatement, match=r"migration\.sql:3: CREATE INDEX without an index name"):
        check_syntax(batch)


# --- squawk findings ---------------------------------------------------------------------------------------


def test_blocking_index_on_existing_table_is_reported_with_line_and_help(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0002_idx", '-- speed up lookups\n\nCREATE INDEX "Lead_x_idx" ON "Lead" (x);\n')
    report = lint_batch(batch)
    [finding] = report.findings
    assert (finding.batch, finding.file, finding.line) == ("0002_idx", "migration.sql", 3)
    assert finding.rule == "require-concurrent-index-creation"
    assert finding.help and "concurrently" in finding.help.lower()
    assert finding.accepted_reason is None


def test_validated_foreign_key_on_existing_table_is_reported(tmp_path: Path) -> None:
    migration = 'SELECT 1;\nALTER TABLE "Lead" ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES "Customer"(id);\n'
    report = lint_batch(make_batch(tmp_path, "0002_fk", migration))
    assert rules_at(report) == {(2, "adding-foreign-key-constraint"), (2, "constraint-missing-not-valid")}


def test_findings_on_tables_created_in_the_same_batch_are_dropped(tmp_path: Path) -> None:
    migration = (
        CREATE_CONVERSATION
        + 'CREATE TABLE app."Note" (id bigint PRIMARY KEY, body text);\n'
        + 'CREATE INDEX "Conversation_x_idx" ON "Conversation" (x);\n'
        + 'CREATE INDEX "Note_body_idx" ON app."Note" (body);\n'
        + 'ALTER TABLE "Conversation" ADD CONSTRAINT fk FOREIGN KEY (lead_id) REFERENCES "Lead"(id);\n'
        + 'ALTER TABLE "Conversation" ADD COLUMN n integer NOT NULL DEFAULT 0;\n'
    )
    assert lint_batch(make_batch(tmp_path, "0002_new", migration)).findings == ()


def test_same_name_in_another_schema_or_case_is_not_the_created_table(tmp_path: Path) -> None:
    migration = (
        CREATE_CONVERSATION
        + 'CREATE INDEX "a_idx" ON other."Conversation" (x);\n'
        + 'CREATE INDEX "b_idx" ON Conversation (x);\n'
    )
    report = lint_batch(make_batch(tmp_path, "0002_other", migration))
    assert rules_at(report) == {(2, "require-concurrent-index-creation"), (3, "require-concurrent-index-creation")}


def test_engine_handled_rules_are_not_findings(tmp_path: Path) -> None:
    migration = 'CREATE INDEX CONCURRENTLY "Lead_y_idx" ON "Lead" (y);\nCREATE TABLE "T" (id bigint);\n'
    assert lint_batch(make_batch(tmp_path, "0002_safe", migration)).findings == ()


def test_not_valid_foreign_key_from_new_table_to_existing_table_is_not_a_finding(tmp_path: Path) -> None:
    migration = CREATE_CONVERSATION + (
        'ALTER TABLE "Conversation" ADD CONSTRAINT "Conversation_lead_fk" '
        'FOREIGN KEY (lead_id) REFERENCES "Lead"(id) NOT VALID;\n'
    )
    assert lint_batch(make_batch(tmp_path, "0002_nv", migration)).findings == ()


def test_finding_inside_a_multiline_statement_is_attributed_to_that_statement(tmp_path: Path) -> None:
    migration = CREATE_CONVERSATION + 'ALTER TABLE "Lead"\n  ADD COLUMN m bigint,\n  ADD COLUMN n integer;\n'
    report = lint_batch(make_batch(tmp_path, "0002_multi", migration))
    assert (4, "prefer-bigint-over-int") in rules_at(report)


def test_lint_batches_reports_each_batch_in_order_with_one_call(tmp_path: Path) -> None:
    first = make_batch(tmp_path, "0001_a", CREATE_CONVERSATION)
    second = make_batch(tmp_path, "0002_b", 'CREATE INDEX "Lead_x_idx" ON "Lead" (x);\n')
    reports = lint_batches([first, second])
    assert [r.batch for r in reports] == ["0001_a", "0002_b"]
    assert reports[0].findings == () and {f.batch for f in reports[1].findings} == {"0002_b"}
    assert lint_batches([]) == []


# --- accepting and policy ----------------------------------------------------------------------------------

UNSAFE_INDEX = 'CREATE INDEX "Lead_x_idx" ON "Lead" (x);\n'


def test_block_policy_raises_naming_batch_line_and_rule(tmp_path: Path) -> None:
    report = lint_batch(make_batch(tmp_path, "0002_idx", "SELECT 1;\n" + UNSAFE_INDEX))
    with pytest.raises(LintBlocked, match=r"0002_idx migration\.sql:2 require-concurrent-index-creation.*lint: accept"):
        enforce([report], "block")


def test_warn_policy_returns_one_line_per_finding(tmp_path: Path) -> None:
    report = lint_batch(make_batch(tmp_path, "0002_idx", UNSAFE_INDEX))
    [line] = enforce([report], "warn")
    assert line.startswith("0002_idx migration.sql:1 require-concurrent-index-creation: ")
    assert line.endswith("(Use `concurrently` to avoid blocking writes.)")


def test_accepted_rule_with_reason_passes_block_and_shows_reason(tmp_path: Path) -> None:
    migration = (
        "-- a plain comment may sit in the block too\n"
        "-- lint: accept require-concurrent-index-creation -- \"Lead\" has 12 rows\n" + UNSAFE_INDEX
    )
    report = lint_batch(make_batch(tmp_path, "0002_idx", migration))
    assert report.findings[0].accepted_reason == '"Lead" has 12 rows'
    [line] = enforce([report], "block")
    assert line.endswith('accepted: "Lead" has 12 rows')


def test_directive_separated_by_a_blank_line_accepts_nothing(tmp_path: Path) -> None:
    migration = "-- lint: accept require-concurrent-index-creation -- small table\n\n" + UNSAFE_INDEX
    report = lint_batch(make_batch(tmp_path, "0002_idx", migration))
    with pytest.raises(LintBlocked, match="require-concurrent-index-creation"):
        enforce([report], "block")


def test_directive_accepts_only_its_rule(tmp_path: Path) -> None:
    migration = (
        "-- lint: accept adding-foreign-key-constraint -- Customer is tiny\n"
        'ALTER TABLE "Lead" ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES "Customer"(id);\n'
    )
    report = lint_batch(make_batch(tmp_path, "0002_fk", migration))
    assert [f.rule for f in report.unaccepted] == ["constraint-missing-not-valid"]


@pytest.mark.parametrize(
    "directive",
    ["-- lint: accept require-concurrent-index-creation", "-- lint: accept require-concurrent-index-creation --  "],
)
def test_directive_without_reason_is_an_error(tmp_path: Path, directive: str) -> None:
    batch = make_batch(tmp_path, "0002_idx", f"SELECT 1;\n{directive}\n{UNSAFE_INDEX}")
    with pytest.raises(LintDirectiveInvalid, match=r"migration\.sql:2: .*without a reason") as caught:
        lint_batch(batch)
    assert caught.value.line == 2


def test_malformed_directive_is_an_error(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0002_idx", "-- lint: ignore everything -- why not\n" + UNSAFE_INDEX)
    with pytest.raises(LintDirectiveInvalid, match="malformed lint directive"):
        lint_batch(batch)


def test_squawk_ignore_comment_is_refused(tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "0002_idx", "-- squawk-ignore require-concurrent-index-creation\n" + UNSAFE_INDEX)
    with pytest.raises(LintDirectiveInvalid, match="squawk-ignore skips a rule without a reason"):
        lint_batch(batch)


def test_lint_raises_syntax_error_before_running_squawk(tmp_path: Path) -> None:
    with pytest.raises(SqlSyntaxError, match=r"migration\.sql:2:"):
        lint_batch(make_batch(tmp_path, "0002_bad", "SELECT 1;\nSELEC 2;\n"))


def test_finding_after_multibyte_characters_maps_to_its_own_statement(tmp_path: Path) -> None:
    # squawk's column counts UTF-8 bytes: read as characters it would land in the next statement on the line
    migration = 'CREATE TABLE "Tééééééé" (n int);ALTER TABLE "Lead" ADD COLUMN q bigint;\n'
    assert lint_batch(make_batch(tmp_path, "0002_utf8", migration)).findings == ()


def test_validation_that_only_selects_is_told_from_one_that_writes():
    def reads(validation: str) -> bool:
        return reads_only(Batch("0001_x", "SELECT 1;", validation, "SELECT 1;"))

    assert reads("SELECT 'a' AS check_name, (SELECT count(*) FROM x) = 0 AS ok, '' AS detail;")
    assert not reads('INSERT INTO x VALUES (1);\nSELECT 1;')
    assert not reads("WITH d AS (DELETE FROM x RETURNING 1) SELECT count(*) FROM d;")
    assert not reads("SELECT 1 INTO t;")
