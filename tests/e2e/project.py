"""Throwaway stacks of this very project, driven through the Automation API with a local file backend.

Each stack runs on a copy of the project (Pulumi.yaml, __main__.py, infra/, sql/) in a temporary folder,
so a test can add, edit or remove batches without touching the checkout; the copy uses the checkout's
virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from infra.migrations.target import Target
from tests.support.batches import PASSING_CHECK, make_batch

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "e2e-tests"


def cli_bin_dir() -> Path:
    """The Pulumi CLI directory (on PATH, or built from the pinned Go modules)."""
    out = subprocess.run([str(ROOT / "scripts" / "ensure-pulumi.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def copy_project(dest: Path, *, batches: list[str] | None = None) -> Path:
    """A copy of the project in dest; `batches` limits which sql/ folders are copied."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "__main__.py", dest / "__main__.py")
    shutil.copytree(ROOT / "infra", dest / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    names = batches if batches is not None else sorted(p.name for p in (ROOT / "sql").iterdir() if p.is_dir())
    for name in names:
        shutil.copytree(ROOT / "sql" / name, dest / "sql" / name)
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
    (dest / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    return dest


def database_config(target: Target) -> dict[str, Any]:
    return {"host": target.host, "port": target.port, "name": target.dbname, "user": target.user, "sslmode": "disable"}


@dataclass
class ProjectStack:
    """A stack of a project copy, with helpers to run the CLI the way a user would."""

    stack: auto.Stack
    workdir: Path
    env: dict[str, str]

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """The real `pulumi` command in the project copy (for what the Automation API does not cover)."""
        return subprocess.run(["pulumi", *args, "--stack", self.stack.name, "--non-interactive"],
                              cwd=self.workdir, env=self.env, capture_output=True, text=True, check=check)

    def add_batch(self, name: str, migration: str, validation: str = PASSING_CHECK, rollback: str = "SELECT 1;") -> Path:
        """A new batch folder in the project copy; returns the folder."""
        make_batch(self.workdir / "sql", name, migration, validation, rollback)
        return self.workdir / "sql" / name

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def destroy_and_remove(self) -> None:
        """Best-effort cleanup, also after a killed run: unprotect, destroy, remove the stack. A killed run
        leaves its lock on the stack and pending creates in its state; when destroy fails, those are cleared
        (`pulumi cancel`, `refresh --clear-pending-creates`) and destroy runs once more."""
        for _ in range(2):
            self.cli("state", "unprotect", "--all", "--yes")
            if self.cli("destroy", "--yes", "--skip-preview").returncode == 0:
                break
            self.cli("cancel", "--yes")
            self.cli("refresh", "--yes", "--clear-pending-creates", "--skip-preview")
        self.stack.workspace.remove_stack(self.stack.name, force=True)


def new_stack(workdir: Path, state_dir: Path, cli_dir: Path, config: dict[str, Any], secrets: dict[str, str] | None = None) -> ProjectStack:
    env = {
        **os.environ,
        "PATH": f"{cli_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_BACKEND_URL": state_dir.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    yaml_config = {f"junkquote-db:{k}": v for k, v in config.items()}
    (workdir / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": yaml_config}))
    opts = auto.LocalWorkspaceOptions(env_vars=env, pulumi_command=auto.PulumiCommand(root=str(cli_dir.parent)))
    stack = auto.create_stack(name, work_dir=str(workdir), opts=opts)
    for key, value in (secrets or {}).items():
        stack.set_config(f"junkquote-db:{key}", auto.ConfigValue(value=value, secret=True))
    return ProjectStack(stack, workdir, env)


def changes(summary_changes: dict[str, int] | None) -> dict[str, int]:
    """The non-'same' entries of an update summary's resource changes."""
    return {k: v for k, v in (summary_changes or {}).items() if k != "same"}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
