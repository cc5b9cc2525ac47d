"""Starting and stopping: local.json, threads joined, ports freed, environment and clock restored,
and ``kassa run`` as a process over the real wiring (with dummy handlers).

This module starts its own stacks: it must not use the module-scoped ``stack`` fixture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from local_stack_support import FAKE_FUNCTIONS_DIR, FUNCTIONS, JOBS, OTHER, START, wait_until

from infra import wiring
from kassa.adapters import clock as clock_port
from kassa_local import cli
from kassa_local.stack import STATE_FILE, LocalStack

REPO = Path(__file__).resolve().parents[2]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_start_writes_local_json_and_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    env_before = dict(os.environ)
    clock_before = clock_port.current()
    stack = LocalStack(
        0, 0, 0, state_dir=tmp_path, start_time=START, functions=FUNCTIONS,
        functions_dir=FAKE_FUNCTIONS_DIR, queues=(JOBS, OTHER), real_stripe=False,
    )  # fmt: skip
    session = requests.Session()
    with stack:
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert state["api_secret_key"] == stack.api_secret_key
        ports = state["ports"]
        names = {t.name for t in threading.enumerate()}
        assert {"kassa-gateway", "kassa-localstripe", "kassa-event-tap", "kassa-poller-worker"} <= names
        assert clock_port.current() is stack.clock
        # idle keep-alive connections to the gateway, moto and localstripe must not block stop()
        assert session.get(f"{state['api_url']}/_local/health").status_code == 200
        assert session.get(f"{state['stripe_url']}/js.stripe.com/v3/").status_code == 200
        sqs = boto3.client("sqs")
        assert sqs.list_queues()["QueueUrls"]
    assert not (tmp_path / STATE_FILE).exists()
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert leftover == []
    assert all(_port_is_free(port) for port in ports.values())
    assert dict(os.environ) == env_before
    assert clock_port.current() is clock_before
    assert not any(name.startswith("kassa_fn_") for name in sys.modules)
    session.close()
    # the same instance starts again, on fresh free ports (port 0 is re-resolved)
    with stack:
        assert stack.ports["api"] > 0
        assert requests.get(f"{stack.api_url}/_local/health").json()["status"] == "ok"
        assert (tmp_path / STATE_FILE).exists()
    assert not (tmp_path / STATE_FILE).exists()


def test_a_failed_start_cleans_up(tmp_path: Path) -> None:
    env_before = dict(os.environ)
    broken = LocalStack(
        0, 0, 0, state_dir=tmp_path, functions=FUNCTIONS, functions_dir=tmp_path / "missing",
        queues=(JOBS, OTHER), real_stripe=False,
    )  # fmt: skip
    try:
        broken.start()
    except FileNotFoundError as exc:
        assert "no handler.py" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("start should fail without handlers")
    assert not broken.running and dict(os.environ) == env_before
    assert not (tmp_path / STATE_FILE).exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("kassa-")]
    with LocalStack(
        0, 0, 0, state_dir=tmp_path, functions=FUNCTIONS, functions_dir=FAKE_FUNCTIONS_DIR,
        queues=(JOBS, OTHER), real_stripe=False,
    ):  # fmt: skip
        pass  # the process can start a stack again


def test_one_stack_per_process(tmp_path: Path) -> None:
    def make(name: str, **kwargs: Any) -> LocalStack:
        return LocalStack(
            0, 0, 0, state_dir=tmp_path / name, functions=FUNCTIONS, functions_dir=FAKE_FUNCTIONS_DIR,
            queues=(JOBS, OTHER), real_stripe=False, **kwargs,
        )  # fmt: skip

    first = make("first").start()
    try:
        strict = make("strict", replace_running=False)
        with pytest.raises(RuntimeError, match="another LocalStack"):
            strict.start()
        strict.stop()  # a no-op: it never ran, and it must not stop the running one
        assert first.running and (tmp_path / "first" / STATE_FILE).exists()

        second = make("second").start()  # replaces the running one
        try:
            assert not first.running and not (tmp_path / "first" / STATE_FILE).exists()
            assert requests.get(f"{second.api_url}/_local/health").json()["status"] == "ok"
            assert clock_port.current() is second.clock
            first.stop()  # idempotent, and leaves the new one alone
            assert second.running
        finally:
            second.stop()
    finally:
        first.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("kassa-")]


def test_kassa_run_over_the_real_wiring_until_sigint(tmp_path: Path) -> None:
    functions_dir = tmp_path / "functions"
    for fn in wiring.FUNCTIONS:
        (functions_dir / fn.name).mkdir(parents=True)
        (functions_dir / fn.name / "handler.py").write_text(
            "import json\n\n\ndef lambda_handler(event, context):\n"
            f"    return {{'statusCode': 200, 'body': json.dumps({{'fn': {fn.name!r}, 'path': event.get('path')}})}}\n"
        )
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "AWS_", "KASSA_"))}
    cmd = [sys.executable, "-m", "kassa_local.cli", "--state-dir", str(state_dir), "run", "--no-seed"]
    cmd += ["--api-port", "0", "--aws-port", "0", "--stripe-port", "0", "--functions-dir", str(functions_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: (state_dir / STATE_FILE).exists() or proc.poll() is not None, timeout=40)
        assert proc.poll() is None, proc.communicate()[0]
        cfg = json.loads((state_dir / STATE_FILE).read_text())
        health = requests.get(f"{cfg['api_url']}/_local/health", timeout=10).json()
        assert sorted(health["functions"]) == sorted(fn.name for fn in wiring.FUNCTIONS)
        assert sorted(health["pollers"]) == sorted(fn.name for fn in wiring.FUNCTIONS if fn.queue_trigger)
        # routes of the real wiring
        auth = {"Authorization": f"Bearer {cfg['api_secret_key']}"}
        assert requests.get(f"{cfg['api_url']}/v1/prices", headers=auth).json()["fn"] == "api"
        assert requests.get(f"{cfg['api_url']}/openapi.json").json()["fn"] == "api"
        assert requests.post(f"{cfg['api_url']}/webhooks/stripe", data="{}").json()["fn"] == "webhook_ingest"
        # resources of the real wiring
        aws = {"endpoint_url": cfg["aws_endpoint_url"], "region_name": "us-east-1"}
        creds = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
        assert "billing" in boto3.client("dynamodb", **aws, **creds).list_tables()["TableNames"]
        queues = boto3.client("sqs", **aws, **creds).list_queues()["QueueUrls"]
        assert {u.rsplit("/", 1)[1] for u in queues} >= {
            "webhook-events", "webhook-events-dlq", "renewals", "renewals-dlq", "kassa-event-tap",
        }  # fmt: skip
        # the CLI drives the running stack's clock
        before = requests.get(f"{cfg['api_url']}/_local/clock").json()["now"]
        assert cli.main(["--state-dir", str(state_dir), "clock", "advance", "2h"]) == 0
        after = requests.get(f"{cfg['api_url']}/_local/clock").json()["now"]
        assert after > before
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for label in (
        "API",
        "OpenAPI",
        "Swagger UI",
        "Storefront",
        "Dashboard",
        "Stripe",
        "AWS (moto)",
        str(state_dir / STATE_FILE),
    ):
        assert label in out
    assert not (state_dir / STATE_FILE).exists()
