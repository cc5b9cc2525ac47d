"""Stripe Tax as an optional tax provider, behind the same interface as kassa's engine (``quote_tax``).

    provider = StripeTaxProvider(secret_key)
    quote = provider.quote(lines, currency="EUR", customer=customer, settings=settings, tax_date=date(2025, 9, 1))

Off by default: nothing constructs it unless a deployment configures it. One call per quote,
``POST /v1/tax/calculations`` through the stripe SDK, with:

- ``line_items``: amount, reference, tax behavior and a Stripe tax code (kassa's ``saas`` becomes
  ``txcd_10103001`` for a business customer, ``txcd_10103000`` for a consumer; ``nontaxable``
  becomes ``txcd_00000000``; Stripe codes are passed through);
- ``customer_details``: the billing address, the customer's tax id when kassa finds it valid (an
  invalid one is not sent, so the customer is a consumer, as in kassa's engine), and
  ``taxability_override=customer_exempt`` for an exempt customer;
- ``tax_date``: noon UTC on the tax point (Stripe accepts dates up to 31 days away from today).

The answer becomes a ``TaxQuote``: per line the tax Stripe computed, its components from the
line's ``tax_breakdown``, and a rule: the closest ``RuleId`` with the description
"decided by Stripe Tax: <taxability_reason>". Stripe applies the registrations configured in the
Stripe dashboard, not ``TaxSettings.registrations``; ``settings`` only supplies the default tax
code and the home country used to name rules. VIES is not asked (``vies_verified`` is None).

Errors: a request Stripe refuses is ``InvalidInput`` naming kassa's field (``address.postal_code``,
``lines[0].amount``, ``tax_date``…); an outage, a bad key or Stripe Tax not being active is
``PaymentProviderError`` (retryable; the caller may fall back to kassa's engine).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import stripe
from stripe import StripeClient

from kassa.adapters import usage
from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import InvalidInput, PaymentProviderError
from kassa.domain.money import normalize_currency
from kassa.domain.tax import (
    EU_MEMBER_STATES,
    EU_REVERSE_CHARGE_MENTION,
    NONTAXABLE,
    SAAS,
    LineTax,
    RuleId,
    TaxComponent,
    TaxCustomer,
    TaxIdCheck,
    TaxLineInput,
    TaxQuote,
    TaxRule,
    TaxSettings,
    breakdown,
    check_tax_id,
    format_percent,
    locate,
    tax_category,
)
from kassa.domain.tax.rates import parse_decimal

log = logging.getLogger(__name__)

# kassa's tax-id schemes (vat_numbers.check_tax_id) → Stripe's tax id types.
STRIPE_TAX_ID_TYPES = {
    "eu_vat": "eu_vat",
    "gb_vat": "gb_vat",
    "no_orgnr": "no_vat",
    "ch_uid": "ch_vat",
    "au_abn": "au_abn",
    "nz_ird": "nz_gst",
    "sg_uen": "sg_uen",
    "jp_cn": "jp_trn",  # kassa keeps the qualified invoice issuer number "T" + 13 digits
    "in_gstin": "in_gst",
    "ca_bn": "ca_bn",
}
STRIPE_SAAS_BUSINESS = "txcd_10103001"  # Software as a service (SaaS), business use
STRIPE_SAAS_PERSONAL = "txcd_10103000"  # Software as a service (SaaS), personal use
STRIPE_NONTAXABLE = "txcd_00000000"

# Stripe's tax types → kassa's (TaxComponent.tax_type); others are kept as Stripe names them.
TAX_TYPES = {
    "vat": "VAT",
    "gst": "GST",
    "hst": "HST",
    "qst": "QST",
    "pst": "PST",
    "rst": "RST",
    "igst": "IGST",
    "jct": "consumption_tax",
    "sales_tax": "sales_tax",
}
TAXED_REASONS = frozenset(
    {
        "standard_rated",
        "reduced_rated",
        "portion_standard_rated",
        "portion_reduced_rated",
        "proportionally_rated",
        "taxable_basis_reduced",
    }
)
GENERIC_REVERSE_CHARGE_MENTION = "Reverse charge: tax to be accounted for by the recipient."


class _Tax:
    """One entry of a Stripe tax breakdown, normalized."""

    __slots__ = (
        "jurisdiction",
        "country",
        "level",
        "tax_type",
        "percent",
        "taxable_amount",
        "amount",
        "reason",
        "name",
    )

    def __init__(self, entry: dict[str, Any]) -> None:
        details = entry.get("tax_rate_details") or {}
        where = entry.get("jurisdiction") or {}
        self.country = str(where.get("country") or details.get("country") or "").upper()
        state = where.get("state") or details.get("state")
        self.level = str(where.get("level") or ("state" if state else "country"))
        base = f"{self.country}-{str(state).upper()}" if state else self.country
        self.name = str(where.get("display_name") or details.get("display_name") or "")
        self.jurisdiction = base if self.level in ("country", "state") or not self.name else f"{base}:{self.name}"
        raw_type = str(details.get("tax_type") or "")
        self.tax_type = TAX_TYPES.get(raw_type, raw_type)
        self.percent = _fraction(details.get("percentage_decimal"))
        self.taxable_amount = int(entry.get("taxable_amount") or 0)
        self.amount = int(entry.get("amount") or 0)
        self.reason = str(entry.get("taxability_reason") or "unknown")

    @property
    def charged(self) -> bool:
        return self.amount != 0 or (self.percent > 0 and self.reason in TAXED_REASONS)


def _fraction(text: Any) -> Fraction:
    if text in (None, ""):
        return Fraction(0)
    try:
        return parse_decimal(str(text), param="percentage_decimal")
    except InvalidInput:
        raise PaymentProviderError(f"Stripe Tax answered an unreadable rate {text!r}") from None


def _percent(value: Fraction) -> str:
    """A percentage (already ×100) as kassa writes rates; non-terminating ones to 4 places."""
    try:
        return format_percent(value / 100)
    except ValueError:
        rounded = Decimal(value.numerator) / Decimal(value.denominator)
        return format(rounded.quantize(Decimal("0.0001")).normalize(), "f")


_PARAM_PART = re.compile(r"[^\[\]]+")


def kassa_field(stripe_param: str | None) -> str | None:
    """Stripe's name for a parameter as kassa's: ``line_items[0][amount]`` → ``lines[0].amount``,
    ``customer_details[address][postal_code]`` → ``address.postal_code``."""
    if not stripe_param:
        return None
    parts = _PARAM_PART.findall(stripe_param)
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if head == "line_items":
        if rest and rest[0].isdigit():
            return f"lines[{rest[0]}]" + "".join(f".{p}" for p in rest[1:])
        return "lines"
    if head == "customer_details":
        if not rest:
            return "address"
        if rest[0] == "tax_ids":
            return "tax_id"
        if rest[0] == "taxability_override":
            return "tax_exempt"
        return ".".join(rest)
    return ".".join(parts)


class StripeTaxProvider:
    """Tax quotes from Stripe Tax (``POST /v1/tax/calculations``)."""

    def __init__(self, secret_key: str, api_base: str | None = None, *, max_network_retries: int = 2) -> None:
        kwargs: dict[str, Any] = {"max_network_retries": max_network_retries}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = StripeClient(secret_key, **kwargs)

    # ------------------------------------------------------------------ request
    @staticmethod
    def _stripe_tax_code(code: str, category: str, business: bool) -> str:
        if code.startswith("txcd_"):
            return code
        if category == NONTAXABLE:
            return STRIPE_NONTAXABLE
        if category == SAAS:
            return STRIPE_SAAS_BUSINESS if business else STRIPE_SAAS_PERSONAL
        raise InvalidInput(f"tax code {code!r} has no Stripe Tax equivalent", param="tax_code")  # pragma: no cover

    @staticmethod
    def _tax_id(tax_id: TaxIdCheck | None) -> list[dict[str, str]]:
        if tax_id is None or not tax_id.valid or tax_id.normalized is None:
            return []
        kind = STRIPE_TAX_ID_TYPES.get(tax_id.scheme)
        if kind is None:
            return []
        value = tax_id.normalized
        if kind == "no_vat":
            value = value.removeprefix("NO")
        return [{"type": kind, "value": value}]

    def calculation_params(
        self,
        lines: Sequence[TaxLineInput],
        *,
        currency: str,
        customer: TaxCustomer,
        settings: TaxSettings,
        tax_date: date,
    ) -> tuple[dict[str, Any], TaxIdCheck | None, list[str]]:
        """The request for ``lines`` (and what the mapping needs: the checked tax id, the references sent)."""
        if not lines:
            raise InvalidInput("lines: Stripe Tax needs at least one line to quote", param="lines")
        location = locate(customer.address)
        given_id = (customer.tax_id or "").strip()
        tax_id = check_tax_id(given_id, location.tax_country) if given_id else None
        tax_ids = self._tax_id(tax_id)
        business = bool(tax_ids)
        given = [line.reference for line in lines]
        unique = len({r for r in given if r}) == len([r for r in given if r])
        references: list[str] = []
        items: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if line.amount < 0:
                raise InvalidInput(
                    f"lines[{i}].amount: Stripe Tax quotes only amounts of zero or more (got {line.amount})",
                    param=f"lines[{i}].amount",
                )
            code = (line.tax_code or settings.default_tax_code).strip().lower()
            category = tax_category(code, settings.default_tax_code)
            reference = line.reference if line.reference and unique else f"line-{i}"
            references.append(reference)
            items.append(
                {
                    "amount": line.amount,
                    "reference": reference,
                    "tax_behavior": line.tax_behavior.value,
                    "tax_code": self._stripe_tax_code(code, category, business),
                }
            )
        address: dict[str, str] = {"country": customer.address.country}
        for name in ("line1", "line2", "city", "postal_code", "state"):
            value = getattr(customer.address, name)
            if value:
                address[name] = value
        details: dict[str, Any] = {"address": address, "address_source": "billing"}
        if tax_ids:
            details["tax_ids"] = tax_ids
        if customer.tax_exempt:
            details["taxability_override"] = "customer_exempt"
        params: dict[str, Any] = {
            "currency": normalize_currency(currency).lower(),
            "line_items": items,
            "customer_details": details,
            "tax_date": int(datetime.combine(tax_date, time(12), UTC).timestamp()),
            "expand": ["line_items", "line_items.data.tax_breakdown"],
        }
        return params, tax_id, references

    def _create(self, params: dict[str, Any]) -> dict[str, Any]:
        usage.count("stripe.tax.calculations.create")
        try:
            result = self._client.v1.tax.calculations.create(params)  # type: ignore[arg-type]
        except stripe.InvalidRequestError as error:
            message = error.user_message or str(error)
            if error.code == "stripe_tax_inactive":
                raise PaymentProviderError(f"Stripe Tax is not active on this account: {message}") from error
            field = kassa_field(error.param)
            prefix = f"{field}: " if field else ""
            raise InvalidInput(f"{prefix}Stripe Tax refused the calculation: {message}", param=field) from error
        except (stripe.AuthenticationError, stripe.PermissionError) as error:
            raise PaymentProviderError("Stripe rejected kassa's API key for Stripe Tax") from error
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
            raise PaymentProviderError(f"Stripe Tax unavailable: {error.user_message or error}") from error
        except stripe.StripeError as error:
            raise PaymentProviderError(f"Stripe Tax failed: {error.user_message or error}") from error
        answer: dict[str, Any] = result.to_dict()
        return answer

    # ------------------------------------------------------------------ quote
    def quote(
        self,
        lines: Sequence[TaxLineInput],
        *,
        currency: str,
        customer: TaxCustomer,
        settings: TaxSettings,
        tax_date: date,
    ) -> TaxQuote:
        if isinstance(tax_date, datetime):
            tax_date = tax_date.date()
        if not isinstance(tax_date, date):
            raise InvalidInput("tax_date must be a date (the invoice's tax point)", param="tax_date")
        currency = normalize_currency(currency)
        params, tax_id, references = self.calculation_params(
            lines, currency=currency, customer=customer, settings=settings, tax_date=tax_date
        )
        calculation = self._create(params)
        return self.to_quote(
            calculation,
            lines,
            references=references,
            currency=currency,
            customer=customer,
            settings=settings,
            tax_date=tax_date,
            tax_id=tax_id,
        )

    def to_quote(
        self,
        calculation: dict[str, Any],
        lines: Sequence[TaxLineInput],
        *,
        references: Sequence[str],
        currency: str,
        customer: TaxCustomer,
        settings: TaxSettings,
        tax_date: date,
        tax_id: TaxIdCheck | None,
    ) -> TaxQuote:
        """A Stripe ``tax.calculation`` as kassa's ``TaxQuote``."""
        if calculation.get("object") != "tax.calculation":
            raise PaymentProviderError(f"Stripe Tax answered a {calculation.get('object')!r}, not a tax.calculation")
        items = (calculation.get("line_items") or {}).get("data") or []
        if len(items) != len(lines):
            raise PaymentProviderError(
                f"Stripe Tax answered {len(items)} line item(s) for {len(lines)} line(s) (has_more or not expanded)"
            )
        by_reference = {item.get("reference"): item for item in items}
        location = locate(customer.address)
        whole = [_Tax(entry) for entry in calculation.get("tax_breakdown") or []]
        taxed: list[LineTax] = []
        for i, (line, reference) in enumerate(zip(lines, references, strict=True)):
            item = by_reference.get(reference, items[i])
            entries = item.get("tax_breakdown")
            taxes = [_Tax(entry) for entry in entries] if entries is not None else (whole if len(lines) == 1 else [])
            taxed.append(
                self._line(
                    line,
                    item,
                    taxes,
                    settings=settings,
                    place=location.jurisdiction,
                    customer_country=location.tax_country,
                )
            )
        expected = int(calculation.get("tax_amount_exclusive") or 0) + int(calculation.get("tax_amount_inclusive") or 0)
        if sum(line.tax_amount for line in taxed) != expected:
            log.warning("Stripe Tax line taxes do not add up to the calculation's tax (%s)", calculation.get("id"))
        rules = {line.rule for line in taxed}
        rates = {line.rate for line in taxed}
        mentions = sorted({line.legal_mention for line in taxed if line.legal_mention})
        return TaxQuote(
            currency=currency,
            tax_date=tax_date,
            jurisdiction=taxed[0].jurisdiction,
            customer_tax_id=tax_id.normalized if tax_id is not None and tax_id.valid else None,
            vies_verified=None,
            reverse_charge=any(line.reverse_charge for line in taxed),
            legal_mention=" ".join(mentions) or None,
            rule=rules.pop() if len(rules) == 1 else None,
            rate=rates.pop() if len(rates) == 1 else None,
            lines=tuple(taxed),
            breakdown=breakdown(taxed),
            taxable_amount=sum(line.taxable_amount for line in taxed),
            tax_amount=sum(line.tax_amount for line in taxed),
            total=sum(line.total for line in taxed),
        )

    def _line(
        self,
        line: TaxLineInput,
        item: dict[str, Any],
        taxes: list[_Tax],
        *,
        settings: TaxSettings,
        place: str,
        customer_country: str,
    ) -> LineTax:
        tax_amount = int(item.get("amount_tax") or 0)
        net = line.amount - tax_amount if line.tax_behavior is TaxBehavior.INCLUSIVE else line.amount
        charged = [t for t in taxes if t.charged]
        main = next((t for t in taxes if t.level in ("state", "country")), taxes[0] if taxes else None)
        jurisdiction = main.jurisdiction if main is not None else place
        country = main.country if main is not None and main.country else customer_country
        components = tuple(
            TaxComponent(
                jurisdiction=t.jurisdiction,
                country=t.country or country,
                tax_type=t.tax_type or "tax",
                rate=_percent(t.percent),
                taxable_amount=t.taxable_amount,
                tax_amount=t.amount,
                source=f"Stripe Tax: {t.name}" if t.name else "Stripe Tax",
            )
            for t in charged
        )
        weighted = sum((t.percent * t.taxable_amount for t in charged), Fraction(0))
        rate = _percent(weighted / net) if net and charged else "0"
        reasons = list(dict.fromkeys(t.reason for t in (charged or taxes)))
        reverse_charge = "reverse_charge" in {t.reason for t in taxes}
        mention = None
        if reverse_charge:
            mention = EU_REVERSE_CHARGE_MENTION if country in EU_MEMBER_STATES else GENERIC_REVERSE_CHARGE_MENTION
        return LineTax(
            reference=line.reference,
            tax_code=(line.tax_code or settings.default_tax_code).strip().lower(),
            tax_behavior=line.tax_behavior,
            jurisdiction=jurisdiction,
            country=country,
            rate=rate,
            taxable_amount=net,
            tax_amount=tax_amount,
            total=net + tax_amount,
            reverse_charge=reverse_charge,
            rule=TaxRule(
                id=closest_rule(
                    reasons[0] if reasons else "none",
                    country,
                    settings,
                    charged=bool(tax_amount),
                    customer_country=customer_country,
                ),
                description=f"decided by Stripe Tax: {', '.join(reasons) or 'no tax breakdown'}",
            ),
            legal_mention=mention,
            vies_verified=None,
            components=components,
        )


