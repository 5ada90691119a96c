from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.migrations.target import Target
from tests.conftest import unavailable
from tests.e2e.project import ProjectStack, cli_bin_dir, copy_project, database_config, new_stack


@pytest.fixture(scope="session")
def cli_dir() -> Path:
    try:
        return cli_bin_dir()
    except (subprocess.CalledProcessError, OSError) as err:
        unavailable(f"no Pulumi CLI for e2e tests: {getattr(err, 'stderr', '') or err}")
        raise


# The lifecycle tests are written against batch 1; tests of later batches name theirs (None copies every batch).
BATCH1 = ["0000_baseline", "0001_add_memory_entities"]


@pytest.fixture
def make_stack(tmp_path: Path, cli_dir: Path, db_target: Target) -> Iterator[Callable[..., ProjectStack]]:
    """make_stack(batches=None, migrations={...}, secrets={...}, database={...}) -> a throwaway stack."""
    made: list[ProjectStack] = []

    def make(*, batches: list[str] | None = BATCH1, migrations: dict[str, Any] | None = None,
             secrets: dict[str, str] | None = None, database: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> ProjectStack:
        workdir = copy_project(tmp_path / f"project{len(made)}", batches=batches)
        config: dict[str, Any] = {"database": database or database_config(db_target)}
        if migrations:
            config["migrations"] = migrations
        config.update(extra or {})
        stack = new_stack(workdir, tmp_path / "state", cli_dir, config, secrets)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.destroy_and_remove()
