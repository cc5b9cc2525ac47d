"""Render customer emails: a subject, an HTML body and a plain-text body, in the customer's language.

Every email is three Jinja2 templates in ``templates/``: ``<name>.subject.j2``, ``<name>.html.j2``
(autoescaped) and ``<name>.txt.j2``. The words come from ``translations/<language>.json`` through
``t("key", **values)``; money and dates are formatted by babel for the customer's locale through
``money(amount, currency)`` and ``date(value)``. Adding a language is adding one JSON file.

Templates run in Jinja2's immutable sandbox with ``StrictUndefined``: a misspelt variable fails
loudly, and a merchant's own templates cannot reach Python internals. Each built-in template
declares its variables (``TEMPLATES``); a missing required one is an ``EmailTemplateError`` naming
it, and optional ones default to None.

Money is never a float: amounts are integers in the currency's minor unit (or ``Money``), turned
into an exact ``Decimal`` with kassa's ISO 4217 exponent before babel formats them.

No I/O beyond reading the package's own files; no boto3 (the notifier adapter sends the result).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_skeleton
from babel.dates import format_time as babel_format_time
from babel.numbers import NumberPattern
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kassa import i18n
from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money, exponent
from kassa.domain.payment_methods import DEFAULT_PRE_NOTIFICATION_DAYS

DEFAULT_LANGUAGE = "en"
KINDS = ("subject", "html", "txt")


class EmailTemplateError(ValueError):
    """A template cannot be rendered: unknown name, missing or invalid variable."""


# ---------------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class TemplateSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    description: str = ""


_CUSTOMER = ("customer_name",)
_CARD = ("card_brand", "card_last4")

TEMPLATES: Mapping[str, TemplateSpec] = {
    "receipt": TemplateSpec(
        required=("invoice_number", "amount_paid", "currency", "paid_at"),
        optional=(*_CUSTOMER, "plan_name", "period_start", "period_end", *_CARD, "invoice_url", "mandate_reference"),
        description="after each successful payment",
    ),
    "upcoming_renewal": TemplateSpec(
        required=("plan_name", "amount", "currency", "renews_at"),
        optional=(*_CUSTOMER, *_CARD, "manage_url", "pre_notification", "mandate_reference", "creditor_id"),
        description="N days before a renewal; for a SEPA Direct Debit customer also the debit's pre-notification "
        "(``pre_notification``: amount, date, account, mandate reference and creditor identifier)",
    ),
    "trial_ending": TemplateSpec(
        required=("plan_name", "trial_end", "amount", "currency", "has_payment_method"),
        optional=(*_CUSTOMER, "update_card_url", "manage_url"),
        description="N days before a trial ends",
    ),
    "payment_failed": TemplateSpec(
        required=("invoice_number", "amount_due", "currency", "update_card_url"),
        optional=(*_CUSTOMER, *_CARD, "next_retry_at", "complete_by", "plan_name", "invoice_url"),
        description="a payment failed (soft: a retry follows; hard or no card: the customer must act; "
        "a checkout's first payment: complete it before ``complete_by``, when the checkout expires)",
    ),
    "authentication_required": TemplateSpec(
        required=("invoice_number", "amount_due", "currency", "authentication_url"),
        optional=_CUSTOMER,
        description="the bank wants the customer to authenticate (3-D Secure)",
    ),
    "card_expiring": TemplateSpec(
        required=("card_brand", "card_last4", "exp_month", "exp_year", "update_card_url"),
        optional=_CUSTOMER,
        description="the card on file expires at the end of next month",
    ),
    "subscription_canceled": TemplateSpec(
        required=("plan_name", "canceled_at"),
        optional=(*_CUSTOMER, "ends_at", "reason", "reactivate_url"),
        description="a subscription was canceled (reason as Stripe's cancellation_details.reason)",
    ),
    "win_back": TemplateSpec(
        required=("plan_name", "ended_at", "resubscribe_url"),
        optional=(*_CUSTOMER, "coupon_code", "coupon_expires_at"),
        description="N days after a cancellation, optionally with a coupon code",
    ),
    "payment_reminder": TemplateSpec(
        required=("invoice_number", "amount_due", "currency", "unpaid_since", "update_card_url"),
        optional=(*_CUSTOMER, "suspend_at", "invoice_url"),
        description="overdue warning (default ladder: day 3)",
    ),
    "portal_login": TemplateSpec(
        required=("portal_url", "expires_at"),
        optional=_CUSTOMER,
        description="the customer asked for a sign-in link to the customer portal (single use, expiring)",
    ),
    "account_suspended": TemplateSpec(
        required=("amount_due", "currency", "update_card_url"),
        optional=(*_CUSTOMER, "invoice_number", "cancel_at"),
        description="overdue suspension (default ladder: day 10)",
    ),
}

_RESERVED = frozenset({"branding", "locale", "language", "subject", "t", "money", "date", "month_year", "card"})


# ---------------------------------------------------------------------------------- branding
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Branding:
    """The merchant's look. ``colour`` is a hex colour (it lands in CSS, so nothing else is
    accepted); ``logo_url`` must be https."""

    name: str = "kassa"
    colour: str = "#1f6feb"
    logo_url: str | None = None
    support_email: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidInput("the brand needs a name", param="branding.name")
        if not _COLOUR.fullmatch(self.colour):
            raise InvalidInput("colour must be a hex colour like #1f6feb", param="branding.colour")
        if self.logo_url is not None and not self.logo_url.startswith("https://"):
            raise InvalidInput("logo_url must be an https URL", param="branding.logo_url")
        if self.support_email is not None and "@" not in self.support_email:
            raise InvalidInput("support_email must be an email address", param="branding.support_email")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> Branding:
        """From ``MerchantSettings`` (seller_name, support_email) plus colour / logo_url."""
        values: dict[str, Any] = {"name": settings.seller_name, "support_email": settings.support_email}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale: str = DEFAULT_LANGUAGE  # the locale actually used (after falling back)


# ---------------------------------------------------------------------------------- translations
_PACKAGE = "kassa.emails"


def available_languages() -> frozenset[str]:
    """Languages with a translations file (``translations/<language>.json``)."""
    return i18n.languages(_PACKAGE, "translations")


def translations(language: str) -> Mapping[str, str]:
    if language not in available_languages():
        raise EmailTemplateError(f"no translations for {language!r}")
    try:
        return i18n.strings(_PACKAGE, "translations", language)
    except i18n.TranslationsError as error:
        raise EmailTemplateError(str(error)) from None


placeholders = i18n.placeholders


@lru_cache(maxsize=256)
def resolve_locale(locale: str | None) -> tuple[str, str]:
    """(language of the words, locale for babel): ``nl-BE`` → (nl, nl_BE); a language without
    translations, or nonsense, → English for both (money and dates then match the words). Pure, and
    every email asks it of its customer's locale: answered once per locale (babel parses each time)."""
    raw = (locale or "").strip().replace("-", "_")
    try:
        parsed = Locale.parse(raw) if raw else None
    except (UnknownLocaleError, ValueError, TypeError):
        parsed = None
        language = raw.split("_")[0].lower()
        if language in available_languages():
            return language, language
    if parsed is None or parsed.language not in available_languages():
        return DEFAULT_LANGUAGE, DEFAULT_LANGUAGE
    return parsed.language, str(parsed)


