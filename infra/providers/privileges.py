"""Dynamic provider that verifies, after the grants, that every declared role has exactly its privileges.

Runs the checks of infra/access/checks.py against the live database as part of `pulumi up` (on create and
whenever the schema version or the roles change). Like the migration provider it keeps nothing on `self`.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider, UpdateResult

from infra.access.checks import access_checks, failed
from infra.access.settings import RoleNames
from infra.migrations.database_errors import database_errors
from infra.providers.connection_props import target_from_inputs
from infra.providers.errors import AccessCheckFailed
from infra.providers.reporting import engine_errors

APPLICATION_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1"
ENUM_TYPES = "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typtype = 'e' ORDER BY 1"


def verify(props: dict[str, Any]) -> list[str]:
    """Names of the checks that passed; raises AccessCheckFailed naming every one that did not."""
    roles, target = props["roles"], target_from_inputs(props)
    names = RoleNames(migrator=roles["migrator"], app=roles["app"], readonly=roles["readonly"])
    with database_errors(target, "checking privileges"), target.connect(autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(APPLICATION_TABLES, (props["schema"],))]
        types = [r[0] for r in conn.execute(ENUM_TYPES, (props["schema"],))]
        checks = access_checks(conn, names, tables, props["schema"], types)
    bad = failed(checks)
    if bad:
        raise AccessCheckFailed(target.display(), [(c.name, c.detail) for c in bad])
    return [c.name for c in checks]


class AccessVerificationProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        with engine_errors():
            return CreateResult(id_=f"access@{props['connection']['dbname']}", outs={**props, "checks": verify(props)})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)


class AccessVerification(Resource, module="junkquote", name="AccessVerification"):
    """Passes only when app, readonly and migrator hold exactly the privileges the access model declares."""

    checks: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(AccessVerificationProvider(), name, {**props, "checks": None}, pulumi.ResourceOptions.merge(secret, opts))
