"""Applies, validates, adopts and rolls back batches with psycopg. Knows nothing of Pulumi.

apply_batch: under the migration lock, runs migration.sql step by step (see steps.py), each transactional
step together with its progress row, CONCURRENTLY steps alone in autocommit (dropping an INVALID leftover
first); every step runs under lock_timeout and is retried with backoff when it cannot take its lock. Then
validation.sql runs; the ledger row is written only when every check passes. A SQL error, an exhausted
lock budget or a failed check undoes the batch with its rollback.sql (which must be idempotent). A lost
connection or a killed process leaves the finished steps recorded, and the next run resumes from there.
"""

from __future__ import annotations

import getpass
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from .errors import (
    AdoptionRefused,
    BatchChanged,
    ConnectionLost,
    DatabaseError,
    LockNotAcquired,
    MigrationError,
    RollbackFailed,
    RunStopped,
    StatementFailed,
    UndoFailed,
    ValidationFailed,
)
from .ledger import Ledger, LedgerEntry
from .lock import MigrationLock, migration_lock
from .plan import BATCH_FILES, Batch
from .steps import Statement, Step, plan_steps
from .target import Target
from .validation import CheckResult, run_checks

MAX_BACKOFF_S = 5.0
CLIENT_CHECK_MS = 1000


def default_applied_by() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class RunSettings:
    """How a run behaves: timeouts and retries for lock-taking statements, and who is recorded."""

    stack: str = "local"
    lock_timeout_ms: int = 500
    statement_timeout_ms: int = 30 * 60_000
    lock_retries: int = 10
    lock_wait_ms: int = 120_000
    role: str | None = None
    applied_by: str = field(default_factory=default_applied_by)
    # Asked before every step; a reason (text) stops the run there, finished steps stay recorded.
    stop_reason: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ApplyResult:
    batch: str
    checksums: dict[str, str]
    applied_at: str
    duration_ms: int
    checks: tuple[CheckResult, ...]
    adopted: bool = False
    already_applied: bool = False


@contextmanager
def database_errors(target: Target, during: str, batch: Batch | None = None) -> Iterator[None]:
    """psycopg errors that escape the step runner become one of the engine's errors, never a traceback."""
    try:
        yield
    except psycopg.Error as err:
        if connection_lost(err):
            raise ConnectionLost(target.display(), batch.name if batch else None, during) from None
        where = f"{during} of batch '{batch.name}'" if batch else during
        raise DatabaseError(target.display(), where, _cause(err)) from None


def connection_lost(err: psycopg.Error) -> bool:
    """The connection itself failed (not a statement): client-side loss, terminated backend, server shutdown."""
    return err.sqlstate is None or isinstance(err, (pg_errors.AdminShutdown, pg_errors.CrashShutdown,
                                                    pg_errors.ConnectionException))


def applied_batches(target: Target) -> dict[str, LedgerEntry]:
    with database_errors(target, "reading the ledger"), target.connect(autocommit=True) as conn:
        return Ledger(conn).entries()


def verify_unchanged(batch: Batch, entry: LedgerEntry) -> None:
    """Raise BatchChanged if any file of an applied batch differs from what was applied."""
    for file in BATCH_FILES:
        if batch.checksums[file] != entry.checksums[file]:
            raise BatchChanged(batch.name, file, entry.checksums[file], batch.checksums[file])


def pending_batches(target: Target, batches: Sequence[Batch]) -> tuple[Batch, ...]:
    """Batches the ledger lacks; an applied batch whose files changed is refused."""
    entries = applied_batches(target)
    for batch in batches:
        if batch.name in entries:
            verify_unchanged(batch, entries[batch.name])
    return tuple(b for b in batches if b.name not in entries)


def apply_batch(target: Target, batch: Batch, settings: RunSettings) -> ApplyResult:
    with database_errors(target, "apply", batch), _session(target, settings) as run:
        return run.apply(batch)


