"""``kassa tax quote``: a tax quote from kassa's tax engine, computed offline (no running stack needed).

    kassa tax quote --country FI --amount 10000 --currency EUR --date 2024-09-01
    kassa tax quote --country DE --vat-id DE136695976 --amount 10000 --json
    kassa tax quote --country US-WA --amount 10000 --currency USD --seller-country US --registration US-WA
    kassa tax quote --country FR --amount 12100 --tax-behavior inclusive --amount 500 --no-oss

The seller is NL and OSS-registered unless told otherwise (``--seller-country``, ``--no-oss``,
``--threshold-exceeded``, ``--registration`` repeated). ``--amount`` can be repeated: one line each.
VIES is not asked unless ``--vies`` (or ``--vies-url``) is given: the quote stays offline.

Exit codes: 0 with the quote printed; 2 for invalid input, with a message naming the option.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any

from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import InvalidInput
from kassa.domain.money import Money
from kassa.domain.tax import TaxCustomer, TaxLineInput, TaxQuote, TaxSettings, ViesChecker, quote_tax

PROG = "kassa tax quote"

# the domain's field names (InvalidInput.param) → this command's options
OPTION_OF_FIELD = {
    "address": "--country",
    "address.country": "--country",
    "address.state": "--state",
    "address.postal_code": "--postal-code",
    "tax_id": "--vat-id",
    "tax_exempt": "--exempt",
    "home_country": "--seller-country",
    "oss_registered": "--no-oss",
    "eu_threshold_exceeded": "--threshold-exceeded",
    "registrations": "--registration",
    "default_tax_code": "--tax-code",
    "tax_code": "--tax-code",
    "currency": "--currency",
    "amount": "--amount",
    "tax_behavior": "--tax-behavior",
    "tax_date": "--date",
}


class UsageError(Exception):
    """Input this command refuses (exit 2), with a message that names the option."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_tax(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tax", help="tax quotes from kassa's tax engine, offline")
    tax_sub = p.add_subparsers(dest="tax_command", required=True, metavar="TAX_COMMAND")
    q = tax_sub.add_parser(
        "quote",
        help="the tax on one or more lines for a customer and a seller (offline)",
        description="Compute a tax quote with kassa's engine (docs/tax.md), without a running stack.",
    )
    customer = q.add_argument_group("customer")
    customer.add_argument(
        "--country", required=True, help="ISO 3166-1 alpha-2 code (FI, US…); US-WA or CA-QC also sets --state"
    )
    customer.add_argument("--state", default=None, help="state or province code (US and Canada: WA, QC…)")
    customer.add_argument("--postal-code", default=None, help="postal code (special territories: 35001, 97100…)")
    customer.add_argument(
        "--vat-id", default=None, help="EU VAT number with its prefix, or a national business number (GB, NO, CH…)"
    )
    customer.add_argument(
        "--customer-type",
        choices=("business", "individual"),
        default=None,
        help="business needs --vat-id; default: business with --vat-id, else individual",
    )
    customer.add_argument("--exempt", action="store_true", help="the customer is tax-exempt")

    lines = q.add_argument_group("lines")
    lines.add_argument(
        "--amount",
        required=True,
        type=int,
        action="append",
        help="line amount in minor units (10000 = 100.00 EUR); repeat for several lines",
    )
    lines.add_argument("--currency", default="EUR", help="ISO 4217 code (default EUR)")
    lines.add_argument("--tax-behavior", choices=("exclusive", "inclusive"), default="exclusive")
    lines.add_argument("--tax-code", default=None, help="saas (default), nontaxable, or a Stripe txcd_… code")
    lines.add_argument("--date", type=_date, default=None, help="tax point, YYYY-MM-DD (default: today)")

    seller = q.add_argument_group("seller")
    seller.add_argument("--seller-country", default="NL", help="where the seller is established (default NL)")
    seller.add_argument("--no-oss", action="store_true", help="the seller is not registered for the EU OSS")
    seller.add_argument(
        "--threshold-exceeded",
        action="store_true",
        help="an EU seller's cross-border B2C sales passed the €10,000 threshold",
    )
    seller.add_argument(
        "--registration",
        action="append",
        default=[],
        metavar="CODE",
        help="another registration (GB, CA, CA-QC, US-WA, a member state…); repeat, or separate with commas",
    )

    out = q.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the quote as one JSON object")
    out.add_argument("--vies", action="store_true", help="ask VIES to confirm an EU VAT number (network)")
    out.add_argument("--vies-url", default=None, help="VIES REST API base URL (implies --vies)")
    out.add_argument("--vies-timeout", type=float, default=3.0, help="seconds to wait for VIES (default 3)")
    q.set_defaults(func=cmd_tax_quote)


