"""Whether a vacuum is working on the table a backfill part pages through (the one its chunks change most).

GitLab's batched background migrations hold while autovacuum works on a table they change (its
AutovacuumActiveOnTable health indicator). The adaptive chunks wait too: on a small server, a chunk and a vacuum of
the same tables take between them the CPU and the disk the application's writes need. The wait is bounded
(backfill.MAX_VACUUM_WAIT_S): a vacuum of a large table can run for hours, and the backfill then goes on beside it.

pg_stat_progress_vacuum names an autovacuum's table only to superusers and to roles with the privileges of
pg_read_all_stats (pg_monitor has them); a manual VACUUM's also to its own user. To others such a vacuum looks
anonymous: it is not seen, and the chunks do not wait for it. An advisory signal: where the view cannot be read,
no vacuum is seen either. Read on the backfill's monitor connection (its login user).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

WORKING_ON = """
SELECT v.pid, v.relid::regclass::text FROM pg_stat_progress_vacuum v
WHERE v.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND v.relid = ANY(%(oids)s::oid[])
LIMIT 1
"""
TABLES = "SELECT to_regclass(t)::oid FROM unnest(%(tables)s::text[]) AS t WHERE to_regclass(t) IS NOT NULL"


class VacuumWatch:
    """The vacuums working on the tables it is told to watch (none at first)."""

    def __init__(self, monitor: psycopg.Connection) -> None:
        self.monitor = monitor
        self._oids: list[int] = []

    def watch(self, tables: Sequence[str]) -> None:
        """From now on, these tables ("name" or "schema.name", as a backfill part names its table; missing ones left out)."""
        names = [sql.Identifier(*t.split(".")).as_string(self.monitor) for t in tables]
        self._oids = [r[0] for r in self.monitor.execute(TABLES, {"tables": names})] if names else []

    def working_on(self) -> tuple[int, str] | None:
        """The vacuum working on one of the tables watched now: its pid and the table (None: none seen)."""
        if not self._oids:
            return None
        try:
            row = self.monitor.execute(WORKING_ON, {"oids": self._oids}).fetchone()
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError:  # not readable here (a proxy or service without the view): no signal
            return None
        return (int(row[0]), str(row[1])) if row else None
