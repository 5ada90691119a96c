"""The backfill report's CPU and pg_stat_io tables: a row for each scenario where they were counted, none without."""

from __future__ import annotations

from types import SimpleNamespace

from bench.backfill_report import _cpu_table, _io_table
from bench.cpu import BACKFILL, ROLES, CpuUse
from bench.pg_io import Written


def scenario(name: str, cpu: CpuUse | None, written: Written | None) -> SimpleNamespace:
    return SimpleNamespace(name=name, cpu=cpu, written=written)


def test_each_counted_scenario_has_a_row_and_the_cpus_busy_are_out_of_the_machines() -> None:
    counted = scenario("adaptive", CpuUse({**dict.fromkeys(ROLES, 0.0), BACKFILL: 0.96}, 1.5, cpus=2),
                       Written({"client backend": 3767.0}, {"checkpointer": 1838.0}, {"client backend": 14410.0}, 615.0))
    uncounted = scenario("naive", None, None)
    cpu, io = _cpu_table([counted, uncounted]), _io_table([counted, uncounted])
    assert cpu[3].endswith("| busy, of 2 |")
    assert cpu[5:] == ["| adaptive | 0.96 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 1.50 |"]
    assert io[5:] == ["| adaptive | over 615 s: extended 3,767 MB (client backend 3,767), relation blocks written "
                      "1,838 MB (checkpointer 1,838), WAL 14,410 MB (client backend 14,410) |"]


def test_a_run_where_nothing_was_counted_has_neither_table() -> None:
    assert _cpu_table([scenario("naive", None, None)]) == []
    assert _io_table([scenario("naive", None, None)]) == []
