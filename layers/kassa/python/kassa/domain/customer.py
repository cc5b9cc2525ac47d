"""Customers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from kassa.domain.countries import is_country_code
from kassa.domain.errors import InvalidInput
from kassa.domain.payment_methods import ASYNC_SETTLEMENT, Mandate, PaymentMethodKind

#: the languages a customer may choose (``preferred_locale``); each has its email translations
#: (``kassa/emails/translations/<language>.json``, a test keeps the two equal)
SUPPORTED_LOCALES = ("en", "nl", "de", "fr", "es", "it", "pl", "sv")


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
        if not value.isalpha() or not is_country_code(value):
            raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {value!r}")
        return value.upper()


class PaymentMethodSummary(BaseModel):
    """What kassa keeps of the customer's default payment method (the method itself lives in Stripe):
    a card (brand, last4, expiry) or a bank account (``sepa_debit``: IBAN country, bank code and last 4,
    with the mandate; ``us_bank_account``: bank name, routing number and last 4, with the mandate)."""

    payment_method_id: str
    type: PaymentMethodKind = PaymentMethodKind.CARD
    brand: str | None = None
    last4: str | None = None  # the card number's or the account number's (IBAN's) last 4
    exp_month: int | None = None
    exp_year: int | None = None
    bank_name: str | None = None
    bank_code: str | None = None  # SEPA: the IBAN's bank code; ACH: the routing number
    country: str | None = None  # SEPA: the IBAN's country
    mandate: Mandate | None = None

    @property
    def is_bank_account(self) -> bool:
        return self.type is not PaymentMethodKind.CARD

    @property
    def settles_later(self) -> bool:
        return self.type in ASYNC_SETTLEMENT


#: the name the card-only code knew it by
CardSummary = PaymentMethodSummary


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
    # a Peppol participant id "<scheme>:<id>" (kassa.domain.parties): where e-invoices are delivered;
    # without one an e-invoice addresses the customer by email
    peppol_id: str | None = None
    # credit balance in minor units: negative = owed to the customer (Stripe's sign), consumed by
    # later invoices; in ``balance_currency``
    balance: int = 0
    balance_currency: str | None = None
    # an optional usage alert (kassa.domain.usage): usage.threshold_reached is published once the usage
    # accrued in a period, over the customer's metered subscriptions, reaches this many minor units
    usage_alert_amount_gte: int | None = None
    stripe_customer_id: str | None = None
    default_payment_method: PaymentMethodSummary | None = None
    # "<payment method>:<YYYY-MM>" of the card whose card_expiring email was sent (once per card and expiry)
    card_expiring_notified: str | None = None
    # Radar early fraud warnings on this customer's charges (settings.fraud.early_warning = flag)
    fraud_warnings: list[str] = Field(default_factory=list)
    created: datetime
    version: int = 0


def card_expiry_key(card: CardSummary | None) -> str | None:
    """``<payment method>:<YYYY-MM>``: one card_expiring email per card and expiry date (a bank
    account does not expire)."""
    if card is None or card.is_bank_account or card.exp_month is None or card.exp_year is None:
        return None
    return f"{card.payment_method_id}:{card.exp_year:04d}-{card.exp_month:02d}"


def card_expiry_notice_at(customer: Customer) -> datetime | None:
    """When to tell the customer that their card expires at the end of next month: the first day
    of the month before the expiry month (None: no card, no expiry, or already told)."""
    card = customer.default_payment_method
    key = card_expiry_key(card)
    if card is None or key is None or key == customer.card_expiring_notified:
        return None
    assert card.exp_month is not None and card.exp_year is not None
    if not 1 <= card.exp_month <= 12:
        return None
    year, month = (card.exp_year, card.exp_month - 1) if card.exp_month > 1 else (card.exp_year - 1, 12)
    return datetime(year, month, 1, tzinfo=UTC)


#: what ``POST /v1/customers/{id}`` may change (Stripe's customer update, the fields kassa keeps)
UPDATABLE_FIELDS = ("email", "name", "address", "preferred_locale", "tax_id", "tax_exempt", "peppol_id")
CLEARABLE_FIELDS = ("name", "tax_id", "peppol_id")  # null (or "") removes them


def email_key(email: str) -> str:
    """Emails are unique case-insensitively: the stores' lookup index keys on this."""
    return email.strip().lower()


def update_customer(customer: Customer, changes: dict[str, Any]) -> tuple[Customer, dict[str, Any]]:
    """The customer with ``changes`` applied and the previous values of what changed (Stripe's
    ``previous_attributes``). Only :data:`UPDATABLE_FIELDS`; ``name`` and ``tax_id`` may be cleared
    (None). A changed address or tax id only affects invoices taxed from now on: finalized invoices
    keep the tax they were issued with."""
    for key, value in changes.items():
        if key not in UPDATABLE_FIELDS:
            raise InvalidInput(f"{key} cannot be changed", param=key)
        if value is None and key not in CLEARABLE_FIELDS:
            raise InvalidInput(f"{key} cannot be null", param=key)
    if "preferred_locale" in changes and changes["preferred_locale"] not in SUPPORTED_LOCALES:
        raise InvalidInput(f"preferred_locale must be one of {', '.join(SUPPORTED_LOCALES)}", param="preferred_locale")
    if "tax_id" in changes and isinstance(changes["tax_id"], str) and not changes["tax_id"].strip():
        changes = {**changes, "tax_id": None}
    if changes.get("tax_id") is not None:
        address = changes.get("address") or customer.address
        country = address.country if isinstance(address, Address) else Address.model_validate(address).country
        ensure_valid_tax_id(str(changes["tax_id"]), country)
    if "peppol_id" in changes and isinstance(changes["peppol_id"], str):
        if not changes["peppol_id"].strip():
            changes = {**changes, "peppol_id": None}
        else:
            ensure_valid_peppol_id(changes["peppol_id"])
    changed = {key: value for key, value in changes.items() if getattr(customer, key) != value}
    previous = {
        key: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        for key, value in ((key, getattr(customer, key)) for key in changed)
    }
    return customer.model_copy(update=changed), previous


def ensure_valid_peppol_id(peppol_id: str, param: str = "peppol_id") -> None:
    """Refuse what is not a Peppol participant id (``<4-digit scheme>:<identifier>``)."""
    from kassa.domain.parties import peppol_id_error  # kassa.domain.parties imports this module

    reason = peppol_id_error(peppol_id)
    if reason is not None:
        raise InvalidInput(f"{param} {peppol_id!r}: {reason}", param=param)


def ensure_valid_tax_id(tax_id: str, country: str, param: str = "tax_id") -> None:
    """Refuse a tax id that fails its scheme's format or check digit (python-stdnum) for ``country``
    (an EU VAT number must also carry that country's prefix). Countries whose numbers kassa cannot
    validate accept any tax id; VIES is never asked here."""
    from kassa.domain.tax.vat_numbers import check_tax_id  # kassa.domain.tax imports this module

    check = check_tax_id(tax_id, country)
    if check.scheme != "unknown" and not check.valid:
        raise InvalidInput(
            f"{param} {tax_id!r} is not a valid {check.scheme} number for {check.country}: {check.reason}", param=param
        )
