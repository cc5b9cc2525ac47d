"""The pricing what-if engine (kassa_local.whatif) over small hand-computed histories."""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.api.common import obj
from kassa.domain.catalog import Price, Recurring
from kassa.domain.invoice import BillingReason, InvoiceStatus, build_subscription_invoice
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.subscription import Status, start_subscription
from kassa_local import export, whatif

JAN = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def price(price_id: str, amount: int, trial: int | None = None, currency: str = "EUR") -> Price:
    return Price(
        id=price_id,
        product=f"prod_{price_id}",
        currency=currency,
        unit_amount=amount,
        recurring=Recurring(interval=Interval.MONTH, trial_period_days=trial),
        created=JAN - 30 * DAY,
    )


def subscription(sub_id: str, p: Price, start: datetime, paid_periods: int, ended: datetime | None = None):
    """A subscription with ``paid_periods`` monthly invoices, each paid, in the API's JSON shape."""
    sub = start_subscription(customer=f"cus_{sub_id}", price=p, now=start, subscription_id=sub_id)
    anchor = sub.trial_end or start
    sub = sub.model_copy(update={"status": Status.ACTIVE, "billing_cycle_anchor": anchor})
    if ended is not None:
        sub = sub.model_copy(update={"status": Status.CANCELED, "ended_at": ended, "canceled_at": ended})
    invoices = []
    for k in range(paid_periods):
        period = Period(boundary(anchor, Interval.MONTH, 1, k), boundary(anchor, Interval.MONTH, 1, k + 1))
        draft = build_subscription_invoice(sub, period, period.start, BillingReason.SUBSCRIPTION_CYCLE, "Coffee")
        paid = draft.model_copy(update={"status": InvoiceStatus.PAID, "paid_at": period.start, "number": f"N{k}"})
        invoices.append(obj("invoice", paid))
    return obj("subscription", sub), invoices


def history(prices: list[Price], subs: list[tuple[Any, list[Any]]], end: datetime) -> dict[str, Any]:
    return {
        "object": "kassa_history",
        "version": 1,
        "from": JAN.isoformat(),
        "to": end.isoformat(),
        "products": [
            {"object": "product", "id": p.product, "name": p.product.removeprefix("prod_price_")} for p in prices
        ],
        "prices": [obj("price", p) for p in prices],
        "coupons": [],
        "customers": [],
        "subscriptions": [s for s, _ in subs],
        "invoices": [i for _, invoices in subs for i in invoices],
    }


def run(raw_history: dict[str, Any], book: dict[str, Any]) -> list[whatif.Row]:
    loaded = whatif.load_history(json.loads(json.dumps(raw_history)))
    return whatif.report(loaded, whatif.rebill(loaded, whatif.parse_price_book(book, loaded.prices)))


def by_month(rows: list[whatif.Row], plan: str) -> dict[str, whatif.Row]:
    return {r.month: r for r in rows if r.plan == plan}


MARCH_END = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)


def test_the_same_price_book_reproduces_the_actual_history() -> None:
    p = price("price_coffee", 1000)
    rows = run(history([p], [subscription("sub_a", p, JAN, 3)], MARCH_END), {"prices": {}})
    months = by_month(rows, "coffee")
    assert [months[m].actual_revenue for m in ("2026-01", "2026-02", "2026-03")] == [1000, 1000, 1000]
    assert all(r.whatif_revenue == r.actual_revenue and r.whatif_mrr == r.actual_mrr for r in rows)
    assert all(not r.affected for r in rows)


def test_a_price_increase_with_churn_elasticity_weights_revenue_by_survival() -> None:
    """EUR 10.00 → 12.00 (+20 %) with elasticity 0.5: 10 % extra churn a month, survival 1, 0.9,
    0.81: revenue 12.00, 10.80, 9.72; MRR at each month's end follows the invoice covering it."""
    p = price("price_coffee", 1000)
    raw = history([p], [subscription("sub_a", p, JAN, 3)], MARCH_END)
    rows = run(raw, {"prices": {"price_coffee": {"unit_amount": 1200}}, "assumptions": {"churn_elasticity": 0.5}})
    months = by_month(rows, "coffee")
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03")] == [1200, 1080, 972]
    assert [months[m].actual_revenue for m in ("2026-01", "2026-02", "2026-03")] == [1000, 1000, 1000]
    assert [months[m].whatif_mrr for m in ("2026-01", "2026-02", "2026-03")] == [1200, 1080, 972]
    assert months["2026-03"].expected_churned == 1 - Fraction(81, 100)
    assert all(len(r.affected) == 1 for r in months.values())


