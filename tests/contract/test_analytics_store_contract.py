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


def _months(count: int, start: int = 2015) -> list[str]:
    return [f"{start + m // 12}-{m % 12 + 1:02d}" for m in range(count)]


def test_a_change_to_more_aggregates_than_one_transaction_holds_is_applied_once(analytics: Any) -> None:
    # a subscription that changes after ten years: every month's total moves at once (> 100 actions)
    first = {("mrr", "EUR", m): {"new": 1000} for m in _months(130)}
    analytics.apply(CustomerAnalytics("cus_5", {}, 0), first, first)
    stored = analytics.customer_state("cus_5")
    assert stored.version == 1 and stored.contribution == first
    second = {key: {"new": 1500} for key in first}
    analytics.apply(stored, second, {key: {"new": 500} for key in first})
    assert analytics.aggregates("mrr", "EUR") == {m: {"new": 1500} for m in _months(130)}
    assert analytics.customer_state("cus_5").version == 2


@pytest.mark.integration
def test_a_large_change_interrupted_between_chunks_is_finished_once_by_the_next_reader(
    request: pytest.FixtureRequest, uid: str
) -> None:
    with billing_table(request, f"analytics-chunks-{uid}") as (client, table):
        store = DynamoAnalytics(client, table)
        delta = {("mrr", "EUR", m): {"new": 100} for m in _months(250)}
        calls = {"n": 0}
        real = store._call

        def crash_after_the_second_step(name: str, **kwargs: Any) -> Any:
            if name == "transact_write_items":
                calls["n"] += 1
                if calls["n"] == 3:
                    raise RuntimeError("the function timed out")
            return real(name, **kwargs)

        store._call = crash_after_the_second_step  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            store.apply(CustomerAnalytics("cus_6", {}, 0), delta, delta)
        store._call = real  # type: ignore[method-assign]
        partial = store.aggregates("mrr", "EUR")
        assert 0 < len(partial) < 250  # one chunk of 99 added, the rest pending
        state = store.customer_state("cus_6")  # finishes the pending chunks
        assert state is not None and state.version == 1
        assert store.customer_state("cus_6") is not None  # a second reader adds nothing again
        assert store.aggregates("mrr", "EUR") == {m: {"new": 100} for m in _months(250)}


@pytest.mark.integration
def test_no_change_is_stored_over_a_large_one_not_yet_fully_added(request: pytest.FixtureRequest, uid: str) -> None:
    with billing_table(request, f"analytics-over-{uid}") as (client, table):
        store = DynamoAnalytics(client, table)
        delta = {("mrr", "EUR", m): {"new": 100} for m in _months(150)}
        real = store._call
        steps = {"n": 0}

        def stop_after_storing(name: str, **kwargs: Any) -> Any:
            if name == "transact_write_items":
                steps["n"] += 1
                if steps["n"] == 2:
                    raise RuntimeError("the function timed out")
            return real(name, **kwargs)

        store._call = stop_after_storing  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            store.apply(CustomerAnalytics("cus_7", {}, 0), delta, delta)
        store._call = real  # type: ignore[method-assign]
        # a refresh that read the version before (without finishing the pending difference) loses
        with pytest.raises(Conflict):
            store.apply(CustomerAnalytics("cus_7", delta, 1), {}, {key: {"new": -100} for key in delta})
        assert store.aggregates("mrr", "EUR") == {}
        state = store.customer_state("cus_7")
        assert state is not None and store.aggregates("mrr", "EUR") == {m: {"new": 100} for m in _months(150)}
        store.apply(state, {}, {key: {"new": -100} for key in delta})  # now it goes through
        assert all(counters == {"new": 0} for counters in store.aggregates("mrr", "EUR").values())
