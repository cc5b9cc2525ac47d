"""Lifecycle: the pause/resume and trial-end rules, the issue's scenarios, and a Hypothesis state
machine that drives the real services over the in-memory store (fakes.make_world).

The machine subscribes a customer (1–2 items, optionally with a trial, with or without a card) in EUR,
JPY or KWD and then applies random steps: item changes (add, quantity, price, delete, an interval
switch) with each proration behaviour, one-off items (charges and credits), pausing collection with
each behaviour (optionally until a date) and resuming it, resuming a paused subscription, cancelling
at the period end (and undoing it) or now with a prorated credit, a declining card, and clock advances
that run every renewal, trial end and cancellation that falls due — each ``process_due`` delivered
twice. After every step it checks:

- every amount is an integer, no amount due is negative, subtotal/total add up from the lines;
- invoice numbers are unique and gapless (drafts and voided drafts take none);
- customer balance conservation: each invoice starts from the balance the previous one left, credit
  granted = credit used + credit left, and the balance is never a debt;
- every period is invoiced exactly once: the current period has its invoice, and no item is charged a
  full period twice for the same time;
- a duplicated ``process_due`` has exactly one effect (the second writes and publishes nothing);
- credits never exceed charges for the same time (per item and billing period, within rounding);
- the customer has access exactly while the subscription is trialing, active or past due and not
  past a cancellation at the period end, one entitlement per item.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from fakes import World, make_world
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kassa.domain.cancellation import CancellationDetails
from kassa.domain.catalog import Price, Recurring
from kassa.domain.customer import Address
from kassa.domain.errors import IllegalTransition
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus, from_lines
from kassa.domain.items import ItemChange
from kassa.domain.pausing import (
    PauseBehavior,
    PauseCollection,
    ResumeAnchor,
    awaiting_resumption_payment,
    collection_paused,
    invoice_while_paused,
    pause_collection_after,
    pause_subscription,
    resume_subscription,
)
from kassa.domain.periods import Interval, Period
from kassa.domain.pricing import BillingScheme, PriceTerms, Tier, TiersMode
from kassa.domain.proration import ProrationBehavior
from kassa.domain.subscription import CHANGEABLE, TERMINAL, Status, Subscription
from kassa.domain.trials import MissingPaymentMethod, TrialEndAction, trial_end_outcome, trial_will_end_at
from kassa.services.cancellation import cancel, entitlements_of, undo_cancel
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.coupons import create_coupon
from kassa.services.invoicing import add_invoice_item
from kassa.services.pausing import pause_collection, resume, resume_collection
from kassa.services.plan_changes import change_plan
from kassa.services.renewals import process_due

START = datetime(2025, 4, 1, tzinfo=UTC)
PB = ProrationBehavior
OREGON = Address(country="US", state="OR")  # the seller (NL) is not registered there: no tax


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_sub(status: Status = Status.ACTIVE, unit_amount: int = 1500, **changes: object) -> Subscription:
    fields: dict[str, object] = dict(
        id="sub_1",
        customer="cus_1",
        price="price_1",  # the one-price shape (read as one item)
        quantity=3,
        currency="EUR",
        unit_amount=unit_amount,
        interval=Interval.MONTH,
        interval_count=1,
        status=status,
        billing_cycle_anchor=utc(2025, 1, 10),
        current_period_start=START,
        current_period_end=utc(2025, 5, 1),
        created=utc(2025, 1, 1),
    )
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def draft_invoice(*amounts: int) -> Invoice:
    lines = [
        InvoiceLine(
            description="x", amount=a, quantity=1, unit_amount=a, period_start=START, period_end=utc(2025, 5, 1)
        )
        for a in amounts
    ]
    return from_lines(
        "in_1", "cus_1", "sub_1", "EUR", lines, Period(START, utc(2025, 5, 1)), START, BillingReason.MANUAL
    )


# ====================================================================== pause collection (domain)
def test_collection_pause_window() -> None:
    until = PauseCollection(behavior=PauseBehavior.VOID, resumes_at=utc(2025, 6, 1))
    assert not collection_paused(None, START)
    assert collection_paused(PauseCollection(behavior=PauseBehavior.VOID), utc(2030, 1, 1))
    assert collection_paused(until, utc(2025, 5, 31, 23, 59, 59))
    assert not collection_paused(until, utc(2025, 6, 1))
    assert pause_collection_after(until, utc(2025, 5, 1)) == until
    assert pause_collection_after(until, utc(2025, 6, 1)) is None


def test_invoices_generated_while_collection_is_paused() -> None:
    draft = draft_invoice(4500)
    kept = invoice_while_paused(draft, PauseCollection(behavior=PauseBehavior.KEEP_AS_DRAFT), START)
    assert kept.invoice.status is InvoiceStatus.DRAFT and kept.invoice.keep_as_draft and not kept.collect
    assert not kept.invoice.gets_number_when_stored
    marked = invoice_while_paused(draft, PauseCollection(behavior=PauseBehavior.MARK_UNCOLLECTIBLE), START)
    assert not marked.collect and marked.then is InvoiceStatus.UNCOLLECTIBLE
    assert marked.invoice.gets_number_when_stored  # finalized (numbered) before it is written off
    voided = invoice_while_paused(draft, PauseCollection(behavior=PauseBehavior.VOID), START)
    assert voided.invoice.status is InvoiceStatus.VOID and not voided.invoice.gets_number_when_stored
    normal = invoice_while_paused(draft, None, START)
    assert normal.collect and normal.invoice == draft
    with pytest.raises(IllegalTransition):
        invoice_while_paused(voided.invoice, None, START)


# ====================================================================== full pause and resume (domain)
def test_only_a_trial_can_be_paused() -> None:
    trial = make_sub(Status.TRIALING, trial_start=START, trial_end=utc(2025, 5, 1))
    assert pause_subscription(trial, utc(2025, 5, 1)).status is Status.PAUSED
    with pytest.raises(IllegalTransition):
        pause_subscription(make_sub(), START)


def test_resume_resets_the_anchor_and_invoices_a_new_period_at_once() -> None:
    at = utc(2025, 6, 17, 9, 30)
    plan = resume_subscription(make_sub(Status.PAUSED), at)
    sub = plan.subscription
    assert sub.billing_cycle_anchor == at and sub.period == Period(at, utc(2025, 7, 17, 9, 30))
    assert [line.amount for line in plan.lines] == [4500] and plan.invoice_now and not plan.pending
    assert sub.status is Status.PAUSED  # until the resumption invoice is paid (Stripe)


def test_resuming_a_free_subscription_is_active_at_once() -> None:
    plan = resume_subscription(make_sub(Status.PAUSED, unit_amount=0), utc(2025, 6, 17))
    assert plan.lines == () and not plan.invoice_now and plan.subscription.status is Status.ACTIVE


def test_resume_with_the_anchor_unchanged_prorates_the_rest_of_the_period() -> None:
    paused = make_sub(Status.PAUSED)  # anchored on the 10th
    at = utc(2025, 6, 20)  # 20 of the 30 days from 10 Jun to 10 Jul remain
    plan = resume_subscription(paused, at, billing_cycle_anchor=ResumeAnchor.UNCHANGED)
    assert plan.subscription.period == Period(utc(2025, 6, 10), utc(2025, 7, 10))
    assert [line.amount for line in plan.lines] == [3000] and plan.pending and not plan.invoice_now
    assert plan.subscription.status is Status.ACTIVE
    now = resume_subscription(
        paused, at, billing_cycle_anchor=ResumeAnchor.UNCHANGED, proration_behavior=PB.ALWAYS_INVOICE
    )
    assert now.invoice_now and now.subscription.status is Status.PAUSED
    free = resume_subscription(paused, at, billing_cycle_anchor=ResumeAnchor.UNCHANGED, proration_behavior=PB.NONE)
    assert free.lines == () and free.subscription.status is Status.ACTIVE
    with pytest.raises(IllegalTransition):
        resume_subscription(make_sub(), at)


# ====================================================================== trial ends (domain)
@pytest.mark.parametrize(
    ("has_pm", "setting", "action", "status", "invoice"),
    [
        (True, MissingPaymentMethod.PAUSE, TrialEndAction.CHARGE, None, True),
        (False, MissingPaymentMethod.CANCEL, TrialEndAction.CANCEL, Status.CANCELED, False),
        (False, MissingPaymentMethod.CREATE_INVOICE, TrialEndAction.INVOICE_UNPAID, Status.PAST_DUE, True),
        (False, MissingPaymentMethod.PAUSE, TrialEndAction.PAUSE, Status.PAUSED, False),
    ],
)
def test_trial_end_behaviour(
    has_pm: bool, setting: MissingPaymentMethod, action: TrialEndAction, status: Status | None, invoice: bool
) -> None:
    trial = make_sub(Status.TRIALING, trial_start=START, trial_end=utc(2025, 4, 15))
    outcome = trial_end_outcome(trial, utc(2025, 4, 15), has_payment_method=has_pm, missing_payment_method=setting)
    assert (outcome.action, outcome.status, outcome.invoice) == (action, status, invoice)
    if status is not None:
        assert trial.transition(status, utc(2025, 4, 15)).status is status  # a legal transition


def test_trial_end_rules_and_notice() -> None:
    trial = make_sub(Status.TRIALING, trial_start=START, trial_end=utc(2025, 4, 15))
    with pytest.raises(IllegalTransition):
        trial_end_outcome(trial, utc(2025, 4, 14), has_payment_method=True)
    leaving = trial.model_copy(update={"cancel_at_period_end": True})
    assert trial_end_outcome(leaving, utc(2025, 4, 15), has_payment_method=True).action is TrialEndAction.CANCEL
    assert trial_will_end_at(trial) == utc(2025, 4, 12)
    short = make_sub(Status.TRIALING, trial_start=START, trial_end=utc(2025, 4, 3))
    assert trial_will_end_at(short) == START
    assert trial_will_end_at(make_sub()) is None


# ====================================================================== the scenarios, on the services
def plan(world: World, unit_amount: int, currency: str = "eur", **recurring: Any) -> Price:
    return world.catalog(unit_amount, currency, **recurring)[1]


def run_until(world: World, sub_id: str, when: datetime) -> None:
    """Move the clock to ``when``, doing everything that falls due for the subscription on the way."""
    while True:
        due = world.store.get_subscription(sub_id).due_at
        if due is None or due > when:
            break
        world.clock.set(max(due, world.clock.now()))
        process_due(world.billing, sub_id)
    world.clock.set(when)


def invoices_of(world: World, sub_id: str) -> list[Invoice]:
    return [i for i in world.store.invoices.values() if i.subscription == sub_id]


def totals(world: World, sub_id: str) -> list[int]:
    return [i.total for i in invoices_of(world, sub_id)]


def test_upgrade_with_always_invoice_charges_the_difference_at_once() -> None:
    world = make_world(START)  # April: 30 days
    sub = world.active_subscription(plan(world, 1000)).subscription
    world.clock.set(utc(2025, 4, 16))
    change_plan(world.billing, sub.id, price_id=plan(world, 2000).id, behavior=PB.ALWAYS_INVOICE)
    assert totals(world, sub.id) == [1000, 500]  # Stripe's example: −5 € + 10 €
    last = invoices_of(world, sub.id)[-1]
    assert last.status is InvoiceStatus.PAID and last.amount_due == 500


def test_downgrade_scheduled_to_the_period_end_applies_at_renewal() -> None:
    world = make_world(START)
    sub = world.active_subscription(plan(world, 2000)).subscription
    world.clock.set(utc(2025, 4, 16))
    change_plan(world.billing, sub.id, price_id=plan(world, 1000).id, schedule_downgrade=True)
    assert world.store.get_subscription(sub.id).scheduled_change is not None and totals(world, sub.id) == [2000]
    run_until(world, sub.id, utc(2025, 5, 1))
    assert totals(world, sub.id) == [2000, 1000] and world.store.get_subscription(sub.id).scheduled_change is None


def test_downgrade_now_leaves_a_credit_that_the_next_invoice_uses() -> None:
    world = make_world(START)
    result = world.active_subscription(plan(world, 3000))
    world.clock.set(utc(2025, 4, 16))
    change_plan(world.billing, result.subscription.id, price_id=plan(world, 1000).id, behavior=PB.ALWAYS_INVOICE)
    assert totals(world, result.subscription.id) == [3000, -1000]  # −15 € + 5 €: credit, not refund
    assert world.store.get_customer(result.customer.id).balance == -1000
    run_until(world, result.subscription.id, utc(2025, 5, 1))
    renewal = invoices_of(world, result.subscription.id)[-1]
    assert (renewal.total, renewal.amount_due, renewal.starting_balance, renewal.ending_balance) == (1000, 0, -1000, 0)
    assert world.store.get_customer(result.customer.id).balance == 0


def test_cancel_at_period_end_stops_the_next_renewal() -> None:
    world = make_world(START)
    sub = world.active_subscription(plan(world, 1500), quantity=2).subscription
    world.clock.set(utc(2025, 4, 20))
    cancel(world.billing, sub.id, at_period_end=True, details=CancellationDetails())
    run_until(world, sub.id, utc(2025, 7, 1))
    assert world.store.get_subscription(sub.id).status is Status.CANCELED and totals(world, sub.id) == [3000]


def test_trial_paused_then_resumed_bills_from_the_resume() -> None:
    world = make_world(START)
    world.gateway.setup_payment_method = None  # no card at checkout
    result = world.checkout(plan(world, 980, "jpy"), trial_days=14, missing_payment_method=MissingPaymentMethod.PAUSE)
    sub_id = result.subscription.id
    run_until(world, sub_id, utc(2025, 5, 1))
    assert world.store.get_subscription(sub_id).status is Status.PAUSED and totals(world, sub_id) == []
    world.clock.set(utc(2025, 5, 20, 12))
    intent = world.gateway.create_setup_intent(customer=result.customer.stripe_customer_id or "", metadata={})
    world.gateway.confirm_setup_intent(intent.id, "pm_card_visa")
    complete_checkout(world.billing, sub_id, intent.id)  # the card is attached
    resumed = resume(world.billing, sub_id)
    assert resumed.subscription.status is Status.ACTIVE and totals(world, sub_id) == [980]
    run_until(world, sub_id, utc(2025, 6, 20, 12))
    assert totals(world, sub_id) == [980, 980]
    assert world.store.get_subscription(sub_id).current_period_start == utc(2025, 6, 20, 12)


def test_100_percent_off_for_3_months_then_full_price() -> None:
    world = make_world(START)
    coupon = create_coupon(world.billing, percent_off=100, duration="repeating", duration_in_months=3)
    sub = world.active_subscription(plan(world, 12_500, "kwd"), coupon=coupon.id).subscription
    run_until(world, sub.id, utc(2025, 7, 1))
    assert totals(world, sub.id) == [0, 0, 0, 12_500]


def test_pause_collection_void_forgives_and_keep_as_draft_keeps_a_draft() -> None:
    world = make_world(START)
    result = world.active_subscription(plan(world, 1000))
    sub_id = result.subscription.id
    pause_collection(world.billing, sub_id, PauseBehavior.VOID, resumes_at=utc(2025, 5, 15))
    run_until(world, sub_id, utc(2025, 6, 1))
    assert [i.status for i in invoices_of(world, sub_id)] == [
        InvoiceStatus.PAID,
        InvoiceStatus.VOID,
        InvoiceStatus.PAID,
    ]
    pause_collection(world.billing, sub_id, PauseBehavior.KEEP_AS_DRAFT)
    run_until(world, sub_id, utc(2025, 7, 1))
    draft = invoices_of(world, sub_id)[-1]
    assert draft.status is InvoiceStatus.DRAFT and draft.number is None
    assert entitlements_of(world.billing, result.customer.id) != []  # access continues while collection is paused
    resume_collection(world.billing, sub_id)
    run_until(world, sub_id, utc(2025, 8, 1))
    assert invoices_of(world, sub_id)[-1].status is InvoiceStatus.PAID
    assert sorted(i.number for i in invoices_of(world, sub_id) if i.number) == [
        "KASSA-0001",
        "KASSA-0002",
        "KASSA-0003",
    ]


# ====================================================================== the state machine
CURRENCIES = ["EUR", "JPY", "KWD"]
GRADUATED = PriceTerms(
    billing_scheme=BillingScheme.TIERED,
    tiers_mode=TiersMode.GRADUATED,
    tiers=(Tier(up_to=3, unit_amount=900, flat_amount=500), Tier(up_to=None, unit_amount=400)),
)


class Lifecycle(RuleBasedStateMachine):
    """One customer, one subscription, the real services; see the module docstring."""

    world: World
    sub_id: str
    customer_id: str

    @initialize(
        currency=st.sampled_from(CURRENCIES),
        amounts=st.lists(st.integers(0, 40_000), min_size=4, max_size=4),
        first=st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
        quantity=st.integers(1, 12),
        trial=st.sampled_from([None, None, 2, 10]),
        card=st.sampled_from([True, True, True, False]),
        missing=st.sampled_from(list(MissingPaymentMethod)),
        start=st.integers(0, 86400 * 400),
    )
    def subscribe(
        self,
        currency: str,
        amounts: list[int],
        first: list[int],
        quantity: int,
        trial: int | None,
        card: bool,
        missing: MissingPaymentMethod,
        start: int,
    ) -> None:
        self.world = make_world(utc(2024, 1, 1) + timedelta(seconds=start))
        ctx = self.world.billing
        product = create_product(ctx, "Plan")
        month = Recurring(interval=Interval.MONTH)
        self.monthly = [create_price(ctx, product.id, currency, a, month) for a in amounts[:3]]
        self.monthly.append(create_price(ctx, product.id, currency, GRADUATED, month))
        year = Recurring(interval=Interval.YEAR)
        self.yearly = [create_price(ctx, product.id, currency, amounts[3] * 10, year)]
        if not card:
            self.world.gateway.setup_payment_method = None
        result = start_checkout(
            ctx,
            items=[(self.monthly[i].id, quantity) for i in first],
            email="ada@example.com",
            name="Ada",
            address=OREGON,
            trial_days=trial,
            missing_payment_method=missing,
        )
        self.sub_id, self.customer_id = result.subscription.id, result.customer.id
        self.setup_intent = result.setup_intent.id
        if card:
            complete_checkout(ctx, self.sub_id, self.setup_intent)
        self.processed = 0
        self.unprorated: set[datetime] = set()

    # ------------------------------------------------------------ helpers
    @property
    def sub(self) -> Subscription:
        return self.world.store.get_subscription(self.sub_id)

    def at_a_new_second(self) -> None:
        """Invoice and item ids derive from the time of a request: one request per second."""
        self.world.clock.advance(seconds=1)

    def process_due_twice(self) -> str:
        outcome = process_due(self.world.billing, self.sub_id)
        writes, events = self.world.store.writes, len(self.world.publisher.events)
        sub = self.sub
        if sub.due_at is None or sub.due_at > self.world.clock.now():  # nothing else is due at this instant
            assert process_due(self.world.billing, self.sub_id) == "nothing", outcome
            assert (self.world.store.writes, len(self.world.publisher.events)) == (writes, events)
        self.processed += 1
        return outcome

    # ------------------------------------------------------------ rules
    @rule(seconds=st.integers(1, 86400 * 20))
    def advance(self, seconds: int) -> None:
        self.advance_to(self.world.clock.now() + timedelta(seconds=seconds))

    @precondition(lambda self: self.sub.status not in TERMINAL)
    @rule(periods=st.integers(1, 3), seconds=st.integers(0, 86400))
    def advance_periods(self, periods: int, seconds: int) -> None:
        """Past the next ``periods`` renewals (of a monthly period)."""
        self.advance_to(self.sub.current_period_end + timedelta(days=31 * (periods - 1), seconds=seconds))

    def advance_to(self, target: datetime) -> None:
        for _ in range(20):
            due = self.sub.due_at
            if due is None or due > target:
                break
            self.world.clock.set(max(due, self.world.clock.now()))
            self.process_due_twice()
        self.world.clock.set(max(target, self.world.clock.now()))

    @precondition(lambda self: self.sub.status in CHANGEABLE and not self.sub.changes_blocked)
    @rule(
        kind=st.sampled_from(["add", "quantity", "price", "delete", "switch"]),
        which=st.integers(0, 3),
        quantity=st.integers(1, 12),
        behavior=st.sampled_from(list(PB)),
    )
    def change_items(self, kind: str, which: int, quantity: int, behavior: PB) -> None:
        self.at_a_new_second()
        sub = self.sub
        pool = self.monthly if sub.interval is Interval.MONTH else self.yearly
        free = [p for p in pool if p.id not in {i.price for i in sub.items}]
        target = sub.items[which % len(sub.items)]
        if kind == "add" and free:
            change = ItemChange(price=free[which % len(free)].id, quantity=quantity)
        elif kind == "quantity":
            change = ItemChange(id=target.id, quantity=quantity)
        elif kind == "price" and free:
            change = ItemChange(id=target.id, price=free[which % len(free)].id)
        elif kind == "delete" and len(sub.items) > 1:
            change = ItemChange(id=target.id, deleted=True)
        elif kind == "switch" and len(sub.items) == 1 and sub.status is not Status.TRIALING:
            other = self.yearly if sub.interval is Interval.MONTH else self.monthly
            change = ItemChange(id=target.id, price=other[which % len(other)].id)
        else:
            return
        changed = change_plan(self.world.billing, self.sub_id, items=[change], behavior=behavior).subscription
        if behavior is PB.NONE and sub.status is not Status.TRIALING:
            # the new terms are free until the period end, and a later proration (a change, a prorated
            # cancellation) credits their unused time all the same (Stripe's rule): that period's credits
            # may exceed what was charged, so the check below leaves it out
            self.unprorated.update({sub.current_period_end, changed.current_period_end})

    @precondition(lambda self: self.sub.status not in TERMINAL)
    @rule(amount=st.integers(-5000, 20_000).filter(bool), quantity=st.integers(1, 3))
    def one_off_item(self, amount: int, quantity: int) -> None:
        self.at_a_new_second()
        add_invoice_item(self.world.billing, self.sub_id, amount=amount, description="one-off", quantity=quantity)

    @precondition(lambda self: self.sub.status in (Status.ACTIVE, Status.PAST_DUE) and not self.sub.pause_collection)
    @rule(behavior=st.sampled_from(list(PauseBehavior)), days=st.none() | st.integers(1, 60))
    def pause_collection(self, behavior: PauseBehavior, days: int | None) -> None:
        self.at_a_new_second()
        until = None if days is None else self.world.clock.now() + timedelta(days=days)
        pause_collection(self.world.billing, self.sub_id, behavior, until)

    @precondition(lambda self: self.sub.status not in TERMINAL and self.sub.pause_collection is not None)
    @rule()
    def resume_collection(self) -> None:
        self.at_a_new_second()
        resume_collection(self.world.billing, self.sub_id)

    @precondition(lambda self: self.sub.status is Status.PAUSED)
    @rule()
    def resume(self) -> None:
        self.at_a_new_second()
        if self.world.store.get_customer(self.customer_id).default_payment_method is None:  # the customer adds a card
            self.world.gateway.confirm_setup_intent(self.setup_intent, "pm_card_visa")
            complete_checkout(self.world.billing, self.sub_id, self.setup_intent)
        sub = self.world.store.get_subscription(self.sub_id)
        latest = self.world.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
        again = awaiting_resumption_payment(sub, latest)  # resumed before, its invoice still unpaid
        resumed = resume(self.world.billing, self.sub_id)
        # the cycle restarts when it resumes; asked again, the resumption invoice is collected again
        # and the cycle keeps the first resumption's anchor
        expected = sub.billing_cycle_anchor if again else self.world.billing.now()
        assert resumed.subscription.billing_cycle_anchor == expected

    @precondition(lambda self: self.sub.status not in TERMINAL)
    @rule(decline=st.booleans())
    def card(self, decline: bool) -> None:
        if decline:
            self.world.gateway.will_decline("pm_card_visa")
        else:
            self.world.gateway.will_succeed("pm_card_visa")

    @precondition(lambda self: self.sub.status not in TERMINAL)
    @rule(kind=st.sampled_from(["at_period_end", "at_period_end", "undo", "undo", "now", "now_prorated"]))
    def cancellation(self, kind: str) -> None:
        """Cancel at the period end, undo that, or cancel now (with a prorated credit)."""
        self.at_a_new_second()
        ctx, details = self.world.billing, CancellationDetails()
        if kind == "at_period_end":
            assert cancel(ctx, self.sub_id, at_period_end=True, details=details).cancel_at_period_end
        elif kind == "undo":
            if self.sub.cancel_at_period_end and self.world.clock.now() < self.sub.current_period_end:
                assert not undo_cancel(ctx, self.sub_id).cancel_at_period_end
        else:
            canceled = cancel(ctx, self.sub_id, at_period_end=False, details=details, prorate=kind == "now_prorated")
            assert canceled.status is Status.CANCELED and canceled.ended_at == ctx.now()

    # ------------------------------------------------------------ invariants
    def invoices(self) -> list[Invoice]:
        return list(self.world.store.invoices.values())  # in creation order

    @invariant()
    def amounts_are_integers_and_add_up(self) -> None:
        for invoice in self.invoices():
            for value in (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due, invoice.amount_paid):
                assert type(value) is int
            assert invoice.amount_due >= 0
            assert invoice.tax == 0  # Oregon
            assert invoice.subtotal == sum(line.amount for line in invoice.lines) == invoice.total
            assert all(type(line.amount) is int for line in invoice.lines)
            if invoice.status is InvoiceStatus.PAID:
                assert invoice.amount_paid == invoice.amount_due

    @invariant()
    def numbers_are_unique_and_gapless(self) -> None:
        numbers = sorted(i.number for i in self.invoices() if i.number is not None)
        assert numbers == [f"KASSA-{k:04d}" for k in range(1, len(numbers) + 1)]
        for invoice in self.invoices():
            if invoice.status is InvoiceStatus.DRAFT or (
                invoice.status is InvoiceStatus.VOID and invoice.finalized_at is None
            ):
                assert invoice.number is None  # drafts and voided drafts take no number

    @invariant()
    def the_balance_is_conserved(self) -> None:
        balance, granted, used = 0, 0, 0
        for invoice in self.invoices():
            if invoice.ending_balance is None:
                continue
            assert invoice.starting_balance == balance  # starts from what the previous one left
            net = invoice.total + invoice.starting_balance
            assert (invoice.amount_due, invoice.ending_balance) == (max(0, net), min(0, net))
            if invoice.total < 0:
                granted += -invoice.total
            else:
                used += invoice.ending_balance - invoice.starting_balance
            balance = invoice.ending_balance
        customer = self.world.store.get_customer(self.customer_id)
        assert customer.balance == balance <= 0  # only credits, never a debt
        assert granted == used + (-balance)  # credit granted = credit used + credit left

    @invariant()
    def every_period_is_invoiced_exactly_once(self) -> None:
        sub = self.sub
        mine = [i for i in self.invoices() if i.subscription == self.sub_id]
        if sub.status in (Status.ACTIVE, Status.PAST_DUE) and self.processed + len(mine) > 0:
            assert any(i.period_start == sub.current_period_start for i in mine), "the current period has no invoice"
        # the renewals (and the first invoice) bill consecutive periods, each once; a change or a resume
        # that resets the anchor credits the old period's unused time (checked below) and invoices anew
        renewals = sorted(
            (i.period_start, i.period_end)
            for i in mine
            if i.billing_reason in (BillingReason.SUBSCRIPTION_CREATE, BillingReason.SUBSCRIPTION_CYCLE)
        )
        # an anchor reset (an interval switch, a resume) invoices a new period of its own, ending
        # elsewhere than the old one: the cycle after it may start inside the old, credited period
        resets = [(i.period_start, i.period_end) for i in mine if i.billing_reason is BillingReason.SUBSCRIPTION_UPDATE]
        for (prev_start, end), (start, _) in zip(renewals, renewals[1:], strict=False):
            reset_between = any(prev_start <= r_start < end and r_end != end for r_start, r_end in resets)
            assert end <= start or reset_between, f"a period invoiced twice: {renewals}"

    @invariant()
    def credits_never_exceed_charges_for_the_same_time(self) -> None:
        lines = [line for i in self.invoices() if i.subscription == self.sub_id for line in i.lines]
        lines += [InvoiceLine.model_validate(doc) for doc in self.sub.pending_lines]
        charged: dict[tuple[str, datetime], int] = defaultdict(int)
        credited: dict[tuple[str, datetime], int] = defaultdict(int)
        rounded: dict[tuple[str, datetime], int] = defaultdict(int)
        for line in lines:
            if line.subscription_item is None:
                continue  # one-off items
            key = (line.subscription_item, line.period_end)
            if line.amount < 0:
                credited[key] += -line.amount
            else:
                charged[key] += line.amount
            rounded[key] += line.proration
        for key, credit in credited.items():
            if key[1] not in self.unprorated:
                assert credit <= charged[key] + Fraction(rounded[key], 2), key

    @invariant()
    def access_follows_the_status(self) -> None:
        sub, now = self.sub, self.world.billing.now()
        expected = sub.status in (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE) and not (
            sub.cancel_at_period_end and now >= sub.current_period_end
        )
        found = entitlements_of(self.world.billing, self.customer_id)
        assert len(found) == (len(sub.items) if expected else 0)
        if expected:
            assert {e.price for e in found} == {i.price for i in sub.items}


Lifecycle.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_lifecycle = Lifecycle.TestCase


def test_resuming_twice_while_the_resumption_invoice_is_unpaid_invoices_once() -> None:
    world = make_world(START)
    world.gateway.setup_payment_method = None  # no card at checkout
    result = world.checkout(plan(world, 1000), trial_days=14, missing_payment_method=MissingPaymentMethod.PAUSE)
    sub_id = result.subscription.id
    run_until(world, sub_id, utc(2025, 5, 1))
    world.clock.set(utc(2025, 5, 4))
    first = resume(world.billing, sub_id)  # no card: the resumption invoice stays open
    assert first.invoice is not None and first.invoice.status.value == "open"
    world.clock.set(utc(2025, 5, 6))
    again = resume(world.billing, sub_id)
    assert again.invoice is not None and again.invoice.id == first.invoice.id
    open_invoices = [i for i in world.store.invoices.values() if i.subscription == sub_id and i.collectable]
    assert len(open_invoices) == 1
    assert world.store.get_subscription(sub_id).status is Status.PAUSED
