"""In-memory test doubles for kassa's ports: no network, no AWS, no Stripe.

``FakeStore`` follows the contract of ``kassa.services.ports.BillingStore`` and mirrors the DynamoDB
adapter's observable behaviour (optimistic versions, gapless numbering, the sparse due index,
write-once webhook records), so service tests exercise the same rules the real store enforces.
"""

from __future__ import annotations

import copy
import itertools
import json
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.credit_notes import CreditNote
from kassa.domain.customer import Address, CardSummary, Customer, card_expiry_notice_at
from kassa.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PaymentProviderError
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice, InvoiceStatus, format_number
from kassa.domain.money import Money
from kassa.domain.periods import Interval
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.services.billing import Billing, CheckoutResult
from kassa.services.ports import (
    ChargeResult,
    ChargeStatus,
    OutboxRecord,
    OutgoingEmail,
    Page,
    SetupIntentInfo,
    WebhookRecord,
)

M = TypeVar("M", bound=BaseModel)


def _copy(model: M) -> M:
    """Stored objects never alias the caller's (pydantic models are mutable)."""
    return model.model_copy(deep=True)


def shard_of(entity_id: str, shards: int) -> int:
    """The same shard function as the DynamoDB adapter's due index."""
    return zlib.crc32(entity_id.encode()) % shards


def _second(when: datetime) -> datetime:
    """The due index keys on whole seconds (ISO strings without fractions), like DynamoDB's."""
    return when.astimezone(UTC).replace(microsecond=0)


# ---------------------------------------------------------------------------------------- clock
class FixedClock:
    """A clock that only moves when told to (never backwards)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("the clock never goes backwards")
        self._now += step
        return self._now

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None or when < self._now:
            raise ValueError("set an aware datetime, not in the past")
        self._now = when.astimezone(UTC)
        return self._now


# ---------------------------------------------------------------------------------------- events
class ListPublisher:
    """Collects every published DomainEvent, in order."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: list[DomainEvent]) -> None:
        self.events.extend(events)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of_type(self, event_type: str) -> list[DomainEvent]:
        return [e for e in self.events if e.type == event_type]

    def clear(self) -> None:
        self.events.clear()


