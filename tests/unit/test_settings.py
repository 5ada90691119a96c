"""Stack config becomes typed settings, and bad config names the key."""

from __future__ import annotations

import json

import pytest

from infra.durations import parse_duration_ms
from infra.settings import ConfigError, configured_keys, load_settings, parse_database, parse_migrations

GOOD_DB = {"host": "db.internal", "port": 5432, "name": "junkquote", "user": "migrator"}


def test_database_target_is_host_port_and_name_without_credentials() -> None:
    db = parse_database(GOOD_DB, "s3cret-pw")
    assert db.target == "db.internal:5432/junkquote"
    assert "s3cret-pw" not in repr(db)
    assert db.sslmode == "prefer"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"host": None}, "database.host"),
        ({"host": "db;drop"}, "database.host"),
        ({"port": 70000}, "database.port"),
        ({"port": "54x32"}, "database.port"),
        ({"port": "0"}, "database.port"),
        ({"name": 'x"; DROP'}, "database.name"),
        ({"user": ""}, "database.user"),
        ({"sslmode": "sometimes"}, "database.sslmode"),
        ({"hots": "typo"}, "database.hots"),
    ],
)
def test_bad_database_config_names_the_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"junkquote-db:{key} "):
        parse_database({**GOOD_DB, **change}, None)


@pytest.mark.parametrize("port", [55432, "55432", " 55432 "])
def test_a_port_is_accepted_as_a_number_or_as_a_string_of_digits(port: int | str) -> None:
    assert parse_database({**GOOD_DB, "port": port}, None).port == 55432


def test_missing_database_section_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="junkquote-db:database is required"):
        parse_database(None, None)


def test_migration_defaults_are_lock_safe() -> None:
    m = parse_migrations(None)
    assert (m.lock_timeout_ms, m.lock_retries, m.statement_timeout_ms) == (500, 10, 30 * 60_000)
    assert not m.protected and not m.adopt_baseline and m.lint == "warn"


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        ({"lockTimeout": "soon"}, "migrations.lockTimeout"),
        ({"lockRetries": -1}, "migrations.lockRetries"),
        ({"baseline": "skip"}, "migrations.baseline"),
        ({"lint": "ignore"}, "migrations.lint"),
        ({"protected": "yes"}, "migrations.protected"),
        ({"lockTimout": "1s"}, "migrations.lockTimout"),
        ({"statementTimeout": "1000h"}, "migrations.statementTimeout"),
    ],
)
def test_bad_migration_config_names_the_key(obj: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"junkquote-db:{key} "):
        parse_migrations(obj)


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("2s", 2000), ("1.5s", 1500), ("5min", 300_000), ("1h", 3_600_000), (250, 250)])
def test_durations_parse_to_milliseconds(text: str | int, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5 minutes", "-1s", True])
def test_unparseable_durations_are_none(text: object) -> None:
    assert parse_duration_ms(text) is None  # type: ignore[arg-type]


def test_allowed_drift_defaults_to_nothing_and_keeps_the_listed_objects() -> None:
    assert parse_migrations({}).allowed_drift == frozenset()
    allowed = parse_migrations({"allowedDrift": ["index Lead.lead_by_hand_idx", "table Scratch"]}).allowed_drift
    assert allowed == {"index Lead.lead_by_hand_idx", "table Scratch"}


@pytest.mark.parametrize("value", ["index Lead.x", ["Lead.x"], [""]])
def test_a_malformed_allowed_drift_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="migrations.allowedDrift"):
        parse_migrations({"allowedDrift": value})


def test_a_top_level_key_the_project_does_not_know_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # The config map as the language host hands it to the program.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"junkquote-db:lockTimeout": "1s", "aws:region": "eu-west-1",
                                                    "junkquote-db:database": json.dumps(GOOD_DB)}))
    assert configured_keys() == {"lockTimeout", "database"}  # other namespaces are not this project's
    with pytest.raises(ConfigError, match=r"junkquote-db:lockTimeout is not a known setting \(known: appPassword, backfill, "):
        load_settings()
