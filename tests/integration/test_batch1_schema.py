"""Batch 1 (sql/0001_add_memory_entities) on a real PostgreSQL: every catalog fact, its validation checks, its rollback.

The facts below are asserted by querying the catalog directly, independently of validation.sql; then
validation.sql is run as the engine runs it (one transaction, rolled back; rows of check_name/ok/detail)
on the intact schema and on deliberately broken ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pglast
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from infra.migrations.plan import load_batch
from infra.migrations.runner import RunSettings, apply_batch, rollback_batch
from infra.migrations.target import Target
from tests.support.catalog import snapshot

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
BASELINE = SQL_DIR / "0000_baseline"
BATCH1 = SQL_DIR / "0001_add_memory_entities"

TIMESTAMP = "timestamp(3) without time zone"
NEW_TABLES = ("Customer", "CustomerAddress", "Conversation", "Message", "MemoryNote", "JobItem", "JobEvent")

# (column, format_type, NOT NULL) in declared order
COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "Customer": [
        ("id", "text", True), ("name", "text", False), ("phone", "text", False), ("email", "text", False),
        ("metadata", "jsonb", True), ("created_at", TIMESTAMP, True), ("updated_at", TIMESTAMP, True),
    ],
    "CustomerAddress": [
        ("id", "text", True), ("customer_id", "text", True), ("address", "text", True), ("city", "text", False),
        ("state", "text", False), ("zip", "text", False), ("lat", "double precision", False),
        ("lng", "double precision", False), ("is_primary", "boolean", True), ("created_at", TIMESTAMP, True),
        ("updated_at", TIMESTAMP, True),
    ],
    "Conversation": [
        ("id", "text", True), ("customer_id", "text", False), ("lead_id", "text", False), ("channel", "text", True),
        ("external_id", "text", True), ("started_at", TIMESTAMP, True), ("last_message_at", TIMESTAMP, False),
        ("metadata", "jsonb", True), ("created_at", TIMESTAMP, True), ("updated_at", TIMESTAMP, True),
    ],
    "Message": [
        ("id", "text", True), ("conversation_id", "text", True), ("role", '"MessageRole"', True),
        ("content", "text", True), ("metadata", "jsonb", True), ("created_at", TIMESTAMP, True),
    ],
    "MemoryNote": [
        ("id", "text", True), ("customer_id", "text", True), ("conversation_id", "text", False),
        ("content", "text", True), ("metadata", "jsonb", True), ("expires_at", TIMESTAMP, False),
        ("created_at", TIMESTAMP, True), ("updated_at", TIMESTAMP, True),
    ],
    "JobItem": [
        ("id", "text", True), ("job_id", "text", True), ("description", "text", True),
        ("quantity", "numeric(10,2)", True), ("unit_price", "numeric(10,2)", True), ("total", "numeric(10,2)", True),
        ("metadata", "jsonb", True), ("created_at", TIMESTAMP, True), ("updated_at", TIMESTAMP, True),
    ],
    "JobEvent": [
        ("id", "text", True), ("job_id", "text", True), ("event_type", "text", True), ("actor", "text", False),
        ("metadata", "jsonb", True), ("created_at", TIMESTAMP, True),
    ],
}
ADDED_COLUMNS = {"Lead": ("customer_id", "text", False), "Job": ("customer_id", "text", False)}

# name: (table, columns, referenced table, ON DELETE); every one references "id" ON UPDATE CASCADE
FOREIGN_KEYS = {
    "CustomerAddress_customer_id_fkey": ("CustomerAddress", ["customer_id"], "Customer", "CASCADE"),
    "Conversation_customer_id_fkey": ("Conversation", ["customer_id"], "Customer", "SET NULL"),
    "Conversation_lead_id_fkey": ("Conversation", ["lead_id"], "Lead", "SET NULL"),
    "Message_conversation_id_fkey": ("Message", ["conversation_id"], "Conversation", "CASCADE"),
    "MemoryNote_customer_id_fkey": ("MemoryNote", ["customer_id"], "Customer", "CASCADE"),
    "MemoryNote_conversation_id_fkey": ("MemoryNote", ["conversation_id"], "Conversation", "SET NULL"),
    "JobItem_job_id_fkey": ("JobItem", ["job_id"], "Job", "CASCADE"),
    "JobEvent_job_id_fkey": ("JobEvent", ["job_id"], "Job", "CASCADE"),
    "Lead_customer_id_fkey": ("Lead", ["customer_id"], "Customer", "SET NULL"),
    "Job_customer_id_fkey": ("Job", ["customer_id"], "Customer", "SET NULL"),
}
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

# name: (table, columns in order); plain, non-unique btree indexes
INDEXES = {
    "Customer_phone_idx": ("Customer", ["phone"]),
    "Customer_email_idx": ("Customer", ["email"]),
    "Customer_created_at_idx": ("Customer", ["created_at"]),
    "CustomerAddress_customer_id_idx": ("CustomerAddress", ["customer_id"]),
    "CustomerAddress_customer_id_is_primary_idx": ("CustomerAddress", ["customer_id", "is_primary"]),
    "Conversation_customer_id_idx": ("Conversation", ["customer_id"]),
    "Conversation_lead_id_idx": ("Conversation", ["lead_id"]),
    "Conversation_last_message_at_idx": ("Conversation", ["last_message_at"]),
    "Conversation_started_at_idx": ("Conversation", ["started_at"]),
    "Message_conversation_id_idx": ("Message", ["conversation_id"]),
    "Message_conversation_id_created_at_idx": ("Message", ["conversation_id", "created_at"]),
    "Message_created_at_idx": ("Message", ["created_at"]),
    "MemoryNote_customer_id_idx": ("MemoryNote", ["customer_id"]),
    "MemoryNote_conversation_id_idx": ("MemoryNote", ["conversation_id"]),
    "MemoryNote_created_at_idx": ("MemoryNote", ["created_at"]),
    "MemoryNote_expires_at_idx": ("MemoryNote", ["expires_at"]),
    "JobItem_job_id_idx": ("JobItem", ["job_id"]),
    "JobEvent_job_id_idx": ("JobEvent", ["job_id"]),
    "JobEvent_job_id_created_at_idx": ("JobEvent", ["job_id", "created_at"]),
    "JobEvent_event_type_idx": ("JobEvent", ["event_type"]),
    "Lead_customer_id_idx": ("Lead", ["customer_id"]),
    "Job_customer_id_idx": ("Job", ["customer_id"]),
}
UNIQUE_KEY = ("Conversation_channel_external_id_key", "Conversation", ["channel", "external_id"])
MESSAGE_ROLES = ["user", "assistant", "system", "tool"]

BEHAVIOUR_CHECKS = {
    "delete_customer_nulls_lead_customer_id", "delete_customer_nulls_job_customer_id",
    "delete_customer_nulls_conversation_customer_id", "delete_customer_cascades_to_customer_address",
    "delete_customer_cascades_to_memory_note", "delete_job_cascades_to_job_item", "delete_job_cascades_to_job_event",
    "delete_conversation_cascades_to_message", "delete_conversation_nulls_memory_note_conversation_id",
    "delete_lead_nulls_conversation_lead_id", "new_customer_gets_uuid_id", "new_customer_gets_empty_metadata",
    "new_customer_gets_timestamps", "duplicate_conversation_channel_external_id_rejected",
}
CHECK_COLUMNS = [("check_name", "text"), ("ok", "bool"), ("detail", "text")]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def expected_batch1_checks() -> set[str]:
    """The check names validation.sql must report, derived from the facts above."""
    names = {f"table_{snake(t)}_exists" for t in NEW_TABLES} | {f"columns_{snake(t)}" for t in NEW_TABLES}
    names |= {f"pk_{snake(t)}" for t in NEW_TABLES} | {f"column_{snake(t)}_customer_id" for t in ADDED_COLUMNS}
    names |= {f"fk_{snake(t)}_{'_'.join(cols)}" for t, cols, _, _ in FOREIGN_KEYS.values()}
    names |= {f"index_{snake(t)}_{'_'.join(cols)}" for t, cols in INDEXES.values()}
    names |= {"unique_conversation_channel_external_id", "enum_message_role_labels", "no_unexpected_columns_on_new_tables",
              "no_unexpected_indexes_on_new_tables", "no_invalid_indexes_on_lead_job"}
    return names | BEHAVIOUR_CHECKS


BASELINE_CHECKS = {
    "table_lead_exists", "table_job_exists", "table_audit_exists", "columns_lead", "columns_job", "columns_audit",
    "pk_lead", "pk_job", "pk_audit", "fk_job_lead_id", "gen_random_uuid_available",
}


# --- applying files -------------------------------------------------------------------------------------

ENGINE = RunSettings(stack="test", lock_timeout_ms=1000, lock_retries=3, lock_wait_ms=5000)


def apply(target: Target, folder: Path) -> None:
    """Apply a batch through the engine, as `pulumi up` does (validation included)."""
    apply_batch(target, load_batch(folder), ENGINE)


def statements(path: Path) -> list[str]:
    """The statements of a batch file, split by PostgreSQL's own parser (as the engine does)."""
    return list(pglast.split(path.read_text(encoding="utf-8")))


