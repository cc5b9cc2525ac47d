"""Fixtures for the local stack's own tests: a stack over dummy handlers (tests/local/fake_functions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack_support import FAKE_FUNCTIONS_DIR, FUNCTIONS, JOBS, OTHER, START, Probe

from kassa_local.stack import LocalStack


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
