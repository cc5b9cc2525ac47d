"""Dunning policy: retry schedules, decline classes, one dunning step, the overdue ladder, figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kassa.domain.dunning import (
    DECLINE_TABLE,
    EMAIL_TEMPLATES,
    DeclineClass,
    DunningAction,
    DunningOutcome,
    DunningResult,
    FinalAction,
    InvoiceDunningState,
    OverdueLadder,
    OverdueState,
    RetrySchedule,
    RetryWindow,
    classify,
    days_overdue,
    default_ladder,
    dunning_figures,
    dunning_step,
    evaluate_overdue,
    next_retry_at,
    overdue_state,
    overdue_transition,
    window_offsets,
)
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceStatus, PaymentError
from kassa.domain.money import Money

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)  # the first failed attempt
H = timedelta(hours=1)
D = timedelta(days=1)
HARD, SOFT, ACTION = DeclineClass.HARD, DeclineClass.SOFT, DeclineClass.ACTION_REQUIRED


# ---------------------------------------------------------------------------- decline table
@pytest.mark.parametrize(
    ("code", "decline_code", "expected"),
    [
        # hard: never retried, ask for a new card
        ("card_declined", "stolen_card", HARD),
        ("card_declined", "lost_card", HARD),
        ("card_declined", "pickup_card", HARD),
        ("card_declined", "fraudulent", HARD),
        ("card_declined", "invalid_account", HARD),
        ("card_declined", "do_not_honor", HARD),
        ("card_declined", "restricted_card", HARD),
        ("card_declined", "card_not_supported", HARD),
        ("card_declined", "expired_card", HARD),
        ("card_declined", "incorrect_number", HARD),
        ("card_declined", "account_closed", HARD),
        ("card_declined", "revocation_of_all_authorizations", HARD),
        ("card_declined", "do_not_try_again", HARD),
        ("expired_card", None, HARD),  # Stripe's error code alone
        ("incorrect_number", None, HARD),
        ("invalid_number", None, HARD),
        ("no_payment_method", None, HARD),  # kassa's own code
        # soft: retried on the schedule
        ("card_declined", "insufficient_funds", SOFT),
        ("card_declined", "processing_error", SOFT),
        ("card_declined", "try_again_later", SOFT),
        ("card_declined", "generic_decline", SOFT),
        ("card_declined", "card_velocity_exceeded", SOFT),
        ("card_declined", "issuer_not_available", SOFT),
        ("card_declined", "reenter_transaction", SOFT),
        ("card_declined", "approve_with_id", SOFT),
        ("processing_error", None, SOFT),
        ("card_declined", None, SOFT),  # localstripe's only answer
        # action required: an authentication link, no blind retry
        ("card_declined", "authentication_required", ACTION),
        ("authentication_required", None, ACTION),
        ("payment_intent_authentication_failure", None, ACTION),
        # unknown → soft; the decline code wins over the code; case and spaces do not matter
        ("card_declined", "something_new_from_an_issuer", SOFT),
        ("weird_error", None, SOFT),
        (None, None, SOFT),
        ("expired_card", "insufficient_funds", SOFT),
        ("card_declined", " Stolen_Card ", HARD),
        ("expired_card", "unknown_decline", HARD),  # an unknown decline code falls back to the code
    ],
)
def test_decline_classification(code: str | None, decline_code: str | None, expected: DeclineClass) -> None:
    assert classify(code, decline_code) is expected


def test_the_table_has_every_code_once_and_in_lower_case() -> None:
    assert all(code == code.lower().strip() for code in DECLINE_TABLE)
    assert {DECLINE_TABLE[c] for c in DECLINE_TABLE} == {HARD, SOFT, ACTION}


def test_merchant_overrides_win_over_the_table() -> None:
    overrides = {"do_not_honor": SOFT, "insufficient_funds": HARD}
    assert classify("card_declined", "do_not_honor", overrides) is SOFT
    assert classify("card_declined", "insufficient_funds", overrides) is HARD
    assert classify("card_declined", "stolen_card", overrides) is HARD


# ---------------------------------------------------------------------------- retry schedule
def test_default_schedule_is_eight_tries_within_two_weeks_every_42_hours() -> None:
    schedule = RetrySchedule()
    assert schedule.window is RetryWindow.TWO_WEEKS and schedule.tries == 8
    assert schedule.offsets == tuple(timedelta(hours=42 * i) for i in range(1, 9))
    assert schedule.last_offset == timedelta(days=14)
    # stored explicitly, so a later change of the default does not change a saved schedule
    assert schedule.model_dump(mode="json")["window"] == "2_weeks"


@pytest.mark.parametrize(
    ("window", "tries", "first", "last"),
    [
        (RetryWindow.ONE_WEEK, 8, 21 * H, 7 * D),
        (RetryWindow.THREE_WEEKS, 8, 63 * H, 21 * D),
        (RetryWindow.ONE_MONTH, 4, 180 * H, 30 * D),
        (RetryWindow.TWO_MONTHS, 1, 60 * D, 60 * D),
        (RetryWindow.TWO_WEEKS, 5, 67 * H, 14 * D),  # 67.2 h rounds to 67
        (RetryWindow.TWO_WEEKS, 3, 112 * H, 14 * D),
    ],
)
def test_windows_spread_evenly_to_the_hour(window: RetryWindow, tries: int, first: timedelta, last: timedelta) -> None:
    offsets = RetrySchedule.smart(window, tries).offsets
    assert len(offsets) == tries
    assert offsets[0] == first and offsets[-1] == last


@given(st.sampled_from(list(RetryWindow)), st.integers(1, 8))
def test_window_offsets_are_whole_hours_increasing_and_end_at_the_window(window: RetryWindow, tries: int) -> None:
    offsets = window_offsets(window, tries)
    assert all(o % H == timedelta(0) for o in offsets)
    assert all(a < b for a, b in zip(offsets, offsets[1:], strict=False))
    assert offsets[0] > timedelta(0)
    assert offsets[-1] == RetrySchedule.smart(window, 8).offsets[-1]


def test_explicit_day_offsets_kill_bill_style() -> None:
    schedule = RetrySchedule.days([1, 3, 5, 7])
    assert schedule.offsets == (1 * D, 3 * D, 5 * D, 7 * D)
    assert schedule.window is None and schedule.tries is None
    # Kill Bill's intervals (days after the previous attempt) become offsets
    assert RetrySchedule.from_intervals([1, 8, 4, 7]).offset_days == (1, 9, 13, 20)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"offset_days": ()}, "offset_days"),
        ({"offset_days": (0, 2)}, "offset_days[0]"),
        ({"offset_days": (-1,)}, "offset_days[0]"),
        ({"offset_days": (1, 3, 3)}, "offset_days[2]"),
        ({"offset_days": (5, 2)}, "offset_days[1]"),
        ({"offset_days": (1, 61)}, "offset_days[1]"),
        ({"offset_days": tuple(range(1, 10))}, "offset_days"),
        ({"offset_days": (1, 2), "window": "1_week"}, "offset_days"),
        ({"offset_days": (1, 2), "tries": 2}, "offset_days"),
        ({"tries": 0}, "tries"),
        ({"tries": 9}, "tries"),
        ({"window": "1_month", "tries": 12}, "tries"),
        ({"decline_overrides": {"Do Not Honor": "soft"}}, "decline_overrides.Do Not Honor"),
    ],
)
def test_schedule_validation_names_the_field(kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        RetrySchedule.model_validate(kwargs)
    assert error.value.param == param


def test_schedule_type_errors_are_pydantic_errors() -> None:
    with pytest.raises(ValidationError):
        RetrySchedule.model_validate({"window": "5_weeks"})
    with pytest.raises(InvalidInput) as error:
        RetrySchedule.from_intervals([1, 0])
    assert error.value.param == "interval_days[1]"


def test_next_retry_at_sequence_default() -> None:
    schedule = RetrySchedule()
    times = [next_retry_at(schedule, T0, n) for n in range(1, 10)]
    assert times[:8] == [T0 + timedelta(hours=42 * i) for i in range(1, 9)]
    assert times[8] is None  # 1 first attempt + 8 retries: used up
    assert times[7] == T0 + 14 * D


def test_next_retry_at_custom_offsets_anchor_on_the_first_failure() -> None:
    schedule = RetrySchedule.days([1, 3, 5, 7])
    assert [next_retry_at(schedule, T0, n) for n in range(1, 6)] == [
        T0 + 1 * D,
        T0 + 3 * D,
        T0 + 5 * D,
        T0 + 7 * D,
        None,
    ]


def test_next_retry_at_rejects_zero_attempts_and_naive_times() -> None:
    with pytest.raises(InvalidInput) as error:
        next_retry_at(RetrySchedule(), T0, 0)
    assert error.value.param == "attempts_made"
    with pytest.raises(InvalidInput):
        next_retry_at(RetrySchedule(), datetime(2025, 3, 1), 1)  # noqa: DTZ001


# ---------------------------------------------------------------------------- one dunning step
def state(
    *,
    status: InvoiceStatus = InvoiceStatus.OPEN,
    attempts: int = 1,
    outcome: str | None = "declined",
    code: str = "card_declined",
    decline_code: str | None = "insufficient_funds",
    has_payment_method: bool = True,
    first_failure_at: datetime | None = T0,
) -> InvoiceDunningState:
    return InvoiceDunningState(
        invoice_id="in_1",
        status=status,
        attempt_count=attempts,
        attempt_outcome=outcome,
        last_error=PaymentError(code=code, decline_code=decline_code, attempt=attempts),
        first_failure_at=first_failure_at,
        has_payment_method=has_payment_method,
    )


def test_soft_decline_retries_on_schedule_and_emails_once_on_the_first_failure() -> None:
    schedule = RetrySchedule()
    first = dunning_step(state(attempts=1), schedule, T0)
    assert first.action is DunningAction.RETRY
    assert first.at == T0 + 42 * H and first.decline_class is SOFT and first.reason == "insufficient_funds"
    assert first.email == "payment_failed" and first.key == "in_1:retry:1"
    assert not first.due(T0) and first.due(T0 + 42 * H)
    third = dunning_step(state(attempts=3), schedule, T0 + 84 * H)
    assert third.action is DunningAction.RETRY and third.at == T0 + 126 * H and third.email is None


def test_the_same_state_gives_the_same_decision() -> None:
    schedule = RetrySchedule()
    assert dunning_step(state(), schedule, T0) == dunning_step(state(), schedule, T0 + 5 * H)


def test_a_late_retry_is_due_at_once() -> None:
    decision = dunning_step(state(attempts=2), RetrySchedule(), T0 + 10 * D)
    assert decision.at == T0 + 84 * H and decision.due(T0 + 10 * D)


def test_soft_decline_after_the_last_retry_is_exhausted_with_the_final_action() -> None:
    schedule = RetrySchedule.days([1, 3], on_exhausted=FinalAction.CANCEL)
    decision = dunning_step(state(attempts=3), schedule, T0 + 3 * D)
    assert decision.action is DunningAction.EXHAUSTED
    assert decision.final_action is FinalAction.CANCEL and decision.key == "in_1:exhausted"
    assert dunning_step(state(attempts=9), RetrySchedule(), T0 + 14 * D).final_action is FinalAction.LEAVE_PAST_DUE


@pytest.mark.parametrize("decline_code", ["stolen_card", "expired_card", "do_not_honor", "fraudulent"])
def test_hard_decline_never_retries_and_asks_for_a_card(decline_code: str) -> None:
    decision = dunning_step(state(decline_code=decline_code), RetrySchedule(), T0)
    assert decision.action is DunningAction.ASK_FOR_CARD
    assert decision.at is None and decision.decline_class is HARD
    assert decision.email == "payment_failed" and decision.until == T0 + 14 * D
    assert decision.key == "in_1:card:1"


def test_no_payment_method_asks_for_a_card() -> None:
    by_flag = dunning_step(state(has_payment_method=False), RetrySchedule(), T0)
    by_code = dunning_step(state(code="no_payment_method", decline_code=None), RetrySchedule(), T0)
    for decision in (by_flag, by_code):
        assert decision.action is DunningAction.ASK_FOR_CARD and decision.reason == "no_payment_method"


def test_hard_decline_is_exhausted_when_the_window_has_passed() -> None:
    schedule = RetrySchedule.days([2, 4], on_exhausted=FinalAction.MARK_UNPAID)
    assert dunning_step(state(decline_code="lost_card"), schedule, T0 + 4 * D - H).action is DunningAction.ASK_FOR_CARD
    late = dunning_step(state(decline_code="lost_card"), schedule, T0 + 4 * D)
    assert late.action is DunningAction.EXHAUSTED and late.final_action is FinalAction.MARK_UNPAID


def test_authentication_required_sends_a_link_not_a_retry() -> None:
    by_code = dunning_step(state(decline_code="authentication_required"), RetrySchedule(), T0)
    by_outcome = dunning_step(state(outcome="requires_action", decline_code=None), RetrySchedule(), T0)
    for decision in (by_code, by_outcome):
        assert decision.action is DunningAction.SEND_AUTH_LINK
        assert decision.at is None and decision.email == "authentication_required"
        assert decision.decline_class is ACTION and decision.key == "in_1:auth:1"
    assert (
        dunning_step(state(outcome="requires_action"), RetrySchedule(), T0 + 15 * D).action is DunningAction.EXHAUSTED
    )


def test_a_new_card_after_a_hard_decline_continues_the_schedule() -> None:
    # attempt 2 (the customer's new card) declined softly: the next retry is offset #2
    decision = dunning_step(state(attempts=2, decline_code="insufficient_funds"), RetrySchedule.days([1, 3, 5]), T0)
    assert decision.action is DunningAction.RETRY and decision.at == T0 + 3 * D


def test_merchant_overrides_change_the_step() -> None:
    schedule = RetrySchedule(decline_overrides={"do_not_honor": SOFT})
    assert dunning_step(state(decline_code="do_not_honor"), schedule, T0).action is DunningAction.RETRY


@pytest.mark.parametrize(
    ("status", "reason"),
    [(InvoiceStatus.PAID, "paid"), (InvoiceStatus.VOID, "void"), (InvoiceStatus.UNCOLLECTIBLE, "uncollectible")],
)
def test_paid_or_closed_invoices_stop(status: InvoiceStatus, reason: str) -> None:
    decision = dunning_step(state(status=status, decline_code="stolen_card"), RetrySchedule(), T0)
    assert decision.action is DunningAction.STOP and decision.reason == reason and decision.email is None


@pytest.mark.parametrize(
    ("attempts", "outcome", "reason"),
    [
        (0, None, "not_attempted"),
        (2, None, "in_flight"),
        (2, "processing", "processing"),
        (2, "succeeded", "succeeded"),
    ],
)
def test_nothing_to_decide_while_an_attempt_is_open(attempts: int, outcome: str | None, reason: str) -> None:
    decision = dunning_step(state(attempts=attempts, outcome=outcome), RetrySchedule(), T0)
    assert decision.action is DunningAction.WAIT and decision.reason == reason


def test_a_failure_without_its_time_is_an_error() -> None:
    with pytest.raises(InvalidInput) as error:
        dunning_step(state(first_failure_at=None), RetrySchedule(), T0)
    assert error.value.param == "first_failure_at"


def make_invoice(status: InvoiceStatus = InvoiceStatus.OPEN, amount: int = 1500, currency: str = "EUR") -> Invoice:
    return Invoice(
        id="in_9",
        customer="cus_1",
        status=status,
        currency=currency,
        lines=[],
        subtotal=amount,
        tax=0,
        total=amount,
        amount_due=amount,
        amount_paid=amount if status is InvoiceStatus.PAID else 0,
        attempt_count=1,
        attempt_outcome="declined",
        billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
        period_start=T0,
        period_end=T0 + 30 * D,
        created=T0,
        last_payment_error=PaymentError(code="card_declined", decline_code="insufficient_funds", attempt=1),
    )


def test_state_from_an_invoice() -> None:
    built = InvoiceDunningState.of(make_invoice(), first_failure_at=T0, has_payment_method=True)
    assert built.invoice_id == "in_9" and built.attempt_count == 1 and built.last_error is not None
    assert dunning_step(built, RetrySchedule(), T0).action is DunningAction.RETRY


# ---------------------------------------------------------------------------- overdue ladder
@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (2, None), (3, "warning"), (9, "warning"), (10, "suspended"), (20, "suspended"), (21, "canceled")],
)
def test_default_ladder_by_day(days: int, expected: str | None) -> None:
    found = overdue_state(default_ladder(), T0, T0 + days * D)
    assert (found.name if found else None) == expected


def test_day_three_starts_after_72_hours() -> None:
    assert overdue_state(default_ladder(), T0, T0 + 3 * D - timedelta(seconds=1)) is None
    assert days_overdue(T0, T0 + 3 * D) == 3
    assert overdue_state(default_ladder(), None, T0 + 30 * D) is None  # nothing unpaid
    assert overdue_state(default_ladder(), T0, T0 - D) is None  # clock skew


def test_default_ladder_actions() -> None:
    warning, suspended, canceled = default_ladder().states
    assert (warning.after_days, warning.email, warning.block_changes, warning.disable_entitlements) == (
        3,
        "payment_reminder",
        False,
        False,
    )
    assert (suspended.after_days, suspended.block_changes, suspended.disable_entitlements) == (10, True, True)
    assert (canceled.after_days, canceled.final_action) == (21, FinalAction.CANCEL)


def test_conditions_on_count_and_balance() -> None:
    ladder = OverdueLadder(
        states=(
            OverdueState(name="warning", after_days=3, email="payment_reminder"),
            OverdueState(name="blocked", after_days=5, min_unpaid_invoices=2, block_changes=True),
            OverdueState(name="big", after_days=7, min_unpaid_amount={"EUR": 10_000, "USD": 12_000}),
        )
    )

    def name(days: int, invoices: int = 1, amounts: dict[str, int] | None = None) -> str | None:
        found = overdue_state(ladder, T0, T0 + days * D, unpaid_invoices=invoices, unpaid_amounts=amounts)
        return found.name if found else None

    assert name(6) == "warning"  # one invoice: not blocked
    assert name(6, invoices=2) == "blocked"
    assert name(8, invoices=2, amounts={"EUR": 9_999}) == "blocked"
    assert name(8, amounts={"EUR": 10_000}) == "big"
    assert name(8, amounts={"USD": 12_000, "EUR": 1}) == "big"
    assert name(8, amounts={"GBP": 1_000_000}) == "warning"
    assert name(8, invoices=0) is None


@pytest.mark.parametrize(
    ("states", "param"),
    [
        ([{"name": "a", "after_days": 3}, {"name": "b", "after_days": 3}], "states[1].after_days"),
        ([{"name": "a", "after_days": 5}, {"name": "b", "after_days": 2}], "states[1].after_days"),
        ([{"name": "a", "after_days": -1}], "states[0].after_days"),
        ([{"name": "a", "after_days": 400}], "states[0].after_days"),
        ([{"name": "a", "after_days": 1}, {"name": "a", "after_days": 2}], "states[1].name"),
        ([{"name": "Warning!", "after_days": 1}], "states[0].name"),
        ([{"name": "a", "after_days": 1, "email": "nope"}], "states[0].email"),
        (
            [{"name": "a", "after_days": 1, "final_action": "cancel"}, {"name": "b", "after_days": 2}],
            "states[0].final_action",
        ),
        (
            [
                {"name": "a", "after_days": 1, "final_action": "cancel"},
                {"name": "b", "after_days": 2, "final_action": "mark_unpaid"},
            ],
            "states[0].final_action",
        ),
        ([{"name": "a", "after_days": 1, "min_unpaid_invoices": 0}], "states[0].min_unpaid_invoices"),
        ([{"name": "a", "after_days": 1, "min_unpaid_amount": {"EUR": 0}}], "states[0].min_unpaid_amount.EUR"),
        ([{"name": "a", "after_days": 1, "min_unpaid_amount": {"eur": 5}}], "states[0].min_unpaid_amount.eur"),
        ([{"name": "a", "after_days": 1, "min_unpaid_amount": {"XXX": 5}}], "states[0].min_unpaid_amount.XXX"),
        ([{"name": "a", "after_days": 1, "min_unpaid_amount": {}}], "states[0].min_unpaid_amount"),
    ],
)
def test_ladder_validation_names_the_field(states: list[dict[str, object]], param: str) -> None:
    with pytest.raises(InvalidInput) as error:
        OverdueLadder.model_validate({"states": states})
    assert error.value.param == param


def test_ladder_accepts_the_merchants_own_templates_and_an_empty_ladder() -> None:
    data = {"states": [{"name": "final_notice", "after_days": 5, "email": "final_notice"}]}
    with pytest.raises(InvalidInput):
        OverdueLadder.model_validate(data)
    assert OverdueLadder.validated(data, templates=["final_notice"]).states[0].email == "final_notice"
    assert overdue_state(OverdueLadder(), T0, T0 + 100 * D) is None
    assert {s.email for s in default_ladder().states} <= EMAIL_TEMPLATES
    assert OverdueLadder.model_validate(default_ladder().model_dump(mode="json")) == default_ladder()


def run(previous: str | None, days: list[int], paid_on: int | None = None) -> list[tuple[int, object]]:
    """Evaluate the default ladder on each day, storing the state like the service would."""
    fired: list[tuple[int, object]] = []
    for day in days:
        earliest = None if paid_on is not None and day >= paid_on else T0
        transition = evaluate_overdue(default_ladder(), previous, earliest, T0 + day * D + H)
        if transition.email:
            fired.append((day, transition.email))
        if transition.final_action:
            fired.append((day, transition.final_action))
        if transition.entitlements_changed:
            fired.append((day, "suspend" if transition.disable_entitlements else "restore"))
        previous = transition.current
    return fired


def test_ladder_evaluation_day_by_day_fires_each_action_once() -> None:
    assert run(None, [2, 3, 10, 21]) == [
        (3, "payment_reminder"),
        (10, "account_suspended"),
        (10, "suspend"),
        (21, "subscription_canceled"),
        (21, FinalAction.CANCEL),
    ]


def test_evaluating_twice_does_not_refire() -> None:
    # each day evaluated twice (a redelivered message): the same actions, once
    assert run(None, [2, 2, 3, 3, 10, 10, 21, 21]) == run(None, [2, 3, 10, 21])
    assert run(None, list(range(0, 30))) == run(None, [2, 3, 10, 21])


def test_transition_is_a_pure_function_of_previous_and_new() -> None:
    same = overdue_transition(default_ladder(), "suspended", "suspended")
    assert not same.changed and same.email is None and same.final_action is None and not same.entitlements_changed
    assert same.block_changes and same.disable_entitlements  # levels stay as they are
    up = overdue_transition(default_ladder(), "warning", "suspended")
    assert up.email == "account_suspended" and up.entitlements_changed and up.key == "overdue:warning>suspended"
    assert overdue_transition(default_ladder(), "warning", "suspended") == up


def test_a_skipped_state_sends_only_the_new_email() -> None:
    jump = overdue_transition(default_ladder(), None, "suspended")
    assert jump.email == "account_suspended" and jump.disable_entitlements and jump.entitlements_changed


def test_paying_restores_access_without_email() -> None:
    assert run(None, [3, 10, 12], paid_on=12) == [
        (3, "payment_reminder"),
        (10, "account_suspended"),
        (10, "suspend"),
        (12, "restore"),
    ]
    cleared = overdue_transition(default_ladder(), "suspended", None)
    assert cleared.email is None and not cleared.block_changes and not cleared.disable_entitlements


def test_a_canceled_state_is_terminal() -> None:
    stay = overdue_transition(default_ladder(), "canceled", None)
    assert stay.current == "canceled" and stay.email is None and stay.final_action is None
    assert not stay.entitlements_changed and stay.disable_entitlements


def test_a_state_removed_from_the_ladder_counts_as_none() -> None:
    transition = overdue_transition(default_ladder(), "old_state", "warning")
    assert transition.email == "payment_reminder" and transition.entitlements_changed
    with pytest.raises(InvalidInput):
        overdue_transition(default_ladder(), None, "not_a_state")


@given(st.lists(st.integers(0, 40), max_size=12))
def test_any_evaluation_order_sends_each_email_at_most_once(days: list[int]) -> None:
    emails = [item for _, item in run(None, sorted(days)) if item in EMAIL_TEMPLATES]
    assert len(emails) == len(set(emails))


# ---------------------------------------------------------------------------- figures
def outcome(
    invoice: str, amount: int, currency: str, code: str, result: DunningResult, attempts: int = 2
) -> DunningOutcome:
    return DunningOutcome(invoice, Money(amount, currency), code, result, attempts)


def test_figures() -> None:
    figures = dunning_figures(
        [
            outcome("in_1", 1500, "EUR", "insufficient_funds", DunningResult.RECOVERED, 2),
            outcome("in_2", 2500, "EUR", "insufficient_funds", DunningResult.RECOVERED, 4),
            outcome("in_3", 1200, "JPY", "insufficient_funds", DunningResult.LOST),
            outcome("in_4", 1000, "USD", "stolen_card", DunningResult.LOST),
            outcome("in_5", 4500, "KWD", "authentication_required", DunningResult.RECOVERED, 2),
            outcome("in_6", 900, "EUR", "generic_decline", DunningResult.PENDING),
        ]
    )
    assert (figures.invoices, figures.recovered, figures.lost, figures.pending) == (6, 3, 2, 1)
    assert figures.amount_recovered == {"EUR": 4000, "KWD": 4500}
    assert figures.amount_lost == {"JPY": 1200, "USD": 1000}
    assert figures.amount_pending == {"EUR": 900}
    assert figures.overall.rate == Fraction(3, 5)  # pending invoices are not decided yet
    assert figures.by_decline_code["insufficient_funds"].rate == Fraction(2, 3)
    assert figures.by_decline_code["stolen_card"].rate == 0
    assert figures.by_decline_code["generic_decline"].rate is None
    assert figures.by_decline_class[SOFT].recovered == 2 and figures.by_decline_class[HARD].lost == 1
    assert figures.by_decline_class[ACTION].rate == 1
    assert figures.attempts_to_recover == {2: 2, 4: 1}


def test_figures_of_nothing_and_duplicates() -> None:
    empty = dunning_figures([])
    assert empty.invoices == 0 and empty.overall.rate is None and empty.amount_recovered == {}
    with pytest.raises(InvalidInput):
        dunning_figures([outcome("in_1", 1, "EUR", "x", DunningResult.LOST)] * 2)


def test_outcome_of_an_invoice() -> None:
    paid = DunningOutcome.of_invoice(make_invoice(InvoiceStatus.PAID), "insufficient_funds")
    assert paid.result is DunningResult.RECOVERED and paid.amount == Money(1500, "EUR")
    assert DunningOutcome.of_invoice(make_invoice(InvoiceStatus.VOID), "x").result is DunningResult.LOST
    assert DunningOutcome.of_invoice(make_invoice(), "x").result is DunningResult.PENDING
