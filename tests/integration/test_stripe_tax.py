"""StripeTaxProvider (Stripe Tax behind kassa's tax interface) against a stub Stripe API on 127.0.0.1.

The stub records each form-encoded request and answers a ``tax.calculation`` shaped like Stripe's
(https://docs.stripe.com/api/tax/calculations/object), or a Stripe error. No test reaches Stripe.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from kassa.adapters.stripe_tax import StripeTaxProvider, closest_rule, kassa_field
from kassa.domain.catalog import TaxBehavior
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput, PaymentProviderError
from kassa.domain.tax import (
    EU_REVERSE_CHARGE_MENTION,
    RuleId,
    TaxCustomer,
    TaxLineInput,
    TaxSettings,
    quote_tax,
)

pytestmark = pytest.mark.integration

SECRET = "sk_test_kassa_stub"
NL_OSS = TaxSettings(home_country="NL", oss_registered=True)
ON = date(2025, 9, 1)
NOON = int(datetime(2025, 9, 1, 12, tzinfo=UTC).timestamp())


class StubStripe:
    """POST /v1/tax/calculations: records the form fields, answers ``self.reply`` (status, body, headers)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, dict[str, Any], dict[str, str]] = (500, {}, {})
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                stub.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "form": {
                            k: v[0] if len(v) == 1 else v for k, v in parse_qs(raw, keep_blank_values=True).items()
                        },
                    }
                )
                status, body, headers = stub.reply
                if self.path != "/v1/tax/calculations":
                    status, body, headers = 404, {"error": {"type": "invalid_request_error", "message": "no"}}, {}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_stub")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-stripe", daemon=True
        )

    @property
    def form(self) -> dict[str, Any]:
        assert len(self.requests) == 1, self.requests
        form: dict[str, Any] = self.requests[0]["form"]
        return form


@pytest.fixture(scope="module")
def server() -> Iterator[StubStripe]:
    stub = StubStripe()
    stub.thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
        stub.thread.join(5)


@pytest.fixture
def stub(server: StubStripe) -> StubStripe:
    server.requests.clear()
    server.reply = (500, {}, {})
    return server


@pytest.fixture
def provider(stub: StubStripe) -> StripeTaxProvider:
    return StripeTaxProvider(SECRET, api_base=stub.url, max_network_retries=0)


# ----------------------------------------------------------------------------- Stripe-shaped answers


def line_breakdown(
    amount: int,
    taxable: int,
    *,
    country: str,
    percent: str,
    reason: str = "standard_rated",
    state: str | None = None,
    level: str = "country",
    display_name: str = "",
    tax_type: str = "vat",
    rate_name: str = "Value-added tax (VAT)",
) -> dict[str, Any]:
    """One entry of a calculation line item's ``tax_breakdown``."""
    return {
        "amount": amount,
        "jurisdiction": {"country": country, "display_name": display_name or country, "level": level, "state": state},
        "sourcing": "destination",
        "tax_rate_details": {"display_name": rate_name, "percentage_decimal": percent, "tax_type": tax_type},
        "taxability_reason": reason,
        "taxable_amount": taxable,
    }


