"""The run-settings property bag of a Migration, both directions: written by the program from the stack's
migration settings, read back by the provider as the engine's RunSettings. A key added later reads with the
engine's own default, so state written by an older version still parses (README, "Upgrading the provider")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from infra.migrations.backfill import BackfillRun
from infra.migrations.runner import RunSettings
from infra.providers.backfill_props import backfill_inputs, throttle_settings
from infra.settings import StackSettings

# RunSettings field -> its key in the bag.
_KEYS = {"stack": "stack", "lock_timeout_ms": "lockTimeoutMs", "statement_timeout_ms": "statementTimeoutMs",
         "lock_retries": "lockRetries", "lock_wait_ms": "lockWaitMs", "role": "role"}
_DEFAULTS = {f.name: f.default for f in fields(RunSettings) if f.name in _KEYS}


def run_settings(settings: StackSettings, role: str | None) -> RunSettings:
    """How the stack's batches run, as the engine takes it (the backfill's throttle as the provider reads it back)."""
    m = settings.migrations
    return RunSettings(stack=settings.stack, lock_timeout_ms=m.lock_timeout_ms, statement_timeout_ms=m.statement_timeout_ms,
                       lock_retries=m.lock_retries, lock_wait_ms=m.lock_wait_ms, role=role,
                       backfill=BackfillRun(throttle=throttle_settings(backfill_inputs(settings.backfill))))


def run_inputs(run: RunSettings) -> dict[str, Any]:
    return {key: getattr(run, name) for name, key in _KEYS.items()}


def run_from_inputs(bag: dict[str, Any], *, backfill: BackfillRun,
                    stop_reason: Callable[[], str | None] | None) -> RunSettings:
    values = {name: bag.get(key, _DEFAULTS[name]) for name, key in _KEYS.items()}
    return RunSettings(
        stack=str(values["stack"]), lock_timeout_ms=int(values["lock_timeout_ms"]),
        statement_timeout_ms=int(values["statement_timeout_ms"]), lock_retries=int(values["lock_retries"]),
        lock_wait_ms=int(values["lock_wait_ms"]), role=values["role"] or None, backfill=backfill,
        stop_reason=stop_reason)
