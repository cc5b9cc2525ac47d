"""``kassa simulate`` and the local stack bill the same: one small scenario (four customers in three
currencies, a tiered price, two months) run in process and over HTTP on the stack (moto, localstripe,
pollers, the virtual clock) gives the same invoices — amounts, lines, tax and status."""

from __future__ import annotations

from typing import Any

import pytest

from kassa_local.client import Api
from kassa_local.simulator import Scenario, SimOptions, Simulation

pytestmark = pytest.mark.e2e

SCENARIO = {
    "name": "parity",
    "start": "2026-01-31T09:00:00Z",  # tests/e2e/conftest.py START: the stack's clock
    "signup_days": 0,  # everyone checks out at the start, as the test does on the stack
    "plans": [
        {"product": "Starter", "currency": "EUR", "unit_amount": 900, "interval": "month", "weight": 1},
        {"product": "Team", "currency": "EUR", "unit_amount": 2900, "interval": "month", "weight": 1, "quantity": 3},
        {"product": "Seats", "currency": "USD", "interval": "month", "weight": 1, "quantity": 7,
         "billing_scheme": "tiered", "tiers_mode": "graduated",
         "tiers": [{"up_to": 5, "unit_amount": 700}, {"up_to": "inf", "unit_amount": 600}]},
        {"product": "Starter", "currency": "JPY", "unit_amount": 1500, "interval": "month", "weight": 1},
    ],
    "countries": [
        {"country": "DE", "currency": "EUR", "locale": "de", "weight": 1},
        {"country": "NL", "currency": "EUR", "locale": "nl", "weight": 1},
        {"country": "US", "state": "CA", "currency": "USD", "locale": "en", "weight": 1},
        {"country": "JP", "currency": "JPY", "locale": "en", "weight": 1},
    ],
}  # fmt: skip
SUBSCRIPTIONS = 5
END = "2026-03-31T09:00:00Z"  # two months: Jan 31 → Feb 28 → Mar 31


def _shape(invoice: dict[str, Any]) -> tuple[Any, ...]:
    return (
        invoice["billing_reason"],
        invoice["status"],
        invoice["currency"].upper(),
        invoice["period_start"],
        invoice["subtotal"],
        invoice["tax"],
        invoice["total"],
        invoice["amount_paid"],
        tuple(
            (line["amount"], line["quantity"], line["tax_amount"], line.get("tax_rate")) for line in invoice["lines"]
        ),
        invoice.get("tax_rule"),
    )


def _iso(value: str) -> str:
    return value.replace("+00:00", "Z")


def test_the_simulator_and_the_stack_give_the_same_invoices(api: Api) -> None:
    scenario = Scenario.parse(SCENARIO)
    sim = Simulation(SimOptions(subscriptions=SUBSCRIPTIONS, months=2, seed=4, decline_rate=0, churn_rate=0,
                                scenario=scenario))  # fmt: skip
    report = sim.run()
    assert report["ok"] and report["renewals"] == 2 * SUBSCRIPTIONS, report

    # the same catalog on the stack, plan by plan
    products: dict[str, str] = {}
    prices: dict[str, str] = {}  # the simulator's price id -> the stack's
    for plan, sim_price in zip(SCENARIO["plans"], sim.prices, strict=True):  # type: ignore[arg-type]
        assert sim_price.currency == plan["currency"]
        if plan["product"] not in products:
            products[plan["product"]] = api.post("/v1/products", {"name": plan["product"]}, expect=201)["id"]
        body = {"product": products[plan["product"]], "currency": plan["currency"], "recurring": {"interval": "month"}}
        body |= {k: plan[k] for k in ("unit_amount", "billing_scheme", "tiers_mode", "tiers") if k in plan}
        prices[sim_price.id] = api.post("/v1/prices", body, expect=201)["id"]

    expected: dict[str, list[tuple[Any, ...]]] = {}
    for customer in sorted(sim.memory.customers.values(), key=lambda c: c.email):
        sub = next(s for s in sim.memory.subscriptions.values() if s.customer == customer.id)
        item = sub.items[0]
        address = {k: v for k, v in customer.address.model_dump().items() if v is not None}
        done = api.subscribe(prices[item.price], customer.email, address=address, locale=customer.preferred_locale,
                             quantity=item.quantity)  # fmt: skip
        assert done["subscription"]["status"] == "active"
        invoices = [i.model_dump(mode="json") for i in sim.memory.invoices.values() if i.customer == customer.id]
        expected[customer.email] = sorted(_shape(i | {"period_start": _iso(i["period_start"])}) for i in invoices)

    api.advance(to=END)

    for email, shapes in expected.items():
        found = api.get(f"/v1/customers?email={email}")["data"]
        assert len(found) == 1, email
        listed = api.get(f"/v1/invoices?customer={found[0]['id']}&limit=100")["data"]
        stack = sorted(_shape(i | {"period_start": _iso(i["period_start"])}) for i in listed)
        assert stack == shapes, email
    assert sum(len(s) for s in expected.values()) == 3 * SUBSCRIPTIONS  # a first invoice and two renewals each
