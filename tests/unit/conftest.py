from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pulumi
import pytest

from infra.migrations.drift import DriftReport
from infra.migrations.ledger import LedgerEntry
from infra.migrations.plan import load_batches
from infra.migrations.state import DatabaseState
from tests.unit.mocks import RecordingMocks

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def every_batch_applied(_target: object, _tables: object = ()) -> DatabaseState:
    """A ledger that has every batch under sql/ applied, as the files are now."""
    entries = {b.name: LedgerEntry(b.name, b.checksums["migration.sql"], b.checksums["validation.sql"],
                                   b.checksums["rollback.sql"], datetime.now(timezone.utc), 0, "test", "test", False,
                                   rollback_sql=b.rollback, migration_sql=b.migration, validation_sql=b.validation,
                                   backfill_sha256=b.checksums.get("backfill.toml"), gate_sha256=b.checksums.get("gate.toml"))
               for b in load_batches(SQL_DIR)}
    return DatabaseState(entries, {})


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tier, no I/O: the program's ledger read sees every batch applied, so nothing is pending."""
    monkeypatch.setattr("infra.preflight.read_state", every_batch_applied)
    monkeypatch.setattr("infra.schema_objects.check_drift", lambda target, _check: DriftReport(target.display()))
    monkeypatch.setattr("infra.schema_objects.expected_objects", lambda _target: (None, None))


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    """Fresh Pulumi mocks for one test (mocks are process-wide, so each test installs its own)."""
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="junkquote-db", stack="unit", preview=False)
    yield recorder
    pulumi.runtime.set_all_config({}, [])
