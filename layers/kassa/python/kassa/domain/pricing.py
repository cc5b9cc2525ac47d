"""Pricing: Stripe's price shapes (per unit, package, graduated and volume tiers) as pure data.

Money is an integer number of the currency's minor unit everywhere; nothing here needs a currency
(no rounding happens except ``transform_quantity``'s whole-package up/down), so ``price_total``
returns integer amounts and ``Price.amount_for`` wraps them in ``Money``.

Stripe's own examples, recomputed with these rules (amounts in USD cents):

Tiers 1–5 at 7.00, 6–10 at 6.50, 11+ at 6.00 (``up_to`` 5, 10, "inf"; Stripe's "Typographic" fonts)::

    volume     1 → 1 × 700 = 700        graduated  1 → 1 × 700 = 700
               5 → 5 × 700 = 3500                  5 → 5 × 700 = 3500
               6 → 6 × 650 = 3900                  6 → 5 × 700 + 1 × 650 = 4150
              20 → 20 × 600 = 12000               20 → 3500 + 5 × 650 + 10 × 600 = 12750
              25 → 25 × 600 = 15000               25 → 3500 + 3250 + 15 × 600 = 15750

Stripe notes that a volume total can fall as the quantity grows (with 1–10 at 10.00 and 11+ at 5.00,
10 units cost 10000 and 11 units 5500); a graduated total never falls.

Package pricing, 10.00 per 5 users or portion thereof (``unit_amount`` 1000, ``transform_quantity``
divide_by 5, round up): 1, 3 or 5 users → 1 package → 1000; 6 or 7 users → 2 packages → 2000. Round
down bills only full packages: 7 users → 1 package → 1000, 4 users → 0 → 0. Stripe's car rental: 10.00
per hour, usage in minutes, divide_by 60, round up: 150 minutes → 3 hours → 3000.

Rules kept from Stripe's API reference: ``up_to`` is inclusive ("up to and including to this quantity
will be contained in the tier"); a tier's lower bound is the previous ``up_to`` plus one; the last
tier is the fallback, ``up_to: "inf"`` on input and ``null`` on output; ``flat_amount`` is charged once
for the tier "regardless of the number of units in the tier"; ``transform_quantity`` only works with
``billing_scheme=per_unit``.

Quantity 0 on a tiered price charges nothing (no tier lines, no flat fee): the Stripe pages consulted do not say
what a flat fee does at zero units, and kassa's subscriptions always have a quantity of at least 1.
"""

# Sources:
#   https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing  (volume and graduated tables)
#   https://docs.stripe.com/billing/subscriptions/quantities#quantity-transformation  (10 USD per 5 users)
#   https://docs.stripe.com/billing/subscriptions/usage-based/transform-quantities  (car rental, tiered-incompatible)
#   https://docs.stripe.com/api/prices/create  (tiers.up_to / flat_amount / unit_amount, tiers_mode, billing_scheme)

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kassa.domain.errors import InvalidInput
from kassa.domain.money import MAX_AMOUNT, Rounding, round_fraction

MAX_TIERS = 250
INF = "inf"
#: Stripe: ``unit_amount_decimal`` has "at most 12 decimal places", in the currency's minor unit
DECIMAL_PLACES = 12
_DECIMAL = re.compile(r"^\d{1,9}(\.\d{1,12})?$")
#: a line with sub-unit prices is rounded once, half up, to the currency's minor unit
LINE_ROUNDING = Rounding.HALF_UP


def parse_unit_amount_decimal(value: object) -> str:
    """A minor-unit decimal string such as ``"0.05"`` (cents): digits, at most 12 decimal places, never a
    float. Returns it normalized (``"0.050"`` → ``"0.05"``)."""
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise PydanticCustomError(
            "unit_amount_decimal",
            "unit_amount_decimal is a decimal string of minor units with at most 12 decimal places, e.g. '0.05'",
        )
    exact = Decimal(value)
    if exact > MAX_AMOUNT:
        raise PydanticCustomError(
            "amount_too_large", "amounts are at most {max} minor units", {"max": f"{MAX_AMOUNT:,}"}
        )
    text = format(exact.normalize(), "f")
    return text


def exact(value: str) -> Fraction:
    """A decimal string as an exact fraction (never a float)."""
    return Fraction(Decimal(value))


class BillingScheme(StrEnum):
    PER_UNIT = "per_unit"
    TIERED = "tiered"


class TiersMode(StrEnum):
    GRADUATED = "graduated"
    VOLUME = "volume"