def adopt_batch(target: Target, batch: Batch, settings: RunSettings) -> ApplyResult:
    """Record a batch as applied without running it, after its validation confirms the live schema."""
    with database_errors(target, "adoption", batch), _session(target, settings) as run:
        return run.adopt(batch)


def rollback_batch(target: Target, batch: Batch, settings: RunSettings) -> bool:
    """Run rollback.sql and forget the batch. False if the ledger did not have it (nothing to do)."""
    with database_errors(target, "rollback", batch), _session(target, settings) as run:
        return run.rollback(batch)


@contextmanager
def _session(target: Target, settings: RunSettings) -> Iterator[_Run]:
    """The migration lock, and under it a work connection with the timeouts and the role set."""
    target = replace(target, application_name=f"junkquote-db migrations ({settings.stack}, {settings.applied_by})"[:63])
    with migration_lock(target, settings.lock_wait_ms) as lock:
        run = _Run(target, settings, lock)
        try:
            yield run
        finally:
            run.close()


class _Run:
    def __init__(self, target: Target, settings: RunSettings, lock: MigrationLock) -> None:
        self.target, self.settings, self.lock = target, settings, lock
        self._current: Statement | None = None
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        """A work connection: timeouts set, the ledger ensured as the connecting user (who owns it), then the role."""
        conn = self.target.connect(autocommit=True)
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.settings.lock_timeout_ms)}ms",))
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(self.settings.statement_timeout_ms)}ms",))
        if conn.info.server_version >= 140000:
            # Abort a running statement (e.g. CREATE INDEX CONCURRENTLY) soon after this process dies.
            conn.execute("SELECT set_config('client_connection_check_interval', %s, false)", (f"{CLIENT_CHECK_MS}ms",))
        Ledger(conn).ensure(grant_to=self.settings.role)
        if self.settings.role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.settings.role)))
        return conn

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.conn)

    # -- apply -------------------------------------------------------------------------------------
    def apply(self, batch: Batch) -> ApplyResult:
        recorded = self._recorded(batch)
        if recorded is not None:
            return recorded
        steps = plan_steps(batch, "migration.sql")
        started = time.monotonic()
        if self.ledger.undo_pending(batch.name):
            self._undo(batch)  # a previous undo was interrupted: finish it before starting over
        self._discard_stale_progress(batch, steps)
        self._run_all(batch, steps)
        checks = self._validate(batch)
        self.lock.verify()
        with self.conn.transaction():
            entry = self.ledger.record(batch, duration_ms=int((time.monotonic() - started) * 1000),
                                       applied_by=self.settings.applied_by, stack=self.settings.stack)
        return _result(batch, entry, checks)

    def adopt(self, batch: Batch) -> ApplyResult:
        recorded = self._recorded(batch)
        if recorded is not None:
            return recorded
        checks = run_checks(self.conn, batch, self.settings.statement_timeout_ms)
        failed = _failed(checks)
        if failed:
            raise AdoptionRefused(batch.name, failed)
        with self.conn.transaction():
            entry = self.ledger.record(batch, duration_ms=0, applied_by=self.settings.applied_by,
                                       stack=self.settings.stack, adopted=True)
        return _result(batch, entry, checks)

    def _recorded(self, batch: Batch) -> ApplyResult | None:
        """The ledger's result for a batch applied before (refused if its files changed since), else None."""
        entry = self.ledger.entry(batch.name)
        if entry is None:
            return None
        verify_unchanged(batch, entry)
        return _result(batch, entry, (), already_applied=True)

    def _discard_stale_progress(self, batch: Batch, steps: Sequence[Step]) -> None:
        """A half-applied run of a different version of this batch is undone before starting over."""
        done = self.ledger.finished_steps(batch.name, "migration.sql")
        current = {s.number: s.sha256 for s in steps}
        if any(current.get(number) != sha for number, sha in done.items()):
            self._undo(batch)

    def _run_all(self, batch: Batch, steps: Iterable[Step]) -> None:
        done = self.ledger.finished_steps(batch.name, "migration.sql")
        for step in steps:
            if step.number in done:
                continue
            try:
                self._run_step(batch, step, track=True)
            except (ConnectionLost, RunStopped):
                raise
            except MigrationError as err:
                self._undo_after(batch, err)

    def _validate(self, batch: Batch) -> tuple[CheckResult, ...]:
        try:
            checks = run_checks(self.conn, batch, self.settings.statement_timeout_ms)
        except psycopg.Error:  # run_checks re-raises only when the connection broke
            raise ConnectionLost(self.target.display(), batch.name, "validation") from None
        except MigrationError as err:
            self._undo_after(batch, err)
        failed = _failed(checks)
        if failed:
            self._undo_after(batch, ValidationFailed(batch.name, failed))
        return checks

    # -- rollback ------------------------------------------------------------------------------------
    def rollback(self, batch: Batch) -> bool:
        """Roll back what this stack applied; a batch another stack applied (or none) is left alone."""
        entry = self.ledger.entry(batch.name)
        if entry is None or entry.stack != self.settings.stack:
            return False
        if not entry.adopted:
            try:
                for step in plan_steps(batch, "rollback.sql"):
                    self._run_step(batch, step, track=False)
            except (StatementFailed, LockNotAcquired) as err:
                raise RollbackFailed(batch.name, err.summary) from None
        with self.conn.transaction():
            self.ledger.remove(batch.name)
        return True

    def _undo_after(self, batch: Batch, err: MigrationError) -> NoReturn:
        """Undo the batch, then re-raise err (saying whether undoing worked, and if not, why)."""
        try:
            self._undo(batch)
        except UndoFailed as undo_err:
            raise _not_undone(err, undo_err.summary) from None
        raise err

    def _undo(self, batch: Batch) -> None:
        """rollback.sql, bracketed by an undo marker so that an interrupted undo is finished by the next run."""
        if self.conn.broken or self.conn.closed:
            self.conn = self._connect()
        with self.conn.transaction():
            self.ledger.begin_undo(batch.name)
        try:
            for step in plan_steps(batch, "rollback.sql"):
                self._run_step(batch, step, track=False)
        except (StatementFailed, LockNotAcquired) as err:
            raise UndoFailed(batch.name, err.summary) from None
        with self.conn.transaction():
            self.ledger.forget_steps(batch.name)

    # -- one step ------------------------------------------------------------------------------------
    def _run_step(self, batch: Batch, step: Step, *, track: bool) -> None:
        self.lock.verify()
        self._stop_if_asked(batch, step)
        self._current = None
        attempts = self.settings.lock_retries + 1
        for attempt in range(attempts):
            try:
                self._attempt(batch, step, track)
                return
            except pg_errors.LockNotAvailable:
                if attempt + 1 < attempts:
                    time.sleep(_backoff_s(attempt, self.settings.lock_timeout_ms))
            except psycopg.Error as err:
                raise self._step_error(batch, step, err) from None
        raise LockNotAcquired(batch.name, step.file, step.line, attempts, self.settings.lock_timeout_ms)

    def _stop_if_asked(self, batch: Batch, step: Step) -> None:
        reason = self.settings.stop_reason() if self.settings.stop_reason else None
        if reason:
            raise RunStopped(batch.name, step.file, step.number, reason)

    def _attempt(self, batch: Batch, step: Step, track: bool) -> None:
        if step.autocommit:
            self._run_concurrent(step.statements[0])
            if track:
                with self.conn.transaction():
                    self.ledger.finish_step(batch.name, step.file, step.number, step.sha256)
            return
        with self.conn.transaction():
            for stmt in step.statements:
                self._current = stmt
                if not self._without_effect(stmt):
                    self.conn.execute(stmt.sql)
            if track:
                self.ledger.finish_step(batch.name, step.file, step.number, step.sha256)

    def _run_concurrent(self, stmt: Statement) -> None:
        """CREATE INDEX CONCURRENTLY, resumable: a valid index is kept, an INVALID leftover rebuilt.

        Runs without lock_timeout: its SHARE UPDATE EXCLUSIVE lock never blocks reads or writes, and it must
        wait for every older transaction in the database; statement_timeout still bounds it."""
        self._current = stmt
        if self._without_effect(stmt):
            return
        with self._no_lock_timeout():
            if stmt.index_name and stmt.index_table:
                valid = self._index_valid(stmt.index_name, stmt.index_table)
                if valid:
                    return
                if valid is False:
                    self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                        sql.Identifier(*self._index_schema(stmt.index_table), stmt.index_name)))
            self.conn.execute(stmt.sql)

    @contextmanager
    def _no_lock_timeout(self) -> Iterator[None]:
        self.conn.execute("SELECT set_config('lock_timeout', '0', false)")
        try:
            yield
        finally:
            if not self.conn.broken:
                self.conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.settings.lock_timeout_ms)}ms",))

    def _without_effect(self, stmt: Statement) -> bool:
        """True for an IF EXISTS drop whose object is already gone: skipped, so it takes no lock."""
        if stmt.absent_probe is None:
            return False
        query, params = stmt.absent_probe
        row = self.conn.execute(query, params).fetchone()
        return bool(row and row[0])

    def _index_schema(self, table: str) -> tuple[str, ...]:
        """The schema an index on `table` lives in (an index always lives in its table's schema)."""
        row = self.conn.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            (table,)).fetchone()
        return (row[0],) if row else ()

    def _index_valid(self, name: str, table: str) -> bool | None:
        """Validity of the index `name` in the schema of `table`; None if there is none."""
        row = self.conn.execute(
            """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = %s AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%s))""",
            (name, table)).fetchone()
        return None if row is None else bool(row[0])

    def _step_error(self, batch: Batch, step: Step, err: psycopg.Error) -> MigrationError:
        stmt = self._current or step.statements[0]
        if self.conn.broken or connection_lost(err):
            return ConnectionLost(self.target.display(), batch.name, f"{step.file} step {step.number} (line {stmt.line})")
        cause = _cause(err)
        if isinstance(err, pg_errors.QueryCanceled):
            cause = f"{cause} (statement_timeout is {self.settings.statement_timeout_ms} ms)"
        return StatementFailed(batch.name, step.file, stmt.line, cause)


