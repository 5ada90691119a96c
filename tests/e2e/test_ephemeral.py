"""Ephemeral stacks and the rollback rehearsal through `python -m infra.pipeline` (what `make ephemeral-up`,
`ephemeral-down` and `rehearse` run), with the real Pulumi CLI, the real pulumi-postgresql plugin for roles, and
the real pg_dump/pg_restore of the server's version."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from infra.migrations.target import Target
from tests.e2e.access_stack import AccessStack
from tests.e2e.project import ROOT, ProjectStack
from tests.pg import connect, drop_database

pytestmark = pytest.mark.slow

LEAD_SOURCE = 'ALTER TABLE "Lead" ADD COLUMN "source" TEXT;\nCREATE INDEX "Lead_source_idx" ON "Lead" ("source");\n'


def pipeline(project: ProjectStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m infra.pipeline …` in the project copy, with its backend, as the Makefile runs it."""
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "infra.pipeline", *args],
                          cwd=project.workdir, env=project.env, capture_output=True, text=True, check=False)


def stacks(project: ProjectStack) -> set[str]:
    out = subprocess.run(["pulumi", "stack", "ls", "--json"], cwd=project.workdir, env=project.env,
                         capture_output=True, text=True, check=True).stdout
    return {s["name"] for s in json.loads(out)}


def databases(server: Target, like: str) -> list[str]:
    with connect(server) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]


def roles(server: Target, like: str) -> list[str]:
    with connect(server) as conn:
        return [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1", (like,))]


def ledger(target: Target) -> list[tuple[str, str]]:
    with connect(target) as conn:
        return conn.execute("SELECT batch, stack FROM schema_ledger.batch ORDER BY batch").fetchall()


@pytest.fixture
def cleanup(pg_admin: Target) -> Iterator[list[tuple[ProjectStack, str, str]]]:
    """(project, ephemeral stack, its database) to remove after the test, whatever it left behind."""
    made: list[tuple[ProjectStack, str, str]] = []
    yield made
    for project, stack, database in made:
        for args in (["state", "unprotect", "--all", "--yes"], ["destroy", "--yes", "--skip-preview"], ["stack", "rm", "--force", "--yes"]):
            subprocess.run(["pulumi", *args, "--stack", stack, "--non-interactive"], cwd=project.workdir, env=project.env,
                           capture_output=True, text=True, check=False)
        drop_database(pg_admin, database)


@pytest.fixture
def base_with_roles(make_access_stack: Callable[..., AccessStack], pg_admin: Target) -> AccessStack:
    """A staging-like stack (roles, a CREATEROLE admin) whose admin may also create databases; never brought up."""
    stack = make_access_stack()
    with connect(pg_admin) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(stack.admin.user)))
    return stack


def test_the_ephemeral_lifecycle_creates_rehearses_and_removes_database_roles_and_stack(
        base_with_roles: AccessStack, pg_admin: Target, cleanup: list[tuple[ProjectStack, str, str]]) -> None:
    base = base_with_roles
    project, name = base.project, base.project.stack.name
    database = f"{base.target.dbname}_pr_7"
    cleanup.append((project, "pr-7", database))
    ephemeral = base.target.with_database(database)

    created = pipeline(project, "up", "--pr", "7", "--base", name)
    assert created.returncode == 0, created.stderr
    assert ledger(ephemeral) == [("0000_baseline", "pr-7"), ("0001_add_memory_entities", "pr-7")]
    assert roles(pg_admin, f"{base.prefix}\\_%\\_pr\\_7") == sorted(
        f"{base.prefix}_{kind}_pr_7" for kind in ("app", "kim", "migrator", "readonly"))
    marked = yaml.safe_load((project.workdir / "Pulumi.pr-7.yaml").read_text())["config"]["junkquote-db:ephemeral"]
    assert str(marked).lower() == "true"

    rehearsed = pipeline(project, "rehearse", "--pr", "7", "--base", name)
    assert rehearsed.returncode == 0, rehearsed.stderr
    assert "rollback rehearsal of stack 'pr-7' passed" in rehearsed.stdout
    assert ledger(ephemeral) == [("0000_baseline", "pr-7"), ("0001_add_memory_entities", "pr-7")]

    removed = pipeline(project, "down", "--pr", "7", "--base", name)
    assert removed.returncode == 0, removed.stderr
    assert databases(pg_admin, database) == []
    assert roles(pg_admin, "%\\_pr\\_7") == []
    assert "pr-7" not in stacks(project)
    assert not (project.workdir / "Pulumi.pr-7.yaml").exists()
    for secret in (base.secrets.admin,):
        assert secret not in created.stdout + created.stderr + rehearsed.stdout + rehearsed.stderr + removed.stdout + removed.stderr
    again = pipeline(project, "down", "--pr", "7", "--base", name)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_a_rehearsal_from_a_pg_dump_catches_a_rollback_that_leaves_a_column_behind(
        make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target, tmp_path: Path,
        cleanup: list[tuple[ProjectStack, str, str]]) -> None:
    backups = tmp_path / "backups"
    source = make_stack(migrations={"backupBeforeApply": str(backups)})
    source.stack.up(on_output=lambda _: None)
    assert [p.name for p in backups.iterdir()] == [Path(source.outputs()["preApplyBackup"]).name]
    source.add_batch("0002_lead_source", LEAD_SOURCE, rollback='DROP INDEX IF EXISTS "Lead_source_idx";\n')
    name = source.stack.name
    database = f"{db_target.dbname}_pr_8"
    cleanup.append((source, "pr-8", database))

    rehearsed = pipeline(source, "rehearse", "--pr", "8", "--base", name, "--restore-from", name)

    assert rehearsed.returncode == 1, rehearsed.stdout
    assert "the backup restores" in rehearsed.stdout, rehearsed.stderr
    error = rehearsed.stderr.strip()
    assert error.startswith("error: rollback rehearsal of stack 'pr-8' failed")
    assert 'column public."Lead".source: left behind' in error
    ephemeral = db_target.with_database(database)
    # The source's ledger came with the dump: its batches stay recorded as the source's; only 0002 ran and rolled back.
    assert ledger(ephemeral) == [("0000_baseline", name), ("0001_add_memory_entities", name)]
    assert ledger(db_target) == [("0000_baseline", name), ("0001_add_memory_entities", name)]

    removed = pipeline(source, "down", "--pr", "8", "--base", name)
    assert removed.returncode == 0, removed.stderr
    assert databases(pg_admin, database) == []


