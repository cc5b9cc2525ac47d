"""Merchant settings, one validated model."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kassa.domain.audit import DEFAULT_RETENTION_DAYS as DEFAULT_AUDIT_RETENTION_DAYS
from kassa.domain.customer import SUPPORTED_LOCALES, Address, ensure_valid_tax_id
from kassa.domain.dunning import OverdueLadder, RetrySchedule, default_ladder
from kassa.domain.errors import InvalidInput
from kassa.domain.money import normalize_currency
from kassa.domain.parties import Party, peppol_id_error
from kassa.domain.payment_methods import (
    DEFAULT_PRE_NOTIFICATION_DAYS,
    DEFAULT_TYPES,
    PaymentMethodKind,
    check_redirect_types,
    validate_creditor_id,
)
from kassa.domain.portal import PortalSettings
from kassa.domain.tax.model import TaxSettings

_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
#: A merchant template's source is at most 64 KB (UTF-8), and all of them together 256 KB: the
#: settings are one DynamoDB item, and an item is at most 400 KB.
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_TEMPLATES_BYTES = 256 * 1024
# a merchant template, optionally for one of the customers' languages ("pl/receipt.html.j2")
_LANGUAGES = "|".join(map(re.escape, SUPPORTED_LOCALES))
_TEMPLATE_FILE = re.compile(rf"(?:(?:{_LANGUAGES})/)?[a-z][a-z0-9_]{{0,39}}\.(?:subject|html|txt)\.j2")


class EmailSettings(BaseModel):
    """Which customer emails kassa sends, when, and how they look (docs/emails.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # False: nothing is sent (the outbox still records what would have been)
    receipts: bool = True
    # days before a renewal to send ``upcoming_renewal`` (Stripe: off unless switched on); None: never
    upcoming_renewal_days: int | None = Field(default=None, ge=1, le=60)
    win_back_days: int | None = Field(default=None, ge=1, le=365)  # None: no win-back email
    win_back_coupon: str | None = None  # a promotion code offered in the win-back email
    # SEPA pre-notification (docs/payments.md#bank-debits): a bank-debit customer's upcoming_renewal
    # email announces the debit's amount and date, sent pre_notification_days before it even when
    # upcoming_renewal_days is off; False: only the merchant's own reminder (then tell them otherwise)
    pre_notification: bool = True
    card_link_days: int = Field(default=7, ge=1, le=60)  # how long a card-update link stays valid
    # how long a hosted invoice link (receipt, payment emails, the API's hosted_invoice_url) stays valid
    invoice_link_days: int = Field(default=30, ge=1, le=365)
    colour: str = "#1f6feb"
    logo_url: str | None = None
    # the merchant's own templates: "<name>.<subject|html|txt>.j2" (optionally "nl/…") → Jinja2 source
    templates: dict[str, str] = Field(default_factory=dict)

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.fullmatch(value):
            raise ValueError("colour must be a hex colour like #1f6feb")
        return value

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("logo_url must be an https URL")
        return value

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            return value
        from jinja2 import TemplateSyntaxError  # only when the merchant supplies templates
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        parser = ImmutableSandboxedEnvironment()
        total = 0
        for name, source in value.items():
            if not _TEMPLATE_FILE.fullmatch(name):
                raise ValueError(f"template file {name!r} must be named <name>.<subject|html|txt>.j2")
            size = len(source.encode("utf-8", "surrogatepass"))
            total += size
            if size > MAX_TEMPLATE_BYTES:
                raise ValueError(f"template {name!r} is {size:,} bytes; a template is at most {MAX_TEMPLATE_BYTES:,}")
            if total > MAX_TEMPLATES_BYTES:
                raise ValueError(f"the templates are more than {MAX_TEMPLATES_BYTES:,} bytes together")
            try:
                parser.parse(source)
            except TemplateSyntaxError as error:  # caught when saved, not when a customer's email is due
                raise ValueError(f"template {name!r}, line {error.lineno}: {error.message}") from error
            except RecursionError as error:  # nesting too deep for Jinja's parser
                raise ValueError(f"template {name!r} is nested too deeply to be parsed") from error
        return value

    def template_names(self) -> list[str]:
        """The merchant's own template names (``final_notice`` for ``final_notice.html.j2``)."""
        return sorted({name.rsplit("/", 1)[-1].split(".", 1)[0] for name in self.templates})


class DisputeSettings(BaseModel):
    """What a chargeback does (docs/payments.md): the merchant is emailed; access is kept or suspended
    while the dispute is open (and after it is lost); a won dispute gives access back."""

    model_config = ConfigDict(extra="forbid")

    access: Literal["keep", "suspend"] = "keep"
    notify_email: str | None = Field(default=None, max_length=254)  # None: the support_email

    @field_validator("notify_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("notify_email must be an email address")
        return value


class FraudSettings(BaseModel):
    """What a Radar early fraud warning does: ``flag`` the customer and invoice (default), or
    ``refund_and_cancel`` — refund the charge in full and cancel the subscription now (Stripe's advice
    to avoid the dispute that usually follows)."""

    model_config = ConfigDict(extra="forbid")

    early_warning: Literal["flag", "refund_and_cancel"] = "flag"


class BankDebitSettings(BaseModel):
    """Bank debits (docs/payments.md#bank-debits): the SEPA creditor identifier the mandate names,
    how long before a debit the customer is told (SEPA pre-notification), and whether a subscription
    keeps its access while a debit is processing (Stripe does: ``keep``) or waits for the money
    (``suspend``: a checkout stays incomplete, a renewal's access is held until it settles)."""

    model_config = ConfigDict(extra="forbid")

    sepa_creditor_id: str | None = Field(default=None, max_length=35)
    pre_notification_days: int = Field(default=DEFAULT_PRE_NOTIFICATION_DAYS, ge=1, le=60)
    access_while_processing: Literal["keep", "suspend"] = "keep"

    @field_validator("sepa_creditor_id")
    @classmethod
    def _creditor(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return validate_creditor_id(value)
        except InvalidInput as error:  # a ValueError, so the API names the field
            raise ValueError(error.message) from error


_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class RateTable:
    """One currency's rates into the reporting currency: a base rate and per-month overrides. A
    month's rate is the override of the latest month not after it; before the first override (or
    without any) the base rate; with overrides but no base, the first override's rate also applies
    to the months before it."""

    def __init__(self, base: Fraction | None, by_month: dict[str, Fraction] | None = None) -> None:
        self.by_month = dict(sorted((by_month or {}).items()))
        if base is None and not self.by_month:
            raise ValueError("a rate table needs a base rate or a month's rate")
        self.base = base

    def at(self, month: str) -> Fraction:
        """The rate of ``month`` (``YYYY-MM``)."""
        found = self.base if self.base is not None else next(iter(self.by_month.values()))
        for start, rate in self.by_month.items():
            if start > month:
                break
            found = rate
        return found

    @property
    def varies(self) -> bool:
        return bool(self.by_month)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RateTable) and (self.base, self.by_month) == (other.base, other.by_month)

    def __repr__(self) -> str:
        return f"RateTable({self.base!r}, {self.by_month!r})"


class AnalyticsSettings(BaseModel):
    """The merchant's reporting currency and the exchange rates it sets (no network access assumed):
    ``exchange_rates["USD"] = "0.92"`` means 1 USD = 0.92 of the reporting currency (major units);
    ``exchange_rates_by_month["USD"] = {"2027-03": "0.95"}`` overrides it from March 2027 on (the
    latest month not after a report's month applies: ``RateTable``). Rates are decimal strings (or
    integers), > 0, at most 12 decimals; never floats."""

    model_config = ConfigDict(extra="forbid")

    reporting_currency: str | None = None  # None: the merchant's default_currency
    exchange_rates: dict[str, str] = Field(default_factory=dict)
    exchange_rates_by_month: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_currency(value)
        except InvalidInput as error:
            raise ValueError(error.message) from error

    @field_validator("exchange_rates", mode="before")
    @classmethod
    def _rates(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for code, rate in value.items():
            try:
                currency = normalize_currency(str(code))
            except InvalidInput as error:
                raise ValueError(f"exchange_rates: {error.message}") from error
            out[currency] = canonical_rate(rate, f"exchange_rates.{currency}")
        return out

    @field_validator("exchange_rates_by_month", mode="before")
    @classmethod
    def _monthly_rates(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out: dict[str, dict[str, str]] = {}
        for code, by_month in value.items():
            try:
                currency = normalize_currency(str(code))
            except InvalidInput as error:
                raise ValueError(f"exchange_rates_by_month: {error.message}") from error
            field = f"exchange_rates_by_month.{currency}"
            if not isinstance(by_month, dict) or not by_month:
                raise ValueError(f'{field} maps months to rates, e.g. {{"2027-03": "0.95"}}')
            months: dict[str, str] = {}
            for month, rate in by_month.items():
                if not isinstance(month, str) or not _MONTH.match(month):
                    raise ValueError(f"{field}: {month!r} is not a month YYYY-MM")
                months[month] = canonical_rate(rate, f"{field}.{month}")
            out[currency] = dict(sorted(months.items()))
        return out

    @model_validator(mode="after")
    def _not_itself(self) -> AnalyticsSettings:
        if self.reporting_currency and self.reporting_currency in self.exchange_rates:
            raise ValueError("exchange_rates must not list the reporting currency itself")
        if self.reporting_currency and self.reporting_currency in self.exchange_rates_by_month:
            raise ValueError("exchange_rates_by_month must not list the reporting currency itself")
        return self

    def rate(self, currency: str, reporting: str) -> Fraction | None:
        """How many units of ``reporting`` one unit of ``currency`` is worth (None: no rate set), by
        the base rate."""
        if currency == reporting:
            return Fraction(1)
        raw = self.exchange_rates.get(currency)
        return Fraction(raw) if raw is not None else None

    def rates(self, currency: str, reporting: str) -> RateTable | None:
        """``currency``'s rates per month into ``reporting`` (None: neither a rate nor a month's rate set)."""
        if currency == reporting:
            return RateTable(Fraction(1))
        by_month = {m: Fraction(r) for m, r in self.exchange_rates_by_month.get(currency, {}).items()}
        base = self.rate(currency, reporting)
        return RateTable(base, by_month) if base is not None or by_month else None


def canonical_rate(value: object, param: str) -> str:
    if isinstance(value, float | bool) or not isinstance(value, int | str):
        raise ValueError(f'{param} is a decimal string such as "0.92" (or an integer), never a float')
    try:
        rate = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f'{param} must be a decimal number such as "0.92"') from None
    exp = rate.as_tuple().exponent
    if not rate.is_finite() or rate <= 0 or (isinstance(exp, int) and exp < -12):
        raise ValueError(f"{param} must be greater than 0 with at most 12 decimals")
    return format(rate.normalize(), "f")


class MerchantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seller_name: str = Field(default="kassa demo shop", min_length=1, max_length=200)
    seller_address: Address = Field(default_factory=lambda: Address(country="NL"))
    # what an invoice shows of the seller (kassa.domain.parties): VAT number, Peppol id
    # "<scheme>:<id>", company registration (KvK, HRB, SIREN …) and bank details for transfers
    seller_tax_id: str | None = Field(default=None, max_length=40)
    seller_peppol_id: str | None = Field(default=None, max_length=60)
    seller_registration: str | None = Field(default=None, max_length=100)
    seller_iban: str | None = Field(default=None, max_length=42)
    seller_bic: str | None = Field(default=None, max_length=11)
    invoice_prefix: str = Field(default="KASSA", description="3–12 upper-case letters or digits")
    default_currency: str = "EUR"
    support_email: str = "billing@example.com"
    # the seller's tax position (home country, OSS, registrations); when absent: established in the
    # seller address's country and registered for the EU One-Stop Shop
    tax: TaxSettings | None = None
    # dunning (docs/dunning.md): when failed payments are retried, and what happens while unpaid
    retry_schedule: RetrySchedule = Field(default_factory=RetrySchedule)
    # validated by _ladder_emails, which knows the merchant's own templates
    overdue_ladder: SkipValidation[OverdueLadder] = Field(default_factory=default_ladder)
    emails: EmailSettings = Field(default_factory=EmailSettings)
    # after payment (docs/payments.md): chargebacks and Radar early fraud warnings
    disputes: DisputeSettings = Field(default_factory=DisputeSettings)
    fraud: FraudSettings = Field(default_factory=FraudSettings)
    # what checkout and the card page offer (a price may narrow it): card, sepa_debit, us_bank_account;
    # ideal, bancontact: a checkout's first payment, for Dutch / Belgian customers, with sepa_debit
    payment_method_types: tuple[PaymentMethodKind, ...] = Field(default=DEFAULT_TYPES, min_length=1)
    bank_debits: BankDebitSettings = Field(default_factory=BankDebitSettings)
    # how long audit trail entries are kept (docs/audit.md): 7 years by default, for invoices' sake
    audit_retention_days: int = Field(default=DEFAULT_AUDIT_RETENTION_DAYS, ge=1, le=36_500)
    # subscription analytics (docs/analytics.md): the reporting currency and the merchant's exchange rates
    analytics: AnalyticsSettings | None = None
    # the customer portal (docs/portal.md): what a customer may change themselves
    portal: PortalSettings = Field(default_factory=PortalSettings)

    @field_validator("payment_method_types")
    @classmethod
    def _types(cls, value: tuple[PaymentMethodKind, ...]) -> tuple[PaymentMethodKind, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each payment method type once")
        check_redirect_types(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _ladder_emails(cls, data: Any) -> Any:
        # the ladder may name the merchant's own templates: validate it knowing them
        if isinstance(data, dict) and data.get("overdue_ladder") is not None:
            emails = data.get("emails")
            emails = EmailSettings.model_validate(emails) if isinstance(emails, dict) else emails
            names = emails.template_names() if isinstance(emails, EmailSettings) else []
            raw = data["overdue_ladder"]
            raw = raw.model_dump(mode="json") if isinstance(raw, OverdueLadder) else raw
            if not isinstance(raw, dict):
                raise InvalidInput("overdue_ladder must be an object with states", param="overdue_ladder")
            try:
                ladder = OverdueLadder.validated(raw, templates=names)
            except InvalidInput as error:
                raise InvalidInput(error.message, param=f"overdue_ladder.{error.param or 'states'}") from error
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise InvalidInput(f"{where}: {first['msg']}", param=f"overdue_ladder.{where}") from error
            data = {**data, "overdue_ladder": ladder}
            if isinstance(emails, EmailSettings):
                data["emails"] = emails
        return data

    @field_validator("seller_peppol_id")
    @classmethod
    def _peppol(cls, value: str | None) -> str | None:
        reason = peppol_id_error(value) if value else None
        if reason is not None:
            raise ValueError(reason)
        return value or None

    @field_validator("seller_iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        if not value:
            return None
        from stdnum import iban
        from stdnum.exceptions import ValidationError as StdnumError

        try:
            return str(iban.validate(value))
        except StdnumError as error:
            raise ValueError(f"seller_iban is not a valid IBAN: {error}") from error

    @field_validator("seller_bic")
    @classmethod
    def _bic(cls, value: str | None) -> str | None:
        if not value:
            return None
        from stdnum import bic

        if not bic.is_valid(value):
            raise ValueError("seller_bic is not a valid BIC (8 or 11 characters)")
        return str(bic.compact(value))

    @field_validator("seller_tax_id")
    @classmethod
    def _seller_tax_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        address = info.data.get("seller_address")
        if value and isinstance(address, Address):  # declared after seller_address, so it is known
            try:
                ensure_valid_tax_id(value, address.country, param="seller_tax_id")
            except InvalidInput as error:  # a ValueError, so the API names the field
                raise ValueError(error.message) from error
        return value or None

    def seller_party(self) -> Party:
        """The seller as an invoice made now records it."""
        return Party(
            name=self.seller_name,
            address=self.seller_address,
            tax_id=self.seller_tax_id,
            peppol_id=self.seller_peppol_id,
            email=self.support_email,
            registration=self.seller_registration,
            iban=self.seller_iban,
            bic=self.seller_bic,
        )

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
