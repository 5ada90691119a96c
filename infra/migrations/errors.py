"""Errors a user can act on. Each message names the thing, shows what was seen and says what to do.

The engine's messages name no tool: what they ask a user to do (apply again, roll back again, ...) is worded
by `Actions`. `str(err)` uses the engine's own words; a front end passes its commands to `err.message(...)`
(the Pulumi one is infra/providers/reporting.py). Each error is a dataclass: its fields are the data a caller
can read, its `message` the one line a user reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Actions:
    """How a front end words each thing the engine's messages ask a user to do (these defaults name no tool)."""

    apply: str = "apply"  # run the pending batches, resuming where a run stopped
    roll_back: str = "roll back"  # roll back the applied batches, resuming where a rollback stopped
    set_password: str = "set the right password for it"
    apply_baseline: str = "apply the baseline on an empty database instead"
    list_drift: str = "a drift check"  # what shows each difference between the live schema and the batches
    warn_on_lint: str = "set the lint policy to warn"
    settings: str = "the settings"  # where the connection is configured
    pause_setting: str = "by the stack's backfill pause setting"  # what paused a running backfill
    unpause: str = "unpause it and apply again"
    throttle_setting: str = "the stack's backfill target write latency"  # what bounds a chunk's duration


ENGINE_WORDS = Actions()


class MigrationError(Exception):
    """Base class of every error the migration engine reports to a user."""

    def __str__(self) -> str:
        return self.message(ENGINE_WORDS)

    def message(self, say: Actions) -> str:
        """The one-line message, with what to do in the front end's words."""
        return super().__str__()


def failed_checks(failed: Sequence[tuple[str, str]]) -> str:
    """`name: detail; name: detail` of failed checks."""
    return "; ".join(f"{name}: {detail}" for name, detail in failed)


@dataclass(eq=False)  # compared by identity, like any exception
class BatchDirectoryInvalid(MigrationError):
    """A batch folder under sql/ is missing a file or is badly named."""

    path: str
    problem: str

    def message(self, say: Actions) -> str:
        return f"batch folder {self.path} {self.problem}"


@dataclass(eq=False)
class SqlSyntaxError(MigrationError):
    """A batch file does not parse as PostgreSQL."""

    batch: str
    file: str
    line: int
    reason: str

    def message(self, say: Actions) -> str:
        said = self.reason if self.reason.startswith("syntax error") else f"syntax error: {self.reason}"
        return f"batch '{self.batch}' {self.file}:{self.line}: {said}; fix the SQL before applying"


@dataclass(eq=False)
class UnsupportedStatement(MigrationError):
    """A statement the engine cannot run safely as written."""

    batch: str
    file: str
    line: int
    problem: str
    undo_error: str | None = None  # set when a batch it stopped while being applied could not be undone either

    def message(self, say: Actions) -> str:
        undone = f"; {undo_outcome(self.undo_error)}" if self.undo_error else ""
        return f"batch '{self.batch}' {self.file}:{self.line}: {self.problem}{undone}"


@dataclass(eq=False)
class TargetUnreachable(MigrationError):
    """The database server could not be reached or refused the connection."""

    target: str
    cause: str

    def message(self, say: Actions) -> str:
        return f"cannot connect to {self.target}: {self.cause}; check the database host, port and name in {say.settings}"


@dataclass(eq=False)
class AuthenticationFailed(MigrationError):
    """The server rejected the configured user or password."""

    target: str
    user: str

    def message(self, say: Actions) -> str:
        return f"password authentication failed for user '{self.user}' at {self.target}; {say.set_password}"


@dataclass(eq=False)
class ConnectionLost(MigrationError):
    """The connection dropped while a batch was being applied."""

    target: str
    batch: str | None
    during: str

    def message(self, say: Actions) -> str:
        where = f"{self.during} of batch '{self.batch}'" if self.batch else self.during
        return (f"connection to {self.target} was lost during {where}; "
                f"completed steps are recorded, {say.apply} again to resume")


@dataclass(eq=False)
class RunStopped(MigrationError):
    """The run stopped between two steps because its caller asked it to (e.g. the process that started it is gone)."""

    batch: str
    file: str
    step: int
    reason: str

    def message(self, say: Actions) -> str:
        return (f"stopped before {self.file} step {self.step} of batch '{self.batch}': {self.reason}; "
                f"completed steps are recorded, {say.apply} again to resume")


