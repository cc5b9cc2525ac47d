"""An invoice charged by a bank debit (SEPA, ACH) on the in-memory world: ``processing`` first, paid
when ``payment_intent.succeeded`` arrives, or failed with the bank's return reason (soft: retried on
the schedule; hard: no retry, a new payment method asked for); duplicate and reordered events; never a
second charge while one is processing; access during processing by setting; the mandate kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import Outcome, World, make_world

from kassa.domain.customer import Address
from kassa.domain.dunning import DunningAction, InvoiceDunningState, RetrySchedule, dunning_step
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.payment_methods import PaymentMethodKind
from kassa.domain.settings import BankDebitSettings, MerchantSettings
from kassa.domain.subscription import Status
from kassa.services.checkout import CheckoutResult, complete_checkout, start_checkout
from kassa.services.collection import collect, update_card
from kassa.services.ports import ChargeStatus, MandateAcceptance
from kassa.services.renewals import process_due
from kassa.services.stripe_events import apply_stripe_event

SEPA_PM = "pm_sepa_nl0001"
BROWSER = MandateAcceptance(ip_address="203.0.113.7", user_agent="Mozilla/5.0 (X11; Linux x86_64)")


def _sepa_world(**settings: Any) -> World:
    world = make_world()
    world.store.settings = MerchantSettings(payment_method_types=("card", "sepa_debit"), **settings)
    world.gateway.setup_payment_method = SEPA_PM
    world.gateway.will(SEPA_PM, Outcome("processing"))
    return world


def _checkout(world: World, **kwargs: Any) -> tuple[CheckoutResult, Invoice]:
    _, price = world.catalog(1500, "eur")
    started = start_checkout(
        world.billing,
        price_id=price.id,
        email="daan@example.nl",
        name="Daan",
        address=Address(country="NL"),
        locale="nl",
        **kwargs,
    )
    done = complete_checkout(world.billing, started.subscription.id, started.setup_intent.id, BROWSER)
    assert done.invoice is not None
    return started, done.invoice


def _event(world: World, pi: str) -> dict[str, Any]:
    return world.gateway.intent_event(pi)


def test_the_checkout_offers_sepa_and_the_setup_intent_asks_for_it() -> None:
    world = _sepa_world()
    started, _ = _checkout(world)
    assert started.payment_method_types == ("card", "sepa_debit")
    create = next(args for name, args in world.gateway.calls if name == "create_setup_intent")
    assert create["payment_method_types"] == ["card", "sepa_debit"]


def test_a_price_narrowing_to_card_only_keeps_sepa_out() -> None:
    from kassa.domain.catalog import Recurring
    from kassa.services.catalog import create_price, create_product

    world = _sepa_world()
    product = create_product(world.billing, "Card only")
    price = create_price(
        world.billing, product.id, "eur", 900, Recurring(interval="month"), payment_method_types=["card"]
    )
    started = start_checkout(
        world.billing, price_id=price.id, email="x@example.nl", name=None, address=Address(country="NL")
    )
    assert started.payment_method_types == ("card",)
    usd = create_price(
        world.billing, product.id, "usd", 900, Recurring(interval="month"), payment_method_types=["sepa_debit"]
    )
    with pytest.raises(InvalidInput) as caught:
        start_checkout(world.billing, price_id=usd.id, email="y@example.nl", name=None, address=Address(country="NL"))
    assert caught.value.param == "price_id"
    assert world.store.find_customer_by_email("y@example.nl") is None  # refused before anything was written


def test_the_mandate_is_kept_with_the_customer() -> None:
    world = _sepa_world()
    started, _ = _checkout(world)
    account = world.store.get_customer(started.customer.id).default_payment_method
    assert account is not None and account.type is PaymentMethodKind.SEPA_DEBIT
    assert (account.last4, account.country, account.bank_code) == ("3000", "DE", "37040044")
    mandate = account.mandate
    assert mandate is not None and mandate.reference and mandate.stripe_mandate == f"mandate_{SEPA_PM}"
    assert mandate.accepted_at == world.clock.now()
    assert (mandate.ip_address, mandate.user_agent) == (BROWSER.ip_address, BROWSER.user_agent)
    attach = next(args for name, args in world.gateway.calls if name == "attach_payment_method")
    assert attach["mandate"] == f"mandate_{SEPA_PM}"


def test_the_invoice_is_processing_and_then_paid_once_on_payment_intent_succeeded() -> None:
    world = _sepa_world()
    started, invoice = _checkout(world)
    [call] = world.gateway.charge_calls
    assert call.payment_method_type == "sepa_debit"
    assert (invoice.status, invoice.attempt_outcome) == (InvoiceStatus.OPEN, "processing")
    assert invoice.next_dunning_at is None  # nothing to dun while the bank settles
    assert world.publisher.of_type("invoice.payment_processing")
    assert not world.publisher.of_type("invoice.paid")
    # access while processing: kept by default (Stripe's behaviour)
    assert world.store.get_subscription(started.subscription.id).status is Status.ACTIVE
    # days later the bank settles
    world.clock.advance(days=5)
    event = world.gateway.settle(invoice.payment_intent or "")
    assert apply_stripe_event(world.billing, event) == "applied"
    assert apply_stripe_event(world.billing, event) == "applied"  # redelivered
    paid = world.store.get_invoice(invoice.id)
    assert paid.status is InvoiceStatus.PAID and paid.number is not None
    assert len(world.publisher.of_type("invoice.paid")) == 1
    assert len(world.gateway.charge_calls) == 1


def test_processing_delivered_after_succeeded_changes_nothing() -> None:
    world = _sepa_world()
    _, invoice = _checkout(world)
    pi = invoice.payment_intent or ""
    processing = _event(world, pi)  # payment_intent.processing, delivered late
    processing["type"], processing["id"] = "payment_intent.processing", "evt_processing"
    assert apply_stripe_event(world.billing, world.gateway.settle(pi)) == "applied"
    assert apply_stripe_event(world.billing, processing) == "applied"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID


def test_nothing_is_charged_again_while_a_debit_is_processing() -> None:
    world = _sepa_world()
    started, invoice = _checkout(world)
    again = collect(world.billing, world.store.get_invoice(invoice.id), trigger="merchant")
    assert again.charge is None
    # a new payment method saved meanwhile does not charge the processing invoice either
    setup = world.gateway.create_setup_intent(customer=started.customer.stripe_customer_id or "", metadata={})
    world.gateway.confirm_setup_intent(setup.id, "pm_card_visa")
    update_card(world.billing, started.customer.id, setup.id)
    assert len(world.gateway.charge_calls) == 1
    assert world.store.get_invoice(invoice.id).attempt_outcome == "processing"


def _renewal(world: World, started: CheckoutResult) -> Invoice:
    first = world.store.get_invoice(started.subscription.latest_invoice or "")
    apply_stripe_event(world.billing, world.gateway.settle(first.payment_intent or ""))
    world.clock.set(started.subscription.current_period_end)
    process_due(world.billing, started.subscription.id)
    sub = world.store.get_subscription(started.subscription.id)
    return world.store.get_invoice(sub.latest_invoice or "")


def test_a_soft_return_reason_is_retried_on_the_schedule() -> None:
    world = _sepa_world(retry_schedule=RetrySchedule.days([3, 7]))
    started, _ = _checkout(world)
    renewal = _renewal(world, started)
    assert renewal.attempt_outcome == "processing"
    # the access was delivered for the new period; days later the bank returns the debit
    world.clock.advance(days=4)
    failed_event = world.gateway.settle(renewal.payment_intent or "", success=False, code="insufficient_funds")
    assert apply_stripe_event(world.billing, failed_event) == "applied"
    failed = world.store.get_invoice(renewal.id)
    assert failed.attempt_outcome == "declined" and failed.last_payment_error is not None
    assert failed.last_payment_error.decline_code == "insufficient_funds"
    assert world.store.get_subscription(started.subscription.id).status is Status.PAST_DUE
    state = InvoiceDunningState.of(failed, first_failure_at=failed.first_failed_at, has_payment_method=True)
    decision = dunning_step(state, RetrySchedule.days([3, 7]), world.clock.now())
    assert decision.action is DunningAction.RETRY and decision.at == world.clock.now() + timedelta(days=3)
    assert decision.email == "payment_failed"


@pytest.mark.parametrize("reason", ["account_closed", "debit_not_authorized", "AC04", "MD01"])
def test_a_hard_return_reason_asks_for_a_new_payment_method_without_retry(reason: str) -> None:
    world = _sepa_world()
    started, _ = _checkout(world)
    renewal = _renewal(world, started)
    apply_stripe_event(world.billing, world.gateway.settle(renewal.payment_intent or "", success=False, code=reason))
    failed = world.store.get_invoice(renewal.id)
    state = InvoiceDunningState.of(failed, first_failure_at=failed.first_failed_at, has_payment_method=True)
    decision = dunning_step(state, RetrySchedule(), world.clock.now())
    assert decision.action is DunningAction.ASK_FOR_CARD and decision.at is None
    assert decision.reason == reason


def test_a_failed_delivered_twice_and_a_late_processing_have_one_effect() -> None:
    world = _sepa_world()
    started, _ = _checkout(world)
    renewal = _renewal(world, started)
    pi = renewal.payment_intent or ""
    processing = _event(world, pi)
    processing["type"], processing["id"] = "payment_intent.processing", "evt_late_processing"
    failed_event = world.gateway.settle(pi, success=False, code="insufficient_funds")
    world.publisher.clear()
    assert apply_stripe_event(world.billing, failed_event) == "applied"
    assert apply_stripe_event(world.billing, failed_event) == "applied"
    assert apply_stripe_event(world.billing, processing) == "applied"  # reordered: after the failure
    invoice = world.store.get_invoice(renewal.id)
    assert invoice.attempt_outcome == "declined" and invoice.next_dunning_at is not None
    assert len(world.publisher.of_type("invoice.payment_failed")) == 1


def test_a_late_succeeded_after_failed_pays_the_invoice() -> None:
    world = _sepa_world()
    started, _ = _checkout(world)
    renewal = _renewal(world, started)
    pi = renewal.payment_intent or ""
    succeeded = _event(world, pi)
    succeeded.update(type="payment_intent.succeeded", id="evt_late_success")
    succeeded["data"]["object"]["status"] = "succeeded"
    apply_stripe_event(world.billing, world.gateway.settle(pi, success=False, code="insufficient_funds"))
    assert world.store.get_subscription(started.subscription.id).status is Status.PAST_DUE
    assert apply_stripe_event(world.billing, succeeded) == "applied"
    paid = world.store.get_invoice(renewal.id)
    assert paid.status is InvoiceStatus.PAID and paid.next_dunning_at is None
    assert world.store.get_subscription(started.subscription.id).status is Status.ACTIVE


def test_a_failure_after_paid_changes_nothing() -> None:
    world = _sepa_world()
    _, invoice = _checkout(world)
    pi = invoice.payment_intent or ""
    failed = _event(world, pi)
    failed.update(type="payment_intent.payment_failed", id="evt_stale_failure")
    failed["data"]["object"].update(status="requires_payment_method", last_payment_error={"code": "account_closed"})
    apply_stripe_event(world.billing, world.gateway.settle(pi))
    assert apply_stripe_event(world.billing, failed) == "applied"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID


def test_suspend_while_processing_keeps_the_checkout_incomplete_and_unexpired() -> None:
    world = _sepa_world(bank_debits=BankDebitSettings(access_while_processing="suspend"))
    started, invoice = _checkout(world)
    sub = world.store.get_subscription(started.subscription.id)
    assert sub.status is Status.INCOMPLETE and sub.incomplete_expires_at is None
    world.clock.advance(days=2)  # past the 23 h of a card checkout: still waiting for the bank
    assert process_due(world.billing, sub.id) != "expired"
    apply_stripe_event(world.billing, world.gateway.settle(invoice.payment_intent or ""))
    assert world.store.get_subscription(sub.id).status is Status.ACTIVE


def test_suspend_while_processing_holds_a_renewals_access_until_it_settles() -> None:
    from kassa.services.cancellation import entitlements_of

    world = _sepa_world(bank_debits=BankDebitSettings(access_while_processing="suspend"))
    started, first = _checkout(world)
    apply_stripe_event(world.billing, world.gateway.settle(first.payment_intent or ""))
    world.clock.set(started.subscription.current_period_end)
    process_due(world.billing, started.subscription.id)
    sub = world.store.get_subscription(started.subscription.id)
    assert sub.settlement_hold and sub.entitlements_suspended
    assert not entitlements_of(world.billing, started.customer.id)
    renewal = world.store.get_invoice(sub.latest_invoice or "")
    apply_stripe_event(world.billing, world.gateway.settle(renewal.payment_intent or ""))
    sub = world.store.get_subscription(sub.id)
    assert not sub.settlement_hold and not sub.entitlements_suspended


def test_a_card_still_pays_at_once() -> None:
    world = make_world()
    _, price = world.catalog()
    result = world.active_subscription(price)
    invoice = world.store.get_invoice(result.subscription.latest_invoice or "")
    assert invoice.status is InvoiceStatus.PAID
    assert world.gateway.charge_calls[0].payment_method_type == "card"
    assert world.gateway.charge_calls[0].result is not None
    assert world.gateway.charge_calls[0].result.status is ChargeStatus.SUCCEEDED


# ----------------------------------------------------------------------------- SEPA pre-notification
def _sepa_desk(**emails: Any) -> Any:
    from test_dunning_service import Desk

    from kassa.domain.settings import EmailSettings

    desk = Desk(
        MerchantSettings(
            seller_name="Koffie Club BV",
            payment_method_types=("card", "sepa_debit"),
            bank_debits=BankDebitSettings(sepa_creditor_id="DE98ZZZ09999999999"),
            emails=EmailSettings(**emails),
        )
    )
    desk.w.gateway.will(SEPA_PM, Outcome("processing"))
    return desk


def _settled_subscription(desk: Any, locale: str = "nl") -> Any:
    started = desk.subscribe(pm=SEPA_PM, email="daan@example.nl", locale=locale)
    first = desk.invoice(started.subscription.id)
    apply_stripe_event(desk.w.billing, desk.w.gateway.settle(first.payment_intent or ""))
    desk.deliver()
    return started


def test_a_sepa_customer_is_pre_notified_14_days_before_each_debit_by_default() -> None:
    desk = _sepa_desk()  # upcoming_renewal_days is off: the pre-notification is on for SEPA customers
    started = _settled_subscription(desk, locale="en")
    renews_at = started.subscription.current_period_end
    sub = desk.w.store.get_subscription(started.subscription.id)
    assert sub.renewal_reminder_at == renews_at - timedelta(days=14)
    desk.run_until(renews_at - timedelta(days=14) - timedelta(hours=1))
    assert "upcoming_renewal" not in desk.templates()
    desk.run_until(renews_at - timedelta(days=13), twice=True)
    assert desk.templates().count("upcoming_renewal") == 1
    email = next(e for e, _ in desk.mailer.sent if e.template == "upcoming_renewal")
    reference = desk.w.store.get_customer(started.customer.id).default_payment_method.mandate.reference
    assert "Advance notice of a SEPA Direct Debit: we will debit €15.00 from your bank account ending in 3000" in (
        email.text
    )
    assert f"mandate reference {reference}" in email.text and "DE98ZZZ09999999999" in email.text
    assert "card ending" not in email.text
    # the receipt named the bank account and the mandate
    receipt = next(e for e, _ in desk.mailer.sent if e.template == "receipt")
    assert "bank account ending in 3000" in receipt.text and reference in receipt.text


def test_the_pre_notification_is_in_the_customers_language_and_follows_the_merchants_period() -> None:
    from kassa.emails.render import render

    email = render(
        "upcoming_renewal",
        "nl",
        {
            "plan_name": "Koffie",
            "amount": 1500,
            "currency": "EUR",
            "renews_at": datetime(2026, 4, 2, tzinfo=UTC),
            "card_brand": "sepa_debit",
            "card_last4": "3000",
            "pre_notification": True,
            "mandate_reference": "NXDSYREGC9PSMKWY",
            "creditor_id": "DE98ZZZ09999999999",
        },
    )
    assert "Vooraankondiging van een SEPA-incasso" in email.text and "bankrekening eindigend op 3000" in email.text
    assert "Incassant-ID: DE98ZZZ09999999999" in email.text
    desk = _sepa_desk(upcoming_renewal_days=20)
    started = _settled_subscription(desk)
    sub = desk.w.store.get_subscription(started.subscription.id)
    assert sub.renewal_reminder_at == sub.current_period_end - timedelta(days=20)  # the longer of the two


def test_no_pre_notification_when_switched_off_or_for_a_card() -> None:
    desk = _sepa_desk(pre_notification=False)
    started = _settled_subscription(desk)
    assert desk.w.store.get_subscription(started.subscription.id).renewal_reminder_at is None
    card_desk = _sepa_desk()
    card = card_desk.subscribe()
    assert card_desk.w.store.get_subscription(card.subscription.id).renewal_reminder_at is None


# ----------------------------------------------------------------------------- iDEAL / Bancontact → SEPA
@pytest.mark.parametrize("source", ["ideal", "bancontact"])
def test_a_first_payment_by_ideal_or_bancontact_leaves_a_sepa_mandate_for_the_renewals(source: str) -> None:
    from dataclasses import replace

    from kassa.domain.money import Money

    world = make_world()
    world.store.settings = MerchantSettings(payment_method_types=("card", "sepa_debit"))
    _, price = world.catalog(1500, "eur")
    started = start_checkout(
        world.billing, price_id=price.id, email="eva@example.be", name="Eva", address=Address(country="BE")
    )
    assert started.invoice is not None and started.customer.stripe_customer_id
    intent = world.gateway.create_redirect_payment(
        customer=started.customer.stripe_customer_id, source_type=source, amount=Money(1500, "EUR"),
        invoice_id=started.invoice.id, attempt=1, return_url="https://shop.example/back",
    )  # fmt: skip
    # the customer authorised it at their bank: Stripe sends payment_intent.succeeded
    succeeded = replace(intent, status="succeeded", result=replace(intent.result, status=ChargeStatus.SUCCEEDED))
    world.gateway.payment_intents[intent.id] = succeeded
    event = world.gateway.intent_event(intent.id)
    event["data"]["object"].update(payment_method_types=[source], setup_future_usage="off_session")
    assert apply_stripe_event(world.billing, event) == "applied"
    assert apply_stripe_event(world.billing, event) == "applied"  # redelivered: one effect
    assert world.store.get_invoice(started.invoice.id).status is InvoiceStatus.PAID
    account = world.store.get_customer(started.customer.id).default_payment_method
    assert account is not None and account.type is PaymentMethodKind.SEPA_DEBIT
    assert account.mandate is not None and account.mandate.generated_from == source
    assert [n for n, _ in world.gateway.calls].count("attach_payment_method") == 1
    assert world.store.get_subscription(started.subscription.id).status is Status.ACTIVE


# ----------------------------------------------------------------------------- iDEAL / Bancontact from checkout
def _redirect_world(**settings: Any) -> World:
    world = make_world()
    types = settings.pop("payment_method_types", ("card", "sepa_debit", "ideal", "bancontact"))
    world.store.settings = MerchantSettings(payment_method_types=types, **settings)
    return world


def _redirect_checkout(world: World, country: str, currency: str = "eur") -> CheckoutResult:
    _, price = world.catalog(1500, currency)
    return start_checkout(
        world.billing, price_id=price.id, email=f"eva@example.{country.lower()}", name="Eva",
        address=Address(country=country), locale="nl",
    )  # fmt: skip


def _bank_authorises(world: World, payment_intent: str, source: str) -> dict[str, Any]:
    """The customer authorised the payment at their bank: Stripe's payment_intent.succeeded."""
    from dataclasses import replace

    intent = world.gateway.payment_intents[payment_intent]
    world.gateway.payment_intents[payment_intent] = replace(
        intent, status="succeeded", result=replace(intent.result, status=ChargeStatus.SUCCEEDED)
    )
    event = world.gateway.intent_event(payment_intent)
    event["data"]["object"].update(payment_method_types=[source], setup_future_usage="off_session")
    return event


