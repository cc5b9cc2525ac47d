"""Tax models: the seller's settings, the customer and lines to tax, and the result of a quote.

Amounts are integers in the currency's minor unit (like ``Money`` and invoice lines); rates are
strings of exact decimals ("25.5") in results and exact ``Fraction`` values in computations.
Inputs refuse floats (strict integers). Validation errors are ``InvalidInput`` naming the field.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.tax.rates import default_rates
from kassa.domain.tax.territories import EU_MEMBER_STATES, VAT_AREA_ALIASES

# ------------------------------------------------------------------ tax codes
SAAS = "saas"  # electronically supplied services (Annex II of Directive 2006/112/EC), SaaS, subscriptions
NONTAXABLE = "nontaxable"

# Product tax codes kassa understands, and the rate category each maps to. Stripe's codes are
# accepted as aliases so catalogs imported from Stripe keep working.
TAX_CODES: dict[str, str] = {
    SAAS: SAAS,
    "digital_services": SAAS,
    "txcd_10000000": SAAS,  # Stripe: general electronically supplied services
    "txcd_10103000": SAAS,  # Stripe: SaaS, personal use
    "txcd_10103001": SAAS,  # Stripe: SaaS, business use
    NONTAXABLE: NONTAXABLE,
    "txcd_00000000": NONTAXABLE,  # Stripe: nontaxable
}


def tax_category(tax_code: str | None, default_tax_code: str) -> str:
    code = (tax_code or default_tax_code).strip().lower()
    try:
        return TAX_CODES[code]
    except KeyError:
        raise InvalidInput(
            f"unknown tax code {code!r}; known: {', '.join(sorted(TAX_CODES))}", param="tax_code"
        ) from None


# ------------------------------------------------------------------ rules
class RuleId(StrEnum):
    """Stable ids of the rules that decide a line's tax (stored with invoices; never renamed)."""

    CUSTOMER_EXEMPT = "customer_exempt"
    PRODUCT_NONTAXABLE = "product_nontaxable"
    EU_DOMESTIC = "eu_domestic"
    EU_REVERSE_CHARGE = "eu_reverse_charge"
    EU_OSS = "eu_b2c_oss"
    EU_LOCAL_REGISTRATION = "eu_b2c_local_registration"
    EU_OVER_THRESHOLD = "eu_b2c_over_threshold"
    EU_BELOW_THRESHOLD = "eu_b2c_below_threshold"
    OUTSIDE_EU_VAT_AREA = "outside_eu_vat_area"
    REGISTERED = "registered"
    NOT_REGISTERED = "not_registered"
    B2B_REVERSE_CHARGE = "b2b_reverse_charge"
    NOT_TAXABLE = "not_taxable"
    NO_TAX_RULE = "no_tax_rule"


EU_REVERSE_CHARGE_MENTION = (
    "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"
)


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _as_invalid_input(cls, data: Any, handler: Any) -> Any:
        """Validation errors surface as the domain's ``InvalidInput`` naming the first bad field."""
        try:
            return handler(data)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            message = str(first["msg"]).removeprefix("Value error, ")
            raise InvalidInput(f"{param}: {message}" if param else message, param=param) from None


_REGISTRATION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_HST_PROVINCES = frozenset({"CA-ON", "CA-NB", "CA-NL", "CA-NS", "CA-PE"})


