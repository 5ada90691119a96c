"""The lock watch's bookkeeping, with a stand-in connection whose looks the test answers one at a time: a look is
acted on only for the chunk it was made during, a cancel that failed stops the backfill, a chunk whose looks were
held up reads as not watched."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from infra.migrations.backfill_errors import LockWatchFailed
from infra.migrations.lock_watch import LockWatch


class Looks:
    """A stand-in connection: each execute() says it began (began), then returns the answer the test gives."""

    def __init__(self) -> None:
        self.began: queue.Queue[None] = queue.Queue()
        self.answers: queue.Queue[tuple[float, int]] = queue.Queue()
        self.autocommit = False

    def execute(self, query: str, _params: object) -> Looks:
        if query.startswith("SELECT set_config"):
            return self  # the watch's own settings, before it starts
        self.began.put(None)
        self._answer = self.answers.get(timeout=60)
        return self

    def fetchone(self) -> tuple[float, int]:
        return self._answer

    def close(self) -> None:
        pass

    def next_look(self) -> None:
        self.began.get(timeout=60)


class Cancels:
    """A stand-in for the backfill connection's cancel: counts, fails with `error`, or (hold) returns only once
    the test releases it."""

    def __init__(self, error: Exception | None = None, hold: bool = False) -> None:
        self.sent = 0
        self.error = error
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __call__(self) -> None:
        self.sent += 1
        self.entered.set()
        self.release.wait(60)
        if self.error:
            raise self.error


NOBODY = (0.0, 0)


@pytest.fixture
def looks() -> Looks:
    return Looks()


class Clock:
    """The watch's clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def watching(looks: Looks, cancel: Cancels, clock: Clock | None = None) -> Iterator[LockWatch]:
    """A watch that waits 20 ms between looks and stamps them with `clock`, which stands still unless the test moves it."""
    with LockWatch("0002_x", 4242, lambda: looks, cancel, every_s=0.02, clock=clock or Clock()) as watch:  # type: ignore[arg-type, return-value]
        try:
            yield watch
        finally:
            for _ in range(3):
                looks.answers.put(NOBODY)  # a look still waiting for its answer ends


def test_a_session_waiting_past_the_patience_gets_the_chunk_cancelled_once(looks: Looks) -> None:
    cancel = Cancels()
    with watching(looks, cancel) as watch:
        with watch.chunk(patience_ms=50):
            looks.next_look()
            looks.answers.put((60.0, 1))
            looks.next_look()  # the first look was acted on
            looks.answers.put((80.0, 1))
            looks.next_look()
        assert cancel.sent == 1
        assert watch.cancelled_for_waiter()
        assert watch.waiter_ms() == 80.0


def test_a_look_made_during_one_chunk_does_not_cancel_the_next(looks: Looks) -> None:
    cancel = Cancels()
    with watching(looks, cancel) as watch:
        with watch.chunk(patience_ms=50):
            looks.next_look()  # made during the first chunk, answered after it
        with watch.chunk(patience_ms=50):
            looks.answers.put((60.0, 1))
            looks.next_look()  # the stale look was handled
        assert cancel.sent == 0
        assert not watch.cancelled_for_waiter()


def test_without_a_patience_a_waiting_session_is_only_reported(looks: Looks) -> None:
    cancel = Cancels()
    with watching(looks, cancel) as watch:
        with watch.chunk(patience_ms=None):
            looks.next_look()
            looks.answers.put((500.0, 2))
            looks.next_look()
        assert cancel.sent == 0
        assert watch.waiter_ms() == 500.0


def test_a_cancel_that_failed_stops_the_backfill_at_the_end_of_the_chunk(looks: Looks) -> None:
    cancel = Cancels(OSError("cancel timed out"))
    with watching(looks, cancel) as watch:
        with pytest.raises(LockWatchFailed, match=r"the watch for sessions waiting on its locks failed \(OSError: "
                                                  r"cancel timed out\)"):
            with watch.chunk(patience_ms=50):
                looks.next_look()
                looks.answers.put((60.0, 1))
                looks.next_look()
        assert not watch.cancelled_for_waiter()
        with pytest.raises(LockWatchFailed):
            watch.waiter_ms()


def test_a_chunk_without_one_look_finished_during_it_reads_as_not_watched(looks: Looks) -> None:
    with watching(looks, Cancels()) as watch:
        with watch.chunk(patience_ms=50):
            looks.next_look()  # held up: not answered during the chunk
        assert watch.waiter_ms() is None


