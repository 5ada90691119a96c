"""How long the adaptive chunks wait for a vacuum of their part's table: each vacuum at most so long."""

from __future__ import annotations

from infra.migrations.vacuum_watch import VacuumWait


def test_the_chunks_wait_for_a_vacuum_up_to_the_limit_then_go_on_beside_it() -> None:
    wait = VacuumWait(max_s=30)
    assert wait.holds(pid=101, now=1000.0)
    assert wait.holds(pid=101, now=1030.0)
    assert not wait.holds(pid=101, now=1030.5)
    assert not wait.holds(pid=101, now=1100.0)  # the same vacuum, still at work: not again


def test_a_new_vacuum_is_waited_for_afresh() -> None:
    wait = VacuumWait(max_s=30)
    wait.holds(pid=101, now=1000.0)
    assert not wait.holds(pid=101, now=1031.0)
    assert wait.holds(pid=202, now=1032.0)  # another worker's, on the table
    assert wait.holds(pid=202, now=1062.0)


def test_no_vacuum_at_work_is_no_wait_and_the_next_one_counts_from_when_it_is_seen() -> None:
    wait = VacuumWait(max_s=30)
    assert not wait.holds(pid=None, now=1000.0)
    wait.holds(pid=101, now=1000.0)
    assert not wait.holds(pid=None, now=1010.0)
    assert wait.holds(pid=101, now=1100.0)  # the same worker's next vacuum (pids are reused): seen anew


def test_a_new_part_forgets_the_vacuum_it_stopped_waiting_for() -> None:
    wait = VacuumWait(max_s=30)
    wait.holds(pid=101, now=1000.0)
    assert not wait.holds(pid=101, now=1031.0)
    wait.forget()
    assert wait.holds(pid=101, now=1032.0)  # one autovacuum worker goes from table to table
