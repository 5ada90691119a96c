"""Reads sql/ into frozen Batch objects. No database access."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import BatchDirectoryInvalid

BATCH_FILES = ("migration.sql", "validation.sql", "rollback.sql")
# Optional declarations next to the SQL: the data a batch moves in chunks (backfill.py), and the condition
# a pending batch waits for (gate.py).
OPTIONAL_FILES = ("backfill.toml", "gate.toml")
BATCH_NAME = re.compile(r"^(?P<number>\d{4})_(?P<slug>[a-z0-9_]+)$")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def declaration_sha256(text: str) -> str:
    """sha256 of a TOML declaration as parsed (comments and layout ignored); of the text when it does not parse."""
    try:
        return sha256_text(json.dumps(tomllib.loads(text), sort_keys=True, default=str))
    except tomllib.TOMLDecodeError:
        return sha256_text(text)


@dataclass(frozen=True)
class Batch:
    """One versioned batch: forward SQL, its validation checks and the SQL that reverses it."""

    name: str
    migration: str
    validation: str
    rollback: str
    backfill: str | None = None
    gate: str | None = None

    @property
    def number(self) -> int:
        return int(self.name[:4])

    @property
    def checksums(self) -> dict[str, str]:
        """sha256 of each SQL file, and of each declaration the batch has (backfill.toml, gate.toml: as parsed).
        A batch without declarations has the same three checksums it always had."""
        sums = {file: sha256_text(self.text(file)) for file in BATCH_FILES}
        return sums | {file: declaration_sha256(text) for file, text in self.declarations.items()}

    @property
    def declarations(self) -> dict[str, str]:
        """The optional files the batch has, by file name."""
        texts = {"backfill.toml": self.backfill, "gate.toml": self.gate}
        return {file: text for file, text in texts.items() if text is not None}

    def text(self, file: str) -> str:
        return {"migration.sql": self.migration, "validation.sql": self.validation, "rollback.sql": self.rollback,
                **self.declarations}[file]


def load_batch(directory: Path) -> Batch:
    if not BATCH_NAME.match(directory.name):
        raise BatchDirectoryInvalid(str(directory), "is not named NNNN_slug (four digits, lowercase slug)")
    missing = [f for f in BATCH_FILES if not (directory / f).is_file()]
    if missing:
        raise BatchDirectoryInvalid(str(directory), f"lacks {', '.join(missing)}; every batch has {', '.join(BATCH_FILES)}")
    texts = {f.split(".")[0]: (directory / f).read_text(encoding="utf-8") for f in BATCH_FILES}
    optional = {f.split(".")[0]: (directory / f).read_text(encoding="utf-8")
                for f in OPTIONAL_FILES if (directory / f).is_file()}
    return Batch(name=directory.name, **texts, **optional)


def load_batches(sql_dir: Path, *, before: str | None = None) -> tuple[Batch, ...]:
    """Every batch under sql_dir (or those before the batch `before`), in number order; numbers must be unique."""
    if not sql_dir.is_dir():
        raise BatchDirectoryInvalid(str(sql_dir), "does not exist")
    batches = tuple(load_batch(d) for d in sorted(sql_dir.iterdir()) if d.is_dir() and not d.name.startswith("."))
    numbers = [b.number for b in batches]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise BatchDirectoryInvalid(str(sql_dir), f"has two batches numbered {duplicates[0]:04d}; renumber one")
    return tuple(b for b in batches if before is None or b.name < before)
