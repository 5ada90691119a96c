"""Serializes migration runs on one database with a session-level advisory lock on its own connection.

Session-level (not transaction-level) so it spans every step of a batch, and it is released by the
server when the connection ends, so a killed run never leaves it behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import LockBusy
from .target import Target

# Two-key form of the advisory lock: (project, purpose). Any run of this engine on a database uses it.
LOCK_KEYS = (0x4A51_4442, 1)  # "JQDB", migrations
POLL_INTERVAL_S = 0.25


@contextmanager
def migration_lock(target: Target, wait_ms: int) -> Iterator[None]:
    with target.connect(autocommit=True) as conn:
        deadline = time.monotonic() + wait_ms / 1000
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise LockBusy(target.display(), _holder(conn), wait_ms / 1000)
            time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEYS)


def _holder(conn) -> str:
    row = conn.execute(
        """SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start, a.state
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2""",
        (LOCK_KEYS[0], LOCK_KEYS[1]),
    ).fetchone()
    if row is None:
        return "holder already gone"
    pid, app, user, addr, started, _state = row
    return f"pid {pid}, '{app}' as {user} from {addr or 'local socket'} since {started:%Y-%m-%d %H:%M:%S %Z}"
