"""The whole program (__main__.py) under Pulumi mocks, with the real stack files' config."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import yaml

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


@pulumi.runtime.test
def test_dev_declares_no_pulumi_postgresql_resource_so_it_runs_without_the_plugin(mocks: RecordingMocks):
    program = run_program("dev")

    def check(_: object) -> None:
        types = {r.typ for r in mocks.resources}
        assert not [t for t in types if t.startswith("postgresql:")]
        # Nothing pending (no database in the unit tier), so no batch waits on a gate: every batch is declared.
        assert [r.name for r in mocks.of_type(":Migration")] == [
            "0000_baseline", "0001_add_memory_entities", "0002_backfill_customers", "0003_require_customer_links"]

    return program["schema"].schema_version.apply(check)


@pulumi.runtime.test
def test_staging_declares_roles_then_batches_then_grants_and_their_verification(mocks: RecordingMocks):
    program = run_program("staging")

    def check(_: object) -> None:
        types = [r.typ for r in mocks.resources]
        assert types.count("postgresql:index/role:Role") == 4
        assert "pulumi-python:dynamic/junkquote:AccessVerification" in types
        migrations = mocks.of_type(":Migration")
        assert {m.inputs["settings"]["role"] for m in migrations} == {"junkquote_staging_migrator"}
        assert all(m.inputs["adopt"] is False for m in migrations)

    return program["access_outputs"]["accessChecks"].apply(check)


@pulumi.runtime.test
def test_prod_is_protected_and_adopts_the_baseline(mocks: RecordingMocks):
    program = run_program("prod")

    def check(_: object) -> None:
        migrations = {m.name: m.inputs for m in mocks.of_type(":Migration")}
        assert migrations["0000_baseline"]["adopt"] is True
        assert migrations["0001_add_memory_entities"]["adopt"] is False
        assert all(m["protected"] for m in migrations.values())

    return program["schema"].schema_version.apply(check)
