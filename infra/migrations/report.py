"""Human-readable account of what applying a batch will do: steps, statements, objects and locks."""

from __future__ import annotations

from .backfill import MAX_REPLICA_WAIT_S, VALIDATION_ROUNDS
from .backfill_outlook import BackfillOutlook, PartOutlook
from .ledger import LedgerEntry
from .plan import Batch
from .runner import RunSettings
from .steps import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    ROW_EXCLUSIVE,
    ROW_SHARE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
    plan_steps,
    split_statements,
)
from .throttle import CALM_CHUNKS, ThrottleSettings

# What live traffic on the table feels while the lock is held.
IMPACT = {
    ACCESS_EXCLUSIVE: "blocks reads and writes while held",
    SHARE_ROW_EXCLUSIVE: "blocks writes while held",
    SHARE: "blocks writes while held",
    SHARE_UPDATE_EXCLUSIVE: "reads and writes continue",
    ROW_SHARE: "reads and writes continue",
    ROW_EXCLUSIVE: "reads and writes continue (rows it changes stay locked until its step commits)",
    ACCESS_SHARE: "reads and writes continue",
}


def step_lines(batch: Batch, file: str = "migration.sql") -> list[str]:
    """One line per step: how it runs, where it is in the file, what it does and which locks it takes."""
    return [_step_line(step) for step in plan_steps(batch, file)]


def step_blocks(batch: Batch, file: str = "migration.sql") -> list[str]:
    """The steps as describe_batch shows them: one line each, or a header and a line per grouped statement."""
    return [line for step in plan_steps(batch, file) for line in _step_block(step)]


def locked_tables(batch: Batch) -> set[str]:
    """The tables that existed before the batch on which it takes a lock."""
    return {lock.table for step in plan_steps(batch, "migration.sql") for stmt in step.statements
            for lock in stmt.locks if lock.existing and not lock.table.startswith("table of index ")}


def new_tables(batch: Batch) -> set[str]:
    """The tables the batch creates."""
    return {stmt.creates_table for step in plan_steps(batch, "migration.sql") for stmt in step.statements
            if stmt.creates_table}


def lock_lines(batch: Batch, absent: frozenset[str] = frozenset()) -> list[str]:
    """Locks the batch takes on tables that existed before it (the ones live traffic feels); a table in
    `absent` is not on the target, and the statement naming it would fail."""
    seen: list[str] = []
    for step in plan_steps(batch, "migration.sql"):
        for stmt in step.statements:
            for lock in stmt.locks:
                if lock.table in absent:
                    line = (f"table {lock.table} does not exist on the target: migration.sql:{stmt.line} will fail "
                            "unless an earlier batch creates it")
                else:
                    line = (f"{lock.mode} on existing table {lock.table}: {IMPACT[lock.mode]} "
                            f"(migration.sql:{stmt.line}, {_how(step)})")
                if lock.existing and line not in seen:
                    seen.append(line)
    return seen


def check_count(batch: Batch) -> int:
    """Number of statements in validation.sql (each may yield several checks)."""
    return len(split_statements(batch, "validation.sql"))


def describe_batch(batch: Batch, target: str, settings: RunSettings, absent: frozenset[str] = frozenset(),
                   backfill: BackfillOutlook | None = None) -> str:
    """What applying the batch does; for one that declares a backfill, `backfill` is what it will go through."""
    locks = lock_lines(batch, absent)
    checks = f"then validation.sql ({check_count(batch)} statements, run in a transaction that is rolled back)"
    if not batch.backfill:
        ending = [f"{checks}; if a step or a check fails, rollback.sql undoes the batch"]
    else:
        parts = backfill_lines(backfill, settings.backfill.throttle) if backfill else []
        ending = [*parts, f"{checks}: {backfill_ending()}"]
    lines = [
        f"batch {batch.name} will be applied to {target} "
        f"(lock_timeout {settings.lock_timeout_ms} ms, {settings.lock_retries} retries with backoff; "
        f"statement_timeout {human_ms(settings.statement_timeout_ms)}"
        + (f"; as role {settings.role}" if settings.role else "") + "):",
        *(f"  {line}" for line in step_blocks(batch)),
        "  locks on existing tables:" if locks else "  locks on existing tables: none",
        *(f"    {line}" for line in locks),
        *(f"  {line}" for line in ending),
    ]
    return "\n".join(lines)


