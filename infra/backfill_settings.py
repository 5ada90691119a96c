"""Stack config of backfills and gates (read by settings.py): `junkquote-db:backfill` and `junkquote-db:gates`.

    junkquote-db:backfill:
      targetWriteLatency: 100ms   # the application's write latency the throttle protects
      minChunkRows: 100
      maxChunkRows: 20000
      maxReplayLag: 2s            # streaming replicas may fall this far behind
      paused: false               # true: a pending backfill batch is not started/continued (and later batches wait)
    junkquote-db:gates:
      appWritesCustomerId: false  # the application writes customer_id itself (opens 0003's gate)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_errors import ConfigError, refuse_unknown
from .durations import parse_duration_ms
from .migrations.throttle import ThrottleSettings

BACKFILL_KEYS = frozenset({"targetWriteLatency", "minChunkRows", "maxChunkRows", "maxReplayLag", "paused"})


_ENGINE = ThrottleSettings()  # the engine's defaults are the stack's defaults


@dataclass(frozen=True)
class BackfillSettings:
    target_write_latency_ms: int = _ENGINE.target_write_latency_ms
    min_chunk_rows: int = _ENGINE.min_chunk_rows
    max_chunk_rows: int = _ENGINE.max_chunk_rows
    max_replay_lag_ms: int = _ENGINE.max_replay_lag_ms
    paused: bool = False


def parse_backfill(obj: Mapping[str, Any] | None) -> BackfillSettings:
    obj = obj or {}
    refuse_unknown(obj, "backfill", BACKFILL_KEYS)
    lo = _rows(obj, "minChunkRows", _ENGINE.min_chunk_rows)
    hi = _rows(obj, "maxChunkRows", _ENGINE.max_chunk_rows)
    if lo > hi:
        raise ConfigError("backfill.minChunkRows", f"'{lo}' is larger than backfill.maxChunkRows ({hi})")
    paused = obj.get("paused", False)
    if not isinstance(paused, bool):
        raise ConfigError("backfill.paused", f"'{paused}' must be true or false")
    return BackfillSettings(_ms(obj, "targetWriteLatency", _ENGINE.target_write_latency_ms), lo, hi,
                            _ms(obj, "maxReplayLag", _ENGINE.max_replay_lag_ms), paused)


def parse_gates(obj: Mapping[str, Any] | None) -> frozenset[str]:
    """The names of the gates the stack declares open (a value of true)."""
    obj = obj or {}
    for key, value in obj.items():
        if not isinstance(value, bool):
            raise ConfigError(f"gates.{key}", f"'{value}' must be true or false")
    return frozenset(k for k, v in obj.items() if v)


def _rows(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ConfigError(f"backfill.{key}", f"'{value}' is not a whole number from 1 to 1000000")
    return value


def _ms(obj: Mapping[str, Any], key: str, default: int) -> int:
    ms = parse_duration_ms(obj.get(key, default))
    if ms is None or ms <= 0:
        raise ConfigError(f"backfill.{key}", f"'{obj.get(key)}' is not a duration like 100ms or 2s")
    return ms
