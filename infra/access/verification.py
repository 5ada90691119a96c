"""After the grants: a resource that checks every role's effective privileges in the live database."""

from __future__ import annotations

import pulumi

from infra.providers.connection_props import connection_inputs
from infra.providers.privileges import AccessVerification
from infra.settings import DatabaseSettings

from .component import DatabaseAccess
from .settings import AccessSettings


def verify_access(access: DatabaseAccess, settings: AccessSettings, db: DatabaseSettings,
                  schema_version: pulumi.Input[str]) -> AccessVerification:
    """Runs on create and again whenever the schema version or the roles change."""
    names = settings.names
    props = {
        **connection_inputs(db),
        "schema": settings.schema,
        "schemaVersion": schema_version,
        "roles": {"migrator": names.migrator, "app": names.app, "readonly": names.readonly},
    }
    return AccessVerification("access-verification", props,
                              pulumi.ResourceOptions(parent=access, depends_on=access.grants))
