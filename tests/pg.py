"""A real PostgreSQL server for the integration, e2e and benchmark tiers.

PG_TEST_DSN=postgresql://user:pw@host:port/db points the suite at an existing server (e.g. the machine's
PostgreSQL 15); otherwise a throwaway embedded PostgreSQL 18 is started in a temporary directory.
Every test gets a fresh database of its own.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra.localdb import LocalServer, free_port
from infra.migrations.target import Target


@contextmanager
def server_target() -> Iterator[Target]:
    """A target on the maintenance database of the test server (admin rights)."""
    dsn = os.environ.get("PG_TEST_DSN")
    if dsn:
        yield Target.from_dsn(dsn)
        return
    with tempfile.TemporaryDirectory(prefix="jq-pg-") as tmp:
        server = LocalServer(Path(tmp) / "data", free_port(), throwaway=True)
        server.start()
        try:
            yield Target.from_dsn(server.dsn())
        finally:
            server.stop()


def create_database(admin: Target, prefix: str = "t") -> Target:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin.with_database(name)


def drop_database(admin: Target, name: str) -> None:
    with admin.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def dsn_of(target: Target) -> str:
    """The target as a libpq connection string, for code that connects from a DSN (the bench's)."""
    return make_conninfo(host=target.host, port=target.port, dbname=target.dbname, user=target.user,
                         password=target.password)


def connect(target: Target) -> psycopg.Connection:
    return target.connect(autocommit=True)
