"""Roles and grants through the real Pulumi CLI and the real pulumi-postgresql plugin, on a fresh database.

Each stack is modelled on Pulumi.staging.yaml (migrator without login, app, readonly, one member of readonly) and
connects as a CREATEROLE admin that owns the database, as on a managed server. The privileges are checked in
PostgreSQL itself: with the access checks, and by logging in as each role and trying what it may and may not do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql
from pulumi import automation as auto

from infra.access.checks import access_checks, failed
from infra.access.settings import RoleNames
from infra.migrations.target import Target
from tests.e2e.access_stack import AccessStack, logs_in
from tests.e2e.project import ROOT, changes
from tests.pg import connect
from tests.support.privileges import grant_like_the_component, privilege_snapshot, run

QUIET = {"on_output": lambda _: None}
APPLICATION_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
ENUM_TYPES = ("SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
              "WHERE n.nspname = 'public' AND t.typtype = 'e' ORDER BY 1")
INSERT_LEAD = """INSERT INTO "Lead" ("id", "name") VALUES (%s, 'Ann')"""
PRICE_ITEM = 'CREATE TABLE "PriceItem" ("id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "name" text NOT NULL);'
MakeAccessStack = Callable[..., AccessStack]


def failing_checks(stack: AccessStack) -> list[str]:
    with connect(stack.target) as conn:
        tables = [r[0] for r in conn.execute(APPLICATION_TABLES)]
        types = [r[0] for r in conn.execute(ENUM_TYPES)]
        return [f"{c.name}: {c.detail}" for c in failed(access_checks(conn, stack.names, tables, "public", types))]


def can(target: Target, statement: str, *params: object) -> bool:
    """Whether the role of `target` may run the statement (False on 'permission denied')."""
    try:
        with connect(target) as conn:
            conn.execute(statement, params)
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


def assert_least_privilege_in_practice(stack: AccessStack) -> None:
    app = stack.as_role(stack.names.app, stack.secrets.app)
    readonly = stack.as_role(stack.names.readonly, stack.secrets.readonly)
    kim = stack.as_role(f"{stack.prefix}_kim", stack.secrets.member)
    probe = f"lead-{uuid.uuid4().hex[:6]}"  # deleted again: a lead without a customer is what batch 0002's checks flag
    assert can(app, INSERT_LEAD, probe) and can(app, 'DELETE FROM "Lead" WHERE "id" = %s', probe)
    assert not can(app, 'TRUNCATE "Lead"') and not can(app, 'CREATE TABLE "Sneaky" (id int)')
    assert can(readonly, 'SELECT count(*) FROM "Lead"') and not can(readonly, INSERT_LEAD, "lead-ro")
    assert can(kim, 'SELECT count(*) FROM "Customer"') and not can(kim, INSERT_LEAD, "lead-kim")
    assert not logs_in(stack.as_role(stack.names.migrator, "anything")), "the migrator has no login"


def test_up_gives_each_role_exactly_its_privileges_and_up_refresh_preview_then_change_nothing(
        make_access_stack: MakeAccessStack) -> None:
    stack = make_access_stack()
    stack.project.stack.up(**QUIET)

    assert failing_checks(stack) == []
    assert_least_privilege_in_practice(stack)
    second = stack.project.stack.up(diff=True, **QUIET)
    assert changes(second.summary.resource_changes) == {}, second.stdout
    stack.project.stack.refresh(**QUIET)
    after_refresh = stack.project.stack.preview(diff=True, **QUIET)
    assert changes(after_refresh.change_summary) == {}, after_refresh.stdout
    assert changes(stack.project.stack.up(**QUIET).summary.resource_changes) == {}


def test_a_rotated_password_logs_in_after_up_and_the_old_one_no_longer_does(make_access_stack: MakeAccessStack) -> None:
    stack = make_access_stack()
    stack.project.stack.up(**QUIET)
    new_password = f"rotated-{uuid.uuid4().hex[:8]}"

    stack.project.cli("config", "set", "--secret", "junkquote-db:appPassword", new_password, check=True)
    stack.project.stack.up(**QUIET)

    assert logs_in(stack.as_role(stack.names.app, new_password))
    assert not logs_in(stack.as_role(stack.names.app, stack.secrets.app))


def test_a_member_added_to_the_stack_config_is_created_and_a_removed_one_is_dropped(
        make_access_stack: MakeAccessStack) -> None:
    stack = make_access_stack()
    stack.project.stack.up(**QUIET)
    lee, roles = f"{stack.prefix}_lee", stack.roles()

    stack.set_roles({**roles, "members": [*roles["members"], {"name": lee, "memberOf": "app"}]})
    stack.set_member_password(lee, "lee-password")
    stack.project.stack.up(**QUIET)
    lee_login = stack.as_role(lee, "lee-password")
    assert can(lee_login, INSERT_LEAD, "lead-lee") and can(lee_login, 'DELETE FROM "Lead" WHERE "id" = %s', "lead-lee")

    stack.set_roles(roles)
    stack.project.stack.up(**QUIET)
    assert stack.leftover_roles() == sorted([f"{stack.prefix}_admin", f"{stack.prefix}_kim", *vars(stack.names).values()])
    assert can(stack.as_role(f"{stack.prefix}_kim", stack.secrets.member), 'SELECT count(*) FROM "Lead"')
    stack.project.stack.refresh(**QUIET)
    assert changes(stack.project.stack.preview(**QUIET).change_summary) == {}


def test_a_new_batch_table_gets_its_privileges_from_the_default_privileges_without_grant_edits(
        make_access_stack: MakeAccessStack, pg_admin: Target) -> None:
    stack = make_access_stack()
    stack.project.stack.up(**QUIET)
    stack.project.add_batch("0002_add_price_item", PRICE_ITEM, rollback='DROP TABLE IF EXISTS "PriceItem";')

    result = stack.project.stack.up(**QUIET)

    # The history applies the batch, its table becomes a resource; the verification and the schema checks see the
    # new table. No grant changes.
    assert changes(result.summary.resource_changes) == {"create": 1, "update": 3}, result.stdout
    app = stack.as_role(stack.names.app, stack.secrets.app)
    readonly = stack.as_role(stack.names.readonly, stack.secrets.readonly)
    assert can(app, """INSERT INTO "PriceItem" ("name") VALUES ('haul')""") and can(readonly, 'SELECT * FROM "PriceItem"')
    assert not can(readonly, """INSERT INTO "PriceItem" ("name") VALUES ('x')""")
    assert failing_checks(stack) == []
    with connect(stack.target) as conn:
        real = privilege_snapshot(conn, stack.names)
    assert real == imitation_snapshot(pg_admin), "the integration tests' plain-SQL grants differ from the component's"


def imitation_snapshot(server: Target) -> set[tuple[str, str, str]]:
    """The snapshot of tests/support/privileges.grant_like_the_component, on a fresh database of the same server."""
    suffix = uuid.uuid4().hex[:8]
    names = RoleNames(migrator=f"jqi{suffix}_migrator", app=f"jqi{suffix}_app", readonly=f"jqi{suffix}_readonly")
    dbname = f"imitation_{suffix}"
    with connect(server) as conn:
        run(conn, "CREATE DATABASE {}", dbname)
        for role in vars(names).values():
            run(conn, "CREATE ROLE {} NOLOGIN", role)
    try:
        with connect(server.with_database(dbname)) as conn:
            grant_like_the_component(conn, names, dbname)
            return privilege_snapshot(conn, names)
    finally:
        with connect(server) as conn:
            run(conn, "DROP DATABASE {} WITH (FORCE)", dbname)
            for role in vars(names).values():
                run(conn, "DROP ROLE {}", role)


def assert_nothing_left(stack: AccessStack) -> None:
    assert stack.leftover_roles() == [f"{stack.prefix}_admin"], "every managed role is dropped"
    with connect(stack.target) as conn:
        assert conn.execute(APPLICATION_TABLES).fetchall() == [], "every batch rolled back"
        assert conn.execute("SELECT count(*) FROM schema_ledger.batch").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,), "no default privileges left"
        grantees = {r[0] for r in conn.execute(
            "SELECT a.grantee::regrole::text FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() "
            "UNION SELECT a.grantee::regrole::text FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'public'")}
        assert grantees <= {"-", f"{stack.prefix}_admin", "pg_database_owner", "postgres"}, f"grants left: {grantees}"


def test_destroy_rolls_back_the_batches_and_leaves_no_role_grant_or_default_privilege(
        make_access_stack: MakeAccessStack) -> None:
    stack = make_access_stack()
    stack.project.stack.up(**QUIET)

    stack.project.stack.destroy(**QUIET)

    assert_nothing_left(stack)


def test_on_postgresql_15_up_grants_least_privilege_refresh_changes_nothing_and_destroy_leaves_nothing(
        make_access_stack: MakeAccessStack, pg15_server: Target) -> None:
    stack = make_access_stack(server=pg15_server)
    stack.project.stack.up(**QUIET)
    with connect(stack.target) as conn:
        assert conn.info.server_version // 10000 == 15

    assert failing_checks(stack) == []
    assert_least_privilege_in_practice(stack)
    stack.project.stack.refresh(**QUIET)
    assert changes(stack.project.stack.preview(**QUIET).change_summary) == {}
    stack.project.stack.destroy(**QUIET)
    assert_nothing_left(stack)


def test_an_adopted_database_whose_tables_another_admin_owns_works_after_the_readme_handover(
        make_access_stack: MakeAccessStack, db_target: Target) -> None:
    prisma = f"jqp{uuid.uuid4().hex[:8]}"
    with connect(db_target) as conn:  # the tables and data Prisma's admin created long ago
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'prisma-pw'").format(sql.Identifier(prisma)))
        run(conn, "GRANT CREATE ON SCHEMA public TO {}", prisma)
    prisma_target = Target(db_target.host, db_target.port, db_target.dbname, prisma, "prisma-pw", sslmode="disable")
    with connect(prisma_target) as conn:
        conn.execute((ROOT / "sql" / "0000_baseline" / "migration.sql").read_text())
        conn.execute(INSERT_LEAD, ("lead-1",))
    stack = make_access_stack(migrations={"baseline": "adopt", "protected": True})
    try:
        readme_handover(stack, prisma_target, prisma)
        with connect(stack.target) as conn:
            assert conn.execute('SELECT "name" FROM "Lead"').fetchall() == [("Ann",)]
            assert conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY 1").fetchall() == [
                ("0000_baseline",), ("0001_add_memory_entities",)]
        assert failing_checks(stack) == []
    finally:
        with connect(db_target) as conn:
            run(conn, "DROP OWNED BY {}", prisma)
            run(conn, "DROP ROLE {}", prisma)


def readme_handover(stack: AccessStack, prisma_target: Target, prisma: str) -> None:
    """README, "Roles and grants", adopted database: the steps exactly as written there."""
    # 1. `pulumi up`: creates the roles and grants; the first batch that alters "Lead" stops and is undone.
    with pytest.raises(auto.CommandError, match='must be owner of table Lead'):
        stack.project.stack.up(**QUIET)
    with connect(stack.target) as conn:
        assert conn.execute("SELECT batch FROM schema_ledger.batch").fetchall() == [("0000_baseline",)]
    # 2. the stack's admin lets the tables' owner hand them to the migrator, which it does, then takes that back.
    m = stack.names.migrator
    with connect(stack.admin) as conn:
        run(conn, "GRANT {} TO {}", m, prisma)
    with connect(prisma_target) as conn:
        for table in ("Lead", "Job", "Audit"):
            run(conn, "ALTER TABLE {} OWNER TO {}", table, m)
    with connect(stack.admin) as conn:
        run(conn, "REVOKE {} FROM {}", m, prisma)
    # 3. `pulumi up` again.
    stack.project.stack.up(**QUIET)
