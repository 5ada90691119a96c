"""The catalog reader and drift checks against a real PostgreSQL (18 embedded, 15 with `make test-pg15`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from infra.migrations.catalog import read_shape
from infra.migrations.drift import DriftCheck, check_drift, record_unrecorded_shape
from infra.migrations.ledger import Ledger
from infra.migrations.plan import Batch, load_batches
from infra.migrations.runner import RunSettings, adopt_batch, apply_batch, rollback_batch
from infra.migrations.target import Target
from tests.support.batches import make_batch

ROOT = Path(__file__).resolve().parents[2]
RUN = RunSettings(stack="test", lock_timeout_ms=500, lock_retries=2, lock_wait_ms=2000)
BATCHES = load_batches(ROOT / "sql")[:2]  # the baseline and batch 1 (0003 tightens what 0001's checks expect)


@pytest.fixture
def built(db_target: Target, db: psycopg.Connection) -> psycopg.Connection:
    """The project's batches applied; returns an autocommit connection to play the person editing by hand."""
    for batch in BATCHES:
        apply_batch(db_target, batch, RUN)
    return db


def drift(target: Target, *batches: Batch, allowed: frozenset[str] = frozenset(), validations: bool = False) -> list[str]:
    report = check_drift(target, DriftCheck(batches=(*BATCHES, *batches), allowed=allowed, validations=validations))
    return report.lines()


# -- the catalog --------------------------------------------------------------------------------------
def test_the_catalog_reads_columns_indexes_constraints_and_labels_the_same_on_every_version(db_target: Target, built: psycopg.Connection) -> None:
    shape = read_shape(built)

    assert shape.schema == "public"
    memory = shape.table("MemoryNote")
    assert memory is not None
    columns = {c.name: c for c in memory.columns}
    assert (columns["id"].type, columns["id"].nullable, columns["id"].default) == ("text", False, "(gen_random_uuid())::text")
    assert (columns["expires_at"].type, columns["expires_at"].nullable) == ("timestamp(3) without time zone", True)
    indexes = {i.name: i for i in memory.indexes}
    assert indexes["MemoryNote_customer_id_idx"].definition == \
        'CREATE INDEX "MemoryNote_customer_id_idx" ON "MemoryNote" USING btree (customer_id)'
    assert indexes["MemoryNote_customer_id_idx"].valid
    constraints = {c.name: c.definition for c in memory.constraints}
    assert constraints["MemoryNote_customer_id_fkey"] == \
        'FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON UPDATE CASCADE ON DELETE CASCADE'
    assert set(constraints) == {"MemoryNote_pkey", "MemoryNote_customer_id_fkey", "MemoryNote_conversation_id_fkey"}, \
        "NOT NULL is a column property, never a constraint entry (PostgreSQL 18 also lists it in pg_constraint)"
    message_role = shape.enum("MessageRole")
    assert message_role is not None and message_role.labels == ("user", "assistant", "system", "tool")
    assert "shape" not in [t.name for t in shape.tables], "the ledger's schema is not the application's"


def test_a_shape_survives_its_json_form_unchanged(built: psycopg.Connection) -> None:
    from infra.migrations.catalog import Shape

    shape = read_shape(built)
    assert Shape.from_json(shape.to_json()) == shape


def test_the_shape_recorded_with_the_newest_batch_is_the_live_one_so_a_fresh_stack_has_no_drift(db_target: Target, built: psycopg.Connection) -> None:
    newest, expected = Ledger(built).expected_shape() or (None, None)

    assert newest == BATCHES[-1].name
    assert expected == read_shape(built)
    assert drift(db_target, validations=True) == []