# ------------------------------------------------------------------ the command
def cmd_tax_quote(args: argparse.Namespace) -> int:
    try:
        inputs = _inputs(args)
        quote = quote_tax(
            inputs["lines"],
            currency=args.currency,
            customer=inputs["customer"],
            settings=inputs["settings"],
            tax_date=inputs["tax_date"],
            vies=_vies(args),
        )
    except UsageError as error:
        return _fail(str(error))
    except InvalidInput as error:
        return _fail(_naming_option(error))
    result = quote_json(quote, inputs["echo"])
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(render(quote, inputs["echo"]))
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _naming_option(error: InvalidInput) -> str:
    message = error.message
    field = error.param or ""
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2 :]
    option = OPTION_OF_FIELD.get(field) or OPTION_OF_FIELD.get(field.rsplit(".", 1)[-1])
    if option:
        return f"{option}: {message}"
    return f"{field}: {message}" if field else message


def _country_and_state(args: argparse.Namespace) -> tuple[str, str | None]:
    country = args.country.strip()
    state = args.state.strip() if args.state else None
    if "-" in country:
        country, _, region = country.partition("-")
        if state and state.upper() != region.upper():
            raise UsageError(f"--country {args.country} names the state {region}, but --state says {state}")
        state = region
    return country, state


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    vat_id = (args.vat_id or "").strip() or None
    customer_type = args.customer_type or ("business" if vat_id else "individual")
    if customer_type == "business" and not vat_id:
        raise UsageError(
            "a business customer needs --vat-id (its VAT number, or its national business number outside "
            "the EU); without one, use --customer-type individual"
        )
    if customer_type == "individual" and vat_id:
        raise UsageError("--vat-id makes the customer a business: drop --customer-type individual or --vat-id")
    country, state = _country_and_state(args)
    registrations = sorted({code.strip() for given in args.registration for code in given.split(",") if code.strip()})
    tax_date = args.date or datetime.now().astimezone().date()
    behavior = TaxBehavior(args.tax_behavior)
    customer = TaxCustomer.model_validate(
        {
            "address": {"country": country, "state": state, "postal_code": args.postal_code},
            "tax_id": vat_id,
            "tax_exempt": args.exempt,
        }
    )
    settings = TaxSettings.model_validate(
        {
            "home_country": args.seller_country,
            "oss_registered": not args.no_oss,
            "eu_threshold_exceeded": args.threshold_exceeded,
            "registrations": registrations,
            **({"default_tax_code": args.tax_code} if args.tax_code else {}),
        }
    )
    lines = [
        TaxLineInput(amount=amount, tax_behavior=behavior, reference=f"line-{i + 1}")
        for i, amount in enumerate(args.amount)
    ]
    echo = {
        "country": customer.address.country,
        "state": state,
        "postal_code": args.postal_code,
        "vat_id": vat_id,
        "customer_type": customer_type,
        "exempt": args.exempt,
        "amounts": list(args.amount),
        "currency": args.currency.upper(),
        "tax_behavior": behavior.value,
        "tax_code": settings.default_tax_code,
        "date": tax_date.isoformat(),
        "seller_country": settings.home_country,
        "oss": settings.oss_registered,
        "threshold_exceeded": settings.eu_threshold_exceeded,
        "registrations": sorted(settings.registrations),
        "vies": bool(args.vies or args.vies_url),
    }
    return {"customer": customer, "settings": settings, "lines": lines, "tax_date": tax_date, "echo": echo}


