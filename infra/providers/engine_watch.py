"""Whether the Pulumi engine that started this provider process is still there.

Pulumi starts a dynamic provider (through a shell shim, so the provider's parent is not the engine) with
the engine's gRPC address as its last argument. When the CLI alone is killed, the provider lives on as an
orphan that nobody will ever call again. The migration engine asks `engine_gone` before every step: once
the engine's address refuses connections, the run stops at that step boundary (finished steps recorded,
migration lock released), and `exit_when_orphaned` then ends the orphaned process.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from infra.migrations.errors import RunStopped
from infra.providers.reporting import pulumi_message

_ADDRESS = re.compile(r"^\[?(?P<host>[^\[\]]+)\]?:(?P<port>\d{1,5})$")
CONNECT_TIMEOUT_S = 5.0
EXIT_ORPHANED = 3
GONE = "the Pulumi engine that started this run is gone (its CLI was killed)"


def engine_address(argv: Sequence[str] | None = None) -> tuple[str, int] | None:
    """The engine's host:port from the provider's command line, or None when not run by the engine."""
    args = sys.argv if argv is None else argv
    match = _ADDRESS.match(args[-1]) if len(args) > 1 else None
    return (match["host"], int(match["port"])) if match else None


def engine_gone(address: tuple[str, int] | None = None) -> str | None:
    """A reason to stop once the engine's address refuses connections; None while it answers or is unknown.

    Only a refused connection counts: a slow answer on a loaded machine is not a dead engine."""
    address = address or engine_address()
    if address is None:
        return None
    try:
        socket.create_connection(address, timeout=CONNECT_TIMEOUT_S).close()
    except ConnectionRefusedError:
        return GONE
    except OSError:
        return None
    return None


@contextmanager
def exit_when_orphaned() -> Iterator[None]:
    """A run stopped because its engine is gone has unwound (lock released); the orphaned process then exits."""
    try:
        yield
    except RunStopped as err:
        try:
            print(f"junkquote-db: {pulumi_message(err)}; exiting", file=sys.stderr, flush=True)
        except OSError:
            pass
        os._exit(EXIT_ORPHANED)