def calculation(
    items: list[dict[str, Any]],
    *,
    currency: str = "eur",
    address: dict[str, Any],
    tax_ids: list[dict[str, str]] | None = None,
    override: str = "none",
    inclusive: bool = False,
) -> dict[str, Any]:
    """A ``tax.calculation`` with ``line_items`` and their ``tax_breakdown`` expanded."""
    tax = sum(item["amount_tax"] for item in items)
    summary: dict[tuple[str, str, str | None, str, str], list[int]] = {}
    for item in items:
        for entry in item["tax_breakdown"]:
            details = entry["tax_rate_details"]
            key = (
                entry["jurisdiction"]["country"],
                details["percentage_decimal"],
                entry["jurisdiction"]["state"],
                details["tax_type"],
                entry["taxability_reason"],
            )
            acc = summary.setdefault(key, [0, 0])
            acc[0] += entry["amount"]
            acc[1] += entry["taxable_amount"]
    net = sum(item["amount"] - (item["amount_tax"] if inclusive else 0) for item in items)
    return {
        "id": "taxcalc_1Stub",
        "object": "tax.calculation",
        "amount_total": net + tax,
        "currency": currency,
        "customer": None,
        "customer_details": {
            "address": {"city": None, "line1": None, "line2": None, "postal_code": None, "state": None, **address},
            "address_source": "billing",
            "ip_address": None,
            "tax_ids": tax_ids or [],
            "taxability_override": override,
        },
        "expires_at": NOON + 90 * 86400,
        "line_items": {
            "object": "list",
            "data": [
                {
                    "object": "tax.calculation_line_item",
                    "livemode": False,
                    "metadata": {},
                    "product": None,
                    "quantity": 1,
                    **item,
                }
                for item in items
            ],
            "has_more": False,
            "total_count": len(items),
            "url": "/v1/tax/calculations/taxcalc_1Stub/line_items",
        },
        "livemode": False,
        "ship_from_details": None,
        "shipping_cost": None,
        "tax_amount_exclusive": 0 if inclusive else tax,
        "tax_amount_inclusive": tax if inclusive else 0,
        "tax_breakdown": [
            {
                "amount": acc[0],
                "inclusive": inclusive,
                "tax_rate_details": {
                    "country": country,
                    "flat_amount": None,
                    "percentage_decimal": percent,
                    "rate_type": "percentage",
                    "state": state,
                    "tax_type": tax_type,
                },
                "taxability_reason": reason,
                "taxable_amount": acc[1],
            }
            for (country, percent, state, tax_type, reason), acc in summary.items()
        ],
        "tax_date": NOON,
    }


def item(
    reference: str, amount: int, amount_tax: int, breakdown: list[dict[str, Any]], *, behavior: str, code: str
) -> dict[str, Any]:
    return {
        "id": f"tax_li_{reference}",
        "amount": amount,
        "amount_tax": amount_tax,
        "reference": reference,
        "tax_behavior": behavior,
        "tax_code": code,
        "tax_breakdown": breakdown,
    }


def stripe_error(status: int, code: str, message: str, param: str | None = None) -> tuple[int, dict[str, Any], dict]:
    error: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
    if param:
        error["param"] = param
    return status, {"error": error}, {"Stripe-Should-Retry": "false"}


def customer(country: str, **kwargs: Any) -> TaxCustomer:
    tax_id = kwargs.pop("tax_id", None)
    exempt = kwargs.pop("tax_exempt", False)
    return TaxCustomer(address=Address(country=country, **kwargs), tax_id=tax_id, tax_exempt=exempt)


# ----------------------------------------------------------------------------- requests and quotes