def _vies(args: argparse.Namespace) -> ViesChecker | None:
    if not (args.vies or args.vies_url):
        return None
    from kassa.adapters.vies import DEFAULT_BASE_URL, ViesClient

    if not args.vies_timeout > 0:
        raise UsageError("--vies-timeout must be a positive number of seconds")
    return ViesClient(args.vies_url or DEFAULT_BASE_URL, timeout_s=args.vies_timeout)


# ------------------------------------------------------------------ output
def quote_json(quote: TaxQuote, inputs: dict[str, Any]) -> dict[str, Any]:
    """The quote as printed by ``--json``: the totals, the rule, each line with its components, the inputs."""
    dumped = quote.model_dump(mode="json")
    rule = quote.rule or (quote.lines[0].rule if quote.lines else None)
    return {
        "jurisdiction": quote.jurisdiction,
        "rate": quote.rate,
        "currency": quote.currency,
        "tax_date": quote.tax_date.isoformat(),
        "taxable_amount": quote.taxable_amount,
        "tax_amount": quote.tax_amount,
        "total": quote.total,
        "reverse_charge": quote.reverse_charge,
        "legal_mention": quote.legal_mention,
        "rule": {"id": rule.id.value, "description": rule.description} if rule else None,
        "customer_tax_id": quote.customer_tax_id,
        "vies_verified": quote.vies_verified,
        "lines": dumped["lines"],
        "breakdown": dumped["breakdown"],
        "inputs": inputs,
    }


def render(quote: TaxQuote, inputs: dict[str, Any]) -> str:
    """A human summary of the quote."""

    def money(amount: int) -> str:
        return Money(amount, quote.currency).format()

    who = "business" if quote.customer_tax_id else ("exempt customer" if inputs["exempt"] else "consumer")
    place = inputs["country"] + (f"-{inputs['state'].upper()}" if inputs["state"] else "")
    seller = inputs["seller_country"] + (" (OSS)" if inputs["oss"] else "")
    if inputs["registrations"]:
        seller += ", registered in " + ", ".join(inputs["registrations"])
    out = [
        f"Tax quote {quote.tax_date.isoformat()}: {who} in {place}, seller {seller}, tax {inputs['tax_behavior']}",
        f"  jurisdiction  {quote.jurisdiction}",
    ]
    rule = quote.rule or (quote.lines[0].rule if quote.lines else None)
    if rule is not None:
        out.append(f"  rule          {rule.id.value}: {rule.description}")
    out += [
        f"  rate          {quote.rate + '%' if quote.rate is not None else 'several'}",
        f"  taxable       {money(quote.taxable_amount)}",
        f"  tax           {money(quote.tax_amount)}",
        f"  total         {money(quote.total)}",
    ]
    if quote.customer_tax_id:
        vies = {True: "confirmed by VIES", False: "not registered in VIES", None: "not confirmed by VIES"}
        out.append(f"  tax id        {quote.customer_tax_id} ({vies[quote.vies_verified]})")
    if quote.reverse_charge:
        out.append(f"  mention       {quote.legal_mention}")
    for line in quote.lines:
        if len(quote.lines) > 1:
            out.append(
                f"  {line.reference}: {money(line.taxable_amount)} + {money(line.tax_amount)} = {money(line.total)}"
                f" ({line.rate}%)"
            )
        for c in line.components:
            out.append(
                f"    {c.jurisdiction} {c.tax_type} {c.rate}% on {money(c.taxable_amount)} = {money(c.tax_amount)}"
                f"  [{c.source}]"
            )
    return "\n".join(out)
