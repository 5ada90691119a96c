"""Applies, validates, adopts and rolls back batches with psycopg. Knows nothing of Pulumi.

apply_batch: under the migration lock, runs migration.sql step by step (see steps.py), each transactional
step together with its progress row, CONCURRENTLY steps alone in autocommit (dropping an INVALID leftover
first); every step runs under lock_timeout and is retried with backoff when it cannot take its lock. Then
validation.sql runs; the ledger row is written only when every check passes. A SQL error, an exhausted
lock budget or a failed check undoes the batch with its rollback.sql (which must be idempotent). A lost
connection or a killed process leaves the finished steps recorded, and the next run resumes from there.
Validation that cannot run (a lock held elsewhere past statement_timeout) undoes nothing.

For an applied batch, apply_batch records corrected files (validation.sql, rollback.sql, a migration.sql with
the same statements). rollback_batch runs the ledger's rollback.sql through the same planner, each finished
step recorded under a marker, so a rollback that stopped resumes where it stopped; until it finishes, no other
batch is applied.
"""

from __future__ import annotations

import getpass
import random
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from .database_errors import cause, connection_lost, database_errors
from . import progress
from .backfill import BackfillRun, load_spec, run_backfill
from .catalog import read_shape
from .errors import (
    AdoptionRefused,
    BatchFilesMissing,
    BatchCorrectionRefused,
    ConnectionLost,
    LockNotAcquired,
    MigrationError,
    RollbackFailed,
    RollbackIncomplete,
    RunStopped,
    StatementFailed,
    TargetUnreachable,
    UndoFailed,
    UnsupportedStatement,
    ValidationFailed,
    ValidationNotRun,
    failed_checks,
)
from .ledger import ROLLBACK_MARKER, UNDO_MARKER, Ledger, LedgerEntry
from .lock import MigrationLock, migration_lock
from .plan import Batch
from .state import as_recorded, incomplete, verify_unchanged
from .steps import PlannedStatement, Step, plan_steps, split_statements
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
    backfill: BackfillRun = field(default_factory=BackfillRun)  # batches with a backfill.toml (backfill.py)
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


def apply_batch(target: Target, batch: Batch, settings: RunSettings) -> ApplyResult:
    """Apply, validate and record a batch; for one already applied, record corrections of its files."""
    with database_errors(target, "apply", batch.name), _session(target, settings) as run:
        return run.apply(batch)


def adopt_batch(target: Target, batch: Batch, settings: RunSettings) -> ApplyResult:
    """Record a batch as applied without running it, after its validation confirms the live schema."""
    with database_errors(target, "adoption", batch.name), _session(target, settings) as run:
        return run.adopt(batch)


def rollback_batch(target: Target, batch: Batch, settings: RunSettings) -> bool:
    """Run rollback.sql (the ledger's, which corrections keep current) and forget the batch; a rollback that
    stopped resumes where it stopped. False if the ledger did not have the batch (nothing to do)."""
    with database_errors(target, "rollback", batch.name), _session(target, settings) as run:
        return run.rollback(batch)


def apply_batches(target: Target, batches: Sequence[Batch], settings: RunSettings,
                  adopted: Collection[str] = ()) -> tuple[ApplyResult, ...]:
    """apply_batch (or adopt_batch, for the names in `adopted`) for each batch in order, under one lock."""
    with database_errors(target, "apply"), _session(target, settings) as run:
        results = []
        for batch in batches:
            adopting = batch.name in adopted
            with database_errors(target, "adoption" if adopting else "apply", batch.name):
                results.append(run.adopt(batch) if adopting else run.apply(batch))
        return tuple(results)