@pytest.mark.parametrize(("country", "offered"), [("NL", ["ideal"]), ("BE", ["bancontact"]), ("DE", [])])
def test_the_checkout_offers_ideal_to_dutch_and_bancontact_to_belgian_customers(
    country: str, offered: list[str]
) -> None:
    world = _redirect_world()
    started = _redirect_checkout(world, country)
    assert list(started.redirect_payment_method_types) == offered
    # the SetupIntent offers what can be saved: never a redirect method
    assert started.payment_method_types == ("card", "sepa_debit")
    create = next(args for name, args in world.gateway.calls if name == "create_setup_intent")
    assert create["payment_method_types"] == ["card", "sepa_debit"]


def test_no_redirect_method_in_another_currency_without_sepa_or_for_a_trial() -> None:
    assert _redirect_checkout(_redirect_world(), "NL", "usd").redirect_payment_method_types == ()
    world = _redirect_world()
    _, price = world.catalog(1500, "eur", trial_period_days=7)
    trial = start_checkout(
        world.billing, price_id=price.id, email="t@example.nl", name=None, address=Address(country="NL")
    )
    assert trial.invoice is None and trial.redirect_payment_method_types == ()
    with pytest.raises(ValueError, match="offer sepa_debit too"):
        MerchantSettings(payment_method_types=("card", "ideal"))


