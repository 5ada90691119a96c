"""`pulumi up` killed with SIGKILL mid-batch: the next run converges, nothing is applied twice.

Every kill lands while the run is parked on something the test holds (an advisory lock a step waits for,
a snapshot that CREATE INDEX CONCURRENTLY must wait out), which the test sees in pg_locks before it kills;
it lets go only afterwards. No kill is timed with a sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import psycopg
import pytest

from infra.migrations.lock import LOCK_KEYS
from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack
from tests.pg import connect
from tests.support.waiting import DEADLINE_S, backend_gone, lock_waits, wait_until

pytestmark = pytest.mark.slow

TABLE_ROWS = 200_000
PARK_KEY = 4242  # the advisory lock a test holds; a step that asks for it waits until the test lets go
PARKED_STEP = 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nSELECT pg_advisory_xact_lock(4242);\n'
QUOTE_EXISTS = "SELECT 'quote_exists' AS check_name, to_regclass('\"Quote\"') IS NOT NULL AS ok, 'table Quote' AS detail;"
# The parked step waits for the test, not for lock_timeout.
PATIENT = {"lockTimeout": "10min"}


class UpRun:
    """A `pulumi up` in its own session, and every process it started (remembered, so orphans can be found)."""

    def __init__(self, stack: ProjectStack) -> None:
        self.proc = subprocess.Popen(
            ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", stack.stack.name],
            cwd=stack.workdir, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}

    def family(self) -> list[psutil.Process]:
        """The CLI's descendants now (language host, program, dynamic provider), remembered from here on."""
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        return list(self.seen.values())

    def provider(self) -> psutil.Process:
        found = [p for p in self.family() if "pulumi.dynamic" in " ".join(_cmdline(p)) and "python" in p.name()]
        assert len(found) == 1, f"one dynamic provider process, found {found}"
        return found[0]

    def kill_cli(self) -> None:
        """SIGKILL the CLI alone; what it started lives on as orphans."""
        self.family()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE_S)

    def kill_tree(self) -> None:
        """SIGKILL the CLI and every process it started."""
        self.family()
        self.kill_cli()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        if self.proc.poll() is None:
            self.kill_cli()
        for process in self.seen.values():
            try:
                process.kill()  # psutil checks the pid still belongs to that process
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(self.seen.values()), timeout=DEADLINE_S)


@contextmanager
def running_up(stack: ProjectStack) -> Iterator[UpRun]:
    """A `pulumi up` in the background; whatever is left of it is killed on the way out, also after a failure."""
    run = UpRun(stack)
    try:
        yield run
    finally:
        run.kill_leftovers()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@contextmanager
def held_advisory_lock(target: Target) -> Iterator[psycopg.Connection]:
    with connect(target) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (PARK_KEY,))
        yield holder


def parked_backend(admin: psycopg.Connection, dbname: str, query_like: str, locktype: str) -> int:
    """The pid of the run's backend once it waits for what the test holds."""
    (pid, _), = wait_until(lambda: lock_waits(admin, dbname, query_like, locktype),
                           f"a statement like {query_like!r} to wait for the test ({locktype} lock)")
    return pid


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


