"""Drift: how the live schema differs from what the applied batches built. Reports; never repairs.

The expected shape is the one recorded in the ledger with the newest applied batch (see ledger.py), so a
batch that alters an earlier batch's table changes that table's expected shape, not drift. Differences are
reported object by object in a reviewer's terms (`column "Lead".notes: extra`). Objects the stack's
allow-list names (`migrations.allowedDrift`) are left out of the comparison on both sides. Drift on an
object that a pending batch changes is deferred: that batch is the deliberate change, and the shape
recorded after it becomes the expectation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

import psycopg

from .catalog import Column, EnumType, Shape, Table, read_shape
from .errors import SchemaDrift, StatementFailed
from .ledger import Ledger
from .lock import migration_lock
from .objects import ENUM, TABLE, ObjectKey, touched_by
from .plan import Batch
from .runner import database_errors
from .target import Target
from .validation import run_all_checks

ALLOWED_ENTRY = re.compile(r"^(?P<kind>table|enum) (?P<name>[^.\s][^\s]*)$|"
                           r"^(?P<part>column|index|constraint) (?P<table>[^.\s]+)\.(?P<item>[^\s]+)$")
ALLOWED_FORMAT = "'table T', 'enum E', 'column T.c', 'index T.i' or 'constraint T.k'"


@dataclass(frozen=True)
class Difference:
    """One way the live schema differs from the expected shape."""

    kind: str  # table | enum | column | index | constraint
    owner: str  # the table or enum type
    name: str | None  # the column, index or constraint (None for a table or enum type)
    change: str  # missing | extra | changed
    detail: str = ""

    @property
    def key(self) -> ObjectKey:
        return (ENUM, self.owner) if self.kind == ENUM else (TABLE, self.owner)

    @property
    def entry(self) -> str:
        """How the allow-list names this object."""
        return f"{self.kind} {self.owner}" if self.name is None else f"{self.kind} {self.owner}.{self.name}"

    def __str__(self) -> str:
        thing = f'{self.kind} "{self.owner}"' + (f".{self.name}" if self.name else "")
        what = {"missing": "missing (the batches built it)", "extra": "extra (no batch built it)"}.get(self.change, self.detail)
        return f"{thing}: {what}"


@dataclass(frozen=True)
class FailedCheck:
    batch: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"check {self.batch}/{self.check}: {self.detail}"


@dataclass(frozen=True)
class DriftReport:
    """The outcome of one drift check."""

    target: str
    newest: str | None = None  # newest applied batch: the expected shape is the one recorded with it
    expected: Shape | None = None
    differences: tuple[Difference, ...] = ()
    deferred: tuple[Difference, ...] = ()  # on objects a pending batch changes
    failed_checks: tuple[FailedCheck, ...] = ()
    unrecorded: bool = False  # the newest batch was applied before shapes were recorded
    pending: tuple[str, ...] = ()  # batches the ledger does not have yet

    @property
    def clean(self) -> bool:
        return not self.differences and not self.failed_checks

    def lines(self) -> list[str]:
        return [str(d) for d in self.differences] + [str(c) for c in self.failed_checks]

    def error(self) -> SchemaDrift:
        return SchemaDrift(self.target, self.newest or "none", self.lines())


# -- the allow-list ------------------------------------------------------------------------------------
def parse_allowed(entries: Iterable[str]) -> frozenset[str]:
    """Validated allow-list entries; raises ValueError naming the first malformed one."""
    allowed = set()
    for entry in entries:
        if not isinstance(entry, str) or not ALLOWED_ENTRY.match(entry.strip()):
            raise ValueError(f"'{entry}' is not one of {ALLOWED_FORMAT}")
        allowed.add(entry.strip())
    return frozenset(allowed)


def without_allowed(shape: Shape, allowed: Iterable[str]) -> Shape:
    """The shape with every allowed object left out."""
    allowed = frozenset(allowed)
    if not allowed:
        return shape
    tables = tuple(_table_without(t, allowed) for t in shape.tables if f"table {t.name}" not in allowed)
    return replace(shape, tables=tables, enums=tuple(e for e in shape.enums if f"enum {e.name}" not in allowed))


def _table_without(table: Table, allowed: frozenset[str]) -> Table:
    def kept(kind: str, name: str) -> bool:
        return f"{kind} {table.name}.{name}" not in allowed
    return Table(table.name, tuple(c for c in table.columns if kept("column", c.name)),
                 tuple(i for i in table.indexes if kept("index", i.name)),
                 tuple(c for c in table.constraints if kept("constraint", c.name)))


# -- comparing shapes --------------------------------------------------------------------------------
def compare(expected: Shape, live: Shape, allowed: Iterable[str] = ()) -> tuple[Difference, ...]:
    """Every difference between two shapes, objects sorted by name, allowed objects left out."""
    expected, live = without_allowed(expected, allowed), without_allowed(live, allowed)
    out: list[Difference] = []
    out += _presence(TABLE, [t.name for t in expected.tables], [t.name for t in live.tables])
    for table in expected.tables:
        other = live.table(table.name)
        if other is not None:
            out += compare_tables(table, other)
    out += _presence(ENUM, [e.name for e in expected.enums], [e.name for e in live.enums])
    for enum in expected.enums:
        other = live.enum(enum.name)
        if other is not None and other.labels != enum.labels:
            out.append(Difference(ENUM, enum.name, None, "changed", f"labels {_labels(enum)} → {_labels(other)}"))
    return tuple(out)


def compare_tables(expected: Table, live: Table) -> list[Difference]:
    name = expected.name
    out = _presence("column", [c.name for c in expected.columns], [c.name for c in live.columns], name)
    live_columns = {c.name: c for c in live.columns}
    for column in expected.columns:
        if column.name in live_columns:
            out += _column_changes(name, column, live_columns[column.name])
    for kind, exp, got in (("index", _indexes(expected), _indexes(live)),
                           ("constraint", {c.name: c.definition for c in expected.constraints},
                            {c.name: c.definition for c in live.constraints})):
        out += _presence(kind, list(exp), list(got), name)
        out += [Difference(kind, name, item, "changed", f"{exp[item]} → {got[item]}")
                for item in sorted(exp) if item in got and exp[item] != got[item]]
    return out


def _column_changes(table: str, exp: Column, got: Column) -> list[Difference]:
    out = []
    if exp.type != got.type:
        out.append(Difference("column", table, exp.name, "changed", f"type {exp.type} → {got.type}"))
    if exp.nullable != got.nullable:
        out.append(Difference("column", table, exp.name, "changed", f"{_null(exp)} → {_null(got)}"))
    if exp.default != got.default:
        out.append(Difference("column", table, exp.name, "changed", f"default {exp.default or 'none'} → {got.default or 'none'}"))
    return out


def _presence(kind: str, expected: Sequence[str], live: Sequence[str], owner: str | None = None) -> list[Difference]:
    def diff(name: str, change: str) -> Difference:
        return Difference(kind, owner, name, change) if owner else Difference(kind, name, None, change)
    exp, got = set(expected), set(live)
    return [diff(n, "missing") for n in sorted(exp - got)] + [diff(n, "extra") for n in sorted(got - exp)]


def _indexes(table: Table) -> dict[str, str]:
    return {i.name: i.definition + ("" if i.valid else " (INVALID)") for i in table.indexes}


def _null(column: Column) -> str:
    return "nullable" if column.nullable else "NOT NULL"


def _labels(enum: EnumType) -> str:
    return "(" + ", ".join(enum.labels) + ")"


# -- checking a database ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftCheck:
    """What a drift check compares and runs."""

    batches: tuple[Batch, ...] = ()  # every batch under sql/ (applied and pending)
    allowed: frozenset[str] = field(default_factory=frozenset)
    validations: bool = False  # also run each applied batch's validation.sql (rolled back)
    statement_timeout_ms: int = 30 * 60_000


def check_drift(target: Target, check: DriftCheck) -> DriftReport:
    """Compare the live schema with the shape recorded after the newest applied batch."""
    with _errors(target), target.connect(autocommit=True) as conn:
        ledger = Ledger(conn)
        newest = ledger.expected_shape()
        applied = ledger.entries()
        pending = tuple(b for b in check.batches if b.name not in applied)
        names = tuple(b.name for b in pending)
        if newest is None:
            return DriftReport(target.display(), pending=names)
        batch, expected = newest
        failed = _failed_checks(conn, ledger, check) if check.validations else ()
        if expected is None:
            return DriftReport(target.display(), batch, None, failed_checks=failed, unrecorded=True, pending=names)
        found = compare(expected, read_shape(conn, expected.schema), check.allowed)
        touched = touched_by(pending, expected.index_tables()) if pending else frozenset()
        return DriftReport(target.display(), batch, expected,
                           differences=tuple(d for d in found if d.key not in touched),
                           deferred=tuple(d for d in found if d.key in touched), failed_checks=failed, pending=names)


def record_unrecorded_shape(target: Target, check: DriftCheck, lock_wait_ms: int) -> DriftReport:
    """For a database whose newest batch predates recorded shapes: once that batch's validation checks pass,
    record the live shape with it (under the migration lock). Returns the report after it."""
    with _errors(target), migration_lock(target, lock_wait_ms), target.connect(autocommit=True) as conn:
        ledger = Ledger(conn)
        newest = ledger.expected_shape()
        if newest is None or newest[1] is not None:
            return check_drift(target, check)
        newest_batch = tuple(b for b in check.batches if b.name == newest[0])
        failed = _failed_checks(conn, ledger, replace(check, batches=newest_batch))
        if failed:
            return DriftReport(target.display(), newest[0], failed_checks=failed, unrecorded=True)
        ledger.ensure_shapes()
        with conn.transaction():
            ledger.record_shape(newest[0], read_shape(conn))
    return check_drift(target, check)


def _failed_checks(conn: psycopg.Connection, ledger: Ledger, check: DriftCheck) -> tuple[FailedCheck, ...]:
    """Each applied batch's validation.sql, in a transaction that is always rolled back."""
    applied = ledger.entries()
    failed: list[FailedCheck] = []
    for batch, outcome in run_all_checks(conn, [b for b in check.batches if b.name in applied], check.statement_timeout_ms):
        if isinstance(outcome, StatementFailed):
            failed.append(FailedCheck(batch.name, f"validation.sql:{outcome.line}", outcome.cause))
        else:
            failed += [FailedCheck(batch.name, r.name, r.detail) for r in outcome if not r.ok]
    return tuple(failed)


