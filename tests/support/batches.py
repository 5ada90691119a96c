"""Writes real batch folders for tests."""

from __future__ import annotations

from pathlib import Path

from infra.migrations.plan import Batch, load_batch

PASSING_CHECK = "SELECT 'always' AS check_name, true AS ok, 'trivially true' AS detail;"


def make_batch(root: Path, name: str, migration: str, validation: str = PASSING_CHECK, rollback: str = "SELECT 1;") -> Batch:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in (("migration.sql", migration), ("validation.sql", validation), ("rollback.sql", rollback)):
        (folder / file).write_text(text, encoding="utf-8")
    (folder / "README.md").write_text(f"# {name}\n", encoding="utf-8")
    return load_batch(folder)
