"""What the backfill's login user lets its throttle see of other sessions.

The throttle waits for autovacuum on the part's table (pg_stat_progress_vacuum, vacuum_watch.py) and for streaming
replicas that replay too far behind (pg_stat_replication, backfill.ReplayLag). Both views show those details only to
superusers and to roles with the privileges of pg_read_all_stats (pg_monitor has them): to any other user,
autovacuum's table and the replicas' positions are NULL, so the throttle sees neither and waits for neither. This is
said before the run (`pulumi preview`, the pull-request review) and as it starts (one note in `pulumi up`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

SIGHT = "SELECT current_user, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"


@dataclass(frozen=True)
class StatsSight:
    """Whether the login user sees the details of other sessions' statistics that the throttle reads."""

    login_user: str
    all_stats: bool

    @property
    def blind_spot(self) -> str | None:
        """What the throttle cannot see, and what to grant (None: it sees what it needs)."""
        if self.all_stats:
            return None
        return (f'the login user "{self.login_user}" lacks the privileges of pg_read_all_stats, so the throttle cannot '
                "see which table autovacuum is working on nor how far streaming replicas have replayed, and its chunks "
                "wait for neither; grant it pg_monitor (or pg_read_all_stats) to let them")


def stats_sight(conn: psycopg.Connection) -> StatsSight:
    """The sight of the connection's login user (read on a connection that has not SET ROLE)."""
    row = conn.execute(SIGHT).fetchone()
    return StatsSight(str(row[0]), bool(row[1])) if row else StatsSight("", False)
