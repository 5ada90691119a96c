"""The backfill settings in the schema history's inputs (program side) and its run settings (provider side).

A running backfill asks, before every chunk, whether the stack's config file now says
`junkquote-db:backfill.paused: true` (`pulumi config set` writes that file at once, while `up` runs): then it stops
between two chunks, and the next `up` (with the setting back to false) continues.

Progress reaches `pulumi up` as log lines: the engine reports every chunk, and ProgressLog prints one line at
most every few seconds (and at the end of each part) on the provider's stderr, which the Pulumi engine
shows as the resource's diagnostics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import yaml

from infra.backfill_settings import BackfillSettings
from infra.migrations.backfill import BackfillProgress, BackfillRun
from infra.migrations.throttle import ThrottleSettings

LOG_EVERY_S = 5.0
PAUSE_CHECK_S = 1.0
BACKFILL_KEY = "junkquote-db:backfill"


def backfill_inputs(settings: BackfillSettings) -> dict[str, Any]:
    """The stack's throttle settings, for the batches that declare a backfill."""
    return {"targetWriteLatencyMs": settings.target_write_latency_ms, "minChunkRows": settings.min_chunk_rows,
            "maxChunkRows": settings.max_chunk_rows, "maxReplayLagMs": settings.max_replay_lag_ms}


def throttle_settings(b: dict[str, Any]) -> ThrottleSettings:
    """The throttle the provider runs with, from the inputs backfill_inputs wrote (the preview shows the same)."""
    defaults = ThrottleSettings()
    return ThrottleSettings(
        target_write_latency_ms=int(b.get("targetWriteLatencyMs", defaults.target_write_latency_ms)),
        min_chunk_rows=int(b.get("minChunkRows", defaults.min_chunk_rows)),
        max_chunk_rows=int(b.get("maxChunkRows", defaults.max_chunk_rows)),
        max_replay_lag_ms=int(b.get("maxReplayLagMs", defaults.max_replay_lag_ms)))


def backfill_run(props: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> BackfillRun:
    stack = str((props.get("settings") or {}).get("stack") or "")
    return BackfillRun(throttle=throttle_settings(props.get("backfill") or {}), on_progress=ProgressLog(),
                       on_note=pulumi.log.warn, paused=StackFilePause(stack, clock))


class StackFilePause:
    """Asked before every chunk; reads the stack file at most once every PAUSE_CHECK_S."""

    def __init__(self, stack: str, clock: Callable[[], float]) -> None:
        self.stack, self.clock = stack, clock
        self._checked_at: float | None = None
        self._paused = False

    def __call__(self) -> bool:
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= PAUSE_CHECK_S:
            self._checked_at, self._paused = now, paused_in_stack_file(self.stack)
        return self._paused


def paused_in_stack_file(stack: str, project_dir: Path | None = None) -> bool:
    """True when `Pulumi.<stack>.yaml` in the project directory (where the engine starts providers) sets
    `junkquote-db:backfill.paused: true`. Unreadable or absent: not paused (the program checked it before `up`)."""
    path = (project_dir or Path.cwd()) / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    config = document.get("config") if isinstance(document, dict) else None
    backfill = config.get(BACKFILL_KEY) if isinstance(config, dict) else None
    return isinstance(backfill, dict) and backfill.get("paused") is True


class ProgressLog:
    """One log line per LOG_EVERY_S, plus one when a part (or a table read before the checks) finishes, is skipped,
    stops paused, or starts waiting (for a replica; each poll of a wait is not a start, nor would a wait for
    something else be the same wait)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = pulumi.log.info) -> None:
        self.clock, self.log = clock, log
        self._last: float | None = None
        self._waiting_for: str | None = None

    def __call__(self, event: BackfillProgress) -> None:
        now = self.clock()
        starts_waiting = event.phase == "waiting" and event.waiting_for != self._waiting_for
        self._waiting_for = event.waiting_for if event.phase == "waiting" else None
        if (event.phase in ("done", "skipped", "paused") or starts_waiting or self._last is None
                or now - self._last >= LOG_EVERY_S):
            self._last = now
            self.log(event.line())
