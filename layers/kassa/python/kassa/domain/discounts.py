"""Coupons, promotion codes and discounts (Stripe's model), with explicit rounding.

- A :class:`Coupon` takes ``percent_off`` (an integer 1–100 or a decimal string such as ``"12.5"``,
  > 0 and ≤ 100, at most two decimals — never a float) **or** ``amount_off`` + ``currency``, and a
  ``duration``: ``once`` (the first invoice), ``repeating`` (invoices of periods starting within
  ``duration_in_months`` of the discount's start) or ``forever``.
- A :class:`PromotionCode` is a customer-facing code for a coupon, with its own limits.
- A :class:`Discount` is a coupon applied to a subscription or customer from ``start`` (to ``end`` for
  ``repeating``).

Applying a discount to invoice lines (:func:`apply_discount`):

- percent: each eligible line gets ``round_half_up(amount × percent / 100)`` off, line by line
  (a credit line gets a credit-sized discount: a customer who paid the discounted price is credited
  the discounted price).
- amount off: ``min(amount_off, max(0, Σ eligible line amounts))`` is allocated over the eligible
  *positive* lines in proportion to their amounts (``Money.allocate``, largest remainder), so the
  parts sum exactly, no line goes below 0 and the discount never makes an invoice negative.

A line is eligible when the coupon has no ``applies_to`` or the line's product is listed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from kassa.domain.errors import CurrencyMismatch, InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.invoice import Invoice
from kassa.domain.money import Money, Rounding, normalize_currency, round_fraction
from kassa.domain.periods import Interval, boundary, ensure_utc

DISCOUNT_ROUNDING = Rounding.HALF_UP

_PERCENT = re.compile(r"^(?:\d{1,3})(?:\.\d{1,2})?$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Duration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


def parse_percent(value: object, param: str = "percent_off") -> Fraction:
    """An exact percentage from an int (1–100) or a decimal string (> 0, ≤ 100, two decimals at most)."""
    if isinstance(value, float):
        raise InvalidInput(f'{param} is an integer or a decimal string such as "12.5", never a float', param=param)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f'{param} is an integer or a decimal string such as "12.5"', param=param)
    if isinstance(value, str) and not _PERCENT.match(value.strip()):
        raise InvalidInput(f'{param} must look like "25" or "12.5" (two decimals at most), got {value!r}', param=param)
    percent = Fraction(value.strip()) if isinstance(value, str) else Fraction(value)
    if not 0 < percent <= 100:
        raise InvalidInput(f"{param} must be greater than 0 and at most 100", param=param)
    return percent


def _canonical_percent(percent: Fraction) -> str:
    if percent.denominator == 1:
        return str(percent.numerator)
    hundredths = percent * 100  # exact: at most two decimals
    whole, rest = divmod(int(hundredths), 100)
    return f"{whole}.{rest:02d}".rstrip("0")


def _aware(value: datetime | None, param: str) -> datetime | None:
    if value is None:
        return None
    try:
        return ensure_utc(value)
    except InvalidInput:
        raise InvalidInput(f"{param} must be timezone-aware", param=param) from None


class Coupon(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=40)
    percent_off: str | None = None  # canonical decimal string ("25", "12.5"); see ``percent``
    amount_off: StrictInt | None = None
    currency: str | None = None
    duration: Duration
    duration_in_months: StrictInt | None = None
    max_redemptions: StrictInt | None = None
    redeem_by: datetime | None = None
    applies_to: tuple[str, ...] | None = None  # product ids
    times_redeemed: StrictInt = 0
    valid: bool = True  # false once deleted by the merchant
    created: datetime | None = None

    @field_validator("percent_off", mode="before")
    @classmethod
    def _percent(cls, value: object) -> str | None:
        return None if value is None else _canonical_percent(parse_percent(value))

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: object) -> object:
        return normalize_currency(value) if isinstance(value, str) else value

    def model_post_init(self, __context: object) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise InvalidInput("a coupon has exactly one of percent_off and amount_off", param="percent_off")
        if self.amount_off is not None:
            if self.amount_off <= 0:
                raise InvalidInput("amount_off must be a positive integer in minor units", param="amount_off")
            if self.currency is None:
                raise InvalidInput("an amount_off coupon needs a currency", param="currency")
        elif self.currency is not None:
            raise InvalidInput("currency only goes with amount_off", param="currency")
        if self.duration is Duration.REPEATING:
            if self.duration_in_months is None or self.duration_in_months < 1:
                raise InvalidInput("a repeating coupon needs duration_in_months ≥ 1", param="duration_in_months")
        elif self.duration_in_months is not None:
            raise InvalidInput("duration_in_months only goes with duration=repeating", param="duration_in_months")
        if self.max_redemptions is not None and self.max_redemptions < 1:
            raise InvalidInput("max_redemptions must be at least 1", param="max_redemptions")
        if self.times_redeemed < 0:
            raise InvalidInput("times_redeemed is never negative", param="times_redeemed")
        if self.applies_to is not None and not self.applies_to:
            raise InvalidInput("applies_to lists at least one product (omit it for all)", param="applies_to")
        _aware(self.redeem_by, "redeem_by")

    @property
    def percent(self) -> Fraction | None:
        return None if self.percent_off is None else Fraction(self.percent_off)

    def applies_to_product(self, product: str | None) -> bool:
        return self.applies_to is None or (product is not None and product in self.applies_to)

    def describe(self) -> str:
        if self.percent_off is not None:
            off = f"{self.percent_off}% off"
        else:
            assert self.amount_off is not None and self.currency is not None
            off = f"{Money(self.amount_off, self.currency).format()} off"
        return f"{self.name or self.id} ({off})"


class PromotionCode(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    code: str
    coupon: Coupon
    active: bool = True
    max_redemptions: StrictInt | None = None
    times_redeemed: StrictInt = 0
    expires_at: datetime | None = None
    customer: str | None = None  # only this customer may redeem it
    first_time_transaction: bool = False  # only customers who never paid before

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.match(value):
            raise InvalidInput("a code is 1–64 letters, digits, '-' or '_'", param="code")
        return value

    def model_post_init(self, __context: object) -> None:
        if self.max_redemptions is not None and self.max_redemptions < 1:
            raise InvalidInput("max_redemptions must be at least 1", param="max_redemptions")
        if self.times_redeemed < 0:
            raise InvalidInput("times_redeemed is never negative", param="times_redeemed")
        _aware(self.expires_at, "expires_at")

    def matches(self, entered: str) -> bool:
        """Customer-entered codes are matched case-insensitively (as Stripe does)."""
        return self.code.casefold() == entered.strip().casefold()


class Unredeemable(StrEnum):
    COUPON_DELETED = "coupon_deleted"
    COUPON_EXPIRED = "coupon_expired"  # past redeem_by
    COUPON_MAX_REDEMPTIONS = "coupon_max_redemptions_reached"
    PRODUCT_NOT_ELIGIBLE = "product_not_eligible"
    CURRENCY_MISMATCH = "currency_mismatch"
    CODE_INACTIVE = "code_inactive"
    CODE_EXPIRED = "code_expired"
    CODE_MAX_REDEMPTIONS = "code_max_redemptions_reached"
    CODE_CUSTOMER_RESTRICTED = "code_customer_restricted"
    CODE_FIRST_TIME_ONLY = "code_first_time_transaction_only"


@dataclass(frozen=True)
class Redeemability:
    reasons: tuple[Unredeemable, ...]

    @property
    def ok(self) -> bool:
        return not self.reasons

    def __bool__(self) -> bool:
        return self.ok

    def raise_if_not(self, param: str = "coupon") -> None:
        if self.reasons:
            raise InvalidInput(
                f"this {param.replace('_', ' ')} cannot be redeemed: " + ", ".join(r.value for r in self.reasons),
                param=param,
            )


def is_redeemable(
    offer: Coupon | PromotionCode,
    now: datetime,
    customer: str | None = None,
    product: str | Collection[str] | None = None,
    *,
    currency: str | None = None,
    has_prior_transactions: bool = False,
) -> Redeemability:
    """Whether ``offer`` can be redeemed now, and every reason why not.

    ``product``: the product (or products) being bought; a product-restricted coupon needs one of them.
    ``currency``: the checkout currency; an ``amount_off`` coupon only fits its own currency.
    ``has_prior_transactions``: for codes restricted to first-time transactions.
    """
    now = ensure_utc(now)
    reasons: list[Unredeemable] = []
    code = offer if isinstance(offer, PromotionCode) else None
    coupon = offer.coupon if isinstance(offer, PromotionCode) else offer
    if code is not None:
        if not code.active:
            reasons.append(Unredeemable.CODE_INACTIVE)
        if code.expires_at is not None and now >= code.expires_at:
            reasons.append(Unredeemable.CODE_EXPIRED)
        if code.max_redemptions is not None and code.times_redeemed >= code.max_redemptions:
            reasons.append(Unredeemable.CODE_MAX_REDEMPTIONS)
        if code.customer is not None and customer != code.customer:
            reasons.append(Unredeemable.CODE_CUSTOMER_RESTRICTED)
        if code.first_time_transaction and has_prior_transactions:
            reasons.append(Unredeemable.CODE_FIRST_TIME_ONLY)
    if not coupon.valid:
        reasons.append(Unredeemable.COUPON_DELETED)
    if coupon.redeem_by is not None and now >= coupon.redeem_by:
        reasons.append(Unredeemable.COUPON_EXPIRED)
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        reasons.append(Unredeemable.COUPON_MAX_REDEMPTIONS)
    if product is not None and coupon.applies_to is not None:
        products = [product] if isinstance(product, str) else list(product)
        if not any(coupon.applies_to_product(p) for p in products):
            reasons.append(Unredeemable.PRODUCT_NOT_ELIGIBLE)
    if currency is not None and coupon.currency is not None and normalize_currency(currency) != coupon.currency:
        reasons.append(Unredeemable.CURRENCY_MISMATCH)
    return Redeemability(tuple(reasons))


def redeem(
    offer: Coupon | PromotionCode,
    now: datetime,
    customer: str | None = None,
    product: str | Collection[str] | None = None,
    *,
    currency: str | None = None,
    has_prior_transactions: bool = False,
) -> Coupon | PromotionCode:
    """Count one redemption after checking it may happen (InvalidInput with the reasons if not).

    Redeeming a code also counts on its coupon.
    """
    is_redeemable(
        offer, now, customer, product, currency=currency, has_prior_transactions=has_prior_transactions
    ).raise_if_not("promotion_code" if isinstance(offer, PromotionCode) else "coupon")
    if isinstance(offer, PromotionCode):
        coupon = offer.coupon.model_copy(update={"times_redeemed": offer.coupon.times_redeemed + 1})
        return offer.model_copy(update={"times_redeemed": offer.times_redeemed + 1, "coupon": coupon})
    return offer.model_copy(update={"times_redeemed": offer.times_redeemed + 1})


class Discount(BaseModel):
    """A coupon in force for a subscription (or a customer) from ``start``; to ``end`` when repeating."""

    model_config = ConfigDict(frozen=True)

    id: str
    coupon: Coupon
    customer: str | None = None
    subscription: str | None = None
    promotion_code: str | None = None
    start: datetime
    end: datetime | None = None
    invoices_applied: StrictInt = 0  # how many invoices it discounted (``once`` stops after one)


def start_discount(
    coupon: Coupon,
    start: datetime,
    *,
    customer: str | None = None,
    subscription: str | None = None,
    promotion_code: str | None = None,
    discount_id: str | None = None,
) -> Discount:
    """The discount of ``coupon`` from ``start``: ``repeating`` ends ``duration_in_months`` months later."""
    start = ensure_utc(start).replace(microsecond=0)
    end = None
    if coupon.duration is Duration.REPEATING:
        assert coupon.duration_in_months is not None
        end = boundary(start, Interval.MONTH, 1, coupon.duration_in_months)
    return Discount(
        id=discount_id or derived_id("di", coupon.id, subscription or customer or "", start.isoformat()),
        coupon=coupon,
        customer=customer,
        subscription=subscription,
        promotion_code=promotion_code,
        start=start,
        end=end,
    )


def discount_applies(discount: Discount, period_start: datetime) -> bool:
    """Whether the invoice of the period starting at ``period_start`` is discounted.

    The period must start at or after the discount's start; ``repeating`` covers periods that start
    before ``end`` (a 3-month coupon on a yearly price discounts the whole first year, as Stripe does);
    ``once`` covers the first invoice only; ``forever`` every one.
    """
    period_start = ensure_utc(period_start)
    if period_start < discount.start:
        return False
    duration = discount.coupon.duration
    if duration is Duration.ONCE:
        return discount.invoices_applied == 0
    if duration is Duration.REPEATING:
        return discount.end is not None and period_start < discount.end
    return True


def record_discounted_invoice(discount: Discount) -> Discount:
    return discount.model_copy(update={"invoices_applied": discount.invoices_applied + 1})


class DiscountableLine(Protocol):
    @property
    def amount(self) -> int: ...

    @property
    def price(self) -> str | None: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class DiscountLine:
    """An explicit discount line on the invoice, tied to the line it discounts.

    ``amount`` is what it adds to the invoice: negative on a charge, positive on a credit line.
    """

    line_index: int
    coupon: str
    discount: str | None
    description: str
    amount: int


@dataclass(frozen=True)
class DiscountApplication:
    """Per-line discount amounts (positive = the line is reduced by that much) and their lines."""

    coupon: str
    currency: str
    amounts: tuple[int, ...]
    lines: tuple[DiscountLine, ...]
    rule: str  # how the amounts were computed and rounded, for the invoice and support

    @property
    def total(self) -> int:
        return sum(self.amounts)

    def discounted_amounts(self, lines: Sequence[DiscountableLine]) -> list[int]:
        return [line.amount - off for line, off in zip(lines, self.amounts, strict=True)]


def _product_of(line: DiscountableLine, products: Mapping[str, str] | None) -> str | None:
    if products is not None and line.price is not None and line.price in products:
        return products[line.price]
    product = getattr(line, "product", None)
    return product if isinstance(product, str) else None


def apply_discount(
    lines: Sequence[DiscountableLine],
    discount: Discount | Coupon,
    currency: str,
    *,
    products: Mapping[str, str] | None = None,
) -> DiscountApplication:
    """The discount on each of ``lines`` (whose period the caller found covered by :func:`discount_applies`).

    ``products`` maps price ids to product ids for lines that do not carry a ``product``.
    """
    coupon = discount.coupon if isinstance(discount, Discount) else discount
    discount_id = discount.id if isinstance(discount, Discount) else None
    currency = normalize_currency(currency)
    eligible = [coupon.applies_to_product(_product_of(line, products)) for line in lines]
    amounts = [0] * len(lines)
    if coupon.percent is not None:
        pct = coupon.percent
        for i, line in enumerate(lines):
            if eligible[i]:
                amounts[i] = round_fraction(Fraction(line.amount) * pct / 100, DISCOUNT_ROUNDING)
        rule = f"{coupon.percent_off}% of each eligible line, each rounded half-up to the minor unit"
    else:
        assert coupon.amount_off is not None and coupon.currency is not None
        if coupon.currency != currency:
            raise CurrencyMismatch(
                f"coupon {coupon.id} is {coupon.currency}, the invoice is {currency}", param="coupon"
            )
        eligible_total = sum(line.amount for i, line in enumerate(lines) if eligible[i])
        capped = min(coupon.amount_off, max(0, eligible_total))
        positive = [line.amount if eligible[i] and line.amount > 0 else 0 for i, line in enumerate(lines)]
        if capped > 0 and sum(positive) > 0:
            amounts = [part.amount for part in Money(capped, currency).allocate(positive)]
        rule = (
            f"{Money(capped, currency).format()} of {Money(coupon.amount_off, currency).format()} off "
            "(capped at the eligible subtotal), allocated over the eligible positive lines in proportion "
            "to their amounts, largest remainder first"
        )
    discount_lines = tuple(
        DiscountLine(
            line_index=i,
            coupon=coupon.id,
            discount=discount_id,
            description=f"{coupon.describe()} on {line.description}",
            amount=-amounts[i],
        )
        for i, line in enumerate(lines)
        if amounts[i] != 0
    )
    return DiscountApplication(
        coupon=coupon.id, currency=currency, amounts=tuple(amounts), lines=discount_lines, rule=rule
    )


def ensure_discount_currency(discount: Discount, currency: str) -> None:
    """An amount-off discount cannot be attached to a subscription in another currency."""
    coupon = discount.coupon
    if coupon.currency is not None and coupon.currency != normalize_currency(currency):
        raise CurrencyMismatch(f"coupon {coupon.id} is {coupon.currency}, not {currency}", param="coupon")


def discount_invoice(
    draft: Invoice, discount: Discount | None, *, products: Mapping[str, str]
) -> tuple[Invoice, Discount | None]:
    """The first step of finishing an invoice (discount, then tax, then the customer's balance —
    Stripe's order): the subscription's coupon, if it covers the invoice's period, taken off each
    eligible line before tax. Returns the discount with this invoice counted (None: not applied)."""
    if discount is None or not discount_applies(discount, draft.period_start):
        return draft, None
    applied = apply_discount(draft.lines, discount, draft.currency, products=products)
    lines = [
        line.model_copy(update={"amount": amount, "discount_amount": off})
        for line, amount, off in zip(draft.lines, applied.discounted_amounts(draft.lines), applied.amounts, strict=True)
    ]
    discounted = draft.model_copy(
        update={
            "lines": lines,
            "total_discount": applied.total,
            "discount": f"{discount.coupon.describe()}: {applied.rule}",
        }
    )
    return discounted, record_discounted_invoice(discount)
