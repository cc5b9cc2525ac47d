"""Subscriptions: start, Stripe's status machine, due dates and what falls due when."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.catalog import Price, Recurring
from kassa.domain.errors import IllegalTransition, InvalidInput
from kassa.domain.periods import Interval, Period, boundary
from kassa.domain.subscription import (
    INCOMPLETE_EXPIRY,
    TERMINAL,
    TRANSITIONS,
    Due,
    DueAction,
    Status,
    Subscription,
    can_transition,
    due_action,
    start_subscription,
)

NOW = datetime(2025, 1, 31, 10, 0, 0, tzinfo=UTC)
S = Status


def make_price(interval: Interval = Interval.MONTH, count: int = 1, trial: int | None = None, **kw: object) -> Price:
    return Price(
        id="price_test",
        product="prod_test",
        currency=kw.pop("currency", "eur"),  # type: ignore[arg-type]
        unit_amount=kw.pop("unit_amount", 1500),  # type: ignore[arg-type]
        recurring=Recurring(interval=interval, interval_count=count, trial_period_days=trial),
        created=NOW,
    )


def new_sub(**kwargs: object) -> Subscription:
    params: dict[str, object] = {"customer": "cus_1", "price": make_price(), "quantity": 1, "now": NOW} | kwargs
    return start_subscription(**params)  # type: ignore[arg-type]


def with_status(sub: Subscription, status: Status) -> Subscription:
    return sub.model_copy(update={"status": status})


# ------------------------------------------------------------------ start
def test_start_without_trial_is_incomplete_until_the_first_invoice_is_paid() -> None:
    sub = new_sub(quantity=3, subscription_id="sub_x")
    assert sub.id == "sub_x"
    assert sub.status is S.INCOMPLETE
    assert sub.quantity == 3
    assert sub.currency == "EUR"
    assert sub.unit_amount == 1500
    assert sub.billing_cycle_anchor == NOW
    assert sub.period == Period(NOW, datetime(2025, 2, 28, 10, tzinfo=UTC))
    assert sub.incomplete_expires_at == NOW + timedelta(hours=23)
    assert timedelta(hours=23) == INCOMPLETE_EXPIRY
    assert sub.trial_start is None and sub.trial_end is None
    assert sub.created == NOW
    assert sub.version == 0


def test_start_drops_microseconds_and_converts_to_utc() -> None:
    sub = new_sub(now=NOW.replace(microsecond=123456))
    assert sub.created == NOW
    assert sub.incomplete_expires_at == NOW + timedelta(hours=23)


def test_start_with_trial_is_trialing_and_anchored_at_trial_end() -> None:
    sub = new_sub(trial_days=14)
    trial_end = NOW + timedelta(days=14)
    assert sub.status is S.TRIALING
    assert sub.trial_start == NOW
    assert sub.trial_end == trial_end
    assert sub.billing_cycle_anchor == trial_end
    assert sub.period == Period(NOW, trial_end)
    assert sub.incomplete_expires_at is None


def test_the_price_trial_applies_unless_overridden() -> None:
    price = make_price(trial=7)
    assert new_sub(price=price).trial_end == NOW + timedelta(days=7)
    assert new_sub(price=price, trial_days=30).trial_end == NOW + timedelta(days=30)
    assert new_sub(price=price, trial_days=0).status is S.INCOMPLETE  # 0 skips the price's trial


@pytest.mark.parametrize("trial_days", [-1, 731])
def test_trial_days_out_of_range_are_refused(trial_days: int) -> None:
    with pytest.raises(InvalidInput) as error:
        new_sub(trial_days=trial_days)
    assert error.value.param == "trial_days"


@pytest.mark.parametrize("quantity", [0, -1])
def test_quantity_below_one_is_refused(quantity: int) -> None:
    with pytest.raises(InvalidInput) as error:
        new_sub(quantity=quantity)
    assert error.value.param == "quantity"


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput):
        new_sub(now=datetime(2025, 1, 31))


def test_ids_are_prefixed_and_unique() -> None:
    ids = {new_sub().id for _ in range(20)}
    assert len(ids) == 20
    assert all(i.startswith("sub_") for i in ids)


# ------------------------------------------------------------------ the status machine
# Stripe's lifecycle, written out independently of kassa's table (facts.md):
EXPECTED_LEGAL = {
    (S.INCOMPLETE, S.ACTIVE),  # first invoice paid
    (S.INCOMPLETE, S.INCOMPLETE_EXPIRED),  # 23 h unpaid
    (S.INCOMPLETE, S.CANCELED),
    (S.TRIALING, S.ACTIVE),  # trial end, paid
    (S.TRIALING, S.PAST_DUE),  # trial end, payment failed
    (S.TRIALING, S.CANCELED),  # trial end without card, setting "cancel"
    (S.TRIALING, S.PAUSED),  # trial end without card, setting "pause": the only way into paused
    (S.ACTIVE, S.PAST_DUE),  # a renewal failed
    (S.ACTIVE, S.CANCELED),
    (S.ACTIVE, S.UNPAID),
    (S.PAST_DUE, S.ACTIVE),  # paid after all
    (S.PAST_DUE, S.CANCELED),  # retries ran out, setting "cancel"
    (S.PAST_DUE, S.UNPAID),  # retries ran out, setting "unpaid"
    (S.UNPAID, S.ACTIVE),
    (S.UNPAID, S.CANCELED),
    (S.PAUSED, S.ACTIVE),
    (S.PAUSED, S.CANCELED),
}
PAIRS = [(a, b) for a, b in itertools.product(Status, Status) if a != b]


def test_transition_table_matches_stripe_lifecycle() -> None:
    assert set(TRANSITIONS) == set(Status)  # every status has a row
    actual = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED_LEGAL


@pytest.mark.parametrize(("current", "target"), [p for p in PAIRS if p in EXPECTED_LEGAL], ids=str)
def test_legal_transition_is_accepted(current: Status, target: Status) -> None:
    sub = with_status(new_sub(), current)
    later = NOW + timedelta(days=3)
    moved = sub.transition(target, later)
    assert moved.status is target
    assert sub.status is current  # never mutates
    assert can_transition(current, target)
    if target in TERMINAL:
        assert moved.ended_at == later
    else:
        assert moved.ended_at is None
    assert moved.canceled_at == (later if target is S.CANCELED else None)


@pytest.mark.parametrize(("current", "target"), [p for p in PAIRS if p not in EXPECTED_LEGAL], ids=str)
def test_illegal_transition_raises(current: Status, target: Status) -> None:
    sub = with_status(new_sub(), current)
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition) as error:
        sub.transition(target, NOW)
    assert error.value.code == "illegal_transition"
    assert current.value in error.value.message and target.value in error.value.message


@pytest.mark.parametrize("status", list(Status))
def test_transition_to_the_same_status_is_a_no_op(status: Status) -> None:
    sub = with_status(new_sub(), status)
    assert sub.transition(status, NOW + timedelta(days=1)) is sub


def test_key_lifecycle_facts() -> None:
    incomplete = new_sub()
    assert incomplete.transition(S.ACTIVE, NOW).status is S.ACTIVE
    expired = incomplete.transition(S.INCOMPLETE_EXPIRED, NOW)
    assert expired.ended_at == NOW
    with pytest.raises(IllegalTransition):
        expired.transition(S.ACTIVE, NOW)  # incomplete_expired is terminal
    canceled = with_status(incomplete, S.ACTIVE).transition(S.CANCELED, NOW)
    for target in set(Status) - {S.CANCELED}:
        with pytest.raises(IllegalTransition):
            canceled.transition(target, NOW)  # canceled is terminal
    assert TRANSITIONS[S.CANCELED] == frozenset() and TRANSITIONS[S.INCOMPLETE_EXPIRED] == frozenset()
    assert {S.CANCELED, S.INCOMPLETE_EXPIRED} == TERMINAL
    # paused is only reachable from trialing (pause_collection keeps a subscription active)
    assert {a for a, targets in TRANSITIONS.items() if S.PAUSED in targets} == {S.TRIALING}


# ------------------------------------------------------------------ due dates
def test_due_at_per_status() -> None:
    incomplete = new_sub()
    trialing = new_sub(trial_days=14)
    expected = {
        S.INCOMPLETE: incomplete.incomplete_expires_at,
        S.ACTIVE: incomplete.current_period_end,
        S.PAST_DUE: incomplete.current_period_end,
        S.UNPAID: incomplete.current_period_end,
        S.CANCELED: None,
        S.INCOMPLETE_EXPIRED: None,
        S.PAUSED: None,
    }
    for status, due in expected.items():
        assert with_status(incomplete, status).due_at == due, status
    # three days before the trial end the trial_will_end notice is due, then the trial end itself
    assert trialing.due_at == trialing.trial_will_end_at == NOW + timedelta(days=11)
    notified = trialing.model_copy(update={"trial_will_end_notified": True})
    assert notified.due_at == trialing.trial_end == NOW + timedelta(days=14)
    assert due_action(trialing, NOW + timedelta(days=12)) == Due(DueAction.TRIAL_WILL_END)


def test_nothing_is_due_before_the_due_date() -> None:
    for sub in (new_sub(), new_sub(trial_days=3), with_status(new_sub(), S.ACTIVE)):
        assert sub.due_at is not None
        assert due_action(sub, sub.due_at - timedelta(seconds=1)) == Due(DueAction.NOTHING)


@pytest.mark.parametrize("status", [S.CANCELED, S.INCOMPLETE_EXPIRED, S.PAUSED])
def test_nothing_is_ever_due_for_finished_or_paused_subscriptions(status: Status) -> None:
    sub = with_status(new_sub(), status)
    assert due_action(sub, NOW + timedelta(days=10_000)).action is DueAction.NOTHING


def test_incomplete_expires_after_23_hours() -> None:
    sub = new_sub()
    assert due_action(sub, NOW + timedelta(hours=23) - timedelta(seconds=1)).action is DueAction.NOTHING
    due = due_action(sub, NOW + timedelta(hours=23))
    assert due.action is DueAction.EXPIRE
    assert due.period is None


def test_end_trial_invoices_the_first_period_from_the_anchor() -> None:
    sub = new_sub(trial_days=14)
    trial_end = NOW + timedelta(days=14)
    due = due_action(sub, trial_end + timedelta(hours=5))
    assert due.action is DueAction.END_TRIAL
    assert due.period == Period(trial_end, boundary(trial_end, Interval.MONTH, 1, 1))


def test_end_trial_period_follows_the_interval() -> None:
    sub = new_sub(trial_days=10, price=make_price(Interval.WEEK, 2))
    trial_end = NOW + timedelta(days=10)
    assert due_action(sub, trial_end).period == Period(trial_end, trial_end + timedelta(weeks=2))


@pytest.mark.parametrize("status", [S.ACTIVE, S.PAST_DUE, S.UNPAID])
def test_renew_invoices_the_next_period(status: Status) -> None:
    sub = with_status(new_sub(), status)
    due = due_action(sub, sub.current_period_end)
    assert due.action is DueAction.RENEW
    assert due.period == Period(datetime(2025, 2, 28, 10, tzinfo=UTC), datetime(2025, 3, 31, 10, tzinfo=UTC))
    assert due.period.start == sub.current_period_end


def test_renew_walks_jan_31_to_feb_28_mar_31_apr_30() -> None:
    sub = with_status(new_sub(), S.ACTIVE)
    ends = []
    for _ in range(3):
        due = due_action(sub, sub.current_period_end)
        assert due.action is DueAction.RENEW and due.period is not None
        sub = sub.with_period(due.period)
        ends.append(sub.current_period_end.date().isoformat())
    assert ends == ["2025-03-31", "2025-04-30", "2025-05-31"]


@pytest.mark.parametrize("status", [S.ACTIVE, S.PAST_DUE, S.UNPAID])
def test_cancel_at_period_end_cancels_instead_of_renewing(status: Status) -> None:
    sub = with_status(new_sub(), status).model_copy(update={"cancel_at_period_end": True})
    assert due_action(sub, sub.current_period_end - timedelta(seconds=1)) == Due(DueAction.NOTHING)
    assert due_action(sub, sub.current_period_end + timedelta(days=1)) == Due(DueAction.CANCEL)


def test_a_trial_canceled_at_period_end_is_not_invoiced() -> None:
    sub = new_sub(trial_days=14).model_copy(update={"cancel_at_period_end": True})
    assert due_action(sub, NOW + timedelta(days=15)) == Due(DueAction.CANCEL)


@given(st.sampled_from(list(Status)), st.integers(min_value=-(10**7), max_value=10**8), st.booleans())
def test_due_action_is_pure_and_consistent_with_due_at(status: Status, offset_s: int, cancel: bool) -> None:
    sub = with_status(new_sub(trial_days=14 if status is S.TRIALING else None), status)
    sub = sub.model_copy(update={"cancel_at_period_end": cancel})
    now = NOW + timedelta(seconds=offset_s)
    due = due_action(sub, now)
    assert due == due_action(sub, now)  # redeliveries decide the same
    if sub.due_at is None or sub.due_at > now:
        assert due.action is DueAction.NOTHING
    if due.action in (DueAction.RENEW, DueAction.END_TRIAL):
        assert due.period is not None and due.period.start >= sub.current_period_start
    if due.action is DueAction.RENEW:
        assert due.period is not None and due.period.start == sub.current_period_end


def test_with_period_and_next_period() -> None:
    sub = with_status(new_sub(), S.ACTIVE)
    nxt = sub.next_period()
    moved = sub.with_period(nxt)
    assert moved.period == nxt
    assert sub.period != nxt  # the original is untouched
    assert moved.next_period().start == nxt.end
