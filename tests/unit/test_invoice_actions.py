"""Invoice actions (finalize, pay, void, mark_uncollectible) with Stripe's allowed transitions; a new
card pays only open invoices; a checkout's failed first payment is not dunned; a checkout's first
invoice is numbered only when paid (no number burned by a checkout that expires)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import Outcome, World, make_world
from test_dunning_service import Desk

from kassa.domain.errors import IllegalTransition
from kassa.domain.invoice import Invoice, InvoiceAction, InvoiceStatus, action_needed
from kassa.domain.pausing import PauseBehavior
from kassa.domain.subscription import INCOMPLETE_EXPIRY, Status
from kassa.services import invoice_actions
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.collection import update_card
from kassa.services.pausing import pause_collection
from kassa.services.renewals import process_due

DECLINE = Outcome("decline", "card_declined", "insufficient_funds", "Your card has insufficient funds.")


def latest(world: World, sub_id: str) -> Invoice:
    sub = world.store.get_subscription(sub_id)
    assert sub.latest_invoice is not None
    return world.store.get_invoice(sub.latest_invoice)


def renew(world: World, sub_id: str) -> Invoice:
    world.clock.set(world.store.get_subscription(sub_id).current_period_end + timedelta(minutes=1))
    process_due(world.billing, sub_id)
    return latest(world, sub_id)


def kept_draft(world: World) -> tuple[str, Invoice]:
    """An active subscription whose renewal was kept as a draft while collection was paused."""
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    pause_collection(world.billing, sub_id, PauseBehavior.KEEP_AS_DRAFT)
    draft = renew(world, sub_id)
    assert draft.status is InvoiceStatus.DRAFT and draft.number is None
    return sub_id, draft


def declined_renewal(world: World) -> tuple[str, Invoice]:
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    world.gateway.will("pm_card_visa", DECLINE)
    invoice = renew(world, sub_id)
    assert invoice.status is InvoiceStatus.OPEN and invoice.next_dunning_at is not None
    assert world.store.get_subscription(sub_id).status is Status.PAST_DUE
    return sub_id, invoice


# ---------------------------------------------------------------------------- the domain rule
@pytest.mark.parametrize(
    ("status", "action", "needed"),
    [
        (InvoiceStatus.DRAFT, InvoiceAction.FINALIZE, True),
        (InvoiceStatus.OPEN, InvoiceAction.FINALIZE, False),
        (InvoiceStatus.OPEN, InvoiceAction.PAY, True),
        (InvoiceStatus.UNCOLLECTIBLE, InvoiceAction.PAY, True),
        (InvoiceStatus.PAID, InvoiceAction.PAY, False),
        (InvoiceStatus.OPEN, InvoiceAction.VOID, True),
        (InvoiceStatus.UNCOLLECTIBLE, InvoiceAction.VOID, True),
        (InvoiceStatus.VOID, InvoiceAction.VOID, False),
        (InvoiceStatus.OPEN, InvoiceAction.MARK_UNCOLLECTIBLE, True),
        (InvoiceStatus.UNCOLLECTIBLE, InvoiceAction.MARK_UNCOLLECTIBLE, False),
        (InvoiceStatus.PAID, InvoiceAction.VOID, None),
        (InvoiceStatus.VOID, InvoiceAction.PAY, None),
        (InvoiceStatus.DRAFT, InvoiceAction.PAY, None),
        (InvoiceStatus.DRAFT, InvoiceAction.VOID, None),
        (InvoiceStatus.PAID, InvoiceAction.FINALIZE, None),
        (InvoiceStatus.UNCOLLECTIBLE, InvoiceAction.FINALIZE, None),
        (InvoiceStatus.PAID, InvoiceAction.MARK_UNCOLLECTIBLE, None),
        (InvoiceStatus.DRAFT, InvoiceAction.MARK_UNCOLLECTIBLE, None),
    ],
)
def test_actions_follow_stripes_transitions(status: InvoiceStatus, action: InvoiceAction, needed: bool | None) -> None:
    world = make_world()
    _, price = world.catalog()
    invoice = world.checkout(price).invoice
    assert invoice is not None
    invoice = invoice.model_copy(update={"status": status})
    if needed is None:
        with pytest.raises(IllegalTransition) as refused:
            action_needed(invoice, action)
        assert status.value in refused.value.message and refused.value.param == "status"
    else:
        assert action_needed(invoice, action) is needed


# ---------------------------------------------------------------------------- finalize
def test_finalizing_a_kept_draft_numbers_it_and_opens_it_once() -> None:
    world = make_world()
    _, draft = kept_draft(world)
    world.publisher.clear()
    final = invoice_actions.finalize(world.billing, draft.id)
    assert final.status is InvoiceStatus.OPEN and final.number == "KASSA-0002" and not final.keep_as_draft
    assert final.finalized_at == world.clock.now().replace(microsecond=0)
    assert world.publisher.types() == ["invoice.finalized"]
    again = invoice_actions.finalize(world.billing, draft.id)  # idempotent: same invoice, nothing published
    assert again == final and world.publisher.types() == ["invoice.finalized"]
    assert world.store.invoice_seq == 2
    assert world.gateway.charges_for(draft.id) == []  # finalizing charges nothing


def test_a_paid_invoice_cannot_be_finalized() -> None:
    world = make_world()
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    with pytest.raises(IllegalTransition, match="from paid to open"):
        invoice_actions.finalize(world.billing, latest(world, sub_id).id)


# ---------------------------------------------------------------------------- pay
def test_paying_charges_the_default_card_and_reactivates_the_subscription() -> None:
    world = make_world()
    sub_id, invoice = declined_renewal(world)
    world.gateway.will_succeed("pm_card_visa")
    world.publisher.clear()
    result = invoice_actions.pay(world.billing, invoice.id)
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.PAID
    assert result.invoice.next_dunning_at is None and not result.invoice.paid_out_of_band
    assert world.store.get_subscription(sub_id).status is Status.ACTIVE
    assert [c.attempt for c in world.gateway.charges_for(invoice.id)] == [1, 2]
    assert "invoice.paid" in world.publisher.types()
    again = invoice_actions.pay(world.billing, invoice.id)  # already paid: same invoice, no charge
    assert again.invoice == result.invoice and len(world.gateway.charges_for(invoice.id)) == 2


def test_paid_out_of_band_marks_paid_without_charging() -> None:
    world = make_world()
    sub_id, invoice = declined_renewal(world)
    world.publisher.clear()
    result = invoice_actions.pay(world.billing, invoice.id, paid_out_of_band=True)
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.PAID
    assert result.invoice.paid_out_of_band and result.invoice.amount_paid == invoice.amount_due
    assert len(world.gateway.charges_for(invoice.id)) == 1  # only the renewal's declined attempt
    assert world.store.get_subscription(sub_id).status is Status.ACTIVE
    assert world.publisher.types()[:2] == ["invoice.paid", "invoice.payment_succeeded"]


def test_a_declined_pay_leaves_the_invoice_open_and_a_written_off_one_out_of_dunning() -> None:
    world = make_world()
    _, invoice = declined_renewal(world)
    invoice_actions.mark_uncollectible(world.billing, invoice.id)
    result = invoice_actions.pay(world.billing, invoice.id)  # the card still declines
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.UNCOLLECTIBLE
    assert result.charge is not None and result.charge.decline_code == "insufficient_funds"
    assert result.invoice.next_dunning_at is None  # written off: no retries follow
    world.gateway.will_succeed("pm_card_visa")
    paid = invoice_actions.pay(world.billing, invoice.id)  # the merchant can still collect it
    assert paid.invoice is not None and paid.invoice.status is InvoiceStatus.PAID


def test_a_pay_racing_an_unrelated_write_still_charges_and_reports_the_decline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The merchant's Retry payment reads the invoice, then a webhook's record changes it before the
    attempt is claimed: the claim's conditional write loses, but nobody claimed the attempt, so pay
    charges on the fresh invoice (and reports the decline) instead of answering it unpaid and uncharged."""
    world = make_world()
    _, invoice = declined_renewal(world)
    real_save = world.store.save_invoice
    raced = []

    def save(updated: Invoice, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not raced and updated.attempt_count == invoice.attempt_count + 1:
            raced.append(True)  # a concurrent writer: the same invoice, another field, saved first
            real_save(world.store.get_invoice(updated.id).model_copy(update={"locale": "de"}))
        return real_save(updated, *args, **kwargs)

    monkeypatch.setattr(world.store, "save_invoice", save)
    result = invoice_actions.pay(world.billing, invoice.id)  # the card still declines
    assert raced and result.charge is not None and result.charge.decline_code == "insufficient_funds"
    stored = world.store.get_invoice(invoice.id)
    assert stored.attempt_count == invoice.attempt_count + 1 and stored.locale == "de"


def test_a_draft_cannot_be_paid_before_it_is_finalized() -> None:
    world = make_world()
    _, draft = kept_draft(world)
    with pytest.raises(IllegalTransition, match="from draft to paid"):
        invoice_actions.pay(world.billing, draft.id)
    invoice_actions.finalize(world.billing, draft.id)
    assert invoice_actions.pay(world.billing, draft.id).status == "paid"


# ---------------------------------------------------------------------------- void, mark_uncollectible
def test_voiding_takes_the_invoice_out_of_the_dunning_index_once() -> None:
    world = make_world()
    _, invoice = declined_renewal(world)
    assert any(world.store.due_dunning(s, world.clock.now(), 100) for s in range(4))
    world.publisher.clear()
    voided = invoice_actions.void(world.billing, invoice.id)
    assert voided.status is InvoiceStatus.VOID and voided.next_dunning_at is None and voided.voided_at
    assert not any(world.store.due_dunning(s, world.clock.now() + timedelta(days=30), 100) for s in range(4))
    assert invoice_actions.void(world.billing, invoice.id) == voided
    assert world.publisher.types() == ["invoice.voided"]


def test_a_paid_invoice_cannot_be_voided() -> None:
    world = make_world()
    _, price = world.catalog()
    sub_id = world.active_subscription(price).subscription.id
    with pytest.raises(IllegalTransition) as refused:
        invoice_actions.void(world.billing, latest(world, sub_id).id)
    assert "from paid to void" in refused.value.message and refused.value.param == "status"


def test_marking_uncollectible_writes_off_once_and_can_then_be_voided() -> None:
    world = make_world()
    _, invoice = declined_renewal(world)
    world.publisher.clear()
    written_off = invoice_actions.mark_uncollectible(world.billing, invoice.id)
    assert written_off.status is InvoiceStatus.UNCOLLECTIBLE and written_off.next_dunning_at is None
    assert invoice_actions.mark_uncollectible(world.billing, invoice.id) == written_off
    assert world.publisher.types() == ["invoice.marked_uncollectible"]
    assert invoice_actions.void(world.billing, invoice.id).status is InvoiceStatus.VOID
    with pytest.raises(IllegalTransition, match="from void to uncollectible"):
        invoice_actions.mark_uncollectible(world.billing, invoice.id)


# ---------------------------------------------------------------------------- a new card (defect 2)
def test_a_new_card_pays_the_open_invoices_but_not_the_written_off_ones() -> None:
    world = make_world()
    _, price = world.catalog()
    first = world.active_subscription(price)
    # a second subscription of the same customer, whose renewal is written off under a pause
    other = start_checkout(world.billing, price_id=price.id, customer_id=first.customer.id)
    complete_checkout(world.billing, other.subscription.id, other.setup_intent.id)
    pause_collection(world.billing, other.subscription.id, PauseBehavior.MARK_UNCOLLECTIBLE)
    world.gateway.will("pm_card_visa", DECLINE)
    open_invoice = renew(world, first.subscription.id)
    written_off = renew(world, other.subscription.id)
    assert open_invoice.status is InvoiceStatus.OPEN
    assert written_off.status is InvoiceStatus.UNCOLLECTIBLE and written_off.customer == open_invoice.customer
    customer = world.store.get_customer(open_invoice.customer)
    intent = world.gateway.create_setup_intent(customer=str(customer.stripe_customer_id), metadata={})
    world.gateway.confirm_setup_intent(intent.id, "pm_new")
    _, results = update_card(world.billing, customer.id, intent.id)
    assert [r.invoice.id for r in results if r.invoice] == [open_invoice.id]
    assert world.store.get_invoice(open_invoice.id).status is InvoiceStatus.PAID
    assert world.store.get_invoice(written_off.id).status is InvoiceStatus.UNCOLLECTIBLE  # stays written off
    assert world.gateway.charges_for(written_off.id) == []


# ---------------------------------------------------------------------------- a checkout's first invoice (defect 4)
def test_a_checkout_that_declines_and_expires_burns_no_number() -> None:
    world = make_world()
    _, price = world.catalog()
    world.gateway.setup_payment_method = "pm_declines"
    world.gateway.will("pm_declines", DECLINE)
    failed = world.checkout(price, email="first@example.com")
    assert failed.invoice is not None and failed.invoice.status is InvoiceStatus.OPEN
    assert failed.invoice.number is None  # numbered only once it is paid
    complete_checkout(world.billing, failed.subscription.id, failed.setup_intent.id)
    assert [c.description for c in world.gateway.charges_for(failed.invoice.id)] == ["Subscription creation"]
    world.clock.advance(INCOMPLETE_EXPIRY + timedelta(minutes=1))
    process_due(world.billing, failed.subscription.id)
    assert world.store.get_subscription(failed.subscription.id).status is Status.INCOMPLETE_EXPIRED

    world.gateway.setup_payment_method = "pm_card_visa"
    paid = world.checkout(price, email="second@example.com")
    complete_checkout(world.billing, paid.subscription.id, paid.setup_intent.id)
    expired = world.store.get_invoice(failed.invoice.id)
    assert (expired.status, expired.number) == (InvoiceStatus.VOID, None)
    second = latest(world, paid.subscription.id)
    assert (second.status, second.number) == (InvoiceStatus.PAID, "KASSA-0001")
    assert world.store.get_subscription(paid.subscription.id).status is Status.ACTIVE
    receipt = [e for e in world.publisher.of_type("invoice.paid") if e.data["id"] == second.id]
    assert receipt[0].data["number"] == "KASSA-0001"  # the receipt's event carries the number
    assert world.store.invoice_seq == 1


def test_a_pending_checkout_is_paid_through_the_card_page_and_numbered_then() -> None:
    world = make_world()
    _, price = world.catalog()
    world.gateway.setup_payment_method = "pm_declines"
    world.gateway.will("pm_declines", DECLINE)
    pending = world.checkout(price)
    complete_checkout(world.billing, pending.subscription.id, pending.setup_intent.id)
    customer = world.store.get_customer(pending.subscription.customer)
    intent = world.gateway.create_setup_intent(customer=str(customer.stripe_customer_id), metadata={})
    world.gateway.confirm_setup_intent(intent.id, "pm_card_visa")
    update_card(world.billing, customer.id, intent.id)
    invoice = latest(world, pending.subscription.id)
    assert (invoice.status, invoice.number) == (InvoiceStatus.PAID, "KASSA-0001")
    assert world.store.get_subscription(pending.subscription.id).status is Status.ACTIVE


# ---------------------------------------------------------------------------- a checkout's failed payment (defect 3)
def test_a_declined_checkout_is_not_dunned_and_its_email_names_the_expiry_not_a_retry() -> None:
    desk = Desk()
    _, price = desk.w.catalog(1500, "eur")
    desk.w.gateway.setup_payment_method = "pm_declines"
    desk.w.gateway.will("pm_declines", DECLINE)
    result = desk.w.checkout(price)
    complete_checkout(desk.w.billing, result.subscription.id, result.setup_intent.id)
    desk.deliver(twice=True)
    invoice = desk.invoice(result.subscription.id)
    assert invoice.status is InvoiceStatus.OPEN and invoice.next_dunning_at is None  # not in the dunning index
    assert desk.templates() == ["payment_failed"]
    email = desk.mailer.sent[0][0]
    expires = result.subscription.incomplete_expires_at
    assert expires is not None
    assert "complete the payment before" in email.text and expires.strftime("%B %-d, %Y") in email.text
    assert "try again on" not in email.text and "invoice" not in email.subject.lower()
    assert "/portal/card?token=" in email.text

    desk.run_until(expires + timedelta(days=3), twice=True)
    assert desk.w.store.get_subscription(result.subscription.id).status is Status.INCOMPLETE_EXPIRED
    assert len(desk.w.gateway.charges_for(invoice.id)) == 1  # nothing retried
    assert desk.templates() == ["payment_failed"]  # once, and no overdue emails
    assert desk.w.store.get_invoice(invoice.id).status is InvoiceStatus.VOID
