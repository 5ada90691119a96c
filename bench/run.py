"""`make bench`: apply batch 0001 under concurrent write traffic and write bench/RESULTS.md and a plot.

    python -m bench.run [--rows N] [--out DIR] [--sql-dir DIR] [--lock-timeout-ms MS] [--lock-retries N]

--rows 20000 is a smoke run of a minute or two; the default 2,000,000 takes several minutes to seed.
Everything runs against a throwaway PostgreSQL on 127.0.0.1 that is stopped and deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from infra.localdb import LocalServer
from infra.migrations.plan import Batch, load_batches
from infra.migrations.runner import MAX_BACKOFF_S, RunSettings, apply_batch
from infra.migrations.target import Target

from .naive import apply_naive, naive_statements
from .report import Goal, RunInfo, plot, write_results, write_samples
from .scenario import Apply, ScenarioRun, Timing, run_scenario
from .seed import Template, build_template
from .server import FAST_LOAD, bench_server, configure, machine, make_durable

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = RunSettings()
BLOCKER_HOLD_S = 5.0
MAX_PROJECT_LATENCY_MS = 100.0
MIN_STALL_RATIO = 15.0
BLOCKER_SLACK_MS = 100.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in \"Lead\" and in \"Job\" (default 2000000)")
    parser.add_argument("--out", type=Path, default=REPO / "bench", help="where RESULTS.md and the plot go")
    parser.add_argument("--sql-dir", type=Path, default=REPO / "sql", help="batch folders (default sql/)")
    parser.add_argument("--lock-timeout-ms", type=int, default=DEFAULTS.lock_timeout_ms)
    parser.add_argument("--lock-retries", type=int, default=DEFAULTS.lock_retries)
    return parser.parse_args(argv)


def retry_budget_s(settings: RunSettings) -> float:
    """The longest one step keeps retrying its lock before the engine gives up (upper end of the backoff)."""
    timeout_s = settings.lock_timeout_ms / 1000
    waits = sum(min(timeout_s * 2 ** attempt, MAX_BACKOFF_S) for attempt in range(settings.lock_retries))
    return (settings.lock_retries + 1) * timeout_s + waits


def project_apply(batch: Batch, settings: RunSettings, dsn: str) -> None:
    apply_batch(Target.from_dsn(dsn), batch, settings)


def run_all(server: LocalServer, template: Template, batch: Batch, settings: RunSettings) -> list[ScenarioRun]:
    def run(name: str, apply: Apply | None, **kwargs: float) -> ScenarioRun:
        print(f"scenario {name} ...", flush=True)
        return run_scenario(server, template, name, apply, batch=batch.name, timing=Timing(), **kwargs)

    project = run("project", partial(project_apply, batch, settings))
    naive_sql = naive_statements(batch.migration)
    naive = run("naive", partial(apply_naive, statements=naive_sql))
    baseline = run("baseline", None, window_s=project.apply_seconds)
    blocked = run("blocker", partial(project_apply, batch, settings), blocker_hold_s=BLOCKER_HOLD_S)
    long_hold = retry_budget_s(settings) + BLOCKER_HOLD_S
    blocked_long = run("blocker-long", partial(project_apply, batch, settings), blocker_hold_s=long_hold)
    return [baseline, project, naive, blocked, blocked_long]


def evaluate(runs: dict[str, ScenarioRun], settings: RunSettings) -> list[Goal]:
    project, naive = runs["project"].window(), runs["naive"].window()
    ratio = naive.max_ms / project.max_ms if project.max_ms else float("inf")
    short, long_ = runs["blocker"], runs["blocker-long"]
    return [
        Goal("project: batch applied (ledger row, every index valid, every foreign key validated)",
               _outcome(runs["project"]), _cleanly_applied(runs["project"])),
        Goal(f"project: max write latency during apply <= {MAX_PROJECT_LATENCY_MS:.0f} ms",
               f"{project.max_ms:.0f} ms", project.max_ms <= MAX_PROJECT_LATENCY_MS),
        Goal("project: zero failed writes during apply", str(project.failed), project.failed == 0),
        Goal(f"naive/project max write stall >= {MIN_STALL_RATIO:.0f}x (set for 2M rows)",
               f"{naive.max_ms:.0f} / {project.max_ms:.0f} ms = {ratio:.1f}x", ratio >= MIN_STALL_RATIO),
        _bounded_stall(f"blocker {short.blocker_hold_s:.0f} s", short, settings),
        _bounded_stall("blocker past the retry budget", long_, settings),
        Goal(f"blocker {short.blocker_hold_s:.0f} s: apply retries and completes after the blocker ends",
               _outcome(short), bool(short.applied) and _ended_after_release(short)),
        Goal("blocker past the retry budget: apply fails cleanly, nothing half-applied",
               _outcome(long_), long_.applied is False and long_.catalog.startswith("nothing half-applied")),
    ]


def _bounded_stall(label: str, run: ScenarioRun, settings: RunSettings) -> Goal:
    bound = settings.lock_timeout_ms + BLOCKER_SLACK_MS
    w = run.window()
    return Goal(f"{label}: no write waits longer than lock_timeout + {BLOCKER_SLACK_MS:.0f} ms = {bound:.0f} ms",
                  f"{w.max_ms:.0f} ms, {w.failed} failed", w.max_ms <= bound and w.failed == 0)


def _cleanly_applied(run: ScenarioRun) -> bool:
    return bool(run.applied) and "ledger rows 1," in run.catalog and run.catalog.endswith("unvalidated: none")


def _ended_after_release(run: ScenarioRun) -> bool:
    return run.blocker_released is not None and run.apply_end >= run.blocker_released


def _outcome(run: ScenarioRun) -> str:
    verdict = "applied" if run.applied else run.outcome.split(":")[1].strip()
    text = f"{verdict} in {run.apply_seconds:.1f} s"
    if run.blocker_released is not None:
        text += f" (blocker committed {run.blocker_released - run.apply_start:.1f} s after apply start)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_average = os.getloadavg()[0]
    batches = load_batches(args.sql_dir)
    baseline, batch = batches[0], batches[1]
    settings = RunSettings(stack="bench", lock_timeout_ms=args.lock_timeout_ms, lock_retries=args.lock_retries)
    with bench_server() as server:
        configure(server, FAST_LOAD, reload=True)
        print(f"seeding {args.rows:,} rows per table ...", flush=True)
        template = build_template(server, baseline, args.rows)
        make_durable(server)
        print(f"seeded in {template.seconds:.0f} s; running scenarios ...", flush=True)
        info = _info(server, template, batch, settings, load_average)
        runs = run_all(server, template, batch, settings)
    _write(args.out, info, runs, settings)
    return 0


def _info(server: LocalServer, template: Template, batch: Batch, settings: RunSettings, load_average: float) -> RunInfo:
    return RunInfo(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine=machine(server), rows=template.rows,
        seed_seconds=template.seconds, batch=batch.name, batch_sha256=batch.checksums["migration.sql"],
        lock_timeout_ms=settings.lock_timeout_ms, lock_retries=settings.lock_retries,
        retry_budget_s=retry_budget_s(settings), load_average=load_average,
    )


def _write(out: Path, info: RunInfo, runs: list[ScenarioRun], settings: RunSettings) -> None:
    by_name = {r.name: r for r in runs}
    targets = evaluate(by_name, settings)
    plot_name = f"latency-{info.rows}.png"
    out.mkdir(parents=True, exist_ok=True)
    plot(out / plot_name, info.rows, [by_name["project"], by_name["naive"], by_name["blocker"]])
    write_samples(out / "out", info.rows, runs)
    write_results(out / "RESULTS.md", info, runs, targets, plot_name)
    for t in targets:
        print(f"{'met   ' if t.met else 'MISSED'} {t.text}: {t.measured}")
    print(f"wrote {out / 'RESULTS.md'} and {out / plot_name}")


if __name__ == "__main__":
    sys.exit(main())
