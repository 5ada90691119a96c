"""The bench's writers: on a fixed schedule, a write counts its latency from when it was due, and the writes due
but never started when the writers stop count too."""

from __future__ import annotations

import random
import time

import pytest

from bench.writer import Schedule, _one


def _fast_write(_conn: object, _rng: random.Random, _job_ids: list[str]) -> None:
    pass


def test_a_write_started_late_counts_its_lateness_in_its_latency() -> None:
    rows: list[tuple[float, float, bool, str, float]] = []
    due = time.monotonic() - 0.5  # its client was held up half a second by the write before it
    _one(None, "", random.Random(0), [], rows, _fast_write, due)  # type: ignore[arg-type]
    started, latency, ok, _, late = rows[0]
    assert started == due
    assert latency >= late >= 0.5 and ok


def test_a_write_flat_out_counts_from_when_it_started() -> None:
    rows: list[tuple[float, float, bool, str, float]] = []
    before = time.monotonic()
    _one(None, "", random.Random(0), [], rows, _fast_write)  # type: ignore[arg-type]
    after = time.monotonic()
    started, latency, ok, _, late = rows[0]
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
