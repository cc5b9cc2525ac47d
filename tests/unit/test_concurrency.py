"""Read-modify-write under a concurrent writer: every service write is conditioned on the version
it read and either retried from a fresh read (the concurrent change kept) or surfaced as Conflict
(a 409) — never a lost write.

``InterleavingStore`` hands the service the stored copy and then, before the service can write,
lets a "concurrent request" write the same object: the copy the service holds is stale once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fakes import START, BillingContext, FakeGateway, FixedClock, ListPublisher, World, stripe_object

from kassa.adapters.memory import MemoryStore
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.credit_notes import CreditNoteLine, CreditNoteLineType, CreditNoteRequest
from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.pausing import PauseBehavior
from kassa.domain.subscription import Subscription
from kassa.services import context as context_module
from kassa.services import invoice_actions
from kassa.services.cancellation import cancel
from kassa.services.context import CONTENDED_RETRIES
from kassa.services.coupons import apply_subscription_discount, create_coupon
from kassa.services.credit_notes import credit_invoice
from kassa.services.customers import card_updated, save_payment_method, update_customer
from kassa.services.invoicing import add_invoice_item
from kassa.services.pausing import pause_collection
from kassa.services.payments import apply_payment_event
from kassa.services.plan_changes import change_plan


class InterleavingStore(MemoryStore):
    """A MemoryStore whose next read of an armed id returns the stored copy and then runs a
    concurrent write: the reader's copy is stale once."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: dict[str, Callable[[], None]] = {}
        self.interleaved = 0

    def arm(self, object_id: str, write: Callable[[], None]) -> None:
        self.armed[object_id] = write

    def _after_read(self, object_id: str) -> None:
        write = self.armed.pop(object_id, None)
        if write is not None:
            write()
            self.interleaved += 1

    def get_subscription(self, subscription_id: str) -> Subscription:
        sub = super().get_subscription(subscription_id)
        self._after_read(subscription_id)
        return sub

    def get_customer(self, customer_id: str) -> Customer:
        customer = super().get_customer(customer_id)
        self._after_read(customer_id)
        return customer

    def get_invoice(self, invoice_id: str) -> Invoice:
        invoice = super().get_invoice(invoice_id)
        self._after_read(invoice_id)
        return invoice

    def find_invoice(self, invoice_id: str) -> Invoice | None:
        invoice = super().find_invoice(invoice_id)
        self._after_read(invoice_id)
        return invoice


def world() -> tuple[World, InterleavingStore]:
    store, gateway, publisher, clock = InterleavingStore(), FakeGateway(), ListPublisher(), FixedClock(START)
    return World(store, gateway, publisher, clock, BillingContext(store, gateway, publisher, clock)), store


def _concurrent_item(w: World, sub_id: str, description: str = "concurrent") -> Callable[[], None]:
    return lambda: add_invoice_item(w.billing, sub_id, amount=300, description=description)


def _concurrent_rename(store: MemoryStore, customer_id: str, name: str = "Concurrent") -> Callable[[], None]:
    def write() -> None:
        current = MemoryStore.get_customer(store, customer_id)
        store.save_customer(current.model_copy(update={"name": name}))

    return write


def _concurrent_invoice_note(store: MemoryStore, invoice_id: str) -> Callable[[], None]:
    """A concurrent write of the invoice that touches nothing the service under test changes."""

    def write() -> None:
        current = MemoryStore.get_invoice(store, invoice_id)
        store.save_invoice(current.model_copy(update={"customer_country": "ZZ"}))

    return write


def _descriptions(store: MemoryStore, sub_id: str) -> list[str]:
    return sorted(line["description"] for line in MemoryStore.get_subscription(store, sub_id).pending_lines)