def migration_lock_held(admin: psycopg.Connection, dbname: str) -> bool:
    return admin.execute(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND objsubid = 2
             AND database = (SELECT oid FROM pg_database WHERE datname = %s)""", (*LOCK_KEYS, dbname)).fetchone() != (0,)


def assert_converged(stack: ProjectStack, target: Target) -> None:
    with connect(target) as conn:
        ledger = [r[0] for r in conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY batch")]
        steps_left = conn.execute("SELECT count(*) FROM schema_ledger.batch_step").fetchone()[0]
        invalid = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0]
        advisory = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
    [history] = [r for r in _state_resources(stack) if r["type"].endswith(":SchemaHistory")]
    assert ledger == [b["name"] for b in history["outputs"]["batches"]], "ledger and Pulumi state agree"
    assert steps_left == 0 and invalid == 0 and advisory == 0


def _state_resources(stack: ProjectStack) -> list[dict]:
    exported = json.loads(stack.cli("stack", "export", check=True).stdout)
    return exported["deployment"].get("resources", [])


def test_killed_during_the_transactional_part_the_next_up_converges(make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target) -> None:
    stack = make_stack(batches=["0000_baseline"], migrations=PATIENT)
    stack.stack.up(on_output=lambda _: None)
    stack.add_batch("0001_parked_step", PARKED_STEP, QUOTE_EXISTS, 'DROP TABLE IF EXISTS "Quote";')

    with connect(pg_admin) as admin, held_advisory_lock(db_target):
        with running_up(stack) as run:
            pid = parked_backend(admin, db_target.dbname, "SELECT pg_advisory_xact_lock%", "advisory")
            run.kill_tree()
        wait_until(lambda: backend_gone(admin, pid), "the server to end the killed run's session")
    with connect(db_target) as conn:
        assert conn.execute("SELECT to_regclass('\"Quote\"')").fetchone() == (None,), "the killed step rolled back"

    converge(stack)

    assert_converged(stack, db_target)
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = '0001_parked_step'").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('\"Quote\"') IS NOT NULL").fetchone() == (True,)


def test_killed_during_create_index_concurrently_the_next_up_converges(make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target) -> None:
    stack = make_stack(batches=["0000_baseline"])
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        conn.execute(f"""INSERT INTO "Lead" ("id", "name", "phone", "updatedAt")
                         SELECT 'lead-' || g, 'Lead ' || g, '555-' || g, now() FROM generate_series(1, {TABLE_ROWS}) g""")
    shutil.copytree(ROOT / "sql" / "0001_add_memory_entities", stack.workdir / "sql" / "0001_add_memory_entities")

    with connect(pg_admin) as admin, connect(db_target) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM pg_class")  # an open snapshot the index build must wait out
        with running_up(stack) as run:
            pid = parked_backend(admin, db_target.dbname, "CREATE INDEX CONCURRENTLY%Lead_customer_id_idx%", "virtualxid")
            run.kill_tree()
        # The server aborts the build once it sees the client gone (client_connection_check_interval).
        wait_until(lambda: backend_gone(admin, pid), "the server to abort the killed index build")
        reader.execute("ROLLBACK")
    with connect(db_target) as conn:
        invalid = conn.execute("""SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid = '"Lead_customer_id_idx"'::regclass""").fetchone()
        finished = conn.execute("SELECT count(*) FROM schema_ledger.batch_step WHERE batch = '0001_add_memory_entities'").fetchone()
    assert invalid == (1,), "the killed build left an INVALID index behind"
    assert finished == (8,), "steps 1-8 were recorded before the kill"

    converge(stack)

    assert_converged(stack, db_target)
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = '0001_add_memory_entities'").fetchone() == (1,)


def test_after_a_kill_of_the_cli_alone_the_orphaned_provider_stops_at_the_next_step_and_exits(make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target) -> None:
    stack = make_stack(batches=["0000_baseline"], migrations=PATIENT)
    stack.stack.up(on_output=lambda _: None)
    stack.add_batch("0001_parked_step", PARKED_STEP + 'ALTER TABLE "Lead" ADD COLUMN "quote_id" TEXT;\n', QUOTE_EXISTS,
                    'ALTER TABLE "Lead" DROP COLUMN IF EXISTS "quote_id";\nDROP TABLE IF EXISTS "Quote";\n')

    with connect(pg_admin) as admin, held_advisory_lock(db_target) as holder, running_up(stack) as run:
        parked_backend(admin, db_target.dbname, "SELECT pg_advisory_xact_lock%", "advisory")
        provider = run.provider()
        run.kill_cli()
        holder.execute("SELECT pg_advisory_unlock(%s)", (PARK_KEY,))  # step 1 finishes; step 2 must not start
        wait_until(lambda: not migration_lock_held(admin, db_target.dbname), "the orphaned run to release the migration lock")
        with connect(db_target) as conn:
            finished = [r[0] for r in conn.execute("SELECT step FROM schema_ledger.batch_step WHERE batch = '0001_parked_step' AND file = 'migration.sql'")]
            quote_id = conn.execute("""SELECT count(*) FROM information_schema.columns WHERE column_name = 'quote_id'""").fetchone()
            recorded = conn.execute("SELECT count(*) FROM schema_ledger.batch WHERE batch = '0001_parked_step'").fetchone()
        assert finished == [1], "the step in progress finished and was recorded"
        assert quote_id == (0,) and recorded == (0,), "no step after the kill ran"
        gone, _ = psutil.wait_procs([provider], timeout=DEADLINE_S)
        assert gone, "the orphaned provider exited by itself"

    converge(stack)

    assert_converged(stack, db_target)
    with connect(db_target) as conn:
        assert conn.execute("""SELECT count(*) FROM information_schema.columns WHERE column_name = 'quote_id'""").fetchone() == (1,)
