"""`pulumi up` killed with SIGKILL mid-batch: the next run converges, nothing is applied twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import psutil
import pytest

from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack
from tests.pg import connect

pytestmark = pytest.mark.slow

BIG_TABLE_ROWS = 3_000_000


def start_up(stack: ProjectStack) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", stack.stack.name],
        cwd=stack.workdir, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )


def kill_hard(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the CLI and every process it started (language host, program, dynamic provider)."""
    family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def wait_for_query(admin: Target, dbname: str, pattern: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with connect(admin) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND query ILIKE %s AND state = 'active'",
                               (dbname, pattern)).fetchone()
            if row:
                return
            time.sleep(0.05)
    pytest.fail(f"no query like {pattern!r} started within {timeout_s}s")


def converge(stack: ProjectStack) -> str:
    """What an operator does after a killed run: cancel (drops the dead run's state lock), refresh (clears
    the interrupted create), then up."""
    cancel = stack.cli("cancel", "--yes")
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    refresh = stack.cli("refresh", "--yes", "--clear-pending-creates")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    up = stack.cli("up", "--yes")
    assert up.returncode == 0, up.stdout + up.stderr
    return up.stdout


def assert_converged(stack: ProjectStack, target: Target) -> None:
    with connect(target) as conn:
        ledger = [r[0] for r in conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY batch")]
        steps_left = conn.execute("SELECT count(*) FROM schema_ledger.batch_step").fetchone()[0]
        invalid = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0]
        advisory = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
    state = [r["urn"].rsplit("::", 1)[1] for r in _state_resources(stack) if r["type"].endswith(":Migration")]
    assert ledger == sorted(state), "ledger and Pulumi state agree"
    assert steps_left == 0 and invalid == 0 and advisory == 0


def _state_resources(stack: ProjectStack) -> list[dict]:
    import json

    exported = json.loads(stack.cli("stack", "export", check=True).stdout)
    return exported["deployment"].get("resources", [])


def test_killed_during_the_transactional_part_the_next_up_converges(make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target) -> None:
    stack = make_stack(batches=["0000_baseline"])
    stack.stack.up(on_output=lambda _: None)
    slow = stack.add_batch("0001_slow_step", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nSELECT pg_sleep(30);\n',
                           "SELECT 'quote_exists' AS check_name, to_regclass('\"Quote\"') IS NOT NULL AS ok, 'table Quote' AS detail;",
                           'DROP TABLE IF EXISTS "Quote";')

    proc = start_up(stack)
    wait_for_query(pg_admin, db_target.dbname, "SELECT pg_sleep(30)%")
    kill_hard(proc)
    # Never applied, so the batch may still change before it runs again.
    (slow / "migration.sql").write_text('CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nSELECT pg_sleep(0);\n')
    converge(stack)

    assert_converged(stack, db_target)
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = '0001_slow_step'").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('\"Quote\"') IS NOT NULL").fetchone() == (True,)


def test_killed_during_create_index_concurrently_on_a_big_table_the_next_up_converges(make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target) -> None:
    stack = make_stack(batches=["0000_baseline"])
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        conn.execute(f"""INSERT INTO "Lead" ("id", "name", "phone", "updatedAt")
                         SELECT 'lead-' || g, 'Lead ' || g, '555-' || g, now() FROM generate_series(1, {BIG_TABLE_ROWS}) g""")
        conn.execute('ANALYZE "Lead"')
    shutil.copytree(ROOT / "sql" / "0001_add_memory_entities", stack.workdir / "sql" / "0001_add_memory_entities")

    proc = start_up(stack)
    wait_for_query(pg_admin, db_target.dbname, "CREATE INDEX CONCURRENTLY%Lead_customer_id_idx%")
    time.sleep(0.3)
    kill_hard(proc)
    time.sleep(2)  # the server notices the dead client within client_connection_check_interval
    with connect(db_target) as conn:
        invalid = conn.execute("""SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid = '"Lead_customer_id_idx"'::regclass""").fetchone()
        finished = conn.execute("SELECT count(*) FROM schema_ledger.batch_step WHERE batch = '0001_add_memory_entities'").fetchone()
    assert invalid == (1,), "the killed build left an INVALID index behind"
    assert finished == (8,), "steps 1-8 were recorded before the kill"

    converge(stack)

    assert_converged(stack, db_target)
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = '0001_add_memory_entities'").fetchone() == (1,)
