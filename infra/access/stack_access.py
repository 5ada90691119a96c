"""The stack's roles and grants as the program wires them: `stack_access` gives the DatabaseAccess component
and its verification when the stack declares roles, and a null object that declares nothing when it does not
(a stack without roles registers no pulumi-postgresql resource and needs no plugin)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from infra.settings import StackSettings


class NoAccess:
    """A stack that declares no roles: the batches run as the connecting user, and there is nothing to grant."""

    migrator_role: str | None = None

    @property
    def schema_prerequisites(self) -> list[pulumi.Resource]:
        return []

    def after_schema(self, _migrations: Sequence[pulumi.Resource], _schema_version: pulumi.Output[str]) -> dict[str, Any]:
        return {}


class DeclaredAccess:
    """The declared roles: created before the batches (which run as the migrator), granted on the objects the
    batches built, then verified in the database."""

    def __init__(self, settings: StackSettings) -> None:
        from .component import DatabaseAccess  # pulumi_postgresql is imported only by stacks that declare roles

        assert settings.access is not None
        self._settings, self._access = settings, settings.access
        self.component = DatabaseAccess("access", settings.access, settings.database,
                                        opts=pulumi.ResourceOptions(protect=settings.migrations.protected))
        self.migrator_role: str | None = self.component.migrator_role
        self.schema_prerequisites: list[pulumi.Resource] = self.component.schema_prerequisites

    def after_schema(self, migrations: Sequence[pulumi.Resource], schema_version: pulumi.Output[str]) -> dict[str, Any]:
        """Grants on the tables and sequences, then the check of every role's privileges; the outputs to export."""
        from .verification import verify_access

        self.component.grant_on_objects(migrations)
        verification = verify_access(self.component, self._access, self._settings.database, schema_version)
        return {"roles": self.component.role_names, "accessChecks": verification.checks}


def stack_access(settings: StackSettings) -> DeclaredAccess | NoAccess:
    """The roles and grants of a stack that declares them, or nothing."""
    return DeclaredAccess(settings) if settings.access else NoAccess()
