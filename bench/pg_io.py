"""What the server wrote while a scenario ran, and which of its processes wrote it (pg_stat_io).

The page cache's dirty memory is what the kernel writes back in bursts, and a writer's COMMIT that lands behind
one waits. The server puts pages there three ways: a relation grows (pg_stat_io's "extends": up to 8 blocks at once
are written out as zeros; more are allocated with posix_fallocate, which writes nothing), a dirty buffer is written
out (by the checkpointer, the background writer, or a session that needed the buffer: "writes"), and the WAL (whose
commits flush it at once). pg_stat_io (PostgreSQL 16 and later) counts each by backend type; read as a scenario
begins and again after its tail, the difference tells what each wrote meanwhile. From PostgreSQL 18 it counts
bytes and the WAL too (the WAL written, not the new segments' zeros: bench/wal.py counts those); before, blocks of
op_bytes and no WAL. A session reports its counts at a transaction's end at most once a second (an idle one within
about 10 s, a closing one as it closes), and the checkpointer as it writes: a window's figures may miss its last
moments. Elsewhere nothing is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psycopg

MB = 1024 * 1024
# Per backend type: bytes of relation blocks extended, of relation blocks written, of WAL written (not initialized).
SNAPSHOT_18 = """SELECT backend_type, coalesce(sum(extend_bytes) FILTER (WHERE object <> 'wal'), 0),
                        coalesce(sum(write_bytes) FILTER (WHERE object <> 'wal'), 0),
                        coalesce(sum(write_bytes) FILTER (WHERE object = 'wal' AND context = 'normal'), 0)
                 FROM pg_stat_io GROUP BY backend_type"""
SNAPSHOT_16 = """SELECT backend_type, coalesce(sum(extends * op_bytes), 0), coalesce(sum(writes * op_bytes), 0), NULL
                 FROM pg_stat_io GROUP BY backend_type"""

Counts = Mapping[str, tuple[int, int, int | None]]  # backend type -> (extended, written, WAL or None) bytes


def snapshot(conn: psycopg.Connection) -> Counts | None:
    """pg_stat_io's totals now; None where the server has no pg_stat_io."""
    version = conn.info.server_version
    if version < 160000:
        return None
    query = SNAPSHOT_18 if version >= 180000 else SNAPSHOT_16
    return {kind: (int(e), int(w), None if wal is None else int(wal)) for kind, e, w, wal in conn.execute(query)}


@dataclass(frozen=True)
class Written:
    """MB each backend type extended relations by, wrote relation blocks of, and wrote WAL of (None: not counted,
    before PostgreSQL 18), over `seconds`."""

    extended: Mapping[str, float]
    written: Mapping[str, float]
    wal: Mapping[str, float] | None
    seconds: float

    def cell(self) -> str:
        """e.g. "over 612 s: extended 1,020 MB (client backend 990, autovacuum worker 30), relation blocks written
        310 MB (checkpointer 300, ...), WAL 2,400 MB (client backend 2,390, ...)"."""
        def part(what: str, by: Mapping[str, float]) -> str:
            shown = ", ".join(f"{kind} {mb:,.0f}" for kind, mb in sorted(by.items(), key=lambda kv: -kv[1]) if mb >= 1)
            return f"{what} {sum(by.values()):,.0f} MB" + (f" ({shown})" if shown else "")
        wal = "" if self.wal is None else f", {part('WAL', self.wal)}"
        return (f"over {self.seconds:.0f} s: {part('extended', self.extended)}, "
                f"{part('relation blocks written', self.written)}{wal}")


def written_between(before: Counts | None, after: Counts | None, seconds: float) -> Written | None:
    """What each backend type wrote between two snapshots (a type first seen in `after` counts from 0)."""
    if before is None or after is None:
        return None

    def delta(i: int) -> dict[str, float]:
        out = {kind: ((now[i] or 0) - (before.get(kind) or (0, 0, 0))[i]) / MB for kind, now in after.items()}
        return {kind: mb for kind, mb in out.items() if mb > 0}
    counts_wal = all(now[2] is not None for now in after.values())
    return Written(delta(0), delta(1), delta(2) if counts_wal else None, seconds)
