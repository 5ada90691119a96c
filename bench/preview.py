"""How a no-op `pulumi preview` and `pulumi refresh` scale with the number of applied batches and tables.

Builds two copies of the project in a temp dir: one with batch 0000 only (the baseline's 3 tables), one with
0000 plus generated batches up to --batches: the first --tables of them each create and validate one small
table, the rest each add a column to one of those tables (as years of batches do). Applies both with
`pulumi up` against their own databases on a throwaway PostgreSQL, then times `pulumi preview` and
`pulumi refresh --preview-only` (nothing to change) several times on each, in the same run, and records the
medians in bench/RESULTS.md.

    python -m bench.preview [--runs 5] [--batches 200] [--tables 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from infra.localdb import LocalServer, free_port
from infra.migrations.target import Target
from tests.e2e.project import cli_bin_dir, copy_project, database_config, new_stack
from tests.pg import create_database

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "bench preview"


def trivial_batch(root: Path, number: int, tables: int) -> None:
    """Batches 1..tables each create a table; later ones each add a column to one of those tables."""
    folder = root / "sql" / f"{number:04d}_generated_{number}"
    folder.mkdir(parents=True)
    table = f"Generated{(number - 1) % tables + 1}"
    if number <= tables:
        migration = f'CREATE TABLE "{table}" ("id" TEXT PRIMARY KEY, "note" TEXT);\n'
        check = f"to_regclass('\"{table}\"') IS NOT NULL"
        rollback = f'DROP TABLE IF EXISTS "{table}";\n'
    else:
        column = f"c{number}"
        migration = f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT;\n'
        check = (f"EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = '{table}' "
                 f"AND column_name = '{column}')")
        rollback = f'ALTER TABLE "{table}" DROP COLUMN IF EXISTS "{column}";\n'
    (folder / "migration.sql").write_text(migration)
    (folder / "validation.sql").write_text(f"SELECT 'batch_{number}' AS check_name, {check} AS ok, '{table}' AS detail;\n")
    (folder / "rollback.sql").write_text(rollback)


NO_OP = {"preview": ("preview", "--expect-no-changes"),
         "refresh": ("refresh", "--preview-only", "--expect-no-changes")}


def timed(stack, command: str, runs: int) -> list[float]:
    times = []
    env = {k: v for k, v in stack.env.items() if k != "PULUMI_SKIP_CONFIRMATIONS"}  # --preview-only refuses --yes
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(["pulumi", *NO_OP[command], "--stack", stack.stack.name, "--non-interactive"],
                                cwd=stack.workdir, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{command} was not a no-op:\n{result.stdout}\n{result.stderr}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--tables", type=int, default=40)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    cli = cli_bin_dir()
    with tempfile.TemporaryDirectory(prefix="jq-preview-") as tmp:
        root = Path(tmp)
        server = LocalServer(root / "pg", free_port(), throwaway=True)
        server.start()
        try:
            admin = Target.from_dsn(server.dsn())
            medians: dict[tuple[str, int], float] = {}
            for count in (1, args.batches):
                workdir = copy_project(root / f"p{count}", batches=["0000_baseline"])
                for number in range(1, count):
                    trivial_batch(workdir, number, args.tables)
                db = create_database(admin, prefix=f"preview{count}")
                stack = new_stack(workdir, root / "state", cli, {"database": database_config(db)})
                stack.stack.up(on_output=lambda _: None)
                for command in NO_OP:
                    timed(stack, command, 1)  # warm caches (bytecode, plugin start-up)
                    medians[command, count] = statistics.median(timed(stack, command, args.runs))
        finally:
            server.stop()
    write_results(medians, args, load)


def write_results(medians: dict[tuple[str, int], float], args: argparse.Namespace, load: float) -> None:
    version = subprocess.run([str(cli_bin_dir() / "pulumi"), "version"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    body = "\n".join([
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), load average "
        f"{load:.2f} before the run; "
        f"median of {args.runs} runs of each no-op command after one warm-up, Pulumi CLI {version}; the large "
        f"project has {args.batches} applied batches and {args.tables} tables besides the baseline's 3.",
        "",
        f"| command | 1 batch, 3 tables | {args.batches} batches, {args.tables + 3} tables | ratio (target at most 2x) |",
        "|---|---:|---:|---:|",
        *(f"| `pulumi {' '.join(NO_OP[c])}` | {medians[c, 1]:.2f} s | {medians[c, args.batches]:.2f} s | "
          f"{medians[c, args.batches] / medians[c, 1]:.2f}x, {'met' if medians[c, args.batches] <= 2 * medians[c, 1] else 'missed'} |"
          for c in NO_OP),
    ])
    RESULTS.write_text(upsert_section(RESULTS.read_text(), body))
    print(body)


def upsert_section(text: str, body: str) -> str:
    """Replace this benchmark's marked section of RESULTS.md, or append it."""
    begin, end = f"<!-- {SECTION} -->", f"<!-- /{SECTION} -->"
    block = f"{begin}\n### Measured\n\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"


if __name__ == "__main__":
    main()