def backfill_lines(outlook: BackfillOutlook, throttle: ThrottleSettings) -> list[str]:
    """The backfill that runs after migration.sql: its parts in order, the reads before the checks, the bounds its
    throttle keeps and what it waits for. (What the login user keeps it from seeing is a warning of its own.)"""
    held, calm = throttle.limits(contended=True), throttle.limits(contended=False)
    lines = [f"then the backfill (backfill.toml), {len(outlook.parts)} parts in this order, each a keyset pass in chunks "
             "of one short transaction, recorded in schema_ledger.backfill_progress (a stopped run continues after its "
             "last chunk):"]
    if outlook.starts_over:
        lines.append("  a stopped run of another version of this batch is undone first (rollback.sql), then the "
                     "backfill starts from the beginning")
    lines += [f"  {_part_line(p)}" for p in outlook.parts]
    lines.append("  then, paced like the chunks, a read of every page of the tables validation.sql scans in full "
                 "(the first read of a page after a checkpoint writes WAL, which the checks would write in one burst)")
    stretch = (f"; on PostgreSQL 14 and later, in a part where nobody has waited on {CALM_CHUNKS} chunks in a row, "
               f"while no vacuum works on its table, chunks are sized to last "
               f"{calm.budget_ms:.0f} ms and cancelled past {calm.timeout_ms} ms, or once a session has waited about "
               f"{calm.patience_ms:.0f} ms on one of their locks" if throttle.stretch_uncontended else "")
    lines.append(f"  throttle: chunks of {throttle.min_chunk_rows:,} to {throttle.max_chunk_rows:,} rows, each sized to "
                 f"last {held.budget_ms:.0f} ms (for a write-latency target of {throttle.target_write_latency_ms} ms); a "
                 f"chunk's statements are cancelled past {held.timeout_ms} ms (statement_timeout) and its lock waits past "
                 f"{throttle.lock_timeout_ms} ms (lock_timeout), and it is retried smaller{stretch}")
    lines.append(f"  it backs off on lock waits, commits slower than usual and a checkpoint's start; it waits while a "
                 f"streaming replica replays over {throttle.max_replay_lag_ms / 2000:g} s behind (and stops after "
                 f"{human_ms(int(MAX_REPLICA_WAIT_S * 1000))} of it); `junkquote-db:backfill.paused: true` stops it "
                 "between two chunks")
    return lines


def backfill_ending() -> str:
    """What happens when a backfill batch's checks fail, or its backfill stops: nothing is undone."""
    return (f"the checks are tried {VALIDATION_ROUNDS} times, the sweeps running again before each retry; if they "
            "still fail, or the backfill stops for any other reason (paused, a lagging replica, stalled commits, an "
            "error), what it did is kept and the next `up` continues it: only a failed step of migration.sql runs "
            "rollback.sql")


def _part_line(p: PartOutlook) -> str:
    table = ".".join(f'"{name}"' for name in p.part.table.split("."))
    sweep = ", then its sweep" if p.part.sweep else ""
    size = (f"about {p.estimated_rows:,} rows" if p.estimated_rows is not None
            else "rows not estimated (the table is not analyzed yet, or a pending batch creates it)")
    where = (f"; a stopped run finished its pass{', the sweep remains' if p.part.sweep else ''}" if p.pass_done else
             f"; a stopped run went through {p.rows_done:,} rows, it continues after them" if p.rows_done else "")
    return f'{p.part.name}: {table} by "{p.part.key}", through {p.part.chunk}{sweep}, {size}{where}'


def describe_adoption(batch: Batch, target: str, settings: RunSettings, absent: frozenset[str] = frozenset()) -> str:
    """What adopting the baseline of a live database does: its checks run, none of its statements."""
    return (
        f"batch {batch.name} will be adopted on {target}: none of its statements run; its validation.sql "
        f"({check_count(batch)} statements, run in a transaction that is rolled back) must pass against the live "
        "schema, then the batch is recorded as applied (adopted). If a check fails, nothing is recorded and "
        "nothing changes."
    )


def describe_correction(batch: Batch, entry: LedgerEntry) -> str:
    """What recording a corrected file of an applied batch does (no statement of migration.sql runs)."""
    changed = [f for f, sha in batch.checksums.items() if entry.checksums.get(f) != sha]
    what = {
        "migration.sql": "migration.sql changed in comments or layout only (same statements): recorded, nothing runs",
        "validation.sql": "validation.sql corrected: its checks run against the live schema (rolled back) and must pass",
        "rollback.sql": "rollback.sql corrected: a rollback of the batch runs the corrected file",
        "backfill.toml": "backfill.toml's checksum recorded (the ledger row predates it): nothing runs",
        "gate.toml": "gate.toml's checksum recorded (the ledger row predates it): nothing runs",
    }
    return "\n".join([f"batch {batch.name} is applied; applying records its corrected files (the ledger keeps the old "
                      "checksums in schema_ledger.batch_revision):", *(f"  {what[f]}" for f in changed)])


def human_ms(ms: int) -> str:
    """500 ms, 2 s, 30 min, 1.5 h."""
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:g} {unit}"
    return f"{ms} ms"


def _how(step: Step) -> str:
    if step.autocommit:
        return "autocommit, writes continue"
    if step.locks_existing_table:
        return "own short transaction under lock_timeout"
    return "transaction"


def _step_block(step: Step) -> list[str]:
    """A step on one line, or a header and one line per statement when it groups several."""
    if len(step.statements) == 1:
        return [_step_line(step)]
    header = f"step {step.number:>2} [{_how(step)}] {step.file}:{step.line}-{step.statements[-1].line}, {len(step.statements)} statements:"
    return [header, *(f"    {s.line:>4}  {s.summary}" for s in step.statements)]


def _step_line(step: Step) -> str:
    first, last = step.statements[0].line, step.statements[-1].line
    where = f"{step.file}:{first}" + (f"-{last}" if last != first else "")
    what = "; ".join(s.summary for s in step.statements)
    return f"step {step.number:>2} [{_how(step)}] {where}: {what}"
