"""Whether a stack's config protects it right now, as a provider can tell during `pulumi destroy`.

A plain `pulumi destroy` does not run the program, so the resources and the provider's own config are those of
the last `up`. To make `migrations.protected: true` hold from the moment it is set, the provider also reads the
stack's config file (`Pulumi.<stack>.yaml` in the project directory, where the engine starts providers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PROJECT = "junkquote-db"
MIGRATIONS_KEY = f"{PROJECT}:migrations"


def protected_in_config(value: Any) -> bool:
    """`migrations.protected` from a config value: an object, or the JSON text the engine hands a provider."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return isinstance(value, dict) and value.get("protected") is True


def protected_by_stack_file(stack: str, project_dir: Path | None = None) -> bool:
    """True when `Pulumi.<stack>.yaml` in the project directory sets `migrations.protected: true`."""
    path = (project_dir or Path.cwd()) / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    config = document.get("config") if isinstance(document, dict) else None
    return isinstance(config, dict) and protected_in_config(config.get(MIGRATIONS_KEY))
