"""The connection part of a dynamic resource's inputs: written by the program, read back by the providers."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.migrations.target import Target


def connection_inputs(host: str, port: int, dbname: str, user: str, sslmode: str, password: str | None) -> dict[str, Any]:
    """`target` for people (host:port/db), `connection` for the provider, `password` as a secret."""
    return {
        "target": f"{host}:{port}/{dbname}",
        "connection": {"host": host, "port": port, "dbname": dbname, "user": user, "sslmode": sslmode},
        "password": pulumi.Output.secret(password) if password else None,
    }


def target_from_inputs(props: dict[str, Any]) -> Target:
    conn = props["connection"]
    return Target(host=conn["host"], port=int(conn["port"]), dbname=conn["dbname"], user=conn["user"],
                  password=props.get("password") or None, sslmode=conn.get("sslmode", "prefer"))