def _failed(checks: Iterable[CheckResult]) -> list[tuple[str, str]]:
    return [(c.name, c.detail) for c in checks if not c.ok]


def _backoff_s(attempt: int, lock_timeout_ms: int) -> float:
    base = min(lock_timeout_ms / 1000 * (2 ** attempt), MAX_BACKOFF_S)
    return base * random.uniform(0.5, 1.0)


def _cause(err: psycopg.Error) -> str:
    diag = err.diag
    text = (diag.message_primary or str(err)).strip()
    return f"{text} (SQLSTATE {diag.sqlstate})" if diag.sqlstate else text


def _not_undone(err: MigrationError, undo_error: str) -> MigrationError:
    """The same error, saying that undoing the batch failed as well, and why."""
    if isinstance(err, StatementFailed):
        return StatementFailed(err.batch, err.file, err.line, err.cause, undo_error=undo_error)
    if isinstance(err, ValidationFailed):
        return ValidationFailed(err.batch, err.failed, undo_error=undo_error)
    if isinstance(err, LockNotAcquired):
        return LockNotAcquired(err.batch, err.file, err.line, err.attempts, err.lock_timeout_ms, undo_error=undo_error)
    return err


def _result(batch: Batch, entry: LedgerEntry, checks: tuple[CheckResult, ...], *, already_applied: bool = False) -> ApplyResult:
    return ApplyResult(
        batch=batch.name, checksums=entry.checksums, applied_at=entry.applied_at.isoformat(),
        duration_ms=entry.duration_ms, checks=checks, adopted=entry.adopted, already_applied=already_applied,
    )