def run_statements(conn: psycopg.Connection, sqls: list[str]) -> None:
    for statement in sqls:
        conn.execute(statement)


@pytest.fixture
def baseline_db(db_target: Target, db: psycopg.Connection) -> psycopg.Connection:
    apply(db_target, BASELINE)
    return db


@pytest.fixture
def batch1_db(baseline_db: psycopg.Connection, db_target: Target) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database where 0000 and 0001 were applied."""
    apply(db_target, BATCH1)
    yield baseline_db


# --- validation.sql, run as the engine runs it ------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    ok: bool | None
    detail: str


def run_validation(conn: psycopg.Connection, path: Path) -> dict[str, Check]:
    """Every (check_name, ok, detail) row of the file, in one transaction that is rolled back."""
    checks: dict[str, Check] = {}
    with conn.transaction(force_rollback=True):
        for statement in statements(path):
            cur = conn.execute(statement)
            if not cur.description or [c.name for c in cur.description] != [n for n, _ in CHECK_COLUMNS]:
                continue
            types = [conn.adapters.types.get(c.type_code).name for c in cur.description]
            assert types == [t for _, t in CHECK_COLUMNS], f"check columns have types {types}: {statement[:80]}"
            for name, ok, detail in cur.fetchall():
                assert name not in checks, f"check {name} is reported twice"
                checks[name] = Check(ok, detail)
    return checks


def failing(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.detail for name, check in checks.items() if check.ok is not True}


# --- catalog queries -------------------------------------------------------------------------------------

def tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")
    return {r[0] for r in rows}


def columns_of(conn: psycopg.Connection, table: str) -> list[tuple[str, str, bool]]:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           WHERE c.relnamespace = 'public'::regnamespace AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""", (table,))
    return [tuple(r) for r in rows]


