"""Failure modes through the real Pulumi CLI: each leaves the database whole and says what to do."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator

import pytest
from psycopg import sql
from pulumi import automation as auto

from infra.migrations.target import Target
from tests.e2e.project import ProjectStack, database_config
from tests.pg import connect
from tests.support.catalog import snapshot
from tests.support.waiting import active_backend, wait_until

pytestmark = pytest.mark.slow

HOSTILE_PASSWORD = "pw'\"; DROP TABLE \"Lead\"; --"


def ledger_rows(target: Target) -> list[tuple[str, str]]:
    with connect(target) as conn:
        return conn.execute("SELECT batch, applied_at::text FROM schema_ledger.batch ORDER BY batch").fetchall()


def failure_text(err: auto.CommandError) -> str:
    return str(err)


@pytest.fixture
def applied(make_stack: Callable[..., ProjectStack]) -> ProjectStack:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)
    return stack


@pytest.fixture
def app_user(pg_admin: Target, db_target: Target) -> Iterator[Target]:
    """A password-authenticated owner of the test database (the superuser connects without one)."""
    name = f"owner_{db_target.dbname}"
    with connect(pg_admin) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(HOSTILE_PASSWORD)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db_target.dbname), sql.Identifier(name)))
    with connect(db_target) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(name)))
    yield Target(db_target.host, db_target.port, db_target.dbname, name, HOSTILE_PASSWORD)
    with connect(db_target) as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO postgres").format(sql.Identifier(name)))
    with connect(pg_admin) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_sql_error_mid_batch_names_batch_file_and_line_and_leaves_the_database_as_it_was(applied: ProjectStack, db_target: Target) -> None:
    with connect(db_target) as conn:
        before = snapshot(conn)
    applied.add_batch("0002_broken", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nALTER TABLE "Lead" ADD COLUMN "quote_id" TEXT;\nALTER TABLE "Nope" ADD COLUMN "x" TEXT;\n',
              rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS "quote_id";\nDROP TABLE IF EXISTS "Quote";\n')

    with pytest.raises(auto.CommandError) as failed:
        applied.stack.up(on_output=lambda _: None)

    assert "batch '0002_broken' migration.sql:3 failed: relation \"Nope\" does not exist" in failure_text(failed.value)
    assert "Traceback" not in failure_text(failed.value)
    with connect(db_target) as conn:
        assert snapshot(conn) == before
    (applied.workdir / "sql" / "0002_broken" / "migration.sql").write_text('CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nALTER TABLE "Lead" ADD COLUMN "quote_id" TEXT;\n')
    applied.stack.up(on_output=lambda _: None)
    assert [b for b, _ in ledger_rows(db_target)][-1] == "0002_broken"


def test_failed_validation_names_the_checks_and_undoes_the_batch(applied: ProjectStack, db_target: Target) -> None:
    with connect(db_target) as conn:
        before = snapshot(conn)
    applied.add_batch("0002_checked", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\n',
              "SELECT 'quote_has_amount' AS check_name, false AS ok, 'column amount missing' AS detail;",
              'DROP TABLE IF EXISTS "Quote";')

    with pytest.raises(auto.CommandError) as failed:
        applied.stack.up(on_output=lambda _: None)

    assert "batch '0002_checked' failed validation (1 checks): quote_has_amount: column amount missing; the batch was undone" in failure_text(failed.value)
    with connect(db_target) as conn:
        assert snapshot(conn) == before


def test_an_edited_applied_batch_fails_preview_and_up_with_the_checksum_message(applied: ProjectStack, db_target: Target) -> None:
    before = ledger_rows(db_target)
    migration = applied.workdir / "sql" / "0001_add_memory_entities" / "migration.sql"
    migration.write_text(migration.read_text().replace('"phone" TEXT,', '"phone" VARCHAR(32),', 1))

    for run in (applied.stack.preview, applied.stack.up):
        with pytest.raises(auto.CommandError, match="0001_add_memory_entities' migration.sql changed after it was applied .*add a new batch instead"):
            run(on_output=lambda _: None)
    assert ledger_rows(db_target) == before


def test_two_stacks_applying_the_same_database_at_once_apply_each_batch_once(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stacks = [make_stack(), make_stack()]
    errors: list[Exception] = []

    def up(stack: ProjectStack) -> None:
        try:
            stack.stack.up(on_output=lambda _: None)
        except auto.CommandError as err:
            errors.append(err)

    threads = [threading.Thread(target=up, args=(s,)) for s in stacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert [b for b, _ in ledger_rows(db_target)] == ["0000_baseline", "0001_add_memory_entities"]
    for stack in stacks:
        assert stack.outputs()["schemaVersion"] == "0001_add_memory_entities"


def test_a_password_with_quotes_works_and_never_appears_in_state_outputs_or_logs(make_stack: Callable[..., ProjectStack], app_user: Target, db_target: Target) -> None:
    stack = make_stack(database={**database_config(db_target), "user": app_user.user}, secrets={"password": HOSTILE_PASSWORD})
    seen: list[str] = []

    stack.stack.preview(on_output=seen.append, diff=True)
    stack.stack.up(on_output=seen.append, diff=True)
    stack.add_batch("0002_broken", "SELECT * FROM nowhere;")
    with pytest.raises(auto.CommandError) as failed:
        stack.stack.up(on_output=seen.append)
    shutil.rmtree(stack.workdir / "sql" / "0002_broken")
    exported = stack.cli("stack", "export", check=True).stdout
    outputs = stack.cli("stack", "output", "--json", check=True).stdout
    stack.stack.destroy(on_output=seen.append)

    assert ledger_rows(db_target) == []
    haystack = "\n".join(seen) + str(failed.value) + exported + outputs
    assert "pw'" not in haystack and HOSTILE_PASSWORD not in haystack
    with connect(db_target) as conn:
        assert conn.execute("SELECT to_regclass('\"Lead\"')").fetchone() == (None,)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ({"host": None}, "stack config junkquote-db:database.host is required"),
        ({"port": 1}, "cannot connect to 127.0.0.1:1/"),
        ({"host": "db.invalid"}, "cannot connect to db.invalid:"),
        ({"hostname": "x"}, "stack config junkquote-db:database.hostname is not a known setting"),
    ],
)
def test_bad_connection_config_fails_with_one_line_naming_the_key_or_target(make_stack: Callable[..., ProjectStack], db_target: Target, database: dict, expected: str) -> None:
    config = {k: v for k, v in {**database_config(db_target), **database}.items() if v is not None}
    stack = make_stack(database=config)

    result = stack.cli("preview")

    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_wrong_password_fails_naming_user_and_target_never_the_password(make_stack: Callable[..., ProjectStack], app_user: Target, db_target: Target) -> None:
    stack = make_stack(database={**database_config(db_target), "user": app_user.user}, secrets={"password": "not-the-password"})

    result = stack.cli("up", "--yes")

    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"password authentication failed for user '{app_user.user}' at {db_target.host}:{db_target.port}/{db_target.dbname}" in out
    assert "not-the-password" not in out and "Traceback" not in out


def test_an_unknown_stack_key_is_rejected(make_stack: Callable[..., ProjectStack]) -> None:
    stack = make_stack(extra={"lockTimeout": "1s"})
    result = stack.cli("preview")
    assert result.returncode != 0
    assert "stack config junkquote-db:lockTimeout is not a known setting" in result.stdout + result.stderr


def test_a_plaintext_password_in_config_is_refused(make_stack: Callable[..., ProjectStack]) -> None:
    stack = make_stack(extra={"password": "typed-in-clear"})
    result = stack.cli("preview")
    assert result.returncode != 0
    assert "junkquote-db:password must be a secret" in result.stdout + result.stderr
    assert "typed-in-clear" not in result.stdout + result.stderr


def test_a_sql_syntax_error_is_reported_at_preview_with_file_and_line(applied: ProjectStack, db_target: Target) -> None:
    applied.add_batch("0002_typo", 'CREATE TABLE "Quote" (\n  "id" TEXT PRIMARY KEY,\n  "amount" NUMERIC(10,2\n);\n')
    result = applied.cli("preview")
    assert result.returncode != 0
    assert "batch '0002_typo' migration.sql:4: syntax error" in result.stdout + result.stderr


def test_terminated_connection_mid_apply_is_a_clean_error_and_a_rerun_succeeds(applied: ProjectStack, db_target: Target, pg_admin: Target) -> None:
    batch = applied.add_batch("0002_slow", 'CREATE TABLE "Quote" ("id" TEXT PRIMARY KEY);\nSELECT pg_sleep(60);\nALTER TABLE "Lead" ADD COLUMN "quote_id" TEXT;\n',
                              rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS "quote_id";\nDROP TABLE IF EXISTS "Quote";\n')

    def terminate() -> None:  # as soon as step 1 is seen running, however long the CLI takes to get there
        with connect(pg_admin) as conn:
            pid = wait_until(lambda: active_backend(conn, db_target.dbname, "SELECT pg_sleep(60)%"), "step 1 to run")
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    killer = threading.Thread(target=terminate)
    killer.start()
    with pytest.raises(auto.CommandError) as failed:
        applied.stack.up(on_output=lambda _: None)
    killer.join()

    assert "was lost during migration.sql step 1 (line 2) of batch '0002_slow'" in failure_text(failed.value)
    # Step 1 never finished, so the batch may still change before it runs again.
    (batch / "migration.sql").write_text((batch / "migration.sql").read_text().replace("pg_sleep(60)", "pg_sleep(0)"))
    applied.stack.up(on_output=lambda _: None)
    assert [b for b, _ in ledger_rows(db_target)][-1] == "0002_slow"


def test_a_hostile_role_name_is_rejected_before_anything_runs(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    roles = {"migrator": {"name": 'x"; DROP TABLE "Lead"; --'}, "app": {"name": "jq_app"}, "readonly": {"name": "jq_ro"}}
    stack = make_stack(extra={"roles": roles}, secrets={"migratorPassword": "m", "appPassword": "a", "readonlyPassword": "r"})

    result = stack.cli("up", "--yes")

    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "stack config junkquote-db:roles.migrator.name 'x\"; DROP TABLE \"Lead\"; --' is not a valid role name" in out
    assert "Traceback" not in out
    with connect(db_target) as conn:
        assert conn.execute("SELECT to_regclass('schema_ledger.batch')").fetchone() == (None,), "nothing ran"