def test_an_eu_consumer_request_and_quote_match_kassas_engine(provider: StripeTaxProvider, stub: StubStripe) -> None:
    fi = customer("FI", postal_code="00100", city="Helsinki")
    stub.reply = (
        200,
        calculation(
            [
                item(
                    "seat",
                    10000,
                    2550,
                    [line_breakdown(2550, 10000, country="FI", percent="25.5", display_name="Finland")],
                    behavior="exclusive",
                    code="txcd_10103000",
                )
            ],
            address={"country": "FI", "postal_code": "00100", "city": "Helsinki"},
        ),
        {},
    )
    lines = [TaxLineInput(amount=10000, reference="seat")]
    quote = provider.quote(lines, currency="EUR", customer=fi, settings=NL_OSS, tax_date=ON)

    request = stub.requests[0]
    assert request["path"] == "/v1/tax/calculations"
    assert request["authorization"] == f"Bearer {SECRET}"
    assert request["content_type"].startswith("application/x-www-form-urlencoded")
    assert stub.form == {
        "currency": "eur",
        "line_items[0][amount]": "10000",
        "line_items[0][reference]": "seat",
        "line_items[0][tax_behavior]": "exclusive",
        "line_items[0][tax_code]": "txcd_10103000",
        "customer_details[address][country]": "FI",
        "customer_details[address][city]": "Helsinki",
        "customer_details[address][postal_code]": "00100",
        "customer_details[address_source]": "billing",
        "tax_date": str(NOON),
        "expand[0]": "line_items",
        "expand[1]": "line_items.data.tax_breakdown",
    }

    assert (quote.jurisdiction, quote.rate, quote.currency, quote.tax_date) == ("FI", "25.5", "EUR", ON)
    assert (quote.taxable_amount, quote.tax_amount, quote.total) == (10000, 2550, 12550)
    assert quote.rule is not None
    assert quote.rule.id is RuleId.EU_OSS
    assert quote.rule.description == "decided by Stripe Tax: standard_rated"
    assert not quote.reverse_charge and quote.legal_mention is None and quote.vies_verified is None
    (line,) = quote.lines
    assert line.reference == "seat" and line.tax_code == "saas" and line.tax_behavior is TaxBehavior.EXCLUSIVE
    (component,) = line.components
    assert component.model_dump() == {
        "jurisdiction": "FI",
        "country": "FI",
        "tax_type": "VAT",
        "rate": "25.5",
        "taxable_amount": 10000,
        "tax_amount": 2550,
        "source": "Stripe Tax: Finland",
    }
    assert [(b.jurisdiction, b.tax_type, b.rate, b.tax_amount) for b in quote.breakdown] == [
        ("FI", "VAT", "25.5", 2550)
    ]

    engine = quote_tax(lines, currency="EUR", customer=fi, settings=NL_OSS, tax_date=ON)
    assert (engine.jurisdiction, engine.rate, engine.tax_amount, engine.total) == (
        quote.jurisdiction,
        quote.rate,
        quote.tax_amount,
        quote.total,
    )
    assert engine.rule is not None and engine.rule.id is quote.rule.id


def test_a_business_with_a_vat_number_is_reverse_charged(provider: StripeTaxProvider, stub: StubStripe) -> None:
    de = customer("DE", postal_code="10115", tax_id="de 136 695 976")
    stub.reply = (
        200,
        calculation(
            [
                item(
                    "line-0",
                    10000,
                    0,
                    [
                        line_breakdown(
                            0, 0, country="DE", percent="0.0", reason="reverse_charge", display_name="Germany"
                        )
                    ],
                    behavior="exclusive",
                    code="txcd_10103001",
                )
            ],
            address={"country": "DE", "postal_code": "10115"},
            tax_ids=[{"type": "eu_vat", "value": "DE136695976"}],
        ),
        {},
    )
    quote = provider.quote([TaxLineInput(amount=10000)], currency="eur", customer=de, settings=NL_OSS, tax_date=ON)

    form = stub.form
    assert form["customer_details[tax_ids][0][type]"] == "eu_vat"
    assert form["customer_details[tax_ids][0][value]"] == "DE136695976"
    assert form["line_items[0][tax_code]"] == "txcd_10103001"  # SaaS, business use
    assert form["line_items[0][reference]"] == "line-0"  # generated: Stripe wants unique references
    assert "customer_details[taxability_override]" not in form

    assert quote.reverse_charge and quote.legal_mention == EU_REVERSE_CHARGE_MENTION
    assert quote.customer_tax_id == "DE136695976"
    assert quote.rule is not None and quote.rule.id is RuleId.EU_REVERSE_CHARGE
    assert quote.rule.description == "decided by Stripe Tax: reverse_charge"
    assert (quote.jurisdiction, quote.rate, quote.tax_amount, quote.total) == ("DE", "0", 0, 10000)
    assert quote.lines[0].reference is None and quote.lines[0].components == ()
    assert [(b.jurisdiction, b.tax_type, b.reverse_charge) for b in quote.breakdown] == [("DE", None, True)]


def test_an_invalid_vat_number_is_not_sent(provider: StripeTaxProvider, stub: StubStripe) -> None:
    de = customer("DE", postal_code="10115", tax_id="DE136695977")  # check digit wrong
    stub.reply = (
        200,
        calculation(
            [
                item(
                    "line-0",
                    10000,
                    1900,
                    [line_breakdown(1900, 10000, country="DE", percent="19.0")],
                    behavior="exclusive",
                    code="txcd_10103000",
                )
            ],
            address={"country": "DE", "postal_code": "10115"},
        ),
        {},
    )
    quote = provider.quote([TaxLineInput(amount=10000)], currency="EUR", customer=de, settings=NL_OSS, tax_date=ON)
    assert not any(key.startswith("customer_details[tax_ids]") for key in stub.form)
    assert stub.form["line_items[0][tax_code]"] == "txcd_10103000"
    assert quote.customer_tax_id is None and quote.rate == "19" and quote.tax_amount == 1900


