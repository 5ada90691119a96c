"""The checkpoint clock on a real PostgreSQL: right after a checkpoint, the next one is a timeout and a WAL
trigger away, and WAL written brings the trigger closer by as much; a role the function is not granted to reads
nothing (and says nothing), so the backfill runs without the signal."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from infra.migrations.checkpoints import CheckpointClock


def test_right_after_a_checkpoint_the_next_is_its_timeout_and_its_wal_trigger_away(db: psycopg.Connection) -> None:
    db.execute("CHECKPOINT")
    clock = CheckpointClock(db)
    assert clock.settings is not None
    timeout = db.execute("SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_timeout'").fetchone()[0]
    max_wal = db.execute("SELECT pg_size_bytes(current_setting('max_wal_size'))").fetchone()[0]
    first = clock.read()
    assert first is not None and not first.past
    assert timeout - 30 < first.seconds <= timeout
    target = db.execute("SELECT current_setting('checkpoint_completion_target')::float8").fetchone()[0]
    segment = clock.settings.segment_bytes
    assert segment == db.execute("SELECT pg_size_bytes(current_setting('wal_segment_size'))").fetchone()[0]
    trigger = clock.settings.trigger_segments * segment  # max_wal_size over 1 + checkpoint_completion_target
    assert max_wal / (1 + target) - segment < trigger <= max_wal / (1 + target)
    assert 0 < first.wal_bytes <= trigger

    db.execute("CREATE TABLE wal_filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    second = clock.read()
    assert second is not None
    written = second.wal_at - first.wal_at
    assert written > 4_000_000
    assert abs((first.wal_bytes - second.wal_bytes) - written) < 1  # the trigger stays where it was
    assert second.seconds < first.seconds


def test_a_role_not_granted_pg_control_checkpoint_reads_nothing(db: psycopg.Connection) -> None:
    role = f"jq_no_control_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    db.execute("REVOKE EXECUTE ON FUNCTION pg_control_checkpoint() FROM PUBLIC")  # in this database only
    try:
        db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        clock = CheckpointClock(db)
        assert clock.settings is None and clock.read() is None
        assert db.execute("SELECT 1").fetchone() == (1,)  # the connection is still usable
    finally:
        db.execute("RESET ROLE")
        db.execute("GRANT EXECUTE ON FUNCTION pg_control_checkpoint() TO PUBLIC")
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