@dataclass(eq=False)
class BatchChanged(MigrationError):
    """An applied batch's file no longer matches the checksum recorded when it was applied."""

    batch: str
    file: str
    expected_sha256: str
    found_sha256: str

    def message(self, say: Actions) -> str:
        return (f"batch '{self.batch}' {self.file} changed after it was applied (sha256 {self.found_sha256[:12]}, "
                f"ledger has {self.expected_sha256[:12]}) and its statements differ, not only comments or layout; "
                "add a new batch instead of editing an applied one")


@dataclass(eq=False)
class LockBusy(MigrationError):
    """Another migration run holds the migration lock on this database."""

    target: str
    holder: str
    waited_s: float

    def message(self, say: Actions) -> str:
        return (f"another migration run holds the migration lock on {self.target} ({self.holder}); "
                f"gave up after {self.waited_s:g}s, run again when it has finished")


def undo_outcome(undo_error: str | None) -> str:
    """How undoing a failed batch went, as the end of an error message."""
    if undo_error is None:
        return "the batch was undone"
    return (f"undoing it failed too ({undo_error}); the finished steps stay recorded and the next run undoes "
            "them first, fix rollback.sql (it must be idempotent) and run again")


@dataclass(eq=False)
class StatementFailed(MigrationError):
    """A statement of a batch failed; the batch was undone (or undo_error says why not)."""

    batch: str
    file: str
    line: int
    cause: str
    undo_error: str | None = None

    @property
    def summary(self) -> str:
        return f"{self.file}:{self.line} failed: {self.cause}"

    def message(self, say: Actions) -> str:
        fix = ", fix the batch and run again" if self.undo_error is None else ""
        return f"batch '{self.batch}' {self.summary}; {undo_outcome(self.undo_error)}{fix}"


@dataclass(eq=False)
class LockNotAcquired(MigrationError):
    """A statement could not take its lock within lock_timeout after every retry."""

    batch: str
    file: str
    line: int
    attempts: int
    lock_timeout_ms: int
    undo_error: str | None = None

    @property
    def summary(self) -> str:
        return f"{self.file}:{self.line} could not take its lock in {self.attempts} attempts of {self.lock_timeout_ms} ms"

    def message(self, say: Actions) -> str:
        return (f"batch '{self.batch}' {self.summary} (a long transaction holds the table); "
                f"{undo_outcome(self.undo_error)}; run again when the blocking transaction has ended")


@dataclass(eq=False)
class ValidationFailed(MigrationError):
    """One or more validation checks of a batch failed; the batch was undone (or undo_error says why not)."""

    batch: str
    failed: Sequence[tuple[str, str]]
    undo_error: str | None = None

    def message(self, say: Actions) -> str:
        return (f"batch '{self.batch}' failed validation ({len(self.failed)} checks): {failed_checks(self.failed)}; "
                f"{undo_outcome(self.undo_error)}")


@dataclass(eq=False)
class RollbackFailed(MigrationError):
    """rollback.sql stopped while an applied batch was being rolled back; its finished steps are recorded."""

    batch: str
    summary: str
    done: int
    total: int

    def message(self, say: Actions) -> str:
        return (f"rolling back batch '{self.batch}' stopped at {self.summary}; {self.done} of {self.total} rollback "
                "steps are done and recorded, the batch stays recorded as applied; remove the cause (or correct "
                f"rollback.sql and {say.apply} to record it), then {say.roll_back} again to resume")


@dataclass(eq=False)
class RollbackIncomplete(MigrationError):
    """An applied batch is partly rolled back: nothing else may run until its rollback is finished."""

    batch: str
    done: int
    total: int | None
    stopped: str | None

    def message(self, say: Actions) -> str:
        where = f"; it stopped at {self.stopped}" if self.stopped else ""
        of = f" of {self.total}" if self.total is not None else ""
        return (f"batch '{self.batch}' is partly rolled back ({self.done}{of} rollback steps done{where}); "
                f"{say.roll_back} again to finish the rollback (it resumes where it stopped); "
                "nothing else is applied until then")


