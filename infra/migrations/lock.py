"""Serializes migration runs on one database with a session-level advisory lock on its own connection.

Session-level (not transaction-level) so it spans every step of a batch, and it is released by the
server when the connection ends, so a killed run never leaves it behind. Because losing that connection
also loses the lock, the runner verifies it before every step and before recording a batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from .errors import ConnectionLost, LockBusy
from .target import Target

# Two-key form of the advisory lock: (project, purpose). Any run of this engine on a database uses it.
LOCK_KEYS = (0x4A51_4442, 1)  # "JQDB", migrations
POLL_INTERVAL_S = 0.25
SERVER_KEEPALIVES = (("tcp_keepalives_idle", "30"), ("tcp_keepalives_interval", "10"), ("tcp_keepalives_count", "3"))


class MigrationLock:
    """The held lock. verify() fails if its connection (and so the lock) was lost."""

    def __init__(self, conn: psycopg.Connection, target: Target) -> None:
        self.conn, self.target = conn, target

    def verify(self) -> None:
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            raise ConnectionLost(self.target.display(), None,
                                 "the run (the migration lock's connection; another run may now hold the lock)") from None


@contextmanager
def migration_lock(target: Target, wait_ms: int) -> Iterator[MigrationLock]:
    with target.connect_kept() as conn:  # idle for the whole run
        for setting, value in SERVER_KEEPALIVES:  # the server drops the lock soon after this client vanishes
            conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
        deadline = time.monotonic() + wait_ms / 1000
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise LockBusy(target.display(), _holder(conn), wait_ms / 1000)
            time.sleep(POLL_INTERVAL_S)
        try:
            yield MigrationLock(conn, target)
        finally:
            _unlock(conn)


def _unlock(conn: psycopg.Connection) -> None:
    """Best effort: if the connection is gone, so is the lock (the server releases it with the session)."""
    if conn.closed or conn.broken:
        return
    try:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEYS)
    except psycopg.Error:
        pass


def _holder(conn: psycopg.Connection) -> str:
    row = conn.execute(
        """SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        (LOCK_KEYS[0], LOCK_KEYS[1]),
    ).fetchone()
    if row is None:
        return "holder already gone"
    pid, app, user, addr, started = row
    return f"pid {pid}, '{app}' as {user} from {addr or 'local socket'}, connected since {started:%Y-%m-%d %H:%M:%S %Z}"
