"""Fixtures for the local stack's own tests: a stack over dummy handlers (tests/local/fake_functions)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra import wiring
from kassa_local.stack import LocalStack

FAKE_FUNCTIONS_DIR = Path(__file__).parent / "fake_functions"
START = datetime(2030, 1, 1, tzinfo=UTC)

JOBS = wiring.Queue(name="jobs", visibility_timeout_s=30, max_receive_count=2)
OTHER = wiring.Queue(name="other", visibility_timeout_s=30, max_receive_count=3)

FUNCTIONS = (
    wiring.Function(
        name="api",
        description="echoes proxy events",
        timeout_s=29,
        memory_mb=512,
        routes=(wiring.Route("ANY", "/v1/{proxy+}"), wiring.Route("GET", "/v1/things/{id}")),
        tables_read=("billing",),
        secrets=(wiring.API_SECRET,),
    ),
    wiring.Function(
        name="hook",
        description="verifies localstripe webhooks",
        timeout_s=10,
        routes=(wiring.Route("POST", "/webhooks/stripe"),),
        secrets=(wiring.STRIPE_SECRET,),
    ),
    wiring.Function(
        name="worker",
        description="consumes jobs",
        timeout_s=30,
        queue_trigger=wiring.QueueTrigger(queue="jobs", batch_size=10),
        queues_send=("other",),
    ),
    wiring.Function(
        name="worker2",
        description="consumes other",
        timeout_s=30,
        queue_trigger=wiring.QueueTrigger(queue="other", batch_size=5),
    ),
    wiring.Function(
        name="hourly",
        description="every 60 minutes",
        timeout_s=60,
        schedule=wiring.Schedule(name="hourly", every_minutes=60),
        queues_send=("jobs",),
        publishes_events=True,
    ),
    wiring.Function(
        name="quarter",
        description="every 45 minutes",
        timeout_s=60,
        schedule=wiring.Schedule(name="every-45", every_minutes=45),
    ),
)


class Probe:
    """An idle probe the tests can steer; by default it reports work due now (never skips)."""

    def __init__(self) -> None:
        self.fn: Callable[[datetime], datetime | None] | None = None
        self.calls = 0

    def __call__(self, now: datetime) -> datetime | None:
        self.calls += 1
        return now if self.fn is None else self.fn(now)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests/local first: a process holds one LocalStack at a time, and other suites (e2e) keep a
    session-scoped stack until the session ends; these tests use module-scoped stacks that are
    stopped before the next module starts. (With pytest-xdist, use ``--dist loadfile``.)"""
    here = Path(__file__).parent
    mine = [item for item in items if here in item.path.parents]
    if mine and len(mine) != len(items):
        others = [item for item in items if here not in item.path.parents]
        items[:] = mine + others


@pytest.fixture(scope="session")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, probe: Probe) -> Iterator[LocalStack]:
    """One stack per test module (moto, localstripe and the environment are process-wide, so a
    module that needs its own stack, like the lifecycle tests, must not use this fixture)."""
    s = LocalStack(
        api_port=0,
        aws_port=0,
        stripe_port=0,
        state_dir=tmp_path_factory.mktemp("kassa-state"),
        start_time=START,
        functions=FUNCTIONS,
        functions_dir=FAKE_FUNCTIONS_DIR,
        queues=(JOBS, OTHER),
        idle_probes={"hourly": probe},
        real_stripe=False,
    )
    with s:
        yield s


@pytest.fixture
def fresh(stack: LocalStack, probe: Probe) -> LocalStack:
    """The session stack with queues drained and every dummy's records cleared."""
    stack.drain()
    for name in ("api", "hook"):
        stack.modules[name].EVENTS.clear()
    stack.modules["worker"].BATCHES.clear()
    for name in ("worker", "worker2"):
        stack.modules[name].SEEN.clear()
    for name in ("hourly", "quarter"):
        stack.modules[name].CALLS.clear()
    stack.clear_events()
    probe.fn, probe.calls = None, 0
    return stack