def rollback_batches(target: Target, settings: RunSettings, files: Mapping[str, Batch], *,
                     start: str | None = None) -> tuple[str, ...]:
    """Roll back this stack's applied batches, newest first: every one, or `start` and those after it. Each
    runs the files the ledger holds for it (`files` serves rows recorded before the ledger kept them).
    A rollback that stops is recorded and resumes on the next call. Returns the batches rolled back."""
    with database_errors(target, "rollback"), _session(target, settings) as run:
        done = []
        for entry in run.rollback_order(start):
            batch = entry.recorded_batch() or _as_applied(files.get(entry.batch), entry)
            if batch is None:
                raise BatchFilesMissing(entry.batch)
            with database_errors(target, "rollback", entry.batch):
                if run.rollback(batch):
                    done.append(entry.batch)
        return tuple(done)


def _as_applied(batch: Batch | None, entry: LedgerEntry) -> Batch | None:
    """A checkout's batch for a ledger row without its files, only if its migration.sql and rollback.sql are the
    ones recorded (another version's rollback.sql must never run in their place)."""
    if batch is None:
        return None
    sums = batch.checksums
    same = sums["migration.sql"] == entry.migration_sha256 and sums["rollback.sql"] == entry.rollback_sha256
    return batch if same else None


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
        self._current: PlannedStatement | None = None
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        """A work connection: timeouts set, the ledger ensured as the connecting user (who owns it), then the role."""
        conn = self.target.connect_kept()
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.settings.lock_timeout_ms)}ms",))
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(self.settings.statement_timeout_ms)}ms",))
        if conn.info.server_version >= 140000:
            # Abort a running statement (e.g. CREATE INDEX CONCURRENTLY) soon after this process dies.
            conn.execute("SELECT set_config('client_connection_check_interval', %s, false)", (f"{CLIENT_CHECK_MS}ms",))
        Ledger(conn).ensure(grant_to=self.settings.role)
        if self.settings.role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.settings.role)))
        return conn

    def _reconnect(self) -> None:
        """A new work connection in place of a lost one, only while this run still holds the migration lock."""
        self.lock.verify()
        self.conn = self._connect()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.conn)

    @contextmanager
    def _recording(self) -> Iterator[None]:
        """A transaction that writes the ledger or the progress rows, committed only if this run still holds the
        migration lock (verified just before the commit; lost, it rolls back): a run that lost it (its connection
        dropped, the server restarted) must not write over what the run now holding it records."""
        with self.conn.transaction():
            yield
            self.lock.verify()

    # -- apply ---------------------------------------------------------------------------------------
    def apply(self, batch: Batch) -> ApplyResult:
        recorded = self._recorded(batch)
        if recorded is not None:
            return recorded
        self._refuse_during_rollback()
        if batch.backfill:
            load_spec(batch)  # a malformed declaration stops the run before migration.sql, not after it
        split_statements(batch, "validation.sql")  # so does a validation.sql that does not parse
        steps = plan_steps(batch, "migration.sql")
        started = time.monotonic()
        if self.ledger.undo_pending(batch.name):
            self._undo(batch)  # a previous undo was interrupted: finish it before starting over
        self._discard_stale_progress(batch, steps)
        self._run_all(batch, steps)
        checks = self._backfill(batch) if batch.backfill else self._validate(batch)
        with self._recording():
            entry = self.ledger.record(batch, duration_ms=int((time.monotonic() - started) * 1000),
                                       applied_by=self.settings.applied_by, stack=self.settings.stack)
            self.ledger.record_shape(batch.name, read_shape(self.conn))
        return _result(batch, entry, checks)

    def adopt(self, batch: Batch) -> ApplyResult:
        recorded = self._recorded(batch)
        if recorded is not None:
            return recorded
        self._refuse_during_rollback()
        checks = self._checks(batch)
        failed = _failed(checks)
        if failed:
            raise AdoptionRefused(batch.name, failed)
        with self._recording():
            entry = self.ledger.record(batch, duration_ms=0, applied_by=self.settings.applied_by,
                                       stack=self.settings.stack, adopted=True)
            self.ledger.record_shape(batch.name, read_shape(self.conn))
        return _result(batch, entry, checks)

    def _recorded(self, batch: Batch) -> ApplyResult | None:
        """For a batch applied before: its files' corrections recorded (refused if migration.sql has other
        statements), then the ledger's result; an unfinished rollback of it is reported. None if not applied."""
        entry = self.ledger.entry(batch.name)
        if entry is None:
            return None
        verify_unchanged(batch, entry)
        checks: tuple[CheckResult, ...] = ()
        if batch.checksums != entry.checksums:
            checks, entry = self._correct(batch, entry)
        elif not entry.has_files:  # recorded before the ledger kept the files: keep them now
            with self._recording():
                self.ledger.keep_files(batch)
        incomplete = self._rollbackincomplete(batch, entry)
        if incomplete:
            raise incomplete
        return _result(batch, entry, checks, already_applied=True)

    def _correct(self, batch: Batch, entry: LedgerEntry) -> tuple[tuple[CheckResult, ...], LedgerEntry]:
        """Record corrected files of an applied batch; a corrected validation.sql must hold on the live database."""
        checks: tuple[CheckResult, ...] = ()
        if batch.checksums["validation.sql"] != entry.validation_sha256 and not entry.adopted:
            checks = self._checks(batch)
            failed = _failed(checks)
            if failed:
                raise BatchCorrectionRefused(batch.name, failed)
        with self._recording():
            entry = self.ledger.correct(batch, entry, recorded_by=self.settings.applied_by, stack=self.settings.stack)
        return checks, entry

    def _rollbackincomplete(self, batch: Batch, entry: LedgerEntry | None) -> RollbackIncomplete | None:
        rollbacks = self.ledger.rollbacks_in_progress()
        if batch.name not in rollbacks:
            return None
        return incomplete(batch.name, batch, entry, rollbacks[batch.name],
                           self.ledger.finished_steps(batch.name, "rollback.sql"))

    def _refuse_during_rollback(self) -> None:
        """Nothing new is applied while an applied batch is partly rolled back."""
        for name, stopped in self.ledger.rollbacks_in_progress().items():
            raise incomplete(name, None, None, stopped, self.ledger.finished_steps(name, "rollback.sql"))

    def _discard_stale_progress(self, batch: Batch, steps: Sequence[Step]) -> None:
        """A half-applied run of a different version of this batch is undone before starting over."""
        if self.ledger.other_version_started(batch.name, {s.number: s.sha256 for s in steps}):
            self._undo(batch)

    def _run_all(self, batch: Batch, steps: Iterable[Step]) -> None:
        done = self.ledger.finished_steps(batch.name, "migration.sql")
        for step in steps:
            if step.number in done:
                continue
            try:
                self._run_step(batch, step)
            except (StatementFailed, LockNotAcquired) as err:  # the step's own failure; a lost run undoes nothing
                self._undo_after(batch, err)

    def _validate(self, batch: Batch) -> tuple[CheckResult, ...]:
        """The batch's checks; a failed check, or an error in validation.sql itself, undoes the batch. Whatever
        else stops the checks (they could not run for an operational reason, the server could not be reached again,
        the migration lock's connection was lost and another run may hold the lock now) undoes nothing: the next
        run validates again."""
        try:
            checks = self._checks(batch)
        except (StatementFailed, UnsupportedStatement) as err:
            self._undo_after(batch, err)
        failed = _failed(checks)
        if failed:
            self._undo_after(batch, ValidationFailed(batch.name, failed))
        return checks

    def _checks(self, batch: Batch) -> tuple[CheckResult, ...]:
        """validation.sql, in a transaction that is always rolled back, without lock_timeout (its locks never
        block live traffic; statement_timeout bounds each attempt). Deadlocks, serialization failures, a lost
        connection and a server short of a resource are retried with backoff; when it still cannot run (or hit
        statement_timeout or temp_file_limit, which another attempt would hit again, or the server cannot be
        reached again), ValidationNotRun."""
        attempts = self.settings.lock_retries + 1
        for attempt in range(attempts):
            try:
                return run_checks(self.conn, batch, self.settings.statement_timeout_ms)
            except psycopg.Error as err:  # run_checks lets only operational failures through
                summary = cause(err)
                again = not isinstance(err, (pg_errors.QueryCanceled, pg_errors.ConfigurationLimitExceeded))
                if not again or attempt + 1 == attempts:
                    raise ValidationNotRun(batch.name, self.target.display(), summary, attempt + 1) from None
                time.sleep(_backoff_s(attempt, self.settings.lock_timeout_ms))
                if self.conn.broken or self.conn.closed:
                    try:
                        self._reconnect()
                    except TargetUnreachable as unreachable:
                        raise ValidationNotRun(batch.name, self.target.display(), f"{summary}, then reconnecting "
                                               f"failed: {unreachable.cause}", attempt + 1) from None
        raise AssertionError("unreachable")

    # -- backfill (batches that declare one in backfill.toml; see backfill.py) ------------------------
    def _backfill(self, batch: Batch) -> tuple[CheckResult, ...]:
        """The chunked data moves, then validation. Not undone when incomplete: the next run continues."""
        return run_backfill(self.conn, self.target, batch, self.settings.backfill, role=self.settings.role,
                            checks=lambda: self._checks(batch), verify_lock=self.lock.verify)

    # -- rollback ------------------------------------------------------------------------------------
    def rollback_order(self, start: str | None) -> list[LedgerEntry]:
        """This stack's applied batches (from `start` on), newest first."""
        entries = [e for name, e in self.ledger.entries().items()
                   if e.stack == self.settings.stack and (start is None or name >= start)]
        return sorted(entries, key=lambda e: e.batch, reverse=True)

    def rollback(self, batch: Batch) -> bool:
        """Roll back what this stack applied; a batch another stack applied (or none) is left alone."""
        entry = self.ledger.entry(batch.name)
        if entry is None or entry.stack != self.settings.stack:
            return False
        if not entry.adopted:
            try:
                self._run_rollback(as_recorded(batch, entry), ROLLBACK_MARKER)
            except _Stopped as stop:
                raise RollbackFailed(batch.name, stop.summary, stop.done, stop.total) from None
        with self._recording():
            progress.forget(self.conn, batch.name)
            self.ledger.remove(batch.name)
        return True

    def _undo_after(self, batch: Batch, err: MigrationError) -> NoReturn:
        """Undo the batch, then re-raise err (saying whether undoing worked, and if not, why). A connection (or the
        migration lock) lost while undoing says what the batch had failed on, too: the next run finishes the undo,
        and the batch fails again until it is fixed."""
        try:
            self._undo(batch)
        except UndoFailed as undo_err:
            raise _not_undone(err, undo_err.summary) from None
        except ConnectionLost as lost:
            where = f"{lost.during} of batch '{lost.batch}'" if lost.batch else lost.during
            raise ConnectionLost(lost.target, None, f"{where}, while undoing batch '{batch.name}' after "
                                                    f"{_failure(err)}") from None
        raise err

    def _undo(self, batch: Batch) -> None:
        """rollback.sql for a batch that failed while being applied; an interrupted undo is finished first
        by the next run."""
        if self.conn.broken or self.conn.closed:
            self._reconnect()
        try:
            self._run_rollback(batch, UNDO_MARKER)
        except _Stopped as stop:
            raise UndoFailed(batch.name, stop.summary) from None
        with self._recording():
            progress.forget(self.conn, batch.name)
            self.ledger.forget_steps(batch.name)

    def _run_rollback(self, batch: Batch, marker: str) -> None:
        """rollback.sql step by step under a marker, each step recorded as it finishes (so a repeated run
        resumes), planned like migration.sql: the batch's own objects go in one transaction."""
        steps = plan_steps(batch, "rollback.sql")
        with self._recording():  # the marker makes the next run finish this rollback
            self.ledger.begin(batch.name, marker)
        done = self.ledger.finished_steps(batch.name, "rollback.sql")
        for step in steps:
            if done.get(step.number) == step.sha256:
                continue
            try:
                self._run_step(batch, step)
            except (StatementFailed, LockNotAcquired) as err:
                with self._recording():
                    self.ledger.stopped(batch.name, marker, err.summary)
                finished = len(self.ledger.finished_steps(batch.name, "rollback.sql"))
                raise _Stopped(err.summary, finished, len(steps)) from None

    # -- one step ------------------------------------------------------------------------------------
    def _run_step(self, batch: Batch, step: Step) -> None:
        """One step, its lock waits retried with backoff, recorded as it finishes; the migration lock verified before
        each attempt, and before the step's record commits (a CREATE INDEX CONCURRENTLY may run for as long as
        statement_timeout; a transactional step lost it meanwhile rolls back with its record)."""
        self._stop_if_asked(batch, step)
        self._current = None
        attempts = self.settings.lock_retries + 1
        for attempt in range(attempts):
            self.lock.verify()
            try:
                self._attempt(batch, step)
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

    def _attempt(self, batch: Batch, step: Step) -> None:
        if step.autocommit:
            self._run_concurrent(step.statements[0])
            with self._recording():
                self.ledger.finish_step(batch.name, step.file, step.number, step.sha256)
            return
        with self._recording():
            for stmt in step.statements:
                self._current = stmt
                if not self._without_effect(stmt):
                    self.conn.execute(stmt.sql)
            self.ledger.finish_step(batch.name, step.file, step.number, step.sha256)

    def _run_concurrent(self, stmt: PlannedStatement) -> None:
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

    def _without_effect(self, stmt: PlannedStatement) -> bool:
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
        reason = cause(err)
        if isinstance(err, pg_errors.QueryCanceled):
            reason = f"{reason} (statement_timeout is {self.settings.statement_timeout_ms} ms)"
        return StatementFailed(batch.name, step.file, stmt.line, reason)


