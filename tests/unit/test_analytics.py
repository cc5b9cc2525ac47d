"""Subscription analytics over small hand-computed histories, through the real use cases (in memory).

Every figure asserted here is worked out by hand in the comment next to it (docs/analytics.md).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from fakes import CountingStore, World, make_world

from kassa.adapters.analytics import MemoryAnalytics
from kassa.domain import analytics as a
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.errors import InvalidInput, Unavailable
from kassa.domain.money import round_fraction
from kassa.domain.periods import Interval
from kassa.domain.settings import AnalyticsSettings, MerchantSettings, RateTable
from kassa.services import analytics as svc
from kassa.services.cancellation import cancel
from kassa.services.checkout import complete_checkout
from kassa.services.coupons import create_coupon
from kassa.services.plan_changes import change_plan
from kassa.services.renewals import process_due


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class History:
    """A world whose events feed the analytics, and a clock moved through every due renewal."""

    def __init__(self, start: datetime) -> None:
        self.world: World = make_world(start)
        self.analytics = MemoryAnalytics()
        self.applied = 0

    def run_until(self, until: datetime) -> None:
        store = self.world.store
        while True:
            due = sorted(
                (store.get_subscription(s).due_at or until, s)
                for shard in range(4)
                for s, _ in store.due_subscriptions(shard, until, 100)
            )
            if not due:
                break
            at, sub_id = due[0]
            self.world.clock.set(max(self.world.clock.now(), at))
            process_due(self.world.billing, sub_id)
        self.world.clock.set(max(self.world.clock.now(), until))

    def pump(self) -> None:
        """Hand every event published since the last pump to the analytics, as the queue would."""
        events = self.world.publisher.events[self.applied :]
        self.applied = len(self.world.publisher.events)
        for event in events:
            svc.handle_event(self.world.store, self.analytics, event.model_dump(mode="json"))

    def report(self, kind: str, start: str, end: str, currency: str | None = None, **settings: Any) -> dict[str, Any]:
        self.pump()
        return svc.REPORTS[kind](self.analytics, MerchantSettings(**settings), start, end, currency)


def mrr_rows(history: History, start: str, end: str, currency: str | None = None, **settings: Any) -> list[tuple]:
    report = history.report("mrr", start, end, currency, **settings)
    keys = ("month", "mrr", "new", "expansion", "contraction", "churn", "reactivation", "customers")
    return [tuple(row[k] for k in keys) for row in report["data"]]


@pytest.fixture(scope="module")
def eur_history() -> History:
    """A: €10/month from 10 Jan; ×3 on 15 Feb; ×2 on 15 Mar; canceled 15 Apr; back on 10 May.
    B: €120/year from 10 Jan. C: €20/month with 25 % off forever from 12 Jun."""
    h = History(utc(2027, 1, 10, 9))
    _, monthly = h.world.catalog(1000, "eur")
    _, yearly = h.world.catalog(12000, "eur", interval=Interval.YEAR)
    _, pro = h.world.catalog(2000, "eur")
    a_sub = h.world.active_subscription(monthly, email="a@example.com").subscription.id
    h.world.active_subscription(yearly, email="b@example.com")
    h.run_until(utc(2027, 2, 15, 12))
    change_plan(h.world.billing, a_sub, quantity=3)
    h.run_until(utc(2027, 3, 15, 12))
    change_plan(h.world.billing, a_sub, quantity=2)
    h.run_until(utc(2027, 4, 15, 12))
    cancel(h.world.billing, a_sub, at_period_end=False, details=CancellationDetails())
    h.run_until(utc(2027, 5, 10, 12))
    h.world.active_subscription(monthly, email="a@example.com")
    h.run_until(utc(2027, 6, 12, 12))
    coupon = create_coupon(h.world.billing, percent_off=25, duration="forever")
    h.world.active_subscription(pro, email="c@example.com", coupon=coupon.id)
    h.run_until(utc(2027, 7, 20))
    return h


def test_mrr_and_every_movement_of_a_hand_computed_history(eur_history: History) -> None:
    assert mrr_rows(eur_history, "2026-12", "2027-07", "EUR") == [
        ("2026-12", 0, 0, 0, 0, 0, 0, 0),
        # A 1000 + B's yearly 12000 / 12 = 1000
        ("2027-01", 2000, 2000, 0, 0, 0, 0, 2),
        # A ×3 from 15 Feb (its proration line, on March's invoice): +2000
        ("2027-02", 4000, 0, 2000, 0, 0, 0, 2),
        # A ×2 from 15 Mar: −1000
        ("2027-03", 3000, 0, 0, 1000, 0, 0, 2),
        # A canceled: its 2000 churns, one customer left
        ("2027-04", 1000, 0, 0, 0, 2000, 0, 1),
        # A is back at ×1: a reactivation, not new
        ("2027-05", 2000, 0, 0, 0, 0, 1000, 2),
        # C: 2000 − 25 % = 1500 new
        ("2027-06", 3500, 1500, 0, 0, 0, 0, 3),
        ("2027-07", 3500, 0, 0, 0, 0, 0, 3),
    ]


def test_the_reporting_currency_defaults_to_the_merchants_and_shows_the_same(eur_history: History) -> None:
    report = eur_history.report("mrr", "2027-01", "2027-02")
    assert report["currency"] == "EUR"
    assert [row["mrr"] for row in report["data"]] == [2000, 4000]


def test_churn_rates_of_the_history(eur_history: History) -> None:
    rows = {row["month"]: row for row in eur_history.report("churn", "2027-02", "2027-05", "EUR")["data"]}
    april = rows["2027-04"]
    # 1 of the 2 customers at the end of March churned; 2000 of March's 3000 lost
    assert (april["customers_start"], april["churned_customers"], april["logo_churn_rate"]) == (2, 1, "0.5000")
    assert (april["mrr_start"], april["gross_revenue_churn_rate"], april["net_revenue_churn_rate"]) == (
        3000,
        "0.6667",
        "0.6667",
    )
    # February: nothing lost, 2000 of expansion on 2000: net revenue churn −100 %
    assert rows["2027-02"]["gross_revenue_churn_rate"] == "0.0000"
    assert rows["2027-02"]["net_revenue_churn_rate"] == "-1.0000"
    # March: a contraction of 1000 on 4000
    assert rows["2027-03"]["gross_revenue_churn_rate"] == "0.2500"
    assert rows["2027-03"]["logo_churn_rate"] == "0.0000"


def test_arpu_and_ltv(eur_history: History) -> None:
    report = eur_history.report("ltv", "2027-01", "2027-06", "EUR")
    rows = {row["month"]: row for row in report["data"]}
    # April: MRR 1000 over 1 customer; logo churn 1/2: LTV = 1000 ÷ 0.5 = 2000
    assert (rows["2027-04"]["arpu"], rows["2027-04"]["ltv"]) == (1000, 2000)
    # no churn in May: the lifetime is unbounded
    assert rows["2027-05"]["ltv"] is None
    # June: 3500 / 3 customers = 1166.67 → 1167 (half up); over Jan–Jun one churned of 0+2+2+2+1+2 = 9
    # customer-months at the months' starts: 1167 × 9 = 10503
    assert report["summary"] == {"arpu": 1167, "logo_churn_rate": "0.1111", "ltv": 10503}


def test_cohort_retention_by_signup_month(eur_history: History) -> None:
    data = eur_history.report("cohorts", "2027-01", "2027-06", "EUR")["data"]
    january = next(c for c in data if c["cohort"] == "2027-01")
    cells = {cell["month"]: cell for cell in january["months"]}
    assert (january["customers"], january["mrr"]) == (2, 2000)
    assert (cells["2027-02"]["customers"], cells["2027-02"]["mrr"], cells["2027-02"]["revenue_retention"]) == (
        2,
        4000,
        "2.0000",
    )
    assert (cells["2027-04"]["customers"], cells["2027-04"]["customer_retention"]) == (1, "0.5000")
    # A's reactivation counts in its January cohort again
    assert (cells["2027-05"]["customers"], cells["2027-05"]["mrr"]) == (2, 2000)
    june = next(c for c in data if c["cohort"] == "2027-06")
    assert (june["customers"], june["mrr"], len(june["months"])) == (1, 1500, 1)


def test_the_rebuild_gives_the_same_numbers_as_the_incremental_path(eur_history: History) -> None:
    eur_history.pump()
    rebuilt = MemoryAnalytics()
    summary = svc.rebuild(eur_history.world.store, rebuilt)
    assert summary.customers == 3
    assert rebuilt.counters == eur_history.analytics.counters
    settings = MerchantSettings()
    for kind in svc.REPORTS:
        assert svc.REPORTS[kind](rebuilt, settings, "2027-01", "2027-07", "EUR") == svc.REPORTS[kind](
            eur_history.analytics, settings, "2027-01", "2027-07", "EUR"
        )


def test_duplicated_replayed_and_shuffled_events_change_nothing(eur_history: History) -> None:
    eur_history.pump()
    before = {k: dict(v) for k, v in eur_history.analytics.counters.items()}
    versions = {c: s.version for c, s in eur_history.analytics.customers.items()}
    events = [e.model_dump(mode="json") for e in eur_history.world.publisher.events]
    replay = events * 2
    random.Random(7).shuffle(replay)
    for envelope in [*replay, *reversed(events)]:
        assert svc.handle_event(eur_history.world.store, eur_history.analytics, envelope) in ("unchanged", "ignored")
    assert eur_history.analytics.counters == before
    assert {c: s.version for c, s in eur_history.analytics.customers.items()} == versions  # nothing written


def test_out_of_order_events_reach_the_same_aggregates() -> None:
    """The events of a whole history applied newest first, each read against the final store."""
    h = History(utc(2027, 1, 5))
    _, price = h.world.catalog(1500, "eur")
    sub = h.world.active_subscription(price, email="z@example.com").subscription.id
    h.run_until(utc(2027, 2, 20))
    change_plan(h.world.billing, sub, quantity=2)
    h.run_until(utc(2027, 3, 25))
    events = [e.model_dump(mode="json") for e in reversed(h.world.publisher.events)]
    for envelope in events:
        svc.handle_event(h.world.store, h.analytics, envelope)
    rebuilt = MemoryAnalytics()
    svc.rebuild(h.world.store, rebuilt)
    assert h.analytics.counters == rebuilt.counters
    # 1500 new in January; ×2 from 20 Feb: +1500
    assert mrr_rows(h, "2027-01", "2027-03", "EUR") == [
        ("2027-01", 1500, 1500, 0, 0, 0, 0, 1),
        ("2027-02", 3000, 0, 1500, 0, 0, 0, 1),
        ("2027-03", 3000, 0, 0, 0, 0, 0, 1),
    ]


@pytest.fixture(scope="module")
def currencies_history() -> History:
    """EUR €10/month, USD $30/month, JPY ¥10,000/year, KWD 10.000 every 3 months, all from 3 Mar."""
    h = History(utc(2027, 3, 3, 8))
    for amount, currency, recurring, email in (
        (1000, "eur", {}, "eur@example.com"),
        (3000, "usd", {}, "usd@example.com"),
        (10000, "jpy", {"interval": Interval.YEAR}, "jpy@example.com"),
        (10000, "kwd", {"interval_count": 3}, "kwd@example.com"),
    ):
        _, price = h.world.catalog(amount, currency, **recurring)
        h.world.active_subscription(price, email=email)
    h.run_until(utc(2027, 4, 10))
    return h


def test_each_currency_is_reported_on_its_own_with_explicit_rounding(currencies_history: History) -> None:
    h = currencies_history
    assert mrr_rows(h, "2027-03", "2027-03", "USD") == [("2027-03", 3000, 3000, 0, 0, 0, 0, 1)]
    # ¥10,000 a year: 10000 / 12 = 833.33 → 833 yen
    assert mrr_rows(h, "2027-03", "2027-03", "JPY") == [("2027-03", 833, 833, 0, 0, 0, 0, 1)]
    # 10.000 KWD every 3 months: 10000 fils / 3 = 3333.33 → 3333 fils (3 decimals)
    assert mrr_rows(h, "2027-03", "2027-03", "kwd") == [("2027-03", 3333, 3333, 0, 0, 0, 0, 1)]
    assert mrr_rows(h, "2027-03", "2027-03", "GBP") == [("2027-03", 0, 0, 0, 0, 0, 0, 0)]


def test_the_reporting_currency_converts_with_the_merchants_rates(currencies_history: History) -> None:
    h = currencies_history
    rates = {"USD": "0.5", "JPY": "0.006"}
    report = h.report("mrr", "2027-03", "2027-04", analytics={"reporting_currency": "EUR", "exchange_rates": rates})
    # EUR 1000 + USD 3000 × 0.5 = 1500 + JPY 833 × 0.006 × 100 = 499.8 → 500; KWD has no rate: left out
    assert report["currency"] == "EUR"
    assert report["excluded_currencies"] == ["KWD"]
    assert report["converted_from"] == ["JPY", "USD"]
    assert [(r["month"], r["mrr"], r["new"], r["customers"]) for r in report["data"]] == [
        ("2027-03", 3000, 3000, 3),
        ("2027-04", 3000, 0, 3),
    ]


def test_a_month_s_rate_applies_from_that_month_until_the_next_one(currencies_history: History) -> None:
    h = currencies_history
    config = {"reporting_currency": "EUR", "exchange_rates": {"USD": "0.5", "JPY": "0.006"},
              "exchange_rates_by_month": {"USD": {"2027-04": "0.6", "2027-01": "0.4"}}}  # fmt: skip
    report = h.report("mrr", "2027-02", "2027-05", analytics=config)
    # USD 3000 × 0.4 (the January rate, still in force) = 1200, then × 0.6 from April = 1800
    assert [(r["month"], r["mrr"]) for r in report["data"]] == [
        ("2027-02", 0),
        ("2027-03", 1000 + 1200 + 500),
        ("2027-04", 1000 + 1800 + 500),
        ("2027-05", 1000 + 1800 + 500),
    ]
    april = report["data"][2]
    assert april["new"] == april["expansion"] == april["churn"] == april["contraction"] == 0  # a revaluation
    assert report["exchange_rates"] == {"JPY": "0.006", "USD": "0.6"}
    assert report["exchange_rates_by_month"] == {
        "USD": {"2027-02": "0.4", "2027-03": "0.4", "2027-04": "0.6", "2027-05": "0.6"}
    }
    # without a base rate, the first month's rate also covers the months before it
    only_monthly = {"reporting_currency": "EUR", "exchange_rates_by_month": {"USD": {"2027-04": "0.6"}}}
    rows = h.report("mrr", "2027-03", "2027-03", analytics=only_monthly)
    assert rows["data"][0]["mrr"] == 1000 + 1800 and rows["excluded_currencies"] == ["JPY", "KWD"]


def test_the_latest_month_not_after_the_reported_one_gives_the_rate() -> None:
    table = RateTable(Fraction(1, 2), {"2027-06": Fraction(3, 5), "2027-03": Fraction(2, 5)})
    assert [table.at(m) for m in ("2027-02", "2027-03", "2027-05", "2027-06", "2030-01")] == [
        Fraction(1, 2), Fraction(2, 5), Fraction(2, 5), Fraction(3, 5), Fraction(3, 5),
    ]  # fmt: skip
    assert RateTable(None, {"2027-06": Fraction(3, 5)}).at("2027-01") == Fraction(3, 5)
    monthly = {"usd": {"2027-03": "0.950", "2027-01": 1}}
    settings = AnalyticsSettings.model_validate({"exchange_rates_by_month": monthly})
    assert settings.exchange_rates_by_month == {"USD": {"2027-01": "1", "2027-03": "0.95"}}
    assert settings.rates("USD", "EUR") == RateTable(None, {"2027-01": Fraction(1), "2027-03": Fraction(19, 20)})
    assert settings.rates("GBP", "EUR") is None


@pytest.mark.parametrize(
    "monthly",
    [
        {"USD": {"2027-13": "1"}},  # not a month
        {"USD": {"2027-3": "1"}},
        {"USD": {"2027-03": 0.95}},  # a float
        {"USD": {"2027-03": "0"}},
        {"USD": {}},
        {"USD": "0.95"},  # not per month
        {"XYZ": {"2027-03": "1"}},
        {"EUR": {"2027-03": "1"}},  # the reporting currency itself
    ],
)
def test_monthly_rates_are_validated_naming_the_field(monthly: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as error:
        AnalyticsSettings.model_validate({"reporting_currency": "EUR", "exchange_rates_by_month": monthly})
    assert "exchange_rates_by_month" in str(error.value)


def test_converted_movements_still_add_up_to_the_change_in_mrr() -> None:
    # three currencies whose converted movements each round up by almost half a unit
    per_currency = {
        "USD": a.mrr_months({"2027-01": {"new": 1, "new_customers": 1}, "2027-02": {"expansion": 1}}, "2027-02"),
        "GBP": a.mrr_months({"2027-01": {"new": 1, "new_customers": 1}, "2027-02": {"expansion": 1}}, "2027-02"),
        "CHF": a.mrr_months({"2027-01": {"new": 1, "new_customers": 1}, "2027-02": {"expansion": 1}}, "2027-02"),
    }
    rates = {c: Fraction(149, 100) for c in per_currency}
    rows = a.converted_months(per_currency, "EUR", rates)
    # MRR: 3 × 1.49 = 4.47 → 4, then 8.94 → 9; each movement 1.49 → 1 each, three of them: 3 ≠ 4
    assert [row.mrr for row in rows] == [4, 9]
    previous = 0
    for row in rows:
        assert row.new + row.expansion + row.reactivation - row.contraction - row.churn == row.mrr - previous
        previous = row.mrr


def test_trial_conversion_counts_trials_in_their_start_month() -> None:
    h = History(utc(2027, 5, 2))
    _, price = h.world.catalog(1000, "eur")
    converted = h.world.checkout(price, email="t1@example.com", trial_days=14)
    complete_checkout(h.world.billing, converted.subscription.id, converted.setup_intent.id)
    h.world.checkout(price, email="t2@example.com", trial_days=14)  # no card: the trial ends unpaid
    h.run_until(utc(2027, 6, 5))
    rows = {r["month"]: r for r in h.report("churn", "2027-05", "2027-06", "EUR")["data"]}
    assert (rows["2027-05"]["trials_started"], rows["2027-05"]["trials_converted"]) == (2, 1)
    assert rows["2027-05"]["trial_conversion_rate"] == "0.5000"
    # no MRR while trialing; from 16 May both are billed: the converted one paid, the other past due
    # with its invoice open (past due still counts)
    assert mrr_rows(h, "2027-05", "2027-06", "EUR") == [
        ("2027-05", 2000, 2000, 0, 0, 0, 0, 2),
        ("2027-06", 2000, 0, 0, 0, 0, 0, 2),
    ]


def test_a_partial_first_period_before_the_anchor_counts_its_full_monthly_amount() -> None:
    h = History(utc(2027, 3, 20, 9))
    _, price = h.world.catalog(3100, "eur")
    h.world.active_subscription(price, email="anchor@example.com", billing_cycle_anchor=utc(2027, 4, 1))
    h.run_until(utc(2027, 4, 15))
    # 20 Mar – 1 Apr is billed prorated; the MRR is the price's month from the start, not from 1 April
    assert mrr_rows(h, "2027-03", "2027-04", "EUR") == [
        ("2027-03", 3100, 3100, 0, 0, 0, 0, 1),
        ("2027-04", 3100, 0, 0, 0, 0, 0, 1),
    ]


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        (utc(2027, 1, 1), utc(2027, 2, 1), Fraction(1)),
        (utc(2027, 1, 31), utc(2027, 2, 28), Fraction(1)),  # an end-of-month anchor
        (utc(2027, 1, 1), utc(2028, 1, 1), Fraction(1, 12)),
        (utc(2027, 1, 1), utc(2027, 4, 1), Fraction(1, 3)),
        (utc(2027, 1, 1), utc(2027, 1, 8), Fraction(52, 12)),
        (utc(2027, 1, 1), utc(2027, 1, 15), Fraction(52, 24)),
        (utc(2027, 1, 1), utc(2027, 1, 2), Fraction(365, 12)),
    ],
)
def test_monthly_normalization_of_a_billed_period(start: datetime, end: datetime, months: Fraction) -> None:
    assert a.monthly_factor(start, end) == months


def test_normalized_amounts_round_half_up_to_the_minor_unit() -> None:
    assert round_fraction(Fraction(1000) * a.interval_factor(Interval.WEEK, 1)) == 4333  # 4333.33
    assert round_fraction(Fraction(10) * a.interval_factor(Interval.YEAR, 1)) == 1  # 0.83 → 1
    assert round_fraction(Fraction(18) * a.interval_factor(Interval.YEAR, 1)) == 2  # 1.5 → 2 (half up)


def test_rates_are_decimal_strings() -> None:
    assert a.rate_string(1, 3) == "0.3333"
    assert a.rate_string(2, 3) == "0.6667"
    assert a.rate_string(-1, 8) == "-0.1250"
    assert a.rate_string(1, 0) is None
    assert a.convert(833, "JPY", "EUR", Fraction("0.006")) == Fraction("499.8")
    assert a.convert(1000, "EUR", "KWD", Fraction("0.33")) == Fraction(3300)


@pytest.mark.parametrize(
    ("start", "end", "param"),
    [
        ("2027-13", "2027-12", "from"),
        ("2027-01", "27-01", "to"),
        ("2027-05", "2027-01", "from"),
        ("2000-01", "2027-01", "to"),
    ],
)
def test_bad_months_name_the_field(start: str, end: str, param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        svc.mrr_report(MemoryAnalytics(), MerchantSettings(), start, end, None)
    assert error.value.param == param


def test_an_unknown_currency_names_the_field() -> None:
    with pytest.raises(InvalidInput) as error:
        svc.mrr_report(MemoryAnalytics(), MerchantSettings(), "2027-01", "2027-02", "XYZ")
    assert error.value.param == "currency"


@pytest.mark.parametrize(
    "settings",
    [
        {"exchange_rates": {"USD": 0.92}},  # a float
        {"exchange_rates": {"USD": "-1"}},
        {"exchange_rates": {"USD": "0.1234567890123"}},  # 13 decimals
        {"exchange_rates": {"XYZ": "1"}},
        {"reporting_currency": "EUR", "exchange_rates": {"EUR": "1"}},
        {"reporting_currency": "EURO"},
    ],
)
def test_exchange_rate_settings_are_validated(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AnalyticsSettings.model_validate(settings)


def test_exchange_rates_are_kept_as_canonical_strings() -> None:
    settings = AnalyticsSettings.model_validate(
        {"reporting_currency": "usd", "exchange_rates": {"eur": "1.0800", "JPY": 1}}
    )
    assert settings.reporting_currency == "USD"
    assert settings.exchange_rates == {"EUR": "1.08", "JPY": "1"}


def test_csv_has_a_header_and_a_row_per_month(eur_history: History) -> None:
    report = eur_history.report("mrr", "2027-01", "2027-02", "EUR")
    header, rows = svc.csv_rows("mrr", report)
    assert header == [
        "month",
        "mrr",
        "new",
        "expansion",
        "contraction",
        "churn",
        "reactivation",
        "customers",
        "currency",
    ]
    assert rows == [["2027-01", 2000, 2000, 0, 0, 0, 0, 2, "EUR"], ["2027-02", 4000, 0, 2000, 0, 0, 0, 2, "EUR"]]
    cohorts = eur_history.report("cohorts", "2027-01", "2027-02", "EUR")
    header, rows = svc.csv_rows("cohorts", cohorts)
    assert header[:3] == ["cohort", "month", "customers"]
    assert rows[0] == ["2027-01", "2027-01", 2, 2000, "1.0000", "1.0000", "EUR"]


# ------------------------------------------------------------------ the queue's batches (analytics.Batch)
def _envelopes(h: History, start: int) -> list[dict[str, Any]]:
    return [{"detail-type": e.type, "detail": e.model_dump(mode="json")} for e in h.world.publisher.events[start:]]


def _contributions(analytics: MemoryAnalytics) -> dict[str, Any]:
    return {customer: state.contribution for customer, state in analytics.customers.items()}


def test_a_batch_refreshes_each_customer_once_and_gives_the_per_event_aggregates() -> None:
    """Two customers' histories pumped step by step, event by event into one analytics and in the
    queue's batches of 10 (duplicated and shuffled, as SQS may) into another: the same aggregates and
    contributions after every step, each customer read once per batch, and both equal to a rebuild."""
    h = History(utc(2027, 1, 5))
    _, price = h.world.catalog(1500, "eur")
    _, yearly = h.world.catalog(12000, "eur", interval=Interval.YEAR)
    first = h.world.active_subscription(price, email="first@example.com").subscription.id
    h.world.active_subscription(yearly, email="second@example.com")
    per_event, batched = MemoryAnalytics(), MemoryAnalytics()
    rng = random.Random(3)
    seen, batches = 0, 0

    def pump() -> None:
        nonlocal seen, batches
        envelopes = _envelopes(h, seen)
        seen = len(h.world.publisher.events)
        for envelope in envelopes:
            svc.handle_event(h.world.store, per_event, envelope)
        delivered = envelopes + rng.sample(envelopes, len(envelopes) // 3)  # redeliveries
        rng.shuffle(delivered)
        for i in range(0, len(delivered), 10):
            batch = delivered[i : i + 10]
            store = CountingStore(h.world.store)
            answers = svc.handle_batch(store, batched, batch)
            customers = [svc.customer_of_event(e) for e in batch]
            named = {c for c in customers if c is not None}
            assert store.refreshes == Counter(dict.fromkeys(named, 1))  # once per customer of the batch
            assert not any(isinstance(answer, Exception) for answer in answers)
            firsts = {customers.index(c) for c in named}
            for j, (customer, answer) in enumerate(zip(customers, answers, strict=True)):
                if customer is None:
                    assert answer == "ignored"
                elif j in firsts:
                    assert answer == "unchanged" or str(answer).startswith("changed:")
                else:
                    assert answer == "coalesced"
            batches += 1
        assert batched.counters == per_event.counters
        assert _contributions(batched) == _contributions(per_event)

    pump()
    h.run_until(utc(2027, 2, 20))
    pump()
    change_plan(h.world.billing, first, quantity=3)
    pump()
    h.run_until(utc(2027, 3, 25))
    cancel(h.world.billing, first, at_period_end=False, details=CancellationDetails())
    h.run_until(utc(2027, 4, 10))
    pump()
    assert batches >= 4 and len(batched.customers) == 2
    rebuilt = MemoryAnalytics()
    svc.rebuild(h.world.store, rebuilt)
    assert batched.counters == rebuilt.counters and batched.counters


def test_a_failed_refresh_fails_only_its_customers_records_and_their_redelivery_catches_up() -> None:
    h = History(utc(2027, 1, 5))
    _, price = h.world.catalog(1500, "eur")
    failing = h.world.active_subscription(price, email="failing@example.com").subscription.customer
    fine = h.world.active_subscription(price, email="fine@example.com").subscription.customer
    envelopes = _envelopes(h, 0)
    analytics = MemoryAnalytics()
    store = CountingStore(h.world.store, fail_for=failing)

    answers = svc.handle_batch(store, analytics, envelopes)

    customers = [svc.customer_of_event(e) for e in envelopes]
    assert {failing, fine} <= set(customers) and customers.count(failing) > 1
    failed = [answer for customer, answer in zip(customers, answers, strict=True) if customer == failing]
    others = [answer for customer, answer in zip(customers, answers, strict=True) if customer != failing]
    assert all(isinstance(answer, Unavailable) for answer in failed)  # every one of its records fails
    assert not any(isinstance(answer, Exception) for answer in others)  # and none of the others
    assert store.refreshes == {failing: 1, fine: 1}  # the failing customer is not tried again in the batch
    assert analytics.customer_state(failing) is None and analytics.customer_state(fine) is not None
    # SQS delivers the failed records again: the aggregates catch up with the store
    redelivered = [e for e, customer in zip(envelopes, customers, strict=True) if customer == failing]
    assert svc.handle_batch(h.world.store, analytics, redelivered)[0].startswith("changed:")  # type: ignore[union-attr]
    rebuilt = MemoryAnalytics()
    svc.rebuild(h.world.store, rebuilt)
    assert analytics.counters == rebuilt.counters


def test_the_batch_raises_the_customers_error_for_each_of_its_records() -> None:
    h = History(utc(2027, 1, 5))
    _, price = h.world.catalog(1500, "eur")
    customer = h.world.active_subscription(price, email="z@example.com").subscription.customer
    batch = svc.Batch(CountingStore(h.world.store, fail_for=customer), MemoryAnalytics())
    envelope = {"detail": {"data": {"customer": customer}}}
    for _ in range(2):
        with pytest.raises(Unavailable):
            batch.handle(envelope)
    assert batch.handle({"detail": {"data": {}}}) == "ignored"