@pytest.mark.parametrize(("country", "source"), [("NL", "ideal"), ("BE", "bancontact")])
def test_a_checkout_paid_by_redirect_leaves_a_sepa_debit_for_the_renewals(country: str, source: str) -> None:
    from kassa.services.checkout import start_redirect_payment

    world = _redirect_world()
    started = _redirect_checkout(world, country)
    assert started.invoice is not None
    redirect = start_redirect_payment(world.billing, started.subscription.id, source, "https://shop.example/back")
    call = next(args for name, args in world.gateway.calls if name == "create_redirect_payment")
    assert call == {"invoice_id": started.invoice.id, "source_type": source, "attempt": 1,
                    "return_url": "https://shop.example/back"}  # fmt: skip
    assert redirect.payment_intent.redirect_url and redirect.payment_intent.awaiting_customer
    waiting = world.store.get_invoice(started.invoice.id)
    # waiting for the customer at their bank: not a failure — no dunning, no email, no error
    assert (waiting.status, waiting.attempt_outcome, waiting.payment_intent) == (
        InvoiceStatus.OPEN, "requires_action", redirect.payment_intent.id,
    )  # fmt: skip
    assert waiting.next_dunning_at is None and waiting.last_payment_error is None and waiting.first_failed_at is None
    assert not [t for t in world.publisher.types() if t.startswith("invoice.payment")]
    # started again (the customer clicked twice, or came back): the same PaymentIntent, no second payment
    again = start_redirect_payment(world.billing, started.subscription.id, source, "https://shop.example/back")
    assert again.payment_intent.id == redirect.payment_intent.id
    assert [n for n, _ in world.gateway.calls].count("create_redirect_payment") == 1

    event = _bank_authorises(world, redirect.payment_intent.id, source)
    assert apply_stripe_event(world.billing, event) == "applied"
    assert apply_stripe_event(world.billing, event) == "applied"  # redelivered: one effect
    assert world.store.get_invoice(started.invoice.id).status is InvoiceStatus.PAID
    assert world.store.get_subscription(started.subscription.id).status is Status.ACTIVE
    account = world.store.get_customer(started.customer.id).default_payment_method
    assert account is not None and account.type is PaymentMethodKind.SEPA_DEBIT
    assert account.mandate is not None and account.mandate.generated_from == source
    assert [n for n, _ in world.gateway.calls].count("attach_payment_method") == 1


