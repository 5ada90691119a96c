"""backfill.toml and gate.toml are part of what a batch was applied with: the ledger keeps their checksums
(as parsed), an applied batch whose declaration now says something else is refused, and ledgers recorded
before the ledger kept them are completed by the next run instead of being refused."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from infra.migrations.backfill import BackfillRun
from infra.migrations.errors import BatchChanged
from infra.migrations.ledger import Ledger
from infra.migrations.plan import Batch, load_batch
from infra.migrations.runner import RunSettings, apply_batch
from infra.migrations.state import read_state
from infra.migrations.target import Target
from tests.support.batches import make_batch

MIGRATION = """
CREATE TABLE item (id text PRIMARY KEY, done boolean NOT NULL DEFAULT false);
INSERT INTO item (id) SELECT g::text FROM generate_series(1, 5) AS g;
CREATE FUNCTION mark(ids text[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE item SET done = true WHERE id = ANY (ids) AND NOT done;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
"""
VALIDATION = "SELECT 'all_done' AS check_name, bool_and(done) AS ok, '' AS detail FROM item;"
ROLLBACK = "DROP FUNCTION IF EXISTS mark(text[]);\nDROP TABLE IF EXISTS item;"
BACKFILL = '[[part]]\nname = "items"\ntable = "item"\nkey = "id"\nchunk = "mark"\n'
SETTINGS = RunSettings(stack="test", backfill=BackfillRun(sleep=lambda _s: None))


def backfilled(root: Path, backfill: str = BACKFILL) -> Batch:
    batch = make_batch(root, "0001_mark_items", MIGRATION, VALIDATION, ROLLBACK)
    (root / batch.name / "backfill.toml").write_text(backfill, encoding="utf-8")
    return load_batch(root / batch.name)


def revisions(db: psycopg.Connection, batch: str) -> list[tuple[str, str]]:
    return [(file, reason) for file, _sha, reason in Ledger(db).revisions(batch)]


def test_the_ledger_keeps_the_checksum_of_the_backfill_declaration_and_batches_without_one_keep_three(
        tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    plain = make_batch(tmp_path, "0000_plain", "CREATE TABLE plain (id int);", rollback="DROP TABLE IF EXISTS plain;")
    batch = backfilled(tmp_path)

    apply_batch(db_target, plain, SETTINGS)
    result = apply_batch(db_target, batch, SETTINGS)

    assert set(plain.checksums) == {"migration.sql", "validation.sql", "rollback.sql"}
    assert result.checksums["backfill.toml"] == batch.checksums["backfill.toml"]
    entries = Ledger(db).entries()
    assert entries[plain.name].checksums == plain.checksums
    assert entries[batch.name].checksums == batch.checksums
    assert ("backfill.toml", "applied") in revisions(db, batch.name)


def test_an_applied_batch_whose_backfill_declaration_changed_is_refused(
        tmp_path: Path, db_target: Target) -> None:
    apply_batch(db_target, backfilled(tmp_path), SETTINGS)
    edited = backfilled(tmp_path, BACKFILL.replace('chunk = "mark"', 'chunk = "mark_again"'))

    with pytest.raises(BatchChanged, match="batch '0001_mark_items' backfill.toml changed after it was applied"):
        apply_batch(db_target, edited, SETTINGS)
    with pytest.raises(BatchChanged, match="backfill.toml"):
        read_state(db_target).pending([edited])  # what preview and up see before they run anything


def test_a_removed_gate_declaration_of_an_applied_batch_is_refused(tmp_path: Path, db_target: Target) -> None:
    batch = make_batch(tmp_path, "0000_plain", "CREATE TABLE plain (id int);", rollback="DROP TABLE IF EXISTS plain;")
    (tmp_path / batch.name / "gate.toml").write_text('setting = "appWritesCustomerId"\n', encoding="utf-8")
    apply_batch(db_target, load_batch(tmp_path / batch.name), SETTINGS)
    (tmp_path / batch.name / "gate.toml").unlink()

    with pytest.raises(BatchChanged, match=r"gate.toml changed after it was applied \(sha256 \(no file\)"):
        apply_batch(db_target, load_batch(tmp_path / batch.name), SETTINGS)


def test_comments_and_layout_in_a_declaration_are_not_a_change(tmp_path: Path, db_target: Target,
                                                               db: psycopg.Connection) -> None:
    apply_batch(db_target, backfilled(tmp_path), SETTINGS)
    reworded = backfilled(tmp_path, "# the items, marked\n[[part]]\nname='items'\ntable = 'item'\nkey='id'\nchunk = 'mark'\n")

    result = apply_batch(db_target, reworded, SETTINGS)

    assert result.already_applied
    assert read_state(db_target).corrected([reworded]) == ()
    assert revisions(db, reworded.name).count(("backfill.toml", "applied")) == 1


def test_a_ledger_from_before_declaration_checksums_is_completed_by_the_next_run_not_refused(
        tmp_path: Path, db_target: Target, db: psycopg.Connection) -> None:
    plain = make_batch(tmp_path, "0000_plain", "CREATE TABLE plain (id int);", rollback="DROP TABLE IF EXISTS plain;")
    batch = backfilled(tmp_path)
    apply_batch(db_target, plain, SETTINGS)
    apply_batch(db_target, batch, SETTINGS)
    # As the previous version of the engine left it: no columns for the declarations' checksums.
    db.execute("ALTER TABLE schema_ledger.batch DROP COLUMN backfill_sha256, DROP COLUMN gate_sha256")
    db.execute("DELETE FROM schema_ledger.batch_revision WHERE file = 'backfill.toml'")

    state = read_state(db_target)
    assert state.pending([plain, batch]) == ()  # nothing refused, nothing to apply
    assert state.corrected([plain, batch]) == (batch,)  # the declaration's checksum is recorded next time

    result = apply_batch(db_target, batch, SETTINGS)

    assert result.already_applied
    assert Ledger(db).entry(batch.name).checksums == batch.checksums
    assert ("backfill.toml", "recorded") in revisions(db, batch.name)
    assert read_state(db_target).corrected([plain, batch]) == ()
    assert all(file != "backfill.toml" for file, _ in revisions(db, plain.name))
