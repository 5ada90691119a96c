"""Reads batch files with PostgreSQL's own parser (pglast): syntax errors, refused statements, statement spans.

No database and no subprocess: this is what `pulumi preview` can afford for every pending batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pglast import ast
from pglast.parser import ParseError, parse_sql
from pglast.stream import RawStream

from .errors import SqlSyntaxError, UnsupportedStatement
from .plan import BATCH_FILES, Batch, sha256_text

TableName = tuple[str | None, str]
"""(schema or None when unqualified, relation name as PostgreSQL folds it: quoted names keep their case)."""

NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class SourceStatement:
    """One top-level statement of a batch file and where it sits in that file."""

    node: ast.Node
    start: int  # character index of its first token (pglast skips leading comments)
    end: int  # character index just past it, before the terminating semicolon
    line: int  # 1-based line of its first token


def line_of(text: str, index: int) -> int:
    """1-based line number of the character at index."""
    return text.count("\n", 0, max(0, min(index, len(text)))) + 1


def parse_statements(batch: Batch, file: str) -> tuple[SourceStatement, ...]:
    """The statements of one batch file; raises SqlSyntaxError with the file's line number."""
    text = batch.text(file)
    try:
        raws = parsed(text)
    except ParseError as err:
        raise SqlSyntaxError(batch.name, file, _error_line(text, err), err.args[0]) from err
    return tuple(_statement(text, raw) for raw in raws)


@lru_cache(maxsize=2048)
def parsed(text: str) -> tuple[ast.RawStmt, ...]:
    """PostgreSQL's parse of a text, kept for the process: a program run parses each file once, whatever the
    number of questions it asks of it (the nodes are only read, never changed)."""
    return tuple(parse_sql(text))


def _statement(text: str, raw: ast.RawStmt) -> SourceStatement:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(text)  # stmt_len 0 means "to the end of the text"
    return SourceStatement(node=raw.stmt, start=start, end=end, line=line_of(text, start))


def _error_line(text: str, err: ParseError) -> int:
    # ParseError.args is (message, cursor index or None); there is no `.location` attribute in pglast 8.7.
    # pglast 8.7 turns PostgreSQL's byte cursor into a wrong character index when multi-byte characters
    # precede it, so the position is taken from the same text with every non-ASCII character replaced by
    # one ASCII letter (same characters, same tokens, and byte offsets equal character offsets).
    location = err.args[1] if len(err.args) > 1 else None
    if NON_ASCII.search(text):
        try:
            parse_sql(NON_ASCII.sub("x", text))
        except ParseError as ascii_err:
            location = ascii_err.args[1] if len(ascii_err.args) > 1 else None
    if location is None:  # "at end of input": the last line that has anything on it
        return line_of(text, len(text.rstrip()) - 1)
    return line_of(text, location)


def statements_sha256(text: str) -> str | None:
    """sha256 of the statements as PostgreSQL parses them, printed back in one canonical form: comments,
    whitespace and layout do not count, every identifier, constant and keyword does. None if it does not parse."""
    try:
        canonical = ";\n".join(RawStream()(raw.stmt) for raw in parsed(text))
    except ParseError:
        return None
    return sha256_text(canonical)


def accepted_statements(batch: Batch, file: str) -> tuple[SourceStatement, ...]:
    """The statements of one batch file; raises on a syntax error or on a statement the engine refuses."""
    text = batch.text(file)
    statements = parse_statements(batch, file)
    for statement in statements:
        problem = refusal(text, statement)
        if problem:
            raise UnsupportedStatement(batch.name, file, statement.line, problem)
    return statements


def check_syntax(batch: Batch) -> None:
    """Parse every file of the batch; raise on a syntax error, on a statement the engine refuses, or on a
    file without any statement (an empty batch would be recorded as applied and could never be filled in)."""
    for file in BATCH_FILES:
        if not accepted_statements(batch, file):
            raise UnsupportedStatement(batch.name, file, 1, f"has no statements; every batch needs its {file}")


def refusal(text: str, statement: SourceStatement) -> str | None:
    """Why the engine refuses this statement, or None when it can run it."""
    node = statement.node
    if isinstance(node, ast.TransactionStmt):
        keyword = text[statement.start : statement.end].split(None, 1)[0].upper()
        return (
            f"{keyword} is not allowed in a batch file: the engine runs each statement in its own transaction "
            "(and CREATE INDEX CONCURRENTLY outside any); remove it"
        )
    if isinstance(node, (ast.VariableSetStmt, ast.ConstraintsSetStmt)):
        return (
            "SET/RESET is not allowed in a batch file: the engine owns the session and applies lock_timeout "
            "and statement_timeout itself; remove it"
        )
    if isinstance(node, ast.IndexStmt) and not node.idxname:
        return (
            "CREATE INDEX without an index name; name it explicitly (e.g. CREATE INDEX \"Lead_email_idx\" ON ...) "
            "so a resumed run and rollback.sql can refer to it"
        )
    return None


def target_table(node: ast.Node) -> TableName | None:
    """The table a statement creates, alters or indexes, when it names one."""
    relation = node.into.rel if isinstance(node, ast.CreateTableAsStmt) else getattr(node, "relation", None)
    if isinstance(relation, ast.RangeVar):
        return (relation.schemaname, relation.relname)
    return None


def created_tables(statements: tuple[SourceStatement, ...]) -> frozenset[TableName]:
    """Tables the statements create. CREATE TABLE IF NOT EXISTS is left out: its author expects the table may exist."""
    return frozenset(
        target
        for s in statements
        if isinstance(s.node, (ast.CreateStmt, ast.CreateTableAsStmt))
        and not s.node.if_not_exists
        and (target := target_table(s.node)) is not None
    )
