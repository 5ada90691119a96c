"""Stacks that declare roles, modelled on Pulumi.staging.yaml, run with the real pulumi-postgresql plugin.

The stack connects as an admin that is what a managed PostgreSQL (RDS, Cloud SQL) gives a team: a login role with
CREATEROLE that owns the database, not a superuser. Role names are cluster-wide, so each stack gets its own prefix;
whatever a test leaves behind is dropped by the superuser afterwards.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql
from pulumi import automation as auto

from infra.access.settings import RoleNames
from infra.migrations.errors import AuthenticationFailed, TargetUnreachable
from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack

PLUGIN_SCRIPT = ROOT / "tools" / "postgresql-plugin" / "build.sh"
STAGING = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
LEFTOVER_ROLES = "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1"


def ensure_plugin(cli_dir: Path, env: dict[str, str]) -> str:
    """The installed plugin's directory (tools/postgresql-plugin/build.sh); raises CalledProcessError if there is none."""
    out = subprocess.run([str(PLUGIN_SCRIPT)], capture_output=True, text=True, check=True,
                         env={**env, "PATH": f"{cli_dir}:{env.get('PATH', '')}"})
    return out.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Secrets:
    admin: str
    app: str
    readonly: str
    member: str


def staging_like(prefix: str, target: Target, admin: str) -> tuple[dict[str, Any], RoleNames]:
    """Pulumi.staging.yaml's config with this test's server, admin and role names."""
    config = {key.removeprefix("junkquote-db:"): copy.deepcopy(value) for key, value in STAGING.items()}
    config["database"] = {"host": target.host, "port": target.port, "name": target.dbname, "user": admin, "sslmode": "disable"}
    roles = config["roles"]
    for kind in ("migrator", "app", "readonly"):
        roles[kind]["name"] = f"{prefix}_{kind}"
    roles["members"] = [{"name": f"{prefix}_kim", "memberOf": "readonly"}]
    return config, RoleNames(migrator=f"{prefix}_migrator", app=f"{prefix}_app", readonly=f"{prefix}_readonly")


@dataclass
class AccessStack:
    """A roles-declaring stack plus what the tests need to look at its database."""

    project: ProjectStack
    names: RoleNames
    prefix: str
    target: Target          # the test database, as the superuser
    admin: Target           # the test database, as the stack's admin
    secrets: Secrets

    def as_role(self, role: str, password: str) -> Target:
        return Target(self.target.host, self.target.port, self.target.dbname, role, password, sslmode="disable")

    def set_roles(self, roles: dict[str, Any]) -> None:
        """Rewrites junkquote-db:roles in the stack file, as a user editing it would."""
        path = self.project.workdir / f"Pulumi.{self.project.stack.name}.yaml"
        document = yaml.safe_load(path.read_text())
        document["config"]["junkquote-db:roles"] = roles
        path.write_text(yaml.safe_dump(document))

    def roles(self) -> dict[str, Any]:
        path = self.project.workdir / f"Pulumi.{self.project.stack.name}.yaml"
        return copy.deepcopy(yaml.safe_load(path.read_text())["config"]["junkquote-db:roles"])

    def set_member_password(self, name: str, password: str) -> None:
        self.project.stack.set_config(f"junkquote-db:memberPasswords.{name}", auto.ConfigValue(password, secret=True), path=True)

    def leftover_roles(self) -> list[str]:
        with self.target.connect(autocommit=True) as conn:
            return [r[0] for r in conn.execute(LEFTOVER_ROLES, (f"{self.prefix}\\_%",))]


def create_admin(superuser: Target, name: str, password: str) -> None:
    """A CREATEROLE login role that owns the test database (and so, on PostgreSQL 15+, its public schema)."""
    with superuser.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(superuser.dbname), sql.Identifier(name)))


def drop_roles(superuser: Target, names: list[str]) -> None:
    """Drops roles a failed test left behind, with what they own or were granted in the test database."""
    with superuser.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(superuser.dbname)))
        for name in names:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def new_prefix() -> str:
    return f"jq{uuid.uuid4().hex[:8]}"


def logs_in(target: Target) -> bool:
    """Whether the role logs in with that password (a wrong one, or a role without LOGIN, does not)."""
    try:
        with target.connect(autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except (AuthenticationFailed, TargetUnreachable):
        return False
