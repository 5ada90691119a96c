"""The backfill settings in the schema history's inputs (program side) and its run settings (provider side).

Progress reaches `pulumi up` as log lines: the engine reports every chunk, and ProgressLog prints one line at
most every few seconds (and at the end of each part) on the provider's stderr, which the Pulumi engine
shows as the resource's diagnostics.
"""

from __future__ import annotations

import time
from typing import Any

import pulumi

from infra.backfill_settings import BackfillSettings
from infra.migrations.backfill import BackfillProgress, BackfillRun
from infra.migrations.throttle import ThrottleSettings

LOG_EVERY_S = 5.0


def backfill_inputs(settings: BackfillSettings) -> dict[str, Any]:
    """The stack's throttle settings, for the batches that declare a backfill."""
    return {"targetWriteLatencyMs": settings.target_write_latency_ms, "minChunkRows": settings.min_chunk_rows,
            "maxChunkRows": settings.max_chunk_rows, "maxReplayLagMs": settings.max_replay_lag_ms}


def backfill_run(props: dict[str, Any]) -> BackfillRun:
    b = props.get("backfill") or {}
    defaults = ThrottleSettings()
    throttle = ThrottleSettings(
        target_write_latency_ms=int(b.get("targetWriteLatencyMs", defaults.target_write_latency_ms)),
        min_chunk_rows=int(b.get("minChunkRows", defaults.min_chunk_rows)),
        max_chunk_rows=int(b.get("maxChunkRows", defaults.max_chunk_rows)),
        max_replay_lag_ms=int(b.get("maxReplayLagMs", defaults.max_replay_lag_ms)))
    return BackfillRun(throttle=throttle, on_progress=ProgressLog())


class ProgressLog:
    """One log line per LOG_EVERY_S, plus one when a part finishes or starts waiting."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, event: BackfillProgress) -> None:
        now = time.monotonic()
        if event.phase in ("done", "waiting") or now - self._last >= LOG_EVERY_S:
            self._last = now
            pulumi.log.info(event.line())
