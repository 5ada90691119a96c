"""The project's stacks through Pulumi's Automation API: which exist, their config files and tags, and the Pulumi
commands the pipeline runs on them (up, destroy, stack rm). Config with secrets is read as `make pr-report` reads
it (review/stack_config.py). Output of the commands streams to `out`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from ..config_errors import PROJECT
from ..review.stack_config import StackConfigUnreadable, read_stack_config
from .errors import PipelineError, StepFailed
from .naming import TAG

PROJECT_DIR = Path(__file__).resolve().parents[2]
GENERIC_ERRORS = ("update failed", "preview failed", "destroy failed", "refresh failed")

Out = Callable[[str], None]


@dataclass
class Workspace:
    """The project directory's workspace; the backend and passphrase come from the environment."""

    project_dir: Path
    out: Out

    @cached_property
    def ws(self) -> auto.LocalWorkspace:
        try:
            return auto.LocalWorkspace(work_dir=str(self.project_dir))
        except FileNotFoundError:
            raise PipelineError("no `pulumi` CLI on PATH; run the command through make (make ephemeral-up, ...), "
                                "which puts the project's CLI on PATH") from None

    def exists(self, stack: str) -> bool:
        return any(s.name == stack for s in self.ws.list_stacks())

    def stack_file(self, stack: str) -> Path:
        return self.project_dir / f"Pulumi.{stack}.yaml"

    def file_values(self, stack: str) -> dict[str, Any] | None:
        """The plain values of the stack file (secrets, which are ciphertext there, left out); None without a file."""
        path = self.stack_file(stack)
        if not path.exists():
            return None
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        return {k.removeprefix(f"{PROJECT}:"): v for k, v in config.items()
                if k.startswith(f"{PROJECT}:") and not (isinstance(v, Mapping) and "secure" in v)}

    def config(self, stack: str) -> dict[str, Any]:
        """The stack's config with secrets, as `pulumi config --json --show-secrets` gives it (keys without prefix)."""
        try:
            raw = read_stack_config(stack, self.project_dir)
        except StackConfigUnreadable as err:
            raise StepFailed("reading the config", stack, str(err), "check the backend and PULUMI_CONFIG_PASSPHRASE") from None
        return {k.removeprefix(f"{PROJECT}:"): v.get("objectValue", v.get("value")) for k, v in raw.items()
                if k.startswith(f"{PROJECT}:")}

    def write_values(self, stack: str, values: Mapping[str, Any]) -> None:
        """Writes the plain config into the stack file, keeping what Pulumi keeps there (encryption salt, secrets)."""
        path = self.stack_file(stack)
        document = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
        config = document.setdefault("config", {}) or {}
        config.update({f"{PROJECT}:{k}": v for k, v in values.items()})
        document["config"] = config
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def create(self, stack: str) -> auto.Stack:
        """The stack in the backend (created if missing), tagged ephemeral."""
        handle = auto.Stack.select(stack, self.ws) if self.exists(stack) else auto.Stack.create(stack, self.ws)
        self.ws.set_tag(stack, TAG, "true")
        return handle

    def tagged(self, stack: str) -> bool:
        try:
            return self.ws.get_tag(stack, TAG) == "true"
        except auto.errors.CommandError:
            return False

    def set_secret(self, stack: str, key: str, value: str) -> None:
        self.ws.set_config(stack, f"{PROJECT}:{key}", auto.ConfigValue(value=value, secret=True), path="." in key)

    def up(self, stack: str, step: str, what_to_do: str, **options: Any) -> None:
        with self._step(step, stack, what_to_do):
            auto.Stack.select(stack, self.ws).up(on_output=self.out, color="never", **options)

    def destroy(self, stack: str, what_to_do: str) -> None:
        with self._step("pulumi destroy", stack, what_to_do):
            auto.Stack.select(stack, self.ws).destroy(on_output=self.out, color="never")

    def remove(self, stack: str) -> None:
        with self._step("pulumi stack rm", stack, "run the command again"):
            self.ws.remove_stack(stack)
        self.stack_file(stack).unlink(missing_ok=True)

    def _step(self, step: str, stack: str, what_to_do: str) -> _Step:
        return _Step(step, stack, what_to_do)


@dataclass
class _Step:
    """Turns a failed Pulumi command into StepFailed with the command's own error line."""

    step: str
    stack: str
    what_to_do: str

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, _tb: object) -> None:
        if isinstance(err, auto.errors.CommandError):
            raise StepFailed(self.step, self.stack, error_line(str(err)), self.what_to_do) from None


def error_line(text: str) -> str:
    """The first specific `error:` line of a Pulumi command's output (the program's or the engine's own)."""
    for line in text.splitlines():
        _, sep, message = line.partition("error: ")
        message = message.strip()
        if sep and message and not any(message.startswith(g) for g in GENERIC_ERRORS):
            return message
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
