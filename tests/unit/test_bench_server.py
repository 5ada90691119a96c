"""The bench's host checks: the scheduler setting that makes the writers' clients wait for a CPU."""

from __future__ import annotations

from pathlib import Path

from bench.server import autogroup_warning


def test_autogroups_on_warn_with_the_sysctl_that_turns_them_off(tmp_path: Path) -> None:
    flag = tmp_path / "sched_autogroup_enabled"
    flag.write_text("1\n")
    warning = autogroup_warning(flag)
    assert warning is not None
    assert "sysctl -w kernel.sched_autogroup_enabled=0" in warning


def test_autogroups_off_warn_of_nothing(tmp_path: Path) -> None:
    flag = tmp_path / "sched_autogroup_enabled"
    flag.write_text("0\n")
    assert autogroup_warning(flag) is None


def test_a_kernel_without_autogroups_warns_of_nothing(tmp_path: Path) -> None:
    assert autogroup_warning(tmp_path / "absent") is None