# -- every kind of drift ------------------------------------------------------------------------------
HAND_EDITS = [
    ('DROP TABLE "MemoryNote"', 'table "MemoryNote": missing (the batches built it)'),
    ('CREATE TABLE "Scratch" (id int)', 'table "Scratch": extra (no batch built it)'),
    ('ALTER TABLE "Lead" ADD COLUMN notes text', 'column "Lead".notes: extra (no batch built it)'),
    ('ALTER TABLE "Lead" DROP COLUMN zip', 'column "Lead".zip: missing (the batches built it)'),
    ('ALTER TABLE "Lead" ALTER COLUMN zip TYPE varchar(10)', 'column "Lead".zip: type text → character varying(10)'),
    ('ALTER TABLE "Lead" ALTER COLUMN zip SET NOT NULL', 'column "Lead".zip: nullable → NOT NULL'),
    ('ALTER TABLE "Lead" ALTER COLUMN channel SET DEFAULT \'phone\'', "column \"Lead\".channel: default 'web'::text → 'phone'::text"),
    ('DROP INDEX "Lead_phone_idx"', 'index "Lead".Lead_phone_idx: missing (the batches built it)'),
    ('CREATE INDEX lead_by_hand_idx ON "Lead" (name)', 'index "Lead".lead_by_hand_idx: extra (no batch built it)'),
    ('DROP INDEX "Lead_phone_idx"; CREATE INDEX "Lead_phone_idx" ON "Lead" (phone, email)',
     'index "Lead".Lead_phone_idx: CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (phone) → '
     'CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (phone, email)'),
    ('ALTER TABLE "MemoryNote" DROP CONSTRAINT "MemoryNote_customer_id_fkey"',
     'constraint "MemoryNote".MemoryNote_customer_id_fkey: missing (the batches built it)'),
    ('ALTER TABLE "Lead" ADD CONSTRAINT lead_zip_check CHECK (zip <> \'\')',
     'constraint "Lead".lead_zip_check: extra (no batch built it)'),
    ('ALTER TABLE "MemoryNote" DROP CONSTRAINT "MemoryNote_customer_id_fkey", ADD CONSTRAINT "MemoryNote_customer_id_fkey" '
     'FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON UPDATE CASCADE ON DELETE SET NULL',
     'constraint "MemoryNote".MemoryNote_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES "Customer"(id) '
     'ON UPDATE CASCADE ON DELETE CASCADE → FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON UPDATE CASCADE ON DELETE SET NULL'),
    ("ALTER TYPE \"MessageRole\" ADD VALUE 'bot'",
     'enum "MessageRole": labels (user, assistant, system, tool) → (user, assistant, system, tool, bot)'),
    ('CREATE TYPE "Mood" AS ENUM (\'calm\')', 'enum "Mood": extra (no batch built it)'),
]


@pytest.mark.parametrize(("edit", "reported"), HAND_EDITS, ids=[r.split(":")[0] + ":" + r.split(":")[1][:30] for _, r in HAND_EDITS])
def test_each_hand_edit_is_reported_as_one_difference_in_reviewer_terms(db_target: Target, built: psycopg.Connection,
                                                                       edit: str, reported: str) -> None:
    built.execute(edit)

    assert drift(db_target) == [reported]


def test_a_dropped_enum_type_is_reported_missing_with_the_column_that_used_it(db_target: Target, built: psycopg.Connection) -> None:
    built.execute('DROP TYPE "MessageRole" CASCADE')

    assert drift(db_target) == ['column "Message".role: missing (the batches built it)',
                                'enum "MessageRole": missing (the batches built it)']


def test_an_index_left_invalid_is_reported_changed(db_target: Target, built: psycopg.Connection) -> None:
    built.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"Lead_phone_idx\"'::regclass")

    assert drift(db_target) == ['index "Lead".Lead_phone_idx: CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (phone) → '
                                'CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (phone) (INVALID)']


def test_objects_on_the_allow_list_are_not_drift(db_target: Target, built: psycopg.Connection) -> None:
    built.execute('CREATE INDEX lead_by_hand_idx ON "Lead" (name)')
    built.execute('CREATE TABLE "Scratch" (id int)')
    built.execute('ALTER TABLE "Lead" ADD COLUMN notes text')

    allowed = frozenset({"index Lead.lead_by_hand_idx", "table Scratch"})
    assert drift(db_target, allowed=allowed) == ['column "Lead".notes: extra (no batch built it)']


def test_a_failing_validation_check_of_an_applied_batch_is_reported(db_target: Target, built: psycopg.Connection) -> None:
    built.execute('ALTER TABLE "Lead" RENAME COLUMN phone TO mobile')

    lines = drift(db_target, validations=True)

    assert 'column "Lead".phone: missing (the batches built it)' in lines
    assert any(line.startswith("check 0000_baseline/columns_lead") for line in lines)
    assert drift(db_target, validations=False) == [
        'column "Lead".phone: missing (the batches built it)', 'column "Lead".mobile: extra (no batch built it)',
        'index "Lead".Lead_phone_idx: CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (phone) → '
        'CREATE INDEX "Lead_phone_idx" ON "Lead" USING btree (mobile)']


