"""Errors a user can act on. Each message names the thing, shows what was seen and says what to do."""

from __future__ import annotations

from collections.abc import Sequence


class MigrationError(Exception):
    """Base class of every error the migration engine reports to a user."""


def failed_checks(failed: Sequence[tuple[str, str]]) -> str:
    """`name: detail; name: detail` of failed checks."""
    return "; ".join(f"{name}: {detail}" for name, detail in failed)


class BatchDirectoryInvalid(MigrationError):
    """A batch folder under sql/ is missing a file or is badly named."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"batch folder {path} {problem}")


class SqlSyntaxError(MigrationError):
    """A batch file does not parse as PostgreSQL."""

    def __init__(self, batch: str, file: str, line: int, message: str) -> None:
        self.batch, self.file, self.line = batch, file, line
        said = message if message.startswith("syntax error") else f"syntax error: {message}"
        super().__init__(f"batch '{batch}' {file}:{line}: {said}; fix the SQL before applying")


class UnsupportedStatement(MigrationError):
    """A statement the engine cannot run safely as written."""

    def __init__(self, batch: str, file: str, line: int, problem: str) -> None:
        self.batch, self.file, self.line = batch, file, line
        super().__init__(f"batch '{batch}' {file}:{line}: {problem}")


class TargetUnreachable(MigrationError):
    """The database server could not be reached or refused the connection."""

    def __init__(self, target: str, cause: str) -> None:
        self.target = target
        super().__init__(f"cannot connect to {target}: {cause}; check the database host, port and name in the stack config")


class AuthenticationFailed(MigrationError):
    """The server rejected the configured user or password."""

    def __init__(self, target: str, user: str) -> None:
        self.target, self.user = target, user
        super().__init__(
            f"password authentication failed for user '{user}' at {target}; "
            "set the right one with `pulumi config set --secret junkquote-db:password`"
        )


class ConnectionLost(MigrationError):
    """The connection dropped while a batch was being applied."""

    def __init__(self, target: str, batch: str | None, during: str) -> None:
        self.target, self.batch = target, batch
        where = f"{during} of batch '{batch}'" if batch else during
        super().__init__(
            f"connection to {target} was lost during {where}; "
            "completed steps are recorded, run `pulumi up` again to resume"
        )


class RunStopped(MigrationError):
    """The run stopped between two steps because its caller asked it to (e.g. the process that started it is gone)."""

    def __init__(self, batch: str, file: str, step: int, reason: str) -> None:
        self.batch, self.file, self.step = batch, file, step
        super().__init__(
            f"stopped before {file} step {step} of batch '{batch}': {reason}; "
            "completed steps are recorded, run `pulumi up` again to resume"
        )


class BatchChanged(MigrationError):
    """An applied batch's file no longer matches the checksum recorded when it was applied."""

    def __init__(self, batch: str, file: str, expected_sha256: str, found_sha256: str) -> None:
        self.batch, self.file = batch, file
        self.expected_sha256, self.found_sha256 = expected_sha256, found_sha256
        super().__init__(
            f"batch '{batch}' {file} changed after it was applied (sha256 {found_sha256[:12]}, "
            f"ledger has {expected_sha256[:12]}) and its statements differ, not only comments or layout; "
            "add a new batch instead of editing an applied one"
        )


class LockBusy(MigrationError):
    """Another migration run holds the migration lock on this database."""

    def __init__(self, target: str, holder: str, waited_s: float) -> None:
        self.target, self.holder = target, holder
        super().__init__(
            f"another migration run holds the migration lock on {target} ({holder}); "
            f"gave up after {waited_s:g}s, run again when it has finished"
        )


def undo_outcome(undo_error: str | None) -> str:
    """How undoing a failed batch went, as the end of an error message."""
    if undo_error is None:
        return "the batch was undone"
    return (f"undoing it failed too ({undo_error}); the finished steps stay recorded and the next run undoes "
            "them first, fix rollback.sql (it must be idempotent) and run again")


