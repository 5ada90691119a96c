"""What the provider reads for a backfill (the pause from the stack's config file, the declarations from its inputs)
and how it tells its progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.migrations.backfill import BackfillProgress
from infra.migrations.plan import load_batches
from infra.providers.backfill_props import ProgressLog, backfill_run, paused_in_stack_file
from infra.providers.batch_props import batch_from_inputs, batch_inputs

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@pytest.mark.parametrize(("config", "paused"), [
    ("junkquote-db:backfill:\n    paused: true\n", True),
    ("junkquote-db:backfill:\n    paused: false\n", False),
    ("junkquote-db:backfill:\n    targetWriteLatency: 50ms\n", False),
    ("junkquote-db:migrations:\n    paused: true\n", False),
])
def test_the_pause_is_read_from_the_stack_file_as_pulumi_config_set_writes_it(
        tmp_path: Path, config: str, paused: bool) -> None:
    (tmp_path / "Pulumi.staging.yaml").write_text("config:\n  " + config.replace("\n    ", "\n    "), encoding="utf-8")
    assert paused_in_stack_file("staging", tmp_path) is paused


def test_a_missing_or_unreadable_stack_file_does_not_pause(tmp_path: Path) -> None:
    assert not paused_in_stack_file("staging", tmp_path)
    (tmp_path / "Pulumi.staging.yaml").write_text("config: [unclosed", encoding="utf-8")
    assert not paused_in_stack_file("staging", tmp_path)


def test_the_provider_run_asks_the_stack_file_of_its_own_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the engine starts providers in the project directory
    clock = [0.0]
    run = backfill_run({"settings": {"stack": "prod"}}, clock=lambda: clock[0])
    assert run.paused is not None and not run.paused()
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  junkquote-db:backfill:\n    paused: true\n", encoding="utf-8")
    assert not run.paused()  # read at most once a second: not every chunk parses the file
    clock[0] += 1.0
    assert run.paused()


@pytest.mark.parametrize("name", ["0001_add_memory_entities", "0002_backfill_customers", "0003_require_customer_links"])
def test_the_declarations_travel_to_the_provider_so_it_checksums_what_the_program_does(name: str) -> None:
    batch = {b.name: b for b in load_batches(SQL_DIR)}[name]
    back = batch_from_inputs(batch_inputs(batch))
    assert back.checksums == batch.checksums
    assert (back.backfill, back.gate) == (batch.backfill, batch.gate)


def event(phase: str, waiting_for: str | None = None, done: int = 0) -> BackfillProgress:
    return BackfillProgress("0002_x", "customers", phase, done, 100, 10.0, 50, None, waiting_for=waiting_for)


def test_progress_is_logged_every_few_seconds_and_once_when_a_wait_starts() -> None:
    now, logged = [0.0], []
    log = ProgressLog(clock=lambda: now[0], log=logged.append)
    for t, e in [(0.0, event("pass")), (1.0, event("pass", done=10)),  # the first line, then quiet
                 (1.2, event("waiting", "a replica")), (1.5, event("waiting", "a replica")),  # one line per wait
                 (2.0, event("waiting", "a replica")),
                 (2.2, event("pass", done=20)), (2.4, event("waiting", "a replica", done=20)),  # a new wait
                 (7.5, event("pass", done=30)), (7.6, event("done", done=100))]:
        now[0] = t
        log(e)

    assert [line.split(" rows (")[0] for line in logged] == [
        "backfill 0002_x customers [pass]: 0/100",
        "backfill 0002_x customers [waiting for a replica]: 0/100",
        "backfill 0002_x customers [waiting for a replica]: 20/100",
        "backfill 0002_x customers [pass]: 30/100",
        "backfill 0002_x customers [done]: 100/100"]


def test_a_pause_is_always_logged() -> None:
    logged: list[str] = []
    log = ProgressLog(clock=lambda: 0.0, log=logged.append)
    log(event("pass"))
    log(event("paused", done=40))

    assert [line.split(" rows (")[0] for line in logged] == ["backfill 0002_x customers [pass]: 0/100",
                                                             "backfill 0002_x customers [paused]: 40/100"]
