"""Catalog: products and recurring prices."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money, normalize_currency
from kassa.domain.payment_methods import PaymentMethodKind
from kassa.domain.periods import Interval, validate_interval
from kassa.domain.pricing import (
    TERMS_FIELDS,
    BillingScheme,
    Priced,
    PriceTerms,
    Tier,
    TiersMode,
    TransformQuantity,
    invalid_from,
    price_total,
    terms_of,
)


class TaxBehavior(StrEnum):
    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


class Product(BaseModel):
    id: str
    name: str = Field(min_length=1, max_length=250)
    description: str | None = None
    active: bool = True
    tax_code: str | None = None
    created: datetime
    version: int = 0  # optimistic lock for updates (name, description, tax_code, active)


class UsageType(StrEnum):
    """Stripe's ``recurring.usage_type``: licensed prices bill a quantity in advance; metered prices
    bill a meter's usage over the period, in arrears."""

    LICENSED = "licensed"
    METERED = "metered"


class Recurring(BaseModel):
    interval: Interval
    interval_count: int = Field(default=1, ge=1)
    trial_period_days: int | None = Field(default=None, ge=1, le=730)
    usage_type: UsageType = UsageType.LICENSED
    meter: str | None = None  # mtr_…: the meter a metered price bills

    def model_post_init(self, __context: object) -> None:
        if self.usage_type is UsageType.METERED and not self.meter:
            raise InvalidInput("a metered price needs recurring.meter (a meter id)", param="recurring.meter")
        if self.usage_type is UsageType.LICENSED and self.meter:
            raise InvalidInput("recurring.meter is for usage_type=metered", param="recurring.meter")
        if self.usage_type is UsageType.METERED and self.trial_period_days:
            raise InvalidInput("metered prices have no trial period", param="recurring.trial_period_days")


class Price(BaseModel):
    """A recurring price. ``unit_amount`` is set for ``billing_scheme=per_unit`` (None for tiered);
    a document stored before tiers existed (only ``unit_amount``) reads back as per_unit."""

    id: str
    product: str
    currency: str
    unit_amount: StrictInt | None = None
    billing_scheme: BillingScheme = BillingScheme.PER_UNIT
    tiers_mode: TiersMode | None = None
    tiers: tuple[Tier, ...] | None = None
    transform_quantity: TransformQuantity | None = None
    unit_amount_decimal: str | None = None
    recurring: Recurring
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    nickname: str | None = None
    # narrows the merchant's payment_method_types for checkouts of this price (None: the merchant's)
    payment_method_types: tuple[PaymentMethodKind, ...] | None = None
    active: bool = True
    created: datetime
    version: int = 0  # optimistic lock for updates (active, nickname); the terms never change

    @model_validator(mode="wrap")
    @classmethod
    def _terms_errors(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Price:
        try:
            result: Price = handler(data)
        except ValidationError as error:
            loc = error.errors(include_url=False)[0]["loc"]
            if loc and loc[0] in TERMS_FIELDS:
                raise invalid_from(error) from None
            raise
        return result

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    def model_post_init(self, __context: object) -> None:
        validate_interval(self.recurring.interval, self.recurring.interval_count)
        _ = self.terms  # builds PriceTerms: an invalid combination raises InvalidInput naming the field

    @property
    def terms(self) -> PriceTerms:
        return terms_of(self)

    @property
    def metered(self) -> bool:
        return self.recurring.usage_type is UsageType.METERED

    def priced(self, quantity: int) -> Priced:
        """The total for ``quantity`` with its tier breakdown (minor units of ``currency``)."""
        return price_total(self.terms, quantity)

    def amount_for(self, quantity: int) -> Money:
        return Money(self.priced(quantity).amount, self.currency)
