"""Roles and grants of the real stack files, registered against Pulumi mocks (no I/O), and the parsing of roles."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "junkquote-db"
PASSWORDS = {"migratorPassword": "pw-migrator", "appPassword": "pw-app", "readonlyPassword": "pw-readonly"}


@dataclass(frozen=True)
class Registration:
    type: str
    urn: str
    inputs: dict[str, Any]
    provider: str
    parent: str
    dependencies: frozenset[str]
    delete_before_replace: bool


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = {k: rpc.unwrap_rpc_secret(v) if rpc.is_rpc_secret(v) else v for k, v in args.inputs.items()}
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping what the engine would see: provider, parent, dependencies, options."""

    def __init__(self) -> None:
        super().__init__(Mocks())
        self.registered: dict[str, Registration] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        self.registered[request.name] = Registration(
            type=request.type, urn=response.urn, inputs=rpc.deserialize_properties(request.object),
            provider=request.provider, parent=request.parent, dependencies=frozenset(request.dependencies),
            delete_before_replace=request.deleteBeforeReplace)
        return response

    def of_type(self, suffix: str) -> list[Registration]:
        return [r for r in self.registered.values() if r.type.startswith("postgresql:") and r.type.endswith(suffix)]


MONITOR = RecordingMonitor()
pulumi.runtime.set_mocks(MONITOR.mocks, project=PROJECT, stack="test", preview=False, monitor=MONITOR)

# Imported after the mocks are set, as the Pulumi unit-testing guide requires.
from infra.access.component import DatabaseAccess  # noqa: E402
from infra.access.settings import AccessSettings, parse_access  # noqa: E402
from infra.config_errors import ConfigError  # noqa: E402
from infra.settings import DatabaseSettings, secret_reader  # noqa: E402

DATABASE = DatabaseSettings(host="db.internal", port=5432, name="junkquote", user="junkquote_admin", sslmode="require",
                            password="pw-admin")


def stack_roles(stack: str) -> Any:
    """junkquote-db:roles of a real stack file."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return (document.get("config") or {}).get(f"{PROJECT}:roles")


def use_secrets(secrets: Mapping[str, Any]) -> None:
    """The stack's secrets as the engine hands them to the program (objects as JSON)."""
    config = {f"{PROJECT}:{k}": json.dumps(v) if isinstance(v, Mapping) else v for k, v in secrets.items()}
    pulumi.runtime.set_all_config(config, secret_keys=list(config))


def stack_secrets(roles: Mapping[str, Any]) -> dict[str, Any]:
    members = {m["name"]: f"pw-{m['name']}" for m in roles.get("members") or []}
    return {**PASSWORDS, "memberPasswords": members}


def install(monitor: pulumi_mocks.MockMonitor, project: str, stack: str, preview: bool) -> None:
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=preview, monitor=monitor)


@pytest.fixture(autouse=True)
def fresh_monitor() -> Iterator[None]:
    """This module's monitor for one test; the one installed before comes back after (other modules set their own)."""
    previous = pulumi.runtime.settings.get_monitor()
    project, stack, preview = pulumi.get_project(), pulumi.get_stack(), pulumi.runtime.is_dry_run()
    MONITOR.registered.clear()
    MONITOR.resources.clear()
    install(MONITOR, PROJECT, "test", False)
    pulumi.runtime.set_all_config({}, secret_keys=[])
    yield
    pulumi.runtime.set_all_config({}, secret_keys=[])
    if isinstance(previous, pulumi_mocks.MockMonitor) and previous is not MONITOR:
        install(previous, project, stack, preview)


def load_stack(stack: str) -> AccessSettings:
    roles = stack_roles(stack)
    use_secrets(stack_secrets(roles))
    access = parse_access(roles, secret_reader(pulumi.Config(PROJECT)))
    assert access is not None, f"Pulumi.{stack}.yaml declares no junkquote-db:roles"
    return access


