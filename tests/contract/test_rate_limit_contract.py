"""The token bucket every Stripe caller shares: the DynamoDB bucket (one item of the billing table)
and its in-memory twin grant the same slots for the same requests, never more than ``burst + rate ×
W`` in any window of W seconds, and refuse (without reserving) a slot too far away."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra import wiring
from kassa.adapters.ratelimit import DynamoTokenBucket, MemoryTokenBucket, Rate
from kassa.domain.errors import Unavailable
from kassa_local.aws import create_table

T0 = 1_780_000_000.0  # seconds since the epoch


class Time:
    """A virtual clock the buckets read and sleep on."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


Factory = Callable[..., Any]


@pytest.fixture(params=["memory", pytest.param("dynamodb", marks=pytest.mark.integration)])
def buckets(request: pytest.FixtureRequest, uid: str) -> Iterator[Factory]:
    """Builds buckets that share one state (the DynamoDB ones: one table item; several instances
    stand for several Lambda workers)."""
    if request.param == "memory":
        shared: dict[tuple[Any, ...], MemoryTokenBucket] = {}

        def memory(rate: Rate, clock: Time, max_wait: float = 10.0) -> MemoryTokenBucket:
            key = (rate, id(clock), max_wait)
            shared.setdefault(key, MemoryTokenBucket(rate, clock=clock.time, sleep=clock.sleep, max_wait=max_wait))
            return shared[key]

        yield memory
        return
    client = request.getfixturevalue("ddb")
    table = dataclasses.replace(wiring.BILLING_TABLE, name=f"bucket-{uid}")
    create_table(client, table)

    def dynamodb(rate: Rate, clock: Time, max_wait: float = 10.0) -> DynamoTokenBucket:
        return DynamoTokenBucket(client, table.name, rate, clock=clock.time, sleep=clock.sleep, max_wait=max_wait)

    try:
        yield dynamodb
    finally:
        client.delete_table(TableName=table.name)


def most_in_window(grants: list[float], seconds: float) -> int:
    ordered = sorted(grants)
    return max(sum(1 for g in ordered[i:] if g < t + seconds - 1e-9) for i, t in enumerate(ordered))


def test_a_burst_goes_at_once_then_one_slot_every_interval(buckets: Factory) -> None:
    clock = Time()
    bucket = buckets(Rate(rate=10, burst=3), clock)

    grants = [bucket.acquire() - T0 for _ in range(6)]

    assert grants == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3])  # each waited for its slot


def test_workers_sharing_the_bucket_never_exceed_burst_plus_rate_in_any_window(buckets: Factory) -> None:
    clock = Time()
    rate = Rate(rate=20, burst=5)
    workers = [buckets(rate, clock) for _ in range(3)]
    grants = []
    for step in range(120):  # three workers asking at their own pace, 240 requests over ~2 s
        clock.now = T0 + step * 0.02
        grants.append(workers[step % 3].acquire())
        grants.append(workers[(step + 1) % 3].acquire())

    for window in (0.25, 1.0, 2.0):
        assert most_in_window(grants, window) <= rate.most_in(window)
    assert most_in_window(grants, 1.0) >= rate.most_in(1.0) - 1  # used up to (half-open windows) the bound


def test_an_idle_bucket_refills_to_its_burst_and_no_more(buckets: Factory) -> None:
    clock = Time()
    bucket = buckets(Rate(rate=10, burst=3), clock)
    for _ in range(5):
        bucket.acquire()
    clock.now = T0 + 60  # a minute without requests

    grants = [bucket.acquire() - clock.now for _ in range(5)]

    assert grants == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_a_slot_further_away_than_max_wait_is_refused_and_not_reserved(buckets: Factory) -> None:
    clock = Time()
    bucket = buckets(Rate(rate=1, burst=1), clock, max_wait=2.0)
    assert [bucket.acquire() - T0 for _ in range(3)] == pytest.approx([0, 1, 2])

    with pytest.raises(Unavailable, match="rate limit"):
        bucket.acquire()  # its slot would be 3 s away

    clock.now = T0 + 1.5
    assert bucket.acquire() - T0 == pytest.approx(3)  # the refused request took no slot


def test_concurrent_workers_on_the_real_clock_stay_within_the_bound(buckets: Factory) -> None:
    """Threads standing for Lambda instances (each its own bucket object on the shared state),
    asking at once on the wall clock: the slots granted are never denser than burst + rate × W."""
    import threading
    import time

    class Wall(Time):
        def time(self) -> float:
            return time.time()

        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    clock = Wall()
    rate = Rate(rate=100, burst=3)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        bucket = buckets(rate, clock, max_wait=30.0)
        for _ in range(10):
            granted = bucket.acquire()
            with lock:
                grants.append(granted)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(grants) == 40
    for window in (0.05, 0.2):
        assert most_in_window(grants, window) <= rate.most_in(window) + 1e-6
