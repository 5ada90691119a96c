"""The backfill section of bench/RESULTS.md and its plot."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cpu import ROLES
from .host import EVERY_S
from .stats import window_stats

TARGET_MS = 100.0
TARGET_LAG_S = 2.0


def write(out: Path, leads: int, entries: int, seed_s: float, info: Any, settings: str, load: float,
          results: Sequence[Any], *, quiet: bool = False, rate: float | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_name = f"backfill-latency-{leads}.png"
    _plot(out / plot_name, leads, results)
    lines = [
        f"## Backfill (batch 0002) and tighten (0003): {leads:,} leads, {leads:,} jobs, {entries:,} legacy entries", "",
        f"Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, on {info.cores} cores ({info.cpu_model}), "
        f"{info.ram_gib:.1f} GiB RAM, load average {load:.2f} before the run and {os.getloadavg()[0]:.2f} after the last "
        f"scenario below (the report is rewritten after each); {info.postgres}. Seeding took {seed_s:.0f} s.",
        f"Settings while measured: {settings}.",
        "Writers: 4 processes, each transaction inserts a customer and its lead (customer_id set) and updates a random job; "
        + (f"{rate:,.0f} transactions a second in all, each on a fixed schedule, its latency counted from when it was due "
           "(bench/writer.py); the writes and latencies include those due but not started when the writers stopped, "
           "each with its wait so far." if rate else "flat out, each client starting its next transaction when the last ends."),
        "Rows = rows the keyset passes went through, summed over the four parts. Longest lock = the longest chunk transaction",
        "(its row locks are held that long); for naive, the one transaction. Slowest write during = what the backfill",
        "was doing when the slowest write began (the part and phase of the next progress event), and when (UTC, to",
        "match the server log). WAL checkpoints = checkpoints the WAL volume forced (max_wal_size reached) meanwhile.",
        "WAL segments = segments ready for reuse as the scenario began (each is given about max_wal_size's worth first,",
        "bench/wal.py) / segments client sessions (the writers' or the backfill's) created meanwhile and in the tail:",
        "each one 16 MB of zeros written and flushed before that session's WAL could go on. Time in chunks = the",
        "backfill's chunk transactions, the reads before the checks included / of that, chunks not kept (rolled back",
        "at a timeout or for a waiting session, or a lock not taken in time) / asleep (the throttle's pauses, and the waits",
        "for a lagging replica). CPU stolen = the share of this virtual machine's CPU time (idle included) that its",
        f"hypervisor gave to other guests, over the scenario / in its worst interval of about {EVERY_S} s (bench/host.py):",
        "it delays the writers like a backfill that takes the CPU, so a scenario with more of it is not comparable with",
        "one with less. Client CPU-starved = of the writes over the target, those whose client process sat runnable with",
        "no CPU for half their latency or more (the kernel's run-queue wait, bench/writer.py); max less client wait = the",
        "largest latency once its client's own wait for a CPU is taken out. On this 2-core machine the clients share the",
        "CPUs with the server; an application's clients have hosts of their own. The targets are judged on max ms.", "",
        f"| scenario | outcome | time | rows/s | writes | failed | p99 ms | max ms | writes over {TARGET_MS:.0f} ms | client CPU-starved | max less client wait ms | slowest write during | longest lock ms | WAL checkpoints | WAL segments | time in chunks / not kept / asleep | max replay lag | CPU stolen |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        w = window_stats(r.samples, r.start, r.end)
        secs = r.end - r.start
        lag = f"{r.max_lag_ms / 1000:.2f} s" if r.max_lag_ms is not None else "—"
        lines.append(f"| {r.name} | {r.outcome[:120]} | {secs:.1f} s | {_rate(r):,.0f} | {w.writes} | "
                     f"{w.failed} | {w.p99_ms:.1f} | {w.max_ms:.1f} | {over_target(r)} | {client_starved(r)} | {w.max_less_client_wait_ms:.1f} | {slowest_during(r)} | {r.longest_lock_ms:.0f} | {_count(r.wal_checkpoints)} | {_count(r.wal_ready)} / {_count(r.wal_created)} | {r.split.cell() if r.split else '—'} | {lag} | {r.steal.cell() if r.steal else '—'} |")
    lines += _cpu_table(results) + _io_table(results)
    lines += ["", "| target | measured | met |", "|---|---|---|", *_targets(results), "",
              f"![write latency during the backfills]({plot_name})"]
    section = "\n".join(lines)
    path = out / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench backfill leads={leads} -->", f"<!-- /bench backfill leads={leads} -->"
    block = f"{begin}\n{section}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)
    if not quiet:
        print("\n".join(lines))


def _captioned(caption: str, head: str, align: str, rows: list[str]) -> list[str]:
    """A table under its caption, after a blank line; nothing without rows."""
    return ["", caption, "", head, align, *rows] if rows else []


def _cpu_table(results: Sequence[Any]) -> list[str]:
    """The CPUs each role kept busy on average during each scenario (bench/cpu.py), where they were counted."""
    counted = [r for r in results if getattr(r, "cpu", None) is not None]
    return _captioned(
        "CPUs kept busy on average during each scenario, by what the processes do (bench/cpu.py: each process's user "
        "and system time, read every second, the server's given their role from pg_stat_activity; writers' clients = "
        "the bench's child processes; rest = every other process, kernel threads included; busy = all of them).",
        f"| scenario | {' | '.join(ROLES)} | busy, of {counted[0].cpu.cpus if counted else 0} |",
        f"|---|{'---:|' * (len(ROLES) + 1)}",
        [f"| {r.name} | {' | '.join(f'{r.cpu.cores.get(role, 0.0):.2f}' for role in ROLES)} | {r.cpu.busy_cores:.2f} |"
         for r in counted])


def _io_table(results: Sequence[Any]) -> list[str]:
    """What the server extended relations by and wrote during each scenario, and who (bench/pg_io.py)."""
    return _captioned(
        "What the server wrote from each scenario's start to the end of its tail, in MB, by backend type "
        "(bench/pg_io.py, from pg_stat_io): relation blocks extended (up to 8 at once written out as zeros, more "
        "allocated without writing), relation blocks written (dirty buffers written out), and the WAL written "
        "(PostgreSQL 18 and later).",
        "| scenario | what the server wrote |", "|---|---|",
        [f"| {r.name} | {r.written.cell()} |" for r in results if getattr(r, "written", None) is not None])


def _during(r: Any) -> list[Any]:
    """The writes that overlapped the scenario's window."""
    return [s for s in r.samples if s.start <= r.end and s.end >= r.start]


