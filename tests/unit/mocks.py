"""Pulumi mocks that record every resource the program registers (no engine, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    resource_id: str


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = f"{args.name}-id"
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), args.provider or None, resource_id))
        return resource_id, dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, suffix: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ.endswith(suffix)]
