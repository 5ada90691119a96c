"""Shared test policy and fixtures.

With CI=true a missing dependency (PostgreSQL, the Pulumi CLI) fails, never skips. The database fixtures
are used by the integration and e2e tiers; the unit tier never asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from infra.migrations.target import Target
from tests.pg import create_database, drop_database, server_target


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a test tier must never vanish silently from a CI run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Counts per tier, so a CI log shows that the database and Pulumi tiers really ran."""
    tiers: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            parts = getattr(report, "nodeid", "").split("/")
            tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
            tiers.setdefault(tier, {}).setdefault(outcome, 0)
            tiers[tier][outcome] += 1
    if tiers:
        terminalreporter.section("tests per tier")
        for tier, counts in sorted(tiers.items()):
            terminalreporter.write_line(f"{tier}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Target]:
    """The test server's maintenance database (PG_TEST_DSN, or a throwaway embedded PostgreSQL 18)."""
    try:
        with server_target() as target:
            yield target
    except (RuntimeError, OSError, psycopg.Error) as err:
        unavailable(f"no PostgreSQL server for the database tests: {err}")


@pytest.fixture
def db_target(pg_admin: Target) -> Iterator[Target]:
    """A fresh, empty database on the test server, dropped afterwards."""
    target = create_database(pg_admin)
    yield target
    drop_database(pg_admin, target.dbname)
