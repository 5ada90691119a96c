"""The database a run is aimed at, and how to connect to it with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

import psycopg

from .errors import AuthenticationFailed, TargetUnreachable

CONNECT_TIMEOUT_S = 10
# Notice a vanished peer in about a minute instead of the kernel's two hours (the migration lock's
# session, for one, must not outlive its run for long).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


@dataclass(frozen=True)
class Target:
    """Connection settings. The password never appears in repr, messages or logs."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    sslmode: str = "prefer"
    application_name: str = "junkquote-db migrations"

    def display(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def with_database(self, dbname: str) -> Target:
        return replace(self, dbname=dbname)

    @classmethod
    def from_dsn(cls, dsn: str) -> Target:
        """A target from a postgresql:// URL (used by tests and benchmarks)."""
        url = urlsplit(dsn)
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
            dbname=url.path.lstrip("/") or "postgres",
            user=unquote(url.username or "postgres"),
            password=unquote(url.password) if url.password else None,
        )

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """A new connection; connection failures become TargetUnreachable or AuthenticationFailed."""
        try:
            return psycopg.connect(
                host=self.host, port=self.port, dbname=self.dbname, user=self.user,
                password=self.password, sslmode=self.sslmode, application_name=self.application_name,
                connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit, **KEEPALIVES,
            )
        except psycopg.OperationalError as err:
            raise _connect_error(self, err) from None

    def connect_kept(self) -> psycopg.Connection:
        """An autocommit connection the server never ends for being idle (idle_session_timeout, PostgreSQL 14 and
        later): the engine's sessions wait idle by design, the migration lock's for a whole run, a watch's between
        chunks, the backfill's while a replica catches up."""
        conn = self.connect(autocommit=True)
        if conn.info.server_version >= 140000:
            conn.execute("SELECT set_config('idle_session_timeout', '0', false)")
        return conn


def _connect_error(target: Target, err: psycopg.OperationalError) -> Exception:
    text = str(err)
    if "password authentication failed" in text or "no password supplied" in text:
        return AuthenticationFailed(target.display(), target.user)
    reason = text.strip().splitlines()[-1] if text.strip() else type(err).__name__
    if target.password:
        reason = reason.replace(target.password, "***")
    for marker in ("FATAL:  ", "error: "):
        if marker in reason:
            reason = reason.split(marker, 1)[1]
    return TargetUnreachable(target.display(), reason.strip())
