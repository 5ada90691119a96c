"""The schema component declares one SchemaHistory: every applied batch by its checksums, and in full only what
a run does (pending batches, corrections, a rollback asked for). Its diff makes the run after `up` a no-op."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pulumi
import pytest

from infra.migrations.gate import GateStatus
from infra.migrations.plan import load_batches
from infra.migrations.state import DatabaseState
from infra.providers.history import SchemaHistoryProvider
from infra.schema import SchemaMigrations
from infra.settings import DatabaseSettings, StackSettings, parse_migrations
from tests.unit.conftest import every_batch_applied
from tests.unit.mocks import RecordingMocks

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
BATCHES = load_batches(SQL_DIR)
NAMES = [b.name for b in BATCHES]


def stack_settings(**migrations: object) -> StackSettings:
    db = DatabaseSettings(host="db.internal", port=5432, name="junkquote", user="admin", sslmode="require", password="pw-unit-secret")
    return StackSettings(stack="test", database=db, migrations=parse_migrations(dict(migrations)))


def ledger_with(monkeypatch: pytest.MonkeyPatch, state: DatabaseState) -> None:
    monkeypatch.setattr("infra.preflight.read_state", lambda _target, _tables=(): state)
    monkeypatch.setattr("infra.gating.gate_status", lambda *_: GateStatus(True, ()))


def history_inputs(mocks: RecordingMocks) -> dict:
    [history] = mocks.of_type(":SchemaHistory")
    return history.inputs


@pulumi.runtime.test
def test_applied_batches_are_listed_by_checksum_and_nothing_runs(mocks: RecordingMocks):
    schema = SchemaMigrations("schema", stack_settings(), BATCHES)

    def check(_: object) -> None:
        inputs = history_inputs(mocks)
        assert inputs["applied"] == {b.name: b.checksums for b in BATCHES}
        assert inputs["pending"] == [] and inputs["corrections"] == [] and inputs.get("rollBackFrom") is None
        assert len(mocks.of_type(":SchemaHistory")) == 1, "one resource whatever the number of batches"

    return schema.history.id.apply(check)


@pulumi.runtime.test
def test_pending_batches_carry_their_files_plan_target_and_settings(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch):
    ledger_with(monkeypatch, DatabaseState({}, {}))
    schema = SchemaMigrations("schema", stack_settings(lockTimeout="2s"), BATCHES)

    def check(_: object) -> None:
        inputs = history_inputs(mocks)
        assert [b["batch"] for b in inputs["pending"]] == NAMES
        first = inputs["pending"][0]
        assert first["checksums"] == BATCHES[0].checksums
        assert "\n".join(first["rollbackSql"]) == BATCHES[0].rollback
        assert first["plan"] and first["plan"][0].startswith("step  1")
        assert inputs["target"] == "db.internal:5432/junkquote"
        assert inputs["connection"] == {"host": "db.internal", "port": 5432, "dbname": "junkquote", "user": "admin", "sslmode": "require"}
        assert inputs["settings"]["lockTimeoutMs"] == 2000
        assert inputs["applied"] == {}

    return schema.history.id.apply(check)


@pulumi.runtime.test
def test_the_database_password_reaches_the_history_as_a_secret(mocks: RecordingMocks):
    schema = SchemaMigrations("schema", stack_settings(), BATCHES)
    password = schema.history.password  # type: ignore[attr-defined]
    return pulumi.Output.from_input(password.is_secret()).apply(lambda secret: _assert(secret, "the password stays secret in state"))


@pulumi.runtime.test
def test_baseline_is_adopted_only_when_the_stack_says_so(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch):
    ledger_with(monkeypatch, DatabaseState({}, {}))
    schema = SchemaMigrations("schema", stack_settings(baseline="adopt"), BATCHES)

    def check(_: object) -> None:
        adopt = {b["batch"]: b.get("adopt", False) for b in history_inputs(mocks)["pending"]}
        assert adopt == {b.name: b.number == 0 for b in BATCHES}

    return schema.history.id.apply(check)


@pulumi.runtime.test
def test_a_corrected_file_and_a_ledger_row_without_files_are_recorded_by_the_run(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch):
    state = every_batch_applied(None)
    entries = dict(state.entries)
    entries[NAMES[1]] = replace(entries[NAMES[1]], validation_sha256="0" * 64)  # validation.sql corrected since
    entries[NAMES[2]] = replace(entries[NAMES[2]], migration_sql=None)  # recorded before the ledger kept files
    ledger_with(monkeypatch, DatabaseState(entries, {}))
    schema = SchemaMigrations("schema", stack_settings(), BATCHES)

    def check(_: object) -> None:
        inputs = history_inputs(mocks)
        assert [b["batch"] for b in inputs["corrections"]] == NAMES[1:3]
        assert inputs["pending"] == []

    return schema.history.id.apply(check)


@pulumi.runtime.test
def test_roll_back_from_names_the_first_applied_batch_to_roll_back_and_applies_none_after_it(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch):
    state = every_batch_applied(None)
    entries = {n: e for n, e in state.entries.items() if n != NAMES[3]}  # 0003 not applied
    ledger_with(monkeypatch, DatabaseState(entries, {}))
    schema = SchemaMigrations("schema", stack_settings(rollBackFrom=NAMES[1]), BATCHES)

    def check(_: object) -> None:
        inputs = history_inputs(mocks)
        assert inputs["rollBackFrom"] == NAMES[1]
        assert list(inputs["applied"]) == NAMES[:1]
        assert inputs["pending"] == [], "0003 is not applied while 0001 and later are rolled back"

    return schema.history.id.apply(check)


def _assert(value: bool, message: str) -> None:
    assert value, message


# -- the history's diff -------------------------------------------------------------------------------
CONNECTION = {"connection": {"host": "h", "port": 5432, "dbname": "d", "user": "u"}, "settings": {"stack": "s"}}
SUMS = {name: {"migration.sql": f"m{i}", "validation.sql": f"v{i}", "rollback.sql": f"r{i}"} for i, name in enumerate(NAMES)}


def bag(name: str) -> dict:
    return {"batch": name, "checksums": SUMS[name], "migrationSql": ["SELECT 1;"]}


def diff(olds: dict, news: dict) -> bool:
    return SchemaHistoryProvider().diff("schema-history", {**CONNECTION, **olds}, {**CONNECTION, **news}).changes


def ledger_of(*names: str) -> list[dict]:
    return [{"name": n} for n in names]


def test_the_run_after_up_is_a_no_op_once_the_applied_batch_moves_into_applied():
    after_up = {"applied": {n: SUMS[n] for n in NAMES[:2]}, "pending": [bag(NAMES[2])], "batches": ledger_of(*NAMES[:3])}
    next_run = {"applied": {n: SUMS[n] for n in NAMES[:3]}, "pending": [], "corrections": []}
    assert diff(after_up, next_run) is False


def test_a_refresh_right_after_up_finds_the_pending_batch_in_the_ledger_and_no_change():
    inputs = {"applied": {n: SUMS[n] for n in NAMES[:2]}, "pending": [bag(NAMES[2])]}
    assert diff({**inputs, "batches": ledger_of(*NAMES[:3])}, inputs) is False


def test_a_pending_batch_a_correction_or_a_rollback_is_a_change():
    applied = {"applied": {n: SUMS[n] for n in NAMES[:2]}}
    olds = {**applied, "batches": ledger_of(*NAMES[:2])}
    corrected = {**bag(NAMES[1]), "checksums": {**SUMS[NAMES[1]], "validation.sql": "v-corrected"}}
    assert diff(olds, {**applied, "pending": [bag(NAMES[2])]}) is True
    assert diff(olds, {**applied, "corrections": [corrected]}) is True
    assert diff(olds, {"applied": {NAMES[0]: SUMS[NAMES[0]]}, "rollBackFrom": NAMES[1]}) is True


def test_a_rollback_done_is_no_change_on_refresh():
    inputs = {"applied": {NAMES[0]: SUMS[NAMES[0]]}, "rollBackFrom": NAMES[1]}
    assert diff({**inputs, "batches": ledger_of(NAMES[0])}, inputs) is False


def test_a_batch_gone_from_the_ledger_outside_the_stack_is_a_change_on_refresh():
    inputs = {"applied": {n: SUMS[n] for n in NAMES[:2]}}
    assert diff({**inputs, "batches": ledger_of(NAMES[0])}, inputs) is True


def test_new_connection_settings_are_a_change():
    applied = {"applied": {n: SUMS[n] for n in NAMES[:2]}, "batches": ledger_of(*NAMES[:2])}
    assert SchemaHistoryProvider().diff("schema-history", {**CONNECTION, **applied},
                                        {**CONNECTION, **applied, "settings": {"stack": "s", "lockTimeoutMs": 2000}}).changes
