"""What every billing use case shares: the ports (store, gateway, publisher, clock, tax) and the
catalog read once per invocation.

One ``BillingContext`` is built per Lambda invocation (``kassa.adapters.container.billing``), per
local request, or per unit test; the use-case modules (``checkout``, ``collection``, ``renewals``,
``plan_changes``…) are functions over it. It holds no billing rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kassa.domain.catalog import Price, Product
from kassa.domain.errors import Conflict, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.subscription import Subscription, ensure_not_ended
from kassa.services.ports import BillingStore, Clock, EventPublisher, PaymentGateway
from kassa.services.tax import TaxQuoter

#: how often a use case reads again and retries when an optimistic write loses to a concurrent one
RETRIES = 3
#: ``update_subscription``'s attempts: a hot subscription (20 one-off items posted at once) has as many
#: concurrent writers, and each round only one of them wins
CONTENDED_RETRIES = 30


def retry_pause(attempt: int) -> None:
    """Jittered exponential backoff (capped at ~0.2 s) after a write lost to a concurrent one."""
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))


class BillingContext:
    def __init__(
        self,
        store: BillingStore,
        gateway: PaymentGateway | None,
        publisher: EventPublisher,
        clock: Clock,
        tax: TaxQuoter | None = None,
    ) -> None:
        self.store = store
        self._gateway = gateway
        self.publisher = publisher
        self.clock = clock
        self.tax = tax
        self._prices: dict[str, Price] = {}
        self._products: dict[str, Product | None] = {}

    @property
    def gateway(self) -> PaymentGateway:
        if self._gateway is None:  # pragma: no cover - wiring error
            raise RuntimeError("this function has no payment gateway")
        return self._gateway

    def now(self) -> datetime:
        return self.clock.now().replace(microsecond=0)

    def emit(self, *events: DomainEvent) -> None:
        if events:
            self.publisher.publish(list(events))

    def price(self, price_id: str, *, fresh: bool = False) -> Price:
        """A price, read once per context (one per invocation): a price's terms never change, and a
        renewal needs the same one for its line, its tax code and its discount. ``fresh``: read it
        again (whether it is still active)."""
        if fresh or price_id not in self._prices:
            self._prices[price_id] = self.store.get_price(price_id)
        return self._prices[price_id]

    def product(self, product_id: str) -> Product | None:
        """A product, read once per context (None when it is gone)."""
        if product_id not in self._products:
            try:
                self._products[product_id] = self.store.get_product(product_id)
            except NotFound:
                self._products[product_id] = None
        return self._products[product_id]

    def product_of(self, price: Price) -> Product | None:
        return self.product(price.product)

    def product_id(self, price_id: str, known: Mapping[str, str] | None = None) -> str:
        """The product of a price: from ``known`` (a subscription's items carry it) or the price."""
        if known and price_id in known:
            return known[price_id]
        return self.price(price_id).product

    def subscription_of(self, invoice_subscription: str | None) -> Subscription | None:
        return self.store.get_subscription(invoice_subscription) if invoice_subscription else None


def update_subscription(
    ctx: BillingContext,
    subscription_id: str,
    change: Callable[[Subscription], dict[str, Any]] | dict[str, Any],
    cause: str,
) -> Subscription:
    """Write a change to a live subscription under its version, retrying when a concurrent write wins;
    publishes ``customer.subscription.updated`` with the previous values. Asking twice changes nothing.
    ``change`` is computed from each fresh read, so a concurrent write is never lost."""
    for attempt in range(CONTENDED_RETRIES):
        if attempt:
            retry_pause(attempt)
        sub = ctx.store.get_subscription(subscription_id)
        ensure_not_ended(sub)
        changes = change(sub) if callable(change) else change
        changed = sub.model_copy(update=changes)
        if changed == sub:
            return sub
        try:
            saved = ctx.store.save_subscription(changed)
        except Conflict:
            continue
        publish_subscription_updated(ctx, sub, saved, changes, cause)
        return saved
    raise Conflict(f"subscription {subscription_id} kept changing; retry")


def publish_subscription_updated(
    ctx: BillingContext, before: Subscription, saved: Subscription, changed: Iterable[str], cause: str
) -> None:
    """``customer.subscription.updated`` for a write of the ``changed`` fields, with their values
    ``before`` it as the previous attributes (what ``update_subscription`` publishes)."""
    previous = {key: getattr(before, key) for key in changed}
    now = ctx.now()
    ctx.emit(DomainEvent.of("customer.subscription.updated", saved, now, cause=f"{cause}:{now}", previous=previous))
