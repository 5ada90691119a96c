"""What makes a stack ephemeral, and the config of a new one, derived from a base stack's. No I/O.

A stack is ephemeral only when its own config says `junkquote-db:ephemeral: true`, it is not protected
(`migrations.protected`), and it is not one of the shared stacks (prod, staging, dev, or the stacks it is made or
restored from), whatever its config says.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..access.settings import IDENTIFIER, MEMBER_PASSWORDS, ROLE_KINDS, SECRET_KEYS
from .errors import BaseStackUnusable, NotEphemeral

MARKER = "ephemeral"  # junkquote-db:ephemeral: true in the stack's own config
TAG = "junkquote-db:ephemeral"  # the same mark as a stack tag in the backend, for a checkout without the stack file
NEVER_EPHEMERAL = frozenset({"prod", "staging", "dev"})
PR_NUMBER = re.compile(r"^[0-9]{1,9}$")
STACK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
DATABASE_SUFFIX_MAX = 63


@dataclass(frozen=True)
class Server:
    """Where an ephemeral database is created: the base stack's server, or the local embedded one."""

    host: str
    port: int
    user: str
    sslmode: str
    local: bool = False


def stack_for(pr: str | None, stack: str | None) -> str:
    """`pr-<number>` for a PR number, or a given stack name; anything else is refused."""
    if pr is not None and stack is not None:
        raise NotEphemeral(stack, "pass either PR=<number> or STACK=<name>, not both")
    if pr is not None:
        if not PR_NUMBER.match(pr):
            raise NotEphemeral(f"pr-{pr}", f"'{pr}' is not a pull-request number")
        return f"pr-{pr}"
    if stack is None or not STACK_NAME.match(stack):
        raise NotEphemeral(str(stack), "a stack name is lowercase letters, digits and dashes")
    return stack


def suffix(stack: str) -> str:
    """The part of database and role names that is this stack's: pr-123 -> pr_123."""
    return stack.replace("-", "_")


def refuse_unless_ephemeral(stack: str, values: Mapping[str, Any] | None, shared: Iterable[str] = ()) -> None:
    """Raise NotEphemeral unless the stack's own config marks it ephemeral and nothing says otherwise."""
    if stack in NEVER_EPHEMERAL or stack in set(shared):
        raise NotEphemeral(stack, "it is a shared stack, never ephemeral (even if its config says so)")
    if values is None:
        raise NotEphemeral(stack, "it has no stack config here (Pulumi.<stack>.yaml) and no ephemeral tag in the backend")
    migrations = values.get("migrations") or {}
    if isinstance(migrations, Mapping) and _true(migrations.get("protected")):
        raise NotEphemeral(stack, "its config sets migrations.protected: true")
    if not _true(values.get(MARKER)):
        raise NotEphemeral(stack, f"its config does not mark it ephemeral (junkquote-db:{MARKER}: true)")


def _true(value: Any) -> bool:
    """A config true: YAML's true, or "true" as the CLI writes a top-level value back."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def ephemeral_values(base: str, base_values: Mapping[str, Any], stack: str, server: Server) -> dict[str, Any]:
    """The new stack's plain config: the base's, on its own database and roles, unprotected, marked ephemeral."""
    values = {k: copy.deepcopy(v) for k, v in base_values.items() if k not in SECRET_KEYS and k != "password"}
    database = values.get("database")
    if not isinstance(database, Mapping) or not database.get("name"):
        raise BaseStackUnusable(base, "its config has no database.name", "set the base stack's database settings")
    values["database"] = {"host": server.host, "port": server.port, "name": _name(base, f"{database['name']}_{suffix(stack)}"),
                          "user": server.user, "sslmode": server.sslmode}
    migrations = dict(values.get("migrations") or {})
    migrations["protected"] = False
    migrations.pop("backupBeforeApply", None)
    values["migrations"] = migrations
    if isinstance(values.get("roles"), Mapping):
        values["roles"] = _own_roles(base, values["roles"], suffix(stack))
    values[MARKER] = True
    return values


def secret_keys(values: Mapping[str, Any]) -> list[str]:
    """The role passwords the stack needs ('appPassword', 'memberPasswords.<name>'): what its roles log in with."""
    roles = values.get("roles")
    if not isinstance(roles, Mapping):
        return []
    keys = [f"{kind}Password" for kind in ROLE_KINDS
            if isinstance(roles.get(kind), Mapping) and roles[kind].get("login", True) is not False]
    return keys + [f"{MEMBER_PASSWORDS}.{m['name']}" for m in roles.get("members") or [] if isinstance(m, Mapping)]


def _own_roles(base: str, roles: Mapping[str, Any], tail: str) -> dict[str, Any]:
    """Role names are cluster-wide: every role of the ephemeral stack gets the stack's suffix."""
    renamed = copy.deepcopy(dict(roles))
    for kind in ROLE_KINDS:
        if isinstance(renamed.get(kind), dict) and renamed[kind].get("name"):
            renamed[kind]["name"] = _name(base, f"{renamed[kind]['name']}_{tail}")
    renamed["members"] = [{**m, "name": _name(base, f"{m['name']}_{tail}")} for m in renamed.get("members") or []]
    return renamed


def _name(base: str, name: str) -> str:
    if len(name) > DATABASE_SUFFIX_MAX or not IDENTIFIER.match(name.lower()):
        raise BaseStackUnusable(base, f"the derived name '{name}' is not a valid PostgreSQL name (at most 63 characters)",
                                "shorten the base stack's database or role names")
    return name