# -- what the batches change is the expectation, not drift ---------------------------------------------
def test_a_batch_that_alters_an_earlier_batchs_table_changes_its_expected_shape_not_drift(tmp_path: Path, db_target: Target,
                                                                                     built: psycopg.Connection) -> None:
    batch = make_batch(tmp_path, "0002_lead_notes",
                       'ALTER TABLE "Lead" ADD COLUMN notes text;\nALTER TYPE "MessageRole" ADD VALUE \'bot\';\n'
                       'DROP TABLE "MemoryNote";',
                       rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS notes;')
    apply_batch(db_target, batch, RUN)

    expected = check_drift(db_target, DriftCheck(batches=(*BATCHES, batch))).expected
    assert expected is not None
    lead = expected.table("Lead")
    assert lead is not None and "notes" in [c.name for c in lead.columns]
    assert expected.table("MemoryNote") is None
    message_role = expected.enum("MessageRole")
    assert message_role is not None and message_role.labels[-1] == "bot"
    assert drift(db_target, batch) == []


def test_rolling_back_the_newest_batch_makes_the_previous_shape_the_expectation(tmp_path: Path, db_target: Target,
                                                                              built: psycopg.Connection) -> None:
    batch = make_batch(tmp_path, "0002_lead_notes", 'ALTER TABLE "Lead" ADD COLUMN notes text;',
                       rollback='ALTER TABLE "Lead" DROP COLUMN IF EXISTS notes;')
    apply_batch(db_target, batch, RUN)
    rollback_batch(db_target, batch, RUN)

    assert drift(db_target) == []
    built.execute('ALTER TABLE "Lead" ADD COLUMN notes text')
    assert drift(db_target) == ['column "Lead".notes: extra (no batch built it)']


def test_drift_on_an_object_a_pending_batch_changes_is_deferred_not_blocking(tmp_path: Path, db_target: Target,
                                                                            built: psycopg.Connection) -> None:
    built.execute('ALTER TABLE "Lead" ADD COLUMN notes text')
    built.execute('DROP TABLE "MemoryNote"')
    pending = make_batch(tmp_path, "0002_lead_notes", 'ALTER TABLE "Lead" ADD COLUMN IF NOT EXISTS notes text;')

    report = check_drift(db_target, DriftCheck(batches=(*BATCHES, pending)))

    assert [str(d) for d in report.deferred] == ['column "Lead".notes: extra (no batch built it)']
    assert report.lines() == ['table "MemoryNote": missing (the batches built it)']


def test_an_adopted_baseline_records_the_live_tables_as_they_are(db_target: Target, db: psycopg.Connection) -> None:
    db.execute(BATCHES[0].migration)
    db.execute('CREATE TABLE "_prisma_migrations" (id text PRIMARY KEY)')
    adopt_batch(db_target, BATCHES[0], RUN)

    expected = Ledger(db).expected_shape()
    assert expected is not None and expected[1] is not None
    assert [t.name for t in expected[1].tables] == ["Audit", "Job", "Lead", "_prisma_migrations"]
    assert drift(db_target) == []


# -- ledgers from before shapes were recorded -------------------------------------------------------------
def test_a_database_applied_before_shapes_were_recorded_gets_its_shape_recorded_once_its_checks_pass(
        db_target: Target, built: psycopg.Connection) -> None:
    built.execute("DROP TABLE schema_ledger.shape")
    report = check_drift(db_target, DriftCheck(batches=BATCHES))
    assert report.unrecorded and report.clean, "no shape recorded yet is not drift"

    after = record_unrecorded_shape(db_target, DriftCheck(batches=BATCHES), lock_wait_ms=2000)

    assert not after.unrecorded and after.clean
    assert Ledger(built).expected_shape() == (BATCHES[-1].name, read_shape(built))


def test_an_unrecorded_shape_is_not_recorded_while_a_check_of_the_newest_batch_fails(db_target: Target,
                                                                                   built: psycopg.Connection) -> None:
    built.execute("DELETE FROM schema_ledger.shape")
    built.execute('ALTER TABLE "Customer" DROP COLUMN updated_at')

    report = record_unrecorded_shape(db_target, DriftCheck(batches=BATCHES), lock_wait_ms=2000)

    assert report.unrecorded and report.failed_checks
    assert Ledger(built).expected_shape() == (BATCHES[-1].name, None)


def test_the_migrator_role_records_shapes_in_a_ledger_created_before_them(db_target: Target, db: psycopg.Connection) -> None:
    db.execute("CREATE ROLE drift_migrator")
    db.execute("GRANT CREATE ON SCHEMA public TO drift_migrator")
    with_role = RunSettings(stack="test", lock_wait_ms=2000, role="drift_migrator")
    apply_batch(db_target, BATCHES[0], with_role)
    db.execute("DROP TABLE schema_ledger.shape")

    apply_batch(db_target, BATCHES[1], with_role)

    assert Ledger(db).expected_shape() == (BATCHES[1].name, read_shape(db))