# The names of a key's or an index's columns, in order ({keys}: attribute numbers of table {rel}).
KEY_COLUMNS = """ARRAY(SELECT a.attname::text FROM unnest({keys}) WITH ORDINALITY AS key (attnum, position)
                       JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = key.attnum ORDER BY key.position)"""


def constraints(conn: psycopg.Connection, contype: str) -> dict[str, dict]:
    query = f"""SELECT k.conname, c.relname AS table, {KEY_COLUMNS.format(keys='k.conkey', rel='k.conrelid')} AS columns,
                       r.relname AS ref_table, {KEY_COLUMNS.format(keys='k.confkey', rel='k.confrelid')} AS ref_columns,
                       k.confdeltype AS on_delete, k.confupdtype AS on_update, k.convalidated AS validated
                FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_class r ON r.oid = k.confrelid
                WHERE k.connamespace = 'public'::regnamespace AND k.contype = %s"""
    with conn.cursor(row_factory=dict_row) as cur:
        return {row.pop("conname"): row for row in cur.execute(query, (contype,))}


def indexes(conn: psycopg.Connection) -> dict[str, dict]:
    query = f"""SELECT i.relname AS name, t.relname AS table,
                       {KEY_COLUMNS.format(keys='x.indkey::int2[]', rel='x.indrelid')} AS columns,
                       x.indisvalid AND x.indisready AS valid, x.indisunique AS is_unique, x.indisprimary AS is_primary,
                       am.amname AS method, x.indpred IS NULL AND x.indexprs IS NULL AS plain
                FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
                JOIN pg_am am ON am.oid = i.relam
                WHERE i.relnamespace = 'public'::regnamespace"""
    with conn.cursor(row_factory=dict_row) as cur:
        return {row.pop("name"): row for row in cur.execute(query)}


# --- the catalog after 0001 --------------------------------------------------------------------------------

def test_batch1_creates_the_seven_new_tables_next_to_the_baseline(batch1_db: psycopg.Connection) -> None:
    assert tables(batch1_db) == {"Lead", "Job", "Audit", *NEW_TABLES}


@pytest.mark.parametrize("table", NEW_TABLES)
def test_new_table_has_exactly_the_declared_columns_types_and_nullability(batch1_db: psycopg.Connection, table: str) -> None:
    assert columns_of(batch1_db, table) == COLUMNS[table]


