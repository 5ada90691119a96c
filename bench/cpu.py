"""Which processes used the machine's CPU while a scenario ran, by what they do in it.

A backfill chunk reads rows the server has in shared buffers, so its session runs on a CPU for as long as the chunk
lasts. The writers' server sessions and their clients, autovacuum and the server's own processes share what is left.
When together they want more CPUs than the machine has, every one of them waits its turn, and the writers' latencies
show it. So each scenario reports how many CPUs each role kept busy on average: the backfill's chunk session, the
engine's other sessions (its lock, commit, vacuum, replica and checkpoint watches), the writers' sessions,
autovacuum, the rest of the server (WAL writer, checkpointer, background writer, I/O workers, the bench's own
sessions), the writers' client processes (the bench's child processes: between scenarios, pg_ctl and such), the
bench's own process (the engine runs in it) and whatever else the machine ran (a replica among them). Reading every
process once a second costs the bench's process a few milliseconds each time.

Linux counts each process's user and system time, all its threads together (/proc/<pid>/stat); the sampler reads
every process every EVERY_S, and gives each server process the role pg_stat_activity shows for it then (on a
connection of the sampler's own). The machine's busy time is the sum over every process, kernel threads included: on
this kind of virtual machine /proc/stat's per-CPU counters miss ticks (over 3 s under load they summed to 493 of the
600 two CPUs have), while a process's times come from the scheduler's clock. Elsewhere nothing is counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .sampling import Periodic

EVERY_S = 1.0
PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ENGINE_APPLICATION = "junkquote-db migrations"  # the engine's sessions' application_name begins so (target.py)
WRITER_APPLICATION = "bench writer"  # bench/writer.py
NAIVE_APPLICATION = "bench naive backfill"  # the naive scenario's one transaction (bench/backfill.py)
SAMPLER_APPLICATION = "bench cpu sampler"
# What the engine's other sessions run: the lock watch (pg_locks, pg_blocking_pids), the commit watch's probe, the
# monitor's vacuum, replica and checkpoint reads. A session seen running one is a watch for the rest of its life
# (between those reads the monitor runs others); the chunk session never runs one.
WATCH_MARKS = ("pg_blocking_pids", "commit_probe", "pg_stat_progress_vacuum", "pg_stat_replication",
               "pg_control_checkpoint")
COVERED = 0.9  # a window the readings cover less of than this has no average (the sampler stopped, or began late)

BACKFILL, WATCHES, WRITER_SESSIONS, AUTOVACUUM, SERVER = (
    "backfill session", "engine's watches", "writers' sessions", "autovacuum", "server, other")
CLIENTS, BENCH, REST = "writers' clients", "bench and engine (Python)", "rest of the machine"
ROLES = (BACKFILL, WATCHES, WRITER_SESSIONS, AUTOVACUUM, SERVER, CLIENTS, BENCH, REST)
SHORT = {BACKFILL: "backfill", WATCHES: "watches", WRITER_SESSIONS: "writers' sessions", AUTOVACUUM: "autovacuum",
         SERVER: "server other", CLIENTS: "writers' clients", BENCH: "bench", REST: "rest"}
COLUMNS = {BACKFILL: "backfill_s", WATCHES: "watches_s", WRITER_SESSIONS: "writer_sessions_s",
           AUTOVACUUM: "autovacuum_s", SERVER: "server_other_s", CLIENTS: "writer_clients_s", BENCH: "bench_s",
           REST: "rest_s"}
ACTIVITY = "SELECT pid, coalesce(backend_type, ''), coalesce(application_name, ''), coalesce(query, '') FROM pg_stat_activity"


def csv_header() -> list[str]:
    """The columns of <scenario>.cpu.csv: when, how long, the CPU seconds of each role."""
    return ["epoch_s", "seconds", *COLUMNS.values()]


def csv_row(span: Interval, wall_offset: float) -> list[str]:
    return [f"{span.start + wall_offset:.4f}", f"{span.end - span.start:.3f}",
            *(f"{span.used.get(role, 0.0):.2f}" for role in COLUMNS)]


def server_role(backend_type: str, application_name: str, query: str) -> str:
    """The role of one server process, from its pg_stat_activity row (its current or last query)."""
    if backend_type.startswith("autovacuum"):
        return AUTOVACUUM
    if application_name == WRITER_APPLICATION:
        return WRITER_SESSIONS
    if application_name == NAIVE_APPLICATION:
        return BACKFILL
    if application_name.startswith(ENGINE_APPLICATION):
        return WATCHES if any(mark in query for mark in WATCH_MARKS) else BACKFILL
    return SERVER


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, user + system clock ticks) from a /proc/<pid>/stat line. The command name, in parentheses, may
    itself hold spaces and parentheses: the fields are counted from the last ')'."""
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


@dataclass(frozen=True)
class Interval:
    """The CPU seconds each role used between two readings (REST: every other process)."""

    start: float
    end: float
    used: Mapping[str, float]


@dataclass(frozen=True)
class CpuUse:
    """CPUs kept busy on average over a window, by role, and by every process together."""

    cores: Mapping[str, float]
    busy_cores: float
    cpus: int

    def cell(self) -> str:
        """e.g. "backfill 0.96, writers' sessions 0.21, ...; 1.62 of 2 busy"."""
        shown = ", ".join(f"{SHORT[r]} {self.cores.get(r, 0.0):.2f}" for r in ROLES)
        return f"{shown}; {self.busy_cores:.2f} of {self.cpus} busy"


