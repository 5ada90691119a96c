from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.localdb import LocalServer, free_port
from infra.migrations.target import Target
from tests.conftest import unavailable
from tests.e2e.access_stack import AccessStack, Secrets, create_admin, drop_roles, ensure_plugin, new_prefix, staging_like
from tests.e2e.project import ProjectStack, cli_bin_dir, copy_project, database_config, new_stack
from tests.pg import create_database, drop_database


@pytest.fixture(scope="session")
def cli_dir() -> Path:
    try:
        return cli_bin_dir()
    except (subprocess.CalledProcessError, OSError) as err:
        unavailable(f"no Pulumi CLI for e2e tests: {getattr(err, 'stderr', '') or err}")
        raise


# The lifecycle tests are written against batch 1; tests of later batches name theirs (None copies every batch).
BATCH1 = ["0000_baseline", "0001_add_memory_entities"]


@pytest.fixture
def make_stack(tmp_path: Path, cli_dir: Path, db_target: Target) -> Iterator[Callable[..., ProjectStack]]:
    """make_stack(batches=None, migrations={...}, secrets={...}, database={...}) -> a throwaway stack."""
    made: list[ProjectStack] = []

    def make(*, batches: list[str] | None = BATCH1, migrations: dict[str, Any] | None = None,
             secrets: dict[str, str] | None = None, database: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> ProjectStack:
        workdir = copy_project(tmp_path / f"project{len(made)}", batches=batches)
        config: dict[str, Any] = {"database": database or database_config(db_target)}
        if migrations:
            config["migrations"] = migrations
        config.update(extra or {})
        stack = new_stack(workdir, tmp_path / "state", cli_dir, config, secrets)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.destroy_and_remove()


@pytest.fixture(scope="session")
def postgresql_plugin(cli_dir: Path) -> str:
    """The pulumi-postgresql plugin at the version the Python SDK asks for, installed or built from sources."""
    try:
        return ensure_plugin(cli_dir, dict(os.environ))
    except subprocess.CalledProcessError as err:
        unavailable(f"no pulumi-postgresql plugin for the e2e tests of roles: {err.stderr.strip()}")
        raise


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[Target]:
    """The machine's PostgreSQL 15 (PG15_BIN), a throwaway cluster for this session."""
    bin_dir = Path(os.environ.get("PG15_BIN", "/usr/lib/postgresql/15/bin"))
    if not (bin_dir / "postgres").exists():
        unavailable(f"PostgreSQL 15 not found in {bin_dir}")
    with tempfile.TemporaryDirectory(prefix="jq-pg15-") as tmp:
        server = LocalServer(Path(tmp) / "data", free_port(), bin_dir=bin_dir, throwaway=True)
        server.start()
        try:
            yield Target.from_dsn(server.dsn())
        finally:
            server.stop()


@pytest.fixture
def make_access_stack(tmp_path: Path, cli_dir: Path, postgresql_plugin: str, db_target: Target,
                      ) -> Iterator[Callable[..., AccessStack]]:
    """make_access_stack(server=None, batches=BATCH1, migrations=None) -> a stack modelled on staging, with roles,
    on a fresh database (the test database, or a new one on `server`), connecting as a CREATEROLE admin."""
    made: list[tuple[AccessStack, list[str], Target | None]] = []

    def make(*, server: Target | None = None, batches: list[str] | None = BATCH1,
             migrations: dict[str, Any] | None = None) -> AccessStack:
        target = create_database(server) if server is not None else db_target
        prefix = new_prefix()
        secrets = Secrets(admin=f"adm-{prefix}'\";", app=f"app-{prefix}", readonly=f"ro-{prefix}", member=f"kim-{prefix}")
        create_admin(target, f"{prefix}_admin", secrets.admin)
        config, names = staging_like(prefix, target, f"{prefix}_admin")
        config["migrations"].update(migrations or {})
        workdir = copy_project(tmp_path / f"access{len(made)}", batches=batches)
        project = new_stack(workdir, tmp_path / "state", cli_dir, config,
                            {"password": secrets.admin, "appPassword": secrets.app, "readonlyPassword": secrets.readonly})
        admin = Target(target.host, target.port, target.dbname, f"{prefix}_admin", secrets.admin, sslmode="disable")
        stack = AccessStack(project, names, prefix, target, admin, secrets)
        stack.set_member_password(f"{prefix}_kim", secrets.member)
        made.append((stack, [f"{prefix}_admin"], server))
        return stack

    yield make
    for stack, extra_roles, server in made:
        stack.project.destroy_and_remove()
        drop_roles(stack.target, [*stack.leftover_roles(), *extra_roles])
        if server is not None:
            drop_database(server, stack.target.dbname)
