"""What the writers saw during a window of time."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .writer import NOT_STARTED, Sample


@dataclass(frozen=True)
class WindowStats:
    """Writer transactions that overlapped [start, end] (so a write stalled across the window counts). On a schedule,
    the writes due but not started when the writers stopped are among them (writes, percentiles, max), each with its
    wait so far: a lower bound of its latency."""

    seconds: float
    writes: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    late_max_ms: float = 0.0  # on a schedule: the latest any write that started did so after it was due
    not_started: int = 0  # on a schedule: writes due before the writers stopped that never began
    max_less_client_wait_ms: float = 0.0  # the largest latency less its client's own wait for a CPU (bench/writer.py)

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds if self.seconds > 0 else 0.0


def window_stats(samples: Sequence[Sample], start: float, end: float) -> WindowStats:
    inside = [s for s in samples if s.start <= end and s.end >= start]
    latencies = sorted(s.latency * 1000 for s in inside)
    failed = [s for s in inside if not s.ok]
    return WindowStats(
        seconds=end - start, writes=len(inside), failed=len(failed),
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0, errors=dict(Counter(s.error for s in failed)),
        late_max_ms=max((s.late * 1000 for s in inside if s.error != NOT_STARTED), default=0.0),
        not_started=sum(1 for s in inside if s.error == NOT_STARTED),
        max_less_client_wait_ms=max(((s.latency - s.client_cpu_wait) * 1000 for s in inside), default=0.0),
    )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