@pytest.mark.parametrize("table", ["Lead", "Job"])
def test_lead_and_job_get_a_nullable_text_customer_id_as_their_last_column(batch1_db: psycopg.Connection, table: str) -> None:
    assert columns_of(batch1_db, table)[-1] == ADDED_COLUMNS[table]


def test_every_new_table_has_a_prisma_named_primary_key_on_id(batch1_db: psycopg.Connection) -> None:
    primary = constraints(batch1_db, "p")
    for table in NEW_TABLES:
        assert primary[f"{table}_pkey"]["table"] == table
        assert primary[f"{table}_pkey"]["columns"] == ["id"]


def test_foreign_keys_have_their_columns_target_delete_rule_and_are_validated(batch1_db: psycopg.Connection) -> None:
    found = constraints(batch1_db, "f")
    for name, (table, columns, ref_table, on_delete) in FOREIGN_KEYS.items():
        fk = found.get(name)
        assert fk is not None, f"foreign key {name} is missing"
        assert (fk["table"], fk["columns"], fk["ref_table"], fk["ref_columns"]) == (table, columns, ref_table, ["id"]), name
        assert FK_ACTIONS[fk["on_delete"]] == on_delete, name
        assert FK_ACTIONS[fk["on_update"]] == "CASCADE", name
        assert fk["validated"], f"{name} is still NOT VALID"
    baseline_fks = {"Job_leadId_fkey", "Audit_leadId_fkey", "Audit_jobId_fkey"}
    assert set(found) == set(FOREIGN_KEYS) | baseline_fks


def test_conversation_channel_and_external_id_form_a_unique_constraint(batch1_db: psycopg.Connection) -> None:
    name, table, columns = UNIQUE_KEY
    unique = constraints(batch1_db, "u")
    assert set(unique) == {name}
    assert (unique[name]["table"], unique[name]["columns"]) == (table, columns)
    assert indexes(batch1_db)[name]["valid"] and indexes(batch1_db)[name]["is_unique"]


def test_every_index_is_a_valid_plain_btree_on_its_columns_in_order(batch1_db: psycopg.Connection) -> None:
    found = indexes(batch1_db)
    for name, (table, columns) in INDEXES.items():
        assert name in found, f"index {name} is missing"
        index = found[name]
        assert (index["table"], index["columns"]) == (table, columns), name
        assert index["valid"] and index["plain"] and index["method"] == "btree" and not index["is_unique"], name


def test_new_tables_have_no_index_beyond_the_declared_ones_and_keys(batch1_db: psycopg.Connection) -> None:
    on_new_tables = {name for name, index in indexes(batch1_db).items() if index["table"] in NEW_TABLES}
    keys = {f"{t}_pkey" for t in NEW_TABLES} | {UNIQUE_KEY[0]}
    assert on_new_tables == {n for n, (t, _) in INDEXES.items() if t in NEW_TABLES} | keys


def test_message_role_enum_has_the_four_labels_in_order(batch1_db: psycopg.Connection) -> None:
    labels = batch1_db.execute(
        """SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
           WHERE t.typname = 'MessageRole' AND t.typnamespace = 'public'::regnamespace ORDER BY e.enumsortorder"""
    ).fetchall()
    assert [r[0] for r in labels] == MESSAGE_ROLES


def test_validation_leaves_no_test_rows_behind(batch1_db: psycopg.Connection) -> None:
    run_validation(batch1_db, BATCH1 / "validation.sql")
    counts = [batch1_db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0] for t in (*NEW_TABLES, "Lead", "Job")]
    assert counts == [0] * (len(NEW_TABLES) + 2)


# --- validation.sql ----------------------------------------------------------------------------------------

def test_every_batch1_check_passes_on_the_applied_schema(batch1_db: psycopg.Connection) -> None:
    checks = run_validation(batch1_db, BATCH1 / "validation.sql")
    assert set(checks) == expected_batch1_checks()
    assert failing(checks) == {}


def test_check_names_are_snake_case_and_details_say_what_was_expected_and_found(batch1_db: psycopg.Connection) -> None:
    checks = run_validation(batch1_db, BATCH1 / "validation.sql") | run_validation(batch1_db, BASELINE / "validation.sql")
    for name, check in checks.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), name
        assert "expected" in check.detail and "found" in check.detail, f"{name}: {check.detail}"


