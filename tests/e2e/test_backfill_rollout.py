"""The rollout through the real Pulumi CLI: 0002 backfills seeded legacy data with progress lines, 0003 waits
for its gate, then applies on the next `up` once the stack says the application writes customer_id."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pulumi import automation as auto

from bench.legacy import LegacyShape, generate
from infra.migrations.target import Target
from tests.e2e.project import ProjectStack
from tests.pg import connect

pytestmark = pytest.mark.slow

BATCHES = ["0000_baseline", "0001_add_memory_entities", "0002_backfill_customers", "0003_require_customer_links"]


def test_up_backfills_with_progress_keeps_0003_waiting_then_applies_it_when_the_gate_opens(
        make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack(batches=BATCHES[:2])
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        generate(conn, LegacyShape(400))
    for name in BATCHES[2:]:
        (stack.workdir / "sql").joinpath(name).mkdir()
        for f in (ROOT_SQL / name).iterdir():
            (stack.workdir / "sql" / name / f.name).write_text(f.read_text())

    preview = stack.stack.preview(on_output=lambda _: None)
    assert "batch 0003_require_customer_links is waiting: stack config junkquote-db:gates.appWritesCustomerId is not true" in preview.stdout
    assert "leads without a customer: 400" in preview.stdout
    assert "then the backfill (backfill.toml), 4 parts in this order" in preview.stdout
    assert 'customers: "Lead" by "id", through customer_backfill.link_leads, then its sweep' in preview.stdout
    assert ("throttle: chunks of 100 to 20,000 rows, each sized to last 70 ms (for a write-latency target of 100 ms)"
            in preview.stdout)
    assert "what it did is kept and the next `up` continues it" in preview.stdout
    assert "cannot see which table autovacuum" not in preview.stdout + preview.stderr  # the test server's superuser

    up = stack.stack.up(on_output=lambda _: None)
    assert "backfill 0002_backfill_customers customers [done]: 400/400 rows" in up.stdout
    assert "0003_require_customer_links is waiting" in up.stdout
    assert stack.outputs()["contextMemoryReady"] is True
    assert stack.outputs()["schemaVersion"] == "0002_backfill_customers"

    stack.stack.set_config("junkquote-db:gates", _bool_map(appWritesCustomerId=True))
    stack.stack.up(on_output=lambda _: None)
    assert stack.outputs()["schemaVersion"] == "0003_require_customer_links"
    with connect(db_target) as conn:
        assert conn.execute("""SELECT attnotnull FROM pg_attribute WHERE attrelid = '"Lead"'::regclass
                               AND attname = 'customer_id'""").fetchone()[0] is True


ROOT_SQL = Path(__file__).resolve().parents[2] / "sql"


def _bool_map(**values: bool) -> auto.ConfigValue:
    return auto.ConfigValue(value=json.dumps(values))
