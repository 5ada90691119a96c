"""The WAL segments a scenario starts with, the same for every scenario.

A server writes WAL into 16 MB segment files. At a checkpoint, the segments it no longer needs are renamed into
future ones (recycled) rather than removed, as many as min_wal_size and its recent WAL volume ask for. When the
WAL outruns the recycled ones, whoever needs the next segment creates it: 16 MB of zeros written and flushed, in
the commit path of whichever session crossed the boundary (IO:WalInitWrite and WalInitSync, 50 to 60 ms on the
bench's host). A freshly seeded server has few; a server that has run at this volume for a while has many. Left
alone, the first scenario after the seed created hundreds of segments and the next one few or none (bench/RESULTS.md),
which measures the order of the scenarios, not their throttles. So before each, the pool is filled to about the
same size: that of a server whose WAL reaches max_wal_size between checkpoints."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from infra.localdb import LocalServer

SEGMENT_BYTES = 16 * 1024 * 1024
MESSAGE_BYTES = 64 * 1024 * 1024  # one WAL record per call; well under the 1 GB limit of a value


def ready(server: LocalServer) -> int:
    """Segment files in pg_wal ahead of the one being written: what the WAL can grow into without creating any."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM pg_ls_waldir() "
            "WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0])


def created_by_sessions(server: LocalServer) -> int | None:
    """Segments client sessions have created so far (pg_stat_io's WAL rows, PostgreSQL 18 and later; None before)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        if conn.info.server_version < 180000:
            return None
        return int(conn.execute(
            "SELECT coalesce(sum(writes), 0) FROM pg_stat_io "
            "WHERE object = 'wal' AND context = 'init' AND backend_type = 'client backend'").fetchone()[0])


def fill(server: LocalServer) -> None:
    """Bring the segments ready to about max_wal_size's worth, what a server holds once its WAL has reached
    max_wal_size between checkpoints (as a 2M-lead backfill's does), when a tenth or more short: write that much
    WAL at once (non-transactional logical messages: no table, nothing for vacuum), then CHECKPOINT, which recycles
    what was written into future segments. Writing into ready segments creates none, so only outrunning them all
    grows the pool: the whole amount is written, not the shortfall. max_wal_size is lifted meanwhile, or a
    checkpoint it forces halfway (quick, with nothing else to write) would recycle early and the pool would stop at
    about half."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        mb = int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'max_wal_size'").fetchone()[0])
    segments = mb * 1024 * 1024 // SEGMENT_BYTES
    if ready(server) >= segments - segments // 10:
        return
    kept = _max_wal_size(server)
    _set_max_wal_size(server, "1TB")
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            for _ in range(-(-(segments + 1) * SEGMENT_BYTES // MESSAGE_BYTES)):
                conn.execute("SELECT pg_logical_emit_message(false, 'bench-wal-pool', repeat('x', %s))", (MESSAGE_BYTES,))
    finally:
        _set_max_wal_size(server, kept)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _max_wal_size(server: LocalServer) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return str(conn.execute("SELECT current_setting('max_wal_size')").fetchone()[0])


def _set_max_wal_size(server: LocalServer, value: str, timeout_s: float = 30.0) -> None:
    """ALTER SYSTEM and reload, then wait until a new session sees it. The reload is asynchronous: the postmaster
    re-reads the file and signals its children (the checkpointer among them) before it starts new sessions."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET max_wal_size = {}").format(sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + timeout_s
    while _max_wal_size(server) != value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"max_wal_size is not {value} {timeout_s:.0f} s after a reload")
        time.sleep(0.05)


def wait_replayed(server: LocalServer, replica: LocalServer, timeout_s: float = 900.0) -> None:
    """Return once the replica streams and has replayed the WAL written so far (the pool's included), then has
    finished a restartpoint, so a replica scenario's lag is its own, neither the catching up on what fill() wrote
    nor the replica's own recycling of it."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        upto = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while not conn.execute("SELECT count(*) > 0 AND bool_and(replay_lsn >= %s) FROM pg_stat_replication "
                               "WHERE state = 'streaming'", (upto,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica is not streaming, or has not replayed up to {upto}, after {timeout_s:.0f} s")
            time.sleep(0.2)
    with psycopg.connect(replica.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # on a standby: a restartpoint, now
