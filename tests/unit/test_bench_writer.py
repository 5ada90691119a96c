"""The bench's writers: a write on a fixed schedule counts its latency from when it was due."""

from __future__ import annotations

import random
import time

from bench.writer import _one


def _fast_write(_conn: object, _rng: random.Random, _job_ids: list[str]) -> None:
    pass


def test_a_write_started_late_counts_its_lateness_in_its_latency() -> None:
    rows: list[tuple[float, float, bool, str]] = []
    due = time.monotonic() - 0.5  # its client was held up half a second by the write before it
    _one(None, "", random.Random(0), [], rows, _fast_write, due)  # type: ignore[arg-type]
    started, latency, ok, _ = rows[0]
    assert started == due
    assert latency >= 0.5 and ok


def test_a_write_flat_out_counts_from_when_it_started() -> None:
    rows: list[tuple[float, float, bool, str]] = []
    before = time.monotonic()
    _one(None, "", random.Random(0), [], rows, _fast_write)  # type: ignore[arg-type]
    after = time.monotonic()
    started, latency, ok, _ = rows[0]
    assert before <= started and started + latency <= after and ok