@lru_cache(maxsize=64)
def _words(language: str) -> Mapping[str, str]:
    """``language``'s strings over English's (what :func:`translate` looks up), merged once per
    language; a language without translations raises, and is not kept."""
    english = translations(DEFAULT_LANGUAGE)
    return MappingProxyType({**english, **translations(language)})


def translate(language: str, key: str, **values: Any) -> str:
    """The string ``key`` in ``language`` (English when that language lacks it), formatted."""
    text = _words(language).get(key)
    if text is None:
        raise EmailTemplateError(f"no translation for {key!r}")
    try:
        return text.format_map(values)
    except KeyError as missing:
        raise EmailTemplateError(f"translation {key!r} needs {missing}") from None


# ---------------------------------------------------------------------------------- mandates
def mandate_terms(
    locale: str | None,
    types: tuple[str, ...] | list[str],
    *,
    seller_name: str,
    creditor_id: str | None,
    pre_notification_days: int | None,
) -> dict[str, Any] | None:
    """What a page shows before a bank account is saved, in the customer's language (``locale``: their
    ``preferred_locale``; English when kassa does not speak it): the SEPA Direct Debit mandate — the
    EPC rulebook's wording in that language, with the merchant's name and SEPA creditor identifier, the
    refund right for 8 weeks and the notice before each debit — and its acceptance label, and the ACH
    authorisation. None when ``types`` has no bank debit. The words are ``mandate.*`` in
    ``translations/<language>.json``, the one source for pages, the checkout answer and emails."""
    if "sepa_debit" not in types and "us_bank_account" not in types:
        return None
    language, _ = resolve_locale(locale)
    days = pre_notification_days or DEFAULT_PRE_NOTIFICATION_DAYS
    terms: dict[str, Any] = {
        "language": language,
        "seller_name": seller_name,
        "creditor_id": creditor_id,
        "pre_notification_days": pre_notification_days,
    }
    if "sepa_debit" in types:
        creditor = (
            translate(language, "mandate.creditor", seller=seller_name, creditor_id=creditor_id)
            if creditor_id
            else seller_name
        )
        terms["sepa_debit"] = translate(
            language, "mandate.sepa_debit", creditor=creditor, seller=seller_name, days=days
        )
        terms["sepa_debit_accept"] = translate(language, "mandate.sepa_debit_accept")
    if "us_bank_account" in types:
        terms["us_bank_account"] = translate(language, "mandate.us_bank_account", seller=seller_name)
    return terms


