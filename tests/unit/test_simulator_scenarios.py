"""``kassa simulate --scenario``: a scenario file, or a stack's ``kassa export --history`` file, whose
catalog, customers' countries and plan mix become the scenario."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kassa.api.common import obj
from kassa.domain.catalog import Interval, Price, Recurring, UsageType
from kassa.domain.pricing import BillingScheme, Tier, TiersMode
from kassa_local.cli import main
from kassa_local.simulator import Scenario, SimOptions, Simulation

JAN = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _price(price_id: str, currency: str = "EUR", **terms: Any) -> dict[str, Any]:
    recurring = terms.pop("recurring", Recurring(interval=Interval.MONTH))
    price = Price(id=price_id, product=f"prod_{price_id}", currency=currency, recurring=recurring, created=JAN, **terms)
    return obj("price", price)


def _sub(n: int, price: str, quantity: int = 1, day: int = 0) -> dict[str, Any]:
    created = (JAN + timedelta(days=day)).isoformat().replace("+00:00", "Z")
    item = {"object": "subscription_item", "price": price, "quantity": quantity}
    return {"object": "subscription", "id": f"sub_{n}", "customer": f"cus_{n}", "created": created,
            "items": {"object": "list", "data": [item]}}  # fmt: skip


def history() -> dict[str, Any]:
    tiers = (Tier(up_to=5, unit_amount=700), Tier(up_to=None, unit_amount=500))
    prices = [
        _price("price_basic", unit_amount=900),
        _price("price_seats", "USD", billing_scheme=BillingScheme.TIERED, tiers_mode=TiersMode.GRADUATED, tiers=tiers),
        _price("price_yearly", unit_amount=9000, recurring=Recurring(interval=Interval.YEAR)),
        _price("price_calls", unit_amount=1,
               recurring=Recurring(interval=Interval.MONTH, usage_type=UsageType.METERED, meter="mtr_calls")),
        _price("price_unsold", unit_amount=100),
    ]  # fmt: skip
    subs = [_sub(1, "price_basic", day=0), _sub(2, "price_basic", day=10), _sub(3, "price_basic", 2, day=20)]
    subs += [_sub(4, "price_seats", 3, day=30), _sub(5, "price_seats", 12, day=40), _sub(6, "price_calls", day=5)]
    customers = [
        {"id": "cus_1", "country": "DE", "currency": "EUR"},
        {"id": "cus_2", "country": "DE", "currency": "EUR"},
        {"id": "cus_3", "country": "FR", "currency": "EUR"},
        {"id": "cus_4", "country": "US", "currency": "USD"},
        {"id": "cus_5", "country": "US", "currency": "USD"},
        {"id": "cus_6", "country": "JP", "currency": "JPY"},  # no plan in yen: left out
        {"id": "cus_7", "country": None, "currency": "EUR"},  # no country: left out
    ]
    products = [{"object": "product", "id": f"prod_{p['id']}", "name": p["id"].removeprefix("price_").title()}
                for p in prices]  # fmt: skip
    return {"object": "kassa_history", "version": 1, "from": "2026-01-01T00:00:00Z", "to": "2026-12-31T23:59:59Z",
            "as_of": "2026-03-01T00:00:00Z", "products": products, "prices": prices, "coupons": [],
            "customers": customers, "subscriptions": subs, "invoices": []}  # fmt: skip


def test_a_history_export_becomes_the_merchants_own_catalog_and_mix(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history()))
    scenario = Scenario.load(path)
    plans = {p.product: p for p in scenario.plans}
    # the licensed prices with subscriptions, weighted by them; metered and unsold prices are not plans
    assert set(plans) == {"Basic", "Seats"}
    assert (plans["Basic"].weight, plans["Basic"].quantity, plans["Basic"].currency) == (3, (1, 2), "EUR")
    assert (plans["Seats"].weight, plans["Seats"].quantity, plans["Seats"].currency) == (2, (3, 12), "USD")
    assert plans["Seats"].terms.tiers == (Tier(up_to=5, unit_amount=700), Tier(up_to=None, unit_amount=500))
    assert plans["Basic"].terms.unit_amount == 900 and plans["Basic"].interval is Interval.MONTH
    countries = {(c.country, c.currency): (c.weight, c.locale) for c in scenario.countries}
    assert countries == {("DE", "EUR"): (2, "de"), ("FR", "EUR"): (1, "fr"), ("US", "USD"): (2, "en")}
    assert scenario.start == JAN and scenario.signup_days == 40  # the first to the last subscription
    assert "history" in scenario.name


def test_an_export_with_nothing_sold_offers_every_active_price_alike(tmp_path: Path) -> None:
    raw = history()
    raw["subscriptions"] = []
    path = tmp_path / "h.json"
    path.write_text(json.dumps(raw))
    plans = {p.product: p.weight for p in Scenario.load(path).plans}
    assert plans == {"Basic": 1, "Seats": 1, "Yearly": 1, "Unsold": 1}


def test_an_export_with_no_usable_plan_is_refused_before_anything_runs(tmp_path: Path) -> None:
    raw = history()
    raw["prices"] = [p for p in raw["prices"] if p["id"] == "price_calls"]  # metered only
    path = tmp_path / "h.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="no recurring licensed price"):
        Scenario.load(path)
    raw = history()
    raw["customers"] = []  # a fresh stack: its demo catalog, nobody bought yet
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"no customer with a country paying in a plan's currency \(EUR, USD\)"):
        Scenario.load(path)


def test_the_simulator_bills_an_exported_mix(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history()))
    sim = Simulation(SimOptions(subscriptions=12, months=2, seed=4, scenario=Scenario.load(path)))
    report = sim.run()
    assert report["ok"], report["violations"]
    assert set(report["revenue"]) <= {"EUR", "USD"} and report["renewals"] > 0
    bought = {sim.memory.get_price(i.price).product for s in sim.memory.subscriptions.values() for i in s.items}
    assert {sim.memory.get_product(p).name for p in bought} <= {"Basic", "Seats"}


def test_the_command_takes_an_export_as_its_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history()))
    out = tmp_path / "report.json"
    args = ["simulate", "--scenario", str(path), "--subscriptions", "6", "--months", "1", "--json", str(out)]
    assert main([*args, "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert "history" in report["scenario"] and report["ok"]
