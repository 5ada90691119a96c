"""The example CI workflows pass actionlint (syntax, expressions, shell) and zizmor (security), with no finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


@pytest.fixture(scope="module")
def actionlint() -> str:
    """actionlint at the pinned version (tools/actionlint/build.sh: on PATH, or built from its Go module)."""
    done = subprocess.run([str(ROOT / "tools" / "actionlint" / "build.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"no actionlint: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return str(Path(done.stdout.strip().splitlines()[-1]) / "actionlint")


def workflow_files() -> list[str]:
    return sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))


def test_there_are_workflows_to_lint() -> None:
    assert {Path(p).name for p in workflow_files()} >= {"pr-review.yml", "deploy.yml", "pr-ephemeral.yml"}


def test_the_workflows_pass_actionlint(actionlint: str) -> None:
    done = subprocess.run([actionlint, "-no-color", *workflow_files()], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflows_pass_zizmor_with_no_finding_even_pedantic() -> None:
    zizmor = Path(sys.executable).parent / "zizmor"
    if not zizmor.exists():
        unavailable("no zizmor in the virtualenv; run `make venv` (zizmor is pinned in requirements.txt)")
    done = subprocess.run([str(zizmor), "--offline", "--persona", "pedantic", "--no-progress", str(WORKFLOWS)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    uses = [line.split("uses:", 1)[1].strip() for p in workflow_files() for line in Path(p).read_text().splitlines()
            if line.strip().startswith(("uses:", "- uses:"))]
    assert uses
    unpinned = [u for u in uses if not (len(u.split("@", 1)[-1].split()[0]) == 40 and "@" in u)]
    assert unpinned == []
