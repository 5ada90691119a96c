"""Lints pending batches before they are applied: PostgreSQL's parser (see syntax.py), then squawk on migration.sql.

Use from `pulumi preview`, on the pending batches only::

    for batch in pending:
        check_syntax(batch)                     # SqlSyntaxError / UnsupportedStatement
    warnings = enforce(lint_batches(pending), settings.migrations.lint)   # LintBlocked under "block"

What counts as a finding
    Every squawk rule except the ones in EXCLUDED_RULES (each says why), on migration.sql only. A finding on a
    statement whose target table (the table it alters, indexes, ...) is created by a CREATE TABLE (or CREATE TABLE AS)
    in the same migration.sql is dropped: nobody else can be using that table yet. Tables are compared as
    PostgreSQL names them: `"Lead"` keeps its case, `Lead` folds to `lead`, and `app."Lead"` is not `"Lead"`
    (write the schema the same way in both statements). `CREATE TABLE IF NOT EXISTS` does not count as created.

Accepting a finding
    Put a comment on the line(s) directly above the statement (no blank line in between), one per rule::

        -- lint: accept adding-field-with-default -- "Lead" has 40 rows; the rewrite takes milliseconds
        ALTER TABLE "Lead" ADD COLUMN score integer NOT NULL DEFAULT 0;

    The reason after the second `--` is required: a directive without one is a LintDirectiveInvalid error.
    An accepted finding is still shown, with its reason, and does not block. squawk's own `squawk-ignore`
    comments are refused, because they skip a rule without saying why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pglast.parser import scan

from .errors import Actions, MigrationError
from .plan import Batch
from .syntax import SourceStatement, check_syntax, created_tables, line_of, parse_statements, target_table

__all__ = [
    "EXCLUDED_RULES", "LintBlocked", "LintDirectiveInvalid", "LintFinding", "LintReport", "LinterFailed",
    "check_syntax", "enforce", "lint_batch", "lint_batches",
]

LINTED_FILE = "migration.sql"
DIRECTIVE_SYNTAX = "-- lint: accept <rule> -- <reason>"
DIRECTIVE = re.compile(r"^--\s*lint\s*:\s*accept\s+(?P<rule>[a-z][a-z0-9-]*)\s*(?:--(?P<reason>.*))?$")

EXCLUDED_RULES = {
    # The engine applies lock_timeout and statement_timeout to every statement itself (stack config
    # migrations.lockTimeout / statementTimeout), and SET in a batch file is refused by check_syntax.
    "require-lock-timeout": "the engine sets lock_timeout on every statement",
    "require-statement-timeout": "the engine sets statement_timeout on every statement",
    # The engine runs CREATE INDEX CONCURRENTLY alone on an autocommit connection, never in a transaction.
    "ban-concurrent-index-creation-in-transaction": "the engine runs CREATE INDEX CONCURRENTLY outside any transaction",
    # IF NOT EXISTS / IF EXISTS would make a rerun silently skip a half-done or different object. The engine
    # makes steps resumable instead: each transactional step commits with its progress row or not at all, and
    # a CONCURRENTLY step drops an INVALID leftover and rebuilds it (runner.py). squawk flags every CREATE TABLE
    # and ALTER TABLE with it: pure noise here.
    "prefer-robust-stmts": "the engine makes each step resumable (one transaction per step with its ledger row)",
}

# squawk's exit codes: 0 no findings, 1 findings; anything else is a usage or internal error.
SQUAWK_OK = (0, 1)


@dataclass(eq=False)
class LintDirectiveInvalid(MigrationError):
    """A `-- lint:` comment in a batch file is malformed or gives no reason."""

    batch: str
    file: str
    line: int
    problem: str

    def message(self, say: Actions) -> str:
        return f"batch '{self.batch}' {self.file}:{self.line}: {self.problem}; write `{DIRECTIVE_SYNTAX}` above the statement"


@dataclass(eq=False)
class LinterFailed(MigrationError):
    """squawk could not be found or did not produce a report."""

    problem: str

    def message(self, say: Actions) -> str:
        return f"cannot lint migrations: {self.problem}; install it with `pip install -r requirements.txt` (squawk-cli)"


@dataclass(frozen=True)
class LintFinding:
    """One squawk warning on a statement of a batch's migration.sql."""

    batch: str
    file: str
    line: int  # 1-based, in `file`
    rule: str
    message: str
    help: str | None  # squawk's advice; None when it gives none
    accepted_reason: str | None = None

    @property
    def location(self) -> str:
        return f"{self.batch} {self.file}:{self.line} {self.rule}"

    def describe(self) -> str:
        advice = f" ({self.help})" if self.help else ""
        accepted = f" accepted: {self.accepted_reason}" if self.accepted_reason is not None else ""
        return f"{self.batch} {self.file}:{self.line} {self.rule}: {self.message}{advice}{accepted}"


@dataclass(frozen=True)
class LintReport:
    """Every finding of one batch, accepted or not."""

    batch: str
    findings: tuple[LintFinding, ...]

    @property
    def unaccepted(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.accepted_reason is None)


@dataclass(eq=False)
class LintBlocked(MigrationError):
    """Lint policy is "block" and some findings were not accepted."""

    findings: Sequence[LintFinding]

    def message(self, say: Actions) -> str:
        names = "; ".join(f.location for f in self.findings)
        return (f"migration lint blocked {len(self.findings)} unaccepted finding(s): {names}; fix each statement, "
                f"or accept the rule with a reason on the line directly above it: `{DIRECTIVE_SYNTAX}` "
                f"(or {say.warn_on_lint})")


def lint_batch(batch: Batch) -> LintReport:
    """squawk's findings on the batch's migration.sql, minus excluded rules and tables the batch creates."""
    return lint_batches([batch])[0]


