"""``kassa demo``: a scripted lifecycle on a fresh local stack, with a printed summary.

A catalog, three customers subscribing through the same HTTP API and Stripe.js flow a storefront
uses, the virtual clock advanced three months (renewals fire on the way), renewals paid, and one
card (4000 0000 0000 0341) declining when its trial ends: retried, warned, suspended and canceled
by the dunning defaults (docs/dunning.md), with its emails in the local outbox. On the way a fourth
customer and plan changes make every MRR movement, and the MRR report is printed (docs/analytics.md).
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from kassa.domain.money import Money
from kassa.domain.periods import Interval, boundary
from kassa_local.client import Api

DEFAULT_START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # a month end: Feb 28, Mar 31, Apr 30

CUSTOMERS = (
    # email, price key, card, locale/country
    ("anna@example.com", "coffee", "4242424242424242", "NL"),
    ("bruno@example.com", "matcha", "4242424242424242", "DE"),
    ("chloe@example.com", "tea", "4000000000000341", "FR"),
)


def demo_catalog(api: Api) -> dict[str, Any]:
    """Three products with monthly prices (EUR, JPY, and EUR with a 14-day trial)."""
    coffee = api.post("/v1/products", {"name": "Coffee club"}, expect=201)
    tea = api.post("/v1/products", {"name": "Tea club"}, expect=201)
    matcha = api.post("/v1/products", {"name": "Matcha box"}, expect=201)
    return {
        "coffee": api.post(
            "/v1/prices",
            {
                "product": coffee["id"],
                "currency": "EUR",
                "unit_amount": 1500,
                "recurring": {"interval": "month"},
                "nickname": "Coffee club, monthly",
            },
            expect=201,
        ),
        "matcha": api.post(
            "/v1/prices",
            {
                "product": matcha["id"],
                "currency": "JPY",
                "unit_amount": 1200,
                "recurring": {"interval": "month"},
                "nickname": "Matcha box, monthly",
            },
            expect=201,
        ),
        "tea": api.post(
            "/v1/prices",
            {
                "product": tea["id"],
                "currency": "EUR",
                "unit_amount": 900,
                "recurring": {"interval": "month", "trial_period_days": 14},
                "nickname": "Tea club, monthly, 14-day trial",
            },
            expect=201,
        ),
    }


# graduated seats: 1–5 at 10.00, 6–10 at 8.00, 11 and more at 5.00, plus a 5.00 flat fee in the first tier
SEAT_TIERS = [
    {"up_to": 5, "unit_amount": 1000, "flat_amount": 500},
    {"up_to": 10, "unit_amount": 800},
    {"up_to": "inf", "unit_amount": 500},
]


def seats_price(api: Api) -> dict[str, Any]:
    """A tiered (graduated) per-seat price, so the storefront shows its quantity input and quote."""
    team = api.post("/v1/products", {"name": "Team workspace"}, expect=201)
    return dict(
        api.post(
            "/v1/prices",
            {
                "product": team["id"],
                "currency": "EUR",
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "tiers": SEAT_TIERS,
                "recurring": {"interval": "month"},
                "nickname": "Team workspace, per seat, monthly",
            },
            expect=201,
        )
    )


#: the demo shop's seller details: what its invoices show and its e-invoices need (a VAT number that
#: passes the Dutch check digit, a KvK number, a test IBAN); a merchant puts their own with PUT /v1/settings
DEMO_SELLER = {
    "seller_address": {"country": "NL", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ"},
    "seller_tax_id": "NL123456782B01",
    "seller_registration": "KvK 12345678",
    "seller_peppol_id": "0106:12345678",
    "seller_iban": "NL91ABNA0417164300",
}


def seed_seller(api: Api) -> bool:
    """Fill in the demo seller's details on settings that have none (True when it did)."""
    settings = {k: v for k, v in api.get("/v1/settings").items() if k != "object"}
    if settings.get("seller_tax_id"):
        return False
    api.request("PUT", "/v1/settings", expect=200, json=settings | DEMO_SELLER)
    return True


