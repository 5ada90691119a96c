"""The bench's writers: on a fixed schedule, a write counts its latency from when it was due, and the writes due
but never started when the writers stop count too."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from bench.writer import Row, RunQueueWait, Schedule, _one


def _fast_write(_conn: object, _rng: random.Random, _job_ids: list[str]) -> None:
    pass


class _Session:
    """A client's session that only reports run-queue waits (no connection: the writes here need none)."""

    conn = None

    def __init__(self, waited: tuple[float, float] = (0.0, 0.0)) -> None:
        self._waited = waited

    def waited(self) -> tuple[float, float]:
        return self._waited

    def reopen_if_broken(self) -> None:
        pass


def test_a_write_started_late_counts_its_lateness_in_its_latency() -> None:
    rows: list[Row] = []
    due = time.monotonic() - 0.5  # its client was held up half a second by the write before it
    _one(_Session(), random.Random(0), [], rows, _fast_write, due)  # type: ignore[arg-type]
    started, latency, ok, _, late, _, _ = rows[0]
    assert started == due
    assert latency >= late >= 0.5 and ok


def test_a_write_flat_out_counts_from_when_it_started() -> None:
    rows: list[Row] = []
    before = time.monotonic()
    _one(_Session(), random.Random(0), [], rows, _fast_write)  # type: ignore[arg-type]
    after = time.monotonic()
    started, latency, ok, _, late, _, _ = rows[0]
    assert before <= started and started + latency <= after and ok and late == 0


def test_a_schedule_keeps_its_times_whatever_happens_between_them() -> None:
    plan = Schedule(first=10.0, interval=0.008)
    assert [plan.take() for _ in range(3)] == pytest.approx([10.0, 10.008, 10.016])
    assert plan.due == pytest.approx(10.024)  # due when it was going to be, however late the ones before ran


def test_the_writes_due_before_the_stop_and_never_started_are_the_missed_ones() -> None:
    plan = Schedule(first=10.0, interval=0.25)
    plan.take()  # 10.0 ran; its client then stalled until the writers stopped at 11.1
    assert plan.missed(11.1) == [10.25, 10.5, 10.75, 11.0]
    assert plan.missed(11.1) == []  # each counted once
    assert Schedule(first=10.0, interval=0.25).missed(9.0) == []


def test_a_write_carries_the_run_queue_waits_of_its_client_and_server_session_since_the_write_before() -> None:
    rows: list[Row] = []
    _one(_Session(waited=(0.04, 0.01)), random.Random(0), [], rows, _fast_write)  # type: ignore[arg-type]
    assert rows[0][5:] == (0.04, 0.01)


def test_a_process_kept_off_its_cpu_by_another_accumulates_run_queue_wait() -> None:
    cpu = min(os.sched_getaffinity(0))
    mine = os.sched_getaffinity(0)
    rival = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}}); print(flush=True)\n"
                              "while True: pass"], stdout=subprocess.PIPE)
    try:
        os.sched_setaffinity(0, {cpu})
        rival.stdout.readline()  # it spins on this CPU from here on
        waited = RunQueueWait()
        before = waited()
        spin_until = time.thread_time() + 0.3  # this much CPU of its own, sharing the CPU with the rival meanwhile
        while time.thread_time() < spin_until:
            pass
        assert waited() > before
    finally:
        os.sched_setaffinity(0, mine)
        rival.kill()
        rival.wait()


def test_a_process_that_cannot_be_read_has_no_run_queue_wait_and_one_gone_keeps_its_last_reading() -> None:
    assert RunQueueWait("none")() == 0.0
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    waited = RunQueueWait(child.pid)
    last = waited()
    child.stdin.close()  # it ends
    child.wait()
    assert waited() == last  # so a difference of two readings is never negative