def test_a_chunk_whose_last_look_began_over_two_cycles_before_its_end_reads_as_not_watched(
        looks: Looks) -> None:
    clock = Clock()
    with watching(looks, Cancels(), clock) as watch:
        with watch.chunk(patience_ms=50):
            looks.next_look()
            looks.answers.put(NOBODY)  # the look at the chunk's start finishes
            looks.next_look()  # the next one begins, and is held up past the chunk's end
            clock.now += 0.041
        assert watch.waiter_ms() is None
        with watch.chunk(patience_ms=50):
            looks.answers.put(NOBODY)  # the held-up look, answered during this chunk: not counted
            looks.next_look()
            looks.answers.put(NOBODY)
            looks.next_look()
            clock.now += 0.039  # the last finished look (of no time) began within two cycles of the end: covered
        assert watch.waiter_ms() == 0


def test_coverage_counts_from_when_the_last_look_began_allowing_for_how_long_it_took(looks: Looks) -> None:
    clock = Clock()
    with watching(looks, Cancels(), clock) as watch:
        with watch.chunk(patience_ms=50):
            looks.next_look()
            clock.now += 0.030  # the look takes 30 ms: a cycle is 50 ms, two of them 100 ms
            looks.answers.put(NOBODY)
            looks.next_look()  # the next one begins 30 ms after the last, and is held up
            clock.now += 0.075  # the chunk ends 105 ms after the last finished look began (75 ms after it ended)
        assert watch.waiter_ms() is None
        with watch.chunk(patience_ms=50):
            looks.answers.put(NOBODY)  # the held-up look, answered during this chunk: not counted
            looks.next_look()
            clock.now += 0.030
            looks.answers.put(NOBODY)
            looks.next_look()
            clock.now += 0.065  # 95 ms after the last finished look began: covered
        assert watch.waiter_ms() == 0


def test_a_wait_seen_during_a_chunk_is_reported_however_the_looks_after_it_went(looks: Looks) -> None:
    clock = Clock()
    with watching(looks, Cancels(), clock) as watch:
        with watch.chunk(patience_ms=None):
            looks.next_look()
            looks.answers.put((30.0, 1))
            looks.next_look()  # held up past the chunk's end
            clock.now += 0.5
        assert watch.waiter_ms() == 30.0


def test_what_a_chunk_saw_is_its_own(looks: Looks) -> None:
    with watching(looks, Cancels()) as watch:
        with watch.chunk(patience_ms=None):
            looks.next_look()
            looks.answers.put((500.0, 1))
            looks.next_look()
        assert watch.waiter_ms() == 500.0
        with watch.chunk(patience_ms=None):
            looks.answers.put(NOBODY)  # the look begun during the first chunk, answered during the second: not counted
            looks.next_look()
            looks.answers.put(NOBODY)
            looks.next_look()
        assert watch.waiter_ms() == 0


def test_a_chunk_ends_only_once_a_cancel_in_progress_has_returned(looks: Looks) -> None:
    cancel = Cancels(hold=True)
    with watching(looks, cancel) as watch:
        ended = threading.Event()

        def chunk() -> None:
            with watch.chunk(patience_ms=50):
                looks.next_look()
                looks.answers.put((60.0, 1))
                cancel.entered.wait(60)  # the cancel is being sent
            ended.set()
        worker = threading.Thread(target=chunk, daemon=True)
        worker.start()
        cancel.entered.wait(60)
        assert not ended.wait(0.2)  # still sending: the chunk cannot end (the server could still be running it)
        cancel.release.set()
        worker.join(60)
        assert ended.is_set() and watch.cancelled_for_waiter()


def test_a_chunk_not_to_be_looked_at_is_not_looked_at_and_reads_as_not_watched(looks: Looks) -> None:
    with watching(looks, Cancels()) as watch:
        with watch.chunk(patience_ms=None):
            looks.next_look()
            looks.answers.put((500.0, 1))
            looks.next_look()
        looks.answers.put(NOBODY)  # the look begun during that chunk ends: the watch is free to look again
        with watch.chunk(patience_ms=None, look=False):
            assert not watch._in_flight.is_set()  # what the watch's thread waits on before each look
        assert watch.waiter_ms() is None  # not the last chunk's 500 ms
        with watch.chunk(patience_ms=None):
            looks.next_look()
            looks.answers.put((70.0, 1))
            looks.next_look()
        assert watch.waiter_ms() == 70.0


def test_a_chunk_that_may_be_cancelled_for_a_waiter_cannot_go_unwatched(looks: Looks) -> None:
    with watching(looks, Cancels()) as watch:
        with pytest.raises(AssertionError):
            with watch.chunk(patience_ms=50, look=False):
                pass
