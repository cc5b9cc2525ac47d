"""Use case: the catalog — products and prices.

Stripe's rules: a price's amounts and terms never change once created (create a new price and archive
the old one); only ``active`` and ``nickname`` may be updated. An archived price (``active: false``)
cannot be bought or switched to, but subscriptions already on it keep renewing. An archived product
gets no new prices. Updates are versioned (a concurrent update is re-read and applied again) and
publish ``product.updated`` / ``price.updated`` with the previous values; an update that changes
nothing writes and publishes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from kassa.domain.catalog import Price, Product, Recurring, TaxBehavior
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.payment_methods import ensure_types
from kassa.domain.pricing import PriceTerms, invalid_from
from kassa.services.context import RETRIES, BillingContext
from kassa.services.ports import BillingStore, Page

M = TypeVar("M", Product, Price)

#: how many catalog objects one store read fetches while filtering a listing (see ``_filtered``)
FILTER_BATCH = 100


def create_product(
    ctx: BillingContext, name: str, description: str | None = None, tax_code: str | None = None
) -> Product:
    product = Product(id=new_id("prod", 14), name=name, description=description, tax_code=tax_code, created=ctx.now())
    ctx.store.put_product(product)
    ctx.emit(DomainEvent.of("product.created", product, product.created, cause="create"))
    return product


def create_price(
    ctx: BillingContext,
    product_id: str,
    currency: str,
    terms: PriceTerms | int,
    recurring: Recurring,
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE,
    nickname: str | None = None,
    payment_method_types: Sequence[str] | None = None,
) -> Price:
    """A new price of an active product. ``terms`` are checked PriceTerms (per unit, package or tiered);
    a bare integer is shorthand for a per-unit price of that ``unit_amount``."""
    if isinstance(terms, int) and not isinstance(terms, bool):
        terms = PriceTerms(unit_amount=terms)
    if not isinstance(terms, PriceTerms):
        raise InvalidInput("terms must be PriceTerms or a unit_amount", param="unit_amount")
    product = ctx.store.get_product(product_id)  # NotFound names the field
    if recurring.meter is not None:
        try:
            ctx.store.get_meter(recurring.meter)
        except NotFound:
            raise NotFound(f"no such meter: {recurring.meter}", param="recurring.meter") from None
    if not product.active:
        raise InvalidInput(f"product {product_id} is archived: it cannot get new prices", param="product")
    price = Price(
        id=new_id("price", 20),
        product=product_id,
        currency=currency,
        unit_amount=terms.unit_amount,
        billing_scheme=terms.billing_scheme,
        tiers_mode=terms.tiers_mode,
        tiers=terms.tiers,
        transform_quantity=terms.transform_quantity,
        unit_amount_decimal=terms.unit_amount_decimal,
        recurring=recurring,
        tax_behavior=tax_behavior,
        nickname=nickname,
        payment_method_types=(
            None if payment_method_types is None else ensure_types(payment_method_types, "payment_method_types")
        ),
        created=ctx.now(),
    )
    ctx.store.put_price(price)
    ctx.emit(DomainEvent.of("price.created", price, price.created, cause="create"))
    return price


def _text(value: str | None) -> str | None:
    """An optional text field of an update: ``""`` removes it (Stripe's way of unsetting a field)."""
    return value or None


def update_product(
    ctx: BillingContext,
    product_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    tax_code: str | None = None,
    active: bool | None = None,
) -> Product:
    """Change what is given (None leaves a field as it is; ``""`` removes description or tax_code).
    ``active=False`` archives the product: it gets no new prices; its prices are untouched."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if description is not None:
        changes["description"] = _text(description)
    if tax_code is not None:
        changes["tax_code"] = _text(tax_code)
    if active is not None:
        changes["active"] = active
    return _update(ctx, "product", product_id, ctx.store.get_product, ctx.store.save_product, changes)


def update_price(
    ctx: BillingContext, price_id: str, *, active: bool | None = None, nickname: str | None = None
) -> Price:
    """Archive (``active=False``) or unarchive a price, or change its nickname (``""`` removes it).
    Nothing else of a price can change."""
    changes: dict[str, Any] = {}
    if active is not None:
        changes["active"] = active
    if nickname is not None:
        changes["nickname"] = _text(nickname)
    return _update(ctx, "price", price_id, ctx.store.get_price, ctx.store.save_price, changes)


def _update(
    ctx: BillingContext,
    kind: str,
    object_id: str,
    load: Callable[[str], M],
    save: Callable[[M], M],
    changes: dict[str, Any],
) -> M:
    """Apply ``changes`` under the object's version, re-reading when a concurrent update wins."""
    for _ in range(RETRIES):
        current = load(object_id)
        try:
            changed = type(current).model_validate({**current.model_dump(), **changes})
        except ValidationError as error:
            raise invalid_from(error) from None
        if changed == current:
            return current  # nothing changes: no write, no event
        try:
            saved = save(changed)
        except Conflict:
            continue
        previous = {key: getattr(current, key) for key in changes if getattr(current, key) != getattr(saved, key)}
        ctx.emit(
            DomainEvent.of(f"{kind}.updated", saved, ctx.now(), cause=f"update:v{saved.version}", previous=previous)
        )
        return saved
    raise Conflict(f"{kind} {object_id} kept changing; retry")


def list_products(store: BillingStore, limit: int, starting_after: str | None, active: bool | None = None) -> Page:
    return _filtered(store.list_products, limit, starting_after, active)


def list_prices(store: BillingStore, limit: int, starting_after: str | None, active: bool | None = None) -> Page:
    return _filtered(store.list_prices, limit, starting_after, active)


def _filtered(
    fetch: Callable[[int, str | None], Page], limit: int, starting_after: str | None, active: bool | None
) -> Page:
    """A page of the listing, newest first, optionally only the active (or only the archived) objects.

    Filtering happens here, over the store's pages, not in DynamoDB: the catalog is small, and a
    FilterExpression would apply after the query's Limit (short pages with ``has_more``). The store is
    read on from ``starting_after`` in batches until ``limit`` + 1 matching objects were seen or the
    listing ends, so ``has_more`` is exact and the cursor (the last returned object's id) is an object
    of the unfiltered listing the store can resume from. Without a filter it is one store read."""
    if active is None:
        return fetch(limit, starting_after)
    matching: list[Any] = []
    cursor = starting_after
    while True:
        batch = fetch(max(FILTER_BATCH, limit + 1), cursor)
        matching.extend(item for item in batch.items if item.active is active)
        if len(matching) > limit:
            return Page(matching[:limit], has_more=True)
        if not batch.has_more or not batch.items:
            return Page(matching, has_more=False)
        cursor = batch.items[-1].id
