"""The one boundary where psycopg errors become the engine's errors: how a cause reads, and which failures
are operational (a lock, a timeout, a lost connection, a resource: try again) rather than a fault of the batch
or of the connecting user's privileges."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from .errors import ConnectionLost, DatabaseError, OperationalFailure
from .target import Target

# Failures that say nothing about the SQL: the statement may well succeed when tried again.
_OPERATIONAL = (
    pg_errors.LockNotAvailable,  # 55P03 lock_timeout
    pg_errors.QueryCanceled,  # 57014 statement_timeout
    pg_errors.SerializationFailure,  # 40001
    pg_errors.DeadlockDetected,  # 40P01
)


def cause(err: psycopg.Error) -> str:
    """The server's own words and the SQLSTATE: `relation "Nope" does not exist (SQLSTATE 42P01)`."""
    diag = err.diag
    text = (diag.message_primary or str(err)).strip()
    return f"{text} (SQLSTATE {diag.sqlstate})" if diag.sqlstate else text


def connection_lost(err: psycopg.Error) -> bool:
    """The connection itself failed (not a statement): client-side loss, terminated backend, server shutdown."""
    return err.sqlstate is None or isinstance(err, (pg_errors.AdminShutdown, pg_errors.CrashShutdown,
                                                    pg_errors.ConnectionException))


def operational(err: psycopg.Error) -> bool:
    """A lock or time limit, a serialization conflict, a lost connection, or the server short of a resource (class
    53: disk full, out of memory, too many connections, a limit such as temp_file_limit): the server's state stopped
    the statement, not its SQL. Another attempt may succeed once that state has passed (a time limit or
    temp_file_limit is met again by the same statement: the caller decides)."""
    return connection_lost(err) or isinstance(err, _OPERATIONAL) or (err.sqlstate or "").startswith("53")


@contextmanager
def database_errors(target: Target, during: str, batch: str | None = None) -> Iterator[None]:
    """psycopg errors that escape the engine's own handling become one of its errors, never a traceback."""
    try:
        yield
    except psycopg.Error as err:
        if connection_lost(err):
            raise ConnectionLost(target.display(), batch, during) from None
        where = f"{during} of batch '{batch}'" if batch else during
        if operational(err):
            raise OperationalFailure(target.display(), where, cause(err)) from None
        raise DatabaseError(target.display(), where, cause(err)) from None