def test_back_from_the_bank_confirm_payment_adopts_the_generated_sepa_debit_before_the_webhook() -> None:
    from kassa.services.checkout import confirm_checkout_payment, start_redirect_payment

    world = _redirect_world()
    started = _redirect_checkout(world, "NL")
    redirect = start_redirect_payment(world.billing, started.subscription.id, "ideal", "https://shop.example/back")
    event = _bank_authorises(world, redirect.payment_intent.id, "ideal")
    # the return_url's ?payment_intent=… : the storefront calls confirm_payment
    done = confirm_checkout_payment(world.billing, started.subscription.id, redirect.payment_intent.id)
    assert done.invoice is not None and done.invoice.status is InvoiceStatus.PAID
    assert done.subscription is not None and done.subscription.status is Status.ACTIVE
    account = world.store.get_customer(started.customer.id).default_payment_method
    assert account is not None and account.type is PaymentMethodKind.SEPA_DEBIT
    assert apply_stripe_event(world.billing, event) == "applied"  # the webhook after: nothing more
    assert [n for n, _ in world.gateway.calls].count("attach_payment_method") == 1


def test_a_redirect_method_not_offered_or_a_bad_return_url_is_refused_naming_it() -> None:
    from kassa.services.checkout import start_redirect_payment

    world = _redirect_world()
    started = _redirect_checkout(world, "NL")
    with pytest.raises(InvalidInput) as refused:
        start_redirect_payment(world.billing, started.subscription.id, "bancontact", "https://shop.example/back")
    assert refused.value.param == "payment_method_type" and "offered: ideal" in refused.value.message
    for bad in ("javascript:alert(1)", "/relative/back", "ftp://shop.example/"):
        with pytest.raises(InvalidInput) as refused:
            start_redirect_payment(world.billing, started.subscription.id, "ideal", bad)
        assert refused.value.param == "return_url"
    assert not [n for n, _ in world.gateway.calls if n == "create_redirect_payment"]


