from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from infra.migrations.target import Target
from tests.conftest import unavailable
from tests.pg import connect, create_database, drop_database, server_target


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Target]:
    try:
        with server_target() as target:
            yield target
    except (RuntimeError, OSError, psycopg.Error) as err:
        unavailable(f"no PostgreSQL server for integration tests: {err}")


@pytest.fixture
def db_target(pg_admin: Target) -> Iterator[Target]:
    """A fresh, empty database on the test server."""
    target = create_database(pg_admin)
    yield target
    drop_database(pg_admin, target.dbname)


@pytest.fixture
def db(db_target: Target) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the fresh database."""
    with connect(db_target) as conn:
        yield conn
