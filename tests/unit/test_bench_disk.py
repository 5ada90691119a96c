"""The bench's disk sampler: what the disk under the data directory did, from /proc/diskstats and /proc/meminfo."""

from __future__ import annotations

from bench.disk import DiskInterval, DiskReading, during, intervals, parse

MEMINFO = "MemTotal: 24000000 kB\nDirty:  16384 kB\nWriteback:  2048 kB\n"


def diskstats(writes: int, write_ms: int, in_flight: int, busy_ms: int, flushes: int, flush_ms: int) -> str:
    return (f" 253 0 zram0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"
            f" 254 0 vda 100 1 800 50 {writes} 7 9000 {write_ms} {in_flight} {busy_ms} 999 0 0 0 0 "
            f"{flushes} {flush_ms}\n")


def test_a_reading_takes_the_devices_write_and_flush_counters_and_the_page_caches_state() -> None:
    assert parse(diskstats(500, 120, 3, 4000, 80, 40), MEMINFO, "vda", at=1.0) == DiskReading(
        at=1.0, writes=500, write_ms=120, in_flight=3, busy_ms=4000, flushes=80, flush_ms=40, dirty_kb=16384,
        writeback_kb=2048)


def test_a_kernel_that_does_not_count_flushes_reads_none_and_an_unlisted_device_reads_nothing() -> None:
    older = " 254 0 vda 100 1 800 50 500 7 9000 120 3 4000 999\n"
    assert parse(older, MEMINFO, "vda", at=1.0).flushes == 0
    assert parse(older, MEMINFO, "sdb", at=1.0) is None


def test_each_interval_says_how_long_the_writes_and_flushes_completed_in_it_took_on_average() -> None:
    readings = [parse(diskstats(w, wms, q, busy, f, fms), MEMINFO, "vda", at=t) for t, w, wms, q, busy, f, fms in (
        (0.0, 100, 10, 0, 1000, 10, 5), (0.1, 110, 30, 4, 1050, 12, 305), (0.2, 110, 30, 0, 1150, 12, 305))]
    assert intervals(readings, 0.0, 0.2) == [
        DiskInterval(0.0, 0.1, writes=10, write_await_ms=2.0, flushes=2, flush_await_ms=150.0, in_flight=4, busy=0.5,
                     dirty_kb=16384, writeback_kb=2048),
        DiskInterval(0.1, 0.2, writes=0, write_await_ms=0.0, flushes=0, flush_await_ms=0.0, in_flight=0, busy=1.0,
                     dirty_kb=16384, writeback_kb=2048)]
    assert during(intervals(readings, 0.0, 0.2), 0.05, 0.06) == (
        "writes up to 2.0 ms, flushes up to 150.0 ms, 4 in flight, 2.0 MB under writeback")
    assert during([], 0.0, 1.0) == "—"
