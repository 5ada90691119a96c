"""Errors that only a Pulumi stack can run into: its protection, its declared roles, and the batch folders its
resources are declared from. The engine's own errors are in infra/migrations/errors.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infra.migrations.errors import Actions, MigrationError, failed_checks


@dataclass(eq=False)
class DestroyRefused(MigrationError):
    """Rolling back was refused because the stack is protected."""

    batch: str
    stack: str

    def message(self, say: Actions) -> str:
        return (f"refusing to roll back batch '{self.batch}': stack '{self.stack}' is protected "
                "(junkquote-db:migrations.protected); production schema is only changed by new batches")


@dataclass(eq=False)
class AccessCheckFailed(MigrationError):
    """The roles' effective privileges in the database differ from the declared access model."""

    target: str
    failed: Sequence[tuple[str, str]]

    def message(self, say: Actions) -> str:
        return (f"privileges on {self.target} differ from the declared roles ({len(self.failed)} checks): "
                f"{failed_checks(self.failed)}; run `pulumi refresh` then `pulumi up` to restore the grants")


@dataclass(eq=False)
class BatchFolderMissing(MigrationError):
    """Applied batches have no folder in this checkout; declaring the others would roll them back."""

    sql_dir: str
    batches: Sequence[str]
    stack: str

    def message(self, say: Actions) -> str:
        names = ", ".join(f"'{b}'" for b in self.batches)
        return (f"stack '{self.stack}' has applied {names} but {self.sql_dir} has no folder for "
                f"{'it' if len(self.batches) == 1 else 'them'} (an older checkout?); nothing was changed: check out "
                "a revision that has every applied batch, or roll back on purpose with "
                f"`make rollback STACK={self.stack} BATCH={self.batches[-1]}`")


@dataclass(eq=False)
class RollbackRefused(MigrationError):
    """A deliberate rollback (`make rollback`) cannot run as asked; nothing was changed."""

    batch: str
    stack: str
    reason: str

    def message(self, say: Actions) -> str:
        return f"refusing to roll back from batch '{self.batch}' on stack '{self.stack}': {self.reason}; nothing was changed"


@dataclass(eq=False)
class NotTakenOver(MigrationError):
    """A per-batch resource of an earlier version is to be removed before the schema history took its batch over."""

    batch: str

    def message(self, say: Actions) -> str:
        return (f"batch '{self.batch}' is still held by a per-batch resource of an earlier version of this project; "
                "nothing was rolled back: run `pulumi up` once with this version (the schema history takes the "
                "batches over), then destroy again")