class TaxSettings(FrozenModel):
    """What the seller tells kassa about its tax position.

    - ``home_country``: where the seller is established (ISO 3166-1 alpha-2). It counts as a
      registration: an EU seller is VAT-registered at home, a Canadian one for GST/HST, and so on.
    - ``oss_registered``: registered for the EU One-Stop Shop (the union scheme for an EU seller, the
      non-union scheme for a seller outside the EU): EU consumers are charged their own country's VAT.
    - ``eu_threshold_exceeded``: an EU seller's cross-border B2C sales of digital services passed
      €10,000 this or last calendar year (Article 59c of Directive 2006/112/EC). Below it and without
      OSS, EU consumers in other member states pay the seller's home VAT.
    - ``registrations``: other jurisdictions where the seller is registered to collect tax: member
      states (local VAT registration), "GB", "NO", "CH", "AU", "NZ", "JP", "SG", "IN", "CA" (GST/HST),
      "CA-QC" (QST), "CA-BC", "CA-MB", "CA-SK" (PST/RST), "US-WA" and other states (sales tax).
      Outside the EU, kassa charges tax only where the seller is registered.
    - ``default_tax_code``: the tax code of products that have none (see ``TAX_CODES``).
    """

    home_country: str = Field(min_length=2, max_length=2)
    oss_registered: bool = False
    eu_threshold_exceeded: bool = False
    registrations: frozenset[str] = frozenset()
    default_tax_code: str = SAAS

    @field_validator("home_country")
    @classmethod
    def _home(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("home_country must be an ISO 3166-1 alpha-2 code")
        return value.upper()

    @field_validator("registrations", mode="before")
    @classmethod
    def _registrations(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("registrations is a list of jurisdiction codes like ['GB', 'US-WA']")
        return value

    @field_validator("registrations")
    @classmethod
    def _known_registrations(cls, value: frozenset[str]) -> frozenset[str]:
        known = default_rates().jurisdictions | EU_MEMBER_STATES
        normalized = set()
        for code in value:
            code = code.strip().upper()
            if code == "EL":
                raise ValueError("use the ISO code GR for Greece (EL is only its VAT-number prefix)")
            if code in _HST_PROVINCES:
                raise ValueError(f"{code} levies HST, which the GST/HST registration 'CA' covers: register 'CA'")
            if not _REGISTRATION.fullmatch(code) or code not in known:
                raise ValueError(f"unknown tax jurisdiction {code!r} (e.g. 'GB', 'CA-QC', 'US-WA')")
            normalized.add(code)
        return frozenset(normalized)

    @field_validator("default_tax_code")
    @classmethod
    def _tax_code(cls, value: str) -> str:
        code = value.strip().lower()
        if code not in TAX_CODES:
            raise ValueError(f"unknown tax code {value!r}; known: {', '.join(sorted(TAX_CODES))}")
        return code

    @model_validator(mode="after")
    def _threshold_only_in_eu(self) -> TaxSettings:
        if self.eu_threshold_exceeded and self.home_tax_country not in EU_MEMBER_STATES:
            raise InvalidInput(
                "eu_threshold_exceeded: the €10,000 threshold only applies to sellers established in the EU "
                "(a seller outside the EU charges EU consumers through the OSS non-union scheme)",
                param="eu_threshold_exceeded",
            )
        return self

    @property
    def home_tax_country(self) -> str:
        """The home country for tax: Monaco is inside the French VAT area, and so on."""
        return VAT_AREA_ALIASES.get(self.home_country, self.home_country)

    @property
    def eu_established(self) -> bool:
        return self.home_tax_country in EU_MEMBER_STATES

    def registered_in(self, jurisdiction: str) -> bool:
        return jurisdiction == self.home_tax_country or jurisdiction in self.registrations


class TaxCustomer(FrozenModel):
    """The customer as tax sees it. ``tax_id`` is an EU VAT number with its country prefix (Greece:
    EL) for EU customers, or the national business number elsewhere (GB VAT, NO org. number, CH UID,
    AU ABN, NZ IRD/GST, SG UEN, JP corporate number, IN GSTIN, CA business number). A valid one makes
    the customer a business."""

    address: Address
    tax_id: str | None = None
    tax_exempt: bool = False


class TaxLineInput(FrozenModel):
    """One line to tax: its amount in minor units, tax excluded (``exclusive``) or included."""

    amount: StrictInt
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    tax_code: str | None = None
    reference: str | None = None  # the caller's line id, echoed back


# ------------------------------------------------------------------ results
class TaxRule(FrozenModel):
    id: RuleId
    description: str  # one human sentence saying why


class TaxComponent(FrozenModel):
    """One tax on a line (Canada can have two: GST + QST, GST + PST)."""

    jurisdiction: str  # "FI", "CA", "CA-QC", "US-TX"
    country: str  # ISO country of the tax (the member state of consumption for OSS)
    tax_type: str  # VAT, GST, HST, QST, PST, RST, IGST, consumption_tax, sales_tax
    rate: str  # statutory percentage, "25.5"
    taxable_amount: int  # the part of the line the rate applies to (Texas: 80% of it)
    tax_amount: int
    source: str  # citation of the rate


class LineTax(FrozenModel):
    reference: str | None
    tax_code: str
    tax_behavior: TaxBehavior
    jurisdiction: str
    country: str
    rate: str  # effective combined rate on taxable_amount: "14.975" in Québec, "5" for Texas SaaS, "0"
    taxable_amount: int  # the line's amount excluding tax
    tax_amount: int
    total: int  # taxable_amount + tax_amount, exactly
    reverse_charge: bool
    rule: TaxRule
    legal_mention: str | None = None
    vies_verified: bool | None = None
    components: tuple[TaxComponent, ...] = ()


class BreakdownRow(FrozenModel):
    """Lines aggregated per jurisdiction, tax type and rate (an invoice's tax summary)."""

    jurisdiction: str
    country: str
    tax_type: str | None  # None for lines without tax (reverse charge, exempt, not registered, …)
    rate: str
    reverse_charge: bool
    taxable_amount: int
    tax_amount: int


class TaxQuote(FrozenModel):
    currency: str
    tax_date: date
    jurisdiction: str
    customer_tax_id: str | None  # the normalized tax id when valid (print it on reverse-charge invoices)
    vies_verified: bool | None  # True/False: VIES answered; None: not asked, unavailable or not needed
    reverse_charge: bool
    legal_mention: str | None
    rule: TaxRule | None  # the rule when every line was decided by the same one
    rate: str | None  # the effective rate when every line has the same one
    lines: tuple[LineTax, ...]
    breakdown: tuple[BreakdownRow, ...]
    taxable_amount: int
    tax_amount: int
    total: int