def over_target(r: Any) -> str:
    """Writes during the scenario that took longer than the target, and what the backfill was doing when each
    began (its phase: pass, sweep, checks, ...), e.g. "52 (pass 30, checks 22)"."""
    slow = [s for s in _during(r) if s.latency * 1000 > TARGET_MS]
    if not slow or not r.phases:
        return str(len(slow))
    by: dict[str, int] = {}
    for s in slow:
        phase = _phase(r.doing_at(s.start))
        by[phase] = by.get(phase, 0) + 1
    return f"{len(slow)} ({', '.join(f'{k} {n}' for k, n in sorted(by.items(), key=lambda kv: -kv[1]))})"


def client_starved(r: Any) -> int:
    """Writes over the target whose client waited for a CPU for half their latency or more."""
    return sum(1 for s in _during(r) if s.latency * 1000 > TARGET_MS and s.client_cpu_wait >= s.latency / 2)


def _phase(doing: str) -> str:
    """The phase in a `Result.doing_at` label: "customers pass" -> "pass", "checks" -> "checks"."""
    if doing.startswith("nothing yet"):
        return "before the backfill"
    if doing.startswith("migration.sql"):
        return "migration.sql or first chunk"
    if doing.endswith("(one transaction)"):
        return "one transaction"
    return doing.split()[-1]


def slowest_write(r: Any) -> Any | None:
    """The slowest of the writes that overlapped the scenario's window (None: there were none)."""
    return max(_during(r), key=lambda s: s.latency, default=None)