# ---------------------------------------------------------------------------------- formatting
@lru_cache(maxsize=256)
def _babel_locale(locale: str) -> Locale:
    """Parsed once per locale: babel parses a locale name again at every call it is given as a string."""
    return Locale.parse(locale)


@lru_cache(maxsize=256)
def _currency_pattern(locale: str, digits: int) -> NumberPattern:
    pattern = copy.copy(_babel_locale(locale).currency_formats["standard"])
    pattern.frac_prec = (digits, digits)  # kassa's ISO 4217 exponent, not CLDR's (they differ for IQD)
    return pattern


def to_decimal(amount: int, currency: str) -> Decimal:
    """Minor units → an exact Decimal in major units (1500 EUR → 15.00; 1200 JPY → 1200; 4500 KWD → 4.500)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise EmailTemplateError(f"amounts are integers in minor units, got {type(amount).__name__}")
    return Decimal(amount).scaleb(-exponent(currency))


def format_money(amount: int | Money, currency: str | None = None, locale: str = DEFAULT_LANGUAGE) -> str:
    """``format_money(1500, "EUR", "nl")`` → ``€ 15,00`` (babel's CLDR pattern for the locale)."""
    if isinstance(amount, Money):
        minor, currency = amount.amount, amount.currency
    else:
        minor = amount
    if not currency:
        raise EmailTemplateError("an amount needs its currency")
    to_decimal(minor, currency.upper())  # refuses a float or a bool
    return _formatted_money(minor, currency.upper(), locale)


@lru_cache(maxsize=4096)
def _formatted_money(minor: int, code: str, locale: str) -> str:
    """Formatting is pure, and the same amounts recur in every receipt of a plan: formatted once."""
    return _currency_pattern(locale, exponent(code)).apply(
        to_decimal(minor, code), _babel_locale(locale), currency=code, currency_digits=False
    )


def format_day(value: date | datetime, locale: str = DEFAULT_LANGUAGE, fmt: str = "long", tz: str | None = None) -> str:
    """A date for the locale (``long``: March 14, 2025 / 14 maart 2025 / 14. März 2025 / 14 mars 2025).
    A datetime must be aware; it is shown in ``tz`` (default UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EmailTemplateError("datetimes must be timezone-aware")
        value = value.astimezone(ZoneInfo(tz) if tz else UTC).date()
    elif not isinstance(value, date):
        raise EmailTemplateError(f"expected a date, got {type(value).__name__}")
    return _formatted_day(value, fmt, locale)


@lru_cache(maxsize=4096)
def _formatted_day(value: date, fmt: str, locale: str) -> str:
    return babel_format_date(value, format=fmt, locale=_babel_locale(locale))


def format_clock_time(value: datetime, locale: str = DEFAULT_LANGUAGE, tz: str | None = None) -> str:
    """The time of day of an aware datetime for the locale, with its zone (9:00 AM UTC / 09:00 UTC)."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise EmailTemplateError("expected a timezone-aware datetime")
    zone = ZoneInfo(tz) if tz else UTC
    return f"{babel_format_time(value.astimezone(zone), format='short', locale=locale)} {tz or 'UTC'}"


def format_month(month: int, year: int, locale: str = DEFAULT_LANGUAGE) -> str:
    """A month and year (a card's expiry): March 2025 / maart 2025 / März 2025 / mars 2025."""
    if not 1 <= int(month) <= 12:
        raise EmailTemplateError("exp_month must be between 1 and 12")
    return format_skeleton("yMMMM", date(int(year), int(month), 1), locale=locale)


#: a bank account passes its method type as the "brand": it is named "bank account ending in …"
BANK_ACCOUNT_TYPES = frozenset({"sepa_debit", "us_bank_account"})

CARD_BRANDS = {
    "amex": "American Express",
    "cartes_bancaires": "Cartes Bancaires",
    "diners": "Diners Club",
    "discover": "Discover",
    "eftpos_au": "eftpos",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}


# ---------------------------------------------------------------------------------- environments
Overrides = Mapping[str, str] | str | os.PathLike[str] | BaseLoader


def _environment(loader: BaseLoader) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=loader,
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


@cache
def _builtin_loader() -> PackageLoader:
    return PackageLoader(_PACKAGE, "templates")


@cache
def _builtin_environment() -> ImmutableSandboxedEnvironment:
    return _environment(_builtin_loader())


def _override_loader(overrides: Overrides) -> BaseLoader:
    if isinstance(overrides, BaseLoader):
        return overrides
    if isinstance(overrides, str | os.PathLike):
        return FileSystemLoader(os.fspath(overrides))
    return DictLoader(dict(overrides))


def environment(overrides: Overrides | None = None) -> ImmutableSandboxedEnvironment:
    """The merchant's templates (a dict name → source, a directory, or a Jinja2 loader) first, then
    kassa's. Names: ``<name>.<subject|html|txt>.j2``, optionally per language (``nl/receipt.html.j2``);
    the layouts (``layout.html.j2``, ``layout.txt.j2``) can be overridden the same way."""
    if overrides is None:
        return _builtin_environment()
    return _environment(ChoiceLoader([_override_loader(overrides), _builtin_loader()]))


def _template(env: ImmutableSandboxedEnvironment, name: str, kind: str, language: str) -> Template:
    if env is _builtin_environment():  # kassa's own templates never change: the choice is made once
        return _builtin_template(name, kind, language)
    return env.select_template([f"{language}/{name}.{kind}.j2", f"{name}.{kind}.j2"])


@lru_cache(maxsize=512)
def _builtin_template(name: str, kind: str, language: str) -> Template:
    # Jinja caches the templates it loaded, not the ones it did not find: without this, every email
    # looked for its language's variant on disk again
    return _builtin_environment().select_template([f"{language}/{name}.{kind}.j2", f"{name}.{kind}.j2"])


# ---------------------------------------------------------------------------------- context
def _check_context(name: str, context: Mapping[str, Any]) -> dict[str, Any]:
    spec = TEMPLATES.get(name)
    values = dict(context)
    clash = _RESERVED & values.keys()
    if clash:
        raise EmailTemplateError(f"{sorted(clash)} are reserved names in email templates")
    if spec is not None:
        missing = [key for key in spec.required if key not in values]
        if missing:
            raise EmailTemplateError(f"template {name!r} needs {', '.join(missing)}")
        for key in spec.optional:
            values.setdefault(key, None)
    for key, value in values.items():
        url = key.endswith("_url") and value is not None
        if url and (not isinstance(value, str) or not value.startswith(("https://", "http://"))):
            raise EmailTemplateError(f"{key} must be an http(s) URL")
    return values


def _helpers(language: str, locale: str, tz: str | None) -> dict[str, Callable[..., Any]]:
    def t(key: str, **values: Any) -> str:
        return translate(language, key, **values)

    def money(amount: int | Money, currency: str | None = None) -> str:
        return format_money(amount, currency, locale)

    def day(value: date | datetime, fmt: str = "long") -> str:
        return format_day(value, locale, fmt, tz)

    def month_year(month: int, year: int) -> str:
        return format_month(month, year, locale)

    def clock_time(value: datetime) -> str:
        return format_clock_time(value, locale, tz)

    def card(brand: str | None, last4: str | None) -> str | None:
        """The payment method: a card by its brand, or a bank account (``brand`` is then the method
        type, ``sepa_debit`` or ``us_bank_account``)."""
        if not last4:
            return None
        if brand and brand.lower() in BANK_ACCOUNT_TYPES:
            return t("bank_account", last4=last4)
        if brand and brand.lower() in CARD_BRANDS:
            return t("card", brand=CARD_BRANDS[brand.lower()], last4=last4)
        return t("card_unbranded", last4=last4)

    return {"t": t, "money": money, "date": day, "month_year": month_year, "card": card, "time": clock_time}


_BLANK_LINES = re.compile(r"\n{3,}")
# line breaks and runs of ordinary spaces; not the no-break spaces babel and French typography use
_SUBJECT_SPACE = re.compile(r"[ \t\r\n\f\v\x85\u2028\u2029]+")


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)) + "\n"