def test_an_exempt_customer(provider: StripeTaxProvider, stub: StubStripe) -> None:
    nl = customer("NL", tax_exempt=True)
    stub.reply = (
        200,
        calculation(
            [
                item(
                    "line-0",
                    5000,
                    0,
                    [line_breakdown(0, 0, country="NL", percent="0.0", reason="customer_exempt")],
                    behavior="exclusive",
                    code="txcd_10103000",
                )
            ],
            address={"country": "NL"},
            override="customer_exempt",
        ),
        {},
    )
    quote = provider.quote([TaxLineInput(amount=5000)], currency="EUR", customer=nl, settings=NL_OSS, tax_date=ON)
    assert stub.form["customer_details[taxability_override]"] == "customer_exempt"
    assert quote.rule is not None and quote.rule.id is RuleId.CUSTOMER_EXEMPT
    assert (quote.tax_amount, quote.total, quote.reverse_charge) == (0, 5000, False)


def test_us_state_and_city_taxes_on_inclusive_lines(provider: StripeTaxProvider, stub: StubStripe) -> None:
    """Two tax-inclusive lines in Seattle: state 6.5% and city 3.85%, as two components each."""
    seattle = customer("US", state="WA", postal_code="98104", city="Seattle", line1="920 5th Ave")
    us = TaxSettings(home_country="US", registrations=frozenset({"US-WA"}))

    def taxes(state_tax: int, city_tax: int, net: int) -> list[dict[str, Any]]:
        common = {"country": "US", "state": "WA", "tax_type": "sales_tax"}
        return [
            line_breakdown(
                state_tax, net, percent="6.5", level="state", display_name="Washington", rate_name="Sales Tax", **common
            ),
            line_breakdown(
                city_tax,
                net,
                percent="3.85",
                level="city",
                display_name="SEATTLE",
                rate_name="City Sales Tax",
                **common,
            ),
        ]

    stub.reply = (
        200,
        calculation(
            [
                item("seat", 11035, 1035, taxes(650, 385, 10000), behavior="inclusive", code="txcd_10103000"),
                item("addon", 2207, 207, taxes(130, 77, 2000), behavior="inclusive", code="txcd_10103000"),
            ],
            currency="usd",
            address={"country": "US", "state": "WA", "postal_code": "98104"},
            inclusive=True,
        ),
        {},
    )
    lines = [
        TaxLineInput(amount=11035, tax_behavior=TaxBehavior.INCLUSIVE, reference="seat"),
        TaxLineInput(amount=2207, tax_behavior=TaxBehavior.INCLUSIVE, reference="addon"),
    ]
    quote = provider.quote(lines, currency="USD", customer=seattle, settings=us, tax_date=ON)

    form = stub.form
    assert form["line_items[1][amount]"] == "2207" and form["line_items[1][tax_behavior]"] == "inclusive"
    assert form["line_items[1][reference]"] == "addon"
    assert form["customer_details[address][state]"] == "WA"
    assert form["customer_details[address][line1]"] == "920 5th Ave"
    assert form["currency"] == "usd"

    assert (quote.jurisdiction, quote.rate) == ("US-WA", "10.35")
    assert (quote.taxable_amount, quote.tax_amount, quote.total) == (12000, 1242, 13242)
    assert quote.rule is not None and quote.rule.id is RuleId.REGISTERED
    seat = quote.lines[0]
    assert (seat.taxable_amount, seat.tax_amount, seat.total) == (10000, 1035, 11035)
    assert [(c.jurisdiction, c.tax_type, c.rate, c.tax_amount) for c in seat.components] == [
        ("US-WA", "sales_tax", "6.5", 650),
        ("US-WA:SEATTLE", "sales_tax", "3.85", 385),
    ]
    assert [(b.jurisdiction, b.rate, b.taxable_amount, b.tax_amount) for b in quote.breakdown] == [
        ("US-WA", "6.5", 12000, 780),
        ("US-WA:SEATTLE", "3.85", 12000, 462),
    ]


