"""Roles and grants as declared in stack config (`junkquote-db:roles`), parsed into frozen settings. No Pulumi resources.

    junkquote-db:roles:
      schema: public                                  # optional, default public
      migrator: {name: junkquote_migrator}            # owns the application's objects, runs the batches' DDL
      app: {name: junkquote_app, connectionLimit: 40} # DML on application tables, nothing else
      readonly: {name: junkquote_readonly}            # SELECT on application tables
      members:                                        # optional extra login roles, each a member of one of the three
        - {name: support_kim, memberOf: readonly}

Each of migrator/app/readonly takes `name` (required), `login` (default true) and `connectionLimit` (default -1, no
limit). Passwords are never in the stack file: a role that logs in needs the secret `<role>Password`
(`pulumi config set --secret junkquote-db:appPassword …`), a member needs the entry `memberPasswords.<name>` of the
secret object `memberPasswords` (`pulumi config set --secret --path 'junkquote-db:memberPasswords.support_kim' …`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.config_errors import ConfigError, refuse_unknown

ROLE_KINDS = ("migrator", "app", "readonly")
MEMBER_PASSWORDS = "memberPasswords"
SECRET_KEYS = frozenset({f"{kind}Password" for kind in ROLE_KINDS} | {MEMBER_PASSWORDS})
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESERVED_ROLES = frozenset({"public", "postgres", "none", "all", "current_user", "current_role", "session_user",
                            "system_user", "user"})
RESERVED_SCHEMAS = frozenset({"information_schema"})
MAX_CONNECTION_LIMIT = 10_000

PasswordFor = Callable[[str], "str | pulumi.Output[str] | None"]


@dataclass(frozen=True)
class RoleSettings:
    """One PostgreSQL role. The password is kept out of repr; resources receive it as a secret Output."""

    name: str
    login: bool = True
    connection_limit: int = -1
    member_of: str | None = None
    password: str | pulumi.Output[str] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RoleNames:
    """The three role names the access model is checked against."""

    migrator: str
    app: str
    readonly: str


@dataclass(frozen=True)
class AccessSettings:
    """The declared roles: migrator (owner), app (DML), readonly (SELECT) and members of one of them."""

    schema: str
    migrator: RoleSettings
    app: RoleSettings
    readonly: RoleSettings
    members: tuple[RoleSettings, ...] = ()

    @property
    def names(self) -> RoleNames:
        return RoleNames(migrator=self.migrator.name, app=self.app.name, readonly=self.readonly.name)

    def role(self, kind: str) -> RoleSettings:
        return {"migrator": self.migrator, "app": self.app, "readonly": self.readonly}[kind]

    def all_roles(self) -> tuple[RoleSettings, ...]:
        return (self.migrator, self.app, self.readonly, *self.members)


def _identifier(key: str, value: Any, what: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ConfigError(key, f"'{value}' is not a valid {what}: use 1-63 lowercase letters, digits and "
                                "underscores, starting with a letter or underscore")
    return value


def parse_role_name(key: str, value: Any) -> str:
    name = _identifier(key, value, "role name")
    if name in RESERVED_ROLES or name.startswith("pg_"):
        raise ConfigError(key, f"'{name}' is reserved by PostgreSQL; choose a name like junkquote_{name.removeprefix('pg_')}")
    return name


def parse_schema_name(value: Any) -> str:
    name = _identifier("roles.schema", value, "schema name")
    if name in RESERVED_SCHEMAS or name.startswith("pg_"):
        raise ConfigError("roles.schema", f"'{name}' is a system schema; use the schema the batches create objects in")
    return name


def _connection_limit(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_CONNECTION_LIMIT:
        raise ConfigError(key, f"'{value}' is not a connection limit (-1 for none, or 0 to {MAX_CONNECTION_LIMIT})")
    return value


def _password(password_for: PasswordFor, key: str, needed_by: str) -> str | pulumi.Output[str]:
    password = password_for(key)
    if password is None or password == "":
        how = f"--path 'junkquote-db:{key}'" if "." in key else f"junkquote-db:{key}"
        raise ConfigError(key, f"is required because {needed_by} logs in; "
                                f"set it with `pulumi config set --secret {how} <password>`")
    return password


def parse_role(obj: Any, kind: str, password_for: PasswordFor) -> RoleSettings:
    section = f"roles.{kind}"
    if not isinstance(obj, Mapping):
        raise ConfigError(section, f"is required: an object with name (e.g. {{name: junkquote_{kind}}})")
    refuse_unknown(obj, section, ("name", "login", "connectionLimit"))
    name = parse_role_name(f"{section}.name", obj.get("name"))
    login = obj.get("login", True)
    if not isinstance(login, bool):
        raise ConfigError(f"{section}.login", f"'{login}' must be true or false")
    limit = _connection_limit(f"{section}.connectionLimit", obj.get("connectionLimit", -1))
    password = _password(password_for, f"{kind}Password", section) if login else None
    return RoleSettings(name=name, login=login, connection_limit=limit, password=password)


def parse_member(obj: Any, index: int, password_for: PasswordFor) -> RoleSettings:
    section = f"roles.members[{index}]"
    if not isinstance(obj, Mapping):
        raise ConfigError(section, "must be an object with name and memberOf")
    refuse_unknown(obj, section, ("name", "memberOf", "connectionLimit"))
    name = parse_role_name(f"{section}.name", obj.get("name"))
    member_of = obj.get("memberOf")
    if member_of not in ROLE_KINDS:
        raise ConfigError(f"{section}.memberOf", f"'{member_of}' must be one of {', '.join(ROLE_KINDS)}")
    limit = _connection_limit(f"{section}.connectionLimit", obj.get("connectionLimit", -1))
    password = _password(password_for, f"{MEMBER_PASSWORDS}.{name}", f"{section} '{name}'")
    return RoleSettings(name=name, login=True, connection_limit=limit, member_of=member_of, password=password)


def _members(obj: Any, password_for: PasswordFor) -> tuple[RoleSettings, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, list):
        raise ConfigError("roles.members", "must be a list of {name, memberOf} objects")
    return tuple(parse_member(item, i, password_for) for i, item in enumerate(obj))


def _distinct(access: AccessSettings) -> None:
    seen: dict[str, str] = {}
    keys = [f"roles.{kind}.name" for kind in ROLE_KINDS] + [f"roles.members[{i}].name" for i in range(len(access.members))]
    for key, role in zip(keys, access.all_roles()):
        if role.name in seen:
            raise ConfigError(key, f"'{role.name}' is already used by {seen[role.name]}; every role needs its own name")
        seen[role.name] = key.removesuffix(".name")


def parse_access(obj: Mapping[str, Any] | None, password_for: PasswordFor) -> AccessSettings | None:
    """The declared roles, or None when the stack declares none (then no role or grant is managed)."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError("roles", "must be an object with migrator, app and readonly (remove it to manage no roles)")
    refuse_unknown(obj, "roles", ("schema", *ROLE_KINDS, "members"))
    access = AccessSettings(
        schema=parse_schema_name(obj.get("schema", "public")),
        migrator=parse_role(obj.get("migrator"), "migrator", password_for),
        app=parse_role(obj.get("app"), "app", password_for),
        readonly=parse_role(obj.get("readonly"), "readonly", password_for),
        members=_members(obj.get("members"), password_for),
    )
    _distinct(access)
    return access
