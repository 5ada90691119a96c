"""Stack settings outside the Pulumi program: from the JSON that `pulumi config --json --show-secrets` prints,
parsed by the same functions the program uses (infra/settings.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..access.settings import parse_access
from ..backfill_settings import parse_backfill, parse_gates
from ..config_errors import PROJECT, ConfigError
from ..settings import KNOWN_KEYS, StackSettings, parse_database, parse_migrations


class StackConfigUnreadable(Exception):
    """`pulumi config` failed for a stack (no such stack, no backend, wrong passphrase)."""

    def __init__(self, stack: str, detail: str) -> None:
        super().__init__(f"cannot read the config of stack '{stack}' ({detail}); check that the stack exists in "
                         "the selected backend and that its secrets can be decrypted (PULUMI_CONFIG_PASSPHRASE)")


def read_stack_config(stack: str, project_dir: Path) -> dict[str, Any]:
    """The stack's config with secrets decrypted, as `pulumi config --json --show-secrets` prints it."""
    done = subprocess.run(["pulumi", "config", "--json", "--show-secrets", "--stack", stack, "--non-interactive"],
                          cwd=project_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackConfigUnreadable(stack, last.removeprefix("error: "))
    return json.loads(done.stdout)


def settings_from_config(stack: str, config: Mapping[str, Mapping[str, Any]], sql_dir: Path) -> StackSettings:
    """Typed settings from the CLI's config JSON; unknown keys and invalid values raise ConfigError."""
    values = {k.removeprefix(f"{PROJECT}:"): _value(v) for k, v in config.items() if k.startswith(f"{PROJECT}:")}
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"is not a known setting (known: {', '.join(sorted(KNOWN_KEYS))})")

    def secret(key: str) -> str | None:
        top, _, entry = key.partition(".")
        value = values.get(top)
        if entry:
            value = value.get(entry) if isinstance(value, Mapping) else None
        return None if value in (None, "") else str(value)

    return StackSettings(
        stack=stack,
        database=parse_database(values.get("database"), secret("password")),
        migrations=parse_migrations(values.get("migrations"), sql_dir),
        access=parse_access(values.get("roles"), secret),
        backfill=parse_backfill(values.get("backfill")),
        gates=parse_gates(values.get("gates")),
    )


def _value(entry: Mapping[str, Any]) -> Any:
    return entry["objectValue"] if "objectValue" in entry else entry.get("value")
