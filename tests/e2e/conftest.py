from __future__ import annotations

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
