"""The bench's account of what the server wrote during a scenario, from two pg_stat_io snapshots."""

from __future__ import annotations

from bench.pg_io import MB, written_between


def test_what_each_backend_type_wrote_is_the_difference_between_the_snapshots_in_mb() -> None:
    before = {"client backend": (10 * MB, 0, 50 * MB), "checkpointer": (0, 100 * MB, 0)}
    after = {"client backend": (410 * MB, 2 * MB, 650 * MB), "checkpointer": (0, 300 * MB, 0),
             "autovacuum worker": (0, 5 * MB, 1 * MB)}
    written = written_between(before, after, seconds=100.0)
    assert written is not None
    assert written.extended == {"client backend": 400.0}
    assert written.written == {"client backend": 2.0, "checkpointer": 200.0, "autovacuum worker": 5.0}
    assert written.wal == {"client backend": 600.0, "autovacuum worker": 1.0}
    assert written.cell() == ("over 100 s: extended 400 MB (client backend 400), relation blocks written 207 MB "
                              "(checkpointer 200, autovacuum worker 5, client backend 2), WAL 601 MB (client backend "
                              "600, autovacuum worker 1)")


def test_before_postgresql_18_the_wal_is_not_counted_and_not_shown() -> None:
    written = written_between({"client backend": (0, 0, None)}, {"client backend": (8 * MB, MB, None)}, seconds=10.0)
    assert written is not None and written.wal is None
    assert written.cell() == "over 10 s: extended 8 MB (client backend 8), relation blocks written 1 MB (client backend 1)"


def test_without_pg_stat_io_on_either_side_nothing_is_reported() -> None:
    assert written_between(None, {"client backend": (0, 0, 0)}, 1.0) is None
    assert written_between({"client backend": (0, 0, 0)}, None, 1.0) is None
