"""Catalog: products and recurring prices."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from kassa.domain.money import Money, normalize_currency
from kassa.domain.periods import Interval, validate_interval


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


class Recurring(BaseModel):
    interval: Interval
    interval_count: int = Field(default=1, ge=1)
    trial_period_days: int | None = Field(default=None, ge=1, le=730)


class Price(BaseModel):
    id: str
    product: str
    currency: str
    unit_amount: int = Field(ge=0)
    recurring: Recurring
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    nickname: str | None = None
    active: bool = True
    created: datetime

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    def model_post_init(self, __context: object) -> None:
        validate_interval(self.recurring.interval, self.recurring.interval_count)

    def amount_for(self, quantity: int) -> Money:
        return Money(self.unit_amount, self.currency).times(quantity)