def test_after_the_bank_refused_the_customer_may_start_again_as_a_new_attempt() -> None:
    from dataclasses import replace

    from kassa.services.checkout import start_redirect_payment

    world = _redirect_world()
    started = _redirect_checkout(world, "NL")
    first = start_redirect_payment(world.billing, started.subscription.id, "ideal", "https://shop.example/back")
    intent = world.gateway.payment_intents[first.payment_intent.id]
    failed_result = replace(intent.result, status=ChargeStatus.DECLINED, code="payment_intent_payment_attempt_failed")
    world.gateway.payment_intents[intent.id] = replace(intent, status="requires_payment_method", result=failed_result)
    assert apply_stripe_event(world.billing, world.gateway.intent_event(intent.id)) == "applied"
    assert world.store.get_invoice(started.invoice.id).attempt_outcome == "declined"  # type: ignore[union-attr]
    second = start_redirect_payment(world.billing, started.subscription.id, "ideal", "https://shop.example/back")
    assert second.payment_intent.id != first.payment_intent.id
    attempts = [args["attempt"] for name, args in world.gateway.calls if name == "create_redirect_payment"]
    assert attempts == [1, 2]


# ----------------------------------------------------------------------------- disputes on SEPA
def _sepa_dispute(invoice: Invoice, created: datetime, status: str = "needs_response") -> dict[str, Any]:
    from fakes import stripe_event, stripe_object

    dispute = stripe_object(
        "dispute", id="dp_sepa", amount=invoice.amount_paid, currency="eur", status=status, reason="general",
        payment_intent=invoice.payment_intent, created=int(created.timestamp()),
        payment_method_details={"type": "sepa_debit"},
    )  # fmt: skip
    event = stripe_event("charge.dispute.created", dispute, event_id=f"evt_dp_{status}")
    event["created"] = int(created.timestamp())
    return event


