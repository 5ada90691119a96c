"""The project's own Python language host (tools/pulumi/cmd/pulumi-language-python) through the real CLI.

`pulumi install` and the Automation API's install() create the virtualenv and pip-install requirements.txt with
the output streamed back; `pulumi about` describes the interpreter; the Pulumi packages installed in the virtualenv
become required plugins (read from their pulumi-plugin.json); a call the host does not support answers a clear
gRPC error and the host keeps serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2
from pulumi import automation as auto
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from tests.e2e.project import ROOT, copy_project

TINY_REQUIREMENTS = "PyYAML==6.0.4\n"  # pinned in requirements.txt too, so pip finds it in its cache


def cli_env(cli_dir: Path, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "state").mkdir(exist_ok=True)
    return {**os.environ, "PATH": f"{cli_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(), "PULUMI_CONFIG_PASSPHRASE": "e2e-tests",
            "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}


def tiny_project(root: Path) -> Path:
    """A pip project with a virtualenv that does not exist yet."""
    root.mkdir(parents=True)
    runtime = {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({"name": "tiny", "runtime": runtime}))
    (root / "requirements.txt").write_text(TINY_REQUIREMENTS)
    (root / "__main__.py").write_text("import yaml\n")
    return root


def imports_yaml(project: Path) -> bool:
    return subprocess.run([str(project / "venv" / "bin" / "python"), "-c", "import yaml"]).returncode == 0


def test_pulumi_install_creates_the_virtualenv_and_installs_the_requirements(cli_dir: Path, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "tiny")

    result = subprocess.run(["pulumi", "install"], cwd=project, env=cli_env(cli_dir, tmp_path),
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert "Installing dependencies in virtual environment" in result.stdout
    assert "PyYAML" in result.stdout, "pip's own output is streamed through the CLI"
    assert imports_yaml(project)


def test_the_automation_api_install_streams_pips_output_and_installs_the_requirements(cli_dir: Path, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "tiny")
    workspace = auto.LocalWorkspace(work_dir=str(project), env_vars=cli_env(cli_dir, tmp_path),
                                    pulumi_command=auto.PulumiCommand(root=str(cli_dir.parent)))
    lines: list[str] = []

    workspace.install(on_output=lines.append)

    assert any("PyYAML" in line for line in lines)
    assert imports_yaml(project)


def test_pulumi_about_shows_the_virtualenvs_python_and_its_packages(cli_dir: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")

    result = subprocess.run(["pulumi", "about", "--json"], cwd=project, env=cli_env(cli_dir, tmp_path),
                            capture_output=True, text=True)

    about = json.loads(result.stdout)
    runtime = about["runtime"]
    assert (runtime["language"], runtime["executable"]) == ("python", str(ROOT / ".venv" / "bin" / "python"))
    assert runtime["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert (runtime["toolchain"], runtime["virtualenv"]) == ("pip", str(ROOT / ".venv"))
    dependencies = {d["name"]: d["version"] for d in about["dependencies"]}
    assert dependencies["pulumi-postgresql"] == "3.18.2"


def test_the_postgresql_sdk_in_the_virtualenv_makes_its_plugin_a_required_plugin(cli_dir: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")

    result = subprocess.run(["pulumi", "plugin", "ls", "--project", "--json"], cwd=project,
                            env=cli_env(cli_dir, tmp_path), capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    required = {(p["name"], p["kind"], p["version"]) for p in json.loads(result.stdout)}
    assert ("postgresql", "resource", "3.18.2") in required


@pytest.fixture
def language_host(cli_dir: Path) -> Iterator[language_pb2_grpc.LanguageRuntimeStub]:
    """The language host binary on its own, as the engine starts it."""
    host = subprocess.Popen([str(cli_dir / "pulumi-language-python"), "127.0.0.1:1"], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    port = int(host.stdout.readline())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield language_pb2_grpc.LanguageRuntimeStub(channel)
    finally:
        channel.close()
        host.kill()
        host.wait()


def test_an_unsupported_call_answers_unimplemented_naming_it_and_the_host_keeps_serving(
        language_host: language_pb2_grpc.LanguageRuntimeStub) -> None:
    with pytest.raises(grpc.RpcError) as template:
        language_host.Template(language_pb2.TemplateRequest())
    with pytest.raises(grpc.RpcError) as run_plugin:
        next(iter(language_host.RunPlugin(language_pb2.RunPluginRequest())))
    try:  # no program info at all: answered (the interpreter on PATH) or refused, never a dead host
        language_host.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest())
    except grpc.RpcError as err:
        assert err.code() != grpc.StatusCode.UNAVAILABLE

    assert template.value.code() == run_plugin.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not implement Template (preparing a project from a template" in template.value.details()
    assert language_host.GetPluginInfo(empty_pb2.Empty()).version.startswith("v3.")
