"""The review report of a real stack: config read through the Pulumi CLI, ledger read from a real PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from infra.migrations.target import Target
from tests.e2e.project import ROOT, ProjectStack, database_config
from tests.e2e.test_failures import HOSTILE_PASSWORD, app_user  # noqa: F401  (a fixture)

PENDING = 'ALTER TABLE "Lead" ADD COLUMN "source" TEXT;\nCREATE INDEX "Lead_source_idx" ON "Lead" ("source");\n'


def test_the_report_of_a_stack_with_a_pending_batch_shows_its_sql_locks_and_lint_and_no_secret(
        make_stack: Callable[..., ProjectStack], app_user: Target, db_target: Target) -> None:  # noqa: F811
    stack = make_stack(batches=["0000_baseline"], database={**database_config(db_target), "user": app_user.user},
                       secrets={"password": HOSTILE_PASSWORD})
    stack.stack.up(on_output=lambda _: None)
    stack.add_batch("0001_lead_source", PENDING, rollback='DROP INDEX IF EXISTS "Lead_source_idx";\nALTER TABLE "Lead" DROP COLUMN IF EXISTS "source";\n')

    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "infra.pr_report", stack.stack.name],
                          cwd=stack.workdir, env=stack.env, capture_output=True, text=True, check=False)

    text = done.stdout
    assert done.returncode == 0, done.stderr
    assert f"| `{stack.stack.name}` | `{db_target.host}:{db_target.port}/{db_target.dbname}` | apply 1 batch (0001_lead_source) |" in text
    assert PENDING.strip() in text  # the full SQL, in its collapsed block
    assert "**writes wait**: SHARE on existing table Lead: blocks writes while held (migration.sql:2" in text
    assert "`migration.sql:2` `require-concurrent-index-creation`" in text
    assert "Lead {\n        text source\n    }" in text  # the ER diagram shows the added column
    assert "Blockers" not in text
    assert HOSTILE_PASSWORD not in text + done.stderr
