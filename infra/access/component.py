"""Roles and least-privilege grants as one ComponentResource, managed with pulumi-postgresql.

Known provider pitfalls this is built around:
- parallel GRANT/REVOKE on one database fails with "tuple concurrently updated" (pulumi-postgresql #126, #831):
  every Grant, DefaultPrivileges and GrantRole depends on the one created before it, so they run one at a time;
- a replaced Grant revokes what its replacement just granted (#233): grants are deleted before they are replaced;
- a table Grant covers only the tables that exist when it runs: DefaultPrivileges FOR ROLE migrator cover the tables,
  sequences and types a later batch creates, as long as batches run as the migrator (`SET ROLE`);
- a membership managed by a GrantRole on a role that is also a Role is read back into `Role.roles` by a refresh, and
  the next `up` revokes it (upstream's docs: "they will fight"): a managed role's memberships are its own `roles`,
  and GrantRole is used only for the admin, whose role this component does not manage.
pulumi_postgresql.Grant has no object type "type", so the app's USAGE on the "MessageRole" enum comes from a
DefaultPrivileges on types, which must exist before the batch that creates the type (see `schema_prerequisites`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_postgresql as postgresql

from infra.config_errors import ConfigError
from infra.settings import DatabaseSettings

from .settings import AccessSettings, RoleSettings

TYPE_TOKEN = "junkquote:access:DatabaseAccess"
CONNECT_TIMEOUT_S = 10
PROVIDER_SSL_MODES = ("disable", "require", "verify-ca", "verify-full")
APP_TABLE_PRIVILEGES = ("DELETE", "INSERT", "SELECT", "UPDATE")
APP_SEQUENCE_PRIVILEGES = ("SELECT", "USAGE")
READONLY_TABLE_PRIVILEGES = ("SELECT",)


def provider_sslmode(sslmode: str) -> str:
    """The sslmode for pulumi-postgresql, whose driver (Go lib/pq) has no 'prefer' or 'allow'."""
    if sslmode not in PROVIDER_SSL_MODES:
        raise ConfigError("database.sslmode", f"'{sslmode}' is not supported by the postgresql provider that manages "
                                              f"roles (it accepts {', '.join(PROVIDER_SSL_MODES)}); set require, or "
                                              "disable for a local server")
    return sslmode


def _check_admin_is_not_managed(access: AccessSettings, admin: str) -> None:
    for role in access.all_roles():
        if role.name == admin:
            raise ConfigError("roles", f"declares '{admin}', which is database.user (the admin that manages the roles); "
                                       "give the managed role another name")


class DatabaseAccess(pulumi.ComponentResource):
    """The migrator, app and readonly roles, their members, and their grants on one database.

    Created in two steps because the batches sit in between: the constructor makes the roles, CONNECT and schema
    grants, default privileges and memberships; the batches then run as `migrator_role` and depend on
    `schema_prerequisites`; `grant_on_objects(schema_resources)` finally grants on the tables and sequences that exist.
    Passing `schema_resources` to the constructor does both steps at once (when the batches do not run as the migrator).
    """

    provider: postgresql.Provider
    migrator: postgresql.Role
    app: postgresql.Role
    readonly: postgresql.Role
    members: dict[str, postgresql.Role]
    migrator_role: str
    role_names: dict[str, object]
    schema_prerequisites: list[pulumi.Resource]
    grants: list[pulumi.Resource]

    def __init__(self, name: str, access: AccessSettings, database: DatabaseSettings,
                 schema_resources: Sequence[pulumi.Resource] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        _check_admin_is_not_managed(access, database.user)
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._prefix, self._access, self._database = name, access, database
        self._last: pulumi.Resource | None = None
        self.grants = []
        self._objects_granted = False
        self.provider = self._make_provider()
        self.migrator = self._role("migrator", access.migrator)
        self.app = self._role("app", access.app)
        self.readonly = self._role("readonly", access.readonly)
        self.members = {m.name: self._member(m) for m in access.members}
        self.migrator_role = access.migrator.name
        self.role_names = {"migrator": access.migrator.name, "app": access.app.name, "readonly": access.readonly.name,
                           "members": {m.name: m.member_of for m in access.members}}
        # The admin joins the migrator so that it may `SET ROLE` to it and act for it without being a superuser.
        self._membership("admin-in-migrator", database.user, self.migrator)
        self._grant_database_and_schema()
        self._default_privileges()
        self.schema_prerequisites = [self.migrator, self._chain_end()]
        if schema_resources is not None:
            self.grant_on_objects(schema_resources)
        self.register_outputs({"roles": self.role_names})

    def grant_on_objects(self, schema_resources: Sequence[pulumi.Resource]) -> None:
        """Grants on the tables and sequences the batches created; they run after `schema_resources`."""
        if self._objects_granted:
            raise ValueError(f"grant_on_objects was already called for {self._prefix}")
        self._objects_granted = True
        after = list(schema_resources)
        self._grant("tables-app", self.app, "table", APP_TABLE_PRIVILEGES, after)
        self._grant("sequences-app", self.app, "sequence", APP_SEQUENCE_PRIVILEGES, after)
        self._grant("tables-readonly", self.readonly, "table", READONLY_TABLE_PRIVILEGES, after)

    def _make_provider(self) -> postgresql.Provider:
        db = self._database
        return postgresql.Provider(
            f"{self._prefix}-provider", host=db.host, port=db.port, database=db.name, username=db.user,
            password=pulumi.Output.secret(db.password) if db.password else None,
            sslmode=provider_sslmode(db.sslmode), superuser=False,
            connect_timeout=CONNECT_TIMEOUT_S, opts=pulumi.ResourceOptions(parent=self))

    def _role(self, key: str, role: RoleSettings, member_of: postgresql.Role | None = None) -> postgresql.Role:
        """A role and all its memberships: `roles` is authoritative, so a refresh reads back exactly what was declared
        and the next `up` revokes a membership granted by hand."""
        return postgresql.Role(
            f"{self._prefix}-role-{key}", name=role.name, login=role.login,
            password=pulumi.Output.secret(role.password) if role.password is not None else None,
            connection_limit=role.connection_limit, roles=[member_of.name] if member_of is not None else [],
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider))

    def _member(self, member: RoleSettings) -> postgresql.Role:
        of = {"migrator": self.migrator, "app": self.app, "readonly": self.readonly}[str(member.member_of)]
        return self._role(f"member-{member.name}", member, of)

    def _serialized(self, after: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        """Options for a grant: after the previous grant (one at a time), and deleted before it is replaced."""
        depends_on = [*([self._last] if self._last else []), *after]
        return pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=depends_on,
                                      delete_before_replace=True)

    def _chain(self, resource: pulumi.Resource) -> pulumi.Resource:
        self.grants.append(resource)
        self._last = resource
        return resource

    def _chain_end(self) -> pulumi.Resource:
        assert self._last is not None, "the chain starts with the admin's membership"
        return self._last

    def _grant(self, key: str, role: postgresql.Role, object_type: str, privileges: Sequence[str],
               after: Sequence[pulumi.Resource] = ()) -> None:
        schema = None if object_type == "database" else self._access.schema
        self._chain(postgresql.Grant(
            f"{self._prefix}-{key}", database=self._database.name, schema=schema, role=role.name,
            object_type=object_type, privileges=list(privileges), opts=self._serialized(after)))

    def _grant_database_and_schema(self) -> None:
        # The migrator may also create schemas: a batch may keep its own bookkeeping in one (0002's customer_backfill).
        self._grant("connect-migrator", self.migrator, "database", ("CONNECT", "CREATE"))
        for kind, role in (("app", self.app), ("readonly", self.readonly)):
            self._grant(f"connect-{kind}", role, "database", ("CONNECT",))
        self._grant("schema-migrator", self.migrator, "schema", ("CREATE", "USAGE"))
        self._grant("schema-app", self.app, "schema", ("USAGE",))
        self._grant("schema-readonly", self.readonly, "schema", ("USAGE",))

    def _default(self, key: str, role: postgresql.Role, object_type: str, privileges: Sequence[str]) -> None:
        self._chain(postgresql.DefaultPrivileges(
            f"{self._prefix}-defaults-{key}", database=self._database.name, schema=self._access.schema,
            owner=self.migrator.name, role=role.name, object_type=object_type, privileges=list(privileges),
            opts=self._serialized()))

    def _default_privileges(self) -> None:
        self._default("tables-app", self.app, "table", APP_TABLE_PRIVILEGES)
        self._default("sequences-app", self.app, "sequence", APP_SEQUENCE_PRIVILEGES)
        self._default("types-app", self.app, "type", ("USAGE",))
        self._default("tables-readonly", self.readonly, "table", READONLY_TABLE_PRIVILEGES)

    def _membership(self, key: str, member: pulumi.Input[str], role: postgresql.Role) -> None:
        """A membership of a role this component does not manage (the admin); the managed roles' own memberships
        are their `roles`. On PostgreSQL 16+ a CREATEROLE admin already holds ADMIN OPTION (without SET) on every
        role it creates; the provider reads that back as `withAdminOption`, which must not replace the grant."""
        opts = pulumi.ResourceOptions.merge(self._serialized(), pulumi.ResourceOptions(ignore_changes=["withAdminOption"]))
        self._chain(postgresql.GrantRole(f"{self._prefix}-{key}", role=member, grant_role=role.name, opts=opts))
