"""How far the next checkpoint is, from the server's readings: its WAL trigger counted in whole segments, as
the server counts it, and its timeout."""

from __future__ import annotations

from infra.migrations.checkpoints import CheckpointSettings, ahead

MB = 2 ** 20
SEGMENT = 16 * MB


def test_the_wal_trigger_is_max_wal_size_over_one_plus_the_completion_target_in_whole_segments() -> None:
    settings = CheckpointSettings.of(SEGMENT, 16 * 1024 * MB, 0.9, 1800.0)
    assert settings.trigger_segments == 538  # 1,024 segments / 1.9 (the bench's server: distance=8805436 kB)
    assert CheckpointSettings.of(SEGMENT, 1024 * MB, 0.9, 300.0).trigger_segments == 33
    assert CheckpointSettings.of(SEGMENT, 32 * MB, 0.9, 300.0).trigger_segments == 1


def test_the_next_checkpoint_starts_at_the_segment_after_the_triggers_last_counted_from_the_redo_segment() -> None:
    settings = CheckpointSettings.of(SEGMENT, 1024 * MB, 0.9, 300.0)  # 33 segments
    redo = 10 * SEGMENT + 5 * MB  # inside segment 10
    at = redo + 100 * MB
    left = ahead(settings, at, redo, since_start_s=120.0)
    assert left.wal_bytes == (10 + 33) * SEGMENT - at
    assert left.seconds == 180.0 and left.wal_at == at and not left.past


def test_a_checkpoint_due_by_time_or_by_wal_reads_as_past() -> None:
    settings = CheckpointSettings.of(SEGMENT, 1024 * MB, 0.9, 300.0)
    assert ahead(settings, 0, 0, since_start_s=301.0).past
    assert ahead(settings, 33 * SEGMENT, 0, since_start_s=10.0).past


def test_a_max_wal_size_not_a_multiple_of_the_segment_counts_whole_segments_first_as_the_server_does() -> None:
    assert CheckpointSettings.of(SEGMENT, 1500 * MB, 0.9, 300.0).trigger_segments == 48  # 93 segments / 1.9
    assert CheckpointSettings.of(SEGMENT, 62 * MB, 0.9, 300.0).trigger_segments == 1