@pytest.mark.parametrize(("weeks", "contestable"), [(3, False), (10, True)])
def test_a_sepa_refund_request_follows_the_disputes_path_and_within_8_weeks_cannot_be_contested(
    weeks: int, contestable: bool
) -> None:
    from fakes import FakeMailer, FakeOutbox

    from kassa.domain.settings import DisputeSettings
    from kassa.services.dunning import Dunning

    world = _sepa_world(disputes=DisputeSettings(access="suspend", notify_email="owner@koffie.example"))
    started, invoice = _checkout(world)
    apply_stripe_event(world.billing, world.gateway.settle(invoice.payment_intent or ""))
    paid = world.store.get_invoice(invoice.id)
    assert paid.paid_at is not None
    event = _sepa_dispute(paid, paid.paid_at + timedelta(weeks=weeks))
    assert apply_stripe_event(world.billing, event) == "applied"
    assert apply_stripe_event(world.billing, event).startswith("ignored")  # redelivered
    [dispute] = world.store.get_invoice(invoice.id).disputes
    assert (dispute.payment_method_type, dispute.contestable) == ("sepa_debit", contestable)
    # the merchant API's disputes path: access by settings.disputes.access, the merchant emailed once
    sub = world.store.get_subscription(started.subscription.id)
    assert sub.dispute_holds == ["dp_sepa"] and sub.entitlements_suspended
    [notice] = world.publisher.of_type("charge.dispute.created")
    assert notice.data["contestable"] is contestable and notice.data["payment_method_type"] == "sepa_debit"
    outbox, mailer = FakeOutbox(), FakeMailer()
    dunning = Dunning(world.billing, outbox, mailer, sender="s@x.example", link_secret="k", public_url="http://x")
    envelope = {"detail-type": "charge.dispute.created", "detail": notice.model_dump(mode="json")}
    assert dunning.handle_event(envelope) == "sent"
    text = mailer.sent[0][0].text
    assert ("cannot be contested" in text) is (not contestable)
