"""Subscription items: what a subscription bills each period — one item per price (a base plan,
seats, add-ons), each with its quantity and a copy of its price's terms (per unit, package, tiered).

Stripe's rules, enforced by :func:`ensure_compatible` and :func:`apply_item_changes`: at most 20
items; every item of a subscription shares its currency and billing interval; a price appears on one
item only; the last item cannot be removed (cancel the subscription instead).

A price's terms never change once created (only ``active`` and ``nickname`` may), so an item keeps a
copy of them: a renewal prices its items without reading the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from kassa.domain.catalog import Price, TaxBehavior, UsageType
from kassa.domain.errors import CurrencyMismatch, DomainError, InvalidInput, NotFound
from kassa.domain.money import Money, normalize_currency
from kassa.domain.periods import Interval, validate_interval
from kassa.domain.pricing import (
    TERMS_FIELDS,
    BillingScheme,
    Priced,
    PriceTerms,
    Tier,
    TiersMode,
    TransformQuantity,
    price_total,
    terms_of,
)

MAX_ITEMS = 20

# Average Gregorian lengths in days, used only to compare rates of items with different intervals
# (is a change a downgrade?). Never used to compute an amount.
_NOMINAL_DAYS: dict[Interval, Fraction] = {
    Interval.DAY: Fraction(1),
    Interval.WEEK: Fraction(7),
    Interval.MONTH: Fraction(146097, 4800),
    Interval.YEAR: Fraction(146097, 400),
}


class SubscriptionItem(BaseModel):
    """One price on a subscription with its quantity and the price's terms. Proration compares two."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None  # si_…; None only for items that are not stored (previews, plan tests)
    price: str = Field(min_length=1)
    product: str | None = None
    name: str | None = None  # shown on lines; the product or price id when absent
    unit_amount: StrictInt | None = Field(default=None, ge=0)
    billing_scheme: BillingScheme = BillingScheme.PER_UNIT
    tiers_mode: TiersMode | None = None
    tiers: tuple[Tier, ...] | None = None
    transform_quantity: TransformQuantity | None = None
    unit_amount_decimal: str | None = None
    # metered: billed in arrears from ``meter``'s usage (``quantity`` stays 1 and bills nothing in advance)
    usage_type: UsageType = UsageType.LICENSED
    meter: str | None = None
    quantity: StrictInt = Field(ge=1)
    currency: str
    interval: Interval
    interval_count: StrictInt = 1
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    def model_post_init(self, __context: object) -> None:
        validate_interval(self.interval, self.interval_count)
        self.terms  # noqa: B018 - validates the terms (a per-unit item needs its unit_amount)

    @classmethod
    def from_price(
        cls, price: Price, quantity: int, name: str | None = None, *, item_id: str | None = None
    ) -> SubscriptionItem:
        return cls(
            id=item_id,
            price=price.id,
            product=price.product,
            name=name or price.nickname,
            **{field: getattr(price, field) for field in TERMS_FIELDS},
            quantity=1 if price.metered else quantity,
            usage_type=price.recurring.usage_type,
            meter=price.recurring.meter,
            currency=price.currency,
            interval=price.recurring.interval,
            interval_count=price.recurring.interval_count,
            tax_behavior=price.tax_behavior,
        )

    @property
    def terms(self) -> PriceTerms:
        return terms_of(self)

    @property
    def metered(self) -> bool:
        return self.usage_type is UsageType.METERED

    def priced(self) -> Priced:
        """The charge for one full period in advance, with its tier breakdown (a metered item charges
        nothing in advance: its usage is billed in arrears, ``kassa.domain.usage``)."""
        if self.metered:
            return Priced(amount=0, quantity=0, billed_quantity=0)
        return price_total(self.terms, self.quantity)

    def priced_usage(self, quantity: int) -> Priced:
        """What ``quantity`` units of usage cost at this item's price."""
        return price_total(self.terms, quantity)

    @property
    def amount(self) -> Money:
        """The charge for one full period."""
        return Money(self.priced().amount, self.currency)

    @property
    def label(self) -> str:
        return self.name or self.product or self.price

    def same_cycle(self, other: SubscriptionItem) -> bool:
        return self.interval == other.interval and self.interval_count == other.interval_count

    def same_terms(self, other: SubscriptionItem) -> bool:
        """Bills the same (ids and display names aside)."""
        ignore = {"id", "name", "product"}
        return self.model_dump(exclude=ignore) == other.model_dump(exclude=ignore)

    def daily_rate(self) -> Fraction:
        """Amount per nominal day: only for comparing items (see ``proration.is_downgrade``)."""
        return Fraction(self.priced().amount) / (_NOMINAL_DAYS[self.interval] * self.interval_count)


