"""Reports a user-facing error of the program as one line, without a traceback or a second error line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pulumi

from .migrations.errors import MigrationError
from .providers.reporting import pulumi_message

# The exit code the Python language host reads as "the program already showed the user an actionable error".
EXITED_AFTER_SHOWING_ERROR = 32


@contextmanager
def reported_as_run_errors() -> Iterator[None]:
    """Engine and config errors are logged as one `error:` line, then the program stops."""
    try:
        yield
    except (MigrationError, pulumi.RunError) as err:
        pulumi.log.error(pulumi_message(err) if isinstance(err, MigrationError) else str(err))
        sys.exit(EXITED_AFTER_SHOWING_ERROR)
