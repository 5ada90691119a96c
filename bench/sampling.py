"""What the bench's samplers share: a thread that reads once at the start, then every so often, until told to stop
or there is nothing to read."""

from __future__ import annotations

import threading
from typing import Self


class Periodic:
    """Started with `with`: a thread calls take() at once, then every `every_s`, until take() returns False (nothing
    to read here) or the `with` ends; finish() runs after the thread has stopped."""

    def __init__(self, every_s: float, name: str) -> None:
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def take(self) -> bool:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last reading of the thread (a sampler that reads once more, or closes what it read from)."""

    def _loop(self) -> None:
        while self.take() and not self._stop.wait(self._every_s):
            pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.finish()
