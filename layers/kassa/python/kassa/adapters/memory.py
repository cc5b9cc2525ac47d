"""In-memory implementation of the BillingStore port, with the DynamoDB adapter's semantics.

For the unit tests (``tests/unit/fakes.py`` exports it as ``FakeStore``) and for running billing
in-process without AWS. ``tests/contract`` runs one suite of the BillingStore contract against this
store and ``DynamoStore``, so what the services see here is what they see on DynamoDB:

* ``save_*``: optimistic lock — Conflict when a stored object's version differs from the given
  object's; stores (and returns) the object with version + 1.
* ``create_subscription`` / ``renew``: atomic; a draft is finalized with the next gapless number
  (the counter only moves when the write happens); ``renew`` raises AlreadyExists when the period's
  invoice exists, Conflict when the subscription (or the customer passed in) changed.
* lists are ordered like the adapter's index keys (``<created, whole seconds>#<id>``), newest first;
  the due and dunning indexes key on whole seconds and are sparse.
* products, prices, coupons, promotion codes and webhook records are written once (``put_*``);
  products and prices change only through ``save_product`` / ``save_price`` (versioned).

Not thread-safe: one store per test or per simulated process.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from heapq import merge
from itertools import islice
from typing import Any, TypeVar

from pydantic import BaseModel

# the due index's shard function; importing the adapter module loads botocore.exceptions (no boto3,
# no client or session is created)
from kassa.adapters.dynamodb import list_position, list_window, shard_of
from kassa.domain.catalog import Price, Product
from kassa.domain.credit_notes import CreditNote
from kassa.domain.customer import Customer, card_expiry_notice_at
from kassa.domain.discounts import Coupon, PromotionCode
from kassa.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from kassa.domain.experiments import Experiment
from kassa.domain.invoice import Invoice, InvoiceStatus, format_number
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.domain.usage import Meter, UsageState, fold, usage_refs
from kassa.services.ports import (
    ListQuery,
    OutboxRecord,
    OutgoingEmail,
    Page,
    UsageKey,
    UsageOutcome,
    UsageWrite,
    WebhookRecord,
)

__all__ = ["MemoryFileStore", "MemoryOutbox", "MemoryStore", "shard_of"]

M = TypeVar("M", bound=BaseModel)

_COLLECTABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


def _copy(model: M) -> M:
    """Stored objects never alias the caller's (pydantic models are mutable): a round trip through
    the model's data, as DynamoDB's is through JSON (4× faster than ``model_copy(deep=True)`` for an
    invoice — the simulator's hottest path, docs/simulator.md)."""
    return type(model).model_validate(model.model_dump())


def _second(when: datetime) -> datetime:
    """The adapter's index keys hold whole seconds (ISO strings without fractions)."""
    return when.astimezone(UTC).replace(microsecond=0)


def _index_order(model: Any) -> tuple[datetime, str]:
    """The order of the adapter's gsi2 sort keys: ``<created>#<id>`` with ``created`` in whole seconds."""
    return _second(model.created), model.id


K = TypeVar("K")
V = TypeVar("V")


class _Indexed(dict[K, V]):
    """A dict that keeps ``index[key] = at(value)`` (entries whose ``at`` is None are left out), the
    same entries as ``(at, key)`` in order (``ordered``), and, with ``owner``, ``owned[owner(value)]``
    (the keys of each customer's objects) up to date as values are stored: the due and dunning indexes
    are read on every sweep and every probe of the virtual clock, a customer's invoices by dunning,
    and recomputing them from every object was O(objects) each time (the simulator,
    docs/simulator.md); in order, a sweep reads only the entries that are due and a probe the first."""

    def __init__(self, at: Any, owner: Any = None) -> None:
        super().__init__()
        self._at = at
        self._owner = owner
        self.index: dict[K, datetime] = {}
        self.ordered: list[tuple[datetime, K]] = []  # sorted
        self.owned: dict[str, dict[K, None]] = {}  # insertion-ordered sets

    def _unindex(self, key: K) -> None:
        at = self.index.pop(key, None)
        if at is not None:
            del self.ordered[bisect_left(self.ordered, (at, key))]

    def __setitem__(self, key: K, value: V) -> None:
        previous = self.get(key)
        super().__setitem__(key, value)
        when = self._at(value)
        self._unindex(key)
        if when is not None:
            self.index[key] = at = _second(when)
            insort(self.ordered, (at, key))
        if self._owner is not None:
            if previous is not None:
                self.owned.get(self._owner(previous), {}).pop(key, None)
            self.owned.setdefault(self._owner(value), {})[key] = None

    def __delitem__(self, key: K) -> None:
        previous = self[key]
        super().__delitem__(key)
        self._unindex(key)
        if self._owner is not None:
            self.owned.get(self._owner(previous), {}).pop(key, None)

    def pop(self, key: K, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        del self[key]
        return value

    def of(self, owner: str) -> list[V]:
        """The values ``owner`` owns."""
        return [self[key] for key in self.owned.get(owner, ())]

    def until(self, cutoff: datetime) -> Iterator[tuple[datetime, K]]:
        """The index's entries ``(at, key)`` with ``at <= cutoff``, in order."""
        for entry in self.ordered:
            if entry[0] > cutoff:
                return
            yield entry

    def first(self) -> datetime | None:
        """The earliest ``at`` of the index."""
        return self.ordered[0][0] if self.ordered else None


def _customer_of(obj: Invoice | Subscription) -> str:
    return obj.customer


def _dunning_at(invoice: Invoice) -> datetime | None:
    return invoice.next_dunning_at if invoice.status in _COLLECTABLE else None


class MemoryStore:
    """An in-memory BillingStore with the DynamoDB adapter's observable behaviour (see the module)."""

    def __init__(self, settings: MerchantSettings | None = None, due_shards: int = 4) -> None:
        self.products: dict[str, Product] = {}
        self.prices: dict[str, Price] = {}
        self.coupons: dict[str, Coupon] = {}
        self.promotion_codes: dict[str, PromotionCode] = {}  # by upper-case code
        self.customers: _Indexed[str, Customer] = _Indexed(card_expiry_notice_at)
        self.emails: dict[str, str] = {}  # lower-case email -> customer id
        self.subscriptions: _Indexed[str, Subscription] = _Indexed(lambda sub: sub.due_at, _customer_of)
        self.invoices: _Indexed[str, Invoice] = _Indexed(_dunning_at, _customer_of)
        self.webhooks: dict[str, WebhookRecord] = {}
        self.claims: dict[str, datetime] = {}
        self.timers: dict[str, datetime] = {}
        self.credit_notes: dict[str, CreditNote] = {}
        self.meters: dict[str, Meter] = {}
        self.experiments: dict[str, Experiment] = {}
        self.running_experiments: dict[str, str] = {}  # product -> its running experiment
        self.meter_names: dict[str, str] = {}  # event name -> meter id
        self.usage: dict[UsageKey, UsageState] = {}
        self.usage_values: dict[UsageKey, set[str]] = {}  # distinct values counted (unique_count)
        self.usage_seen: dict[tuple[str, str], datetime] = {}  # (customer, identifier) -> expires_at
        self.usage_late: dict[tuple[str, str], set[datetime]] = {}  # (subscription, meter) -> closed periods
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

    def _listed(self, object_id: str) -> bool:
        """Whether ``object_id`` is in some list (the adapter: the item has a gsi2 sort key)."""
        kinds = (self.products, self.prices, self.subscriptions, self.invoices, self.experiments)
        return any(object_id in kind for kind in kinds)

    def _page(self, items: list[Any], limit: int, starting_after: str | None) -> Page:
        # newest first, like the adapter's ScanIndexForward=False on <created>#<id>
        ordered = sorted(items, key=_index_order, reverse=True)
        if starting_after:
            ids = [m.id for m in ordered]
            if starting_after not in ids:
                if self._listed(starting_after):
                    raise InvalidInput(f"{starting_after} is not in this list", param="starting_after")
                raise NotFound(f"no such object {starting_after}", param="starting_after")
            ordered = ordered[ids.index(starting_after) + 1 :]
        return Page([_copy(m) for m in ordered[:limit]], has_more=len(ordered) > limit)

    # ------------------------------------------------------------------ catalog
    def put_product(self, product: Product) -> None:
        if product.id in self.products:
            raise AlreadyExists(f"product {product.id} already exists")
        self.products[product.id] = _copy(product)
        self.writes += 1

    def get_product(self, product_id: str) -> Product:
        if product_id not in self.products:
            raise NotFound(f"no such product: {product_id}", param="product")
        return _copy(self.products[product_id])

    def list_products(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.products.values()), limit, starting_after)

    def put_price(self, price: Price) -> None:
        if price.id in self.prices:
            raise AlreadyExists(f"price {price.id} already exists")
        self.prices[price.id] = _copy(price)
        self.writes += 1

    def get_price(self, price_id: str) -> Price:
        if price_id not in self.prices:
            raise NotFound(f"no such price: {price_id}", param="price_id")
        return _copy(self.prices[price_id])

    def list_prices(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.prices.values()), limit, starting_after)

    def save_product(self, product: Product) -> Product:
        self._check_version(self.products.get(product.id), product)
        saved = product.model_copy(update={"version": product.version + 1})
        self.products[product.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def save_price(self, price: Price) -> Price:
        self._check_version(self.prices.get(price.id), price)
        saved = price.model_copy(update={"version": price.version + 1})
        self.prices[price.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    # ------------------------------------------------------------------ coupons and promotion codes
    def put_coupon(self, coupon: Coupon) -> None:
        if coupon.id in self.coupons:
            raise AlreadyExists(f"coupon {coupon.id} already exists")
        self.coupons[coupon.id] = _copy(coupon)
        self.writes += 1

    def get_coupon(self, coupon_id: str) -> Coupon:
        if coupon_id not in self.coupons:
            raise NotFound(f"no such coupon: {coupon_id}", param="coupon")
        return _copy(self.coupons[coupon_id])

    def put_promotion_code(self, code: PromotionCode) -> None:
        key = code.code.upper()
        if key in self.promotion_codes:
            raise AlreadyExists(f"promotion code {code.code} already exists", param="code")
        self.promotion_codes[key] = _copy(code)
        self.writes += 1

    def get_promotion_code(self, code: str) -> PromotionCode:
        if code.upper() not in self.promotion_codes:
            raise NotFound(f"no such promotion code: {code}", param="promotion_code")
        return _copy(self.promotion_codes[code.upper()])

    def count_redemption(
        self, coupon: Coupon, code: PromotionCode | None, sub: Subscription | None = None
    ) -> Subscription | None:
        """Store the coupon (and code) with one more redemption: Conflict unless the stored count is
        the one before (two checkouts racing for the last redemption cannot both get it). With ``sub``:
        the subscription is saved in the same write under its version — every condition is checked
        before anything is stored, as in the adapter's transaction."""
        stored_coupon = self.coupons.get(coupon.id)
        if (
            stored_coupon is None
            or stored_coupon.times_redeemed != coupon.times_redeemed - 1
            or stored_coupon.version != coupon.version  # deleted meanwhile
        ):
            raise Conflict(f"coupon {coupon.id} was redeemed concurrently")
        if code is not None:
            stored_code = self.promotion_codes.get(code.code.upper())
            if (
                stored_code is None
                or stored_code.times_redeemed != code.times_redeemed - 1
                or stored_code.version != code.version  # deactivated meanwhile
            ):
                raise Conflict(f"promotion code {code.code} was redeemed concurrently")
        saved = None
        if sub is not None:
            stored_sub = self.subscriptions.get(sub.id)
            if stored_sub is None:  # the adapter's condition: version = :v (the subscription is stored)
                raise Conflict(f"subscription {sub.id} is not stored")
            self._check_version(stored_sub, sub)
            saved = sub.model_copy(update={"version": sub.version + 1})
            self.subscriptions[sub.id] = _copy(saved)
        if code is not None:
            self.promotion_codes[code.code.upper()] = _copy(code)
        self.coupons[coupon.id] = _copy(coupon)
        self.writes += 1
        return _copy(saved) if saved is not None else None

    @staticmethod
    def _check_merchant_change(stored: Coupon | PromotionCode | None, given: Coupon | PromotionCode) -> None:
        # DynamoDB condition: attribute_exists(pk) AND version = :v AND times_redeemed = :t
        if stored is None:
            raise NotFound(f"no such {type(given).__name__}: {given.id}")
        if stored.version != given.version or stored.times_redeemed != given.times_redeemed:
            raise Conflict(f"{type(given).__name__} {given.id} changed; read it again")

    def save_coupon(self, coupon: Coupon) -> Coupon:
        self._check_merchant_change(self.coupons.get(coupon.id), coupon)
        saved = coupon.model_copy(update={"version": coupon.version + 1})
        self.coupons[coupon.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def get_promotion_code_by_id(self, promotion_code_id: str) -> PromotionCode:
        for code in self.promotion_codes.values():
            if code.id == promotion_code_id:
                return _copy(code)
        raise NotFound(f"no such promotion code: {promotion_code_id}", param="promotion_code")

    def save_promotion_code(self, code: PromotionCode) -> PromotionCode:
        key = code.code.upper()
        self._check_merchant_change(self.promotion_codes.get(key), code)
        saved = code.model_copy(update={"version": code.version + 1})
        self.promotion_codes[key] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def _created_listing(self, items: list[Any], limit: int, starting_after: str | None) -> Page:
        # like the adapter's gsi2 listing: only objects with a creation time are listed, newest first
        return self._page([m for m in items if m.created is not None], limit, starting_after)

    def list_coupons(self, limit: int, starting_after: str | None) -> Page:
        return self._created_listing(list(self.coupons.values()), limit, starting_after)

    def list_promotion_codes(self, limit: int, starting_after: str | None) -> Page:
        return self._created_listing(list(self.promotion_codes.values()), limit, starting_after)

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

    def change_customer_email(self, customer: Customer, previous_email: str) -> Customer:
        new_key, old_key = customer.email.strip().lower(), previous_email.strip().lower()
        owner = self.emails.get(new_key)
        if owner is not None and owner != customer.id:
            raise AlreadyExists(f"a customer with email {customer.email} already exists", param="email")
        self._check_version(self.customers.get(customer.id), customer)
        if self.emails.get(old_key) != customer.id:
            raise Conflict(f"customer {customer.id} changed its email meanwhile")
        saved = customer.model_copy(update={"version": customer.version + 1})
        self.customers[customer.id] = _copy(saved)
        del self.emails[old_key]
        self.emails[new_key] = customer.id
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
            numbered = invoice.gets_number_when_stored
            final = invoice.finalize(self._next_number(invoice_prefix), invoice.created) if numbered else invoice
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

    def find_invoice_by_payment_intent(self, payment_intent: str) -> Invoice | None:
        # like the adapter's index: only paid invoices are found by their payment
        for invoice in self.invoices.values():
            if invoice.status is InvoiceStatus.PAID and invoice.payment_intent == payment_intent:
                return _copy(invoice)
        return None

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
        refs = usage_refs(invoice.lines)
        for ref in refs:  # the adapter: each aggregate's update is conditional on the seq that was read
            key = UsageKey(sub.id, ref.meter, ref.period_start)
            if self.usage.get(key, UsageState()).seq != ref.seq:
                raise Conflict(f"the usage of {ref.meter} changed since it was read")
        for ref in refs:
            key = UsageKey(sub.id, ref.meter, ref.period_start)
            state = self.usage.get(key, UsageState())
            self.usage[key] = state.model_copy(
                update={"billed_quantity": ref.quantity, "closed": state.closed or ref.close}
            )
            if ref.late:
                self.usage_late.get((sub.id, ref.meter), set()).discard(_second(ref.period_start))
        sub2 = sub.model_copy(update={"version": sub.version + 1, "latest_invoice": invoice.id})
        numbered = invoice.gets_number_when_stored
        final = invoice.finalize(self._next_number(invoice_prefix), invoice.created) if numbered else invoice
        self.subscriptions[sub2.id] = _copy(sub2)
        self.invoices[final.id] = _copy(final)
        if customer is not None:
            self.customers[customer.id] = _copy(customer.model_copy(update={"version": customer.version + 1}))
        self.writes += 1
        return _copy(sub2), _copy(final)

    def finalize_invoice(
        self, invoice: Invoice, invoice_prefix: str, sub: Subscription | None = None
    ) -> tuple[Invoice, Subscription | None]:
        # one transaction: both versions are checked, then the number is taken and both are written
        self._check_version(self.invoices.get(invoice.id), invoice)
        if sub is not None:
            self._check_version(self.subscriptions.get(sub.id), sub)
        numbered = invoice.with_number(format_number(invoice_prefix, self.invoice_seq + 1))
        self.invoice_seq += 1
        final = numbered.model_copy(update={"version": invoice.version + 1})
        self.invoices[final.id] = _copy(final)
        saved_sub = None
        if sub is not None:
            saved_sub = sub.model_copy(update={"version": sub.version + 1})
            self.subscriptions[sub.id] = _copy(saved_sub)
        self.writes += 1
        return _copy(final), _copy(saved_sub) if saved_sub is not None else None

    def list_customer_invoices(self, customer_id: str, limit: int, starting_after: str | None) -> Page:
        return self._page(self.invoices.of(customer_id), limit, starting_after)

    def list_customer_subscriptions(self, customer_id: str) -> list[Subscription]:
        return list(self._page(self.subscriptions.of(customer_id), 100, None).items)

    # ------------------------------------------------------------------ merchant-wide listings
    def _merchant_listing(self, query: ListQuery, kind: str, objects: dict[str, Any]) -> Page:
        """The adapter's listing semantics (``kassa.adapters.dynamodb.list_window``): positions
        ``<created, whole seconds>#<id>``, newest first; the cursor must be an object of this kind."""
        cursor_id, param = (
            (query.starting_after, "starting_after") if query.starting_after else (query.ending_before, "ending_before")
        )
        cursor = None
        if cursor_id:
            if cursor_id.split("_", 1)[0] != kind:
                raise InvalidInput(f"{cursor_id} is not in this list", param=param)
            if cursor_id not in objects:
                raise NotFound(f"no such object {cursor_id}", param=param)
            cursor = list_position(objects[cursor_id])
        page = list_window(list(objects.values()), query, cursor)
        return Page([_copy(m) for m in page.items], page.has_more)

    def list_customers(self, query: ListQuery) -> Page:
        return self._merchant_listing(query, "cus", self.customers)

    def list_subscriptions(self, query: ListQuery) -> Page:
        return self._merchant_listing(query, "sub", self.subscriptions)

    def list_invoices(self, query: ListQuery) -> Page:
        return self._merchant_listing(query, "in", self.invoices)

    def invoices_by_tax_date(self, start: date, end: date) -> list[Invoice]:
        """Finalized invoices whose tax point is in [start, end], by tax date (then id), like gsi3."""
        if end < start:
            raise InvalidInput("the period ends before it starts", param="to")
        found = [
            i
            for i in self.invoices.values()
            if i.number is not None and i.tax_date is not None and start <= i.tax_date <= end
        ]
        return [_copy(i) for i in sorted(found, key=lambda i: (i.tax_date, i.id))]

    # ------------------------------------------------------------------ due work
    def due_subscriptions(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        due = (
            entry for entry in self.subscriptions.until(_second(now)) if shard_of(entry[1], self.due_shards) == shard
        )
        return [(sub_id, at) for at, sub_id in islice(due, limit)]

    def all_due(self, now: datetime) -> list[str]:
        """What every shard's sweep would return (a test helper)."""
        return [sub_id for shard in range(self.due_shards) for sub_id, _ in self.due_subscriptions(shard, now, 1000)]

    def next_due_after(self, now: datetime) -> datetime | None:
        # the adapter answers the earliest entry of the due index (overdue ones included)
        return self.subscriptions.first()

    # ------------------------------------------------------------------ credit notes
    def get_credit_note(self, credit_note_id: str) -> CreditNote:
        note = self.credit_notes.get(credit_note_id)
        if note is None:
            raise NotFound(f"no such credit note: {credit_note_id}", param="credit_note")
        return _copy(note)

    def list_credit_notes(self, invoice_id: str) -> list[CreditNote]:
        notes = (n for n in self.credit_notes.values() if n.invoice == invoice_id)
        return [_copy(n) for n in sorted(notes, key=lambda n: n.number)]

    def credit_notes_by_tax_date(self, start: date, end: date) -> list[CreditNote]:
        """Notes whose tax date is in [start, end], by tax date (then id), like gsi3."""
        if end < start:
            raise InvalidInput("the period ends before it starts", param="to")
        found = [n for n in self.credit_notes.values() if n.tax_date is not None and start <= n.tax_date <= end]
        return [_copy(n) for n in sorted(found, key=lambda n: (n.tax_date, n.id))]

    def issue_credit_note(self, note: CreditNote, invoice: Invoice, customer: Customer | None) -> Invoice:
        # one transaction: the note once, the invoice and the customer at their versions
        if note.id in self.credit_notes:
            raise Conflict(f"credit note {note.id} exists")
        self._check_version(self.invoices.get(invoice.id), invoice)
        if customer is not None:
            self._check_version(self.customers.get(customer.id), customer)
            self.customers[customer.id] = _copy(customer.model_copy(update={"version": customer.version + 1}))
        saved = invoice.model_copy(update={"version": invoice.version + 1})
        self.invoices[invoice.id] = _copy(saved)
        self.credit_notes[note.id] = _copy(note)
        self.writes += 1
        return _copy(saved)

    # ------------------------------------------------------------------ dunning index
    def due_dunning(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        cutoff = _second(now)
        timers = sorted((_second(at), key) for key, at in self.timers.items() if _second(at) <= cutoff)
        entries = merge(self.invoices.until(cutoff), self.customers.until(cutoff), timers)
        due = (entry for entry in entries if shard_of(entry[1], self.due_shards) == shard)
        return [(entity, at) for at, entity in islice(due, limit)]

    def next_dunning_after(self, now: datetime) -> datetime | None:
        firsts = [self.invoices.first(), self.customers.first(), min(self.timers.values(), default=None)]
        return min((_second(at) for at in firsts if at is not None), default=None)

    def put_timer(self, key: str, at: datetime) -> None:
        self.timers[key] = at
        self.writes += 1

    def delete_timer(self, key: str) -> None:
        self.timers.pop(key, None)
        self.writes += 1

    def list_open_invoices(self, customer_id: str) -> list[Invoice]:
        """The customer's open (or uncollectible) invoices, oldest first."""
        found = [i for i in self.invoices.of(customer_id) if i.status in _COLLECTABLE]
        return [_copy(i) for i in sorted(found, key=_index_order)]

    # ------------------------------------------------------------------ settings
    def get_settings(self) -> MerchantSettings:
        return _copy(self.settings) if self.settings is not None else MerchantSettings()

    def put_settings(self, settings: MerchantSettings) -> None:
        self.settings = _copy(settings)
        self.writes += 1

    # ------------------------------------------------------------------ experiments
    def put_experiment(self, experiment: Experiment) -> None:
        if experiment.product in self.running_experiments:
            raise AlreadyExists(f"product {experiment.product} has a running experiment", param="product")
        if experiment.id in self.experiments:
            raise AlreadyExists(f"experiment {experiment.id} already exists")
        self.experiments[experiment.id] = _copy(experiment)
        self.running_experiments[experiment.product] = experiment.id
        self.writes += 1

    def get_experiment(self, experiment_id: str) -> Experiment:
        if experiment_id not in self.experiments:
            raise NotFound(f"no such experiment: {experiment_id}", param="experiment")
        return _copy(self.experiments[experiment_id])

    def running_experiment(self, product_id: str) -> Experiment | None:
        found = self.running_experiments.get(product_id)
        return self.get_experiment(found) if found else None

    def stop_experiment(self, experiment: Experiment) -> Experiment:
        self._check_version(self.experiments.get(experiment.id), experiment)
        saved = experiment.model_copy(update={"version": experiment.version + 1})
        self.experiments[experiment.id] = _copy(saved)
        if self.running_experiments.get(experiment.product) == experiment.id:
            del self.running_experiments[experiment.product]
        self.writes += 1
        return _copy(saved)

    def list_experiments(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.experiments.values()), limit, starting_after)

    # ------------------------------------------------------------------ usage
    def put_meter(self, meter: Meter) -> None:
        if meter.event_name in self.meter_names:
            raise AlreadyExists(f"a meter for event_name {meter.event_name} already exists", param="event_name")
        if meter.id in self.meters:
            raise AlreadyExists(f"meter {meter.id} already exists")
        self.meters[meter.id] = _copy(meter)
        self.meter_names[meter.event_name] = meter.id
        self.writes += 1

    def get_meter(self, meter_id: str) -> Meter:
        if meter_id not in self.meters:
            raise NotFound(f"no such meter: {meter_id}", param="meter")
        return _copy(self.meters[meter_id])

    def find_meter(self, event_name: str) -> Meter | None:
        meter_id = self.meter_names.get(event_name)
        return self.get_meter(meter_id) if meter_id else None

    def save_meter(self, meter: Meter) -> Meter:
        self._check_version(self.meters.get(meter.id), meter)
        saved = meter.model_copy(update={"version": meter.version + 1})
        self.meters[meter.id] = _copy(saved)
        self.writes += 1
        return _copy(saved)

    def list_meters(self, limit: int, starting_after: str | None) -> Page:
        return self._page(list(self.meters.values()), limit, starting_after)

    def record_usage(self, writes: list[UsageWrite]) -> list[UsageOutcome]:
        outcomes = []
        for write in writes:
            event = write.event
            seen = (event.customer, event.identifier)
            if seen in self.usage_seen:
                outcomes.append(UsageOutcome.DUPLICATE)
                continue
            key = UsageKey(write.key.subscription, write.key.meter, _second(write.key.period_start))
            state = self.usage.get(key, UsageState())
            self.usage[key] = fold(state, [event], self.usage_values.setdefault(key, set()))
            self.usage_seen[seen] = write.expires_at
            if state.closed:
                self.usage_late.setdefault((key.subscription, key.meter), set()).add(key.period_start)
                outcomes.append(UsageOutcome.LATE)
            else:
                outcomes.append(UsageOutcome.ACCEPTED)
            self.writes += 1
        return outcomes

    def get_usage(self, key: UsageKey) -> UsageState:
        found = self.usage.get(UsageKey(key.subscription, key.meter, _second(key.period_start)))
        return _copy(found) if found is not None else UsageState()

    def late_usage(self, subscription_id: str, meter_id: str) -> list[datetime]:
        return sorted(self.usage_late.get((subscription_id, meter_id), set()))

    # ------------------------------------------------------------------ webhook events
    def record_webhook(self, record: WebhookRecord) -> WebhookRecord | None:
        if record.id in self.webhooks:
            return self.webhooks[record.id]
        # as the adapter stores it: the time in whole seconds, an empty note as none
        self.webhooks[record.id] = replace(record, received_at=_second(record.received_at), note=record.note or None)
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

    # ------------------------------------------------------------------ once-only markers
    def claim_once(self, key: str, expires_at: datetime) -> bool:
        if key in self.claims:
            return False
        self.claims[key] = _second(expires_at)
        self.writes += 1
        return True

    def is_claimed(self, key: str) -> bool:
        return key in self.claims

    def release_claim(self, key: str) -> None:
        if self.claims.pop(key, None) is not None:
            self.writes += 1


class MemoryFileStore:
    """The ``FileStore`` port in memory, with S3's conditional write (the first writer of a key wins)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool:
        if only_if_absent and key in self.objects:
            return False
        self.objects[key] = (bytes(data), content_type)
        return True

    def get(self, key: str) -> bytes | None:
        found = self.objects.get(key)
        return found[0] if found else None


class MemoryOutbox:
    """The ``Outbox`` port in memory: a key is claimed once (the DynamoDB outbox's conditional put)."""

    def __init__(self) -> None:
        self.records: dict[str, OutboxRecord] = {}

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
