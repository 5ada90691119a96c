"""The error of a stack config value that is missing or invalid, and the check every settings parser shares.
A leaf module: every parser of a part of the stack config imports it, and it imports none of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pulumi

PROJECT = "junkquote-db"


class ConfigError(pulumi.RunError):
    """A stack config value is missing or invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"stack config {PROJECT}:{key} {problem}")


def refuse_unknown(obj: Mapping[str, Any], section: str, allowed: Iterable[str]) -> None:
    """Refuse the first key of `obj` that is not `allowed`, naming it and the known ones."""
    known = sorted(set(allowed))
    extra = sorted(set(obj) - set(known))
    if extra:
        raise ConfigError(f"{section}.{extra[0]}", f"is not a known setting (known: {', '.join(known)})")
