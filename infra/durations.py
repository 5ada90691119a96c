"""Parses human durations from stack config ("500ms", "30s", "5min", "1h") into milliseconds."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)\s*$")


def parse_duration_ms(text: str | int | float) -> int | None:
    """Milliseconds for a duration string, a bare number of milliseconds, or None if it does not parse."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return int(text) if text >= 0 else None
    match = _DURATION.match(text)
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS_MS[match.group(2)])
