"""What the disk under the server's data directory was doing, sampled every EVERY_S while the scenarios run.

A write's COMMIT waits for its WAL to be flushed. When the server holds the writers' COMMITs for a hundred
milliseconds or more with no session waiting for a CPU, the question is the disk: were its writes queued (the
kernel writing back the pages the backfill dirtied, a checkpoint) or slow to complete, did the flushes themselves
take long? Linux counts each block device's completed writes and flushes and the time they took
(/proc/diskstats), and the page cache's dirty and under-writeback memory (/proc/meminfo). Sampled in memory and
written out with the scenario's other samples (--samples), after its writers have stopped. Elsewhere nothing is
sampled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .sampling import Periodic

DISKSTATS = Path("/proc/diskstats")
MEMINFO = Path("/proc/meminfo")
EVERY_S = 0.1


@dataclass(frozen=True)
class DiskReading:
    """Counters at one moment (cumulative, as the kernel keeps them), plus the page cache's state then."""

    at: float  # monotonic s
    writes: int
    write_ms: int  # time spent by all completed writes
    in_flight: int  # requests issued and not completed, now
    busy_ms: int  # time the device had at least one request in flight
    flushes: int  # 0 on kernels that do not count them
    flush_ms: int
    dirty_kb: int
    writeback_kb: int


@dataclass(frozen=True)
class DiskInterval:
    """What happened between two readings."""

    start: float
    end: float
    writes: int
    write_await_ms: float  # mean time a write completed in this interval took (0: none completed)
    flushes: int
    flush_await_ms: float
    in_flight: int  # at the interval's end
    busy: float  # share of the interval the device was busy
    dirty_kb: int
    writeback_kb: int


def device_of(path: Path) -> str | None:
    """The /proc/diskstats name of the block device holding `path` (a partition or a whole disk); None if not listed."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    try:
        for line in DISKSTATS.read_text().splitlines():
            fields = line.split()
            if len(fields) > 3 and (int(fields[0]), int(fields[1])) == (major, minor):
                return fields[2]
    except OSError:
        return None
    return None


def parse(diskstats: str, meminfo: str, device: str, at: float) -> DiskReading | None:
    """One reading of `device` from the two files' text; None when the device is not listed."""
    memory = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Dirty", "Writeback"):
            memory[name] = int(rest.split()[0])
    for line in diskstats.splitlines():
        fields = line.split()
        if len(fields) >= 14 and fields[2] == device:
            n = [int(f) for f in fields[3:]]
            flushes, flush_ms = (n[15], n[16]) if len(n) >= 17 else (0, 0)
            return DiskReading(at, n[4], n[7], n[8], n[9], flushes, flush_ms, memory.get("Dirty", 0),
                               memory.get("Writeback", 0))
    return None


def intervals(readings: Sequence[DiskReading], start: float, end: float) -> list[DiskInterval]:
    """The intervals between consecutive readings that overlap [start, end]."""
    out = []
    for a, b in zip(readings, readings[1:]):
        if b.at < start or a.at > end or b.at <= a.at:
            continue
        writes, flushes = b.writes - a.writes, b.flushes - a.flushes
        out.append(DiskInterval(a.at, b.at, writes, (b.write_ms - a.write_ms) / writes if writes else 0.0,
                                flushes, (b.flush_ms - a.flush_ms) / flushes if flushes else 0.0, b.in_flight,
                                min(1.0, (b.busy_ms - a.busy_ms) / ((b.at - a.at) * 1000)), b.dirty_kb, b.writeback_kb))
    return out


def during(spans: Sequence[DiskInterval], start: float, end: float) -> str:
    """What the disk did over [start, end] (the slowest write's), from the intervals overlapping it: the slowest mean
    write and flush, the most requests in flight, the most memory under writeback."""
    inside = [d for d in spans if d.end >= start and d.start <= end]
    if not inside:
        return "—"
    return (f"writes up to {max(d.write_await_ms for d in inside):.1f} ms, flushes up to "
            f"{max(d.flush_await_ms for d in inside):.1f} ms, {max(d.in_flight for d in inside)} in flight, "
            f"{max(d.writeback_kb for d in inside) / 1024:.1f} MB under writeback")


class DiskSampler(Periodic):
    """Started with `with`: a thread reads the device holding `path` every `every_s`, into `readings`. Reads
    nothing where the device is not found."""

    def __init__(self, path: Path, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(every_s, "bench-disk-sampler")
        self.device = device_of(path)
        self._clock = clock
        self.readings: list[DiskReading] = []

    def take(self) -> bool:
        if self.device is None:
            return False
        try:
            reading = parse(DISKSTATS.read_text(), MEMINFO.read_text(), self.device, self._clock())
        except OSError:
            return False
        if reading is not None:
            self.readings.append(reading)
        return reading is not None

    def over(self, start: float, end: float) -> list[DiskInterval]:
        return intervals(self.readings, start, end)
