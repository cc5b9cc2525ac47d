"""Trial ends (Stripe's ``trial_settings.end_behavior.missing_payment_method``).

At the end of a trial:

- with a payment method: the first paid period is invoiced and charged (``DueAction.END_TRIAL``);
- without one, by setting: ``cancel`` → canceled, no invoice; ``create_invoice`` (Stripe's default)
  → the first period is invoiced and, with nothing to charge, the subscription is ``past_due``
  (Smart Retries never retry without a payment method); ``pause`` → ``paused``, no invoice, until
  resumed (``pausing.resume_subscription``);
- a trial set to cancel at its end is canceled without an invoice in every case.

``customer.subscription.trial_will_end`` is sent three days before the trial ends (Stripe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kassa.domain.errors import IllegalTransition
from kassa.domain.periods import ensure_utc
from kassa.domain.subscription import Status, Subscription

TRIAL_WILL_END_NOTICE = timedelta(days=3)


class MissingPaymentMethod(StrEnum):
    CANCEL = "cancel"
    CREATE_INVOICE = "create_invoice"
    PAUSE = "pause"


class TrialEndAction(StrEnum):
    CHARGE = "charge"  # invoice the first period and charge the payment method
    CANCEL = "cancel"
    INVOICE_UNPAID = "invoice_unpaid"  # invoice the first period; past_due, nothing to charge
    PAUSE = "pause"


@dataclass(frozen=True)
class TrialEnd:
    action: TrialEndAction
    status: Status | None  # the status to move to now (None: after the charge, as for a renewal)
    invoice: bool


def trial_end_outcome(
    sub: Subscription,
    now: datetime,
    *,
    has_payment_method: bool,
    missing_payment_method: MissingPaymentMethod = MissingPaymentMethod.CREATE_INVOICE,
) -> TrialEnd:
    if sub.status is not Status.TRIALING or sub.trial_end is None:
        raise IllegalTransition(f"subscription {sub.id} is not trialing")
    if ensure_utc(now) < sub.trial_end:
        raise IllegalTransition(f"the trial of {sub.id} ends at {sub.trial_end.isoformat()}")
    if sub.cancel_at_period_end:
        return TrialEnd(TrialEndAction.CANCEL, Status.CANCELED, invoice=False)
    if has_payment_method:
        return TrialEnd(TrialEndAction.CHARGE, None, invoice=True)
    if missing_payment_method is MissingPaymentMethod.CANCEL:
        return TrialEnd(TrialEndAction.CANCEL, Status.CANCELED, invoice=False)
    if missing_payment_method is MissingPaymentMethod.PAUSE:
        return TrialEnd(TrialEndAction.PAUSE, Status.PAUSED, invoice=False)
    return TrialEnd(TrialEndAction.INVOICE_UNPAID, Status.PAST_DUE, invoice=True)


def trial_will_end_at(sub: Subscription) -> datetime | None:
    """When to send ``customer.subscription.trial_will_end`` (three days before, or at once for a shorter trial)."""
    if sub.status is not Status.TRIALING or sub.trial_end is None:
        return None
    return max(sub.trial_end - TRIAL_WILL_END_NOTICE, sub.trial_start or sub.created)
