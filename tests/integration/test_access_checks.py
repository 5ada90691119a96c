"""The privilege checks against the grants DatabaseAccess makes, written in plain SQL (fast, and on PostgreSQL 15 too).

That plain-SQL imitation is not trusted on its word: tests/e2e/test_access.py sets up a database with the real
component and the real pulumi-postgresql plugin and asserts that its privileges equal the imitation's (privilege by
privilege, see tests/support/privileges.py). These tests then prove that each deviation is caught and named.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from infra.access.checks import access_checks, failed
from infra.access.settings import RoleNames
from infra.providers.errors import AccessCheckFailed
from infra.migrations.target import Target
from infra.providers.connection_props import connection_inputs
from infra.settings import DatabaseSettings
from infra.providers.privileges import verify
from tests.support.privileges import grant_like_the_component, run

TABLES = ("Customer", "Message")
TYPES = ("MessageRole",)


@pytest.fixture
def roles(db: psycopg.Connection, db_target) -> Iterator[RoleNames]:
    """Three fresh roles (roles are cluster-wide: unique names, dropped afterwards) granted as the component does."""
    suffix = uuid.uuid4().hex[:10]
    names = RoleNames(migrator=f"jq_migrator_{suffix}", app=f"jq_app_{suffix}", readonly=f"jq_readonly_{suffix}")
    for role in (names.migrator, names.app, names.readonly):
        run(db, "CREATE ROLE {} NOLOGIN", role)
    try:
        grant_like_the_component(db, names, db_target.dbname)
        yield names
    finally:
        db.execute("RESET ROLE")
        for role in (names.app, names.readonly, names.migrator):  # one at a time: a single DROP OWNED of all three
            run(db, "DROP OWNED BY {}", role)                      # fails on default ACLs naming two of them
        run(db, "DROP ROLE {}, {}, {}", names.migrator, names.app, names.readonly)


def failing(db: psycopg.Connection, roles: RoleNames) -> set[str]:
    return {check.name for check in failed(access_checks(db, roles, TABLES, "public", TYPES))}


def test_checks_pass_on_the_least_privilege_setup(db: psycopg.Connection, roles: RoleNames) -> None:
    checks = access_checks(db, roles, TABLES, "public", TYPES)
    assert failed(checks) == []
    names = {check.name for check in checks}
    assert {"migrator.owns:Customer", "app.table_dml:Message", "readonly.select_only:Customer",
            "app.sequence_usage:Customer_id_seq", "app.type_usage:MessageRole", "app.owns_nothing"} <= names


def test_checks_catch_app_missing_update(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'REVOKE UPDATE ON "Customer" FROM {}', roles.app)
    assert failing(db, roles) == {"app.table_dml:Customer"}
    detail = next(c.detail for c in access_checks(db, roles, TABLES, "public") if c.name == "app.table_dml:Customer")
    assert detail == "lacks UPDATE on table public.Customer"


def test_checks_catch_readonly_insert(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'GRANT INSERT ON "Message" TO {}', roles.readonly)
    assert failing(db, roles) == {"readonly.select_only:Message"}


def test_checks_catch_schema_create_for_app(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, "GRANT CREATE ON SCHEMA public TO {}", roles.app)
    assert failing(db, roles) == {"app.no_schema_create"}


def test_checks_catch_truncate_for_app(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'GRANT TRUNCATE, TRIGGER ON "Customer" TO {}', roles.app)
    assert failing(db, roles) == {"app.no_extra_table_privileges:Customer"}


def test_checks_catch_readonly_using_a_sequence(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'GRANT USAGE ON SEQUENCE "Customer_id_seq" TO {}', roles.readonly)
    assert failing(db, roles) == {"readonly.no_sequence_use:Customer_id_seq"}


def test_checks_catch_a_table_owned_by_the_app(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'ALTER TABLE "Message" OWNER TO {}', roles.app)
    assert {"migrator.owns:Message", "app.owns_nothing", "app.no_extra_table_privileges:Message"} <= failing(db, roles)


def test_checks_catch_app_as_member_of_the_migrator(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, "GRANT {} TO {}", roles.migrator, roles.app)
    assert {"app.not_member:migrator", "app.no_schema_create", "app.no_extra_table_privileges:Customer"} <= failing(db, roles)


def test_checks_catch_app_without_usage_on_the_enum(db: psycopg.Connection, roles: RoleNames) -> None:
    run(db, 'REVOKE USAGE ON TYPE "MessageRole" FROM PUBLIC, {}', roles.app)
    assert failing(db, roles) == {"app.type_usage:MessageRole"}


def test_checks_report_a_missing_table_and_role(db: psycopg.Connection, roles: RoleNames) -> None:
    assert failing(db, roles) == set()
    assert {c.name for c in failed(access_checks(db, roles, ("Invoice",), "public"))} == {"table_exists:Invoice"}
    ghost = RoleNames(migrator=roles.migrator, app="jq_nobody", readonly=roles.readonly)
    [check] = access_checks(db, ghost, TABLES, "public")
    assert (check.name, check.ok) == ("roles_exist", False) and "jq_nobody" in check.detail


def verification_props(target: Target, roles: RoleNames) -> dict:
    inputs = connection_inputs(DatabaseSettings(host=target.host, port=target.port, name=target.dbname, user=target.user,
                                                sslmode="disable"))
    return {**inputs, "schema": "public", "schemaVersion": "0001",
            "roles": {"migrator": roles.migrator, "app": roles.app, "readonly": roles.readonly}}


def test_the_after_up_verification_discovers_every_table_and_type_and_passes(db_target: Target, roles: RoleNames) -> None:
    names = verify(verification_props(db_target, roles))
    assert {"app.table_dml:Customer", "app.table_dml:Message", "app.type_usage:MessageRole"} <= set(names)


def test_the_after_up_verification_fails_naming_each_broken_privilege(db: psycopg.Connection, db_target: Target, roles: RoleNames) -> None:
    run(db, 'GRANT INSERT ON "Message" TO {}', roles.readonly)
    with pytest.raises(AccessCheckFailed, match=r"privileges on .* differ from the declared roles \(1 checks\): readonly.select_only:Message"):
        verify(verification_props(db_target, roles))
