"""Subscriptions: Stripe's statuses, their legal transitions, periods and what falls due when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from kassa.domain.catalog import Price, TaxBehavior
from kassa.domain.errors import IllegalTransition, InvalidInput, NotFound
from kassa.domain.ids import derived_id, new_id
from kassa.domain.items import MAX_ITEMS, SubscriptionItem, ensure_compatible, legacy_item_id
from kassa.domain.periods import Interval, Period, boundary, ensure_utc, period_at

# Stripe: an incomplete subscription whose first invoice is not paid within 23 hours expires.
INCOMPLETE_EXPIRY = timedelta(hours=23)
TRIAL_WILL_END_NOTICE = timedelta(days=3)


class Status(StrEnum):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.INCOMPLETE: frozenset({Status.ACTIVE, Status.INCOMPLETE_EXPIRED, Status.CANCELED}),
    Status.TRIALING: frozenset({Status.ACTIVE, Status.PAST_DUE, Status.CANCELED, Status.PAUSED}),
    Status.ACTIVE: frozenset({Status.PAST_DUE, Status.CANCELED, Status.UNPAID}),
    Status.PAST_DUE: frozenset({Status.ACTIVE, Status.CANCELED, Status.UNPAID}),
    Status.UNPAID: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.PAUSED: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.CANCELED: frozenset(),
    Status.INCOMPLETE_EXPIRED: frozenset(),
}

TERMINAL = frozenset({Status.CANCELED, Status.INCOMPLETE_EXPIRED})


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


class Subscription(BaseModel):
    id: str
    customer: str
    items: list[SubscriptionItem] = Field(min_length=1, max_length=MAX_ITEMS)
    currency: str
    interval: Interval
    interval_count: int
    status: Status
    billing_cycle_anchor: datetime
    current_period_start: datetime
    current_period_end: datetime
    trial_start: datetime | None = None
    trial_end: datetime | None = None
    incomplete_expires_at: datetime | None = None
    cancel_at_period_end: bool = False
    cancellation_details: dict[str, Any] | None = None  # reason, feedback, comment (domain.cancellation)
    # proration lines waiting for the next invoice (create_prorations), as InvoiceLine documents
    pending_lines: list[dict[str, Any]] = Field(default_factory=list)
    scheduled_change: dict[str, Any] | None = None  # a downgrade taking effect at the period end
    discount: dict[str, Any] | None = None  # a coupon in force (domain.discounts.Discount)
    pause_collection: dict[str, Any] | None = None  # domain.pausing.PauseCollection: behavior, resumes_at
    # Stripe's billing_thresholds: {"amount_gte": minor units}: usage accrued past it is invoiced at once
    billing_thresholds: dict[str, Any] | None = None
    # what a trial ending without a card does (Stripe's trial_settings.end_behavior): create_invoice,
    # cancel or pause
    missing_payment_method: str = "create_invoice"
    trial_will_end_notified: bool = False  # customer.subscription.trial_will_end was published
    # the overdue ladder's state (kassa.domain.dunning), stored after each evaluation: None = not overdue
    overdue_state: str | None = None
    entitlements_suspended: bool = False  # the ladder's state disables access (Kill Bill's "disable entitlement")
    changes_blocked: bool = False  # the ladder's state blocks plan and quantity changes
    # open disputes that suspend access (settings.disputes.access = suspend, docs/payments.md); kept apart
    # from the ladder's ``entitlements_suspended``, which a paid invoice or the ladder clears
    dispute_holds: list[str] = Field(default_factory=list)
    # a bank debit of the latest invoice is processing and settings.bank_debits.access_while_processing
    # is ``suspend``: access waits for the money (kassa.domain.payment_methods)
    settlement_hold: bool = False
    # upcoming renewal reminder (settings.emails.upcoming_renewal_days): when it is due, None once sent
    renewal_reminder_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    latest_invoice: str | None = None
    # the price experiment its checkout was assigned in (kassa.domain.experiments): {"id", "variant"}
    experiment: dict[str, str] | None = None
    created: datetime
    version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _one_price_shape(cls, data: Any) -> Any:
        """A subscription stored before items existed (``price``, ``quantity``, ``unit_amount``,
        ``tax_behavior`` at the top) reads as one item: no migration step."""
        if isinstance(data, dict) and "items" not in data and "price" in data:
            data = dict(data)
            item = {
                "id": legacy_item_id(str(data.get("id"))),
                "price": data.pop("price"),
                "quantity": data.pop("quantity", 1),
                "unit_amount": data.pop("unit_amount", None),
                "tax_behavior": data.pop("tax_behavior", TaxBehavior.EXCLUSIVE.value),
                "currency": data.get("currency"),
                "interval": data.get("interval"),
                "interval_count": data.get("interval_count", 1),
            }
            data["items"] = [item]
        return data

    # ---- derived ----
    @property
    def price(self) -> str:
        """The price of the first item (the only one of a one-item subscription)."""
        return self.items[0].price

    @property
    def quantity(self) -> int:
        return self.items[0].quantity

    @property
    def unit_amount(self) -> int | None:
        return self.items[0].unit_amount

    @property
    def single_item(self) -> SubscriptionItem | None:
        return self.items[0] if len(self.items) == 1 else None

    def item(self, item_id: str) -> SubscriptionItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise NotFound(f"no item {item_id} on subscription {self.id}", param="items")

    @property
    def period(self) -> Period:
        return Period(self.current_period_start, self.current_period_end)

    @property
    def due_at(self) -> datetime | None:
        """When the renewal machinery must next look at this subscription (None: never again)."""
        if self.status is Status.INCOMPLETE:
            return self.incomplete_expires_at
        if self.status is Status.TRIALING:
            notice = self.trial_will_end_at
            return notice if notice is not None and not self.trial_will_end_notified else self.trial_end
        if self.status in (Status.ACTIVE, Status.PAST_DUE, Status.UNPAID):
            reminder = self.renewal_reminder_at
            if reminder is not None and reminder < self.current_period_end and not self.cancel_at_period_end:
                return reminder
            return self.current_period_end
        return None

    @property
    def trial_will_end_at(self) -> datetime | None:
        """Stripe sends ``customer.subscription.trial_will_end`` three days before the trial ends
        (at once for a shorter trial)."""
        if self.trial_end is None:
            return None
        return max(self.trial_end - TRIAL_WILL_END_NOTICE, self.trial_start or self.created)

    # ---- behaviour (returns new objects; never mutates) ----
    def transition(self, target: Status, now: datetime) -> Subscription:
        if target == self.status:
            return self
        if not can_transition(self.status, target):
            raise IllegalTransition(f"subscription {self.id} cannot go from {self.status.value} to {target.value}")
        changes: dict[str, object] = {"status": target}
        if target in TERMINAL:
            changes["ended_at"] = now
            if target is Status.CANCELED:  # Stripe: canceled_at is when the cancellation was asked for
                changes["canceled_at"] = self.canceled_at or now
        return self.model_copy(update=changes)

    def next_period(self) -> Period:
        return period_at(self.billing_cycle_anchor, self.interval, self.interval_count, self.current_period_end)

    def with_period(self, period: Period) -> Subscription:
        return self.model_copy(update={"current_period_start": period.start, "current_period_end": period.end})


def start_subscription(
    *,
    customer: str,
    price: Price | None = None,
    quantity: int = 1,
    now: datetime,
    trial_days: int | None = None,
    subscription_id: str | None = None,
    items: Sequence[tuple[Price, int]] | None = None,
) -> Subscription:
    """A new subscription of ``items`` (price, quantity) — or of one ``price`` × ``quantity`` —
    trialing when it has a trial (asked for, or the first price's own), else incomplete until its
    first invoice is paid."""
    now = ensure_utc(now).replace(microsecond=0)
    if items is None:
        if price is None:
            raise InvalidInput("give a price or items", param="items")
        items = [(price, quantity)]
    sub_id = subscription_id or new_id("sub")
    built = []
    for i, (item_price, item_quantity) in enumerate(items):
        if item_quantity < 1:
            raise InvalidInput("quantity must be at least 1", param="quantity" if price else f"items[{i}].quantity")
        built.append(SubscriptionItem.from_price(item_price, item_quantity, item_id=derived_id("si", sub_id, str(i))))
    ensure_compatible(built)
    first = items[0][0]
    if trial_days is None:
        trial_days = next((p.recurring.trial_period_days for p, _ in items if p.recurring.trial_period_days), None)
    interval, count = first.recurring.interval, first.recurring.interval_count
    common = dict(
        id=sub_id,
        customer=customer,
        items=built,
        currency=first.currency,
        interval=interval,
        interval_count=count,
        created=now,
    )
    if trial_days:
        if trial_days < 1 or trial_days > 730:
            raise InvalidInput("trial_days must be between 1 and 730", param="trial_days")
        trial_end = now + timedelta(days=trial_days)
        return Subscription(
            **common,  # type: ignore[arg-type]
            status=Status.TRIALING,
            billing_cycle_anchor=trial_end,
            current_period_start=now,
            current_period_end=trial_end,
            trial_start=now,
            trial_end=trial_end,
        )
    return Subscription(
        **common,  # type: ignore[arg-type]
        status=Status.INCOMPLETE,
        billing_cycle_anchor=now,
        current_period_start=now,
        current_period_end=boundary(now, interval, count, 1),
        incomplete_expires_at=now + INCOMPLETE_EXPIRY,
    )


class DueAction(StrEnum):
    NOTHING = "nothing"
    EXPIRE = "expire"  # incomplete for 23 h: incomplete_expired, first invoice voided
    END_TRIAL = "end_trial"  # invoice the first paid period, charge it
    RENEW = "renew"  # invoice the next period, charge it
    CANCEL = "cancel"  # cancel_at_period_end reached: canceled, no invoice
    TRIAL_WILL_END = "trial_will_end"  # three days before the trial ends: tell the customer
    UPCOMING = "upcoming"  # N days before a renewal (settings.emails.upcoming_renewal_days): remind


@dataclass(frozen=True)
class Due:
    action: DueAction
    period: Period | None = None  # the period to invoice


def renewal_reminder(sub: Subscription, days: int | None) -> datetime | None:
    """When to remind the customer of the renewal at the end of the current period: ``days``
    before it, if that is still ahead of the period start (None: no reminder)."""
    if days is None or sub.status in TERMINAL or sub.cancel_at_period_end:
        return None
    at = sub.current_period_end - timedelta(days=days)
    return at if at > sub.current_period_start else None


#: the statuses that paying the latest invoice makes active again
REACTIVATED_BY_PAYMENT = frozenset({Status.INCOMPLETE, Status.PAST_DUE, Status.UNPAID, Status.PAUSED})
#: the statuses a failed payment of the latest invoice moves to past_due
PAST_DUE_ON_FAILURE = frozenset({Status.ACTIVE, Status.TRIALING})
#: the statuses in which items, prices and quantities can change
CHANGEABLE = frozenset({Status.ACTIVE, Status.TRIALING, Status.PAST_DUE})


def after_invoice_paid(
    sub: Subscription, invoice_id: str, now: datetime, reminder_days: int | None
) -> Subscription | None:
    """The subscription once ``invoice_id`` is paid (None: unchanged). Only the latest invoice moves
    it: an incomplete, past-due, unpaid or paused subscription becomes active (a first payment starts
    the renewal reminder), and paying clears the overdue state and gives access back at once."""
    if sub.latest_invoice != invoice_id:
        return None
    changed: Subscription | None = None
    if sub.status in REACTIVATED_BY_PAYMENT:
        changed = sub.transition(Status.ACTIVE, now).model_copy(update={"incomplete_expires_at": None})
        if sub.status is Status.INCOMPLETE:
            changed = changed.model_copy(update={"renewal_reminder_at": renewal_reminder(changed, reminder_days)})
    if sub.overdue_state is not None or sub.settlement_hold:
        changed = (changed or sub).model_copy(
            update={
                "overdue_state": None,
                "entitlements_suspended": False,
                "changes_blocked": False,
                "settlement_hold": False,
            }
        )
    return changed


def after_payment_failed(sub: Subscription, invoice_id: str, now: datetime) -> Subscription | None:
    """The subscription once a payment of ``invoice_id`` failed (None: unchanged): the latest invoice
    of an active or trialing subscription makes it past_due. A bank debit that was processing lifts
    its settlement hold (the failed invoice is dunned like any other: the ladder decides access); a
    checkout that waited for its debit gets its 23 hours to be completed from the failure."""
    if sub.latest_invoice != invoice_id:
        return None
    changed: Subscription | None = None
    if sub.status in PAST_DUE_ON_FAILURE:
        changed = sub.transition(Status.PAST_DUE, now)
    if sub.settlement_hold:
        changed = (changed or sub).model_copy(
            update={"settlement_hold": False, "entitlements_suspended": sub.overdue_state is not None}
        )
    if sub.status is Status.INCOMPLETE and sub.incomplete_expires_at is None:
        changed = (changed or sub).model_copy(update={"incomplete_expires_at": now + INCOMPLETE_EXPIRY})
    return changed


def after_payment_processing(
    sub: Subscription, invoice_id: str, now: datetime, access: str, reminder_days: int | None
) -> Subscription | None:
    """The subscription once a bank debit of ``invoice_id`` is processing (None: unchanged), by
    ``settings.bank_debits.access_while_processing``:

    - ``keep`` (default, as Stripe): an incomplete checkout becomes active at once — the customer has
      authorised the debit — and a renewal keeps its access;
    - ``suspend``: access waits for the money — an incomplete checkout stays incomplete and does not
      expire while the bank settles; a renewal's access is held until the debit succeeds.
    """
    if sub.latest_invoice != invoice_id or sub.status in TERMINAL:
        return None
    if access == "keep":
        if sub.status is not Status.INCOMPLETE:
            return None
        active = sub.transition(Status.ACTIVE, now).model_copy(update={"incomplete_expires_at": None})
        return active.model_copy(update={"renewal_reminder_at": renewal_reminder(active, reminder_days)})
    if sub.status is Status.INCOMPLETE:
        return None if sub.incomplete_expires_at is None else sub.model_copy(update={"incomplete_expires_at": None})
    if sub.settlement_hold:
        return None
    return sub.model_copy(update={"settlement_hold": True, "entitlements_suspended": True})


def ensure_changeable(sub: Subscription, *, preview: bool = False) -> None:
    """Whether the items, prices or quantities of ``sub`` may change now (a preview may be asked for
    while the overdue ladder blocks changes)."""
    if sub.status not in CHANGEABLE:
        raise IllegalTransition(f"subscription {sub.id} is {sub.status.value}: its plan cannot change")
    if sub.changes_blocked and not preview:
        raise IllegalTransition(
            f"subscription {sub.id} is overdue ({sub.overdue_state}): pay the open invoice before changing the plan"
        )


def ensure_not_ended(sub: Subscription) -> None:
    if sub.status in TERMINAL:
        raise IllegalTransition(f"subscription {sub.id} has ended ({sub.status.value})")


def due_action(sub: Subscription, now: datetime) -> Due:
    """What the renewal worker must do for ``sub`` at ``now``: pure, so redeliveries decide the same."""
    due = sub.due_at
    if due is None or due > now:
        return Due(DueAction.NOTHING)
    if sub.status is Status.INCOMPLETE:
        return Due(DueAction.EXPIRE)
    if sub.status is Status.TRIALING and sub.trial_end is not None and now < sub.trial_end:
        return Due(DueAction.TRIAL_WILL_END)  # due before the trial end: only the notice is
    if sub.cancel_at_period_end:  # Stripe: a trial or period set to cancel ends without an invoice
        return Due(DueAction.CANCEL)
    if sub.status is not Status.TRIALING and now < sub.current_period_end:
        return Due(DueAction.UPCOMING)  # due before the period end: only the reminder is
    if sub.status is Status.TRIALING:
        first = period_at(sub.billing_cycle_anchor, sub.interval, sub.interval_count, sub.billing_cycle_anchor)
        return Due(DueAction.END_TRIAL, first)
    return Due(DueAction.RENEW, sub.next_period())
