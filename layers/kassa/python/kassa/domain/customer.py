"""Customers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

SUPPORTED_LOCALES = ("en", "nl", "de", "fr")


class Address(BaseModel):
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("country must be an ISO 3166-1 alpha-2 code")
        return value.upper()


class CardSummary(BaseModel):
    payment_method_id: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


class Customer(BaseModel):
    id: str
    email: str
    name: str | None = None
    address: Address
    preferred_locale: str = "en"
    # tax: an EU VAT number (country prefix, Greece EL) or a national business number; a valid one
    # makes the customer a business (reverse charge across EU borders); exempt customers pay no tax
    tax_id: str | None = None
    tax_exempt: bool = False
    # credit balance in minor units: negative = owed to the customer (Stripe's sign), consumed by
    # later invoices; in ``balance_currency``
    balance: int = 0
    balance_currency: str | None = None
    stripe_customer_id: str | None = None
    default_payment_method: CardSummary | None = None
    created: datetime
    version: int = 0
