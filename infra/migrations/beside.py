"""A thread that watches the server beside the backfill, on a connection of its own (commit_watch.py, lock_watch.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg


def start_beside(name: str, connect: Callable[[], psycopg.Connection], prepare: Callable[[psycopg.Connection], None],
                 run: Callable[[psycopg.Connection], None]) -> tuple[psycopg.Connection, threading.Thread]:
    """A connection (autocommit, then `prepare`d) and a daemon thread running `run` on it, started; the connection is
    closed if either cannot be had. The thread owns the connection from then on (`run` closes it)."""
    conn = connect()
    try:
        conn.autocommit = True
        prepare(conn)
        thread = threading.Thread(target=run, args=(conn,), name=name, daemon=True)
        thread.start()
    except BaseException:
        conn.close()
        raise
    return conn, thread
