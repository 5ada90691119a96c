"""bench/RESULTS.md (one section per row count, replaced on a re-run) and the latency plot."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .scenario import ScenarioRun
from .server import Machine
from .stats import WindowStats

HEADER = """# Benchmark: applying a batch without impacting existing traffic

`make bench` (`python -m bench.run --rows N`) starts its own PostgreSQL 18, seeds a template database with
N rows in "Lead" and "Job" (baseline batch 0000), and runs every scenario on a fresh copy of it while
4 writer processes run application transactions (insert a "Lead", update a random "Job") as fast as they
can, timing every one. 3 s into the run, batch 0001 is applied:

- **project**: through `infra.migrations.runner.apply_batch`, the code `pulumi up` runs;
- **naive**: the same batch the way `psql -1 -f` / `prisma migrate deploy` run it: one transaction,
  plain `CREATE INDEX` and validated `ADD CONSTRAINT ... FOREIGN KEY` (rewritten from migration.sql with pglast);
- **blocker**: the project path while another session holds an open transaction that has read "Lead"
  (an idle-in-transaction request), once for 5 s and once for longer than the engine's lock retry budget;
- **baseline**: writers only, no apply, measured over a window as long as the project apply.

Numbers are for writer transactions that overlap the apply window (apply start to apply end).
The writers are a closed loop that saturates both cores, so CPU the apply uses (index builds, validation
scans) shows up as fewer writes/s during the apply; the targets are about stalls and failed writes.
Raw per-transaction samples are written to `bench/out/` (not committed).

## `pulumi preview` with 50 applied batches

Target: a no-op `pulumi preview` with 50 applied batches takes at most 2x the preview of the same stack
with one batch. Measured by `make bench-preview` (`bench/preview.py`), which writes its section here.
"""


@dataclass(frozen=True)
class RunInfo:
    date: str
    machine: Machine
    rows: int
    seed_seconds: float
    batch: str
    batch_sha256: str
    lock_timeout_ms: int
    lock_retries: int
    retry_budget_s: float
    load_average: float


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    met: bool


def write_results(path: Path, info: RunInfo, runs: Sequence[ScenarioRun], targets: Sequence[Goal],
                  plot_name: str) -> None:
    """Write (or replace) this row count's section of RESULTS.md; other row counts' sections are kept."""
    text = path.read_text() if path.exists() else HEADER
    section = _section(info, runs, targets, plot_name)
    begin, end = f"<!-- bench rows={info.rows} -->", f"<!-- /bench rows={info.rows} -->"
    block = f"{begin}\n{section}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)


def _section(info: RunInfo, runs: Sequence[ScenarioRun], targets: Sequence[Goal], plot_name: str) -> str:
    m = info.machine
    lines = [
        f"## {info.rows:,} rows in \"Lead\" and \"Job\"", "",
        f"Run {info.date} on {m.cores} cores ({m.cpu_model}), {m.ram_gib:.1f} GiB RAM, load average "
        f"{info.load_average:.2f} before the run; {m.postgres}.",
        f"Seeding the template took {info.seed_seconds:.0f} s. Batch `{info.batch}` "
        f"(migration.sql sha256 `{info.batch_sha256[:12]}`). Project apply: lock_timeout {info.lock_timeout_ms} ms, "
        f"{info.lock_retries} retries with backoff (at most {info.retry_budget_s:.0f} s per step).", "",
        "| scenario | apply | apply time | writes | failed | writes/s | p50 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(_label(r), _short(r), r.window()) for r in runs),
        "", "| target | measured | met |", "|---|---|---|",
        *(f"| {t.text} | {t.measured} | {'yes' if t.met else '**NO**'} |" for t in targets),
        "", "What each apply did:", "",
        *(f"- **{_label(r)}**: {_clip(r.outcome)}; catalog after: {r.catalog}." + _errors(r.window())
          for r in runs if r.applied is not None),
        "", f"![write latency over time, naive vs project apply]({plot_name})",
    ]
    return "\n".join(lines)


LABELS = {
    "baseline": "baseline: writers only",
    "project": "project: apply_batch",
    "naive": "naive: one transaction",
    "blocker": "project + blocker",
    "blocker-long": "project + blocker",
}


def _label(run: ScenarioRun) -> str:
    label = LABELS.get(run.name, run.name)
    if run.name == "blocker-long":
        return f"{label} holding \"Lead\" past the retry budget"
    if run.blocker_hold_s is not None:
        return f"{label} holding \"Lead\" {run.blocker_hold_s:.0f} s"
    return label


def _short(run: ScenarioRun) -> str:
    if run.applied is None:
        return "none"
    if run.applied:
        return "applied"
    return "failed (" + run.outcome.split(":")[1].strip() + ")"


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _row(label: str, outcome: str, w: WindowStats) -> str:
    return (f"| {label} | {outcome} | {w.seconds:.2f} s | {w.writes} | {w.failed} | {w.per_second:.0f} | "
            f"{w.p50_ms:.1f} | {w.p99_ms:.1f} | {w.max_ms:.1f} |")


def _errors(w: WindowStats) -> str:
    if not w.errors:
        return ""
    return " Failed writes by SQLSTATE: " + ", ".join(f"{k} x{v}" for k, v in sorted(w.errors.items())) + "."


def write_samples(directory: Path, rows: int, runs: Sequence[ScenarioRun]) -> None:
    """Every writer transaction of every scenario as CSV (seconds since the writers started)."""
    directory.mkdir(parents=True, exist_ok=True)
    for run in runs:
        with (directory / f"samples-{rows}-{run.name}.csv").open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["start_s", "latency_ms", "ok", "error", "apply_start_s", "apply_end_s"])
            for s in run.samples:
                out.writerow([f"{s.start - run.t0:.6f}", f"{s.latency * 1000:.3f}", int(s.ok), s.error,
                              f"{run.apply_start - run.t0:.3f}", f"{run.apply_end - run.t0:.3f}"])


def plot(path: Path, rows: int, runs: Sequence[ScenarioRun]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 3.2 * len(runs)), sharex=True, sharey=True)
    for ax, run in zip(axes, runs):
        _panel(ax, run)
    axes[-1].set_xlabel("seconds since the writers started")
    fig.suptitle(f"Writer transaction latency while batch 0001 is applied ({rows:,} rows per table)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(ax, run: ScenarioRun) -> None:
    ok = [s for s in run.samples if s.ok]
    bad = [s for s in run.samples if not s.ok]
    ax.scatter([s.start - run.t0 for s in ok], [max(s.latency * 1000, 0.1) for s in ok], s=2, label="write ok")
    if bad:
        ax.scatter([s.start - run.t0 for s in bad], [max(s.latency * 1000, 0.1) for s in bad], s=8, c="red",
                   label="write failed")
    ax.axvspan(run.apply_start - run.t0, run.apply_end - run.t0, color="orange", alpha=0.2, label="apply window")
    if run.blocker_released is not None:
        ax.axvline(run.blocker_released - run.t0, color="purple", linestyle="--", label="blocker commits")
    w = run.window()
    ax.set_title(f"{_label(run)}: apply {run.apply_seconds:.1f} s, max write latency {w.max_ms:.0f} ms", fontsize=10)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper right", fontsize=8)
