"""Pausing: pause *collection* (status stays active) and the full pause (status ``paused``).

Pause collection (Stripe's ``pause_collection``): the service goes on, invoices are still generated,
and what happens to each one depends on ``behavior``:

- ``keep_as_draft``: the invoice stays a draft, nobody is charged; it can be finalized after resuming.
- ``mark_uncollectible``: the invoice is finalized (numbered) and marked uncollectible at once.
- ``void``: the draft is voided (no number is used up, since kassa numbers only at finalization).
  What it charged is forgiven; the customer's balance is neither used nor credited while paused.

``resumes_at`` ends the pause by itself; until then the invoice machinery asks :func:`collection_paused`.

Full pause: the only way into ``paused`` is a trial that ends without a payment method under
``missing_payment_method=pause`` (see ``trials.py``). Resuming (Stripe's resume API):

- ``billing_cycle_anchor=now`` (default): the anchor resets to the resume time and a new full period
  starting then is invoiced at once; the subscription stays ``paused`` until that invoice is paid
  (paying it makes the subscription active). No resumption invoice (a free price) → active at once.
- ``billing_cycle_anchor=unchanged``: the subscription joins the period of its old anchor surrounding
  now; the rest of that period is prorated per ``proration_behavior`` (``create_prorations``: pending
  for the next invoice, active at once; ``always_invoice``: invoiced now, paused until paid;
  ``none``: free until the next period, active at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from kassa.domain.errors import IllegalTransition
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.periods import Period, boundary, ensure_utc, period_at
from kassa.domain.proration import (
    PlanItem,
    ProrationBehavior,
    ProrationLine,
    full_period_charge,
    remaining_time_charge,
    to_second,
)
from kassa.domain.subscription import Status, Subscription


class PauseBehavior(StrEnum):
    KEEP_AS_DRAFT = "keep_as_draft"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"
    VOID = "void"


class PauseCollection(BaseModel):
    model_config = ConfigDict(frozen=True)

    behavior: PauseBehavior
    resumes_at: datetime | None = None


def collection_paused(pause: PauseCollection | None, now: datetime) -> bool:
    """Whether invoices generated at ``now`` fall under the pause."""
    return pause is not None and (pause.resumes_at is None or ensure_utc(now) < pause.resumes_at)


def pause_collection_after(pause: PauseCollection | None, now: datetime) -> PauseCollection | None:
    """The pause still in force at ``now`` (None once ``resumes_at`` has passed: clear the field)."""
    return pause if collection_paused(pause, now) else None


@dataclass(frozen=True)
class PausedInvoice:
    """A freshly generated draft after the pause rule: ``invoice`` as it is to be stored;
    ``collect``: charge it as usual; ``then``: the status it takes once stored and numbered
    (``mark_uncollectible`` finalizes the invoice before it writes it off)."""

    invoice: Invoice
    collect: bool
    then: InvoiceStatus | None = None


def invoice_while_paused(invoice: Invoice, pause: PauseCollection | None, now: datetime) -> PausedInvoice:
    """What becomes of a freshly generated draft ``invoice`` at ``now`` under ``pause`` (Stripe's
    ``pause_collection.behavior``): kept as an unnumbered draft, finalized and marked uncollectible,
    or voided; without a pause in force it is collected."""
    if invoice.status is not InvoiceStatus.DRAFT:
        raise IllegalTransition(f"invoice {invoice.id} is {invoice.status.value}; the pause rule applies to drafts")
    if not collection_paused(pause, now):
        return PausedInvoice(invoice, collect=True)
    assert pause is not None
    if pause.behavior is PauseBehavior.KEEP_AS_DRAFT:
        return PausedInvoice(invoice.model_copy(update={"keep_as_draft": True}), collect=False)
    if pause.behavior is PauseBehavior.MARK_UNCOLLECTIBLE:
        return PausedInvoice(invoice, collect=False, then=InvoiceStatus.UNCOLLECTIBLE)
    return PausedInvoice(invoice.transition(InvoiceStatus.VOID, now), collect=False)


def pause_subscription(sub: Subscription, now: datetime) -> Subscription:
    """``trialing`` → ``paused`` (the only legal way in, per Stripe)."""
    return sub.transition(Status.PAUSED, now)


class ResumeAnchor(StrEnum):
    NOW = "now"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ResumePlan:
    """The subscription after the resume request, the lines it creates and what to do with them.

    ``invoice_now``: invoice ``lines`` now (the subscription stays paused until it is paid);
    ``pending``: ``lines`` wait for the next invoice.
    """

    subscription: Subscription
    lines: tuple[ProrationLine, ...]
    invoice_now: bool
    pending: bool


def resume_subscription(
    sub: Subscription,
    now: datetime,
    *,
    item: PlanItem | None = None,
    billing_cycle_anchor: ResumeAnchor = ResumeAnchor.NOW,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
) -> ResumePlan:
    """Resume a paused subscription at ``now`` (see the module docstring)."""
    if sub.status is not Status.PAUSED:
        raise IllegalTransition(f"subscription {sub.id} is {sub.status.value}; only a paused one resumes")
    now = to_second(now)
    items = [item] if item is not None else list(sub.items)
    if billing_cycle_anchor is ResumeAnchor.NOW:
        anchor = now
        period = Period(now, boundary(now, sub.interval, sub.interval_count, 1))
        lines: tuple[ProrationLine, ...] = tuple(full_period_charge(each, period) for each in items)
        pending = False
    else:
        anchor = sub.billing_cycle_anchor
        period = period_at(anchor, sub.interval, sub.interval_count, now)
        lines = (
            ()
            if proration_behavior is ProrationBehavior.NONE
            else tuple(remaining_time_charge(each, period, now) for each in items)
        )
        pending = proration_behavior is ProrationBehavior.CREATE_PRORATIONS and bool(lines)
    invoice_now = bool(lines) and not pending and any(line.amount for line in lines)
    if not invoice_now and not pending:
        lines = ()
    updated = sub.model_copy(
        update={"billing_cycle_anchor": anchor, "current_period_start": period.start, "current_period_end": period.end}
    )
    if not invoice_now:
        updated = updated.transition(Status.ACTIVE, now)
    return ResumePlan(subscription=updated, lines=lines, invoice_now=invoice_now, pending=pending)