class SchemaStandIn(pulumi.CustomResource):
    """Stands in for the schema batches the table grants must wait for."""

    def __init__(self, name: str) -> None:
        super().__init__("junkquote:test:Migration", name, {})


README_TABLE = "| role | database | schema | tables | sequences | types |"
OBJECT_TYPES = {"database": "database", "schema": "schema", "tables": "table", "sequences": "sequence", "types": "type"}


def readme_privileges() -> dict[str, dict[str, tuple[str, ...]]]:
    """The README's table of what each role may do: role -> object type -> privileges (sorted). What a role owns,
    or has nothing on, is not a grant."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(README_TABLE)
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    table = {}
    for line in itertools.takewhile(lambda text: text.startswith("|"), lines[start + 2:]):
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        role = cells.pop("role")
        table[role] = {OBJECT_TYPES[column]: tuple(sorted(value.split(", "))) for column, value in cells.items()
                       if value not in ("owns them", "—")}
    return table


def expected_grants(a: AccessSettings, db: str) -> set[tuple]:
    """Per the README: a Grant for each cell on the database, the schema, and the tables and sequences that exist."""
    names = {"migrator": a.migrator.name, "app": a.app.name, "readonly": a.readonly.name}
    return {(names[role], kind, privileges, None if kind == "database" else a.schema, db)
            for role, cells in readme_privileges().items() for kind, privileges in cells.items() if kind != "type"}


def expected_defaults(a: AccessSettings, db: str) -> set[tuple]:
    """Per the README: default privileges FOR ROLE migrator for each cell on tables, sequences and types."""
    names = {"migrator": a.migrator.name, "app": a.app.name, "readonly": a.readonly.name}
    return {(a.migrator.name, names[role], kind, privileges, a.schema, db)
            for role, cells in readme_privileges().items() for kind, privileges in cells.items()
            if kind in ("table", "sequence", "type")}


def grant_row(r: Registration) -> tuple:
    i = r.inputs
    return i["role"], i["objectType"], tuple(sorted(i["privileges"])), i.get("schema"), i["database"]


def default_row(r: Registration) -> tuple:
    i = r.inputs
    return i["owner"], i["role"], i["objectType"], tuple(sorted(i["privileges"])), i["schema"], i["database"]


def ancestors(name: str, by_urn: dict[str, str], deps: dict[str, frozenset[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for urn in deps[todo.pop()]:
            parent = by_urn.get(urn)
            if parent and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def build(access: AccessSettings, database: DatabaseSettings = DATABASE) -> tuple[DatabaseAccess, SchemaStandIn]:
    component = DatabaseAccess("access", access, database)
    schema = SchemaStandIn("schema")
    component.grant_on_objects([schema])
    return component, schema


def settled(component: DatabaseAccess, schema: SchemaStandIn) -> pulumi.Output:
    """Resolves once every child is registered."""
    children = [component.provider, component.migrator, component.app, component.readonly, *component.members.values(),
                *component.grants]
    return pulumi.Output.all(component.urn, schema.urn, *[c.urn for c in children])


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pulumi.runtime.test
def test_stack_roles_become_roles_with_secret_passwords(stack: str) -> pulumi.Output:
    access = load_stack(stack)

    def check(_: Any) -> None:
        roles = {r.inputs["name"]: r for r in MONITOR.of_type(":Role")}
        assert set(roles) == {r.name for r in access.all_roles()}
        for declared in access.all_roles():
            inputs = roles[declared.name].inputs
            assert inputs["login"] is declared.login
            assert inputs["connectionLimit"] == declared.connection_limit
            if declared.login:
                assert rpc.is_rpc_secret(inputs["password"]), f"{declared.name}: password is not secret"
            else:
                assert "password" not in inputs

    return settled(*build(access)).apply(check)


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pulumi.runtime.test
def test_stack_roles_get_exactly_the_least_privilege_grants(stack: str) -> pulumi.Output:
    access = load_stack(stack)

    def check(_: Any) -> None:
        assert {grant_row(r) for r in MONITOR.of_type(":Grant")} == expected_grants(access, DATABASE.name)
        assert len(MONITOR.of_type(":Grant")) == len(expected_grants(access, DATABASE.name))
        assert {default_row(r) for r in MONITOR.of_type(":DefaultPrivileges")} == expected_defaults(access, DATABASE.name)
        memberships = {(r.inputs["role"], r.inputs["grantRole"]) for r in MONITOR.of_type(":GrantRole")}
        assert memberships == {(DATABASE.user, access.migrator.name)}
        roles = {r.inputs["name"]: r.inputs.get("roles") for r in MONITOR.of_type(":Role")}
        assert roles == {access.migrator.name: [], access.app.name: [], access.readonly.name: [],
                         **{m.name: [access.role(str(m.member_of)).name] for m in access.members}}

    return settled(*build(access)).apply(check)


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pulumi.runtime.test
def test_every_child_uses_the_explicit_provider_and_the_component_as_parent(stack: str) -> pulumi.Output:
    access = load_stack(stack)
    component, schema = build(access)

    def check(urns: list[str]) -> None:
        component_urn = urns[0]
        [provider] = [r for r in MONITOR.registered.values() if r.type == "pulumi:providers:postgresql"]
        assert provider.parent == component_urn
        i = provider.inputs
        # a provider's inputs reach the engine JSON-encoded
        assert (i["host"], i["port"], i["database"], i["username"], i["sslmode"], i["superuser"]) == (
            "db.internal", "5432", "junkquote", "junkquote_admin", "require", "false")
        assert rpc.is_rpc_secret(i["password"])
        children = MONITOR.of_type("")
        assert len(children) == 3 + len(access.members) + 9 + 4 + 1
        for child in children:
            assert child.provider == f"{provider.urn}::access-provider-id"
            assert child.parent == component_urn

    return settled(component, schema).apply(check)


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pulumi.runtime.test
def test_grants_run_one_at_a_time_and_are_deleted_before_replacement(stack: str) -> pulumi.Output:
    access = load_stack(stack)

    def check(_: Any) -> None:
        grants = MONITOR.of_type(":Grant") + MONITOR.of_type(":DefaultPrivileges") + MONITOR.of_type(":GrantRole")
        by_urn = {r.urn: name for name, r in MONITOR.registered.items()}
        deps = {name: r.dependencies for name, r in MONITOR.registered.items()}
        names = [by_urn[g.urn] for g in grants]
        for a, b in itertools.combinations(names, 2):
            assert a in ancestors(b, by_urn, deps) or b in ancestors(a, by_urn, deps), f"{a} and {b} may run in parallel"
        assert all(g.delete_before_replace for g in grants)

    return settled(*build(access)).apply(check)


@pulumi.runtime.test
def test_object_grants_wait_for_the_schema_and_the_schema_waits_for_default_privileges() -> pulumi.Output:
    access = load_stack("prod")
    component, schema = build(access)
    prerequisites = pulumi.Output.all(*[r.urn for r in component.schema_prerequisites])

    def check(args: list[Any]) -> None:
        schema_urn, prerequisite_urns = args[0], set(args[1])
        on_objects = {r.inputs["objectType"]: r for r in MONITOR.of_type(":Grant") if r.inputs["objectType"] in ("table", "sequence")}
        assert len([r for r in MONITOR.of_type(":Grant") if schema_urn in r.dependencies]) == 3
        assert all(schema_urn in r.dependencies for r in on_objects.values())
        for r in MONITOR.of_type(":DefaultPrivileges") + MONITOR.of_type(":GrantRole"):
            assert schema_urn not in r.dependencies
        by_urn = {r.urn: name for name, r in MONITOR.registered.items()}
        deps = {name: r.dependencies for name, r in MONITOR.registered.items()}
        before_schema = set().union(*(ancestors(by_urn[u], by_urn, deps) | {by_urn[u]} for u in prerequisite_urns))
        assert {by_urn[r.urn] for r in MONITOR.of_type(":DefaultPrivileges")} <= before_schema
        assert component.migrator_role == access.migrator.name
        assert component.role_names == {"migrator": access.migrator.name, "app": access.app.name,
                                         "readonly": access.readonly.name,
                                         "members": {m.name: m.member_of for m in access.members}}

    return pulumi.Output.all(schema.urn, prerequisites, settled(component, schema)).apply(check)


def test_a_stack_without_roles_gets_no_access_and_never_loads_the_postgresql_sdk() -> None:
    """That the whole dev program then registers no postgresql resource is test_program.py's to show."""
    assert parse_access(None, lambda key: pytest.fail(f"asked for {key}")) is None
    code = ("import sys\n"
            "from infra.settings import StackSettings, parse_database, parse_migrations\n"
            "from infra.access.stack_access import stack_access\n"
            "db = parse_database({'host': 'h', 'name': 'd', 'user': 'u'}, None)\n"
            "access = stack_access(StackSettings('dev', db, parse_migrations({})))\n"
            "assert (access.migrator_role, access.schema_prerequisites, access.after_schema([], None)) == (None, [], {})\n"
            "sys.exit('pulumi_postgresql' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_reading_role_settings_does_not_load_the_postgresql_sdk() -> None:
    code = "import sys, infra.access, infra.access.settings; sys.exit('pulumi_postgresql' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_component_refuses_an_sslmode_the_provider_cannot_use() -> None:
    access = parse_access(stack_roles("prod"), lambda key: "pw")
    db = DatabaseSettings(host="db.internal", port=5432, name="junkquote", user="junkquote_admin", sslmode="prefer")
    with pytest.raises(ConfigError, match="database.sslmode 'prefer' is not supported by the postgresql provider"):
        DatabaseAccess("access", access, db)


def test_component_refuses_to_manage_the_admin_user() -> None:
    access = parse_access({**stack_roles("prod"), "readonly": {"name": "junkquote_admin"}}, lambda key: "pw")
    with pytest.raises(ConfigError, match="declares 'junkquote_admin', which is database.user"):
        DatabaseAccess("access", access, DATABASE)


# -- parse_access --------------------------------------------------------------------------------------------------

ROLES = {"migrator": {"name": "jq_migrator"}, "app": {"name": "jq_app"}, "readonly": {"name": "jq_readonly"}}


def passwords(**extra: str) -> Any:
    known = {**PASSWORDS, **extra}
    return known.get


def test_parse_access_reads_roles_with_defaults() -> None:
    access = parse_access({**ROLES, "app": {"name": "jq_app", "connectionLimit": 40},
                           "members": [{"name": "kim", "memberOf": "readonly"}]},
                          passwords(**{"memberPasswords.kim": "pw-kim"}))
    assert access is not None
    assert (access.schema, access.app.connection_limit, access.migrator.connection_limit) == ("public", 40, -1)
    assert [(m.name, m.member_of, m.login, m.password) for m in access.members] == [("kim", "readonly", True, "pw-kim")]
    assert "pw-app" not in repr(access)


@pytest.mark.parametrize("key", ["migratorPassword", "appPassword", "readonlyPassword"])
def test_parse_access_names_the_missing_password_key(key: str) -> None:
    known = {k: v for k, v in PASSWORDS.items() if k != key}
    with pytest.raises(ConfigError, match=f"junkquote-db:{key} is required because roles.{key[:-8]} logs in; "
                                          f"set it with `pulumi config set --secret junkquote-db:{key} <password>`"):
        parse_access(ROLES, known.get)


def test_parse_access_names_the_missing_member_password() -> None:
    with pytest.raises(ConfigError, match=r"junkquote-db:memberPasswords\.kim is required because roles\.members\[0\] "
                                          r"'kim' logs in; set it with `pulumi config set --secret --path "
                                          r"'junkquote-db:memberPasswords\.kim' <password>`"):
        parse_access({**ROLES, "members": [{"name": "kim", "memberOf": "app"}]}, passwords())


def test_parse_access_needs_no_password_for_a_role_that_does_not_log_in() -> None:
    access = parse_access({**ROLES, "migrator": {"name": "jq_migrator", "login": False}},
                          lambda key: None if key == "migratorPassword" else "pw")
    assert access is not None and access.migrator.password is None and not access.migrator.login


@pytest.mark.parametrize("name", ["Junk", "app;drop", "a b", 'x"y', "public", "postgres", "pg_app", "1st", "", "a" * 64])
def test_parse_access_rejects_invalid_role_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"junkquote-db:roles\.app\.name '.*' is (not a valid role name|reserved)"):
        parse_access({**ROLES, "app": {"name": name}}, passwords())