def checks_failing(target: Target, check: DriftCheck) -> tuple[FailedCheck, ...]:
    """Only the validation checks of the applied batches (what a refresh of the schema's checks runs)."""
    with _errors(target), target.connect(autocommit=True) as conn:
        return _failed_checks(conn, Ledger(conn), check)


def _errors(target: Target) -> AbstractContextManager[None]:
    return database_errors(target, "checking the schema for drift")


def live_objects(target: Target, schema: str | None = None) -> Shape:
    """The live shape (for resources that describe one object)."""
    with _errors(target), target.connect(autocommit=True) as conn:
        return read_shape(conn, schema or _expected_schema(conn))


def expected_objects(target: Target) -> tuple[str | None, Shape | None]:
    """(newest applied batch, its recorded shape or None)."""
    with _errors(target), target.connect(autocommit=True) as conn:
        newest = Ledger(conn).expected_shape()
        return (None, None) if newest is None else newest


def _expected_schema(conn: psycopg.Connection) -> str | None:
    newest = Ledger(conn).expected_shape()
    return newest[1].schema if newest and newest[1] else None


def unexpected_objects(expected: Shape, live: Shape, allowed: Iterable[str]) -> list[str]:
    """Tables and enum types in the live schema that no batch built and the allow-list does not name."""
    return [str(d) for d in compare(expected, live, allowed) if d.name is None and d.change == "extra"]
