"""A stack applied by one version of the provider is updated and destroyed by the next one.

The dynamic provider is pickled into state by reference (`infra.providers.history.SchemaHistoryProvider`),
and keeps nothing on `self`, so `pulumi up` and `pulumi destroy` always run the code in the checkout on the
property bags in state. What this pins: the code in the checkout, not a copy frozen in state, runs against the
old state (so the class must stay importable under that name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.migrations.target import Target
from tests.e2e.project import ProjectStack, changes
from tests.pg import connect

pytestmark = pytest.mark.slow


def upgrade_provider(workdir: Path) -> Path:
    """Turn the copy's provider into a 'next version' that marks every rollback it runs."""
    module = workdir / "infra" / "providers" / "history.py"
    text = module.read_text()
    marker = workdir / "next-version-deleted"
    text = text.replace(
        "    def delete(self, _id: str, props: dict[str, Any]) -> None:\n",
        "    def delete(self, _id: str, props: dict[str, Any]) -> None:\n"
        f"        open({str(marker)!r}, 'a').write(props['schemaVersion'] + '\\n')\n",
    )
    assert "next-version-deleted" in text, "the provider source changed shape; update this test"
    module.write_text(text)
    return marker


def test_a_stack_applied_by_the_previous_provider_is_updated_and_destroyed_by_the_next(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)

    marker = upgrade_provider(stack.workdir)
    again = stack.stack.up(on_output=lambda _: None)
    assert changes(again.summary.resource_changes) == {}, "the new code reads the old state without a diff"

    stack.stack.destroy(on_output=lambda _: None)
    assert marker.read_text().split() == ["0001_add_memory_entities"], "the next version ran the rollback"
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def with_per_batch_resources(stack: ProjectStack) -> None:
    """Rewrite the stack's state as a version with one `Migration` resource per batch left it: the history is
    replaced by one resource per applied batch, each pickling `infra.providers.migration.MigrationProvider`."""
    from pulumi.dynamic.dynamic import serialize_provider

    from infra.providers.migration import MigrationProvider

    exported = json.loads(stack.cli("stack", "export", check=True).stdout)
    resources = exported["deployment"]["resources"]
    history = next(r for r in resources if r["type"].endswith(":SchemaHistory"))
    provider = serialize_provider(MigrationProvider())
    legacy = []
    for batch in [b["name"] for b in history["outputs"]["batches"]]:
        urn = history["urn"].replace("junkquote:SchemaHistory::history", f"junkquote:Migration::{batch}")
        props = {"__provider": provider, "batch": batch, "connection": history["inputs"]["connection"]}
        legacy.append({**history, "urn": urn, "id": batch, "type": "pulumi-python:dynamic/junkquote:Migration",
                       "inputs": props, "outputs": props, "dependencies": []})
    exported["deployment"]["resources"] = [r for r in resources if r is not history] + legacy
    stack.cli("state", "unprotect", "--all", "--yes")
    path = stack.workdir / "legacy-state.json"
    path.write_text(json.dumps(exported))
    stack.cli("stack", "import", "--file", str(path), check=True)


def test_a_stack_with_one_resource_per_batch_is_taken_over_by_the_history_without_a_rollback(make_stack: Callable[..., ProjectStack], db_target: Target) -> None:
    stack = make_stack()
    stack.stack.up(on_output=lambda _: None)
    with connect(db_target) as conn:
        conn.execute("""INSERT INTO "Customer" ("id", "name") VALUES ('c1', 'Kim')""")
    with_per_batch_resources(stack)

    upgrade = stack.stack.up(on_output=lambda _: None)

    assert changes(upgrade.summary.resource_changes) == {"create": 1, "delete": 2}, "the history comes, the per-batch resources go"
    with connect(db_target) as conn:
        assert [r[0] for r in conn.execute("SELECT batch FROM schema_ledger.batch ORDER BY batch")] == ["0000_baseline", "0001_add_memory_entities"]
        assert conn.execute('SELECT "name" FROM "Customer"').fetchall() == [("Kim",)], "nothing was rolled back"
    assert changes(stack.stack.up(on_output=lambda _: None).summary.resource_changes) == {}
    stack.stack.destroy(on_output=lambda _: None)
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,), "destroy rolls back through the history"