def test_a_run_that_failed_halfway_finishes_when_run_again(
        make_stack: Callable[..., ProjectStack], db_target: Target, pg_admin: Target,
        cleanup: list[tuple[ProjectStack, str, str]]) -> None:
    base = make_stack()
    name = base.stack.name
    database = f"{db_target.dbname}_pr_9"
    cleanup.append((base, "pr-9", database))
    batch = base.add_batch("0002_lead_source", 'ALTER TABLE "Nope" ADD COLUMN "source" TEXT;\n',
                           rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS "source";\n')

    failed = pipeline(base, "up", "--pr", "9", "--base", name)
    assert failed.returncode == 1
    assert "batch '0002_lead_source' migration.sql:1 failed" in failed.stderr
    ephemeral = db_target.with_database(database)
    assert ledger(ephemeral) == [("0000_baseline", "pr-9"), ("0001_add_memory_entities", "pr-9")]

    (batch / "migration.sql").write_text('ALTER TABLE "Lead" ADD COLUMN "source" TEXT;\n')
    resumed = pipeline(base, "up", "--pr", "9", "--base", name)
    assert resumed.returncode == 0, resumed.stderr
    assert [b for b, _ in ledger(ephemeral)] == ["0000_baseline", "0001_add_memory_entities", "0002_lead_source"]

    with connect(ephemeral) as conn:  # a view made by hand stops the rollback of 0001 halfway through `down`
        conn.execute('CREATE VIEW customer_names AS SELECT name FROM "Customer"')
    stopped = pipeline(base, "down", "--pr", "9", "--base", name)
    assert stopped.returncode == 1
    assert "rolling back batch '0001_add_memory_entities' stopped" in stopped.stderr
    assert databases(pg_admin, database) == [database] and "pr-9" in stacks(base)

    with connect(ephemeral) as conn:
        conn.execute("DROP VIEW customer_names")
    finished = pipeline(base, "down", "--pr", "9", "--base", name)
    assert finished.returncode == 0, finished.stderr
    assert databases(pg_admin, database) == [] and "pr-9" not in stacks(base)


def test_the_commands_refuse_a_stack_that_is_not_ephemeral_and_change_nothing(
        make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    plain = make_stack()
    plain.stack.up(on_output=lambda _: None)
    protected = make_stack(migrations={"protected": True}, extra={"ephemeral": True})
    marked_prod = make_stack(extra={"ephemeral": True})

    cases = [
        (plain, ["down", "--stack", plain.stack.name], "its config does not mark it ephemeral"),
        (plain, ["rehearse", "--stack", plain.stack.name], "its config does not mark it ephemeral"),
        (protected, ["down", "--stack", protected.stack.name], "its config sets migrations.protected: true"),
        (marked_prod, ["down", "--stack", "prod"], "'prod': it is a shared stack"),
        (marked_prod, ["up", "--stack", "staging"], "'staging': it is a shared stack"),
        (plain, ["down", "--pr", "1", "--base", "pr-1"], "'pr-1': it is a shared stack"),
    ]
    for project, args, reason in cases:
        done = pipeline(project, *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: refusing to touch stack") and reason in lines[0]
        assert "pass PR=<number>" in lines[0]
    assert [b for b, _ in ledger(db_target)] == ["0000_baseline", "0001_add_memory_entities"]
    assert plain.stack.name in stacks(plain)


def test_a_copy_restored_from_a_stack_with_roles_hands_the_tables_to_its_own_migrator(
        base_with_roles: AccessStack, pg_admin: Target, cleanup: list[tuple[ProjectStack, str, str]]) -> None:
    base = base_with_roles
    project, name = base.project, base.project.stack.name
    project.stack.up(on_output=lambda _: None)
    project.add_batch("0002_lead_source", LEAD_SOURCE.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY"),
                      rollback='DROP INDEX IF EXISTS "Lead_source_idx";\nALTER TABLE "Lead" DROP COLUMN IF EXISTS "source";\n')
    database = f"{base.target.dbname}_pr_11"
    cleanup.append((project, "pr-11", database))

    created = pipeline(project, "up", "--pr", "11", "--base", name, "--restore-from", name)

    assert created.returncode == 0, created.stderr
    assert f"restored objects handed over to {base.prefix}_migrator_pr_11" in created.stdout
    ephemeral = base.target.with_database(database)
    assert ledger(ephemeral)[-1] == ("0002_lead_source", "pr-11")  # it altered "Lead", as the copy's migrator
    with connect(ephemeral) as conn:
        owners = {r[0] for r in conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
    assert owners == {f"{base.prefix}_migrator_pr_11"}
    removed = pipeline(project, "down", "--pr", "11", "--base", name)
    assert removed.returncode == 0, removed.stderr
    assert databases(pg_admin, database) == [] and roles(pg_admin, "%\\_pr\\_11") == []