def seed_catalog(api: Api) -> int:
    """Give a fresh local stack's storefront something to sell — the demo catalog and a tiered seats
    price — and its seller the details invoices show; returns the number of prices made."""
    if api.get("/v1/prices", params={"limit": 1})["data"]:
        return 0
    seed_seller(api)
    made = len(demo_catalog(api))
    seats_price(api)
    settings = api.get("/v1/settings")
    if settings.get("payment_method_types") == ["card"] and not (settings.get("bank_debits") or {}).get(
        "sepa_creditor_id"
    ):
        # the storefront offers a bank account too: SEPA Direct Debit under the Bundesbank's example
        # creditor identifier (a real merchant puts its own in PUT /v1/settings)
        settings.pop("object", None)
        settings["payment_method_types"] = ["card", "sepa_debit"]
        settings["bank_debits"] = {**(settings.get("bank_debits") or {}), "sepa_creditor_id": "DE98ZZZ09999999999"}
        api.request("PUT", "/v1/settings", expect=200, json=settings)
    return made + 1


def _subscribe(api: Api, price_id: str, who: dict[str, Any], card: str, **extra: Any) -> dict[str, Any]:
    """A checkout through the storefront's flow (Stripe.js confirms the card), completed."""
    from kassa_local.client import confirm_card_setup

    started = api.post("/v1/checkout", {"price_id": price_id, **who, **extra}, expect=201)
    confirm_card_setup(api.config, started["setup_intent_id"], started["client_secret"], card)
    done = api.post(
        f"/v1/checkout/{started['subscription']['id']}/complete", {"setup_intent_id": started["setup_intent_id"]}
    )
    return dict(done["subscription"])


#: the demo's reporting currency and exchange rate (the merchant's own, in settings; no network access)
DEMO_ANALYTICS = {"reporting_currency": "EUR", "exchange_rates": {"JPY": "0.0062"}}


def set_reporting_currency(api: Api) -> None:
    settings = {k: v for k, v in api.get("/v1/settings").items() if k != "object"}
    if not settings.get("analytics"):
        api.request("PUT", "/v1/settings", expect=200, json=settings | {"analytics": DEMO_ANALYTICS})


def analytics_story(
    api: Api, prices: dict[str, Any], subs: dict[str, Any], start: datetime, target: datetime, out: Any
) -> list[Any]:
    """A few months of MRR movements for the reports and the dashboard (docs/analytics.md): Anna takes a
    second coffee box after two weeks (expansion) and goes back to one after six (contraction); Dario
    subscribes, cancels after two weeks (churn) and comes back after six (reactivation)."""
    anna = subs["anna@example.com"]["id"]
    who = {"customer": {"email": "dario@example.com", "name": "Dario", "address": {"country": "IT"}}}
    dario = _subscribe(api, prices["coffee"]["id"], who, "4242424242424242")
    fired: list[Any] = []
    steps = (
        (timedelta(days=14), {anna: {"quantity": 2}}, "cancel"),
        (timedelta(days=42), {anna: {"quantity": 1}}, "return"),
    )
    for after, changes, dario_does in steps:
        if start + after >= target:
            break
        fired += api.advance(to=(start + after).isoformat()).get("fired", [])
        for sub_id, change in changes.items():
            api.post(f"/v1/subscriptions/{sub_id}/change", change)
        if dario_does == "cancel":
            api.post(f"/v1/subscriptions/{dario['id']}/cancel", {"at_period_end": False})
        else:
            dario = _subscribe(api, prices["coffee"]["id"], {"customer_id": dario["customer"]}, "4242424242424242")
    out("  anna: 2 coffee boxes after 2 weeks, 1 after 6; dario: subscribed, canceled after 2 weeks, back after 6")
    return fired


