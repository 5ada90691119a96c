"""Whether a vacuum is working on the table a backfill part pages through (the one its chunks change most).

While a vacuum works on the part's table, the adaptive chunks keep to the budget (throttle.py): on a small server a
chunk and a vacuum of the same table take between them the CPU and the disk the application's writes need, and a
chunk beside one may run twice its usual time (one within the budget is then cancelled at its timeout, instead of
keeping its row locks for most of a second). GitLab's batched background migrations hold altogether while
autovacuum works on a table they change (their AutovacuumActiveOnTable health indicator); measured here, holding cost
about 4 % of the run's time and, in the run measured, bought nothing against the write-latency target
(bench/RESULTS.md, "The vacuum holds"; in a later run, fixed-size chunks beside a vacuum did make writes of 124 ms).

pg_stat_progress_vacuum names an autovacuum's table only to superusers and to roles with the privileges of
pg_read_all_stats (pg_monitor has them); a manual VACUUM's also to roles with the privileges of its user. To others
such a vacuum looks anonymous: it is not seen, and the chunks do not make way for it. An advisory signal: a view the
run knows withheld before it starts (sight.py, readable=False) is never asked; one refused during the run is told
once through on_refused, with the server's cause, and not asked again. Read on the backfill's monitor connection (its
login user).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from .sight import WatchedView

WORKING_ON = """
SELECT v.relid::regclass::text FROM pg_stat_progress_vacuum v
WHERE v.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND v.relid = ANY(%(oids)s::oid[])
LIMIT 1
"""
TABLES = "SELECT to_regclass(t)::oid FROM unnest(%(tables)s::text[]) AS t WHERE to_regclass(t) IS NOT NULL"


class VacuumWatch:
    """The vacuums working on the tables it is told to watch (none at first)."""

    def __init__(self, monitor: psycopg.Connection, *, readable: bool = True,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.monitor = monitor
        self._view = WatchedView(monitor, "pg_stat_progress_vacuum", what="autovacuum's work",
                                 unheeded="make way for a vacuum of their table", readable=readable,
                                 on_refused=on_refused)
        self._oids: list[int] = []

    def watch(self, tables: Sequence[str]) -> None:
        """From now on, these tables ("name" or "schema.name", as a part names its table; missing ones left out)."""
        names = [sql.Identifier(*t.split(".")).as_string(self.monitor) for t in tables]
        if not (names and self._view.readable):
            self._oids = []
            return
        self._oids = [r[0] for r in self.monitor.execute(TABLES, {"tables": names})]

    def working_on(self) -> str | None:
        """The watched table a vacuum is working on now (None: none seen)."""
        rows = self._view.fetchall(WORKING_ON, {"oids": self._oids}) if self._oids else None
        return str(rows[0][0]) if rows else None