@pytest.mark.parametrize("schema", ["Public", "pg_catalog", "information_schema", "app; drop", 7])
def test_parse_access_rejects_invalid_schema_names(schema: Any) -> None:
    with pytest.raises(ConfigError, match=r"junkquote-db:roles\.schema '.*' is (not a valid schema name|a system schema)"):
        parse_access({**ROLES, "schema": schema}, passwords())


@pytest.mark.parametrize(("roles", "key"), [
    ({**ROLES, "owner": {"name": "x"}}, "roles.owner"),
    ({**ROLES, "app": {"name": "jq_app", "superuser": True}}, "roles.app.superuser"),
    ({**ROLES, "members": [{"name": "kim", "memberOf": "app", "password": "x"}]}, r"roles.members\[0\].password"),
])
def test_parse_access_rejects_unknown_keys(roles: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"junkquote-db:{key} is not a known setting"):
        parse_access(roles, passwords(**{"memberPasswords.kim": "pw"}))


@pytest.mark.parametrize(("roles", "key", "problem"), [
    ({"app": {"name": "jq_app"}, "readonly": {"name": "jq_readonly"}}, "roles.migrator", "is required"),
    ({}, "roles", "must be an object with migrator, app and readonly"),
    ({**ROLES, "readonly": {"name": "jq_app"}}, "roles.readonly.name", "'jq_app' is already used by roles.app"),
    ({**ROLES, "members": [{"name": "kim", "memberOf": "admin"}]}, r"roles.members\[0\].memberOf", "'admin' must be one of"),
    ({**ROLES, "members": {"name": "kim"}}, "roles.members", "must be a list"),
    ({**ROLES, "app": {"name": "jq_app", "connectionLimit": "40"}}, "roles.app.connectionLimit", "'40' is not a connection limit"),
    ({**ROLES, "app": {"name": "jq_app", "login": "yes"}}, "roles.app.login", "'yes' must be true or false"),
])
def test_parse_access_explains_invalid_settings(roles: dict, key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"junkquote-db:{key} {problem}"):
        parse_access(roles, passwords(**{"memberPasswords.kim": "pw"}))


def test_secret_reader_refuses_a_plaintext_password() -> None:
    pulumi.runtime.set_all_config({f"{PROJECT}:appPassword": "plain"}, secret_keys=[])
    with pytest.raises(ConfigError, match="junkquote-db:appPassword must be a secret"):
        secret_reader(pulumi.Config(PROJECT))("appPassword")


def test_secret_reader_reads_one_member_of_the_secret_object() -> None:
    use_secrets({"memberPasswords": {"kim": "pw-kim"}})
    read = secret_reader(pulumi.Config(PROJECT))
    assert (read("memberPasswords.kim"), read("memberPasswords.bob"), read("appPassword")) == ("pw-kim", None, None)
