"""The access model as checks that run in the database, e.g. after `pulumi up` on a stack that declares roles.

app: CONNECT, USAGE on the schema (no CREATE), SELECT/INSERT/UPDATE/DELETE on each application table and nothing more,
USAGE/SELECT on their sequences (no UPDATE), USAGE on the listed types, owns nothing, is not a member of the migrator.
readonly: CONNECT, USAGE on the schema (no CREATE), SELECT on each application table and nothing more, cannot use
their sequences, owns nothing, is a member of neither other role. migrator: CONNECT, CREATE on the schema, owns each
application table. Role, table and type names travel as query parameters only; no identifier is put into SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .settings import AccessSettings, RoleNames

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
MAINTAIN_SINCE = 170000  # PostgreSQL 17 added the MAINTAIN table privilege
APP_TABLE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
READONLY_TABLE = frozenset({"SELECT"})
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
APP_SEQUENCE = frozenset({"USAGE", "SELECT"})

MISSING_ROLES = sql.SQL("SELECT r FROM unnest(%s::text[]) AS r WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)")
DATABASE_PRIVILEGE = sql.SQL("SELECT has_database_privilege(%s, current_database(), %s)")
SCHEMA_EXISTS = sql.SQL("SELECT oid FROM pg_namespace WHERE nspname = %s")
HELD_ON_SCHEMA = sql.SQL("SELECT p FROM unnest(%s::text[]) AS p WHERE has_schema_privilege(%s, %s::oid, p)")
TABLE = sql.SQL(
    "SELECT c.oid, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)
HELD_ON_TABLE = sql.SQL("SELECT p FROM unnest(%s::text[]) AS p WHERE has_table_privilege(%s, %s::oid, p)")
SEQUENCES_OF_TABLE = sql.SQL(
    "SELECT s.oid, s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
    "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %s "
    "AND d.deptype IN ('a', 'i') ORDER BY s.relname"
)
HELD_ON_SEQUENCE = sql.SQL("SELECT p FROM unnest(%s::text[]) AS p WHERE has_sequence_privilege(%s, %s::oid, p)")
TYPE = sql.SQL(
    "SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = %s"
)
TYPE_USAGE = sql.SQL("SELECT has_type_privilege(%s, %s::oid, 'USAGE')")
OWNED = sql.SQL(
    "SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_shdepend d "
    "WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s) "
    "AND d.deptype = 'o' AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) "
    "ORDER BY 1"
)
IS_MEMBER = sql.SQL("SELECT pg_has_role(%s, %s, 'MEMBER')")


@dataclass(frozen=True)
class AccessCheck:
    """One verified fact of the access model; detail says what was found when it does not hold."""

    name: str
    ok: bool
    detail: str = ""


def access_checks(conn: psycopg.Connection, roles: AccessSettings | RoleNames, tables: Sequence[str],
                  schema: str, types: Sequence[str] = ()) -> list[AccessCheck]:
    """Every check of the access model for the application tables (and enum types) of one schema."""
    names = roles.names if isinstance(roles, AccessSettings) else roles
    with conn.transaction():
        missing = _missing_roles(conn, names)
        if missing:
            return [AccessCheck("roles_exist", False, f"role {', '.join(missing)} does not exist; run `pulumi up` first")]
        schema_oid = _one(conn, SCHEMA_EXISTS, (schema,))
        if schema_oid is None:
            return [AccessCheck("schema_exists", False, f"schema {schema} does not exist")]
        checks = [*_database_checks(conn, names), *_schema_checks(conn, names, schema_oid, schema)]
        for table in tables:
            checks += _table_checks(conn, names, schema, table)
        checks += [_type_check(conn, names.app, schema, name) for name in types]
        checks += [_owns_nothing(conn, "app", names.app), _owns_nothing(conn, "readonly", names.readonly)]
        checks += _membership_checks(conn, names)
    return checks


def failed(checks: Iterable[AccessCheck]) -> list[AccessCheck]:
    return [check for check in checks if not check.ok]


def _one(conn: psycopg.Connection, query: sql.Composable, params: Sequence[object]) -> object | None:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _held(conn: psycopg.Connection, query: sql.Composable, role: str, oid: object, privileges: Sequence[str]) -> set[str]:
    return {row[0] for row in conn.execute(query, (list(privileges), role, oid))}


def _missing_roles(conn: psycopg.Connection, names: RoleNames) -> list[str]:
    return [row[0] for row in conn.execute(MISSING_ROLES, ([names.migrator, names.app, names.readonly],))]


def _has(name: str, held: set[str], required: Iterable[str], what: str) -> AccessCheck:
    lacking = sorted(set(required) - held)
    return AccessCheck(name, not lacking, f"lacks {', '.join(lacking)} on {what}" if lacking else "")


def _lacks(name: str, held: set[str], allowed: Iterable[str], what: str) -> AccessCheck:
    extra = sorted(held - set(allowed))
    return AccessCheck(name, not extra, f"also holds {', '.join(extra)} on {what}" if extra else "")


def _database_checks(conn: psycopg.Connection, names: RoleNames) -> list[AccessCheck]:
    checks = []
    for kind, role in (("migrator", names.migrator), ("app", names.app), ("readonly", names.readonly)):
        ok = bool(_one(conn, DATABASE_PRIVILEGE, (role, "CONNECT")))
        checks.append(AccessCheck(f"{kind}.connect", ok, "" if ok else f"{role} cannot CONNECT to the database"))
    return checks


def _schema_checks(conn: psycopg.Connection, names: RoleNames, oid: object, schema: str) -> list[AccessCheck]:
    what = f"schema {schema}"
    migrator, app, readonly = (_held(conn, HELD_ON_SCHEMA, r, oid, ("USAGE", "CREATE"))
                               for r in (names.migrator, names.app, names.readonly))
    return [
        _has("migrator.schema_create", migrator, ("USAGE", "CREATE"), what),
        _has("app.schema_usage", app, ("USAGE",), what),
        _lacks("app.no_schema_create", app, ("USAGE",), what),
        _has("readonly.schema_usage", readonly, ("USAGE",), what),
        _lacks("readonly.no_schema_create", readonly, ("USAGE",), what),
    ]


def _table_privileges(conn: psycopg.Connection) -> tuple[str, ...]:
    return TABLE_PRIVILEGES + (("MAINTAIN",) if conn.info.server_version >= MAINTAIN_SINCE else ())


def _table_checks(conn: psycopg.Connection, names: RoleNames, schema: str, table: str) -> list[AccessCheck]:
    row = conn.execute(TABLE, (schema, table)).fetchone()
    if row is None:
        return [AccessCheck(f"table_exists:{table}", False, f"table {schema}.{table} does not exist")]
    oid, owner = row
    what, privileges = f"table {schema}.{table}", _table_privileges(conn)
    app = _held(conn, HELD_ON_TABLE, names.app, oid, privileges)
    readonly = _held(conn, HELD_ON_TABLE, names.readonly, oid, privileges)
    return [
        AccessCheck(f"migrator.owns:{table}", owner == names.migrator,
                    "" if owner == names.migrator else f"{what} is owned by {owner}, not {names.migrator}"),
        _has(f"app.table_dml:{table}", app, APP_TABLE, what),
        _lacks(f"app.no_extra_table_privileges:{table}", app, APP_TABLE, what),
        _has(f"readonly.table_select:{table}", readonly, READONLY_TABLE, what),
        _lacks(f"readonly.select_only:{table}", readonly, READONLY_TABLE, what),
        *_sequence_checks(conn, names, schema, oid),
    ]


def _sequence_checks(conn: psycopg.Connection, names: RoleNames, schema: str, table_oid: object) -> list[AccessCheck]:
    checks = []
    for oid, sequence in conn.execute(SEQUENCES_OF_TABLE, (table_oid,)).fetchall():
        what = f"sequence {schema}.{sequence}"
        app = _held(conn, HELD_ON_SEQUENCE, names.app, oid, SEQUENCE_PRIVILEGES)
        readonly = _held(conn, HELD_ON_SEQUENCE, names.readonly, oid, SEQUENCE_PRIVILEGES)
        checks += [
            _has(f"app.sequence_usage:{sequence}", app, APP_SEQUENCE, what),
            _lacks(f"app.no_sequence_update:{sequence}", app, APP_SEQUENCE, what),
            _lacks(f"readonly.no_sequence_use:{sequence}", readonly, (), what),
        ]
    return checks


def _type_check(conn: psycopg.Connection, app: str, schema: str, name: str) -> AccessCheck:
    oid = _one(conn, TYPE, (schema, name))
    if oid is None:
        return AccessCheck(f"app.type_usage:{name}", False, f"type {schema}.{name} does not exist")
    ok = bool(_one(conn, TYPE_USAGE, (app, oid)))
    return AccessCheck(f"app.type_usage:{name}", ok, "" if ok else f"{app} lacks USAGE on type {schema}.{name}")


def _owns_nothing(conn: psycopg.Connection, kind: str, role: str) -> AccessCheck:
    owned = [row[0] for row in conn.execute(OWNED, (role,))]
    shown = ", ".join(owned[:5]) + (f" and {len(owned) - 5} more" if len(owned) > 5 else "")
    return AccessCheck(f"{kind}.owns_nothing", not owned, f"{role} owns {shown}" if owned else "")


def _membership_checks(conn: psycopg.Connection, names: RoleNames) -> list[AccessCheck]:
    pairs = (("app", names.app, "migrator", names.migrator), ("readonly", names.readonly, "migrator", names.migrator),
             ("readonly", names.readonly, "app", names.app))
    checks = []
    for kind, role, other_kind, other in pairs:
        member = bool(_one(conn, IS_MEMBER, (role, other)))
        checks.append(AccessCheck(f"{kind}.not_member:{other_kind}", not member,
                                  f"{role} is a member of {other} and inherits its rights" if member else ""))
    return checks
