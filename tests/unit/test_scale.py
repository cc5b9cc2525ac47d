"""Renewals at scale, in memory: a Stripe outage or a 429 that outlasts its retries leaves the renewal
to be delivered again (never a failed payment nor a dunning step); the sweep spreads a cohort larger
than one tick's budget over ticks without enqueueing anyone twice; duplicate messages renew once;
a rate-limited fake Stripe (kassa_local.scale) sees no more than the bucket allows."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from fakes import Outcome, World

from kassa.domain.errors import PaymentProviderError
from kassa.domain.invoice import BillingReason, InvoiceStatus
from kassa.domain.subscription import Status
from kassa.services import renewals
from kassa_local.scale import simulate


def test_a_renewal_stripe_cannot_take_now_is_retried_later_not_failed(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    card = world.store.get_customer(world.store.get_subscription(sub_id).customer).default_payment_method
    assert card is not None
    world.gateway.will(
        card.payment_method_id, Outcome("error"), Outcome("succeed")
    )  # e.g. 429s past their retries, then fine
    world.clock.set(world.store.get_subscription(sub_id).current_period_end + timedelta(seconds=1))
    world.publisher.clear()

    with pytest.raises(PaymentProviderError):
        renewals.process_due(world.billing, sub_id)  # the SQS message is delivered again

    sub = world.store.get_subscription(sub_id)
    invoice = world.store.get_invoice(sub.latest_invoice or "")
    assert sub.status is Status.ACTIVE  # not past_due
    assert invoice.status is InvoiceStatus.OPEN and invoice.attempt_count == 1
    assert "invoice.payment_failed" not in world.publisher.types()  # no dunning step
    assert invoice.next_dunning_at is None

    assert renewals.process_due(world.billing, sub_id) == "paid"  # the redelivery
    assert renewals.process_due(world.billing, sub_id) == "nothing"  # and a duplicate of it
    charges = [c for c in world.gateway.charge_calls if c.invoice_id == invoice.id]
    assert [c.attempt for c in charges] == [1, 1]  # the same attempt (idempotency key) again, not a new one
    assert len([i for i in world.gateway.succeeded_intents if i[0] == invoice.id]) == 1


def test_the_sweep_spreads_a_cohort_over_ticks_and_duplicates_renew_once() -> None:
    figures, store = simulate(
        240, workers=8, mode="test", sweep_limit=100, duplicate_every=5, latency=0.2, kassa_seconds=0.01
    )

    assert figures["sweeps"] == 3  # 100 + 100 + 40: what one tick may enqueue, oldest first
    assert figures["enqueued"] == 240
    assert figures["enqueued_twice"] == 0  # each tick's messages were done before the next looked
    assert figures["renewed"] == 240
    assert figures["outcomes"]["nothing"] == 48  # every fifth message delivered twice did nothing more
    assert figures["stripe_requests"] == 240  # one PaymentIntent per renewal
    cycles = Counter(
        i.subscription for i in store.invoices.values() if i.billing_reason is BillingReason.SUBSCRIPTION_CYCLE
    )
    assert set(cycles) == set(store.subscriptions) and set(cycles.values()) == {1}  # one renewal invoice each
    assert figures["failed_payments"] == figures["dunning_steps"] == 0


def test_paced_by_the_bucket_stripe_never_sees_more_than_its_limit() -> None:
    figures, _ = simulate(300, workers=20, mode="test", latency=0.3, kassa_seconds=0.02)

    assert figures["renewed"] == 300
    assert figures["max_stripe_requests_in_one_s"] <= 25  # test mode's 25 requests/s
    assert figures["stripe_429s"] == 0
    assert figures["renewals_per_s"] > 15  # close to the bucket's 20/s, not throttled to a crawl


def test_without_the_bucket_429s_are_retried_and_no_payment_fails() -> None:
    figures, _ = simulate(250, workers=60, mode="test", use_bucket=False, latency=0.3, kassa_seconds=0.02)

    assert figures["stripe_429s"] > 0
    assert figures["kassa_retries_after_429"] >= figures["stripe_429s"] - figures["redelivered_after_unavailable"]
    assert figures["renewed"] == 250
    assert figures["failed_payments"] == figures["dunning_steps"] == 0


class _Sqs:
    """A send_message_batch double: records every body; ``fail_on`` refuses that call's first entry."""

    def __init__(self, fail_on: int | None = None) -> None:
        import threading

        self.bodies: list[str] = []
        self.calls = 0
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, object]:  # noqa: N803
        with self._lock:
            self.calls += 1
            call = self.calls
            self.bodies += [e["MessageBody"] for e in Entries]
        assert len(Entries) <= 10
        if call == self.fail_on:
            return {"Failed": [{"Id": Entries[0]["Id"], "Code": "InternalError"}]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_a_large_sweep_is_sent_in_batches_of_ten_several_at_once_each_message_once() -> None:
    import json

    from kassa.adapters.sqs import SqsQueue

    client = _Sqs()
    messages = [{"subscription": f"sub_{i}", "due_at": "2026-03-01T09:00:00+00:00"} for i in range(253)]

    SqsQueue(client, "https://sqs.local/renewals").send(messages)

    assert client.calls == 26
    assert sorted(json.loads(b)["subscription"] for b in client.bodies) == sorted(m["subscription"] for m in messages)


def test_a_refused_batch_fails_the_sweep_so_its_tick_is_retried() -> None:
    from kassa.adapters.sqs import SqsQueue

    with pytest.raises(RuntimeError, match="SQS refused 1 messages"):
        SqsQueue(_Sqs(fail_on=7), "https://sqs.local/renewals").send([{"subscription": f"s{i}"} for i in range(100)])