def test_a_price_decrease_is_not_assumed_to_win_customers() -> None:
    p = price("price_coffee", 1000)
    raw = history([p], [subscription("sub_a", p, JAN, 3)], MARCH_END)
    rows = run(raw, {"prices": {"price_coffee": {"unit_amount": 800}}, "assumptions": {"churn_elasticity": 0.5}})
    assert [r.whatif_revenue for r in rows] == [800, 800, 800]
    assert all(r.expected_churned == 0 for r in rows)


def test_new_tiers_are_priced_by_the_domain() -> None:
    """Quantity 3 on graduated tiers 1 × 10.00 then 6.00: 10.00 + 2 × 6.00 = 22.00 a month."""
    p = price("price_seats", 1000)
    sub, invoices = subscription("sub_s", p, JAN, 1)
    sub["items"]["data"][0]["quantity"] = 3
    for inv in invoices:
        inv["lines"][0]["quantity"] = 3
        inv["lines"][0]["amount"] = 3000
    tiers = [{"up_to": 1, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 600}]
    rows = run(
        history([p], [(sub, invoices)], datetime(2026, 1, 31, tzinfo=UTC)),
        {"prices": {"price_seats": {"billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": tiers}}},
    )
    assert [(r.actual_revenue, r.whatif_revenue) for r in rows] == [(3000, 2200)]


def test_a_coupon_for_everyone_is_taken_off_by_the_domain_discount() -> None:
    """25 % off for 2 months from each subscription's start: 7.50, 7.50, then 10.00."""
    p = price("price_coffee", 1000)
    raw = history([p], [subscription("sub_a", p, JAN, 3)], MARCH_END)
    coupon = {"percent_off": 25, "duration": "repeating", "duration_in_months": 2}
    rows = run(raw, {"prices": {}, "coupon": coupon})
    assert [r.whatif_revenue for r in rows] == [750, 750, 1000]
    assert [r.whatif_mrr for r in rows] == [750, 750, 1000]
    once = run(raw, {"coupon": {"amount_off": 300, "currency": "EUR", "duration": "once"}})
    assert [r.whatif_revenue for r in once] == [700, 1000, 1000]


def test_a_longer_trial_moves_the_invoices_and_drops_those_past_the_horizon() -> None:
    """A 14-day trial from Jan 1 (paid Jan 15, Feb 15, Mar 15) made 30 days: +16 days, so Jan 31,
    Mar 3 and Mar 31 — nothing paid in February, two invoices in March."""
    p = price("price_tea", 900, trial=14)
    raw = history([p], [subscription("sub_t", p, JAN, 3)], MARCH_END)
    rows = run(raw, {"prices": {"price_tea": {"trial_period_days": 30}}})
    months = by_month(rows, "tea")
    assert [months[m].actual_revenue for m in ("2026-01", "2026-02", "2026-03")] == [900, 900, 900]
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03")] == [900, 0, 1800]


