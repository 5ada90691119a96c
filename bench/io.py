"""What the server wrote while a scenario ran, and which of its processes wrote it (pg_stat_io).

The page cache's dirty memory is what the kernel writes back in bursts, and a writer's COMMIT that lands behind
one waits. The server puts pages there three ways: a relation grows (its new blocks are written out at once,
"extends"), a dirty buffer is written out (by the checkpointer, the background writer, or a session that needed the
buffer: "writes"), and the WAL. pg_stat_io (PostgreSQL 16 and later) counts each by backend type; read before and
after each scenario, the difference tells how much each wrote while it ran. From PostgreSQL 18 it counts bytes and
the WAL too; before, blocks of op_bytes and no WAL. Sessions report their counts when idle, at most about a second
late, so a snapshot taken as a scenario ends may miss that last second. Elsewhere nothing is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psycopg

MB = 1024 * 1024
# Per backend type: bytes of relation blocks extended, of relation blocks written, of WAL written.
SNAPSHOT_18 = """SELECT backend_type, coalesce(sum(extend_bytes) FILTER (WHERE object <> 'wal'), 0),
                        coalesce(sum(write_bytes) FILTER (WHERE object <> 'wal'), 0),
                        coalesce(sum(write_bytes) FILTER (WHERE object = 'wal'), 0)
                 FROM pg_stat_io GROUP BY backend_type"""
SNAPSHOT_16 = """SELECT backend_type, coalesce(sum(extends * op_bytes), 0), coalesce(sum(writes * op_bytes), 0), 0
                 FROM pg_stat_io GROUP BY backend_type"""

Counts = Mapping[str, tuple[int, int, int]]  # backend type -> (extended, written, WAL) bytes


def snapshot(conn: psycopg.Connection) -> Counts | None:
    """pg_stat_io's totals now; None where the server has no pg_stat_io."""
    columns = {name for (name,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('pg_catalog.pg_stat_io') AND attnum > 0")}
    if not columns:
        return None
    query = SNAPSHOT_18 if "extend_bytes" in columns else SNAPSHOT_16
    return {kind: (int(e), int(w), int(wal)) for kind, e, w, wal in conn.execute(query)}


@dataclass(frozen=True)
class Written:
    """MB each backend type extended relations by, wrote relation blocks of, and wrote WAL of, over `seconds`."""

    extended: Mapping[str, float]
    written: Mapping[str, float]
    wal: Mapping[str, float]
    seconds: float

    def cell(self) -> str:
        """e.g. "extended 1,020 MB (client backend 990, autovacuum worker 30), relation blocks written 310 MB
        (checkpointer 300, ...), WAL 2,400 MB; 6.1 MB/s in all"."""
        def part(what: str, by: Mapping[str, float]) -> str:
            shown = ", ".join(f"{kind} {mb:,.0f}" for kind, mb in sorted(by.items(), key=lambda kv: -kv[1]) if mb >= 1)
            return f"{what} {sum(by.values()):,.0f} MB" + (f" ({shown})" if shown else "")
        total = sum(self.extended.values()) + sum(self.written.values()) + sum(self.wal.values())
        rate = f"; {total / self.seconds:,.1f} MB/s in all" if self.seconds > 0 else ""
        return (f"{part('extended', self.extended)}, {part('relation blocks written', self.written)}, "
                f"{part('WAL', self.wal)}{rate}")


def written_between(before: Counts | None, after: Counts | None, seconds: float) -> Written | None:
    """What each backend type wrote between two snapshots (a type first seen in `after` counts from 0)."""
    if before is None or after is None:
        return None

    def delta(i: int) -> dict[str, float]:
        out = {kind: (now[i] - before.get(kind, (0, 0, 0))[i]) / MB for kind, now in after.items()}
        return {kind: mb for kind, mb in out.items() if mb > 0}
    return Written(delta(0), delta(1), delta(2), seconds)
