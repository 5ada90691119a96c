"""How a no-op `pulumi preview` scales with the number of applied batches.

Builds two copies of the project in a temp dir: one with batch 0000 only, one with 0000 plus 49 generated
trivial batches (each creates and validates one small table), applies both with `pulumi up` against their own
databases on a throwaway PostgreSQL, then times `pulumi preview` (nothing pending) several times on each and
records the medians in bench/RESULTS.md.

    python -m bench.preview [--runs 5] [--batches 50]
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


def trivial_batch(root: Path, number: int) -> None:
    folder = root / "sql" / f"{number:04d}_generated_{number}"
    folder.mkdir(parents=True)
    table = f"Generated{number}"
    (folder / "migration.sql").write_text(f'CREATE TABLE "{table}" ("id" TEXT PRIMARY KEY, "note" TEXT);\n')
    (folder / "validation.sql").write_text(
        f"SELECT 'table_{number}_exists' AS check_name, to_regclass('\"{table}\"') IS NOT NULL AS ok, 'table {table}' AS detail;\n")
    (folder / "rollback.sql").write_text(f'DROP TABLE IF EXISTS "{table}";\n')


def timed_previews(stack, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = stack.cli("preview", "--expect-no-changes")
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"preview was not a no-op:\n{result.stdout}\n{result.stderr}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    cli = cli_bin_dir()
    with tempfile.TemporaryDirectory(prefix="jq-preview-") as tmp:
        root = Path(tmp)
        server = LocalServer(root / "pg", free_port(), throwaway=True)
        server.start()
        try:
            admin = Target.from_dsn(server.dsn())
            medians = {}
            for count in (1, args.batches):
                workdir = copy_project(root / f"p{count}", batches=["0000_baseline"])
                for number in range(1, count):
                    trivial_batch(workdir, number)
                db = create_database(admin, prefix=f"preview{count}")
                stack = new_stack(workdir, root / "state", cli, {"database": database_config(db)})
                stack.stack.up(on_output=lambda _: None)
                timed_previews(stack, 1)  # warm caches (bytecode, plugin start-up)
                medians[count] = statistics.median(timed_previews(stack, args.runs))
        finally:
            server.stop()
    write_results(medians, args)


def write_results(medians: dict[int, float], args: argparse.Namespace) -> None:
    one, many = medians[1], medians[args.batches]
    ratio = many / one
    version = subprocess.run([str(cli_bin_dir() / "pulumi"), "version"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    body = "\n".join([
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}); "
        f"median of {args.runs} runs of `pulumi preview --expect-no-changes` after one warm-up, Pulumi CLI {version}.",
        "",
        "| applied batches | no-op preview (median) |",
        "|---:|---:|",
        f"| 1 | {one:.2f} s |",
        f"| {args.batches} | {many:.2f} s |",
        "",
        f"Ratio {ratio:.2f}x (target: at most 2x): {'met' if ratio <= 2 else 'missed'}.",
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
