"""The bench's host sampler: how much CPU time the hypervisor stole during a scenario, from /proc/stat."""

from __future__ import annotations

from bench.host import Steal, StealSampler, cpu_times, steal_over

PROC_STAT = """cpu  1000 10 300 5000 40 0 50 600 70 7
cpu0 500 5 150 2500 20 0 25 300 35 3
intr 12345
"""


def test_the_total_counts_every_state_up_to_steal_and_leaves_guest_time_in_user() -> None:
    assert cpu_times(PROC_STAT) == (1000 + 10 + 300 + 5000 + 40 + 0 + 50 + 600, 600)


def test_a_kernel_without_a_steal_column_reports_nothing() -> None:
    assert cpu_times("cpu  1000 10 300 5000 40 0 50\n") is None
    assert cpu_times("intr 1\n") is None


def test_the_steal_of_a_window_spans_the_readings_around_it() -> None:
    readings = [(0.0, 0, 0), (1.0, 100, 0), (2.0, 200, 50), (3.0, 300, 50), (4.0, 400, 50)]
    # From the reading at 1.0 to the one at 3.0: 200 jiffies, 50 stolen, all of them between 1.0 and 2.0.
    assert steal_over(readings, 1.5, 2.5) == Steal(mean=0.25, worst=0.5)


def test_a_window_without_readings_on_both_sides_has_no_steal() -> None:
    readings = [(1.0, 100, 0), (2.0, 200, 10)]
    assert steal_over(readings, 0.5, 1.5) is None
    assert steal_over(readings, 1.5, 2.5) is None
    assert steal_over([(1.0, 100, 0), (2.0, 100, 0)], 1.0, 2.0) is None  # no CPU time passed


def test_the_cell_gives_the_mean_then_the_worst_share() -> None:
    assert Steal(0.034, 0.41).cell() == "3% / 41%"


def test_the_sampler_reads_at_its_start_and_once_more_at_its_end() -> None:
    times = iter([(100, 0), (300, 20)])
    clock = iter([0.0, 2.0])
    # Its interval is longer than the test: the thread reads once, then waits until the exit stops it.
    with StealSampler(read=lambda: next(times), every_s=3600.0, clock=lambda: next(clock)) as sampler:
        pass
    assert sampler.samples == [(0.0, 100, 0), (2.0, 300, 20)]
    assert sampler.over(0.0, 2.0) == Steal(mean=0.1, worst=0.1)


def test_on_a_host_that_does_not_count_steal_the_sampler_stays_empty() -> None:
    with StealSampler(read=lambda: None, every_s=0.0) as sampler:
        pass
    assert sampler.samples == [] and sampler.over(0.0, 1.0) is None