class ItemChange(BaseModel):
    """One entry of Stripe's ``items`` list in a subscription update: ``{price, quantity}`` adds an
    item; ``{id, quantity}`` / ``{id, price}`` changes one; ``{id, deleted: true}`` removes one."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    price: str | None = None
    quantity: StrictInt | None = Field(default=None, ge=1, le=100000)
    deleted: StrictBool = False


def ensure_compatible(items: Sequence[SubscriptionItem], *, param: str = "items") -> None:
    """Stripe's rules for the items of one subscription (the error names the first offending item)."""
    if not items:
        raise InvalidInput("a subscription has at least one item", param=param)
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"a subscription has at most {MAX_ITEMS} items", param=param)
    first = items[0]
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.currency != first.currency:
            raise CurrencyMismatch(
                f"all items of a subscription share one currency: {item.price} is {item.currency}, "
                f"{first.price} is {first.currency}",
                param=f"{param}[{i}].price",
            )
        if not item.same_cycle(first):
            raise InvalidInput(
                f"all items of a subscription share one billing interval: {item.price} bills every "
                f"{item.interval_count} {item.interval.value}, {first.price} every {first.interval_count} "
                f"{first.interval.value}",
                param=f"{param}[{i}].price",
            )
        if item.price in seen:
            raise InvalidInput(f"price {item.price} is already on another item", param=f"{param}[{i}].price")
        seen.add(item.price)


def apply_item_changes(
    items: Sequence[SubscriptionItem],
    changes: Sequence[ItemChange],
    prices: Mapping[str, Price],
    new_item_id: str,
) -> list[SubscriptionItem]:
    """The items after Stripe's ``items`` update list. ``prices`` holds every price the changes name;
    ``new_item_id`` is the id base of added items (``…_<n>``). Raises with the offending entry named."""
    result = list(items)
    origin: list[int | None] = [None] * len(result)  # the entry of ``changes`` that set each item's price
    added = 0
    for i, change in enumerate(changes):
        where = f"items[{i}]"
        if change.id is None:
            if change.deleted:
                raise InvalidInput("give the id of the item to delete", param=f"{where}.id")
            if change.price is None:
                raise InvalidInput("a new item needs a price", param=f"{where}.price")
            price = _active(prices, change.price, f"{where}.price")
            added += 1
            result.append(SubscriptionItem.from_price(price, change.quantity or 1, item_id=f"{new_item_id}{added:02d}"))
            origin.append(i)
            continue
        at = next((k for k, item in enumerate(result) if item.id == change.id), None)
        if at is None:
            raise NotFound(f"no item {change.id} on this subscription", param=f"{where}.id")
        current = result[at]
        if change.deleted:
            if change.price is not None or change.quantity is not None:
                raise InvalidInput("a deleted item takes no price or quantity", param=f"{where}.deleted")
            if len(result) == 1:
                raise InvalidInput(
                    "the last item of a subscription cannot be deleted: cancel the subscription instead",
                    param=f"{where}.deleted",
                )
            del result[at]
            del origin[at]
            continue
        if change.price is not None and change.price != current.price:
            price = _active(prices, change.price, f"{where}.price")
            replaced = SubscriptionItem.from_price(price, change.quantity or current.quantity, item_id=current.id)
            origin[at] = i
        else:
            replaced = current.model_copy(update={"quantity": change.quantity or current.quantity})
        result[at] = replaced
    try:
        ensure_compatible(result)
    except DomainError as error:  # it names a position in ``result``: name the request's entry instead
        error.param = _entry_param(error.param, origin)
        raise
    return result


def _entry_param(param: str | None, origin: Sequence[int | None]) -> str | None:
    """``items[k].price`` of the resulting items as the request entry that caused the conflict: the one
    that set item ``k``'s price, or else (an untouched item clashing with a new price) the first entry
    that set a price — the items before the request were compatible with each other."""
    match = re.fullmatch(r"items\[(\d+)\]\.price", param or "")
    if match is None:
        return param
    source = origin[int(match.group(1))]
    if source is None:
        source = next((entry for entry in origin if entry is not None), None)
    return param if source is None else f"items[{source}].price"


def _active(prices: Mapping[str, Price], price_id: str, param: str) -> Price:
    price = prices.get(price_id)
    if price is None:
        raise NotFound(f"no such price: {price_id}", param=param)
    if not price.active:
        raise InvalidInput(f"price {price_id} is archived: it cannot be added to a subscription", param=param)
    return price


def legacy_item_id(subscription_id: str) -> str:
    """The id of the one item of a subscription stored before items existed (stable across reads)."""
    from kassa.domain.ids import derived_id

    return derived_id("si", subscription_id, "item")
