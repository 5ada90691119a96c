"""The pre-apply backup (`migrations.backupBeforeApply`): in `pulumi up`, a pg_dump of the stack's database
before the first pending batch runs, skipped when nothing is pending. Runs in the program before the batches are
declared, so no batch can start before the dump is written; a failed dump stops the run with nothing applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import pulumi

from .migrations.dump import dump_database
from .migrations.plan import Batch
from .migrations.state import read_state
from .providers.connection_props import target_of
from .settings import StackSettings


def backup_before_apply(settings: StackSettings, batches: Sequence[Batch]) -> dict[str, str]:
    """The stack output `preApplyBackup` (where the dump was written); none when not configured, in a preview, or
    with nothing pending."""
    directory = settings.migrations.backup_before_apply
    if directory is None or pulumi.runtime.is_dry_run():
        return {}
    target = target_of(settings.database)
    pending = read_state(target).pending(batches)
    if not pending:
        return {}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory.resolve() / f"{settings.stack}-{settings.database.name}-{stamp}-before-{pending[0].name}.dump"
    dump_database(target, path, data="full")
    pulumi.log.info(f"pre-apply backup of {target.display()} written to {path} (pg_restore --dbname=<db> {path.name})")
    return {"preApplyBackup": str(path)}
