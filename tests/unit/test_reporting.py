"""The engine's messages name no tool; the Pulumi front end says the same thing with its commands."""

from __future__ import annotations

import pytest

from infra.migrations.backfill_errors import (BackfillIncomplete, BackfillPaused, ChunkTooSlow, CommitsStalled, CommitWatchFailed,
                                              LockWatchFailed, ReplicaLagging)
from infra.migrations.errors import (
    AdoptionRefused,
    AuthenticationFailed,
    ConnectionLost,
    MigrationError,
    RollbackFailed,
    RollbackIncomplete,
    RunStopped,
    SchemaDrift,
    TargetUnreachable,
    ValidationNotRun,
)
from infra.migrations.lint import LintBlocked, LintFinding
from infra.providers.reporting import pulumi_message

FINDING = LintFinding("0002_x", "migration.sql", 3, "prefer-bigint-over-int", "use bigint", None)

# Each error that asks the user to do something, what the engine says, and what a Pulumi user reads instead.
CASES = [
    (ConnectionLost("db:5432/app", "0001_x", "migration.sql step 2"),
     "completed steps are recorded, apply again to resume",
     "completed steps are recorded, run `pulumi up` again to resume"),
    (RunStopped("0001_x", "migration.sql", 2, "the caller is gone"),
     "apply again to resume", "run `pulumi up` again to resume"),
    (ValidationNotRun("0001_x", "db:5432/app", "validation.sql:3: timeout", 1),
     "apply again to validate and record it", "run `pulumi up` again to validate and record it"),
    (RollbackFailed("0001_x", "rollback.sql:2 failed: boom", 1, 2),
     "(or correct rollback.sql and apply to record it), then roll back again to resume",
     "(or correct rollback.sql and run `pulumi up` to record it), then run `pulumi destroy` again to resume"),
    (RollbackIncomplete("0001_x", 1, 2, None),
     "roll back again to finish the rollback", "run `pulumi destroy` again to finish the rollback"),
    (AuthenticationFailed("db:5432/app", "owner"),
     "set the right password for it", "set the right one with `pulumi config set --secret junkquote-db:password`"),
    (TargetUnreachable("db:5432/app", "connection refused"),
     "port and name in the settings", "port and name in the stack config"),
    (AdoptionRefused("0000_base", [("lead_exists", "missing")]),
     "apply the baseline on an empty database instead",
     "set junkquote-db:migrations.baseline to apply on an empty one"),
    (SchemaDrift("db:5432/app", "0001_x", ["table T: extra"]),
     "(a drift check shows each difference)", "(`pulumi refresh` shows each difference)"),
    (LintBlocked([FINDING]), "(or set the lint policy to warn)", "(or set junkquote-db:migrations.lint to warn)"),
    (BackfillIncomplete("0002_x", [("orphans", "3")]), "then apply again", "then run `pulumi up` again"),
    (ReplicaLagging("0002_x", "leads", 9000.0, 2000),
     "apply again to continue from here", "run `pulumi up` again to continue from here"),
    (ReplicaLagging("0002_x", "Lead", 9000.0, 2000, "pages"),
     "stopped after its chunks, while reading table Lead before the checks: a streaming replica is 9.0 s behind",
     "run `pulumi up` again to finish: these reads, then the checks"),
    (CommitWatchFailed("0002_x", "OperationalError: server closed the connection unexpectedly"),
     "everything done so far is kept; check the server and that the migration user owns schema_ledger, then apply "
     "again to continue from here", "owns schema_ledger, then run `pulumi up` again to continue from here"),
    (LockWatchFailed("0002_x", "OperationalError: server closed the connection unexpectedly"),
     "the watch for sessions waiting on its locks failed (OperationalError: server closed the connection "
     "unexpectedly); everything done so far is kept; check the server, then apply again to continue from here",
     "check the server, then run `pulumi up` again to continue from here"),
    (CommitsStalled("0002_x", "jobs", 61_200.0, 60_000),
     "a durable commit has waited 61 s (limit 60 s), so the application's commits are stalled too; everything done "
     "so far is kept; check synchronous_standby_names against the standbys connected (pg_stat_replication) and the "
     "server's disk, then apply again to continue from here", "then run `pulumi up` again to continue from here"),
    (CommitsStalled("0002_x", "Job", 61_200.0, 60_000, "pages"),
     "stopped after its chunks, while reading table Job before the checks: a durable commit has waited 61 s",
     "every chunk is kept; check synchronous_standby_names"),
    (ChunkTooSlow("0002_x", "jobs", 100, 93.0, 8, "pass", "a1"),
     "90 % of the stack's backfill target write latency) and were rolled back; all earlier chunks are kept; check "
     "what slows the server (locks, I/O) or those rows, or raise the target, then apply to continue",
     "90 % of junkquote-db:backfill.targetWriteLatency) and were rolled back; all earlier chunks are kept; check "
     "what slows the server (locks, I/O) or those rows, or raise the target, then run `pulumi up` to continue"),
    (ChunkTooSlow("0002_x", "Lead", 100, 93.0, 8, "settle", "page 4096"),
     "stopped after its chunks, while reading table Lead before the checks: 8 reads in a row of the pages of about "
     "100 rows (at page 4096), the fewest allowed, ran past their limit (93 ms the last; 90 % of the stack's backfill "
     "target write latency); every chunk is kept; check what slows the server (locks, I/O), or raise the target, "
     "then apply to validate", "or raise the target, then run `pulumi up` to validate"),
    (BackfillPaused("0002_x", "jobs", 3_000, 10_000),
     "paused (by the stack's backfill pause setting) before a chunk of part 'jobs' (3,000/10,000 rows of it done and "
     "kept); unpause it and apply again to continue", "(by junkquote-db:backfill.paused) before a chunk of part"),
    (BackfillPaused("0002_x", "Lead", 512, 4_096, "pages"),
     "paused (by the stack's backfill pause setting) after its chunks, while reading table Lead before the checks "
     "(512/4,096 pages); every chunk is kept; unpause it and apply again to finish: these reads, then the checks",
     "set it to false and run `pulumi up` to finish: these reads, then the checks"),
]


@pytest.mark.parametrize(("error", "engine", "pulumi"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_an_engine_error_says_what_to_do_without_naming_a_tool_and_pulumi_names_its_command(
        error: MigrationError, engine: str, pulumi: str) -> None:
    assert engine in str(error)
    assert "pulumi" not in str(error) and "junkquote-db:" not in str(error)
    assert pulumi in pulumi_message(error)
    assert "\n" not in pulumi_message(error)


def test_both_wordings_carry_the_same_data() -> None:
    error = ConnectionLost("db:5432/app", "0001_x", "migration.sql step 2 (line 7)")
    lead = "connection to db:5432/app was lost during migration.sql step 2 (line 7) of batch '0001_x'"
    assert str(error).startswith(lead) and pulumi_message(error).startswith(lead)