def test_validation_reports_a_dropped_index_and_a_dropped_foreign_key(batch1_db: psycopg.Connection) -> None:
    batch1_db.execute('DROP INDEX "Message_created_at_idx"')
    batch1_db.execute('ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey"')
    failed = failing(run_validation(batch1_db, BATCH1 / "validation.sql"))
    assert set(failed) == {"index_message_created_at", "fk_lead_customer_id", "delete_customer_nulls_lead_customer_id"}
    assert failed["index_message_created_at"].endswith("found none")
    assert failed["delete_customer_nulls_lead_customer_id"].endswith("found leads_kept_unlinked = 0")


def test_validation_reports_a_wrong_delete_rule_and_a_not_validated_foreign_key(batch1_db: psycopg.Connection) -> None:
    batch1_db.execute('ALTER TABLE "JobItem" DROP CONSTRAINT "JobItem_job_id_fkey"')
    batch1_db.execute('ALTER TABLE "JobItem" ADD CONSTRAINT "JobItem_job_id_fkey" FOREIGN KEY ("job_id") '
                      'REFERENCES "Job" ("id") ON DELETE RESTRICT ON UPDATE CASCADE')
    batch1_db.execute('ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey"')
    batch1_db.execute('ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id") '
                      'REFERENCES "Customer" ("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID')
    failed = failing(run_validation(batch1_db, BATCH1 / "validation.sql"))
    assert set(failed) == {"fk_job_item_job_id", "fk_job_customer_id", "delete_job_cascades_to_job_item",
                           "delete_job_cascades_to_job_event"}
    assert "ON DELETE RESTRICT" in failed["fk_job_item_job_id"]
    assert "NOT VALID" in failed["fk_job_customer_id"]
    assert "foreign key constraint \"JobItem_job_id_fkey\"" in failed["delete_job_cascades_to_job_event"]  # wording differs by version


def test_validation_reports_the_invalid_index_a_failed_concurrent_build_leaves(batch1_db: psycopg.Connection) -> None:
    batch1_db.execute("""INSERT INTO "Lead" ("id", "phone") VALUES ('a', '+15550001'), ('b', '+15550001')""")
    batch1_db.execute("""INSERT INTO "Customer" ("phone") VALUES ('+15550001'), ('+15550001')""")
    for table in ("Lead", "Customer"):
        with pytest.raises(psycopg.errors.UniqueViolation):
            batch1_db.execute(sql.SQL('CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ("phone")').format(
                sql.Identifier(f"{table}_phone_key"), sql.Identifier(table)))
    failed = failing(run_validation(batch1_db, BATCH1 / "validation.sql"))
    assert set(failed) == {"no_invalid_indexes_on_lead_job", "no_unexpected_indexes_on_new_tables"}
    assert failed["no_invalid_indexes_on_lead_job"].endswith("found invalid: Lead_phone_key")
    assert failed["no_unexpected_indexes_on_new_tables"].endswith("found extra: Customer_phone_key (INVALID)")


def test_validation_reports_a_missing_table_without_aborting(batch1_db: psycopg.Connection) -> None:
    batch1_db.execute('DROP TABLE "JobEvent"')
    checks = run_validation(batch1_db, BATCH1 / "validation.sql")
    assert set(checks) == expected_batch1_checks()
    assert set(failing(checks)) == {
        "table_job_event_exists", "columns_job_event", "pk_job_event", "fk_job_event_job_id", "index_job_event_job_id",
        "index_job_event_job_id_created_at", "index_job_event_event_type", "delete_job_cascades_to_job_item",
        "delete_job_cascades_to_job_event",
    }
    assert 'relation "JobEvent" does not exist' in checks["delete_job_cascades_to_job_event"].detail


def test_validation_on_the_baseline_alone_fails_every_batch1_fact_without_aborting(baseline_db: psycopg.Connection) -> None:
    checks = run_validation(baseline_db, BATCH1 / "validation.sql")
    assert set(checks) == expected_batch1_checks()
    vacuous = {"no_unexpected_columns_on_new_tables", "no_unexpected_indexes_on_new_tables", "no_invalid_indexes_on_lead_job"}
    assert set(failing(checks)) == expected_batch1_checks() - vacuous
    assert checks["duplicate_conversation_channel_external_id_rejected"].ok is None


