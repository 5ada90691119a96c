"""Errors of the pipeline commands. Each message names the thing, shows what was seen and says what to do."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline commands report to a user."""


class NotEphemeral(PipelineError):
    """The command would create, change or remove a stack that is not ephemeral."""

    def __init__(self, stack: str, reason: str) -> None:
        self.stack = stack
        super().__init__(f"refusing to touch stack '{stack}': {reason}; ephemeral-up, ephemeral-down and rehearse only "
                         "work on ephemeral stacks, pass PR=<number> for the stack pr-<number>")


class BaseStackUnusable(PipelineError):
    """The stack an ephemeral stack is made from cannot be read or is not suitable."""

    def __init__(self, stack: str, detail: str, what_to_do: str) -> None:
        self.stack = stack
        super().__init__(f"cannot make an ephemeral stack from '{stack}': {detail}; {what_to_do}")


class DatabaseNotOurs(PipelineError):
    """A database of the ephemeral stack's name exists and was not created for that stack."""

    def __init__(self, database: str, stack: str, comment: str | None) -> None:
        self.database, self.stack = database, stack
        seen = f"its comment is {comment!r}" if comment else "it has no comment"
        super().__init__(f"database {database} exists but was not created for ephemeral stack '{stack}' ({seen}); "
                         "nothing was changed: drop or rename it by hand, or use another PR number")


class StepFailed(PipelineError):
    """A Pulumi command of an ephemeral stack failed."""

    def __init__(self, step: str, stack: str, detail: str, what_to_do: str) -> None:
        self.step, self.stack = step, stack
        super().__init__(f"{step} of stack '{stack}' failed: {detail}; {what_to_do}")


class RehearsalFailed(PipelineError):
    """After the rollback the schema differs from the snapshot taken before the apply."""

    def __init__(self, stack: str, changes: list[str]) -> None:
        self.stack, self.changes = stack, changes
        listed = "; ".join(changes)
        super().__init__(f"rollback rehearsal of stack '{stack}' failed: after `pulumi destroy` the schema differs from "
                         f"before the apply ({len(changes)} difference{'s' if len(changes) != 1 else ''}: {listed}); "
                         "make each batch's rollback.sql undo exactly what its migration.sql does")
