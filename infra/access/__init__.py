"""Per-environment roles and least-privilege grants.

`settings` parses `junkquote-db:roles`; `component` manages the roles with pulumi-postgresql, and `stack_access` is
how the program gets it: only when roles are declared (a stack without roles registers no pulumi-postgresql resource
and never imports the SDK); `checks` verifies the access model inside the database.
"""

from .settings import SECRET_KEYS, AccessSettings, RoleNames, RoleSettings, parse_access

__all__ = ["SECRET_KEYS", "AccessSettings", "RoleNames", "RoleSettings", "parse_access"]
