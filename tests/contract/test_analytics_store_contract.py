"""The AnalyticsStore contract, against MemoryAnalytics and DynamoAnalytics (moto, the wiring's schema)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from contract.conftest import billing_table
from kassa.adapters.analytics import DynamoAnalytics, MemoryAnalytics
from kassa.domain.errors import Conflict
from kassa.services.ports import CustomerAnalytics

STORES = [pytest.param("memory", id="memory"), pytest.param("dynamodb", id="dynamodb", marks=pytest.mark.integration)]


@pytest.fixture(params=STORES)
def analytics(request: pytest.FixtureRequest, uid: str) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryAnalytics()
        return
    with billing_table(request, f"analytics-{uid}") as (client, table):
        yield DynamoAnalytics(client, table)


FEB = ("mrr", "EUR", "2027-02")
MAR = ("mrr", "EUR", "2027-03")


def test_a_customer_change_is_stored_with_its_differences(analytics: Any) -> None:
    assert analytics.customer_state("cus_1") is None
    first = {FEB: {"new": 1000, "new_customers": 1}}
    analytics.apply(CustomerAnalytics("cus_1", {}, 0), first, first)
    stored = analytics.customer_state("cus_1")
    assert (stored.contribution, stored.version) == (first, 1)
    second = {FEB: {"new": 1000, "new_customers": 1}, MAR: {"expansion": 500}}
    analytics.apply(stored, second, {MAR: {"expansion": 500}})
    assert analytics.aggregates("mrr", "EUR") == {
        "2027-02": {"new": 1000, "new_customers": 1},
        "2027-03": {"expansion": 500},
    }
    assert analytics.aggregates("mrr", "EUR", high="2027-02") == {"2027-02": {"new": 1000, "new_customers": 1}}
    assert analytics.customer_state("cus_1").version == 2
    assert analytics.currencies() == ["EUR"]


def test_a_stale_version_loses_and_writes_nothing(analytics: Any) -> None:
    first = {FEB: {"new": 1000}}
    analytics.apply(CustomerAnalytics("cus_2", {}, 0), first, first)
    with pytest.raises(Conflict):  # a concurrent refresh that read before the first one wrote
        analytics.apply(CustomerAnalytics("cus_2", {}, 0), first, first)
    assert analytics.aggregates("mrr", "EUR") == {"2027-02": {"new": 1000}}


def test_aggregates_are_read_per_kind_currency_and_key_range(analytics: Any) -> None:
    contribution = {
        ("cohort", "USD", "2027-01|2027-01"): {"customers": 1, "mrr": 900},
        ("cohort", "USD", "2027-02|2027-03"): {"customers": 1, "mrr": 100},
        ("trial", "USD", "2027-01"): {"started": 1},
    }
    analytics.apply(CustomerAnalytics("cus_3", {}, 0), contribution, contribution)
    assert list(analytics.aggregates("cohort", "USD", "2027-02|", "2027-03|~")) == ["2027-02|2027-03"]
    assert analytics.aggregates("trial", "USD") == {"2027-01": {"started": 1}}
    assert analytics.aggregates("mrr", "USD") == {}


def test_replace_all_writes_anew_and_removes_stale_aggregates(analytics: Any) -> None:
    stale = {FEB: {"new": 1}, ("mrr", "JPY", "2027-01"): {"new": 5}}
    analytics.apply(CustomerAnalytics("cus_4", {}, 0), stale, stale)
    fresh = {MAR: {"new": 700, "new_customers": 1}}
    analytics.replace_all({"cus_4": fresh}, fresh)
    assert analytics.aggregates("mrr", "EUR") == {"2027-03": {"new": 700, "new_customers": 1}}
    assert analytics.aggregates("mrr", "JPY") == {}
    state = analytics.customer_state("cus_4")
    assert (state.contribution, state.version) == (fresh, 2)
