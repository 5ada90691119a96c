"""The connection property bag of every dynamic resource, both directions: written by the program from the
stack's database settings, read back by the providers as the engine's Target."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.migrations.target import Target
from infra.settings import DatabaseSettings


def connection_inputs(db: DatabaseSettings) -> dict[str, Any]:
    """`target` for people (host:port/db), `connection` for the provider, `password` as a secret."""
    return {
        "target": db.target,
        "connection": {"host": db.host, "port": db.port, "dbname": db.name, "user": db.user, "sslmode": db.sslmode},
        "password": pulumi.Output.secret(db.password) if db.password else None,
    }


def target_from_inputs(props: dict[str, Any]) -> Target:
    conn = props["connection"]
    return Target(host=conn["host"], port=int(conn["port"]), dbname=conn["dbname"], user=conn["user"],
                  password=props.get("password") or None, sslmode=conn.get("sslmode", "prefer"))


def target_of(db: DatabaseSettings) -> Target:
    """The engine's Target for the stack's database, for what the program itself reads (preview, drift)."""
    return Target(host=db.host, port=db.port, dbname=db.name, user=db.user, password=db.password, sslmode=db.sslmode)