class QuantityRound(StrEnum):
    UP = "up"
    DOWN = "down"


def param_from_loc(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a request parameter: ``("tiers", 2, "up_to")`` → ``tiers[2].up_to``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def invalid_from(error: ValidationError, prefix: Sequence[int | str] = ()) -> InvalidInput:
    """The first error of a pydantic ValidationError as an InvalidInput naming its field."""
    first = error.errors(include_url=False)[0]
    param = param_from_loc([*prefix, *first["loc"]]) or None
    if first["type"] == "missing":
        message = f"missing required field {param}"
    elif first["type"] == "extra_forbidden":
        message = f"unknown field {param}"
    elif first["type"] in ("int_type", "int_from_float", "int_parsing"):
        message = f"{param} must be an integer (minor units or a count; floats and strings are refused)"
    else:
        message = f"{param}: {first['msg']}" if param else first["msg"]
    return InvalidInput(message, param=param)


def _non_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError("negative_amount", "amounts are minor units and must not be negative")
    if value > MAX_AMOUNT:
        raise PydanticCustomError(
            "amount_too_large", "amounts are at most {max} minor units", {"max": f"{MAX_AMOUNT:,}"}
        )
    return value


def _without_unset_decimal(self: BaseModel, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
    data: dict[str, Any] = handler(self)
    if data.get("unit_amount_decimal", 0) is None:
        del data["unit_amount_decimal"]
    return data


class Tier(BaseModel):
    """One tier. ``up_to`` None is the fallback tier (``"inf"`` on input, ``null`` when serialized)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: StrictInt | None
    unit_amount: StrictInt = 0
    flat_amount: StrictInt = 0
    unit_amount_decimal: str | None = None  # sub-unit price per unit (minor units, e.g. "0.05"); replaces unit_amount

    @field_validator("unit_amount_decimal", mode="before")
    @classmethod
    def _decimal(cls, value: object) -> object:
        return None if value is None else parse_unit_amount_decimal(value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_decimal(self, handler)

    @property
    def unit_price(self) -> Fraction:
        """The exact price of one unit in this tier (minor units)."""
        return exact(self.unit_amount_decimal) if self.unit_amount_decimal is not None else Fraction(self.unit_amount)

    @field_validator("up_to", mode="before")
    @classmethod
    def _inf(cls, value: object) -> object:
        if isinstance(value, str):
            if value == INF:
                return None
            raise PydanticCustomError("up_to", "up_to is a positive integer or the string 'inf'")
        return value

    @field_validator("unit_amount", "flat_amount")
    @classmethod
    def _amounts(cls, value: int) -> int:
        return _non_negative(value)


class TransformQuantity(BaseModel):
    """Bill packages: ``billed_quantity = quantity / divide_by`` rounded up or down to a whole number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    divide_by: StrictInt = Field(ge=1)
    round: QuantityRound

    def apply(self, quantity: int) -> int:
        whole, rest = divmod(quantity, self.divide_by)
        return whole + 1 if rest and self.round is QuantityRound.UP else whole


class PriceTerms(BaseModel):
    """How a price turns a quantity into an amount. Invalid terms raise ``InvalidInput`` naming the field
    (``unit_amount``, ``tiers[2].up_to``, ``transform_quantity.divide_by`` …), never a pydantic error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    billing_scheme: BillingScheme = BillingScheme.PER_UNIT
    unit_amount: StrictInt | None = None
    tiers_mode: TiersMode | None = None
    tiers: tuple[Tier, ...] | None = None
    transform_quantity: TransformQuantity | None = None
    # sub-unit price per unit, exact (Stripe's unit_amount_decimal: "0.05" cents); instead of unit_amount
    unit_amount_decimal: str | None = None

    @field_validator("unit_amount_decimal", mode="before")
    @classmethod
    def _decimal(cls, value: object) -> object:
        return None if value is None else parse_unit_amount_decimal(value)

    @model_validator(mode="wrap")
    @classmethod
    def _as_invalid_input(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> PriceTerms:
        try:
            result: PriceTerms = handler(data)
        except ValidationError as error:
            raise invalid_from(error) from None
        return result

    @model_validator(mode="after")
    def _stripe_rules(self) -> PriceTerms:
        check_terms(self)
        return self

    @classmethod
    def parse(cls, **raw: Any) -> PriceTerms:
        """Terms from raw JSON values (an HTTP body's pricing fields), e.g.
        ``PriceTerms.parse(billing_scheme="tiered", tiers_mode="volume",
        tiers=[{"up_to": 5, "unit_amount": 700}, {"up_to": "inf", "unit_amount": 600}])``.
        A field given as null counts as not given."""
        given = {k: v for k, v in raw.items() if v is not None}
        tiers = given.get("tiers")
        if isinstance(tiers, list | tuple):
            for i, tier in enumerate(tiers):
                if isinstance(tier, dict) and set(tier) <= {"up_to"}:  # unknown fields: pydantic names them
                    # Stripe: "An entry in the tiers array is missing an amount."
                    raise InvalidInput(
                        f"tiers[{i}] needs a unit_amount or a flat_amount (either may be 0)", param=f"tiers[{i}]"
                    )
        return cls.model_validate(given)

    @property
    def is_tiered(self) -> bool:
        return self.billing_scheme is BillingScheme.TIERED

    @property
    def unit_price(self) -> Fraction:
        """The exact per-unit price of a per_unit price (minor units)."""
        if self.unit_amount_decimal is not None:
            return exact(self.unit_amount_decimal)
        assert self.unit_amount is not None  # check_terms guarantees it
        return Fraction(self.unit_amount)


#: the fields that make up a price's terms (a Price and a subscription item carry them alike)
TERMS_FIELDS = ("billing_scheme", "unit_amount", "tiers_mode", "tiers", "transform_quantity", "unit_amount_decimal")


def terms_of(source: Any) -> PriceTerms:
    """The terms of anything that carries :data:`TERMS_FIELDS` (a price, a subscription item)."""
    return PriceTerms(**{field: getattr(source, field) for field in TERMS_FIELDS})


def check_terms(terms: PriceTerms) -> None:
    """Stripe's rules for a price's amount fields; raises InvalidInput naming the first wrong field."""
    if terms.unit_amount is not None and terms.tiers is not None:
        raise InvalidInput("a price has either a unit_amount or tiers, not both", param="unit_amount")
    if terms.unit_amount_decimal is not None:
        if terms.unit_amount is not None:
            raise InvalidInput("give unit_amount or unit_amount_decimal, not both", param="unit_amount_decimal")
        if terms.tiers is not None or terms.billing_scheme is BillingScheme.TIERED:
            raise InvalidInput(
                "unit_amount_decimal is for billing_scheme=per_unit; give it on each tier instead",
                param="unit_amount_decimal",
            )
    if terms.unit_amount is not None and terms.unit_amount < 0:
        raise InvalidInput("unit_amount must not be negative", param="unit_amount")
    if terms.unit_amount is not None and terms.unit_amount > MAX_AMOUNT:
        raise InvalidInput(f"unit_amount must be at most {MAX_AMOUNT:,} minor units", param="unit_amount")
    if terms.billing_scheme is BillingScheme.PER_UNIT:
        if terms.tiers is not None:
            raise InvalidInput("tiers require billing_scheme=tiered", param="tiers")
        if terms.tiers_mode is not None:
            raise InvalidInput("tiers_mode requires billing_scheme=tiered", param="tiers_mode")
        if terms.unit_amount is None and terms.unit_amount_decimal is None:
            raise InvalidInput("unit_amount is required for billing_scheme=per_unit", param="unit_amount")
        return
    if terms.transform_quantity is not None:
        raise InvalidInput(
            "transform_quantity works only with billing_scheme=per_unit, not with tiers", param="transform_quantity"
        )
    if terms.tiers_mode is None:
        raise InvalidInput("tiers_mode (graduated or volume) is required for billing_scheme=tiered", param="tiers_mode")
    if not terms.tiers:
        raise InvalidInput("tiers are required for billing_scheme=tiered", param="tiers")
    if len(terms.tiers) > MAX_TIERS:
        raise InvalidInput(f"at most {MAX_TIERS} tiers", param="tiers")
    last = len(terms.tiers) - 1
    previous: int | None = None
    for i, tier in enumerate(terms.tiers):
        at = f"tiers[{i}].up_to"
        if tier.unit_amount < 0:
            raise InvalidInput("amounts must not be negative", param=f"tiers[{i}].unit_amount")
        if tier.flat_amount < 0:
            raise InvalidInput("amounts must not be negative", param=f"tiers[{i}].flat_amount")
        if tier.unit_amount_decimal is not None and tier.unit_amount:
            raise InvalidInput(
                "give unit_amount or unit_amount_decimal, not both", param=f"tiers[{i}].unit_amount_decimal"
            )
        if tier.up_to is None:
            if i != last:
                raise InvalidInput(f"only the last tier may have up_to 'inf' (tiers[{last}])", param=at)
            continue
        if i == last:
            raise InvalidInput("the last tier must have up_to 'inf'", param=at)
        if tier.up_to < 1:
            raise InvalidInput("up_to must be a positive integer", param=at)
        if previous is not None and tier.up_to <= previous:
            raise InvalidInput(
                f"up_to must be greater than the previous tier's ({previous}): tiers ascend strictly", param=at
            )
        previous = tier.up_to


class TierLine(BaseModel):
    """One tier's share of a total, as an invoice line shows it: ``tier`` counts from 1."""

    model_config = ConfigDict(frozen=True)

    tier: int
    up_to: int | None
    quantity: int
    unit_amount: int
    flat_amount: int
    amount: int  # this tier's share, rounded for display (the line's total is rounded once, over all tiers)
    unit_amount_decimal: str | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_decimal(self, handler)


class Priced(BaseModel):
    """A total in minor units. ``billed_quantity`` is the quantity after ``transform_quantity``;
    ``tiers`` is the breakdown of a tiered price (empty for per_unit)."""

    model_config = ConfigDict(frozen=True)

    amount: int
    quantity: int
    billed_quantity: int
    tiers: tuple[TierLine, ...] = ()


def tier_dicts(priced: Priced) -> list[dict[str, Any]] | None:
    """A priced total's tier breakdown as an invoice line stores it (``unit_amount_decimal`` only when set)."""
    return [tier.model_dump(mode="json") for tier in priced.tiers] or None


def _line(number: int, tier: Tier, units: int) -> TierLine:
    return TierLine(
        tier=number,
        up_to=tier.up_to,
        quantity=units,
        unit_amount=tier.unit_amount,
        flat_amount=tier.flat_amount,
        amount=round_fraction(units * tier.unit_price + tier.flat_amount, LINE_ROUNDING),
        unit_amount_decimal=tier.unit_amount_decimal,
    )


def _tier_exact(tiers: Sequence[Tier], line: TierLine) -> Fraction:
    tier = tiers[line.tier - 1]
    return line.quantity * tier.unit_price + tier.flat_amount


def _graduated(tiers: Sequence[Tier], quantity: int) -> list[TierLine]:
    lines: list[TierLine] = []
    floor = 0  # units already placed in lower tiers
    for number, tier in enumerate(tiers, start=1):
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if top <= floor:
            break
        lines.append(_line(number, tier, top - floor))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        floor = tier.up_to
    return lines


def _volume(tiers: Sequence[Tier], quantity: int) -> list[TierLine]:
    for number, tier in enumerate(tiers, start=1):
        if tier.up_to is None or quantity <= tier.up_to:
            return [_line(number, tier, quantity)]
    raise AssertionError("the last tier is 'inf'")  # pragma: no cover - check_terms guarantees it


_TIERED: dict[TiersMode, Callable[[Sequence[Tier], int], list[TierLine]]] = {
    TiersMode.GRADUATED: _graduated,
    TiersMode.VOLUME: _volume,
}


def price_total(terms: PriceTerms, quantity: int) -> Priced:
    """The amount ``terms`` charge for ``quantity`` units, with its tier breakdown."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidInput("quantity must be an integer", param="quantity")
    if quantity < 0:
        raise InvalidInput("quantity must not be negative", param="quantity")
    return Priced(
        amount=round_fraction(exact_total(terms, quantity), LINE_ROUNDING),
        quantity=quantity,
        billed_quantity=terms.transform_quantity.apply(quantity) if terms.transform_quantity else quantity,
        tiers=tuple(_TIERED[terms.tiers_mode](terms.tiers, quantity))
        if terms.tiers and terms.tiers_mode and quantity
        else (),
    )


def exact_total(terms: PriceTerms, quantity: int) -> Fraction:
    """The exact (unrounded) amount in minor units: only sub-unit prices (``unit_amount_decimal``) make
    it a fraction. :func:`price_total` rounds it once (half up) for the whole line."""
    if terms.billing_scheme is BillingScheme.PER_UNIT:
        billed = terms.transform_quantity.apply(quantity) if terms.transform_quantity else quantity
        return terms.unit_price * billed
    assert terms.tiers is not None and terms.tiers_mode is not None  # check_terms guarantees it
    lines = _TIERED[terms.tiers_mode](terms.tiers, quantity) if quantity else []
    return sum((_tier_exact(terms.tiers, line) for line in lines), Fraction(0))
