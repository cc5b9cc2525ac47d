"""kassa.services.billing.Billing and services.webhooks end to end, in memory (fakes.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import (
    START,
    FakeGateway,
    FakeStore,
    ListQueue,
    Outcome,
    World,
    make_world,
    shard_of,
    stripe_event,
    stripe_object,
)
from hypothesis import event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kassa.api.webhook import delivery, response
from kassa.domain.catalog import Recurring
from kassa.domain.customer import Address
from kassa.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PaymentProviderError
from kassa.domain.invoice import BillingReason, Invoice, InvoiceStatus
from kassa.domain.money import Money
from kassa.domain.periods import Interval, Period
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status, Subscription
from kassa.services.catalog import create_price
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.collection import apply_charge_result
from kassa.services.customers import create_customer
from kassa.services.ports import ChargeResult, ChargeStatus, WebhookRecord
from kassa.services.renewals import due_work, process_due
from kassa.services.stripe_events import apply_stripe_event
from kassa.services.webhooks import ingest, process_recorded_event


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sub_of(world: World, sub_id: str) -> Subscription:
    return world.store.get_subscription(sub_id)


def latest_invoice(world: World, sub_id: str) -> Invoice:
    sub = sub_of(world, sub_id)
    assert sub.latest_invoice is not None
    return world.store.get_invoice(sub.latest_invoice)


def payment_intent_event(
    event_type: str,
    invoice: Invoice,
    *,
    pi_id: str = "pi_1PgafyB7WZ01zgkWSjxsAJo3",
    status: str = "succeeded",
    error: dict[str, Any] | None = None,
    event_id: str = "evt_pi_1",
    attempt: int = 1,
) -> dict[str, Any]:
    """A Stripe payment_intent.* event built on the fixture objects (every field kassa ignores kept)."""
    intent = stripe_object(
        "payment_intent",
        id=pi_id,
        status=status,
        amount=invoice.amount_due,
        amount_received=invoice.amount_due if status == "succeeded" else 0,
        currency=invoice.currency.lower(),
        customer="cus_fake000001",
        canceled_at=None,
        next_action=None,
        last_payment_error=error,
        metadata={"kassa_invoice": invoice.id, "kassa_attempt": str(attempt)},
    )
    return stripe_event(event_type, intent, event_id=event_id)


DECLINE = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
    "payment_method": {"id": "pm_card_visa", "object": "payment_method"},
}


# =====================================================================================================
# fakes behave like the real store (so the service tests below mean something)
# =====================================================================================================
class TestFakeStore:
    def test_optimistic_versions(self, world: World) -> None:
        _, price = world.catalog()
        result = world.checkout(price)
        sub = sub_of(world, result.subscription.id)
        saved = world.store.save_subscription(sub)
        assert saved.version == sub.version + 1
        with pytest.raises(Conflict):
            world.store.save_subscription(sub)  # stale version
        inv = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
        world.store.save_invoice(inv)
        with pytest.raises(Conflict):
            world.store.save_invoice_and_subscription(inv, saved)
        assert world.store.get_subscription(sub.id).version == saved.version  # nothing half-written

    def test_gapless_numbers_and_renew_once(self, world: World) -> None:
        _, price = world.catalog()
        a = world.active_subscription(price, email="a@example.com")
        b = world.active_subscription(price, email="b@example.com")
        numbers = [world.store.get_invoice(r.invoice.id).number for r in (a, b)]  # type: ignore[union-attr]
        assert numbers == ["KASSA-0001", "KASSA-0002"]  # a checkout's first invoice is numbered when paid
        sub = sub_of(world, a.subscription.id)
        with pytest.raises(AlreadyExists):
            world.store.renew(sub, world.store.get_invoice(a.invoice.id), "KASSA")  # type: ignore[union-attr]
        assert world.store.invoice_seq == 2  # a failed renew takes no number

    def test_lists_are_newest_first_with_a_cursor(self, world: World) -> None:
        _, price = world.catalog()
        ids = []
        for _ in range(3):
            ids.append(world.checkout(price).invoice.id)  # type: ignore[union-attr]
            world.clock.advance(minutes=1)
        customer = world.store.find_customer_by_email("ada@example.com")
        assert customer is not None
        page = world.store.list_customer_invoices(customer.id, 2, None)
        assert [i.id for i in page.items] == ids[::-1][:2] and page.has_more
        rest = world.store.list_customer_invoices(customer.id, 2, page.items[-1].id)
        assert [i.id for i in rest.items] == [ids[0]] and not rest.has_more
        with pytest.raises(NotFound):
            world.store.list_customer_invoices(customer.id, 2, "in_nope")

    def test_webhook_records_are_written_once(self) -> None:
        store = FakeStore()
        record = WebhookRecord("evt_1", "x", "received", "{}", START)
        assert store.record_webhook(record) is None
        assert store.record_webhook(record) == record
        assert store.mark_webhook("evt_1", "processed", "applied") is True
        assert store.mark_webhook("evt_1", "ignored", "again") is False
        assert store.get_webhook("evt_1").status == "processed"  # type: ignore[union-attr]
        assert store.mark_webhook("evt_unknown", "processed") is False


# =====================================================================================================
# catalog and customers
# =====================================================================================================
def test_create_product_and_price(world: World) -> None:
    product, price = world.catalog(unit_amount=1999, currency="eur", interval=Interval.MONTH, interval_count=3)
    assert world.store.get_product(product.id) == product
    assert world.store.get_price(price.id) == price
    assert product.id.startswith("prod_") and price.id.startswith("price_")
    assert price.currency == "EUR" and price.unit_amount == 1999 and price.recurring.interval_count == 3
    assert price.created == START
    assert world.publisher.types() == ["product.created", "price.created"]
    assert world.publisher.events[1].data["id"] == price.id


def test_create_price_for_an_unknown_product_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        create_price(world.billing, "prod_nope", "EUR", 100, Recurring(interval=Interval.MONTH))
    assert world.store.prices == {}


def test_create_price_with_an_unknown_currency_names_currency(world: World) -> None:
    product, _ = world.catalog()
    with pytest.raises(InvalidInput) as error:
        create_price(world.billing, product.id, "XXX", 100, Recurring(interval=Interval.MONTH))
    assert error.value.param == "currency"


def test_create_customer_refuses_a_duplicate_email(world: World) -> None:
    customer = create_customer(world.billing, "ada@example.com", "Ada", Address(country="NL"))
    assert customer.stripe_customer_id in world.gateway.stripe_customers
    with pytest.raises(AlreadyExists) as error:
        create_customer(world.billing, "ADA@example.com ", "Ada", Address(country="NL"))
    assert error.value.param == "email"


# =====================================================================================================
# checkout
# =====================================================================================================
def test_checkout_without_trial_is_incomplete_with_an_open_invoice_numbered_when_paid(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    world.publisher.clear()
    result = world.checkout(price, quantity=2)

    sub = sub_of(world, result.subscription.id)
    assert sub.status is Status.INCOMPLETE
    assert sub.incomplete_expires_at == START + timedelta(hours=23)
    assert sub.period == Period(START, utc(2025, 2, 28, 10))

    invoice = result.invoice
    assert invoice is not None
    assert invoice == world.store.get_invoice(invoice.id)
    assert invoice.status is InvoiceStatus.OPEN
    assert invoice.number is None  # numbered once paid: a checkout that expires uses up no number
    assert invoice.finalized_at == START
    assert invoice.amount_due == 2000 and invoice.currency == "EUR"
    assert invoice.billing_reason is BillingReason.SUBSCRIPTION_CREATE
    assert sub.latest_invoice == invoice.id

    assert result.customer.email == "ada@example.com"
    assert result.publishable_key == "pk_test_fake"
    assert result.setup_intent.metadata == {"kassa_subscription": sub.id, "kassa_customer": result.customer.id}
    assert world.gateway.charge_calls == []  # nothing charged before the card is confirmed
    assert world.publisher.types() == ["customer.created", "customer.subscription.created", "invoice.finalized"]
    created = world.publisher.of_type("customer.subscription.created")[0]
    assert created.data["id"] == sub.id and created.data["status"] == "incomplete"


def test_checkout_reuses_the_customer_and_numbers_are_gapless(world: World) -> None:
    _, price = world.catalog()
    first = world.checkout(price)
    second = world.checkout(price)  # same email
    assert second.customer.id == first.customer.id
    assert world.gateway.call_names().count("create_customer") == 1
    assert second.invoice.number is None  # type: ignore[union-attr]  # numbered when paid


def test_checkout_uses_the_merchant_invoice_prefix(world: World) -> None:
    world.store.put_settings(MerchantSettings(invoice_prefix="ACME"))
    _, price = world.catalog()
    paid = world.active_subscription(price).invoice
    assert world.store.get_invoice(paid.id).number == "ACME-0001"  # type: ignore[union-attr]


def test_checkout_refuses_bad_input(world: World) -> None:
    _, price = world.catalog()
    with pytest.raises(InvalidInput) as error:
        start_checkout(world.billing, price_id=price.id, email="x@example.com")  # no address
    assert error.value.param == "customer"
    with pytest.raises(InvalidInput) as error:
        world.checkout(price, quantity=0)
    assert error.value.param == "quantity"
    with pytest.raises(NotFound):
        start_checkout(world.billing, price_id="price_nope", email="x@example.com", address=Address(country="NL"))
    world.store.prices[price.id] = price.model_copy(update={"active": False})
    with pytest.raises(InvalidInput) as error:
        world.checkout(price)
    assert error.value.param == "price_id"
    assert world.store.subscriptions == {}


def test_complete_checkout_charges_once_and_activates(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    result = world.checkout(price, quantity=2)
    world.publisher.clear()

    world.clock.advance(minutes=5)
    outcome = complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)

    assert outcome.invoice is not None and outcome.invoice.status is InvoiceStatus.PAID
    assert outcome.subscription is not None and outcome.subscription.status is Status.ACTIVE
    sub = sub_of(world, result.subscription.id)
    assert sub.status is Status.ACTIVE
    assert sub.incomplete_expires_at is None
    assert sub.period == Period(START, utc(2025, 2, 28, 10))  # the first period stays anchored at creation
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.amount_paid == 2000
    assert invoice.paid_at == START + timedelta(minutes=5)
    assert invoice.attempt_count == 1
    [charge] = world.gateway.charge_calls
    assert charge.invoice_id == invoice.id and charge.attempt == 1
    assert charge.amount == Money(2000, "EUR")
    assert charge.payment_method == "pm_card_visa"
    assert charge.customer == result.customer.stripe_customer_id
    assert invoice.payment_intent == charge.result.payment_intent  # type: ignore[union-attr]
    customer = world.store.get_customer(result.customer.id)
    assert customer.default_payment_method is not None
    assert customer.default_payment_method.payment_method_id == "pm_card_visa"
    assert world.publisher.types() == [
        "customer.updated",
        "invoice.paid",
        "invoice.payment_succeeded",
        "customer.subscription.updated",
    ]
    updated = world.publisher.of_type("customer.subscription.updated")[0]
    assert updated.previous_attributes == {"status": "incomplete"}
    assert updated.data["status"] == "active"

    # the storefront and the setup_intent.succeeded webhook both call it: one charge
    again = complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert len(world.gateway.charge_calls) == 1
    assert world.gateway.call_names().count("attach_payment_method") == 1
    assert again.invoice is not None and again.invoice.status is InvoiceStatus.PAID
    # the second call publishes invoice.paid again (the first may have died before it did), under the
    # same id: consumers take it once
    assert len({e.id for e in world.publisher.of_type("invoice.paid")}) == 1


def test_complete_checkout_needs_a_confirmed_setup_intent(world: World) -> None:
    world.gateway.setup_payment_method = None  # Stripe.js has not confirmed the card yet
    _, price = world.catalog()
    result = world.checkout(price)
    with pytest.raises(InvalidInput) as error:
        complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert error.value.param == "setup_intent_id"
    assert world.gateway.charge_calls == []
    world.gateway.confirm_setup_intent(result.setup_intent.id, "pm_card_mastercard")
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert [c.payment_method for c in world.gateway.charge_calls] == ["pm_card_mastercard"]
    assert sub_of(world, result.subscription.id).status is Status.ACTIVE


def test_complete_checkout_refuses_a_setup_intent_of_another_subscription(world: World) -> None:
    _, price = world.catalog()
    a = world.checkout(price, email="a@example.com")
    b = world.checkout(price, email="b@example.com")
    with pytest.raises(InvalidInput) as error:
        complete_checkout(world.billing, a.subscription.id, b.setup_intent.id)
    assert error.value.param == "setup_intent_id"
    assert world.gateway.charge_calls == []
    assert sub_of(world, a.subscription.id).status is Status.INCOMPLETE


def test_a_declined_first_payment_keeps_it_incomplete_and_a_new_card_pays(world: World) -> None:
    world.gateway.setup_payment_method = "pm_card_chargeDeclined"
    world.gateway.will_decline("pm_card_chargeDeclined")
    _, price = world.catalog()
    result = world.checkout(price)
    world.publisher.clear()

    outcome = complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert outcome.charge is not None and outcome.charge.status is ChargeStatus.DECLINED
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert invoice.status is InvoiceStatus.OPEN
    assert invoice.last_payment_error is not None
    assert (invoice.last_payment_error.code, invoice.last_payment_error.decline_code) == (
        "card_declined",
        "insufficient_funds",
    )
    assert sub_of(world, result.subscription.id).status is Status.INCOMPLETE  # Stripe: stays incomplete
    assert "invoice.payment_failed" in world.publisher.types()
    assert "customer.subscription.updated" not in world.publisher.types()

    # the customer enters another card in the storefront
    world.gateway.setup_payment_method = "pm_card_visa"
    retry = world.gateway.create_setup_intent(
        customer=result.customer.stripe_customer_id or "", metadata={"kassa_subscription": result.subscription.id}
    )
    complete_checkout(world.billing, result.subscription.id, retry.id)
    invoice = world.store.get_invoice(invoice.id)
    assert invoice.status is InvoiceStatus.PAID and invoice.attempt_count == 2
    assert invoice.last_payment_error is None
    assert [c.attempt for c in world.gateway.charge_calls] == [1, 2]
    assert sub_of(world, result.subscription.id).status is Status.ACTIVE


def test_a_free_price_is_paid_without_charging(world: World) -> None:
    _, price = world.catalog(unit_amount=0)
    result = world.checkout(price)
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert world.gateway.charge_calls == []
    assert world.store.get_invoice(result.invoice.id).status is InvoiceStatus.PAID  # type: ignore[union-attr]
    assert sub_of(world, result.subscription.id).status is Status.ACTIVE


@pytest.mark.parametrize(
    "first",
    [Outcome("processing"), Outcome("requires_action", "authentication_required"), Outcome("decline", "card_declined")],
    ids=["processing", "requires_action", "declined"],
)
def test_the_second_complete_checkout_for_the_same_setup_intent_never_charges_again(
    world: World, first: Outcome
) -> None:
    world.gateway.will("pm_card_visa", first, Outcome("succeed"))
    _, price = world.catalog()
    result = world.checkout(price)
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)  # storefront
    event = stripe_event(
        "setup_intent.succeeded",
        stripe_object(
            "setup_intent",
            id=result.setup_intent.id,
            status="succeeded",
            payment_method="pm_card_visa",
            metadata={"kassa_subscription": result.subscription.id},
        ),
    )
    apply_stripe_event(world.billing, event)  # the webhook for the same SetupIntent
    # one attempt per confirmed card: no second PaymentIntent while the first is pending, no re-charge of a
    # card that was just declined
    assert len(world.gateway.charge_calls) == 1


# =====================================================================================================
# renewals
# =====================================================================================================
def test_renewal_invoices_the_next_period_with_the_next_number_and_charges_once(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    first = world.active_subscription(price, quantity=2)
    sub_id = first.subscription.id
    world.publisher.clear()

    assert process_due(world.billing, sub_id) == "nothing"  # not due yet
    assert world.store.all_due(world.clock.now()) == []

    world.clock.set(utc(2025, 2, 28, 10, 0, 1))  # just past current_period_end
    shard = shard_of(sub_id, world.store.due_shards)
    assert due_work(world.billing, shard) == [{"subscription": sub_id, "due_at": "2025-02-28T10:00:00+00:00"}]

    assert process_due(world.billing, sub_id) == "paid"

    sub = sub_of(world, sub_id)
    assert sub.status is Status.ACTIVE
    assert sub.period == Period(utc(2025, 2, 28, 10), utc(2025, 3, 31, 10))
    invoice = latest_invoice(world, sub_id)
    assert invoice.id != first.invoice.id  # type: ignore[union-attr]
    assert invoice.number == "KASSA-0002"
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.billing_reason is BillingReason.SUBSCRIPTION_CYCLE
    assert (invoice.period_start, invoice.period_end) == (sub.current_period_start, sub.current_period_end)
    assert invoice.amount_paid == 2000
    assert len(world.gateway.charge_calls) == 2
    renewal_charge = world.gateway.charge_calls[-1]
    assert (renewal_charge.invoice_id, renewal_charge.attempt) == (invoice.id, 1)
    assert renewal_charge.description == "Invoice KASSA-0002"
    assert world.publisher.types() == [
        "invoice.created",
        "invoice.finalized",
        "customer.subscription.updated",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    updated = world.publisher.of_type("customer.subscription.updated")[0]
    assert updated.previous_attributes["current_period_start"] == "2025-01-31T10:00:00+00:00"

    # redelivered renewal message: nothing new
    assert process_due(world.billing, sub_id) == "nothing"
    assert len(world.gateway.charge_calls) == 2
    assert world.store.invoice_seq == 2
    assert due_work(world.billing, shard) == []


def test_renewals_catch_up_one_period_at_a_time_on_the_anchor(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.clock.set(utc(2025, 5, 1))  # three periods ended while the worker was down
    outcomes = []
    while (outcome := process_due(world.billing, sub_id)) != "nothing":
        outcomes.append(outcome)
        assert len(outcomes) < 10
    assert outcomes == ["paid", "paid", "paid"]
    invoices = sorted(world.store.invoices.values(), key=lambda i: i.number or "")
    assert [i.number for i in invoices] == ["KASSA-0001", "KASSA-0002", "KASSA-0003", "KASSA-0004"]
    assert [i.period_end.date().isoformat() for i in invoices] == [
        "2025-02-28",
        "2025-03-31",  # Jan 31 anchor: Feb 28, Mar 31, Apr 30, May 31
        "2025-04-30",
        "2025-05-31",
    ]
    assert all(a.period_end == b.period_start for a, b in zip(invoices, invoices[1:], strict=False))
    assert len(world.gateway.charge_calls) == 4


def test_process_due_for_an_unknown_subscription(world: World) -> None:
    assert process_due(world.billing, "sub_nope") == "unknown"


def test_a_declined_renewal_goes_past_due_then_a_late_success_reactivates(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will_decline("pm_card_visa")
    world.clock.set(utc(2025, 2, 28, 11))
    world.publisher.clear()

    assert process_due(world.billing, sub_id) == "open"
    invoice = latest_invoice(world, sub_id)
    assert invoice.number == "KASSA-0002"
    assert invoice.status is InvoiceStatus.OPEN
    assert invoice.last_payment_error is not None
    assert invoice.last_payment_error.code == "card_declined"
    assert invoice.last_payment_error.decline_code == "insufficient_funds"
    assert invoice.amount_paid == 0
    sub = sub_of(world, sub_id)
    assert sub.status is Status.PAST_DUE
    assert sub.period == Period(utc(2025, 2, 28, 10), utc(2025, 3, 31, 10))  # still advanced
    [failed] = world.publisher.of_type("invoice.payment_failed")
    assert failed.data["id"] == invoice.id
    [updated] = world.publisher.of_type("customer.subscription.updated")[-1:]
    assert updated.data["status"] == "past_due" and updated.previous_attributes == {"status": "active"}

    # the customer pays (e.g. a retry succeeded and Stripe told us)
    world.clock.advance(days=2)
    paid = apply_charge_result(world.billing, invoice.id, ChargeResult(ChargeStatus.SUCCEEDED, "pi_late_success"))
    assert paid.invoice is not None and paid.invoice.status is InvoiceStatus.PAID
    invoice = world.store.get_invoice(invoice.id)
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.payment_intent == "pi_late_success"
    assert invoice.last_payment_error is None
    assert invoice.paid_at == utc(2025, 3, 2, 11)
    assert sub_of(world, sub_id).status is Status.ACTIVE

    # a late payment_failed for an earlier attempt changes nothing (no ordering guarantee)
    before = (world.store.get_invoice(invoice.id), sub_of(world, sub_id), len(world.publisher.events))
    late = ChargeResult(ChargeStatus.DECLINED, "pi_early_fail", code="card_declined", decline_code="generic_decline")
    apply_charge_result(world.billing, invoice.id, late)
    assert (world.store.get_invoice(invoice.id), sub_of(world, sub_id), len(world.publisher.events)) == before


def test_a_renewal_that_needs_authentication_asks_for_action(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will_require_action("pm_card_visa")
    world.clock.set(utc(2025, 3, 1))
    world.publisher.clear()
    assert process_due(world.billing, sub_id) == "open"
    assert world.publisher.of_type("invoice.payment_action_required")
    assert not world.publisher.of_type("invoice.payment_failed")
    invoice = latest_invoice(world, sub_id)
    assert invoice.last_payment_error is not None
    assert invoice.last_payment_error.code == "authentication_required"
    assert sub_of(world, sub_id).status is Status.PAST_DUE


def test_a_processing_payment_leaves_the_invoice_open_and_the_subscription_active(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will("pm_card_visa", Outcome("processing"))
    world.clock.set(utc(2025, 3, 1))
    assert process_due(world.billing, sub_id) == "open"
    invoice = latest_invoice(world, sub_id)
    assert invoice.last_payment_error is None
    assert sub_of(world, sub_id).status is Status.ACTIVE


def test_renew_conflict_propagates_so_the_message_is_retried(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.clock.set(utc(2025, 3, 1))
    real_get = world.store.get_subscription

    def stale_get(subscription_id: str) -> Subscription:
        sub = real_get(subscription_id)
        world.store.save_subscription(sub)  # a concurrent writer wins between read and renew
        return sub

    world.store.get_subscription = stale_get  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        process_due(world.billing, sub_id)
    world.store.get_subscription = real_get  # type: ignore[method-assign]
    assert world.store.invoice_seq == 1  # no number taken, no invoice
    assert len(world.store.invoices) == 1
    assert process_due(world.billing, sub_id) == "paid"  # the retried message decides again
    assert world.store.invoice_seq == 2


def test_a_renewal_charge_interrupted_by_a_stripe_outage_is_retried(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will("pm_card_visa", Outcome("error"), Outcome("succeed"))
    world.clock.set(utc(2025, 3, 1))
    with pytest.raises(PaymentProviderError):
        process_due(world.billing, sub_id)
    process_due(world.billing, sub_id)  # SQS redelivers the message
    assert latest_invoice(world, sub_id).status is InvoiceStatus.PAID


def test_a_checkout_retried_after_a_lost_charge_answer_charges_once(world: World) -> None:
    world.gateway.will("pm_card_visa", Outcome("lost_success"), Outcome("succeed"))
    _, price = world.catalog()
    result = world.checkout(price)
    with pytest.raises(PaymentProviderError):
        complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)  # storefront retries
    assert world.store.get_invoice(result.invoice.id).status is InvoiceStatus.PAID  # type: ignore[union-attr]
    assert len(world.gateway.succeeded_intents) == 1  # one successful PaymentIntent for one invoice


# =====================================================================================================
# incomplete expiry
# =====================================================================================================
def test_an_unpaid_incomplete_subscription_expires_after_23_hours(world: World) -> None:
    _, price = world.catalog()
    result = world.checkout(price)
    sub_id = result.subscription.id
    world.publisher.clear()

    world.clock.advance(hours=23, seconds=-1)
    assert process_due(world.billing, sub_id) == "nothing"
    world.clock.advance(seconds=1)
    assert world.store.all_due(world.clock.now()) == [sub_id]
    assert process_due(world.billing, sub_id) == "expired"

    sub = sub_of(world, sub_id)
    assert sub.status is Status.INCOMPLETE_EXPIRED
    assert sub.ended_at == START + timedelta(hours=23)
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert invoice.status is InvoiceStatus.VOID
    assert invoice.voided_at == START + timedelta(hours=23)
    assert world.publisher.types() == ["customer.subscription.updated", "invoice.voided"]
    assert world.gateway.charge_calls == []

    # terminal: never due again, a redelivery does nothing
    assert world.store.all_due(world.clock.now() + timedelta(days=400)) == []
    assert process_due(world.billing, sub_id) == "nothing"
    # a payment that arrives for the voided invoice does not resurrect anything
    apply_charge_result(world.billing, invoice.id, ChargeResult(ChargeStatus.SUCCEEDED, "pi_too_late"))
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.VOID
    assert sub_of(world, sub_id).status is Status.INCOMPLETE_EXPIRED
    assert not world.publisher.of_type("invoice.paid")


# =====================================================================================================
# trials
# =====================================================================================================
def test_trial_checkout_has_no_invoice_and_the_trial_end_invoices_the_first_period(world: World) -> None:
    _, price = world.catalog(unit_amount=1200)
    result = world.checkout(price, trial_days=14)
    sub_id = result.subscription.id
    trial_end = START + timedelta(days=14)

    assert result.invoice is None
    sub = sub_of(world, sub_id)
    assert sub.status is Status.TRIALING and sub.trial_end == trial_end
    assert sub.latest_invoice is None
    assert world.store.invoices == {}
    assert "invoice.finalized" not in world.publisher.types()

    done = complete_checkout(world.billing, sub_id, result.setup_intent.id)  # card saved, nothing charged
    assert done.charge is None
    assert world.gateway.charge_calls == []
    assert world.store.get_customer(result.customer.id).default_payment_method is not None

    world.clock.set(trial_end - timedelta(days=3, seconds=1))
    assert process_due(world.billing, sub_id) == "nothing"
    world.clock.set(trial_end - timedelta(seconds=1))  # three days before: the notice, once
    assert process_due(world.billing, sub_id) == "trial_will_end"
    assert process_due(world.billing, sub_id) == "nothing"
    assert world.publisher.types().count("customer.subscription.trial_will_end") == 1
    world.clock.set(trial_end + timedelta(minutes=3))
    assert process_due(world.billing, sub_id) == "paid"

    sub = sub_of(world, sub_id)
    assert sub.status is Status.ACTIVE
    assert sub.period == Period(trial_end, utc(2025, 3, 14, 10))
    invoice = latest_invoice(world, sub_id)
    assert invoice.number == "KASSA-0001"  # the first invoice of the account
    assert (invoice.period_start, invoice.period_end) == (trial_end, utc(2025, 3, 14, 10))
    assert invoice.status is InvoiceStatus.PAID and invoice.amount_paid == 1200
    assert len(world.gateway.charge_calls) == 1
    assert process_due(world.billing, sub_id) == "nothing"


def test_a_trial_ending_without_a_card_invoices_and_goes_past_due(world: World) -> None:
    # kassa's current behaviour equals Stripe's "create_invoice" end behaviour
    _, price = world.catalog()
    sub_id = world.checkout(price, trial_days=7).subscription.id
    world.clock.advance(days=7)
    assert process_due(world.billing, sub_id) == "open"
    invoice = latest_invoice(world, sub_id)
    assert invoice.last_payment_error is not None and invoice.last_payment_error.code == "no_payment_method"
    assert sub_of(world, sub_id).status is Status.PAST_DUE
    assert world.gateway.charge_calls == []


# =====================================================================================================
# Stripe events (payloads built on stripe/openapi fixtures)
# =====================================================================================================
def test_payment_intent_succeeded_marks_the_invoice_paid_once(world: World) -> None:
    _, price = world.catalog()
    result = world.checkout(price)
    invoice = result.invoice
    assert invoice is not None
    world.publisher.clear()
    event = payment_intent_event("payment_intent.succeeded", invoice)

    assert apply_stripe_event(world.billing, event) == "applied"
    stored = world.store.get_invoice(invoice.id)
    assert stored.status is InvoiceStatus.PAID
    assert stored.payment_intent == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert sub_of(world, result.subscription.id).status is Status.ACTIVE

    assert apply_stripe_event(world.billing, event) == "applied"  # redelivered
    assert len(world.publisher.of_type("invoice.paid")) == 1
    assert len(world.publisher.of_type("customer.subscription.updated")) == 1
    assert world.gateway.charge_calls == []


def test_payment_intent_payment_failed_records_the_error_once(world: World) -> None:
    _, price = world.catalog()
    result = world.checkout(price)
    invoice = result.invoice
    assert invoice is not None
    world.publisher.clear()
    event = payment_intent_event(
        "payment_intent.payment_failed", invoice, status="requires_payment_method", error=DECLINE
    )
    assert apply_stripe_event(world.billing, event) == "applied"
    stored = world.store.get_invoice(invoice.id)
    assert stored.status is InvoiceStatus.OPEN
    assert stored.last_payment_error is not None
    assert stored.last_payment_error.decline_code == "insufficient_funds"
    assert stored.last_payment_error.message == "Your card has insufficient funds."
    apply_stripe_event(world.billing, event)
    assert len(world.publisher.of_type("invoice.payment_failed")) == 1


def test_a_declined_charge_and_its_webhook_are_one_failure(world: World) -> None:
    world.gateway.setup_payment_method = "pm_card_chargeDeclined"
    world.gateway.will_decline("pm_card_chargeDeclined")
    _, price = world.catalog()
    result = world.checkout(price)
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)  # synchronous answer
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert invoice.payment_intent is not None
    webhook = payment_intent_event(
        "payment_intent.payment_failed",
        invoice,
        pi_id=invoice.payment_intent,
        status="requires_payment_method",
        error=DECLINE,
        attempt=1,
    )
    assert apply_stripe_event(world.billing, webhook) == "applied"  # Stripe's webhook for the same attempt
    assert len(world.publisher.of_type("invoice.payment_failed")) == 1
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN


def test_a_payment_failed_event_claiming_success_is_ignored(world: World) -> None:
    _, price = world.catalog()
    invoice = world.checkout(price).invoice
    assert invoice is not None
    event = payment_intent_event("payment_intent.payment_failed", invoice, status="succeeded")
    assert apply_stripe_event(world.billing, event) == "ignored:inconsistent"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN


def test_events_kassa_does_not_own_are_ignored_without_crashing(world: World) -> None:
    _, price = world.catalog()
    invoice = world.checkout(price).invoice
    assert invoice is not None
    unknown = payment_intent_event("payment_intent.succeeded", invoice)
    unknown["data"]["object"]["metadata"]["kassa_invoice"] = "in_doesnotexist"
    assert apply_stripe_event(world.billing, unknown) == "ignored:unknown invoice in_doesnotexist"

    foreign = payment_intent_event("payment_intent.succeeded", invoice)
    foreign["data"]["object"]["metadata"] = {}
    assert apply_stripe_event(world.billing, foreign) == "ignored:not a kassa payment"

    assert apply_stripe_event(world.billing, stripe_object("event")) == "ignored:unhandled type"  # plan.created
    assert apply_stripe_event(world.billing, {}) == "ignored:unhandled type"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN


def test_setup_intent_succeeded_completes_the_checkout(world: World) -> None:
    _, price = world.catalog()
    result = world.checkout(price)
    intent = stripe_object(
        "setup_intent",
        id=result.setup_intent.id,
        status="succeeded",
        payment_method="pm_card_visa",
        customer=result.customer.stripe_customer_id,
        metadata={"kassa_subscription": result.subscription.id, "kassa_customer": result.customer.id},
    )
    event = stripe_event("setup_intent.succeeded", intent, event_id="evt_seti")
    assert apply_stripe_event(world.billing, event) == "applied"
    assert sub_of(world, result.subscription.id).status is Status.ACTIVE
    assert apply_stripe_event(world.billing, event) == "applied"
    assert len(world.gateway.charge_calls) == 1

    intent["metadata"] = {"kassa_subscription": "sub_gone"}
    assert apply_stripe_event(world.billing, event) == "ignored:unknown subscription sub_gone"
    intent["metadata"] = {}
    assert apply_stripe_event(world.billing, event) == "ignored:not a kassa setup"


def test_a_late_failure_of_an_older_attempt_changes_nothing(world: World) -> None:
    world.gateway.setup_payment_method = "pm_card_chargeDeclined"
    world.gateway.will_decline("pm_card_chargeDeclined")
    _, price = world.catalog()
    result = world.checkout(price)
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)  # attempt 1 declined
    retry = world.gateway.create_setup_intent(customer="x", metadata={"kassa_subscription": result.subscription.id})
    world.gateway.will_decline("pm_card_chargeDeclined", decline_code="generic_decline")
    complete_checkout(world.billing, result.subscription.id, retry.id)  # attempt 2 declined too
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    first_pi = world.gateway.charge_calls[0].result.payment_intent  # type: ignore[union-attr]
    assert invoice.attempt_count == 2 and invoice.payment_intent != first_pi
    before = len(world.publisher.of_type("invoice.payment_failed"))

    late = payment_intent_event(
        "payment_intent.payment_failed", invoice, pi_id=first_pi or "", status="requires_payment_method", error=DECLINE
    )
    apply_stripe_event(world.billing, late)  # Stripe's webhook for attempt 1 arrives last
    assert world.store.get_invoice(invoice.id).payment_intent == invoice.payment_intent
    assert len(world.publisher.of_type("invoice.payment_failed")) == before


@hsettings(max_examples=40)
@given(
    st.lists(st.sampled_from(["ok", "fail_a", "fail_b", "ok_dup"]), min_size=1, max_size=8),
)
def test_any_order_of_payment_events_ends_paid_once_if_any_succeeded(deliveries: list[str]) -> None:
    """Webhooks are at-least-once and unordered: the outcome depends only on the set delivered."""
    world = make_world()
    _, price = world.catalog()
    result = world.checkout(price)
    invoice = result.invoice
    assert invoice is not None
    events = {
        "ok": payment_intent_event("payment_intent.succeeded", invoice, pi_id="pi_ok", event_id="evt_ok"),
        "ok_dup": payment_intent_event("payment_intent.succeeded", invoice, pi_id="pi_ok", event_id="evt_ok"),
        "fail_a": payment_intent_event(
            "payment_intent.payment_failed", invoice, pi_id="pi_a", status="requires_payment_method", error=DECLINE
        ),
        "fail_b": payment_intent_event(
            "payment_intent.payment_failed", invoice, pi_id="pi_b", status="requires_payment_method", error=DECLINE
        ),
    }
    for name in deliveries:
        assert apply_stripe_event(world.billing, events[name]) == "applied"
    stored = world.store.get_invoice(invoice.id)
    sub = sub_of(world, result.subscription.id)
    if {"ok", "ok_dup"} & set(deliveries):
        assert stored.status is InvoiceStatus.PAID
        assert stored.payment_intent == "pi_ok"
        assert stored.last_payment_error is None
        assert sub.status is Status.ACTIVE
        assert len(world.publisher.of_type("invoice.paid")) == 1
    else:
        assert stored.status is InvoiceStatus.OPEN
        assert stored.last_payment_error is not None
        assert sub.status is Status.INCOMPLETE
        assert not world.publisher.of_type("invoice.paid")
    assert world.gateway.charge_calls == []


# =====================================================================================================
# whole-system invariants under random schedules
# =====================================================================================================
OPS = st.tuples(
    st.sampled_from(["checkout", "trial", "pay", "pay", "decline_next", "advance", "advance", "advance"]),
    st.integers(min_value=1, max_value=60),
)


@hsettings(max_examples=60)
@given(st.lists(OPS, min_size=1, max_size=20))
def test_numbers_stay_gapless_and_each_period_is_invoiced_and_paid_once(ops: list[tuple[str, int]]) -> None:
    world = make_world()
    _, price = world.catalog(unit_amount=700)
    pending: list[tuple[str, str]] = []  # (subscription, setup intent) awaiting completion
    emails = iter(f"c{i}@example.com" for i in range(100))
    # always at least one paying subscription and one renewal, whatever else happens in between
    for op, n in [("checkout", 1), ("pay", 1), *ops, ("advance", 45)]:
        if op in ("checkout", "trial"):
            result = world.checkout(price, email=next(emails), trial_days=n if op == "trial" else None)
            pending.append((result.subscription.id, result.setup_intent.id))
        elif op == "pay" and pending:
            sub_id, seti = pending.pop(0)
            if sub_of(world, sub_id).status in (Status.INCOMPLETE, Status.TRIALING):
                complete_checkout(world.billing, sub_id, seti)
        elif op == "decline_next":
            world.gateway.will(
                "pm_card_visa", Outcome("decline", "card_declined", "generic_decline"), Outcome("succeed")
            )
        elif op == "advance":
            world.clock.advance(days=n)
            for _ in range(20):  # the sweep + worker, until nothing is due
                due = world.store.all_due(world.clock.now())
                if not due:
                    break
                for sub_id in due:
                    process_due(world.billing, sub_id)
                    process_due(world.billing, sub_id)  # every message is delivered twice

    invoices = list(world.store.invoices.values())
    event(f"invoices: {min(len(invoices), 10)}{'+' if len(invoices) >= 10 else ''}")
    event(f"paid: {any(i.status is InvoiceStatus.PAID and i.billing_reason == 'subscription_cycle' for i in invoices)}")
    numbers = sorted(int(i.number.split("-")[1]) for i in invoices if i.number)
    assert numbers == list(range(1, len(numbers) + 1))  # gapless, no duplicates
    # every invoice is numbered but a checkout's first one never paid (open, or voided as it expired)
    unnumbered = [i for i in invoices if i.number is None]
    assert all(i.billing_reason == "subscription_create" and i.status in ("open", "void") for i in unnumbered)
    periods = [(i.subscription, i.period_start) for i in invoices]
    assert len(periods) == len(set(periods))  # one invoice per subscription period
    for inv in invoices:
        succeeded = [
            c for c in world.gateway.charges_for(inv.id) if c.result and c.result.status is ChargeStatus.SUCCEEDED
        ]
        assert len(succeeded) <= 1  # never charged twice
        if inv.status is InvoiceStatus.PAID:
            assert inv.amount_paid == inv.amount_due == 700
        attempts = [c.attempt for c in world.gateway.charges_for(inv.id)]
        assert attempts == sorted(set(attempts))  # one charge per attempt
    for sub in world.store.subscriptions.values():
        subs_invoices = sorted((i for i in invoices if i.subscription == sub.id), key=lambda i: i.period_start)
        assert all(a.period_end == b.period_start for a, b in zip(subs_invoices, subs_invoices[1:], strict=False))
        if sub.status is Status.ACTIVE and sub.latest_invoice:
            assert world.store.get_invoice(sub.latest_invoice).status in (InvoiceStatus.PAID, InvoiceStatus.OPEN)


# =====================================================================================================
# webhook ingestion and processing (services.webhooks)
# =====================================================================================================
SECRET = "whsec_test_secret"
SIGNED_AT = 1_738_317_600


def sign(payload: str, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), f"{SIGNED_AT}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={SIGNED_AT},v1={mac}"


def fake_verify(payload: str, header: str | None, secret: str) -> dict[str, Any]:
    """Stripe's scheme (HMAC-SHA256 over 't.payload'), without the clock-dependent tolerance check."""
    if not header:
        raise InvalidInput("no Stripe-Signature header", param="Stripe-Signature")
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    expected = hmac.new(secret.encode(), f"{fields.get('t')}.{payload}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(fields.get("v1", ""), expected):
        raise InvalidInput("invalid Stripe-Signature: no signatures found matching", param="Stripe-Signature")
    return json.loads(payload)


def api_event(payload: str, signature: str | None, header_name: str = "Stripe-Signature") -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} | ({header_name: signature} if signature is not None else {})
    return {"headers": headers, "body": payload, "isBase64Encoded": False}


