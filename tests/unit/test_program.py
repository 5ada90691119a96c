"""The whole program (__main__.py) under Pulumi mocks, with the real stack files' config."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.migrations.gate import GateStatus
from infra.migrations.state import DatabaseState

from tests.unit.mocks import RecordingMocks

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"junkquote-db:password": "pw-admin", "junkquote-db:appPassword": "pw-app",
           "junkquote-db:readonlyPassword": "pw-readonly",
           "junkquote-db:memberPasswords": json.dumps({"support_kim": "pw-kim", "staging_support_kim": "pw-kim"})}


def stack_config(stack: str) -> dict[str, str]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (document.get("config") or {}).items()}
    return {**config, **SECRETS}


def run_program(stack: str) -> dict[str, Any]:
    pulumi.runtime.set_all_config(stack_config(stack), list(SECRETS))
    return runpy.run_path(str(ROOT / "__main__.py"))


ALL_BATCHES = ["0000_baseline", "0001_add_memory_entities", "0002_backfill_customers", "0003_require_customer_links"]


@pulumi.runtime.test
def test_dev_declares_no_pulumi_postgresql_resource_so_it_runs_without_the_plugin(mocks: RecordingMocks):
    program = run_program("dev")

    def check(_: object) -> None:
        types = {r.typ for r in mocks.resources}
        assert not [t for t in types if t.startswith("postgresql:")]
        # Every batch applied (the unit tier's ledger): one history lists them by checksum, and runs nothing.
        [history] = mocks.of_type(":SchemaHistory")
        assert sorted(history.inputs["applied"]) == ALL_BATCHES
        assert history.inputs["pending"] == [] and history.inputs["corrections"] == []

    return program["schema"].schema_version.apply(check)


@pulumi.runtime.test
def test_staging_declares_roles_then_batches_then_grants_and_their_verification(mocks: RecordingMocks):
    program = run_program("staging")

    def check(_: object) -> None:
        types = [r.typ for r in mocks.resources]
        assert types.count("postgresql:index/role:Role") == 4
        assert "pulumi-python:dynamic/junkquote:AccessVerification" in types
        [history] = mocks.of_type(":SchemaHistory")
        assert history.inputs["settings"]["role"] == "junkquote_staging_migrator"

    return program["verification"].id.apply(check)


@pulumi.runtime.test
def test_prod_is_protected_and_adopts_the_baseline(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("infra.preflight.read_state", lambda _target, _tables=(): DatabaseState({}, {}))
    monkeypatch.setattr("infra.gating.gate_status", lambda *_: GateStatus(False, ("the gate is closed",)))
    program = run_program("prod")

    def check(_: object) -> None:
        [history] = mocks.of_type(":SchemaHistory")
        pending = {b["batch"]: b for b in history.inputs["pending"]}
        assert list(pending) == ALL_BATCHES[:3], "0003 waits for its gate"
        assert pending["0000_baseline"].get("adopt") is True
        assert "adopt" not in pending["0001_add_memory_entities"]
        assert history.inputs["protected"] is True

    return program["schema"].schema_version.apply(check)
