from __future__ import annotations

from collections.abc import Iterator

import pulumi
import pytest

from tests.unit.mocks import RecordingMocks


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    """Fresh Pulumi mocks for one test (mocks are process-wide, so each test installs its own)."""
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="junkquote-db", stack="unit", preview=False)
    yield recorder
    pulumi.runtime.set_all_config({}, [])


@pytest.fixture(autouse=True)
def nothing_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tier, no database: the ledger reads (lint in `up`, gates) see every batch applied, nothing pending."""
    monkeypatch.setattr("infra.schema.pending_batches", lambda _target, _batches: ())
