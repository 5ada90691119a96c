"""How a provider reports an engine error to Pulumi: its one-line message, and nothing around it.

The dynamic provider runs each call inside a gRPC handler. An exception that escapes the handler reaches the
engine as "Exception calling application: <message>", and gRPC logs its traceback. Aborting the call on the
handler's own context instead sends the message as it is, once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from infra.migrations.errors import MigrationError


@contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except MigrationError as err:
        context = _handler_context()
        if context is not None:
            context.abort(grpc.StatusCode.UNKNOWN, str(err))  # raises; gRPC sends the message unchanged
        raise Exception(str(err)) from None


def _handler_context() -> grpc.ServicerContext | None:
    """The gRPC context of the handler this call runs in (the dynamic provider's servicer passes it down
    as the `context` argument of Create, Update, Delete, Diff and Read), or None outside one."""
    frame = sys._getframe(2)
    while frame is not None:
        context = frame.f_locals.get("context")
        if isinstance(context, grpc.ServicerContext):
            return context
        frame = frame.f_back
    return None