class ListQueue:
    """A WorkQueue that keeps what was sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)


# ---------------------------------------------------------------------------------------- store
class FakeStore:
    """An in-memory BillingStore with the DynamoDB adapter's semantics.

    * ``save_*``: optimistic lock — Conflict when a stored object's version differs from the given
      object's; stores (and returns) the object with version + 1.
    * ``create_subscription`` / ``renew``: atomic; the invoice is finalized with the next gapless
      number (the counter only moves when the write happens); ``renew`` raises AlreadyExists when
      the period's invoice exists, Conflict when the subscription changed.
    * the due index is derived from ``Subscription.due_at`` (sparse: None drops out).
    * webhook records are written once; only ``processed`` is final for ``mark_webhook``.
    """

    def __init__(self, settings: MerchantSettings | None = None, due_shards: int = 4) -> None:
        self.products: dict[str, Product] = {}
        self.prices: dict[str, Price] = {}
        self.customers: dict[str, Customer] = {}
        self.emails: dict[str, str] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.invoices: dict[str, Invoice] = {}
        self.webhooks: dict[str, WebhookRecord] = {}
        self.timers: dict[str, datetime] = {}
        self.credit_notes: dict[str, CreditNote] = {}
        self.settings = settings
        self.invoice_seq = 0
        self.due_shards = due_shards
        self.writes = 0  # successful writes, to assert that nothing was written

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_version(stored: Any, given: Any) -> None:
        # DynamoDB condition: attribute_not_exists(pk) OR version = :expected
        if stored is not None and stored.version != given.version:
            kind = type(given).__name__
            raise Conflict(f"{kind} {given.id} changed (stored v{stored.version}, given v{given.version})")

    def _next_number(self, prefix: str) -> str:
        self.invoice_seq += 1
        return format_number(prefix, self.invoice_seq)

    @staticmethod
    def _page(items: list[Any], limit: int, starting_after: str | None) -> Page:
        # newest first, like the adapter's ScanIndexForward=False on (created, id)
        ordered = sorted(items, key=lambda m: (m.created, m.id), reverse=True)
        if starting_after is not None:
            ids = [m.id for m in ordered]
            if starting_after not in ids:
                raise NotFound(f"no such object {starting_after}", param="starting_after")
            ordered = ordered[ids.index(starting_after) + 1 :]
        return Page([_copy(m) for m in ordered[:limit]], has_more=len(ordered) > limit)

    # ------------------------------------------------------------------ catalog
    def put_product(self, product: Product) -> None:
        self.products[product.id] = _copy(product)
        self.writes += 1

    def get_product(self, product_id: str) -> Product:
        if product_id not in self.products:
            raise NotFound(f"no such product: {product_id}", param="product")
        return _copy(self.products[product_id])

    def list_products(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.products.values()), limit, starting_after)

    def put_price(self, price: Price) -> None:
        self.prices[price.id] = _copy(price)
        self.writes += 1

    def get_price(self, price_id: str) -> Price:
        if price_id not in self.prices:
            raise NotFound(f"no such price: {price_id}", param="price_id")
        return _copy(self.prices[price_id])

    def list_prices(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.prices.values()), limit, starting_after)

    # ------------------------------------------------------------------ customers
    def create_customer(self, customer: Customer) -> None:
        key = customer.email.strip().lower()
        if customer.id in self.customers or key in self.emails:
            raise AlreadyExists(f"a customer with email {customer.email} already exists", param="customer.email")
        self.customers[customer.id] = _copy(customer)
        self.emails[key] = customer.id
        self.writes += 1

    def get_customer(self, customer_id: str) -> Customer:
        if customer_id not in self.customers:
            raise NotFound(f"no such customer: {customer_id}", param="customer_id")
        return _copy(self.customers[customer_id])

    def find_customer_by_email(self, email: str) -> Customer | None:
        customer_id = self.emails.get(email.strip().lower())
        return self.get_customer(customer_id) if customer_id else None

    def save_customer(self, customer: Customer) -> Customer:
        self._check_version(self.customers.get(customer.id), customer)
        saved = customer.model_copy(update={"version": customer.version + 1})
        self.customers[customer.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    # ------------------------------------------------------------------ subscriptions and invoices
    def create_subscription(self, sub: Subscription, invoice: Invoice | None, invoice_prefix: str) -> Invoice | None:
        if sub.id in self.subscriptions:
            raise AlreadyExists(f"subscription {sub.id} already exists")
        if invoice is not None and invoice.id in self.invoices:
            raise Conflict(f"invoice {invoice.id} already exists")
        final = None
        if invoice is not None:
            final = invoice.finalize(self._next_number(invoice_prefix), invoice.created)
            self.invoices[final.id] = _copy(final)
        self.subscriptions[sub.id] = _copy(sub)
        self.writes += 1
        return _copy(final) if final is not None else None

    def get_subscription(self, subscription_id: str) -> Subscription:
        if subscription_id not in self.subscriptions:
            raise NotFound(f"no such subscription: {subscription_id}", param="subscription")
        return _copy(self.subscriptions[subscription_id])

    def save_subscription(self, sub: Subscription) -> Subscription:
        self._check_version(self.subscriptions.get(sub.id), sub)
        saved = sub.model_copy(update={"version": sub.version + 1})
        self.subscriptions[sub.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def get_invoice(self, invoice_id: str) -> Invoice:
        found = self.find_invoice(invoice_id)
        if found is None:
            raise NotFound(f"no such invoice: {invoice_id}", param="invoice")
        return found

    def find_invoice(self, invoice_id: str) -> Invoice | None:
        found = self.invoices.get(invoice_id)
        return _copy(found) if found is not None else None

    def save_invoice(self, invoice: Invoice) -> Invoice:
        self._check_version(self.invoices.get(invoice.id), invoice)
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        self.invoices[invoice.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def save_invoice_and_subscription(
        self, invoice: Invoice, sub: Subscription | None
    ) -> tuple[Invoice, Subscription | None]:
        if sub is None:
            return self.save_invoice(invoice), None
        # one transaction: both conditions are checked before anything is written
        self._check_version(self.invoices.get(invoice.id), invoice)
        self._check_version(self.subscriptions.get(sub.id), sub)
        inv2 = invoice.model_copy(update={"version": invoice.version + 1})
        sub2 = sub.model_copy(update={"version": sub.version + 1})
        self.invoices[inv2.id] = _copy(inv2)
        self.subscriptions[sub2.id] = _copy(sub2)
        self.writes += 1
        return _copy(inv2), _copy(sub2)

    def renew(
        self, sub: Subscription, invoice: Invoice, invoice_prefix: str, customer: Customer | None = None
    ) -> tuple[Subscription, Invoice]:
        if invoice.id in self.invoices:  # checked first, as the adapter does after a cancelled transaction
            raise AlreadyExists(f"invoice {invoice.id} already exists")
        self._check_version(self.subscriptions.get(sub.id), sub)
        if customer is not None:
            self._check_version(self.customers.get(customer.id), customer)
        sub2 = sub.model_copy(update={"version": sub.version + 1, "latest_invoice": invoice.id})
        numbered = invoice.status is InvoiceStatus.DRAFT and not invoice.keep_as_draft
        final = invoice.finalize(self._next_number(invoice_prefix), invoice.created) if numbered else invoice
        self.subscriptions[sub2.id] = _copy(sub2)
        self.invoices[final.id] = _copy(final)
        if customer is not None:
            self.customers[customer.id] = _copy(customer.model_copy(update={"version": customer.version + 1}))
        self.writes += 1
        return _copy(sub2), _copy(final)

    def list_customer_invoices(self, customer_id: str, limit: int, starting_after: str | None) -> Page:
        return self._page([i for i in self.invoices.values() if i.customer == customer_id], limit, starting_after)

    def list_customer_subscriptions(self, customer_id: str) -> list[Subscription]:
        return list(self._page([s for s in self.subscriptions.values() if s.customer == customer_id], 100, None).items)

    # ------------------------------------------------------------------ due work
    def _due_index(self) -> list[tuple[datetime, str]]:
        entries = [(_second(s.due_at), s.id) for s in self.subscriptions.values() if s.due_at is not None]
        return sorted(entries)

    def due_subscriptions(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        cutoff = _second(now)
        return [
            (sub_id, due)
            for due, sub_id in self._due_index()
            if shard_of(sub_id, self.due_shards) == shard and due <= cutoff
        ][:limit]

    def all_due(self, now: datetime) -> list[str]:
        """Test helper: what every shard's sweep would return."""
        return [sub_id for shard in range(self.due_shards) for sub_id, _ in self.due_subscriptions(shard, now, 1000)]

    def next_due_after(self, now: datetime) -> datetime | None:
        # the adapter answers the earliest entry of the due index (overdue ones included)
        index = self._due_index()
        return index[0][0] if index else None

    # ------------------------------------------------------------------ credit notes
    def list_credit_notes(self, invoice_id: str) -> list[CreditNote]:
        return sorted((n for n in self.credit_notes.values() if n.invoice == invoice_id), key=lambda n: n.number)

    def issue_credit_note(self, note: CreditNote, invoice: Invoice, customer: Customer | None) -> Invoice:
        # one transaction: the note once, the invoice and the customer at their versions
        if note.id in self.credit_notes:
            raise Conflict(f"credit note {note.id} exists")
        self._check_version(self.invoices.get(invoice.id), invoice)
        if customer is not None:
            self._check_version(self.customers.get(customer.id), customer)
            self.customers[customer.id] = customer.model_copy(update={"version": customer.version + 1})
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        self.invoices[invoice.id] = saved
        self.credit_notes[note.id] = note
        self.writes += 1
        return _copy(saved)

    def invoices_by_tax_date(self, start: date, end: date) -> list[Invoice]:
        return [
            _copy(i)
            for i in self.invoices.values()
            if i.number is not None and i.tax_date is not None and start <= i.tax_date <= end
        ]

    # ------------------------------------------------------------------ dunning index
    def _dunning_index(self) -> list[tuple[datetime, str]]:
        entries = [
            (_second(i.next_dunning_at), i.id)
            for i in self.invoices.values()
            if i.next_dunning_at is not None and i.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
        ]
        entries += [
            (_second(at), c.id) for c in self.customers.values() if (at := card_expiry_notice_at(c)) is not None
        ]
        entries += [(_second(at), key) for key, at in self.timers.items()]
        return sorted(entries)

    def due_dunning(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        cutoff = _second(now)
        return [
            (entity, due)
            for due, entity in self._dunning_index()
            if shard_of(entity, self.due_shards) == shard and due <= cutoff
        ][:limit]

    def next_dunning_after(self, now: datetime) -> datetime | None:
        index = self._dunning_index()
        return index[0][0] if index else None

    def put_timer(self, key: str, at: datetime) -> None:
        self.timers[key] = at
        self.writes += 1

    def delete_timer(self, key: str) -> None:
        self.timers.pop(key, None)
        self.writes += 1

    def list_open_invoices(self, customer_id: str) -> list[Invoice]:
        found = [
            i
            for i in self.invoices.values()
            if i.customer == customer_id and i.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
        ]
        return [_copy(i) for i in sorted(found, key=lambda i: (i.created, i.id))]

    # ------------------------------------------------------------------ settings
    def get_settings(self) -> MerchantSettings:
        return _copy(self.settings) if self.settings is not None else MerchantSettings()

    def put_settings(self, settings: MerchantSettings) -> None:
        self.settings = _copy(settings)
        self.writes += 1

    # ------------------------------------------------------------------ webhook events
    def record_webhook(self, record: WebhookRecord) -> WebhookRecord | None:
        if record.id in self.webhooks:
            return self.webhooks[record.id]
        self.webhooks[record.id] = record
        self.writes += 1
        return None

    def get_webhook(self, event_id: str) -> WebhookRecord | None:
        return self.webhooks.get(event_id)

    def mark_webhook(self, event_id: str, status: str, note: str | None = None) -> bool:
        current = self.webhooks.get(event_id)
        if current is None or current.status == "processed":
            return False
        self.webhooks[event_id] = replace(current, status=status, note=note[:1000] if note else current.note)
        self.writes += 1
        return True


# ---------------------------------------------------------------------------------------- gateway
_CHARGE_RESULT_HAS_ATTEMPT = "attempt" in getattr(ChargeResult, "__dataclass_fields__", {})

OutcomeKind = Literal["succeed", "decline", "requires_action", "processing", "error", "lost_success"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


@dataclass
class ChargeCall:
    customer: str
    payment_method: str
    amount: Money
    invoice_id: str
    attempt: int
    description: str
    result: ChargeResult | None = None


@dataclass
class FakeGateway:
    """A PaymentGateway that records calls; charge outcomes are configured per payment method.

    Outcomes: ``succeed`` (default), ``decline`` (with code / decline_code), ``requires_action``,
    ``processing``, ``error`` (PaymentProviderError, nothing charged) and ``lost_success`` (Stripe
    charged the card but the answer was lost: PaymentProviderError). Like Stripe, one idempotency key
    per (invoice, attempt): a repeated key replays the first result without charging again.
    """

    publishable_key: str = "pk_test_fake"
    setup_payment_method: str | None = "pm_card_visa"  # created SetupIntents are confirmed with this card
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    charge_calls: list[ChargeCall] = field(default_factory=list)
    setup_intents: dict[str, SetupIntentInfo] = field(default_factory=dict)
    stripe_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent: dict[tuple[str, int], ChargeResult] = field(default_factory=dict)
    succeeded_intents: list[tuple[str, str]] = field(default_factory=list)  # (invoice_id, payment_intent)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- configuration
    def will(self, payment_method: str, *outcomes: Outcome) -> None:
        """Outcomes for successive charges of this payment method (the last one repeats)."""
        self.outcomes[payment_method] = list(outcomes)

    def will_succeed(self, payment_method: str) -> None:
        self.will(payment_method, Outcome("succeed"))

    def will_decline(
        self, payment_method: str, code: str = "card_declined", decline_code: str | None = "insufficient_funds"
    ) -> None:
        self.will(payment_method, Outcome("decline", code, decline_code, "Your card has insufficient funds."))

    def will_require_action(self, payment_method: str) -> None:
        self.will(payment_method, Outcome("requires_action", "authentication_required"))

    def _next_outcome(self, payment_method: str) -> Outcome:
        queue = self.outcomes.get(payment_method)
        if not queue:
            return Outcome("succeed")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._seq):06d}"

    # --- port
    def create_customer(self, *, email: str, name: str | None, address: Address, kassa_id: str) -> str:
        self.calls.append(("create_customer", {"email": email, "kassa_id": kassa_id}))
        customer_id = self._id("cus")
        self.stripe_customers[customer_id] = {"email": email, "name": name, "kassa_id": kassa_id}
        return customer_id

    def kassa_customer_of(self, customer: str) -> str | None:
        self.calls.append(("kassa_customer_of", {"customer": customer}))
        found = self.stripe_customers.get(customer)
        return found["kassa_id"] if found else None

    def create_setup_intent(self, *, customer: str, metadata: dict[str, str]) -> SetupIntentInfo:
        self.calls.append(("create_setup_intent", {"customer": customer, "metadata": dict(metadata)}))
        intent_id = self._id("seti")
        confirmed = self.setup_payment_method is not None
        info = SetupIntentInfo(
            id=intent_id,
            client_secret=f"{intent_id}_secret_x",
            status="succeeded" if confirmed else "requires_payment_method",
            payment_method=self.setup_payment_method,
            customer=customer,
            metadata=dict(metadata),
        )
        self.setup_intents[intent_id] = info
        return info

    def confirm_setup_intent(self, setup_intent_id: str, payment_method: str) -> SetupIntentInfo:
        """What Stripe.js does in the browser."""
        info = replace(self.setup_intents[setup_intent_id], status="succeeded", payment_method=payment_method)
        self.setup_intents[setup_intent_id] = info
        return info

    def get_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        self.calls.append(("get_setup_intent", {"id": setup_intent_id}))
        if setup_intent_id not in self.setup_intents:
            raise NotFound(f"No such setupintent: '{setup_intent_id}'", param="intent")
        return self.setup_intents[setup_intent_id]

    def attach_payment_method(self, *, payment_method: str, customer: str) -> CardSummary:
        self.calls.append(("attach_payment_method", {"payment_method": payment_method, "customer": customer}))
        if customer not in self.stripe_customers:
            raise InvalidInput(f"No such customer: '{customer}'", param="customer")
        return CardSummary(payment_method_id=payment_method, brand="visa", last4="4242", exp_month=12, exp_year=2034)

    def charge(
        self, *, customer: str, payment_method: str, amount: Money, invoice_id: str, attempt: int, description: str
    ) -> ChargeResult:
        call = ChargeCall(customer, payment_method, amount, invoice_id, attempt, description)
        self.charge_calls.append(call)
        self.calls.append(("charge", {"invoice_id": invoice_id, "attempt": attempt, "amount": amount}))
        key = (invoice_id, attempt)
        if key in self.idempotent:  # Stripe replays the first answer for a reused idempotency key
            call.result = self.idempotent[key]
            return call.result
        outcome = self._next_outcome(payment_method)
        if outcome.kind == "error":
            raise PaymentProviderError("Stripe unavailable: connection reset")
        intent = self._id("pi")
        if outcome.kind in ("succeed", "lost_success"):
            result = ChargeResult(ChargeStatus.SUCCEEDED, intent, client_secret=f"{intent}_secret_x")
            self.succeeded_intents.append((invoice_id, intent))
        elif outcome.kind == "processing":
            result = ChargeResult(ChargeStatus.PROCESSING, intent)
        elif outcome.kind == "requires_action":
            result = ChargeResult(
                ChargeStatus.REQUIRES_ACTION,
                intent,
                code=outcome.code or "authentication_required",
                client_secret=f"{intent}_secret_x",
            )
        else:
            result = ChargeResult(
                ChargeStatus.DECLINED,
                intent,
                code=outcome.code or "card_declined",
                decline_code=outcome.decline_code,
                message=outcome.message,
            )
        if _CHARGE_RESULT_HAS_ATTEMPT:  # the real gateway reports kassa's attempt number (PaymentIntent metadata)
            result = replace(result, attempt=attempt)  # type: ignore[call-arg]
        self.idempotent[key] = result
        if outcome.kind == "lost_success":
            raise PaymentProviderError("Stripe unavailable: read timeout")
        call.result = result
        return result

    # --- inspection
    def charges_for(self, invoice_id: str) -> list[ChargeCall]:
        return [c for c in self.charge_calls if c.invoice_id == invoice_id]

    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]


