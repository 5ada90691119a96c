"""How an engine error reaches a Pulumi user: its one-line message, with what to do as Pulumi commands, and
nothing around it.

The engine words what a user should do without naming a tool (infra/migrations/errors.py, `Actions`);
`PULUMI_ACTIONS` says each of those things as the command that does it here, and `pulumi_message` renders an
error with them. The program (its error scope, preflight's warnings, the PR report) and the providers use it.

The dynamic provider runs each call inside a gRPC handler. An exception that escapes the handler reaches the
engine as "Exception calling application: <message>", and gRPC logs its traceback. Aborting the call on the
handler's own context instead sends the message as it is, once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from infra.migrations.errors import Actions, MigrationError

PULUMI_ACTIONS = Actions(
    apply="run `pulumi up`",
    roll_back="run `pulumi destroy`",
    pause_setting="by junkquote-db:backfill.paused",
    unpause="set it to false and run `pulumi up`",
    throttle_setting="junkquote-db:backfill.targetWriteLatency",
    set_password="set the right one with `pulumi config set --secret junkquote-db:password`",
    apply_baseline="set junkquote-db:migrations.baseline to apply on an empty one",
    list_drift="`pulumi refresh`",
    warn_on_lint="set junkquote-db:migrations.lint to warn",
    settings="the stack config",
)


def pulumi_message(err: MigrationError) -> str:
    """The error's one line, saying what to do with Pulumi's commands and this project's config keys."""
    return err.message(PULUMI_ACTIONS)


@contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except MigrationError as err:
        message = pulumi_message(err)
        context = _handler_context()
        if context is not None:
            context.abort(grpc.StatusCode.UNKNOWN, message)  # raises; gRPC sends the message unchanged
        raise Exception(message) from None


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
