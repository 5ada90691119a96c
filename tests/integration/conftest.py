from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from infra.migrations.target import Target
from tests.pg import connect


@pytest.fixture
def db(db_target: Target) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the fresh database."""
    with connect(db_target) as conn:
        yield conn


@pytest.fixture
def standby_gone(db_target: Target, db: psycopg.Connection) -> Iterator[Callable[[bool], None]]:
    """standby_gone(True): every durable commit on the test server waits for a synchronous standby that is not
    there (synchronous_standby_names names one nobody runs), as when a synchronous standby goes away;
    standby_gone(False): commits go through again (the waiting ones too). Always back to normal at the end.
    New sessions of the test database commit durably (synchronous_commit on), as a production server's do; the
    test server runs with it off for speed."""
    db.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(db_target.dbname)))

    def gone(on: bool) -> None:
        if on:
            db.execute("ALTER SYSTEM SET synchronous_standby_names = 'a_standby_that_is_gone'")
        else:
            db.execute("ALTER SYSTEM RESET synchronous_standby_names")
        db.execute("SELECT pg_reload_conf()")
    gone(False)  # in case a killed run left it on
    try:
        yield gone
    finally:
        gone(False)

