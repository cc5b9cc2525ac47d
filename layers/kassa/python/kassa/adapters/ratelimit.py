"""A token bucket shared by every process that calls Stripe, so that together they stay under
Stripe's rate limit (100 requests/s in live mode, 25 in test mode).

The bucket is kept as one number, its *theoretical arrival time* (GCRA, the generic cell rate
algorithm — a token bucket without a refill timer): each request reserves the next slot,
``tat = max(tat, now) + 1/rate``, and may go at ``tat - burst/rate``. Over any window of W seconds
no more than ``burst + rate × W`` requests are let through, whatever the number of workers and in
whatever order they ask. A request whose slot is further away than ``max_wait`` is not reserved:
``Unavailable`` is raised and the caller retries later (an SQS redelivery), so a congested bucket
never turns into a failed payment.

``MemoryTokenBucket`` is shared by the threads of one process (the simulator, tests);
``DynamoTokenBucket`` by every Lambda instance, on one item of the billing table::

    pk = RATELIMIT#<name>   sk = BUCKET   tat (N, microseconds since the epoch)

Under load it costs one conditional UpdateItem per request and no read: while the bucket is busy
(``tat >= now``) ``SET tat = tat + interval`` is atomic, so concurrent workers never conflict; an
idle bucket restarts at ``now``. A wrong guess between the two comes back with the item
(``ReturnValuesOnConditionCheckFailure``) and is tried the other way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kassa.adapters.dynamodb import DynamoStore, _n, _s
from kassa.domain.errors import Conflict, Unavailable

MICROS = 1_000_000


@dataclass(frozen=True)
class Rate:
    """``rate`` requests a second on average, at most ``burst`` at once (1 ≤ burst)."""

    rate: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a rate needs rate > 0 and burst >= 1, not {self.rate}/{self.burst}")

    @property
    def interval_us(self) -> int:
        return max(1, round(MICROS / self.rate))

    def most_in(self, seconds: float) -> float:
        """The most requests the bucket lets through in any window of ``seconds``."""
        return self.burst + self.rate * seconds


def grant_at(tat_us: int, now_us: int, rate: Rate) -> int:
    """When the request that moved the bucket to ``tat_us`` may go (microseconds)."""
    return max(now_us, tat_us - rate.burst * rate.interval_us)


def reserve(tat_us: int | None, now_us: int, rate: Rate) -> tuple[int, int]:
    """The bucket's next ``tat`` and the reserved slot's time, for a request at ``now_us``."""
    new_tat = max(tat_us or 0, now_us) + rate.interval_us
    return new_tat, grant_at(new_tat, now_us, rate)


def full_jitter(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: a delay in ``[0, min(cap, base × 2**attempt))``."""
    return rand() * min(cap, base * 2**attempt)


class TokenBucket(Protocol):
    rate: Rate

    def acquire(self) -> float:
        """Wait for a slot; answer its time (seconds on the bucket's clock). ``Unavailable`` when
        the slot would be more than ``max_wait`` away (nothing is reserved then)."""
        ...


def _too_long(wait_us: int, max_wait: float) -> Unavailable:
    return Unavailable(f"rate limit: the next request slot is {wait_us / MICROS:.1f} s away (> {max_wait:g} s)")


class MemoryTokenBucket:
    """The bucket for the threads of one process. ``clock`` (seconds) and ``sleep`` may be a
    simulation's: a virtual clock makes the bucket deterministic."""

    def __init__(
        self,
        rate: Rate,
        *,
        max_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._tat: int | None = None
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            now = round(self._clock() * MICROS)
            new_tat, grant = reserve(self._tat, now, self.rate)
            if grant - now > self._max_wait * MICROS:
                raise _too_long(grant - now, self._max_wait)
            self._tat = new_tat
        if grant > now:
            self._sleep((grant - now) / MICROS)
        return grant / MICROS


class DynamoTokenBucket(DynamoStore):
    """The bucket on one item of the billing table, shared by every Lambda instance. A
    ``DynamoStore`` only for its low-level calls (errors translated, capacity counted)."""

    def __init__(
        self,
        client: Any,
        table: str,
        rate: Rate,
        *,
        name: str = "stripe",
        max_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_conflicts: int = 8,
    ) -> None:
        super().__init__(client, table)
        self.rate = rate
        self._key = {"pk": _s(f"RATELIMIT#{name}"), "sk": _s("BUCKET")}
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._max_conflicts = max_conflicts
        self._busy = False  # the last answer: the bucket was busy (tat >= now), so try the atomic add first

    def acquire(self) -> float:
        interval = self.rate.interval_us
        for _ in range(self._max_conflicts):
            now = round(self._clock() * MICROS)
            # the latest tat that still gives a slot within max_wait: tat + interval - burst × interval - now
            latest = now + round(self._max_wait * MICROS) + (self.rate.burst - 1) * interval
            try:
                if self._busy:
                    response = self._call(
                        "update_item",
                        TableName=self._table,
                        Key=self._key,
                        UpdateExpression="SET tat = tat + :i",
                        ConditionExpression="tat >= :now AND tat <= :latest",
                        ExpressionAttributeValues={":i": _n(interval), ":now": _n(now), ":latest": _n(latest)},
                        ReturnValues="UPDATED_NEW",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                    new_tat = int(response["Attributes"]["tat"]["N"])
                else:
                    new_tat, _ = reserve(None, now, self.rate)
                    self._call(
                        "update_item",
                        TableName=self._table,
                        Key=self._key,
                        UpdateExpression="SET tat = :tat",
                        ConditionExpression="attribute_not_exists(tat) OR tat < :now",
                        ExpressionAttributeValues={":tat": _n(new_tat), ":now": _n(now)},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
            except Conflict as conflict:
                tat = _tat_of(conflict)
                if tat is None:  # no item came back: read it
                    item = self._get(self._key["pk"]["S"], self._key["sk"]["S"])
                    tat = int(item["tat"]["N"]) if item and "tat" in item else None
                if tat is not None and tat > latest:
                    raise _too_long(grant_at(tat + interval, now, self.rate) - now, self._max_wait) from None
                self._busy = tat is not None and tat >= now
                continue
            self._busy = True
            grant = grant_at(new_tat, now, self.rate)
            if grant > now:
                self._sleep((grant - now) / MICROS)
            return grant / MICROS
        raise Unavailable("rate limit: the shared bucket kept changing under this worker; retry")


def _tat_of(conflict: Conflict) -> int | None:
    """The bucket's tat from a failed condition's ``ReturnValuesOnConditionCheckFailure`` item."""
    cause = conflict.__cause__
    item = getattr(cause, "response", {}).get("Item") if cause is not None else None
    if isinstance(item, dict) and "tat" in item:
        return int(item["tat"]["N"])
    return None
