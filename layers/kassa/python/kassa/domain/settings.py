"""Merchant settings, one validated model."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.money import normalize_currency
from kassa.domain.tax.model import TaxSettings


class MerchantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seller_name: str = Field(default="kassa demo shop", min_length=1, max_length=200)
    seller_address: Address = Field(default_factory=lambda: Address(country="NL"))
    invoice_prefix: str = Field(default="KASSA", description="3–12 upper-case letters or digits")
    default_currency: str = "EUR"
    support_email: str = "billing@example.com"
    # the seller's tax position (home country, OSS, registrations); when absent: established in the
    # seller address's country and registered for the EU One-Stop Shop
    tax: TaxSettings | None = None

    def tax_settings(self) -> TaxSettings:
        return self.tax or TaxSettings(home_country=self.seller_address.country, oss_registered=True)

    @field_validator("invoice_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z0-9]{3,12}", value):
            raise ValueError("invoice_prefix must be 3 to 12 upper-case letters or digits")
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        try:
            return normalize_currency(value)
        except InvalidInput as error:  # a ValueError, so the API names the field
            raise ValueError(error.message) from error