class StatementFailed(MigrationError):
    """A statement of a batch failed; the batch was undone (or undo_error says why not)."""

    def __init__(self, batch: str, file: str, line: int, cause: str, undo_error: str | None = None) -> None:
        self.batch, self.file, self.line, self.cause = batch, file, line, cause
        self.summary = f"{file}:{line} failed: {cause}"
        fix = ", fix the batch and run again" if undo_error is None else ""
        super().__init__(f"batch '{batch}' {file}:{line} failed: {cause}; {undo_outcome(undo_error)}{fix}")


class LockNotAcquired(MigrationError):
    """A statement could not take its lock within lock_timeout after every retry."""

    def __init__(self, batch: str, file: str, line: int, attempts: int, lock_timeout_ms: int,
                 undo_error: str | None = None) -> None:
        self.batch, self.file, self.line = batch, file, line
        self.attempts, self.lock_timeout_ms = attempts, lock_timeout_ms
        self.summary = f"{file}:{line} could not take its lock in {attempts} attempts of {lock_timeout_ms} ms"
        super().__init__(
            f"batch '{batch}' {file}:{line} could not take its lock in {attempts} attempts of "
            f"{lock_timeout_ms} ms (a long transaction holds the table); {undo_outcome(undo_error)}; "
            "run again when the blocking transaction has ended"
        )


class ValidationFailed(MigrationError):
    """One or more validation checks of a batch failed; the batch was undone (or undo_error says why not)."""

    def __init__(self, batch: str, failed: Sequence[tuple[str, str]], undo_error: str | None = None) -> None:
        self.batch, self.failed = batch, tuple(failed)
        names = failed_checks(self.failed)
        super().__init__(f"batch '{batch}' failed validation ({len(self.failed)} checks): {names}; {undo_outcome(undo_error)}")


class RollbackFailed(MigrationError):
    """rollback.sql stopped while an applied batch was being rolled back; its finished steps are recorded."""

    def __init__(self, batch: str, summary: str, done: int, total: int) -> None:
        self.batch, self.summary, self.done, self.total = batch, summary, done, total
        super().__init__(
            f"rolling back batch '{batch}' stopped at {summary}; {done} of {total} rollback steps are done and "
            "recorded, the batch stays recorded as applied; remove the cause (or correct rollback.sql and record "
            "it with `pulumi up`), then run `pulumi destroy` again to resume"
        )


class RollbackIncomplete(MigrationError):
    """An applied batch is partly rolled back: nothing else may run until its rollback is finished."""

    def __init__(self, batch: str, done: int, total: int | None, stopped: str | None) -> None:
        self.batch, self.done, self.total, self.stopped = batch, done, total, stopped
        where = f"; it stopped at {stopped}" if stopped else ""
        of = f" of {total}" if total is not None else ""
        super().__init__(
            f"batch '{batch}' is partly rolled back ({done}{of} rollback steps done{where}); "
            "run `pulumi destroy` again to finish the rollback (it resumes where it stopped); "
            "nothing else is applied until then"
        )


class BatchFolderMissing(MigrationError):
    """Applied batches have no folder in this checkout; going on would roll them back."""

    def __init__(self, sql_dir: str, batches: Sequence[str], stack: str) -> None:
        self.sql_dir, self.batches, self.stack = sql_dir, tuple(batches), stack
        names = ", ".join(f"'{b}'" for b in self.batches)
        super().__init__(
            f"stack '{stack}' has applied {names} but {sql_dir} has no folder for "
            f"{'it' if len(self.batches) == 1 else 'them'} (an older checkout?); nothing was changed: check out a "
            "revision that has every applied batch, or roll back on purpose with "
            f"`make rollback STACK={stack} BATCH={self.batches[-1]}`"
        )


class ValidationNotRun(MigrationError):
    """validation.sql could not run to the end for an operational reason (a lock, a timeout, a lost connection)."""

    def __init__(self, batch: str, target: str, summary: str, attempts: int) -> None:
        self.batch, self.target, self.summary, self.attempts = batch, target, summary, attempts
        super().__init__(
            f"could not validate batch '{batch}' on {target} ({summary}; {attempts} attempts); no check failed "
            "and nothing was undone: its steps are applied and recorded, run `pulumi up` again to validate and "
            "record it"
        )


