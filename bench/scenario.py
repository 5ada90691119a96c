"""One scenario: a fresh copy of the template, the writers running, and (maybe) a batch applied mid-run.

Timeline (monotonic seconds): writers start at t0; at t0 + lead_in the apply starts (and a blocker, if
any, is told when to let go); when the apply returns the writers keep going for `tail` seconds, then stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg

from infra.localdb import LocalServer
from infra.migrations.errors import MigrationError

from . import seed
from .seed import Template
from .server import clone, drop
from .stats import WindowStats, window_stats
from .writer import Sample, Writers

# A realistic blocker: an application transaction that read one lead and then sat idle (a slow request, a
# report, a debugging session). Its ACCESS SHARE lock on "Lead" conflicts with the ACCESS EXCLUSIVE lock
# that ALTER TABLE "Lead" ADD COLUMN needs, and every writer queues behind whichever lock request waits.
BLOCKER_SQL = 'SELECT "id" FROM "Lead" ORDER BY "id" LIMIT 1'

Apply = Callable[[str], object]  # called with the scenario database's DSN


@dataclass(frozen=True)
class Timing:
    lead_in_s: float = 3.0
    tail_s: float = 2.0


@dataclass(frozen=True)
class ScenarioRun:
    """What happened: every writer transaction, the apply window, the apply's outcome, the catalog check."""

    name: str
    samples: list[Sample]
    t0: float
    apply_start: float
    apply_end: float
    outcome: str
    applied: bool | None
    catalog: str
    blocker_hold_s: float | None = None
    blocker_released: float | None = None

    @property
    def apply_seconds(self) -> float:
        return self.apply_end - self.apply_start

    def window(self) -> WindowStats:
        return window_stats(self.samples, self.apply_start, self.apply_end)


class Blocker:
    """A second session holding a lock on "Lead" in an open transaction until release_at()."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, application_name="bench blocker")
        self.conn.execute(BLOCKER_SQL)
        self._timer: threading.Timer | None = None
        self.released_at: float | None = None

    def release_after(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self.release)
        self._timer.daemon = True
        self._timer.start()

    def release(self) -> None:
        if self.released_at is None:
            self.conn.commit()
            self.released_at = time.monotonic()

    def close(self) -> None:
        if self._timer:
            self._timer.cancel()
        self.release()
        self.conn.close()


def run_scenario(server: LocalServer, template: Template, name: str, apply: Apply | None, *, batch: str,
                 timing: Timing = Timing(), window_s: float = 0.0, blocker_hold_s: float | None = None) -> ScenarioRun:
    """Run one scenario on its own copy of the template; with apply=None the writers run alone for window_s."""
    database = f"bench_{name.replace('-', '_')}"
    dsn = clone(server, template.name, database)
    try:
        run = _drive(name, dsn, template, apply, timing, window_s, blocker_hold_s)
        catalog = _inspect(dsn, template, batch, run.applied) if apply else "untouched (no apply)"
    finally:
        drop(server, database)
    return replace(run, catalog=catalog)


def _drive(name: str, dsn: str, template: Template, apply: Apply | None, timing: Timing, window_s: float,
           blocker_hold_s: float | None) -> ScenarioRun:
    writers = Writers(dsn, template.job_ids)
    blocker: Blocker | None = None
    try:
        t0 = writers.start()
        blocker = Blocker(dsn) if blocker_hold_s is not None else None
        _sleep_until(t0 + timing.lead_in_s)
        start = time.monotonic()
        if blocker and blocker_hold_s is not None:
            blocker.release_after(blocker_hold_s)
        outcome, applied = _run_apply(apply, dsn, window_s)
        end = time.monotonic()
        time.sleep(timing.tail_s)
    finally:
        if blocker:
            blocker.close()
        samples = writers.stop()
    released = blocker.released_at if blocker else None
    return ScenarioRun(name, samples, t0, start, end, outcome, applied, "", blocker_hold_s, released)


def _run_apply(apply: Apply | None, dsn: str, window_s: float) -> tuple[str, bool | None]:
    if apply is None:
        time.sleep(window_s)
        return "no apply (writers only)", None
    try:
        apply(dsn)
    except MigrationError as err:
        return f"failed: {type(err).__name__}: {err}", False
    return "applied", True


def _inspect(dsn: str, template: Template, batch: str, applied: bool | None) -> str:
    """After a successful apply: every index valid and every constraint validated. After a failed one:
    the public schema is exactly the seeded one and the ledger has nothing for the batch."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        catalog = seed.catalog_of(conn)
        ledger = seed.ledger_rows(conn, batch)
    if applied:
        invalid = sorted(item for item in catalog if item.endswith("valid=false"))
        added = len(catalog - template.catalog)
        return f"{added} catalog objects added, ledger rows {ledger}, invalid/unvalidated: {', '.join(invalid) or 'none'}"
    if catalog == template.catalog and ledger == 0:
        return "nothing half-applied: public schema identical to the seeded one, no ledger rows for the batch"
    extra = sorted(catalog - template.catalog)
    missing = sorted(template.catalog - catalog)
    return f"HALF-APPLIED: extra {extra[:5]}, missing {missing[:5]}, ledger rows {ledger}"


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)
