"""3-D Secure (Stripe's SCA semantics): the checkout's first charge is on-session and a card that asks
for authentication leaves its PaymentIntent open for Stripe.js; renewals and dunning stay off-session;
the confirmation is applied once, whether the storefront's call or the webhook comes first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import World

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.subscription import Status
from kassa.services.checkout import complete_checkout, confirm_checkout_payment
from kassa.services.collection import confirm_payment, open_payment_intent, update_card
from kassa.services.ports import ChargeStatus
from kassa.services.renewals import process_due
from kassa.services.stripe_events import apply_stripe_event

CARD = "pm_card_visa"  # FakeGateway's SetupIntents are confirmed with it


def _three_ds_checkout(world: World):
    _, price = world.catalog()
    started = world.checkout(price)
    world.gateway.will_require_action(CARD)
    done = complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)
    return started, done


def test_the_checkout_charges_on_session_and_leaves_the_intent_for_stripe_js(world: World) -> None:
    started, done = _three_ds_checkout(world)
    [call] = world.gateway.charge_calls
    assert call.off_session is False
    assert done.charge is not None and done.charge.status is ChargeStatus.REQUIRES_ACTION
    assert done.charge.client_secret == f"{done.charge.payment_intent}_secret_x"
    invoice = world.store.get_invoice(started.invoice.id)  # type: ignore[union-attr]
    assert (invoice.status, invoice.attempt_outcome) == (InvoiceStatus.OPEN, "requires_action")
    assert invoice.payment_intent == done.charge.payment_intent
    assert world.publisher.of_type("invoice.payment_action_required")
    intent = open_payment_intent(world.billing, invoice)
    assert intent is not None and intent.status == "requires_action"
    assert world.store.get_subscription(started.subscription.id).status is Status.INCOMPLETE


def test_renewals_stay_off_session(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will_require_action(CARD)
    world.clock.set(datetime(2025, 3, 1, tzinfo=UTC))
    assert process_due(world.billing, sub_id) == "open"
    first, renewal = world.gateway.charge_calls
    assert (first.off_session, renewal.off_session) == (False, True)
    invoice = world.store.get_invoice(renewal.invoice_id)
    assert invoice.attempt_outcome == "requires_action"
    # off-session, Stripe failed the confirmation (authentication_required); the same intent is
    # confirmed on-session later with its card
    intent = open_payment_intent(world.billing, invoice)
    assert intent is not None and intent.status == "requires_payment_method" and intent.payment_method == CARD


@pytest.mark.parametrize("webhook_first", [False, True], ids=["page-first", "webhook-first"])
def test_the_confirmed_intent_pays_once_whichever_report_comes_first(world: World, webhook_first: bool) -> None:
    started, done = _three_ds_checkout(world)
    assert done.charge is not None and done.charge.payment_intent is not None
    pi = done.charge.payment_intent
    world.gateway.authenticate(pi)  # Stripe.js confirmCardPayment in the browser
    world.publisher.clear()
    sub_id = started.subscription.id
    if webhook_first:
        assert apply_stripe_event(world.billing, world.gateway.intent_event(pi)) == "applied"
    result = confirm_checkout_payment(world.billing, sub_id, pi)
    again = confirm_checkout_payment(world.billing, sub_id, pi)
    if not webhook_first:
        assert apply_stripe_event(world.billing, world.gateway.intent_event(pi)) == "applied"
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.PAID
    assert again.invoice == world.store.get_invoice(result.invoice.id)
    assert len(world.publisher.of_type("invoice.paid")) == 1
    assert world.store.get_subscription(sub_id).status is Status.ACTIVE
    assert len(world.gateway.charge_calls) == 1  # confirming charges nothing anew
    assert open_payment_intent(world.billing, world.store.get_invoice(result.invoice.id)) is None


def test_complete_called_again_charges_nothing_and_the_intent_is_still_open(world: World) -> None:
    started, done = _three_ds_checkout(world)
    again = complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)
    assert again.charge is None and len(world.gateway.charge_calls) == 1
    intent = open_payment_intent(world.billing, again.invoice)
    assert intent is not None and done.charge is not None and intent.id == done.charge.payment_intent


def test_a_failed_authentication_is_recorded_and_nothing_is_open_any_more(world: World) -> None:
    started, done = _three_ds_checkout(world)
    assert done.charge is not None and done.charge.payment_intent is not None
    world.gateway.authenticate(done.charge.payment_intent, success=False)
    result = confirm_checkout_payment(world.billing, started.subscription.id, done.charge.payment_intent)
    invoice = result.invoice
    assert invoice is not None and invoice.status is InvoiceStatus.OPEN
    assert invoice.attempt_outcome == "declined"
    assert invoice.last_payment_error is not None
    assert invoice.last_payment_error.code == "payment_intent_authentication_failure"
    assert open_payment_intent(world.billing, invoice) is None  # the card page offers a new card instead


def test_an_intent_of_another_invoice_is_refused(world: World) -> None:
    started, done = _three_ds_checkout(world)
    assert done.charge is not None and done.charge.payment_intent is not None
    with pytest.raises(InvalidInput) as refused:
        confirm_payment(world.billing, "in_someone_else", done.charge.payment_intent)
    assert refused.value.param == "payment_intent"


def test_an_unconfirmed_intent_changes_nothing(world: World) -> None:
    started, done = _three_ds_checkout(world)
    assert done.charge is not None and done.charge.payment_intent is not None
    before = world.store.get_invoice(started.invoice.id)  # type: ignore[union-attr]
    result = confirm_checkout_payment(world.billing, started.subscription.id, done.charge.payment_intent)
    assert result.invoice == before


def test_the_card_page_retries_on_session_and_the_webhook_off_session(world: World) -> None:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will_require_action(CARD)
    world.clock.set(datetime(2025, 3, 1, tzinfo=UTC))
    process_due(world.billing, sub_id)
    customer = world.store.get_subscription(sub_id).customer
    world.gateway.will_succeed(CARD)
    stripe_customer = world.store.get_customer(customer).stripe_customer_id
    assert stripe_customer is not None
    page = world.gateway.create_setup_intent(customer=stripe_customer, metadata={"kassa_customer": customer})
    _, results = update_card(world.billing, customer, page.id, off_session=False)
    assert world.gateway.charge_calls[-1].off_session is False
    assert [r.invoice.status for r in results if r.invoice] == [InvoiceStatus.PAID]
