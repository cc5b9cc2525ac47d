"""Entitlements: what a customer may use right now, derived from their subscriptions.

- ``trialing`` and ``active`` give access; so does ``past_due`` until dunning suspends it
  (``past_due_access=False`` turns that off globally; ``suspended`` lists subscriptions whose
  entitlement the dunning policy disabled — Kill Bill's "disable entitlement" action).
- ``paused``, ``canceled``, ``incomplete``, ``incomplete_expired`` and ``unpaid`` give none.
- ``pause_collection`` (keep_as_draft, mark_uncollectible, void) leaves the status ``active``, so
  access continues: that is what pausing *collection* means (Stripe).
- ``cancel_at_period_end`` keeps access until the period end, then none — even if the worker that
  cancels the subscription is late.
- A renewing subscription keeps access past its period end while its renewal is being processed;
  ``valid_until`` then lies in the past and tells the storefront to ask again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from kassa.domain.errors import InvalidInput
from kassa.domain.periods import ensure_utc
from kassa.domain.subscription import Status, Subscription

ACCESS_STATUSES = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE})


class Entitlement(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer: str
    product: str
    price: str
    subscription: str
    quantity: int
    status: Status
    valid_until: datetime  # the access is certain until then (trial end or period end)
    renews: bool  # False: access ends at valid_until (cancel at period end)


def grants_access(
    sub: Subscription,
    now: datetime,
    *,
    past_due_access: bool = True,
    suspended: Collection[str] = (),
) -> bool:
    now = ensure_utc(now)
    if sub.id in suspended or sub.status not in ACCESS_STATUSES or sub.created > now:
        return False
    if sub.status is Status.PAST_DUE and not past_due_access:
        return False
    if sub.ended_at is not None and sub.ended_at <= now:
        return False
    return not (sub.cancel_at_period_end and now >= sub.current_period_end)


def entitlements(
    subscriptions: Iterable[Subscription],
    now: datetime,
    *,
    products: Mapping[str, str],
    past_due_access: bool = True,
    suspended: Collection[str] = (),
) -> list[Entitlement]:
    """One entitlement per product of each item of a subscription that gives access at ``now``,
    ordered by product then subscription.

    ``products`` maps price ids to product ids (used for items stored without their product).
    """
    result = []
    for sub in subscriptions:
        if not grants_access(sub, now, past_due_access=past_due_access, suspended=suspended):
            continue
        valid_until = sub.current_period_end
        if sub.status is Status.TRIALING and sub.trial_end is not None:
            valid_until = sub.trial_end
        for item in sub.items:
            product = item.product or products.get(item.price)
            if product is None:
                raise InvalidInput(f"no product known for price {item.price}", param="products")
            result.append(
                Entitlement(
                    customer=sub.customer,
                    product=product,
                    price=item.price,
                    subscription=sub.id,
                    quantity=item.quantity,
                    status=sub.status,
                    valid_until=valid_until,
                    renews=not sub.cancel_at_period_end,
                )
            )
    return sorted(result, key=lambda e: (e.product, e.subscription))


def entitled_products(found: Iterable[Entitlement]) -> frozenset[str]:
    return frozenset(e.product for e in found)