def run_demo(api: Api, start: datetime, months: int = 3, out: Any = print) -> dict[str, Any]:
    prices = demo_catalog(api)
    listed = ", ".join(f"{p['currency']} {p['unit_amount']}" for p in prices.values())
    out(f"catalog: {len(prices)} prices ({listed})")
    subs = []
    for email, key, card, country in CUSTOMERS:
        customer = {"email": email, "name": email.split("@")[0].title(), "address": {"country": country}}
        sub = _subscribe(api, prices[key]["id"], {"customer": customer}, card)
        subs.append((email, sub))
        out(f"  {email:<20} subscribed to {key:<6} with card …{card[-4:]} → {sub['status']}")
    set_reporting_currency(api)

    # one hour past the last renewal, so that the hourly sweep tick after it has fired
    target = boundary(start, Interval.MONTH, 1, months) + timedelta(hours=1)
    out(f"advancing the virtual clock {months} months, to {target.isoformat()} …")
    fired = len(analytics_story(api, prices, dict(subs), start, target, out))
    fired += len(api.advance(to=target.isoformat()).get("fired", []))
    out(f"  {fired} schedule ticks fired")

    summary: dict[str, Any] = {"customers": []}
    out("")
    out(f"{'customer':<20} {'status':<10} {'invoice':<12} {'period':<25} {'amount':>12} {'state':<6}")
    for email, sub in subs:
        current = api.get(f"/v1/subscriptions/{sub['id']}")
        invoices = sorted(
            api.get(f"/v1/customers/{sub['customer']}/invoices", params={"limit": 100})["data"],
            key=lambda i: i["number"],
        )
        summary["customers"].append({"email": email, "status": current["status"], "invoices": invoices})
        for n, inv in enumerate(invoices):
            amount = Money(inv["total"], inv["currency"]).format()
            period = f"{inv['period_start'][:10]} – {inv['period_end'][:10]}"
            out(
                f"{email if n == 0 else '':<20} {current['status'] if n == 0 else '':<10} "
                f"{inv['number']:<12} {period:<25} {amount:>12} {inv['status']:<6}"
            )
        if not invoices:
            out(f"{email:<20} {current['status']:<10} (no invoices)")
    counts = Counter(e["detail-type"] for e in api.events())
    summary["events"] = dict(counts)
    requests.post(api.base + "/_local/drain", timeout=120)  # the analytics queue's last events
    mrr = api.get("/v1/reports/mrr", params={"from": start.strftime("%Y-%m"), "to": target.strftime("%Y-%m")})
    summary["mrr"] = mrr
    out("")
    out(
        f"MRR ({mrr['currency']}, GET /v1/reports/mrr): "
        + "; ".join(
            f"{row['month']} {Money(row['mrr'], mrr['currency']).format()}"
            f" (+{row['new'] + row['expansion'] + row['reactivation']} −{row['contraction'] + row['churn']})"
            for row in mrr["data"]
        )
    )
    out("")
    out("domain events: " + ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items())))
    return summary


def main(args: argparse.Namespace) -> int:
    from kassa_local.stack import fresh_stack

    start = datetime.fromisoformat(args.start) if args.start else DEFAULT_START
    with fresh_stack(start) as stack:
        assert stack.config is not None
        print(f"fresh local stack at {stack.config.api_url} (virtual clock at {start.isoformat()})")
        summary = run_demo(Api(stack.config.as_json()), start, args.months)
    paid = sum(1 for c in summary["customers"] for i in c["invoices"] if i["status"] == "paid")
    open_ = sum(1 for c in summary["customers"] for i in c["invoices"] if i["status"] == "open")
    print(
        f"\ndone: {paid} invoices paid, {open_} open (declined), statuses: "
        + ", ".join(f"{c['email']}={c['status']}" for c in summary["customers"])
    )
    return 0


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a scripted billing lifecycle on a fresh local stack")
    p.add_argument("--start", help="virtual clock start (ISO 8601, default 2026-01-31T09:00:00+00:00)")
    p.add_argument("--months", type=int, default=3)
    p.set_defaults(func=main)
