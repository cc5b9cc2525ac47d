"""Refunds, disputes and early fraud warnings (docs/payments.md), on events built from Stripe's own
fixture objects; duplicates and out-of-order deliveries have one effect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import FakeMailer, FakeOutbox, World, stripe_event, stripe_object

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import Invoice
from kassa.domain.payments import RefundReason
from kassa.domain.settings import DisputeSettings, FraudSettings
from kassa.domain.subscription import Status
from kassa.services.cancellation import entitlements_of
from kassa.services.dunning import Dunning
from kassa.services.payments import refund_invoice
from kassa.services.stripe_events import apply_stripe_event


def paid(world: World) -> Invoice:
    _, price = world.catalog(unit_amount=2000)
    result = world.active_subscription(price)
    invoice = world.store.get_invoice(result.invoice.id)
    assert invoice.status.value == "paid" and invoice.payment_intent
    return invoice


def deliver(world: World, etype: str, obj: dict, n: int = 1, created: int = 1_700_000_000) -> list[str]:
    event = stripe_event(etype, obj, event_id=f"evt_{etype}_{created}")
    event["created"] = created
    return [apply_stripe_event(world.billing, event) for _ in range(n)]


def settings(world: World, **changes: object) -> None:
    world.store.put_settings(world.store.get_settings().model_copy(update=changes))


# ------------------------------------------------------------------ refunds through kassa
def test_a_partial_refund_then_the_rest_and_never_more(world: World) -> None:
    invoice = paid(world)
    after, refund = refund_invoice(world.billing, invoice.id, 500, RefundReason.REQUESTED_BY_CUSTOMER)
    assert (after.amount_refunded, refund.amount, refund.reason, refund.status) == (
        500, 500, "requested_by_customer", "succeeded")  # fmt: skip
    with pytest.raises(InvalidInput) as error:
        refund_invoice(world.billing, invoice.id, invoice.amount_paid)
    assert error.value.param == "amount"
    rest, second = refund_invoice(world.billing, invoice.id)  # default: all that is left
    assert second.amount == invoice.amount_paid - 500 and rest.amount_refunded == invoice.amount_paid
    assert [r.credit_note is not None for r in rest.refunds] == [True, True]
    assert len(world.store.list_credit_notes(invoice.id)) == 2  # one rule: refunds are credit notes


def test_a_retried_request_with_its_key_refunds_once(world: World) -> None:
    invoice = paid(world)
    first = refund_invoice(world.billing, invoice.id, 700, key="k-1")
    again = refund_invoice(world.billing, invoice.id, 700, key="k-1")
    assert first[1] == again[1]
    assert [n for n, _ in world.gateway.calls].count("refund") == 1
    assert world.store.get_invoice(invoice.id).amount_refunded == 700
    with pytest.raises(InvalidInput) as error:
        refund_invoice(world.billing, invoice.id, 800, key="k-1")
    assert error.value.param == "Idempotency-Key"


def test_an_unpaid_invoice_is_not_refunded(world: World) -> None:
    _, price = world.catalog()
    open_invoice = world.checkout(price).invoice
    with pytest.raises(InvalidInput) as error:
        refund_invoice(world.billing, open_invoice.id, 100)
    assert error.value.param == "invoice"


# ------------------------------------------------------------------ refunds from the dashboard
def _charge(invoice: Invoice, refunded: int, refunds: list[dict] | None = None) -> dict:
    extra = {"refunds": {"object": "list", "data": refunds}} if refunds is not None else {}
    return stripe_object("charge", id="ch_1", payment_intent=invoice.payment_intent, amount=invoice.amount_paid,
                         amount_refunded=refunded, currency="eur", **extra)  # fmt: skip


def _refund(invoice: Invoice, rid: str, amount: int, status: str = "succeeded", **kw: object) -> dict:
    return stripe_object("refund", id=rid, amount=amount, currency="eur", status=status,
                         payment_intent=invoice.payment_intent, charge="ch_1", **kw)  # fmt: skip


def test_a_dashboard_refund_is_reflected_once_whatever_the_order(world: World) -> None:
    invoice = paid(world)
    refund = _refund(invoice, "re_dash", 300, reason="requested_by_customer")
    assert deliver(world, "charge.refunded", _charge(invoice, 300, [refund]), n=2) == [
        "applied", "ignored:refund already recorded"]  # fmt: skip
    assert deliver(world, "refund.created", _refund(invoice, "re_dash", 300, "pending"), created=1) == [
        "ignored:refund already recorded"]  # a late, older status changes nothing  # fmt: skip
    after = world.store.get_invoice(invoice.id)
    assert after.amount_refunded == 300 and [(r.id, r.status, r.source) for r in after.refunds] == [
        ("re_dash", "succeeded", "stripe")]  # fmt: skip
    # what is left refundable counts the dashboard's refund
    with pytest.raises(InvalidInput):
        refund_invoice(world.billing, invoice.id, invoice.amount_paid - 299)


def test_a_charge_refunded_without_its_list_and_then_the_refund_count_once(world: World) -> None:
    invoice = paid(world)
    deliver(world, "charge.refunded", _charge(invoice, 400))
    assert world.store.get_invoice(invoice.id).amount_refunded == 400
    deliver(world, "refund.created", _refund(invoice, "re_x", 400), created=2)
    assert world.store.get_invoice(invoice.id).amount_refunded == 400


def test_kassa_s_own_refund_is_recognised_in_its_webhooks(world: World) -> None:
    invoice = paid(world)
    after, mine = refund_invoice(world.billing, invoice.id, 600)
    echo = _refund(invoice, mine.id, 600, metadata={"kassa_credit_note": mine.credit_note})
    deliver(world, "charge.refunded", _charge(invoice, 600, [echo]))
    deliver(world, "refund.created", echo, created=3)
    final = world.store.get_invoice(invoice.id)
    assert final.amount_refunded == 600 and [(r.id, r.source) for r in final.refunds] == [(mine.id, "kassa")]


def test_a_failed_refund_stops_counting(world: World) -> None:
    invoice = paid(world)
    deliver(world, "refund.created", _refund(invoice, "re_f", 200, "pending"))
    deliver(world, "charge.refund.updated", _refund(invoice, "re_f", 200, "failed"), created=5)
    assert world.store.get_invoice(invoice.id).amount_refunded == 0


def test_payments_kassa_does_not_know_are_ignored(world: World) -> None:
    obj = stripe_object("charge", payment_intent="pi_elsewhere")
    assert deliver(world, "charge.refunded", obj) == ["ignored:pi_elsewhere is not a kassa payment"]
    assert deliver(world, "charge.refunded", stripe_object("charge"))[0].startswith("ignored:no payment_intent")


# ------------------------------------------------------------------ disputes
def _dispute(invoice: Invoice, status: str, **kw: object) -> dict:
    return stripe_object("dispute", id="dp_1", amount=invoice.amount_paid, currency="eur", status=status,
                         payment_intent=invoice.payment_intent, reason="fraudulent", **kw)  # fmt: skip


def test_a_dispute_is_shown_and_the_merchant_is_told_once(world: World) -> None:
    invoice = paid(world)
    settings(world, disputes=DisputeSettings(notify_email="owner@shop.example"))
    assert deliver(world, "charge.dispute.created", _dispute(invoice, "needs_response"), n=2) == [
        "applied", "ignored:dispute already recorded"]  # fmt: skip
    shown = world.store.get_invoice(invoice.id).disputes
    assert [(d.id, d.amount, d.reason, d.status) for d in shown] == [
        ("dp_1", invoice.amount_paid, "fraudulent", "needs_response")]  # fmt: skip
    events = world.publisher.of_type("charge.dispute.created")
    assert len(events) == 1 and events[0].data["invoice"] == invoice.id
    outbox, mailer = FakeOutbox(), FakeMailer()
    dunning = Dunning(world.billing, outbox, mailer, sender="s@x.example", link_secret="k", public_url="http://x")
    envelope = {"detail-type": "charge.dispute.created", "detail": events[0].model_dump(mode="json")}
    assert [dunning.handle_event(envelope) for _ in range(2)] == ["sent", "duplicate"]
    assert [(e.to, e.template) for e, _ in mailer.sent] == [("owner@shop.example", "dispute_notice")]
    assert "needs_response" in mailer.sent[0][0].text


def test_closed_before_created_stays_closed_and_a_lost_dispute_records_the_loss(world: World) -> None:
    invoice = paid(world)
    deliver(world, "charge.dispute.closed", _dispute(invoice, "lost"), created=20)
    assert deliver(world, "charge.dispute.created", _dispute(invoice, "needs_response"), created=10) == [
        "ignored:dispute already recorded"]  # fmt: skip
    after = world.store.get_invoice(invoice.id)
    assert [d.status for d in after.disputes] == ["lost"]
    assert after.amount_disputed_lost == invoice.amount_paid
    assert world.publisher.types().count("charge.dispute.closed") == 1
    assert "charge.dispute.created" not in world.publisher.types()


def test_suspend_cuts_access_while_disputed_and_a_won_dispute_restores_it(world: World) -> None:
    invoice = paid(world)
    settings(world, disputes=DisputeSettings(access="suspend"))
    deliver(world, "charge.dispute.created", _dispute(invoice, "needs_response"), created=1)
    sub = world.store.get_subscription(invoice.subscription or "")
    assert sub.dispute_holds == ["dp_1"] and sub.entitlements_suspended
    assert entitlements_of(world.billing, invoice.customer) == []
    assert "entitlements.active_entitlement_summary.updated" in world.publisher.types()
    deliver(world, "charge.dispute.updated", _dispute(invoice, "under_review"), created=2)
    deliver(world, "charge.dispute.closed", _dispute(invoice, "won"), created=3)
    sub = world.store.get_subscription(invoice.subscription or "")
    assert sub.dispute_holds == [] and not sub.entitlements_suspended
    assert len(entitlements_of(world.billing, invoice.customer)) == 1
    assert world.store.get_invoice(invoice.id).amount_disputed_lost == 0


def test_keep_leaves_access_alone(world: World) -> None:
    invoice = paid(world)
    deliver(world, "charge.dispute.created", _dispute(invoice, "warning_needs_response"))
    assert len(entitlements_of(world.billing, invoice.customer)) == 1


# ------------------------------------------------------------------ early fraud warnings
def _warning(invoice: Invoice) -> dict:
    return stripe_object("radar.early_fraud_warning", payment_intent=invoice.payment_intent, charge="ch_1")


def test_a_fraud_warning_flags_by_default(world: World) -> None:
    invoice = paid(world)
    assert deliver(world, "radar.early_fraud_warning.created", _warning(invoice), n=2) == [
        "applied", "ignored:fraud warning already recorded"]  # fmt: skip
    after = world.store.get_invoice(invoice.id)
    assert [(w.id, w.action) for w in after.fraud_warnings] == [("issfr_1Pgc79B7WZ01zgkWxwDzEIPX", "flagged")]
    assert world.store.get_customer(invoice.customer).fraud_warnings == ["issfr_1Pgc79B7WZ01zgkWxwDzEIPX"]
    assert after.amount_refunded == 0
    assert world.publisher.types().count("radar.early_fraud_warning.created") == 1


def test_refund_and_cancel_refunds_in_full_and_cancels_now_once(world: World) -> None:
    invoice = paid(world)
    settings(world, fraud=FraudSettings(early_warning="refund_and_cancel"))
    world.clock.advance(timedelta(days=2))
    deliver(world, "radar.early_fraud_warning.created", _warning(invoice), n=2)
    after = world.store.get_invoice(invoice.id)
    assert after.amount_refunded == invoice.amount_paid
    assert [(r.reason, r.source) for r in after.refunds] == [("fraudulent", "kassa")]
    assert [n for n, _ in world.gateway.calls].count("refund") == 1
    sub = world.store.get_subscription(invoice.subscription or "")
    assert sub.status is Status.CANCELED and sub.cancellation_details is not None
    assert sub.cancellation_details["reason"] == "payment_disputed"
    assert after.fraud_warnings[0].action == "refunded_and_canceled"
