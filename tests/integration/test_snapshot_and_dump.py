"""The rehearsal's catalog snapshot and the pg_dump/pg_restore round trip, on a real PostgreSQL (18, or 15 with
PG_TEST_DSN and the machine's PostgreSQL 15 binaries)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from infra.migrations.dump import DumpFailed, dump_database, restore_database
from infra.migrations.snapshot import differences, take_snapshot
from infra.migrations.target import Target
from tests.pg import connect, create_database, drop_database

SCHEMA = """
CREATE TYPE "Mood" AS ENUM ('calm', 'busy');
CREATE TABLE "Lead" (id text PRIMARY KEY, name text NOT NULL DEFAULT 'x', mood "Mood");
CREATE INDEX "Lead_name_idx" ON "Lead" (name);
CREATE SCHEMA side;
CREATE SEQUENCE side.counter START 5;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER lead_touch BEFORE UPDATE ON "Lead" FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW lead_names AS SELECT name FROM "Lead";
"""


def changes_after(db: psycopg.Connection, statement: str) -> list[str]:
    before = take_snapshot(db)
    db.execute(statement)
    return [str(c) for c in differences(before, take_snapshot(db))]


@pytest.fixture
def shaped(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(SCHEMA)
    return db


def test_the_same_schema_read_twice_has_no_differences(shaped: psycopg.Connection) -> None:
    assert differences(take_snapshot(shaped), take_snapshot(shaped)) == []


@pytest.mark.parametrize(("statement", "expected"), [
    ('ALTER TABLE "Lead" ADD COLUMN source text', 'column public."Lead".source: left behind'),
    ('ALTER TABLE "Lead" ALTER COLUMN name SET DEFAULT \'y\'', "column public.\"Lead\".name: default 'x'::text → 'y'::text"),
    ('DROP INDEX "Lead_name_idx"', 'index public."Lead".Lead_name_idx: gone'),
    ("ALTER TYPE \"Mood\" ADD VALUE 'sad'", 'enum public."Mood": labels (calm, busy) → (calm, busy, sad)'),
    ("CREATE FUNCTION later() RETURNS int LANGUAGE sql AS 'SELECT 1'", "function public.later(): left behind"),
    ('DROP TRIGGER lead_touch ON "Lead"', 'trigger public.Lead.lead_touch: gone'),
    ("CREATE OR REPLACE VIEW lead_names AS SELECT name, id FROM \"Lead\"", "view public.lead_names: definition differs"),
    ("ALTER SEQUENCE side.counter INCREMENT 2", "sequence side.counter: definition differs"),
    ("CREATE SCHEMA leftover", 'schema "leftover": left behind'),
])
def test_a_snapshot_names_each_difference_a_rollback_can_leave(shaped: psycopg.Connection, statement: str, expected: str) -> None:
    assert expected in changes_after(shaped, statement)


def test_the_ledger_schema_is_not_compared(shaped: psycopg.Connection) -> None:
    assert changes_after(shaped, "CREATE SCHEMA schema_ledger; CREATE TABLE schema_ledger.batch (batch text)") == []


def test_a_schema_dump_restores_into_an_empty_database_with_the_same_catalog(
        shaped: psycopg.Connection, db_target: Target, pg_admin: Target, tmp_path: Path) -> None:
    shaped.execute("INSERT INTO \"Lead\" VALUES ('1', 'kim', 'calm')")
    copy = create_database(pg_admin)
    try:
        dump = dump_database(db_target, tmp_path / "source.dump")
        restore_database(copy, dump.path)
        with connect(copy) as restored:
            assert differences(take_snapshot(shaped), take_snapshot(restored)) == []
            assert restored.execute('SELECT count(*) FROM "Lead"').fetchone() == (0,)  # schema only by default
    finally:
        drop_database(pg_admin, copy.dbname)


def test_a_restore_that_fails_leaves_the_database_as_it_was(
        shaped: psycopg.Connection, db_target: Target, pg_admin: Target, tmp_path: Path) -> None:
    dump = dump_database(db_target, tmp_path / "source.dump", data="full")
    copy = create_database(pg_admin)
    try:
        with connect(copy) as conn:
            conn.execute("CREATE TABLE lead_names (x int)")  # the dump's view of that name cannot be created
        with pytest.raises(DumpFailed, match="pg_restore of .* failed: .*lead_names.*; the database was left as it was"):
            restore_database(copy, dump.path)
        with connect(copy) as conn:
            assert conn.execute("SELECT to_regclass('\"Lead\"') IS NULL").fetchone() == (True,)
    finally:
        drop_database(pg_admin, copy.dbname)


def test_the_password_reaches_pg_dump_in_its_environment_never_on_its_command_line(
        db_target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append((args, dict(kwargs["env"])))  # type: ignore[arg-type]
        return real_run(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("infra.migrations.dump.subprocess.run", spy)
    secret = "s3cret'pw; --"
    dump_database(replace(db_target, password=secret), tmp_path / "x.dump")
    (args, env), = seen
    assert Path(args[0]).name == "pg_dump" and all(secret not in a for a in args)
    assert env["PGPASSWORD"] == secret


def test_a_schema_dump_brings_the_ledgers_rows_and_no_other_rows(
        shaped: psycopg.Connection, db_target: Target, pg_admin: Target, tmp_path: Path) -> None:
    shaped.execute("INSERT INTO \"Lead\" VALUES ('1', 'kim', 'calm')")
    shaped.execute("CREATE SCHEMA schema_ledger; CREATE TABLE schema_ledger.batch (batch text); "
                   "INSERT INTO schema_ledger.batch VALUES ('0000_baseline')")
    copy = create_database(pg_admin)
    try:
        restore_database(copy, dump_database(db_target, tmp_path / "source.dump").path)
        with connect(copy) as restored:
            assert restored.execute("SELECT batch FROM schema_ledger.batch").fetchall() == [("0000_baseline",)]
            assert restored.execute('SELECT count(*) FROM "Lead"').fetchone() == (0,)
    finally:
        drop_database(pg_admin, copy.dbname)