def lint_batches(batches: Sequence[Batch]) -> list[LintReport]:
    """lint_batch for several batches with a single squawk process; reports in the order given."""
    parsed = {b.name: parse_statements(b, LINTED_FILE) for b in batches}  # SqlSyntaxError first
    accepted = {b.name: _accepted_rules(b, parsed[b.name]) for b in batches}
    raw = _run_squawk(batches) if batches else []
    return [_report(b, parsed[b.name], accepted[b.name], raw) for b in batches]


def enforce(reports: Sequence[LintReport], policy: Literal["warn", "block"]) -> list[str]:
    """The lines to show for every finding; under "block" raise LintBlocked if any is not accepted."""
    if policy not in ("warn", "block"):
        raise ValueError(f"lint policy {policy!r} must be 'warn' or 'block'")
    unaccepted = [f for r in reports for f in r.unaccepted]
    if policy == "block" and unaccepted:
        raise LintBlocked(unaccepted)
    return [f.describe() for r in reports for f in r.findings]


def _report(batch: Batch, statements: tuple[SourceStatement, ...], accepted: dict[int, dict[str, str]],
            raw: list[dict[str, Any]]) -> LintReport:
    new_tables = created_tables(statements)
    findings = []
    for item in raw:
        if item["file"] != f"{batch.name}.sql" or item["rule_name"] == "syntax-error":
            continue  # pglast (PostgreSQL's parser) already accepted the file; squawk's parser is its own
        line = item["line"] + 1  # squawk counts lines from 0
        statement = _statement_at(statements, _offset(batch.migration, line, item.get("column") or 0))
        if statement is not None and target_table(statement.node) in new_tables:
            continue
        reason = accepted.get(statement.start, {}).get(item["rule_name"]) if statement else None
        findings.append(LintFinding(batch.name, LINTED_FILE, line, item["rule_name"], item["message"],
                                    item.get("help") or None, reason))
    return LintReport(batch.name, tuple(findings))


def _statement_at(statements: tuple[SourceStatement, ...], offset: int) -> SourceStatement | None:
    """The statement that holds a character offset: the last one starting at or before it."""
    index = bisect_right([s.start for s in statements], offset) - 1
    return statements[max(index, 0)] if statements else None


def _offset(text: str, line: int, column: int) -> int:
    """Character index of a 1-based line and squawk's 0-based column, which counts UTF-8 bytes."""
    lines = text.split("\n")
    if line > len(lines):
        return len(text)
    before = sum(len(x) + 1 for x in lines[: line - 1])
    return before + len(lines[line - 1].encode("utf-8")[:column].decode("utf-8", errors="ignore"))


def _accepted_rules(batch: Batch, statements: tuple[SourceStatement, ...]) -> dict[int, dict[str, str]]:
    """{statement start: {rule: reason}} from the directive comments directly above each statement."""
    directives = _directives(batch)
    accepted: dict[int, dict[str, str]] = {}
    for statement in statements:
        line = statement.line - 1
        while line in directives:
            rule, reason = directives[line]
            if rule:
                accepted.setdefault(statement.start, {})[rule] = reason
            line -= 1
    return accepted


def _directives(batch: Batch) -> dict[int, tuple[str | None, str]]:
    """{line: (rule, reason)} for every line that holds only a `--` comment; rule None for plain comments."""
    text = batch.migration
    lines = text.split("\n")
    found: dict[int, tuple[str | None, str]] = {}
    for token in scan(text):
        if token.name != "SQL_COMMENT":
            continue
        line = line_of(text, token.start)
        comment = text[token.start : token.end + 1].strip()
        if "squawk-ignore" in comment:
            raise LintDirectiveInvalid(batch.name, LINTED_FILE, line, "squawk-ignore skips a rule without a reason")
        if lines[line - 1].strip() == comment:  # alone on its line: can sit above a statement
            found[line] = _directive(batch, line, comment)
    return found


def _directive(batch: Batch, line: int, comment: str) -> tuple[str | None, str]:
    if not re.match(r"^--\s*lint\s*:", comment):
        return (None, "")
    match = DIRECTIVE.match(comment)
    if not match:
        raise LintDirectiveInvalid(batch.name, LINTED_FILE, line, f"malformed lint directive {comment!r}")
    reason = (match["reason"] or "").strip()
    if not reason:
        raise LintDirectiveInvalid(
            batch.name, LINTED_FILE, line, f"lint directive accepts {match['rule']} without a reason"
        )
    return (match["rule"], reason)


def squawk_path() -> str:
    """The squawk installed next to this Python (the venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.is_file() else shutil.which("squawk")
    if not found:
        raise LinterFailed(f"no squawk binary next to {sys.executable} or on PATH")
    return found


def _run_squawk(batches: Sequence[Batch]) -> list[dict[str, Any]]:
    """Run squawk once over every batch's migration.sql, written as <batch name>.sql in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="squawk-") as scratch:
        folder = Path(scratch)
        (folder / ".squawk.toml").write_text("", encoding="utf-8")  # no stray config from a parent folder
        for batch in batches:
            (folder / f"{batch.name}.sql").write_text(batch.migration, encoding="utf-8")
        command = [squawk_path(), "--reporter", "json", "--config", ".squawk.toml",
                   f"--exclude={','.join(EXCLUDED_RULES)}", *(f"{b.name}.sql" for b in batches)]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode not in SQUAWK_OK:
        raise LinterFailed(f"squawk exited with {done.returncode}: {done.stderr.strip()[:500]}")
    try:
        return json.loads(done.stdout or "[]")
    except json.JSONDecodeError as err:
        raise LinterFailed(f"squawk printed no JSON report ({err})") from err