def test_not_collecting_maps_to_not_registered(provider: StripeTaxProvider, stub: StubStripe) -> None:
    gb = customer("GB", postal_code="SW1A 1AA")
    stub.reply = (
        200,
        calculation(
            [
                item(
                    "line-0",
                    10000,
                    0,
                    [line_breakdown(0, 0, country="GB", percent="0.0", reason="not_collecting")],
                    behavior="exclusive",
                    code="txcd_10103000",
                )
            ],
            currency="gbp",
            address={"country": "GB", "postal_code": "SW1A 1AA"},
        ),
        {},
    )
    quote = provider.quote([TaxLineInput(amount=10000)], currency="GBP", customer=gb, settings=NL_OSS, tax_date=ON)
    assert quote.rule is not None and quote.rule.id is RuleId.NOT_REGISTERED
    assert quote.rule.description == "decided by Stripe Tax: not_collecting"
    assert (quote.jurisdiction, quote.tax_amount) == ("GB", 0)


# ----------------------------------------------------------------------------- refused before any request


def test_input_kassa_refuses_never_reaches_stripe(provider: StripeTaxProvider, stub: StubStripe) -> None:
    fi = customer("FI")
    with pytest.raises(InvalidInput) as negative:
        provider.quote([TaxLineInput(amount=-1)], currency="EUR", customer=fi, settings=NL_OSS, tax_date=ON)
    assert negative.value.param == "lines[0].amount"
    with pytest.raises(InvalidInput) as code:
        provider.quote(
            [TaxLineInput(amount=1, tax_code="books")], currency="EUR", customer=fi, settings=NL_OSS, tax_date=ON
        )
    assert code.value.param == "tax_code"
    with pytest.raises(InvalidInput) as currency:
        provider.quote([TaxLineInput(amount=1)], currency="XXX", customer=fi, settings=NL_OSS, tax_date=ON)
    assert currency.value.param == "currency"
    with pytest.raises(InvalidInput) as no_lines:
        provider.quote([], currency="EUR", customer=fi, settings=NL_OSS, tax_date=ON)
    assert no_lines.value.param == "lines"
    with pytest.raises(InvalidInput) as state:
        provider.quote([TaxLineInput(amount=1)], currency="USD", customer=customer("US"), settings=NL_OSS, tax_date=ON)
    assert state.value.param == "address.state"
    assert stub.requests == []


# ----------------------------------------------------------------------------- Stripe errors


def test_a_refused_address_is_invalid_input_naming_the_field(provider: StripeTaxProvider, stub: StubStripe) -> None:
    stub.reply = stripe_error(
        400,
        "customer_tax_location_invalid",
        "We could not determine the customer's tax location based on the provided customer address.",
        "customer_details[address][postal_code]",
    )
    with pytest.raises(InvalidInput) as error:
        provider.quote(
            [TaxLineInput(amount=1000)],
            currency="USD",
            customer=customer("US", state="WA", postal_code="00000"),
            settings=NL_OSS,
            tax_date=ON,
        )
    assert error.value.param == "address.postal_code"
    assert error.value.message.startswith("address.postal_code: Stripe Tax refused the calculation: We could not")


def test_a_refused_line_names_the_line(provider: StripeTaxProvider, stub: StubStripe) -> None:
    stub.reply = stripe_error(400, "parameter_invalid_integer", "Invalid integer", "line_items[1][amount]")
    lines = [TaxLineInput(amount=1), TaxLineInput(amount=2)]
    with pytest.raises(InvalidInput) as error:
        provider.quote(lines, currency="EUR", customer=customer("FI"), settings=NL_OSS, tax_date=ON)
    assert error.value.param == "lines[1].amount"


