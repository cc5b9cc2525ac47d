"""``kassa run`` (the real command, in its own process) when a port it needs is taken: one line naming
the port and what to change, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

KASSA = [sys.executable, "-m", "kassa_local.cli"]
OPTION = {"api": "--api-port", "aws": "--aws-port", "stripe": "--stripe-port"}
ENV = {"api": "KASSA_API_PORT", "aws": "KASSA_AWS_PORT", "stripe": "KASSA_STRIPE_PORT"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _kassa_run(tmp_path: Path, ports: dict[str, int]) -> subprocess.CompletedProcess[str]:
    argv = [*KASSA, "--state-dir", str(tmp_path), "run", "--no-seed"]
    for which, option in OPTION.items():
        argv += [option, str(ports.get(which, 0))]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no STRIPE_API_KEY: localstripe is started
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("which", ["api", "aws", "stripe"])
def test_a_taken_port_ends_kassa_run_with_one_line(tmp_path: Path, taken_port: int, which: str) -> None:
    result = _kassa_run(tmp_path, {which: taken_port})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"kassa run: port {taken_port} is in use: set {ENV[which]} or pass {OPTION[which]}"
    ], result.stderr
    assert "is running" not in result.stdout
    assert not (tmp_path / "local.json").exists()


def test_a_port_given_twice_names_the_one_that_could_not_bind(tmp_path: Path) -> None:
    """Both are free when checked; moto binds first, then the gateway cannot."""
    port = _free_port()
    result = _kassa_run(tmp_path, {"api": port, "aws": port})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"kassa run: port {port} is in use: set KASSA_API_PORT or pass --api-port"
    ], result.stderr
