"""Errors a user can act on. Each message names the thing, shows what was seen and says what to do."""

from __future__ import annotations

from collections.abc import Sequence


class MigrationError(Exception):
    """Base class of every error the migration engine reports to a user."""


class BatchDirectoryInvalid(MigrationError):
    """A batch folder under sql/ is missing a file or is badly named."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"batch folder {path} {problem}")


class SqlSyntaxError(MigrationError):
    """A batch file does not parse as PostgreSQL."""

    def __init__(self, batch: str, file: str, line: int, message: str) -> None:
        self.batch, self.file, self.line = batch, file, line
        super().__init__(f"batch '{batch}' {file}:{line}: syntax error: {message}; fix the SQL before applying")


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
            f"ledger has {expected_sha256[:12]}); add a new batch instead of editing an applied one"
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
        names = "; ".join(f"{name}: {detail}" for name, detail in self.failed)
        super().__init__(f"batch '{batch}' failed validation ({len(self.failed)} checks): {names}; {undo_outcome(undo_error)}")


class RollbackFailed(MigrationError):
    """rollback.sql failed while a batch was being rolled back (destroy); the batch stays recorded."""

    def __init__(self, batch: str, summary: str) -> None:
        self.batch = batch
        super().__init__(
            f"rolling back batch '{batch}' failed ({summary}); the batch is still recorded as applied, "
            "fix rollback.sql (it must be idempotent) and run `pulumi destroy` again"
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
        names = "; ".join(f"{name}: {detail}" for name, detail in self.failed)
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
        names = "; ".join(f"{name}: {detail}" for name, detail in self.failed)
        super().__init__(f"privileges on {target} differ from the declared roles ({len(self.failed)} checks): {names}; "
                         "run `pulumi refresh` then `pulumi up` to restore the grants")


class DatabaseError(MigrationError):
    """The database refused something the engine itself asked (not a batch statement), e.g. a permission."""

    def __init__(self, target: str, during: str, cause: str) -> None:
        self.target = target
        super().__init__(f"{during} on {target} failed: {cause}; check the connecting user's privileges")
