"""Cancellation: at the period end (undoable until then) or immediately, optionally with a prorated credit.

- At the period end (Stripe's ``cancel_at_period_end``): access and service continue to the end of the
  paid period, no further invoice is made, and ``canceled_at`` records when it was asked (Stripe).
  Undoing it is allowed until the period ends.
- Immediately: the subscription is canceled at ``now``. With ``prorate`` the unused time of the
  current period is credited (one negative proration line); Stripe does not refund it automatically:
  on a final invoice (``invoice_now``) the negative total becomes customer balance, otherwise the
  line waits as a pending item. Nothing is credited for trials or unpaid first periods.
- Reasons and feedback follow Stripe's ``cancellation_details``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from kassa.domain.errors import IllegalTransition
from kassa.domain.proration import PlanItem, ProrationLine, proration_basis, to_second, unused_time_credit
from kassa.domain.subscription import TERMINAL, Status, Subscription

CREDITABLE = frozenset({Status.ACTIVE, Status.PAST_DUE, Status.UNPAID})


class CancellationReason(StrEnum):
    CANCELLATION_REQUESTED = "cancellation_requested"
    PAYMENT_DISPUTED = "payment_disputed"
    PAYMENT_FAILED = "payment_failed"


class CancellationFeedback(StrEnum):
    CUSTOMER_SERVICE = "customer_service"
    LOW_QUALITY = "low_quality"
    MISSING_FEATURES = "missing_features"
    OTHER = "other"
    SWITCHED_SERVICE = "switched_service"
    TOO_COMPLEX = "too_complex"
    TOO_EXPENSIVE = "too_expensive"
    UNUSED = "unused"


class CancellationDetails(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: CancellationReason = CancellationReason.CANCELLATION_REQUESTED
    feedback: CancellationFeedback | None = None
    comment: str | None = Field(default=None, max_length=5000)


def _live(sub: Subscription) -> None:
    if sub.status in TERMINAL:
        raise IllegalTransition(f"subscription {sub.id} has ended ({sub.status.value})")


def schedule_cancellation(sub: Subscription, now: datetime) -> Subscription:
    """Cancel at the period end; asking twice changes nothing."""
    _live(sub)
    if sub.cancel_at_period_end:
        return sub
    return sub.model_copy(update={"cancel_at_period_end": True, "canceled_at": to_second(now)})


def undo_scheduled_cancellation(sub: Subscription, now: datetime) -> Subscription:
    """Keep the subscription after all: possible until the period end; a no-op when nothing is scheduled."""
    _live(sub)
    if not sub.cancel_at_period_end:
        return sub
    if to_second(now) >= sub.current_period_end:
        raise IllegalTransition(f"the cancellation of {sub.id} took effect at {sub.current_period_end.isoformat()}")
    return sub.model_copy(update={"cancel_at_period_end": False, "canceled_at": None})


@dataclass(frozen=True)
class ImmediateCancellation:
    subscription: Subscription
    lines: tuple[ProrationLine, ...]  # the prorated credit, if any
    invoice_now: bool  # put pending items and ``lines`` on a final invoice now


def cancel_immediately(
    sub: Subscription,
    now: datetime,
    *,
    item: PlanItem | None = None,
    prorate: bool = False,
    invoice_now: bool = False,
) -> ImmediateCancellation:
    """Cancel at ``now``; with ``prorate``, credit the unused time of the current period."""
    _live(sub)
    now = to_second(now)
    lines: tuple[ProrationLine, ...] = ()
    if prorate and sub.status in CREDITABLE and sub.current_period_start <= now < sub.current_period_end:
        basis = proration_basis(sub.period, sub.billing_cycle_anchor, sub.interval, sub.interval_count)
        items = [item] if item is not None else sub.items
        lines = tuple(unused_time_credit(each, sub.period, now, basis) for each in items)
    canceled = sub.transition(Status.CANCELED, now)
    return ImmediateCancellation(canceled, lines, invoice_now)