def test_no_trial_adds_the_periods_the_trial_held_back() -> None:
    """Without its 14-day trial the subscription pays from Jan 1; by Apr 10 that is one period more
    (Apr 1, billed with the subscription's items by the domain's period lines)."""
    p = price("price_tea", 900, trial=14)
    end = datetime(2026, 4, 10, tzinfo=UTC)
    raw = history([p], [subscription("sub_t", p, JAN, 3)], end)
    rows = run(raw, {"prices": {"price_tea": {"trial_period_days": 0}}})
    months = by_month(rows, "tea")
    assert [months[m].actual_revenue for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [900, 900, 900, 0]
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [900, 900, 900, 900]


def test_a_shorter_trial_at_a_months_end_bills_each_period_once() -> None:
    """A 14-day trial from Jan 16 ends Jan 30 (paid Jan 30; Feb 28 not reached by Feb 27 23:00). Made
    13 days, every invoice moves a day earlier: Jan 29, then the period the shorter trial adds,
    Feb 27 → Mar 29 — not a second Jan 29 → Feb 28 period on a grid anchored at Jan 29."""
    p = price("price_tea", 900, trial=14)
    end = datetime(2026, 2, 27, 23, tzinfo=UTC)
    raw = history([p], [subscription("sub_t", p, JAN + 15 * DAY, 1)], end)
    rows = run(raw, {"prices": {"price_tea": {"trial_period_days": 13}}})
    months = by_month(rows, "tea")
    assert [months[m].actual_revenue for m in ("2026-01", "2026-02")] == [900, 0]
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02")] == [900, 900]


def test_a_subscription_that_ended_inside_its_trial_is_never_charged() -> None:
    p = price("price_tea", 900, trial=14)
    raw = history([p], [subscription("sub_t", p, JAN, 0, ended=JAN + 5 * DAY)], MARCH_END)
    rows = run(raw, {"prices": {"price_tea": {"trial_period_days": 3}}})
    assert all(r.whatif_revenue == 0 and r.actual_revenue == 0 for r in rows)


def test_a_prorated_line_keeps_its_fraction_of_the_period() -> None:
    p = price("price_coffee", 1000)
    sub, invoices = subscription("sub_a", p, JAN, 1)
    invoices[0]["lines"][0].update(amount=333, proration=True)
    rows = run(history([p], [(sub, invoices)], datetime(2026, 1, 31, tzinfo=UTC)),
               {"prices": {"price_coffee": {"unit_amount": 1500}}})  # fmt: skip
    assert [(r.actual_revenue, r.whatif_revenue) for r in rows] == [(333, 500)]  # 1500 × 333/1000 = 499.5 → 500


def test_jpy_amounts_stay_whole_yen() -> None:
    p = price("price_matcha", 1200, currency="JPY")
    raw = history([p], [subscription("sub_m", p, JAN, 2)], datetime(2026, 2, 28, tzinfo=UTC))
    rows = run(raw, {"prices": {"price_matcha": {"unit_amount": 1333}}, "assumptions": {"churn_elasticity": 1}})
    # +11.08 % → hazard 133/1200; February: 1333 × 1067/1200 = 1185.26… → 1185
    assert [r.whatif_revenue for r in rows] == [1333, 1185]


@pytest.mark.parametrize(
    ("book", "param"),
    [
        ({"prices": {"price_nope": {"unit_amount": 1}}}, "prices.price_nope"),
        ({"prices": {"price_coffee": {"unit_amount": -5}}}, "prices.price_coffee"),
        ({"prices": {"price_coffee": {"currency": "USD"}}}, "prices.price_coffee.currency"),
        ({"coupon": {"percent_off": 10}}, "coupon"),
        ({"assumptions": {"churn_elasticity": -1}}, "assumptions.churn_elasticity"),
        ({"price": {}}, "unknown field 'price'"),
    ],
)
def test_a_bad_price_book_names_the_field(book: dict[str, Any], param: str) -> None:
    with pytest.raises(whatif.PriceBookError, match=param.replace(".", r"\.")):
        whatif.parse_price_book(book, {"price_coffee": price("price_coffee", 1000)})


def test_the_command_writes_a_table_a_csv_and_a_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = price("price_coffee", 1000)
    (tmp_path / "history.json").write_text(json.dumps(history([p], [subscription("sub_a", p, JAN, 3)], MARCH_END)))
    (tmp_path / "book.json").write_text(
        json.dumps({"name": "Coffee +20%", "prices": {"price_coffee": {"unit_amount": 1200}}})
    )
    args = argparse.Namespace(
        history=str(tmp_path / "history.json"), price_book=str(tmp_path / "book.json"), elasticity="0.5",
        csv=str(tmp_path / "out.csv"), chart=str(tmp_path / "out.svg"),
    )  # fmt: skip
    assert whatif.run(args) == 0
    out = capsys.readouterr().out
    assert "Coffee +20%" in out and "12.00 EUR" in out and "10.80 EUR" in out
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [(r["month"], r["actual_revenue"], r["whatif_revenue"]) for r in rows] == [
        ("2026-01", "1000", "1200"), ("2026-02", "1000", "1080"), ("2026-03", "1000", "972"),
    ]  # fmt: skip
    svg = (tmp_path / "out.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 4 and "2026-02" in svg


def test_changing_an_amount_alone_keeps_the_subscriptions_trial() -> None:
    """A checkout's own trial (21 days here, the price has 14) stays when only the amount changes."""
    p = price("price_tea", 900, trial=14)
    sub, invoices = subscription("sub_t", p, JAN, 2)
    trial_end = JAN + 21 * DAY
    sub["trial_end"] = trial_end.isoformat()
    rows = run(history([p], [(sub, invoices)], MARCH_END), {"prices": {"price_tea": {"unit_amount": 1000}}})
    assert [(r.month, r.actual_revenue, r.whatif_revenue) for r in rows] == [
        ("2026-01", 900, 1000),
        ("2026-02", 900, 1000),
        ("2026-03", 0, 0),
    ]  # fmt: skip
    # March has no invoice in the history; the subscription's MRR holds (the analytics' definition)
    assert (rows[-1].actual_mrr, rows[-1].whatif_mrr) == (900, 1000)


@settings(max_examples=40, deadline=None)
@given(
    subs=st.lists(
        st.tuples(st.integers(1, 99_999), st.integers(0, 60), st.integers(0, 5), st.sampled_from([None, 7, 14])),
        min_size=1,
        max_size=4,
    )
)
def test_an_unchanged_price_book_gives_the_actual_figures(subs: list[tuple[int, int, int, int | None]]) -> None:
    prices, built = [], []
    for n, (amount, offset, periods, trial) in enumerate(subs):
        p = price(f"price_p{n}", amount, trial=trial)
        prices.append(p)
        built.append(subscription(f"sub_{n}", p, JAN + offset * DAY, periods))
    rows = run(history(prices, built, datetime(2026, 9, 30, tzinfo=UTC)), {"name": "same"})
    assert all((r.whatif_revenue, r.whatif_mrr) == (r.actual_revenue, r.actual_mrr) for r in rows)
    assert all(not r.affected and r.expected_churned == 0 for r in rows)


def test_the_simulate_command_needs_both_files(tmp_path: Path) -> None:
    from kassa_local.cli import main

    with pytest.raises(SystemExit, match="needs --history and --price-book"):
        main(["simulate", "--history", str(tmp_path / "h.json")])
    with pytest.raises(SystemExit, match="kassa simulate: .*No such file"):
        main(["simulate", "--history", str(tmp_path / "h.json"), "--price-book", str(tmp_path / "b.json")])


@pytest.mark.parametrize("day", [29, 30, 31])
def test_survival_counts_the_billing_periods_of_a_month_end_anchor(day: int) -> None:
    """Anchored on Jan 29–31, the invoices fall on Feb 28, Mar 29–31, Apr 29–30, May 29–31: each is
    one more month of survival (0.9 a month), none lost or counted twice in February or a 30-day month."""
    p = price("price_coffee", 1000)
    start = datetime(2026, 1, day, tzinfo=UTC)
    raw = history([p], [subscription("sub_a", p, start, 5)], datetime(2026, 6, 15, tzinfo=UTC))
    rows = run(raw, {"prices": {"price_coffee": {"unit_amount": 1200}}, "assumptions": {"churn_elasticity": 0.5}})
    months = by_month(rows, "coffee")
    # 1200 × 0.9^k, rounded half-up: 1200, 1080, 972, 874.8 → 875, 787.32 → 787
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05")] == [
        1200, 1080, 972, 875, 787,
    ]  # fmt: skip
    # an anchor moved later (as an interval switch moves it): the periods before it count back from it
    sub, invoices = subscription("sub_a", p, start, 5)
    sub["billing_cycle_anchor"] = invoices[3]["period_start"]
    book = {"prices": {"price_coffee": {"unit_amount": 1200}}, "assumptions": {"churn_elasticity": 0.5}}
    moved = run(history([p], [(sub, invoices)], datetime(2026, 6, 15, tzinfo=UTC)), book)
    assert [r.whatif_revenue for r in moved if r.month != "2026-06"] == [1200, 1080, 972, 875, 787]


def test_the_books_coupon_starts_at_the_books_trial_end() -> None:
    """A 14-day trial from Jan 1 (paid Jan 15, Feb 15, Mar 15). Made 60 days (+46: Mar 2, Apr 2, Apr 30)
    with 25 % off for a month: the coupon covers the first paid period under the book (from Mar 2),
    not the month after the actual trial's end (Jan 15 – Feb 15, which the book leaves unbilled).
    Without a trial (Jan 1, Feb 1, Mar 1) a `once` coupon takes 3.00 off the Jan 1 invoice."""
    p = price("price_tea", 900, trial=14)
    raw = history([p], [subscription("sub_t", p, JAN, 3)], datetime(2026, 4, 30, 23, tzinfo=UTC))
    longer = run(raw, {"prices": {"price_tea": {"trial_period_days": 60}},
                       "coupon": {"percent_off": 25, "duration": "repeating", "duration_in_months": 1}})  # fmt: skip
    months = by_month(longer, "tea")
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [0, 0, 675, 1800]
    none = run(raw, {"prices": {"price_tea": {"trial_period_days": 0}},
                     "coupon": {"amount_off": 300, "currency": "EUR", "duration": "once"}})  # fmt: skip
    months = by_month(none, "tea")
    assert [months[m].whatif_revenue for m in ("2026-01", "2026-02", "2026-03", "2026-04")] == [600, 900, 900, 900]


class FakeApi(export.Exporter):
    """The merchant API's list and read routes over fixed objects, recording every GET."""

    def __init__(self, routes: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__("http://api.invalid", "key")
        self.routes = routes
        self.paths: list[str] = []

    def json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        self.paths.append(path)
        if path in self.routes:
            return {"object": "list", "data": self.routes[path], "has_more": False}
        kind, _, object_id = path.rpartition("/")
        return next(o for o in self.routes.get(kind, []) if o["id"] == object_id)


def test_the_history_export_lists_customers_once_and_keeps_no_personal_data() -> None:
    p = price("price_coffee", 1000)
    subs = [subscription("sub_a", p, JAN, 2), subscription("sub_b", p, JAN + DAY, 1)]
    raw = history([p], subs, MARCH_END)
    person = {"name": "Ada Lovelace", "email": "ada@example.com", "address": {"country": "DE", "line1": "Hauptstr. 1"}}
    customers = [
        {"object": "customer", "id": s["customer"], **person, "tax_id": "DE123456789", "tax_exempt": False,
         "created": JAN.isoformat()}
        for s, _ in subs
    ] + [{"object": "customer", "id": "cus_other", **person, "created": JAN.isoformat()}]  # fmt: skip
    invoices = [{**i, "buyer": {"name": person["name"], "email": person["email"], "address": person["address"]},
                 "customer_tax_id": "DE123456789", "customer_country": "DE"} for i in raw["invoices"]]  # fmt: skip
    api = FakeApi({"/v1/subscriptions": raw["subscriptions"], "/v1/customers": customers, "/v1/invoices": invoices,
                   "/v1/products": raw["products"], "/v1/prices": raw["prices"], "/v1/coupons": []})  # fmt: skip
    exported = api.history(JAN, MARCH_END, MARCH_END)
    assert api.paths.count("/v1/customers") == 1 and not [x for x in api.paths if x.startswith("/v1/customers/")]
    assert exported["customers"] == [
        {"object": "customer", "id": "cus_sub_a", "country": "DE", "currency": "EUR", "tax_exempt": False,
         "has_tax_id": True, "created": JAN.isoformat()},
        {"object": "customer", "id": "cus_sub_b", "country": "DE", "currency": "EUR", "tax_exempt": False,
         "has_tax_id": True, "created": JAN.isoformat()},
    ]  # fmt: skip
    text = json.dumps(exported)
    assert not any(found in text for found in ("Ada", "ada@example.com", "Hauptstr", "DE123456789"))
    assert all(i["customer_country"] == "DE" for i in exported["invoices"])
    # what the what-if reads is all there: the same figures as from the full history
    rows = run({**exported, "from": raw["from"], "to": raw["to"]}, {"prices": {"price_coffee": {"unit_amount": 1200}}})
    assert [r.whatif_revenue for r in rows] == [2400, 1200, 0]


def test_the_charts_gridlines_are_round_amounts_in_major_units_per_currency() -> None:
    assert whatif.axis_ticks(2400, 100) == [0, 500, 1000, 1500, 2000]  # EUR 24.00: every 5 euros
    assert whatif.axis_ticks(150_000, 1) == [0, 50_000, 100_000, 150_000]  # JPY: no minor unit
    assert whatif.axis_ticks(12_345, 1000) == [0, 5000, 10_000]  # KWD 12.345: three decimals
    assert whatif.axis_ticks(0, 100) == [0, 100]  # nothing billed: still an axis