def render(
    template: str,
    locale: str | None,
    context: Mapping[str, Any],
    branding: Branding | None = None,
    overrides: Overrides | None = None,
    *,
    timezone: str | None = None,
) -> RenderedEmail:
    """Render email ``template`` for a customer whose locale is ``locale`` (``nl``, ``de-AT`` …;
    unknown → English). ``context``: the template's variables (see ``TEMPLATES`` and
    docs/emails.md); ``timezone``: an IANA name to show dates in (default UTC)."""
    env = environment(overrides)
    if template not in TEMPLATES and overrides is None:
        raise EmailTemplateError(f"unknown email template {template!r}")
    language, babel_locale = resolve_locale(locale)
    values = _check_context(template, context)
    values.update(_helpers(language, babel_locale, timezone))
    values.update(branding=branding or Branding(), locale=babel_locale, language=language)
    try:
        subject = _SUBJECT_SPACE.sub(" ", _template(env, template, "subject", language).render(values)).strip()
        values["subject"] = subject
        html = _template(env, template, "html", language).render(values).strip() + "\n"
        text = _tidy_text(_template(env, template, "txt", language).render(values))
    except InvalidInput as error:  # an unsupported currency inside a template
        raise EmailTemplateError(error.message) from error
    return RenderedEmail(subject=subject, html=html, text=text, locale=babel_locale)
