from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from infra.migrations.target import Target
from tests.pg import connect


@pytest.fixture
def db(db_target: Target) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the fresh database."""
    with connect(db_target) as conn:
        yield conn
