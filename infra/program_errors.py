"""Turns the engine's user-facing errors into one-line Pulumi program errors (no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pulumi

from .migrations.errors import MigrationError


@contextmanager
def reported_as_run_errors() -> Iterator[None]:
    try:
        yield
    except MigrationError as err:
        raise pulumi.RunError(str(err)) from None
