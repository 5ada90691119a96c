"""How far the server is from its next checkpoint's start, by WAL volume and by time, read between chunks.

When a checkpoint starts, the first change of every page after it writes a copy of the whole page to the WAL
(full_page_writes). Right at the start, every page the application and the backfill touch is such a first change:
a chunk running then writes many times its usual WAL, and every commit of the application's waits for that WAL to
reach the disk before its own. The throttle (throttle.py) keeps the chunk that runs across the start small.

PostgreSQL starts a checkpoint when checkpoint_timeout has passed since the last one started, or when the WAL
written since the last one's redo point reaches max_wal_size / (1 + checkpoint_completion_target) (counted in
whole segments, as the server does). pg_control_checkpoint() gives the last *completed* checkpoint's redo point
and start time (EXECUTE is granted to PUBLIC by default); while one is under way (it is spread over most of the
interval) the trigger that started it reads as already past, which says nothing about the next one: only a
reading that goes from ahead to past tells that a checkpoint has just started. What it cannot foresee: a
checkpoint asked for otherwise (CHECKPOINT, a base backup, CREATE DATABASE), and the first timed one after a
restart or after the server skipped one for lack of WAL (its own timer has moved on; pg_control has not).
The settings are read once, when the backfill starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

SETTINGS_QUERY = """SELECT pg_size_bytes(current_setting('wal_segment_size')),
                           pg_size_bytes(current_setting('max_wal_size')),
                           current_setting('checkpoint_completion_target')::float8,
                           (SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_timeout')"""
POSITION_QUERY = """SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn, redo_lsn - '0/0'::pg_lsn,
                           extract(epoch FROM clock_timestamp() - checkpoint_time)
                    FROM pg_control_checkpoint()"""


@dataclass(frozen=True)
class CheckpointSettings:
    """The server's checkpoint triggers: a segment's size, the segments of WAL after a redo point that start the
    next checkpoint (as the server computes them), and checkpoint_timeout."""

    segment_bytes: int
    trigger_segments: int
    timeout_s: float

    @classmethod
    def of(cls, segment_bytes: int, max_wal_size_bytes: int, completion_target: float, timeout_s: float
           ) -> CheckpointSettings:
        # as the server: whole segments of max_wal_size first (an integer division), then over 1 + the target
        segments = max(1, int((max_wal_size_bytes // segment_bytes) / (1.0 + completion_target)))
        return cls(segment_bytes, segments, timeout_s)


@dataclass(frozen=True)
class CheckpointAhead:
    """What is left before the next checkpoint starts: WAL bytes and seconds (whichever runs out first starts
    it). At or under zero: it is due, or under way (its start is only seen as a change from ahead to past)."""

    wal_bytes: float
    seconds: float
    wal_at: int  # the WAL insert position when read, in bytes: the difference of two readings is the WAL between

    @property
    def past(self) -> bool:
        return self.wal_bytes <= 0 or self.seconds <= 0


def ahead(settings: CheckpointSettings, wal_at: int, redo_at: int, since_start_s: float) -> CheckpointAhead:
    """From the WAL insert position, the last checkpoint's redo point (both in bytes) and the time since it
    started: the server asks for a checkpoint once it has filled segment redo + trigger_segments - 1, that is at
    the start of the segment after it."""
    trigger = (redo_at // settings.segment_bytes + settings.trigger_segments) * settings.segment_bytes
    return CheckpointAhead(float(trigger - wal_at), settings.timeout_s - since_start_s, wal_at)


class CheckpointClock:
    """Reads how far the next checkpoint is, on the backfill's monitor connection (autocommit, its login user).
    An advisory signal: where the server does not give it (pg_control_checkpoint() not granted, not supported,
    empty), read() is None from then on and the backfill runs without it; a connection that fails still fails."""

    def __init__(self, monitor: psycopg.Connection) -> None:
        assert monitor.autocommit, "a refused read must not abort a transaction"
        self.monitor = monitor
        self.settings: CheckpointSettings | None = None
        row = self._fetch(SETTINGS_QUERY)
        if row is not None and self._fetch(POSITION_QUERY) is not None:
            segment, max_wal, target, timeout = row
            self.settings = CheckpointSettings.of(int(segment), int(max_wal), float(target), float(timeout))

    def _fetch(self, query: str) -> tuple[Any, ...] | None:
        """The query's row; None where the server refuses it or gives nothing (a failed connection still raises)."""
        try:
            row = self.monitor.execute(query).fetchone()
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError:  # not granted (42501), not supported by this server or service
            return None
        if row is None or any(v is None for v in row):
            return None
        return tuple(row)

    def read(self) -> CheckpointAhead | None:
        if self.settings is None:
            return None
        row = self._fetch(POSITION_QUERY)
        if row is None:
            self.settings = None  # refused or empty once: off for the rest of the run
            return None
        wal_at, redo_at, since_s = row
        return ahead(self.settings, int(wal_at), int(redo_at), float(since_s))