def do_ingest(world: World, queue: ListQueue, event: dict[str, Any]) -> dict[str, Any]:
    payload, signature = delivery(event)
    outcome = ingest(
        payload, signature, store=world.store, queue=queue, secret=SECRET, clock=world.clock, verify=fake_verify
    )
    return response(outcome)


@pytest.fixture
def paid_event(world: World) -> tuple[str, Invoice, str]:
    _, price = world.catalog()
    result = world.checkout(price)
    assert result.invoice is not None
    payload = json.dumps(payment_intent_event("payment_intent.succeeded", result.invoice, event_id="evt_paid"))
    return payload, result.invoice, result.subscription.id


FORGERIES: dict[str, Any] = {
    "missing": lambda payload: None,
    "empty": lambda payload: "",
    "garbage": lambda payload: "t=1,v1=deadbeef",
    "signed-other-payload": lambda payload: sign(payload.replace("succeeded", "failed")),
    "signed-with-other-secret": lambda payload: sign(payload, secret="whsec_other"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_or_missing_signature_gets_400_and_nothing_is_recorded(
    world: World, paid_event: tuple[str, Invoice, str], forgery: str
) -> None:
    payload, invoice, _ = paid_event
    signature = FORGERIES[forgery](payload)
    queue = ListQueue()
    writes = world.store.writes
    response = do_ingest(world, queue, api_event(payload, signature))
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["code"] == "signature_invalid" and error["param"] == "Stripe-Signature"
    assert world.store.webhooks == {} and world.store.writes == writes
    assert queue.messages == []
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN


def test_a_signed_event_is_recorded_once_and_enqueued_by_id(world: World, paid_event: tuple[str, Invoice, str]) -> None:
    payload, invoice, sub_id = paid_event
    queue = ListQueue()
    response = do_ingest(world, queue, api_event(payload, sign(payload), header_name="stripe-signature"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"received": True, "duplicate": False}
    record = world.store.get_webhook("evt_paid")
    assert record is not None
    assert (record.type, record.status, record.payload) == ("payment_intent.succeeded", "received", payload)
    assert record.received_at == START
    assert queue.messages == [{"event_id": "evt_paid"}]
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN  # applied later, by the processor

    # Stripe retries before it was processed: recorded once, enqueued again (processing is idempotent)
    again = do_ingest(world, queue, api_event(payload, sign(payload)))
    assert again["statusCode"] == 200 and json.loads(again["body"])["duplicate"] is True
    assert len(world.store.webhooks) == 1
    assert queue.messages == [{"event_id": "evt_paid"}] * 2

    assert process_recorded_event(queue.messages[0], world.billing) == "applied"
    assert process_recorded_event(queue.messages[1], world.billing) == "duplicate:processed"
    assert world.store.get_webhook("evt_paid").status == "processed"  # type: ignore[union-attr]
    assert world.store.get_webhook("evt_paid").note == "applied"  # type: ignore[union-attr]
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID
    assert sub_of(world, sub_id).status is Status.ACTIVE
    assert len(world.publisher.of_type("invoice.paid")) == 1

    # a duplicate after processing: 200, not enqueued again
    late = do_ingest(world, queue, api_event(payload, sign(payload)))
    assert late["statusCode"] == 200
    assert json.loads(late["body"]) == {"received": True, "duplicate": True}
    assert len(queue.messages) == 2


def test_a_base64_body_is_verified_on_its_decoded_text(world: World, paid_event: tuple[str, Invoice, str]) -> None:
    payload, _, _ = paid_event
    queue = ListQueue()
    event = api_event(base64.b64encode(payload.encode()).decode(), sign(payload))
    event["isBase64Encoded"] = True
    assert do_ingest(world, queue, event)["statusCode"] == 200
    assert world.store.get_webhook("evt_paid").payload == payload  # type: ignore[union-attr]


def test_a_signed_body_without_id_or_type_is_refused(world: World) -> None:
    queue = ListQueue()
    payload = json.dumps({"object": "event", "data": {}})
    response = do_ingest(world, queue, api_event(payload, sign(payload)))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "parameter_missing"
    assert world.store.webhooks == {} and queue.messages == []


def _record(world: World, event_id: str, payload: str, event_type: str = "payment_intent.succeeded") -> None:
    world.store.record_webhook(WebhookRecord(event_id, event_type, "received", payload, START))


def test_process_recorded_event_marks_ignored_events(world: World) -> None:
    _record(world, "evt_plan", json.dumps(stripe_object("event")), "plan.created")
    assert process_recorded_event({"event_id": "evt_plan"}, world.billing) == "ignored:unhandled type"
    record = world.store.get_webhook("evt_plan")
    assert record is not None and (record.status, record.note) == ("ignored", "ignored:unhandled type")


def test_process_recorded_event_rejects_a_malformed_payload_and_keeps_it(world: World) -> None:
    _record(world, "evt_bad", "{not json")
    outcome = process_recorded_event({"event_id": "evt_bad"}, world.billing)
    assert outcome.startswith("rejected:JSONDecodeError")
    record = world.store.get_webhook("evt_bad")
    assert record is not None and record.status == "rejected"
    assert record.payload == "{not json"  # kept for inspection, never dropped
    assert record.note is not None and "JSONDecodeError" in record.note


def test_process_recorded_event_rejects_an_event_missing_a_field_it_needs(world: World) -> None:
    event = stripe_event("setup_intent.succeeded", {"metadata": {"kassa_subscription": "sub_x"}})  # no "id"
    _record(world, "evt_noid", json.dumps(event), "setup_intent.succeeded")
    assert process_recorded_event({"event_id": "evt_noid"}, world.billing).startswith("rejected:KeyError")
    assert world.store.get_webhook("evt_noid").status == "rejected"  # type: ignore[union-attr]


def test_process_recorded_event_without_a_record(world: World) -> None:
    assert process_recorded_event({"event_id": "evt_never"}, world.billing) == "ignored:unknown event"
    assert process_recorded_event({}, world.billing) == "rejected:message without event_id"
    assert process_recorded_event({"event_id": 42}, world.billing) == "rejected:message without event_id"
    assert world.store.webhooks == {}


def test_a_retryable_failure_leaves_the_record_received_for_the_retry(world: World) -> None:
    _, price = world.catalog()
    result = world.checkout(price)
    intent = stripe_object(
        "setup_intent",
        id=result.setup_intent.id,
        status="succeeded",
        payment_method="pm_card_visa",
        metadata={"kassa_subscription": result.subscription.id},
    )
    _record(world, "evt_seti", json.dumps(stripe_event("setup_intent.succeeded", intent)), "setup_intent.succeeded")
    world.gateway.will("pm_card_visa", Outcome("error"), Outcome("succeed"))
    with pytest.raises(PaymentProviderError):
        process_recorded_event({"event_id": "evt_seti"}, world.billing)
    assert world.store.get_webhook("evt_seti").status == "received"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        "[]",
        "null",
        json.dumps({"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": "pi_123"}}),
        json.dumps({"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {"metadata": "x"}}}),
    ],
    ids=["array", "null", "object-is-string", "metadata-is-string"],
)
def test_process_recorded_event_rejects_a_payload_of_the_wrong_shape(world: World, payload: str) -> None:
    _record(world, "evt_shape", payload)
    outcome = process_recorded_event({"event_id": "evt_shape"}, world.billing)
    assert outcome.startswith("rejected:")
    assert world.store.get_webhook("evt_shape").status == "rejected"  # type: ignore[union-attr]


def test_fake_gateway_replays_an_idempotency_key() -> None:
    gateway = FakeGateway()
    kwargs: dict[str, Any] = {
        "customer": "cus_1",
        "payment_method": "pm_card_visa",
        "amount": Money(100, "EUR"),
        "invoice_id": "in_1",
        "description": "x",
    }
    first = gateway.charge(attempt=1, **kwargs)
    assert gateway.charge(attempt=1, **kwargs) == first
    assert gateway.charge(attempt=2, **kwargs) != first
    assert len(gateway.succeeded_intents) == 2


def test_the_webhook_echo_of_a_charge_already_applied_is_recorded_processed_and_not_enqueued(world: World) -> None:
    _, price = world.catalog()
    result = world.active_subscription(price)  # the synchronous answer already paid the first invoice
    invoice = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert invoice.status is InvoiceStatus.PAID and invoice.payment_intent
    payload = json.dumps(
        payment_intent_event("payment_intent.succeeded", invoice, pi_id=invoice.payment_intent, event_id="evt_echo")
    )
    queue = ListQueue()
    writes = world.store.writes
    response = do_ingest(world, queue, api_event(payload, sign(payload)))
    assert response["statusCode"] == 200
    record = world.store.get_webhook("evt_echo")
    assert record is not None and record.status == "processed" and "already paid" in (record.note or "")
    assert queue.messages == []  # no processor run, no second write to mark it
    assert world.store.writes == writes + 1
    # the same PaymentIntent for an invoice that is NOT paid yet takes the normal path
    other = world.checkout(price, email="late@example.com").invoice
    assert other is not None
    late = json.dumps(payment_intent_event("payment_intent.succeeded", other, pi_id="pi_late", event_id="evt_late"))
    do_ingest(world, queue, api_event(late, sign(late)))
    assert queue.messages == [{"event_id": "evt_late"}]