def test_validation_reports_an_extra_column_on_a_new_table(batch1_db: psycopg.Connection) -> None:
    batch1_db.execute('ALTER TABLE "Customer" ADD COLUMN "nickname" TEXT')
    batch1_db.execute('ALTER TABLE "Customer" ALTER COLUMN "phone" TYPE varchar(20)')
    failed = failing(run_validation(batch1_db, BATCH1 / "validation.sql"))
    assert set(failed) == {"no_unexpected_columns_on_new_tables", "columns_customer"}
    assert failed["no_unexpected_columns_on_new_tables"].endswith("found extra: Customer.nickname")
    assert failed["columns_customer"].endswith("found phone character varying(20) null")


# --- the baseline ------------------------------------------------------------------------------------------

def test_every_baseline_check_passes_before_and_after_batch1(baseline_db: psycopg.Connection, db_target: Target) -> None:
    before = run_validation(baseline_db, BASELINE / "validation.sql")
    apply(db_target, BATCH1)
    after = run_validation(baseline_db, BASELINE / "validation.sql")
    assert set(before) == set(after) == BASELINE_CHECKS
    assert failing(before) == failing(after) == {}


def test_baseline_validation_reports_a_changed_column_and_a_missing_table(baseline_db: psycopg.Connection) -> None:
    baseline_db.execute('ALTER TABLE "Lead" ALTER COLUMN "phone" TYPE varchar(20)')
    baseline_db.execute('DROP TABLE "Audit"')
    failed = failing(run_validation(baseline_db, BASELINE / "validation.sql"))
    assert set(failed) == {"columns_lead", "table_audit_exists", "columns_audit", "pk_audit"}
    assert failed["columns_lead"].endswith("found phone character varying(20) null")


def test_baseline_accepts_leads_and_jobs_with_only_the_obvious_columns(baseline_db: psycopg.Connection) -> None:
    lead = baseline_db.execute("""INSERT INTO "Lead" ("name") VALUES ('Ann') RETURNING "id" """).fetchone()[0]
    baseline_db.execute("""INSERT INTO "Job" ("leadId") VALUES (%s)""", (lead,))
    baseline_db.execute("""UPDATE "Job" SET "status" = 'done', "updatedAt" = now() WHERE "leadId" = %s""", (lead,))
    baseline_db.execute("""INSERT INTO "Audit" ("leadId", "action") VALUES (%s, 'lead_created')""", (lead,))


# --- rollback.sql ------------------------------------------------------------------------------------------

def test_rollback_twice_restores_exactly_the_baseline_catalog(baseline_db: psycopg.Connection, db_target: Target) -> None:
    after_baseline = snapshot(baseline_db)
    apply(db_target, BATCH1)
    assert snapshot(baseline_db) != after_baseline
    assert rollback_batch(db_target, load_batch(BATCH1), ENGINE)
    assert snapshot(baseline_db) == after_baseline
    run_statements(baseline_db, statements(BATCH1 / "rollback.sql"))  # by hand, a second time
    assert snapshot(baseline_db) == after_baseline


def test_rollback_undoes_the_batch_stopped_after_any_statement(baseline_db: psycopg.Connection) -> None:
    after_baseline = snapshot(baseline_db)
    migration, rollback = statements(BATCH1 / "migration.sql"), statements(BATCH1 / "rollback.sql")
    for done in range(len(migration) + 1):
        run_statements(baseline_db, migration[:done])
        run_statements(baseline_db, rollback)
        assert snapshot(baseline_db) == after_baseline, f"rollback after {done} statement(s): {migration[done - 1][:60]}"


def test_rollback_removes_the_invalid_index_of_a_failed_concurrent_build(baseline_db: psycopg.Connection) -> None:
    after_baseline = snapshot(baseline_db)
    migration = statements(BATCH1 / "migration.sql")
    first_concurrent = next(i for i, s in enumerate(migration) if "CONCURRENTLY" in s)
    run_statements(baseline_db, migration[:first_concurrent])
    baseline_db.execute("""INSERT INTO "Customer" ("id") VALUES ('c')""")
    baseline_db.execute("""INSERT INTO "Lead" ("id", "customer_id") VALUES ('a', 'c'), ('b', 'c')""")
    with pytest.raises(psycopg.errors.UniqueViolation):  # stands in for a build killed half way
        baseline_db.execute('CREATE UNIQUE INDEX CONCURRENTLY "Lead_customer_id_idx" ON "Lead" ("customer_id")')
    assert indexes(baseline_db)["Lead_customer_id_idx"]["valid"] is False
    run_statements(baseline_db, statements(BATCH1 / "rollback.sql"))
    assert snapshot(baseline_db) == after_baseline