class BatchCorrectionRefused(MigrationError):
    """A correction of an applied batch's validation.sql does not hold on the live database."""

    def __init__(self, batch: str, failed: Sequence[tuple[str, str]]) -> None:
        self.batch, self.failed = batch, tuple(failed)
        names = failed_checks(self.failed)
        super().__init__(
            f"the corrected validation.sql of applied batch '{batch}' fails on the live database "
            f"({len(self.failed)} checks): {names}; nothing was recorded, fix validation.sql and run again"
        )


class UndoFailed(MigrationError):
    """rollback.sql failed while undoing a partly applied batch; the next run finishes the undo first."""

    def __init__(self, batch: str, summary: str) -> None:
        self.batch, self.summary = batch, summary
        super().__init__(
            f"undoing batch '{batch}' failed ({summary}); the finished steps stay recorded and the next run "
            "undoes them first, fix rollback.sql (it must be idempotent) and run again"
        )


class AdoptionRefused(MigrationError):
    """A live database does not pass the checks of the batch it was to adopt; nothing was recorded."""

    def __init__(self, batch: str, failed: Sequence[tuple[str, str]]) -> None:
        self.batch, self.failed = batch, tuple(failed)
        names = failed_checks(self.failed)
        super().__init__(
            f"cannot adopt batch '{batch}': the live database fails {len(self.failed)} of its checks ({names}); "
            "nothing was recorded, bring the database in line or set junkquote-db:migrations.baseline to apply on an empty one"
        )


class DestroyRefused(MigrationError):
    """Rolling back was refused because the stack is protected."""

    def __init__(self, batch: str, stack: str) -> None:
        self.batch, self.stack = batch, stack
        super().__init__(
            f"refusing to roll back batch '{batch}': stack '{stack}' is protected "
            "(junkquote-db:migrations.protected); production schema is only changed by new batches"
        )


class AccessCheckFailed(MigrationError):
    """The roles' effective privileges in the database differ from the declared access model."""

    def __init__(self, target: str, failed: Sequence[tuple[str, str]]) -> None:
        self.target, self.failed = target, tuple(failed)
        names = failed_checks(self.failed)
        super().__init__(f"privileges on {target} differ from the declared roles ({len(self.failed)} checks): {names}; "
                         "run `pulumi refresh` then `pulumi up` to restore the grants")


class DatabaseError(MigrationError):
    """The database refused something the engine itself asked (not a batch statement), e.g. a permission."""

    def __init__(self, target: str, during: str, cause: str) -> None:
        self.target = target
        super().__init__(f"{during} on {target} failed: {cause}; check the connecting user's privileges")


class SchemaDrift(MigrationError):
    """The live schema differs from the shape recorded after the newest applied batch (or its checks fail)."""

    MAX_SHOWN = 5

    def __init__(self, target: str, newest: str, differences: Sequence[str]) -> None:
        self.target, self.newest, self.differences = target, newest, tuple(differences)
        shown = "; ".join(self.differences[:self.MAX_SHOWN])
        more = f"; and {len(self.differences) - self.MAX_SHOWN} more" if len(self.differences) > self.MAX_SHOWN else ""
        super().__init__(
            f"schema of {target} differs from what the batches built up to '{newest}' ({len(self.differences)} "
            f"differences: {shown}{more}); no batch is applied until it is resolved: restore the objects by hand, "
            "or write a batch that makes the change deliberately (`pulumi refresh` shows each difference)"
        )


class ObjectNotBuilt(MigrationError):
    """A table or enum type the batches create is not in the shape recorded after the newest batch."""

    def __init__(self, kind: str, name: str, schema: str, newest: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"{kind} '{name}' that the batches create is not in schema '{schema}' after batch '{newest}'; "
            "create it unqualified (in the schema the batches run in), or drop it in a batch"
        )


class BatchFilesMissing(MigrationError):
    """An applied batch is to be rolled back, but neither the ledger nor the checkout has its files."""

    def __init__(self, batch: str) -> None:
        self.batch = batch
        super().__init__(
            f"batch '{batch}' was recorded before the ledger kept its files and the checkout has no folder for it; "
            f"nothing was rolled back for it: restore sql/{batch} (from version control) and roll back again"
        )
