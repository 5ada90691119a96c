"""The share of the host's CPU time the hypervisor gave to others (steal), sampled while a scenario runs.

On a virtual machine, time stolen by other guests delays every process alike: the writers' clients, their server
sessions and the backfill's. It shows in the writers' latencies like a backfill that hogs the CPU, and nothing in
the database tells them apart. So each scenario reports how much of the CPU was stolen during it, over the whole
window and in its worst sample: a scenario measured while the host was stolen from is not comparable with one that
was not. Linux's /proc/stat counts it; elsewhere nothing is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .sampling import Periodic

PROC_STAT = Path("/proc/stat")
EVERY_S = 0.5
STEAL = 7  # the 8th number of /proc/stat's "cpu" line (after user nice system idle iowait irq softirq)


def cpu_times(text: str) -> tuple[int, int] | None:
    """(total, stolen) jiffies of all CPUs from /proc/stat's text; None when it has no steal column (or no cpu
    line). guest and guest_nice are already counted in user and nice, so they are left out of the total."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            numbers = [int(f) for f in fields[1:]]
            if len(numbers) <= STEAL:
                return None
            return sum(numbers[:STEAL + 1]), numbers[STEAL]
    return None


def read_proc_stat() -> tuple[int, int] | None:
    try:
        return cpu_times(PROC_STAT.read_text())
    except (OSError, ValueError):  # no /proc/stat, or one this parser does not know: nothing is reported
        return None


@dataclass(frozen=True)
class Steal:
    """The share of this machine's CPU time (idle included) stolen over a window (0 to 1), and in the worst interval
    between two readings that overlaps it (about EVERY_S long)."""

    mean: float
    worst: float

    def cell(self) -> str:
        return f"{self.mean:.0%} / {self.worst:.0%}"


def steal_over(samples: Sequence[tuple[float, int, int]], start: float, end: float) -> Steal | None:
    """From (when, total, stolen) readings in time order: the share stolen between the last reading at or before
    `start` and the first at or after `end`, and the worst share between two readings in that span. None without
    two readings around the window, or when no CPU time passed."""
    first = max((i for i, s in enumerate(samples) if s[0] <= start), default=None)
    last = min((i for i, s in enumerate(samples) if s[0] >= end), default=None)
    if first is None or last is None or last <= first:
        return None
    span = samples[first:last + 1]
    total = span[-1][1] - span[0][1]
    if total <= 0:
        return None
    shares = [(b[2] - a[2]) / (b[1] - a[1]) for a, b in zip(span, span[1:]) if b[1] > a[1]]
    return Steal((span[-1][2] - span[0][2]) / total, max(shares, default=0.0))


class StealSampler(Periodic):
    """Started with `with`: a thread reads the CPU times every `every_s`; over(start, end) tells the steal of a
    window within its life. Reads nothing where the host does not count steal."""

    def __init__(self, read: Callable[[], tuple[int, int] | None] = read_proc_stat, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(every_s, "bench-steal-sampler")
        self._read, self._clock = read, clock
        self.samples: list[tuple[float, int, int]] = []

    def take(self) -> bool:
        times = self._read()
        if times is None:
            return False
        self.samples.append((self._clock(), *times))
        return True

    def over(self, start: float, end: float) -> Steal | None:
        return steal_over(self.samples, start, end)

    def finish(self) -> None:
        self.take()  # a reading at the end, so a window that ends now has one after it