class _Stopped(Exception):
    """rollback.sql stopped at a step (summary: where and why); done of total steps are recorded."""

    def __init__(self, summary: str, done: int, total: int) -> None:
        super().__init__(summary)
        self.summary, self.done, self.total = summary, done, total


def _failed(checks: Iterable[CheckResult]) -> list[tuple[str, str]]:
    return [(c.name, c.detail) for c in checks if not c.ok]


def _backoff_s(attempt: int, lock_timeout_ms: int) -> float:
    base = min(lock_timeout_ms / 1000 * (2 ** attempt), MAX_BACKOFF_S)
    return base * random.uniform(0.5, 1.0)


def _failure(err: MigrationError) -> str:
    """What a batch being undone had failed on, as a clause."""
    if isinstance(err, (StatementFailed, LockNotAcquired)):
        return err.summary
    if isinstance(err, ValidationFailed):
        return f"it failed validation ({failed_checks(err.failed)})"
    if isinstance(err, UnsupportedStatement):
        return f"{err.file}:{err.line}: {err.problem}"
    return str(err)


def _not_undone(err: MigrationError, undo_error: str) -> MigrationError:
    """The same error, saying that undoing the batch failed as well, and why."""
    if isinstance(err, StatementFailed):
        return StatementFailed(err.batch, err.file, err.line, err.cause, undo_error=undo_error)
    if isinstance(err, ValidationFailed):
        return ValidationFailed(err.batch, err.failed, undo_error=undo_error)
    if isinstance(err, LockNotAcquired):
        return LockNotAcquired(err.batch, err.file, err.line, err.attempts, err.lock_timeout_ms, undo_error=undo_error)
    if isinstance(err, UnsupportedStatement):  # validation.sql as written cannot say whether the batch holds
        return UnsupportedStatement(err.batch, err.file, err.line, err.problem, undo_error=undo_error)
    return err


def _result(batch: Batch, entry: LedgerEntry, checks: tuple[CheckResult, ...], *, already_applied: bool = False) -> ApplyResult:
    return ApplyResult(
        batch=batch.name, checksums=entry.checksums, applied_at=entry.applied_at.isoformat(),
        duration_ms=entry.duration_ms, checks=checks, adopted=entry.adopted, already_applied=already_applied,
    )
