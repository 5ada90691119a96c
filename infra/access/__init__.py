"""Per-environment roles and least-privilege grants.

`settings` parses `junkquote-db:roles`; `component` manages the roles with pulumi-postgresql (import it only when roles
are declared: a stack without roles must not register any pulumi-postgresql resource); `checks` verifies the access
model inside the database.
"""

from .settings import SECRET_KEYS, AccessSettings, RoleNames, RoleSettings, parse_access

__all__ = ["SECRET_KEYS", "AccessSettings", "RoleNames", "RoleSettings", "parse_access"]