@dataclass(eq=False)
class ValidationNotRun(MigrationError):
    """validation.sql could not run to the end for an operational reason (a lock, a timeout, a lost connection)."""

    batch: str
    target: str
    summary: str
    attempts: int

    def message(self, say: Actions) -> str:
        return (f"could not validate batch '{self.batch}' on {self.target} ({self.summary}; {self.attempts} "
                "attempts); no check failed and nothing was undone: its steps are applied and recorded, "
                f"{say.apply} again to validate and record it")


@dataclass(eq=False)
class BatchCorrectionRefused(MigrationError):
    """A correction of an applied batch's validation.sql does not hold on the live database."""

    batch: str
    failed: Sequence[tuple[str, str]]

    def message(self, say: Actions) -> str:
        return (f"the corrected validation.sql of applied batch '{self.batch}' fails on the live database "
                f"({len(self.failed)} checks): {failed_checks(self.failed)}; nothing was recorded, fix "
                "validation.sql and run again")


@dataclass(eq=False)
class UndoFailed(MigrationError):
    """rollback.sql failed while undoing a partly applied batch; the next run finishes the undo first."""

    batch: str
    summary: str

    def message(self, say: Actions) -> str:
        return (f"undoing batch '{self.batch}' failed ({self.summary}); the finished steps stay recorded and the "
                "next run undoes them first, fix rollback.sql (it must be idempotent) and run again")


@dataclass(eq=False)
class AdoptionRefused(MigrationError):
    """A live database does not pass the checks of the batch it was to adopt; nothing was recorded."""

    batch: str
    failed: Sequence[tuple[str, str]]

    def message(self, say: Actions) -> str:
        return (f"cannot adopt batch '{self.batch}': the live database fails {len(self.failed)} of its checks "
                f"({failed_checks(self.failed)}); nothing was recorded, bring the database in line or "
                f"{say.apply_baseline}")


@dataclass(eq=False)
class DatabaseError(MigrationError):
    """The database refused something the engine itself asked (not a batch statement), e.g. a permission."""

    target: str
    during: str
    cause: str

    def message(self, say: Actions) -> str:
        return f"{self.during} on {self.target} failed: {self.cause}; check the connecting user's privileges"


@dataclass(eq=False)
class OperationalFailure(DatabaseError):
    """The server stopped a statement for an operational reason: a lock or time limit, a conflict with another
    transaction, or a resource it ran short of (rather than the SQL being wrong or a privilege missing)."""

    def message(self, say: Actions) -> str:
        return (f"{self.during} on {self.target} was stopped by the server: {self.cause}; not a fault of the SQL or "
                "of a privilege: see to what stopped it (a lock held, a time limit, disk or memory running short), "
                "then run it again")


@dataclass(eq=False)
class SchemaDrift(MigrationError):
    """The live schema differs from the shape recorded after the newest applied batch (or its checks fail)."""

    target: str
    newest: str
    differences: Sequence[str]

    MAX_SHOWN = 5

    def message(self, say: Actions) -> str:
        shown = "; ".join(self.differences[:self.MAX_SHOWN])
        hidden = len(self.differences) - self.MAX_SHOWN
        more = f"; and {hidden} more" if hidden > 0 else ""
        return (f"schema of {self.target} differs from what the batches built up to '{self.newest}' "
                f"({len(self.differences)} differences: {shown}{more}); no batch is applied until it is resolved: "
                "restore the objects by hand, or write a batch that makes the change deliberately "
                f"({say.list_drift} shows each difference)")


@dataclass(eq=False)
class ObjectNotBuilt(MigrationError):
    """A table or enum type the batches create is not in the shape recorded after the newest batch."""

    kind: str
    name: str
    schema: str
    newest: str

    def message(self, say: Actions) -> str:
        return (f"{self.kind} '{self.name}' that the batches create is not in schema '{self.schema}' after batch "
                f"'{self.newest}'; create it unqualified (in the schema the batches run in), or drop it in a batch")


@dataclass(eq=False)
class BatchFilesMissing(MigrationError):
    """An applied batch is to be rolled back, but neither the ledger nor the checkout has its files."""

    batch: str

    def message(self, say: Actions) -> str:
        return (f"batch '{self.batch}' was recorded before the ledger kept its files and the checkout has no folder "
                f"with the files it was applied with; nothing was rolled back for it: restore sql/{self.batch} as "
                "applied (from version control) and roll back again")
