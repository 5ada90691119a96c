"""Lint at review time: `pulumi preview` shows squawk's findings; a blocking stack fails on an unaccepted one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.project import ProjectStack

pytestmark = pytest.mark.slow

UNSAFE = 'CREATE INDEX "Lead_phone_name_idx" ON "Lead" ("phone", "name");\n'
ACCEPTED = ('-- lint: accept require-concurrent-index-creation -- Lead is empty on this service until launch\n'
            'CREATE INDEX "Lead_phone_name_idx" ON "Lead" ("phone", "name");\n')


CHECK = "SELECT 'index_exists' AS check_name, to_regclass('\"Lead_phone_name_idx\"') IS NOT NULL AS ok, '' AS detail;"
ROLLBACK = 'DROP INDEX CONCURRENTLY IF EXISTS "Lead_phone_name_idx";'


@pytest.fixture
def dev_like(make_stack: Callable[..., ProjectStack]) -> ProjectStack:
    stack = make_stack(migrations={"lint": "warn"})
    stack.stack.up(on_output=lambda _: None)
    return stack


@pytest.fixture
def prod_like(make_stack: Callable[..., ProjectStack]) -> ProjectStack:
    stack = make_stack(migrations={"lint": "block"})
    stack.stack.up(on_output=lambda _: None)
    return stack


def test_a_finding_is_shown_with_batch_file_line_rule_and_advice_and_only_warns_on_dev(dev_like: ProjectStack) -> None:
    dev_like.add_batch("0002_lead_phone_name", UNSAFE, CHECK, ROLLBACK)
    result = dev_like.cli("preview")
    assert result.returncode == 0, result.stdout
    assert "0002_lead_phone_name migration.sql:1 require-concurrent-index-creation:" in result.stdout
    assert "concurrently" in result.stdout.split("require-concurrent-index-creation:", 1)[1].splitlines()[0].lower()


def test_an_unaccepted_finding_fails_the_preview_of_a_blocking_stack(prod_like: ProjectStack) -> None:
    prod_like.add_batch("0002_lead_phone_name", UNSAFE, CHECK, ROLLBACK)
    result = prod_like.cli("preview")
    assert result.returncode != 0
    assert "0002_lead_phone_name migration.sql:1 require-concurrent-index-creation" in result.stdout + result.stderr
    assert "lint: accept" in result.stdout + result.stderr, "the message says how to accept a finding"


def test_an_accepted_finding_with_a_reason_passes_a_blocking_stack(prod_like: ProjectStack) -> None:
    prod_like.add_batch("0002_lead_phone_name", ACCEPTED, CHECK, ROLLBACK)
    result = prod_like.cli("preview")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted: Lead is empty on this service until launch" in result.stdout


def test_skipping_the_preview_does_not_skip_a_blocking_lint_policy(prod_like: ProjectStack) -> None:
    prod_like.add_batch("0002_lead_phone_name", UNSAFE, CHECK, ROLLBACK)
    result = prod_like.cli("up", "--yes", "--skip-preview")
    assert result.returncode != 0
    assert "0002_lead_phone_name migration.sql:1 require-concurrent-index-creation" in result.stdout + result.stderr
