"""A stack applied by one version of the provider is updated and destroyed by the next one.

The dynamic provider is pickled into state by reference (`infra.providers.migration.MigrationProvider`),
and keeps nothing on `self`, so `pulumi up` and `pulumi destroy` always run the code in the checkout on the
property bags in state. What this pins: the code in the checkout, not a copy frozen in state, runs against the
old state (so the class must stay importable under that name).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from infra.migrations.target import Target
from tests.e2e.project import ProjectStack, changes
from tests.pg import connect

pytestmark = pytest.mark.slow


def upgrade_provider(workdir: Path) -> Path:
    """Turn the copy's provider into a 'next version' that marks every rollback it runs."""
    module = workdir / "infra" / "providers" / "migration.py"
    text = module.read_text()
    marker = workdir / "next-version-deleted"
    text = text.replace(
        "    def delete(self, _id: str, props: dict[str, Any]) -> None:\n",
        "    def delete(self, _id: str, props: dict[str, Any]) -> None:\n"
        f"        open({str(marker)!r}, 'a').write(props['batch'] + '\\n')\n",
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
    assert marker.read_text().split() == ["0001_add_memory_entities", "0000_baseline"], "the next version ran the rollbacks"
    with connect(db_target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