# ---------------------------------------------------------------------------------------- wiring
START = datetime(2025, 1, 31, 10, 0, 0, tzinfo=UTC)  # an end-of-month anchor on purpose

FIXTURE_EVENT_ID = "evt_1Pgc76B7WZ01zgkWwyRHS12y"
_FIXTURES = Path("/work/shared/reference/stripe-fixtures3.json")


@cache
def _stripe_resources() -> dict[str, Any]:
    return json.loads(_FIXTURES.read_text())["resources"]


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    """A real Stripe example object (stripe/openapi fixtures3.json) with some fields overridden."""
    obj = copy.deepcopy(_stripe_resources()[kind])
    obj.update(overrides)
    return obj


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str = FIXTURE_EVENT_ID) -> dict[str, Any]:
    """The fixture ``event`` envelope around ``obj`` (every other envelope field kept as Stripe sends it)."""
    event = stripe_object("event", id=event_id, type=event_type)
    event["data"] = {"object": obj, "previous_attributes": {}}
    return event


@dataclass
class World:
    store: FakeStore
    gateway: FakeGateway
    publisher: ListPublisher
    clock: FixedClock
    billing: Billing

    def catalog(self, unit_amount: int = 1000, currency: str = "eur", **recurring: Any) -> tuple[Product, Price]:
        product = self.billing.create_product("Pro plan")
        rec = Recurring(**({"interval": Interval.MONTH} | recurring))
        price = self.billing.create_price(product.id, currency, unit_amount, rec)
        return product, price

    def checkout(self, price: Price, email: str = "ada@example.com", **kwargs: Any) -> CheckoutResult:
        return self.billing.start_checkout(
            price_id=price.id, email=email, name="Ada", address=Address(country="US", state="OR"), **kwargs
        )

    def active_subscription(self, price: Price, **kwargs: Any) -> CheckoutResult:
        """Checkout and pay the first invoice with the default (succeeding) card."""
        result = self.checkout(price, **kwargs)
        self.billing.complete_checkout(result.subscription.id, result.setup_intent.id)
        return result


