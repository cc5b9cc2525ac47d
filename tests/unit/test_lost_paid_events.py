"""A payment written but never published (found by ``kassa simulate --faults``): the function died
between the write that paid the invoice and the publish, or the write timed out after it committed
(botocore's retry then fails its condition: Conflict). The invoice was paid, ``invoice.paid`` never
went out — no receipt, the overdue ladder never stepped back. The next report of the same payment
publishes it again, under the same event id."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import ListQueue, World

from kassa.domain.errors import Conflict
from kassa.domain.invoice import InvoiceStatus
from kassa.services.checkout import complete_checkout
from kassa.services.collection import collect
from kassa.services.context import BillingContext
from kassa.services.renewals import process_due
from kassa.services.webhooks import ingest, process_recorded_event


class Died(Exception):
    """The function ended (out of memory, its timeout) right after a write."""


class AfterCommit:
    """The store, failing once right after ``method`` committed: with ``error``."""

    def __init__(self, store: Any, method: str, error: Exception) -> None:
        self._store, self._method, self._error = store, method, error

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name != self._method:
            return target

        def once(*args: Any, **kwargs: Any) -> Any:
            result = target(*args, **kwargs)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return result

        return once


def _failing(world: World, method: str, error: Exception) -> BillingContext:
    return BillingContext(AfterCommit(world.store, method, error), world.gateway, world.publisher, world.clock)


def _paid_events(world: World, invoice_id: str) -> list[str]:
    return [e.id for e in world.publisher.of_type("invoice.paid") if e.data["id"] == invoice_id]


def _renewal_due(world: World) -> str:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.clock.set(world.store.get_subscription(sub_id).current_period_end)
    world.publisher.clear()
    return sub_id


def test_a_renewal_whose_payment_write_timed_out_after_committing_publishes_it(world: World) -> None:
    sub_id = _renewal_due(world)
    ctx = _failing(world, "save_invoice_and_subscription", Conflict("the item changed or already exists"))
    assert process_due(ctx, sub_id) == "paid"  # the retry read it back: paid
    invoice_id = world.store.get_subscription(sub_id).latest_invoice
    assert invoice_id and world.store.get_invoice(invoice_id).status is InvoiceStatus.PAID
    assert len(_paid_events(world, invoice_id)) == 1
    assert len(world.gateway.charges_for(invoice_id)) == 1


def test_a_renewal_that_died_after_paying_publishes_it_when_redelivered(world: World) -> None:
    sub_id = _renewal_due(world)
    with pytest.raises(Died):
        process_due(_failing(world, "save_invoice_and_subscription", Died()), sub_id)
    invoice_id = world.store.get_subscription(sub_id).latest_invoice
    assert invoice_id and world.store.get_invoice(invoice_id).status is InvoiceStatus.PAID
    assert _paid_events(world, invoice_id) == []  # lost with the function

    assert process_due(world.billing, sub_id) == "nothing"  # a duplicate delivery: nothing new
    assert _paid_events(world, invoice_id) == []
    assert process_due(world.billing, sub_id, redelivered=True) == "nothing"  # the crashed message, again
    first = _paid_events(world, invoice_id)
    assert len(first) == 1
    process_due(world.billing, sub_id, redelivered=True)  # again: the same event id, which consumers take once
    assert set(_paid_events(world, invoice_id)) == set(first)
    assert len(world.gateway.charges_for(invoice_id)) == 1  # and never a second charge


def test_a_checkout_completion_that_died_after_paying_publishes_it_when_retried(world: World) -> None:
    _, price = world.catalog()
    started = world.checkout(price)
    ctx = _failing(world, "finalize_invoice", Died())  # the first invoice is numbered as it is paid
    with pytest.raises(Died):
        complete_checkout(ctx, started.subscription.id, started.setup_intent.id)
    invoice_id = started.subscription.latest_invoice
    assert invoice_id and world.store.get_invoice(invoice_id).status is InvoiceStatus.PAID
    assert _paid_events(world, invoice_id) == []

    complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)  # the storefront retries
    assert len(_paid_events(world, invoice_id)) == 1
    assert len(world.gateway.charges_for(invoice_id)) == 1


def test_a_dunning_retry_that_died_after_paying_is_published_from_stripes_webhook(world: World) -> None:
    """No run retries a dunning retry (the sweep no longer finds a paid invoice): Stripe's
    payment_intent.succeeded is processed rather than settled at ingest, and publishes it."""
    sub_id = _renewal_due(world)
    world.gateway.will_decline("pm_card_visa")
    assert process_due(world.billing, sub_id) == "open"
    invoice_id = world.store.get_subscription(sub_id).latest_invoice
    assert invoice_id
    world.gateway.will_succeed("pm_card_visa")
    with pytest.raises(Died):
        collect(_failing(world, "save_invoice_and_subscription", Died()), world.store.get_invoice(invoice_id),
                trigger="dunning:1")  # fmt: skip
    paid = world.store.get_invoice(invoice_id)
    assert paid.status is InvoiceStatus.PAID and _paid_events(world, invoice_id) == []

    queue = ListQueue()
    payload = json.dumps(world.gateway.intent_event(paid.payment_intent or ""))
    outcome = ingest(payload, "sig", store=world.store, queue=queue, secret="s", clock=world.clock,
                     verify=lambda body, header, secret: json.loads(body))  # fmt: skip
    assert outcome.enqueued  # not settled at ingest: no run would publish it otherwise
    assert process_recorded_event(queue.messages[0], world.billing) == "applied"
    assert len(_paid_events(world, invoice_id)) == 1
    assert (
        len([c for c in world.gateway.charges_for(invoice_id) if c.result and c.result.status.value == "succeeded"])
        == 1
    )


def test_the_echo_of_a_renewal_paid_in_full_is_still_settled_at_ingest(world: World) -> None:
    sub_id = _renewal_due(world)
    assert process_due(world.billing, sub_id) == "paid"
    paid = world.store.get_invoice(world.store.get_subscription(sub_id).latest_invoice or "")
    queue = ListQueue()
    payload = json.dumps(world.gateway.intent_event(paid.payment_intent or ""))
    outcome = ingest(payload, "sig", store=world.store, queue=queue, secret="s", clock=world.clock,
                     verify=lambda body, header, secret: json.loads(body))  # fmt: skip
    assert outcome.accepted and not outcome.enqueued and queue.messages == []
    assert len(_paid_events(world, paid.id)) == 1  # the renewal's own, not a second
