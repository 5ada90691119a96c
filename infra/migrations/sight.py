"""What the backfill's login user lets its throttle see of other sessions.

The throttle waits for autovacuum on the part's table (pg_stat_progress_vacuum, vacuum_watch.py) and for streaming
replicas that replay too far behind (pg_stat_replication, backfill.ReplayLag). Both views show those details only to
superusers and to roles with the privileges of pg_read_all_stats (pg_monitor has them): to any other user,
autovacuum's table and the replicas' positions are NULL. A service may also withhold SELECT on the views
themselves, or not have them. Either way the throttle sees nothing and waits for nothing there. Both are said before
the run (`pulumi preview`, the pull-request review) and as it starts (one warning in `pulumi up`); the watches
then do not ask. A refusal the catalog does not foretell (a proxy that rejects the query) is told once, with its
cause, when it happens, and the watch gives no signal from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# By oid: a server or service without one of the views reads as not readable, not as an error.
SIGHT = """SELECT current_user, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
                  coalesce(has_table_privilege(to_regclass('pg_catalog.pg_stat_progress_vacuum'), 'SELECT'), false),
                  coalesce(has_table_privilege(to_regclass('pg_catalog.pg_stat_replication'), 'SELECT'), false)"""


@dataclass(frozen=True)
class StatsSight:
    """Whether the login user sees the details of other sessions' statistics that the throttle reads: it has the
    privileges of pg_read_all_stats, and may read each view."""

    login_user: str
    all_stats: bool
    vacuum_view: bool = True
    replication_view: bool = True

    @property
    def blind_spot(self) -> str | None:
        """What the throttle cannot see, what it then does not wait for, and what to grant (None: it sees it all)."""
        hidden, unwaited = [], []
        if not (self.all_stats and self.vacuum_view):
            hidden.append("which table autovacuum is working on")
            unwaited.append("autovacuum")
        if not (self.all_stats and self.replication_view):
            hidden.append("how far streaming replicas have replayed")
            unwaited.append("a lagging replica")
        if not hidden:
            return None
        grants = [] if self.all_stats else ["pg_monitor (or pg_read_all_stats)"]
        grants += [f"SELECT on pg_catalog.{view}" for view, readable in (
            ("pg_stat_progress_vacuum", self.vacuum_view), ("pg_stat_replication", self.replication_view)) if not readable]
        return (f'the login user "{self.login_user}" cannot see {" nor ".join(hidden)}, so the chunks do not wait for '
                f'{" nor ".join(unwaited)}; grant it {" and ".join(grants)} to let them')


def stats_sight(conn: psycopg.Connection) -> StatsSight:
    """The sight of the connection's login user (read on a connection that has not SET ROLE)."""
    row = conn.execute(SIGHT).fetchone()
    return StatsSight(str(row[0]), *(bool(v) for v in row[1:])) if row else StatsSight("", False, False, False)
