"""Entitlements: what a customer may use now, following status, pauses and cancellations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.cancellation import cancel_immediately, schedule_cancellation
from kassa.domain.entitlements import ACCESS_STATUSES, entitled_products, entitlements, grants_access
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, InvoiceStatus, build_subscription_invoice
from kassa.domain.pausing import PauseBehavior, PauseCollection, invoice_while_paused
from kassa.domain.periods import Interval
from kassa.domain.subscription import Status, Subscription

START = datetime(2025, 4, 1, tzinfo=UTC)
END = datetime(2025, 5, 1, tzinfo=UTC)
NOW = datetime(2025, 4, 15, tzinfo=UTC)
PRODUCTS = {"price_pro": "prod_pro", "price_team": "prod_team"}


def sub(status: Status = Status.ACTIVE, id: str = "sub_1", price: str = "price_pro", **changes: object) -> Subscription:
    fields: dict[str, object] = dict(
        id=id,
        customer="cus_1",
        price=price,
        quantity=3,
        currency="EUR",
        unit_amount=1500,
        interval=Interval.MONTH,
        interval_count=1,
        status=status,
        billing_cycle_anchor=START,
        current_period_start=START,
        current_period_end=END,
        created=START - timedelta(days=40),
    )
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def test_an_active_subscription_entitles_to_its_product_until_the_period_end() -> None:
    [ent] = entitlements([sub()], NOW, products=PRODUCTS)
    assert (ent.product, ent.price, ent.subscription, ent.quantity, ent.customer) == (
        "prod_pro",
        "price_pro",
        "sub_1",
        3,
        "cus_1",
    )
    assert ent.valid_until == END and ent.renews and ent.status is Status.ACTIVE


def test_a_trial_entitles_until_the_trial_end() -> None:
    trial_end = datetime(2025, 4, 20, tzinfo=UTC)
    [ent] = entitlements(
        [sub(Status.TRIALING, trial_start=START, trial_end=trial_end, current_period_end=trial_end)],
        NOW,
        products=PRODUCTS,
    )
    assert ent.valid_until == trial_end and ent.status is Status.TRIALING


def test_past_due_keeps_access_until_dunning_suspends_it() -> None:
    late = sub(Status.PAST_DUE)
    assert len(entitlements([late], NOW, products=PRODUCTS)) == 1
    assert entitlements([late], NOW, products=PRODUCTS, past_due_access=False) == []
    assert entitlements([late], NOW, products=PRODUCTS, suspended={"sub_1"}) == []


@pytest.mark.parametrize(
    "status", [Status.PAUSED, Status.CANCELED, Status.INCOMPLETE, Status.INCOMPLETE_EXPIRED, Status.UNPAID]
)
def test_statuses_without_access(status: Status) -> None:
    assert entitlements([sub(status)], NOW, products=PRODUCTS) == []


def test_pause_collection_keeps_the_status_active_and_the_access() -> None:
    active = sub()
    draft = build_subscription_invoice(active, active.next_period(), END, BillingReason.SUBSCRIPTION_CYCLE)
    for behavior in PauseBehavior:
        outcome = invoice_while_paused(draft, PauseCollection(behavior=behavior), END)
        assert not outcome.collect
        # the invoice is handled; the subscription is untouched, so it still entitles
        assert entitlements([active], NOW, products=PRODUCTS)[0].status is Status.ACTIVE
    assert (
        invoice_while_paused(draft, PauseCollection(behavior=PauseBehavior.VOID), END).invoice.status
        is InvoiceStatus.VOID
    )


def test_cancel_at_period_end_keeps_access_until_the_period_end_only() -> None:
    leaving = schedule_cancellation(sub(), NOW)
    [ent] = entitlements([leaving], NOW, products=PRODUCTS)
    assert ent.valid_until == END and not ent.renews
    assert grants_access(leaving, END - timedelta(seconds=1))
    # even before the worker moves it to canceled, the access ends at the period end
    assert leaving.status is Status.ACTIVE and entitlements([leaving], END, products=PRODUCTS) == []


def test_canceled_immediately_ends_access_at_once() -> None:
    canceled = cancel_immediately(sub(), NOW).subscription
    assert not grants_access(canceled, NOW)


def test_a_renewal_in_flight_does_not_lock_the_customer_out() -> None:
    [ent] = entitlements([sub()], END + timedelta(minutes=5), products=PRODUCTS)
    assert ent.valid_until == END  # in the past: the storefront asks again


def test_a_subscription_created_later_gives_nothing_yet() -> None:
    assert entitlements([sub(created=NOW + timedelta(days=1))], NOW, products=PRODUCTS) == []


def test_several_subscriptions_sorted_by_product() -> None:
    found = entitlements(
        [sub(id="sub_b", price="price_team"), sub(id="sub_a"), sub(Status.CANCELED, id="sub_c")],
        NOW,
        products=PRODUCTS,
    )
    assert [(e.product, e.subscription) for e in found] == [("prod_pro", "sub_a"), ("prod_team", "sub_b")]
    assert entitled_products(found) == {"prod_pro", "prod_team"}


def test_an_unknown_price_is_a_wiring_error() -> None:
    with pytest.raises(InvalidInput) as error:
        entitlements([sub(price="price_gone")], NOW, products=PRODUCTS)
    assert error.value.param == "products"


@given(
    status=st.sampled_from(list(Status)),
    cancel_at_period_end=st.booleans(),
    offset=st.integers(min_value=-40 * 86400, max_value=60 * 86400),
    past_due_access=st.booleans(),
)
def test_access_only_ever_follows_the_rules(
    status: Status, cancel_at_period_end: bool, offset: int, past_due_access: bool
) -> None:
    subscription = sub(status, cancel_at_period_end=cancel_at_period_end)
    now = START + timedelta(seconds=offset)
    access = grants_access(subscription, now, past_due_access=past_due_access)
    if access:
        assert status in ACCESS_STATUSES and now >= subscription.created
        assert past_due_access or status is not Status.PAST_DUE
        assert not (cancel_at_period_end and now >= END)
    elif status in (Status.ACTIVE, Status.TRIALING) and now >= subscription.created:
        assert cancel_at_period_end and now >= END
