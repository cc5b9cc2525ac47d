from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime

import pytest

from kassa_local.client import Api
from kassa_local.probes import default_idle_probes
from kassa_local.stack import LocalStack

# A month-end start exercises the anchor clamping (Jan 31 → Feb 28 → Mar 31 → Apr 30).
START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


# one fresh stack per module: a module's scenario (e.g. consecutive invoice numbers) is not
# interleaved with another module's renewals
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(
        api_port=0,
        aws_port=0,
        stripe_port=0,
        state_dir=tmp_path_factory.mktemp("kassa"),
        start_time=START,
        idle_probes=default_idle_probes(),
        extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def stack_config(stack):
    return stack.config.as_json()


@pytest.fixture
def api(stack_config):
    return Api(stack_config)


# a real browser: Debian's chromium driven by Playwright (`make test` installs it when missing)
CHROMIUM = os.environ.get("KASSA_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()