def slowest_during(r: Any) -> str:
    slowest = slowest_write(r)
    if slowest is None:
        return "—"
    at = datetime.fromtimestamp(slowest.start + r.wall_offset, timezone.utc).strftime("%H:%M:%S")
    return f"{r.doing_at(slowest.start)} ({at})"


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def rounds_of(results: Sequence[Any], name: str) -> list[Any]:
    """Every round of a scenario: `name`, then "`name` (2)" when the run repeated it (--rounds 2)."""
    return [r for r in results if r.name in (name, f"{name} (2)")]


def _rate(r: Any) -> float:
    return r.rows / (r.end - r.start) if r.end > r.start else 0.0


def _targets(results: Sequence[Any]) -> list[str]:
    by = {r.name: r for r in results}
    out = []

    def goal(text: str, measured: str, met: bool) -> None:
        out.append(f"| {text} | {measured} | {'yes' if met else '**NO**'} |")

    if "writers-alone" in by:
        b = by["writers-alone"]
        w = window_stats(b.samples, b.start, b.end)
        out.append(f"| (the floor) writers alone, no backfill: max / p99 write latency | {w.max_ms:.0f} / {w.p99_ms:.0f} ms | — |")
    for r in rounds_of(results, "adaptive") + rounds_of(results, "adaptive+replica"):
        w = window_stats(r.samples, r.start, r.end)
        goal(f"{r.name}: max write latency <= {TARGET_MS:.0f} ms", f"{w.max_ms:.0f} ms", w.max_ms <= TARGET_MS)
        goal(f"{r.name}: zero failed writes", str(w.failed), w.failed == 0)
    if "adaptive+replica" in by:
        lag = by["adaptive+replica"].max_lag_ms
        goal(f"adaptive+replica: max replay lag <= {TARGET_LAG_S:.0f} s",
             "not measured: no replica streamed during it" if lag is None else f"{lag / 1000:.2f} s",
             lag is not None and lag / 1000 <= TARGET_LAG_S)
    adaptive, fixed = rounds_of(results, "adaptive"), rounds_of(results, "fixed-1000")
    if adaptive and fixed:
        # Over every round of each (opposite orders with --rounds 2): the mean rate, the worst max.
        ra, rf = (sum(map(_rate, rs)) / len(rs) for rs in (adaptive, fixed))
        ma, mf = (max(window_stats(r.samples, r.start, r.end).max_ms for r in rs) for rs in (adaptive, fixed))
        rounds = f" (mean rows/s and worst max over {len(adaptive)} and {len(fixed)} rounds)" if len(adaptive) + len(fixed) > 2 else ""
        even = len(adaptive) == len(fixed)  # else one has run in fewer positions (a run cut short, or a round failed)
        goal(f"adaptive beats fixed-1000 on rows/s at equal or better max latency{rounds}",
             f"{ra:,.0f} vs {rf:,.0f} rows/s; max {ma:.0f} vs {mf:.0f} ms{'' if even else '; rounds unequal, not compared'}",
             even and ra > rf and ma <= mf)
    if "tighten-0003" in by:
        t = by["tighten-0003"]
        w = window_stats(t.samples, t.start, t.end)
        goal("tighten (0003): max write stall <= 100 ms", f"{w.max_ms:.0f} ms ({t.outcome})", w.max_ms <= TARGET_MS)
    return out


def _plot(path: Path, leads: int, results: Sequence[Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.8 * len(results)), sharey=True, squeeze=False)
    axes = axes[:, 0]
    for ax, r in zip(axes, results):
        ok = [s for s in r.samples if s.ok]
        ax.scatter([s.start - r.t0 for s in ok], [max(s.latency * 1000, 0.1) for s in ok], s=2)
        ax.axvspan(r.start - r.t0, r.end - r.t0, color="orange", alpha=0.2)
        w = window_stats(r.samples, r.start, r.end)
        ax.set_title(f"{r.name}: {r.end - r.start:.0f} s, max write {w.max_ms:.0f} ms", fontsize=9)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        if r.lag_series:
            twin = ax.twinx()
            twin.plot([t - r.t0 for t, _ in r.lag_series], [v / 1000 for _, v in r.lag_series], color="purple", lw=0.8)
            twin.set_ylabel("replay lag s")
    axes[-1].set_xlabel("seconds since the writers started")
    fig.suptitle(f"Writer latency during the backfill ({leads:,} leads)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