def use_over(spans: Sequence[Interval], start: float, end: float, cpus: int) -> CpuUse | None:
    """The average use over [start, end], each interval counted for the share of it inside the window. None when
    the intervals cover less than COVERED of it."""
    used = dict.fromkeys(ROLES, 0.0)
    covered = 0.0
    for s in spans:
        inside = min(s.end, end) - max(s.start, start)
        if inside <= 0 or s.end <= s.start:
            continue
        share = inside / (s.end - s.start)
        covered += inside
        for role, seconds in s.used.items():
            used[role] += seconds * share
    if end <= start or covered < COVERED * (end - start):
        return None
    return CpuUse({r: v / covered for r, v in used.items()}, sum(used.values()) / covered, cpus)


def tally(ticks: Mapping[int, int], before: Mapping[int, int], roles: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds by role between two readings of per-process ticks, a process with no role counted as REST: a
    process first seen now counts from 0 (it began in between), one gone since is not counted (its last interval is
    lost: at most EVERY_S of it)."""
    used: dict[str, float] = {}
    for pid, now in ticks.items():
        delta = now - before.get(pid, 0)
        if delta > 0:
            role = roles.get(pid, REST)
            used[role] = used.get(role, 0.0) + delta / TICKS_PER_S
    return used


def roles_of(activity: Iterable[tuple[int, str, str, str]], watches: set[int]) -> dict[int, str]:
    """Each server process's role from pg_stat_activity's (pid, backend_type, application_name, query) rows. An
    engine session seen running a watch's query, now or before (`watches`, kept to the pids listed now, so a pid
    the system gives a later session starts afresh), stays a watch."""
    roles = {}
    rows = list(activity)
    watches &= {row[0] for row in rows}
    for pid, backend_type, application_name, query in rows:
        role = server_role(backend_type, application_name, query)
        if role == WATCHES:
            watches.add(pid)
        roles[pid] = WATCHES if role == BACKFILL and pid in watches else role
    return roles


def process_role(pid: int, ppid: int, postmaster: int, bench: int, server_roles: Mapping[int, str]) -> str:
    """A process's role: the server's (the postmaster and its children) as pg_stat_activity shows it, the bench's
    own, the bench's children (the writers' clients while a scenario runs), or the rest of the machine."""
    if pid == postmaster or ppid == postmaster:
        return server_roles.get(pid, SERVER)
    if pid == bench:
        return BENCH
    return CLIENTS if ppid == bench else REST


def _processes() -> Iterable[tuple[int, int, int]]:
    """(pid, parent pid, ticks) of every process readable now."""
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                ppid, ticks = parse_stat((PROC / entry.name / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
            yield int(entry.name), ppid, ticks


class CpuSampler(Periodic):
    """Started with `with`: a thread reads every EVERY_S the CPU time of every process: the server's whose postmaster
    is `postmaster_pid` each in its role, this process's children (the writers' clients), this process, and the rest;
    over(start, end) tells the average use by role over a window within its life."""

    def __init__(self, dsn: str, postmaster_pid: int, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(every_s, "bench-cpu-sampler")
        self._dsn, self._postmaster, self._clock = dsn, postmaster_pid, clock
        self._conn: psycopg.Connection | None = None
        self._before: dict[int, int] = {}
        self._last: float | None = None  # when the last reading was taken
        self._watches: set[int] = set()  # the engine's sessions seen running a watch's query
        self._roles: Mapping[int, str] = {}  # the server's processes' roles as last read
        self.cpus = os.cpu_count() or 1
        self.intervals: list[Interval] = []

    def take(self) -> bool:
        if not PROC.is_dir():
            return False
        server_roles = self._server_roles()
        at, me = self._clock(), os.getpid()
        processes = list(_processes())
        ticks = {pid: used for pid, _, used in processes}
        roles = {pid: process_role(pid, ppid, self._postmaster, me, server_roles) for pid, ppid, _ in processes}
        if self._last is not None:
            self.intervals.append(Interval(self._last, at, tally(ticks, self._before, roles)))
        self._before, self._last = ticks, at
        return True

    def _server_roles(self) -> Mapping[int, str]:
        """Each server process's role from pg_stat_activity now. On a database error, the last ones read (and a new
        connection next time): the process times are still counted."""
        try:
            if self._conn is None:
                self._conn = psycopg.connect(self._dsn, autocommit=True, application_name=SAMPLER_APPLICATION)
            rows = self._conn.execute(ACTIVITY).fetchall()
        except psycopg.Error:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return self._roles
        self._roles = roles_of(rows, self._watches)
        return self._roles

    @property
    def roles(self) -> Mapping[int, str]:
        """The server's processes' roles as last read (pid -> role)."""
        return self._roles

    def over(self, start: float, end: float) -> CpuUse | None:
        return use_over(self.intervals, start, end, self.cpus)

    def spans(self, start: float, end: float) -> tuple[Interval, ...]:
        """The intervals between readings that overlap [start, end]."""
        return tuple(s for s in self.intervals if s.end >= start and s.start <= end)

    def finish(self) -> None:
        self.take()  # a reading at the end, so a window that ends now has one after it
        if self._conn is not None:
            self._conn.close()


def postmaster_pid(data_dir: Path) -> int | None:
    """The running server's postmaster, from the first line of postmaster.pid; None when it cannot be read."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
