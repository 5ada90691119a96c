"""What the provider reads for a backfill: the pause from the stack's config file, the declarations from its inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.migrations.plan import load_batches
from infra.providers.backfill_props import backfill_run, paused_in_stack_file
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
