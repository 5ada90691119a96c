"""The provider's check that the Pulumi engine that started it is still there (local sockets only)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from infra.providers.engine_watch import EXIT_ORPHANED, GONE, engine_address, engine_gone

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_address_is_the_last_argument_pulumi_passes_to_a_provider() -> None:
    assert engine_address(["pulumi/dynamic/__main__.py", "127.0.0.1:40123"]) == ("127.0.0.1", 40123)
    assert engine_address(["x", "--logtostderr", "-v=9", "--tracing", "t:1", "[::1]:40123"]) == ("::1", 40123)


def test_without_an_engine_address_the_engine_is_never_considered_gone() -> None:
    assert engine_address(["pytest"]) is None
    assert engine_address(["pytest", "tests/unit"]) is None


def test_an_engine_that_listens_is_there_and_one_whose_port_refuses_is_gone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()[:2]
        assert engine_gone(address) is None
    assert engine_gone(address) == GONE


def test_a_run_stopped_for_a_gone_engine_ends_the_orphaned_process_with_the_reason() -> None:
    code = ("from infra.providers.engine_watch import exit_when_orphaned\n"
            "from infra.migrations.errors import RunStopped\n"
            "with exit_when_orphaned():\n"
            "    raise RunStopped('0001_x', 'migration.sql', 2, 'the engine is gone')\n"
            "print('still running')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_ORPHANED
    assert "still running" not in done.stdout
    assert "stopped before migration.sql step 2 of batch '0001_x': the engine is gone" in done.stderr
