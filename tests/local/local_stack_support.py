"""Shared by tests/local: the dummy functions' wiring and small helpers.

A uniquely named module (not ``conftest``): several test folders have a conftest.py, so
``from conftest import …`` would be ambiguous in one pytest run."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import wiring

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