# ------------------------------------------------------------------------------ subscriptions
def test_invoice_item_built_from_the_fresh_subscription_keeps_a_concurrent_item() -> None:
    w, store = world()
    _, price = w.catalog()
    sub_id = w.active_subscription(price).subscription.id
    store.arm(sub_id, _concurrent_item(w, sub_id))
    add_invoice_item(w.billing, sub_id, amount=500, description="mine")
    assert store.interleaved == 1
    assert _descriptions(store, sub_id) == ["concurrent", "mine"]


def test_update_subscription_outlasts_twenty_concurrent_writers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty writers, one winner per round: the 20th writer loses 19 times and must still land
    (three attempts answered 17 of 20 invoice items with a 409)."""
    monkeypatch.setattr(context_module, "retry_pause", lambda attempt: None)
    w, store = world()
    _, price = w.catalog()
    sub_id = w.active_subscription(price).subscription.id
    losses = 19
    assert losses < CONTENDED_RETRIES

    def lose_again(n: int) -> Callable[[], None]:
        def write() -> None:
            add_invoice_item(w.billing, sub_id, amount=100, description=f"other {n:02d}")
            if n + 1 < losses:
                store.arm(sub_id, lose_again(n + 1))

        return write

    store.arm(sub_id, lose_again(0))
    add_invoice_item(w.billing, sub_id, amount=500, description="last")
    assert len(MemoryStore.get_subscription(store, sub_id).pending_lines) == losses + 1


def test_cancel_at_period_end_keeps_a_concurrent_item() -> None:
    w, store = world()
    _, price = w.catalog()
    sub_id = w.active_subscription(price).subscription.id
    store.arm(sub_id, _concurrent_item(w, sub_id))
    saved = cancel(w.billing, sub_id, at_period_end=True, details=CancellationDetails())
    assert saved.cancel_at_period_end and _descriptions(store, sub_id) == ["concurrent"]


def test_pause_collection_keeps_a_concurrent_item() -> None:
    w, store = world()
    _, price = w.catalog()
    sub_id = w.active_subscription(price).subscription.id
    store.arm(sub_id, _concurrent_item(w, sub_id))
    saved = pause_collection(w.billing, sub_id, PauseBehavior.VOID)
    assert saved.pause_collection is not None and _descriptions(store, sub_id) == ["concurrent"]


def test_discount_keeps_a_concurrent_item() -> None:
    w, store = world()
    _, price = w.catalog()
    sub_id = w.active_subscription(price).subscription.id
    coupon = create_coupon(w.billing, id="TENOFF", percent_off=10, duration="forever")
    store.arm(sub_id, _concurrent_item(w, sub_id))
    saved = apply_subscription_discount(w.billing, sub_id, coupon_id=coupon.id)
    assert saved.discount is not None and _descriptions(store, sub_id) == ["concurrent"]


def test_change_plan_between_its_read_and_its_write_is_a_conflict_not_a_lost_item() -> None:
    """change_plan reads once (it prices and may invoice from that read): a concurrent write is
    answered Conflict (409: the client asks again) and the concurrent item stays."""
    w, store = world()
    _, price = w.catalog()
    _, dearer = w.catalog(unit_amount=2000)
    sub_id = w.active_subscription(price).subscription.id
    store.arm(sub_id, _concurrent_item(w, sub_id))
    with pytest.raises(Conflict):
        change_plan(w.billing, sub_id, price_id=dearer.id)
    after = MemoryStore.get_subscription(store, sub_id)
    assert _descriptions(store, sub_id) == ["concurrent"] and after.price == price.id
    # asked again, it applies on top of the concurrent write
    changed = change_plan(w.billing, sub_id, price_id=dearer.id).subscription
    assert changed.price == dearer.id
    assert "concurrent" in [line["description"] for line in changed.pending_lines]


# ------------------------------------------------------------------------------ customers
def test_save_payment_method_keeps_a_concurrent_customer_change() -> None:
    w, store = world()
    _, price = w.catalog()
    customer_id = w.active_subscription(price).subscription.customer
    w.gateway.calls.clear()
    store.arm(customer_id, _concurrent_rename(store, customer_id))
    saved = save_payment_method(w.billing, customer_id, "pm_card_mastercard")
    assert saved.name == "Concurrent" and saved.default_payment_method is not None
    assert saved.default_payment_method.payment_method_id == "pm_card_mastercard"
    assert [name for name, _ in w.gateway.calls].count("attach_payment_method") == 1


def test_card_updated_keeps_a_concurrent_customer_change() -> None:
    w, store = world()
    _, price = w.catalog()
    customer = w.store.get_customer(w.active_subscription(price).subscription.customer)
    assert customer.default_payment_method is not None
    pm = stripe_object(
        "payment_method",
        id=customer.default_payment_method.payment_method_id,
        customer=customer.stripe_customer_id,
    )
    pm["card"] = {**pm["card"], "exp_year": 2031, "exp_month": 7}
    store.arm(customer.id, _concurrent_rename(store, customer.id))
    assert card_updated(w.billing, pm, "evt_card") == "applied"
    saved = MemoryStore.get_customer(store, customer.id)
    assert saved.name == "Concurrent" and saved.default_payment_method is not None
    assert (saved.default_payment_method.exp_month, saved.default_payment_method.exp_year) == (7, 2031)


def test_update_customer_keeps_a_concurrent_card() -> None:
    w, store = world()
    _, price = w.catalog()
    customer_id = w.active_subscription(price).subscription.customer

    def concurrent_card() -> None:
        save_payment_method(w.billing, customer_id, "pm_card_mastercard")

    store.arm(customer_id, concurrent_card)
    saved = update_customer(w.billing, customer_id, {"name": "Grace"})
    assert saved.name == "Grace" and saved.default_payment_method is not None
    assert saved.default_payment_method.payment_method_id == "pm_card_mastercard"


# ------------------------------------------------------------------------------ invoices
def _paid_invoice(w: World) -> Invoice:
    _, price = w.catalog()
    result = w.active_subscription(price)
    invoice = w.store.get_invoice(result.invoice.id)
    assert invoice.status is InvoiceStatus.PAID
    return invoice


def test_credit_note_keeps_a_concurrent_invoice_change() -> None:
    w, store = world()
    invoice = _paid_invoice(w)
    store.arm(invoice.id, _concurrent_invoice_note(store, invoice.id))
    line = CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, amount=100, description="goodwill")
    _, saved = credit_invoice(w.billing, invoice.id, CreditNoteRequest(lines=(line,), credit_amount=100))
    assert saved.customer_country == "ZZ" and saved.post_payment_credit_notes_amount == 100


def test_invoice_action_keeps_a_concurrent_invoice_change() -> None:
    w, store = world()
    _, price = w.catalog()
    result = w.checkout(price)  # an open, unpaid first invoice
    invoice_id = result.invoice.id
    assert invoice_id is not None
    store.arm(invoice_id, _concurrent_invoice_note(store, invoice_id))
    voided = invoice_actions.void(w.billing, invoice_id)
    assert voided.status is InvoiceStatus.VOID and voided.customer_country == "ZZ"


def test_refund_event_keeps_a_concurrent_invoice_change() -> None:
    w, store = world()
    invoice = _paid_invoice(w)
    charge = stripe_object(
        "charge",
        id="ch_concurrent",
        payment_intent=invoice.payment_intent,
        amount=invoice.amount_paid,
        amount_refunded=200,
        refunded=False,
        currency=invoice.currency.lower(),
        metadata={"kassa_invoice": invoice.id},
    )
    event = {"id": "evt_refund", "type": "charge.refunded", "created": int(datetime.now(UTC).timestamp())}
    store.arm(invoice.id, _concurrent_invoice_note(store, invoice.id))
    outcome = apply_payment_event(w.billing, event, charge)
    saved = MemoryStore.get_invoice(store, invoice.id)
    assert outcome.startswith("applied"), outcome
    assert saved.customer_country == "ZZ" and saved.charge_amount_refunded == 200
