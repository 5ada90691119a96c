"""What the backfill's login user lets its throttle see of other sessions.

The throttle makes way for autovacuum on the part's table (pg_stat_progress_vacuum, vacuum_watch.py: chunks keep to
the budget while it works) and waits for streaming replicas that replay too far behind (pg_stat_replication,
backfill.ReplayLag). Both views show those details only to
superusers and to roles with the privileges of pg_read_all_stats (pg_monitor has them): to any other user,
autovacuum's table and the replicas' positions are NULL. A service may also withhold SELECT on the views
themselves, or not have them. Either way the throttle sees nothing and heeds nothing there. Both are said before
the run (`pulumi preview`, the pull-request review) and as it starts (one warning in `pulumi up`); the watches
then do not ask. A refusal the catalog does not foretell (a proxy that rejects the query) is told once, with its
cause, when it happens, and the watch gives no signal from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from .database_errors import cause

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
        """What the throttle cannot see, what it then does not heed, and what to grant (None: it sees it all)."""
        hidden, unheeded = [], []
        if not (self.all_stats and self.vacuum_view):
            hidden.append("which table autovacuum is working on")
            unheeded.append("make way for autovacuum")
        if not (self.all_stats and self.replication_view):
            hidden.append("how far streaming replicas have replayed")
            unheeded.append("wait for a lagging replica")
        if not hidden:
            return None
        grants = [] if self.all_stats else ["pg_monitor (or pg_read_all_stats)"]
        grants += [f"SELECT on pg_catalog.{view}" for view, readable in (
            ("pg_stat_progress_vacuum", self.vacuum_view), ("pg_stat_replication", self.replication_view)) if not readable]
        return (f'the login user "{self.login_user}" cannot see {" nor ".join(hidden)}, so the chunks do not '
                f'{" nor ".join(unheeded)}; grant it {" and ".join(grants)} to let them')


def stats_sight(conn: psycopg.Connection) -> StatsSight:
    """The sight of the connection's login user (read on a connection that has not SET ROLE)."""
    user, *readable = conn.execute(SIGHT).fetchone()
    return StatsSight(str(user), *(bool(v) for v in readable))


class WatchedView:
    """A statistics view a watch reads as an advisory signal, on the backfill's monitor connection. Not asked when it is
    known withheld before the run (readable=False: the run's warning said so); a refusal the catalog did not foretell
    is told once through on_refused, with the server's cause, and the view is not asked again. A lost connection or a
    cancelled query still raises."""

    def __init__(self, monitor: psycopg.Connection, view: str, *, what: str, unheeded: str, readable: bool = True,
                 on_refused: Callable[[str], None] | None = None) -> None:
        assert monitor.autocommit, "a refused query must not leave the monitor's transaction failed"
        self.monitor, self.view, self.what, self.unheeded = monitor, view, what, unheeded
        self.readable = readable
        self._on_refused = on_refused

    def fetchall(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]] | None:
        """The query's rows; None when the view cannot be read (refused now, or before)."""
        if not self.readable:
            return None
        try:
            return self.monitor.execute(query, params).fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError as err:  # withheld (42501), missing, or refused by a proxy: no signal from now on
            self.readable = False
            if self._on_refused:
                self._on_refused(f"{self.what} could not be read ({cause(err)}), so the chunks do not "
                                 f"{self.unheeded} for the rest of this run; let the login user read "
                                 f"pg_catalog.{self.view} (GRANT SELECT, or a proxy that passes the query)")
            return None