def closest_rule(
    reason: str, country: str, settings: TaxSettings, *, charged: bool, customer_country: str | None = None
) -> RuleId:
    """The kassa rule closest to Stripe's taxability reason in ``country`` (where the tax is due) for a
    customer in ``customer_country`` (kassa adds no rule ids for Stripe)."""
    eu = country in EU_MEMBER_STATES
    if reason == "customer_exempt":
        return RuleId.CUSTOMER_EXEMPT
    if reason in ("product_exempt", "product_exempt_holiday"):
        return RuleId.PRODUCT_NONTAXABLE
    if reason == "reverse_charge":
        return RuleId.EU_REVERSE_CHARGE if eu else RuleId.B2B_REVERSE_CHARGE
    if reason == "not_collecting":
        return RuleId.NOT_REGISTERED
    if reason == "not_supported":
        return RuleId.NO_TAX_RULE
    if reason in ("not_subject_to_tax", "zero_rated", "excluded_territory", "vat_exempt"):
        return RuleId.OUTSIDE_EU_VAT_AREA if reason == "excluded_territory" and eu else RuleId.NOT_TAXABLE
    if reason in TAXED_REASONS or charged:
        if not eu:
            return RuleId.REGISTERED
        if country == settings.home_tax_country:
            if customer_country in EU_MEMBER_STATES and customer_country != country:
                return RuleId.EU_BELOW_THRESHOLD  # home VAT charged to a consumer in another member state
            return RuleId.EU_DOMESTIC
        if settings.oss_registered:
            return RuleId.EU_OSS
        if country in settings.registrations:
            return RuleId.EU_LOCAL_REGISTRATION
        return RuleId.EU_OVER_THRESHOLD if settings.eu_established else RuleId.REGISTERED
    return RuleId.NO_TAX_RULE