def make_world(start: datetime = START) -> World:
    store, gateway, publisher, clock = FakeStore(), FakeGateway(), ListPublisher(), FixedClock(start)
    return World(store, gateway, publisher, clock, Billing(store, gateway, publisher, clock))


# ---------------------------------------------------------------------------------------- email
@dataclass
class FakeOutbox:
    """The Outbox port in memory: a key is claimed once."""

    records: dict[str, OutboxRecord] = field(default_factory=dict)

    def claim(self, email: OutgoingEmail) -> OutboxRecord | None:
        if email.key in self.records:
            return self.records[email.key]
        self.records[email.key] = OutboxRecord(email=email, status="pending")
        return None

    def mark_sent(self, key: str, message_id: str, sent_at: datetime) -> None:
        self.records[key] = replace(self.records[key], status="sent", message_id=message_id, sent_at=sent_at)

    def mark_failed(self, key: str, error: str) -> None:
        self.records[key] = replace(self.records[key], status="failed", error=error)

    def get(self, key: str) -> OutboxRecord | None:
        return self.records.get(key)

    def list_customer(self, customer_id: str, limit: int = 100) -> list[OutboxRecord]:
        found = [r for r in self.records.values() if r.email.customer == customer_id]
        return sorted(found, key=lambda r: (r.email.created, r.email.key), reverse=True)[:limit]

    def list_month(self, month: str, limit: int = 100) -> list[OutboxRecord]:
        found = [r for r in self.records.values() if r.email.created.strftime("%Y-%m") == month]
        return sorted(found, key=lambda r: (r.email.created, r.email.key), reverse=True)[:limit]


@dataclass
class FakeMailer:
    """Records what was handed to the mail service; ``fail_with`` makes the next send raise."""

    sent: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    fail_with: Exception | None = None

    def send(self, email: OutgoingEmail, sender: str) -> str:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        self.sent.append((email, sender))
        return f"msg-{len(self.sent)}"

    def templates(self, customer: str | None = None) -> list[str]:
        return [e.template for e, _ in self.sent if customer is None or e.customer == customer]
