"""The benchmark's own PostgreSQL server: a LocalServer in a temp dir, tuned for a 2-core/24 GiB machine."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from infra.localdb import LocalServer, free_port

# Server settings for every scenario. Durability stays ON while traffic is measured (fsync is cheap here
# and a production server has it); only seeding turns it off.
BENCH_SETTINGS = {
    "shared_buffers": "1GB",
    "effective_cache_size": "16GB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "max_connections": "40",
}
# The settings a report shows, read back from the server.
SHOWN_SETTINGS = ("shared_buffers", "max_wal_size", "min_wal_size", "checkpoint_timeout", "wal_compression",
                  "backend_flush_after", "synchronous_commit", "full_page_writes")
FAST_LOAD = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on."""

    cores: int
    ram_gib: float
    cpu_model: str
    postgres: str


@contextmanager
def bench_server(settings: Mapping[str, str] = BENCH_SETTINGS) -> Iterator[LocalServer]:
    """A tuned throwaway server on a free port; stopped and its data removed on exit, whatever happens."""
    with tempfile.TemporaryDirectory(prefix="jq-bench-") as tmp:
        server = LocalServer(Path(tmp) / "data", free_port())
        try:
            server.start()
            configure(server, dict(settings))
            server.stop()
            server.start()
            yield server
        finally:
            server.stop()


def configure(server: LocalServer, settings: dict[str, str], *, reload: bool = False) -> None:
    """ALTER SYSTEM each setting (restart-only ones take effect at the next start, the others on reload)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        if reload:
            conn.execute("SELECT pg_reload_conf()")


def make_durable(server: LocalServer) -> None:
    """Turn fsync back on after seeding and flush everything the seed wrote: the server's buffers (CHECKPOINT),
    then the kernel's page cache (sync). The seed wrote with fsync off, so the checkpoint does not fsync those
    files, and what the kernel still held was written back during the first scenario measured, whichever it was."""
    configure(server, DURABLE, reload=True)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def clone(server: LocalServer, template: str, name: str) -> str:
    """A fresh, identical copy of a template database (a file copy, not a replay of WAL), after a checkpoint and a
    sync: nothing of the copy is left for the kernel to write back while a scenario is measured."""
    drop(server, name)
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY")
                      .format(sql.Identifier(name), sql.Identifier(template)))
        admin.execute("CHECKPOINT")
    os.sync()
    return server.dsn(name)


def drop(server: LocalServer, *names: str) -> None:
    """Databases a scenario is done with (the next ones, and a replica's base backup, need the disk)."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def machine(server: LocalServer) -> Machine:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
    return Machine(cores=os.cpu_count() or 0, ram_gib=_ram_gib(), cpu_model=_cpu_model(), postgres=version)


def quarter_of_ram() -> str:
    """shared_buffers as PostgreSQL's documentation starts a dedicated server with: 25 % of its memory."""
    return f"{max(int(_ram_gib() * 1024 / 4), 128)}MB"


def settings_in_effect(server: LocalServer) -> str:
    """SHOWN_SETTINGS as the server runs them, e.g. "shared_buffers 6016MB, max_wal_size 4GB, ..."."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        values = conn.execute("SELECT array_agg(current_setting(n) ORDER BY i) FROM unnest(%s::text[]) "
                              "WITH ORDINALITY AS s(n, i)", (list(SHOWN_SETTINGS),)).fetchone()[0]
    return ", ".join(f"{n} {v}" for n, v in zip(SHOWN_SETTINGS, values))


# The host's page-cache writeback: how much dirty data the kernel lets build up before it writes it back, and how
# old it lets it get. Data PostgreSQL writes without flushing it itself (new relation pages when a table grows)
# stays dirty until then, and a large writeback at once queues every WAL fsync behind it. And whether the scheduler
# shares the CPUs between sessions first (autogroups): runs with it off had fewer moments when no client of the
# server got an answer for about 100 ms (RESULTS.md, "Writes over 100 ms and the clients' stalls").
HOST_SETTINGS = ("vm.dirty_background_bytes", "vm.dirty_background_ratio", "vm.dirty_expire_centisecs",
                 "vm.dirty_writeback_centisecs", "kernel.sched_autogroup_enabled")


def host_settings() -> str:
    """HOST_SETTINGS as the kernel has them, e.g. "vm.dirty_background_bytes 16777216, ..." (Linux only)."""
    values = []
    for name in HOST_SETTINGS:
        path = Path("/proc/sys") / name.replace(".", "/")
        values.append(f"{name} {path.read_text().strip() if path.exists() else 'unknown'}")
    return ", ".join(values)


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def checkpoints_requested(server: LocalServer) -> int:
    """Checkpoints the server started because the WAL reached max_wal_size (not on checkpoint_timeout) so far:
    pg_stat_checkpointer from PostgreSQL 17, pg_stat_bgwriter before."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        newer = conn.execute("SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL").fetchone()[0]
        query = ("SELECT num_requested FROM pg_stat_checkpointer" if newer
                 else "SELECT checkpoints_req FROM pg_stat_bgwriter")
        return int(conn.execute(query).fetchone()[0])