@pytest.mark.parametrize(
    "reply",
    [
        stripe_error(400, "stripe_tax_inactive", "Stripe Tax has not been activated on your account."),
        (401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_***"}}, {}),
        (
            500,
            {"error": {"type": "api_error", "message": "An unknown error occurred"}},
            {"Stripe-Should-Retry": "false"},
        ),
        (429, {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}}, {}),
        (200, {"object": "invoice", "id": "in_1"}, {}),
        (200, {**calculation([], address={"country": "FI"}), "line_items": None}, {}),
    ],
    ids=["tax-inactive", "bad-key", "server-error", "rate-limited", "not-a-calculation", "line-items-missing"],
)
def test_provider_failures_are_payment_provider_errors(
    provider: StripeTaxProvider, stub: StubStripe, reply: tuple[int, dict[str, Any], dict[str, str]]
) -> None:
    stub.reply = reply
    with pytest.raises(PaymentProviderError):
        provider.quote([TaxLineInput(amount=1)], currency="EUR", customer=customer("FI"), settings=NL_OSS, tax_date=ON)
    assert len(stub.requests) == 1


def test_an_unreachable_stripe_is_a_payment_provider_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = StripeTaxProvider(SECRET, api_base=f"http://127.0.0.1:{port}", max_network_retries=0)
    with pytest.raises(PaymentProviderError):
        provider.quote([TaxLineInput(amount=1)], currency="EUR", customer=customer("FI"), settings=NL_OSS, tax_date=ON)


# ----------------------------------------------------------------------------- the mapping helpers


@pytest.mark.parametrize(
    ("stripe_param", "field"),
    [
        ("line_items[0][amount]", "lines[0].amount"),
        ("line_items[3][tax_code]", "lines[3].tax_code"),
        ("line_items", "lines"),
        ("customer_details[address][postal_code]", "address.postal_code"),
        ("customer_details[address]", "address"),
        ("customer_details", "address"),
        ("customer_details[tax_ids][0][value]", "tax_id"),
        ("customer_details[taxability_override]", "tax_exempt"),
        ("currency", "currency"),
        ("tax_date", "tax_date"),
        (None, None),
        ("", None),
    ],
)
def test_stripe_params_are_named_as_kassa_fields(stripe_param: str | None, field: str | None) -> None:
    assert kassa_field(stripe_param) == field


@pytest.mark.parametrize(
    ("reason", "country", "customer_country", "settings", "charged", "rule"),
    [
        ("standard_rated", "NL", "NL", NL_OSS, True, RuleId.EU_DOMESTIC),
        ("standard_rated", "FI", "FI", NL_OSS, True, RuleId.EU_OSS),
        ("standard_rated", "NL", "FI", TaxSettings(home_country="NL"), True, RuleId.EU_BELOW_THRESHOLD),
        (
            "standard_rated",
            "FI",
            "FI",
            TaxSettings(home_country="NL", registrations=frozenset({"FI"})),
            True,
            RuleId.EU_LOCAL_REGISTRATION,
        ),
        ("standard_rated", "US", "US", NL_OSS, True, RuleId.REGISTERED),
        ("reverse_charge", "DE", "DE", NL_OSS, False, RuleId.EU_REVERSE_CHARGE),
        ("reverse_charge", "AU", "AU", NL_OSS, False, RuleId.B2B_REVERSE_CHARGE),
        ("product_exempt", "FI", "FI", NL_OSS, False, RuleId.PRODUCT_NONTAXABLE),
        ("not_subject_to_tax", "US", "US", NL_OSS, False, RuleId.NOT_TAXABLE),
        ("excluded_territory", "ES", "ES", NL_OSS, False, RuleId.OUTSIDE_EU_VAT_AREA),
        ("not_supported", "BR", "BR", NL_OSS, False, RuleId.NO_TAX_RULE),
        ("something_new", "FI", "FI", NL_OSS, False, RuleId.NO_TAX_RULE),
    ],
)
def test_taxability_reasons_map_to_the_closest_rule(
    reason: str, country: str, customer_country: str, settings: TaxSettings, charged: bool, rule: RuleId
) -> None:
    assert closest_rule(reason, country, settings, charged=charged, customer_country=customer_country) is rule
