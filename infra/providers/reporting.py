"""How a provider reports an engine error to Pulumi: its one-line message, no Python traceback around it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from infra.migrations.errors import MigrationError


@contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except MigrationError as err:
        raise Exception(str(err)) from None
