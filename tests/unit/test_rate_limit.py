"""Stripe's rate limit from kassa's side: the shared token bucket's arithmetic (GCRA; the buckets
themselves, shared by threads and workers: tests/contract/test_rate_limit_contract.py), and the
gateway retrying 429s with backoff under the same idempotency key until they run out, then a
retryable PaymentProviderError, never a declined payment."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from kassa.adapters import usage
from kassa.adapters.ratelimit import Rate, full_jitter, reserve
from kassa.adapters.stripe_gateway import (
    BACKOFF_CAP_S,
    RATE_LIMIT_RETRIES,
    STRIPE_BUDGETS,
    STRIPE_RATE_LIMITS,
    StripeGateway,
    key_mode,
)
from kassa.domain.errors import PaymentProviderError
from kassa.domain.money import Money
from kassa.services.ports import ChargeStatus


def most_in_window(grants: list[float], seconds: float) -> int:
    ordered = sorted(grants)
    return max(sum(1 for g in ordered[i:] if g < t + seconds - 1e-9) for i, t in enumerate(ordered))


@given(
    arrivals=st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200),
    rate=st.sampled_from([1.0, 7.0, 25.0, 90.0]),
    burst=st.integers(min_value=1, max_value=10),
)
def test_reservations_never_exceed_burst_plus_rate_in_any_window_in_any_order(
    arrivals: list[float], rate: float, burst: int
) -> None:
    """Requests arriving in any order (workers with their own clocks) are granted slots no denser
    than the bucket allows, and never before they asked."""
    budget = Rate(rate=rate, burst=burst)
    tat: int | None = None
    grants = []
    for at in arrivals:
        now = round(at * 1_000_000)
        tat, grant = reserve(tat, now, budget)
        assert grant >= now
        grants.append(grant / 1_000_000)
    for window in (0.5, 1.0, 3.0):
        assert most_in_window(grants, window) <= budget.most_in(window) + 1e-6


def test_budgets_stay_within_stripes_limits_and_keys_tell_their_mode() -> None:
    for mode, limit in STRIPE_RATE_LIMITS.items():
        assert STRIPE_BUDGETS[mode].most_in(1.0) <= limit
    assert (key_mode("sk_live_abc"), key_mode("rk_live_abc"), key_mode("sk_test_abc")) == ("live", "live", "test")


def test_backoff_is_jittered_exponential_and_capped() -> None:
    assert [full_jitter(n, 0.5, 8.0, rand=lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert full_jitter(3, 0.5, 8.0, rand=lambda: 0.25) == 1.0


# --------------------------------------------------------------------------------- 429s in the gateway
class Stripe429(stripe.HTTPClient):  # type: ignore[misc]
    """Stripe in process: the first ``limited`` requests answer 429 rate_limit, the rest a
    succeeded PaymentIntent. Every request is recorded with its idempotency key."""

    name = "test-stripe-429"

    def __init__(self, limited: int) -> None:
        super().__init__()
        self.limited = limited
        self.seen: list[tuple[str, str | None, dict[str, list[str]]]] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> tuple[str, int, dict[str, str]]:
        form = parse_qs(post_data.decode() if isinstance(post_data, bytes) else (post_data or ""))
        self.seen.append((method, (headers or {}).get("Idempotency-Key"), form))
        if len(self.seen) <= self.limited:
            error = {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}
            return json.dumps({"error": error}), 429, {}
        intent = {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 1999, "currency": "eur"}
        return json.dumps(intent), 200, {}

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


def _gateway(fake: Stripe429, slept: list[float]) -> StripeGateway:
    return StripeGateway(
        "sk_test_fake", "pk_test_fake", "https://stripe.invalid", local=False, sleep=slept.append, http_client=fake
    )


def _charge(gateway: StripeGateway) -> Any:
    return gateway.charge(
        customer="cus_1",
        payment_method="pm_card_visa",
        amount=Money(1999, "EUR"),
        invoice_id="in_1",
        attempt=1,
        description="Invoice KASSA-0001",
    )


def test_a_rate_limited_charge_is_retried_with_backoff_under_the_same_idempotency_key() -> None:
    fake, slept = Stripe429(limited=3), []
    usage.reset()

    result = _charge(_gateway(fake, slept))

    assert result.status is ChargeStatus.SUCCEEDED
    assert result.payment_intent == "pi_1"
    assert len(fake.seen) == 4
    assert {key for _, key, _ in fake.seen} == {"kassa-in_1-attempt-1"}  # one PaymentIntent, never two
    assert len(slept) == 3 and all(0 <= s <= BACKOFF_CAP_S for s in slept)
    assert usage.snapshot()["calls.stripe.retries"] == 3


def test_a_charge_still_rate_limited_after_its_retries_is_retryable_not_declined() -> None:
    fake, slept = Stripe429(limited=100), []

    with pytest.raises(PaymentProviderError, match="rate limiting"):
        _charge(_gateway(fake, slept))

    assert len(fake.seen) == RATE_LIMIT_RETRIES + 1
    assert len(slept) == RATE_LIMIT_RETRIES


def test_the_gateway_takes_a_slot_of_the_shared_bucket_before_each_call() -> None:
    fake, slept = Stripe429(limited=1), []
    taken: list[float] = []

    class Bucket:
        rate = Rate(rate=20, burst=5)

        def acquire(self) -> float:
            taken.append(1.0)
            return 0.0

    gateway = StripeGateway(
        "sk_test_fake", "pk_test_fake", "https://stripe.invalid", local=False, sleep=slept.append,
        http_client=fake, limiter=Bucket(),
    )  # fmt: skip
    _charge(gateway)

    assert len(taken) == 2  # the 429'd request and its retry each took a slot
