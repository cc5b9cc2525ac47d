"""Use case: what falls due for a subscription — renewals (one invoice per period), trial ends,
reminders, expiry of unpaid checkouts and cancellations at the period end. Every call is safe to
repeat: the period's invoice id is derived from the period, and a redelivery continues from its state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kassa.domain.errors import AlreadyExists, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.pausing import PauseCollection, invoice_while_paused, pause_collection_after, pause_subscription
from kassa.domain.payment_methods import may_charge
from kassa.domain.subscription import DueAction, Status, Subscription, due_action, renewal_reminder
from kassa.domain.trials import MissingPaymentMethod, TrialEndAction, trial_end_outcome
from kassa.services.collection import collect, collect_new, reminder_days, republish_paid
from kassa.services.context import BillingContext
from kassa.services.invoicing import period_invoice
from kassa.services.ports import WorkQueue

#: what one sweep enqueues at most when its function is not told (KASSA_SWEEP_LIMIT)
DEFAULT_SWEEP_LIMIT = 4000


def due_work(ctx: BillingContext, shard: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The renewal sweep: what is due now in one shard of the due index (a Query, never a Scan)."""
    now = ctx.now()
    return [
        {"subscription": sub_id, "due_at": due.isoformat()}
        for sub_id, due in ctx.store.due_subscriptions(shard, now, limit)
    ]


def sweep(ctx: BillingContext, queue: WorkQueue, shards: int, limit: int = DEFAULT_SWEEP_LIMIT) -> int:
    """One tick of the renewal sweep: enqueue what is due, oldest first, at most ``limit`` in all
    (an even share per shard of the due index). The limit is what the workers can renew before the
    next tick (infra/wiring.py RENEWALS_PER_SWEEP), so a tick's messages are done before the next
    tick looks and a large cohort is spread over ticks rather than enqueued twice; what is left
    stays in the index for the next tick. A subscription enqueued twice still renews once
    (``process_due``). Answers the number of messages sent."""
    per_shard = -(-limit // shards)
    enqueued = 0
    for shard in range(shards):
        messages = due_work(ctx, shard, per_shard)
        if messages:
            queue.send(messages)
            enqueued += len(messages)
    return enqueued


def process_due(ctx: BillingContext, subscription_id: str, *, redelivered: bool = False) -> str:
    """Do what is due for one subscription. Safe to call any number of times. ``redelivered``: the
    message was received before (SQS's ApproximateReceiveCount > 1) — the run that took it may have
    died after paying the period's invoice and before publishing it, so a paid one is published again."""
    try:
        sub = ctx.store.get_subscription(subscription_id)
    except NotFound:
        return "unknown"
    now = ctx.now()
    due = due_action(sub, now)
    if due.action is DueAction.NOTHING:
        # a redelivery after the period was advanced but before its charge had an outcome
        latest = ctx.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
        if latest is not None and latest.collectable and latest.attempt_pending:
            return collect(ctx, latest).status
        if latest is not None and redelivered:
            republish_paid(ctx, latest)
        return "nothing"
    if due.action is DueAction.EXPIRE:
        return expire(ctx, sub, now)
    if due.action is DueAction.CANCEL:
        return cancel_now(ctx, sub, now, cause="period_end")
    if due.action is DueAction.UPCOMING:
        reminded = ctx.store.save_subscription(sub.model_copy(update={"renewal_reminder_at": None}))
        ctx.emit(DomainEvent.of("invoice.upcoming", reminded, now, cause=f"upcoming:{sub.current_period_end}"))
        return "upcoming"
    if due.action is DueAction.TRIAL_WILL_END:
        noticed = ctx.store.save_subscription(sub.model_copy(update={"trial_will_end_notified": True}))
        ctx.emit(DomainEvent.of("customer.subscription.trial_will_end", noticed, now, cause="notice"))
        return "trial_will_end"
    assert due.period is not None
    settings = ctx.store.get_settings()
    customer = ctx.store.get_customer(sub.customer)
    if due.action is DueAction.END_TRIAL:
        outcome = trial_end_outcome(
            sub,
            now,
            has_payment_method=customer.default_payment_method is not None,
            missing_payment_method=MissingPaymentMethod(sub.missing_payment_method),
        )
        if outcome.action is TrialEndAction.CANCEL:
            return cancel_now(ctx, sub, now, cause="trial_end")
        if outcome.action is TrialEndAction.PAUSE:
            stopped = ctx.store.save_subscription(pause_subscription(sub, now))
            ctx.emit(
                DomainEvent.of(
                    "customer.subscription.paused", stopped, now, cause="trial_end", previous={"status": "trialing"}
                )
            )
            return "paused"
    previous = {"current_period_start": sub.current_period_start.isoformat(), "status": sub.status.value}
    pause = pause_collection_after(
        PauseCollection.model_validate(sub.pause_collection) if sub.pause_collection else None, now
    )
    advanced, draft, moved = period_invoice(ctx, sub, due.period, now, customer, settings, use_balance=pause is None)
    advanced = advanced.model_copy(
        update={
            "pause_collection": pause.model_dump(mode="json") if pause else None,
            "renewal_reminder_at": renewal_reminder(advanced, reminder_days(settings, customer)),
        }
    )
    paused = invoice_while_paused(draft, pause, now)
    invoice = paused.invoice
    if paused.collect:  # the first attempt is claimed in the same transaction that creates the invoice
        invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "renewal"})
    if due.action is DueAction.END_TRIAL:
        advanced = advanced.transition(Status.ACTIVE, now)
    if moved is not None:
        customer = moved
    try:
        advanced, invoice = ctx.store.renew(advanced, invoice, settings.invoice_prefix, moved)
    except AlreadyExists:
        # a redelivery after the invoice was written: continue from its state
        existing = ctx.store.get_invoice(invoice.id)
        if existing.collectable and existing.attempt_pending:
            return collect(ctx, existing).status
        if redelivered:
            republish_paid(ctx, existing)
        return "already_renewed"
    # a Conflict (the subscription changed under us) propagates: the message is retried and decides again
    updated = DomainEvent.of(
        "customer.subscription.updated", advanced, now, cause=f"renew:{invoice.id}", previous=previous
    )
    if not paused.collect:  # collection paused: the invoice is kept as a draft, voided or written off
        if paused.then is not None:
            invoice = ctx.store.save_invoice(invoice.transition(paused.then, now))
        ctx.emit(DomainEvent.of("invoice.created", invoice, now, cause="create"), updated)
        return f"paused:{invoice.status.value}"
    ctx.emit(
        DomainEvent.of("invoice.created", invoice, now, cause="create"),
        DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
        updated,
    )
    return collect_new(ctx, invoice, customer).status


def cancel_now(ctx: BillingContext, sub: Subscription, now: datetime, cause: str) -> str:
    canceled = ctx.store.save_subscription(sub.transition(Status.CANCELED, now))
    ctx.emit(DomainEvent.of("customer.subscription.deleted", canceled, now, cause=cause))
    return "canceled"


def expire(ctx: BillingContext, sub: Subscription, now: datetime) -> str:
    """An unpaid checkout after 23 hours: incomplete_expired, its first invoice voided."""
    invoice = ctx.store.find_invoice(sub.latest_invoice) if sub.latest_invoice else None
    if invoice is not None and not may_charge(invoice.attempt_outcome):
        return "processing"  # its bank debit is with the bank: the checkout waits for the outcome
    expired = sub.transition(Status.INCOMPLETE_EXPIRED, now)
    voided = invoice.transition(InvoiceStatus.VOID, now) if invoice and invoice.status is InvoiceStatus.OPEN else None
    if voided is not None:
        _, saved = ctx.store.save_invoice_and_subscription(voided, expired)
    else:
        saved = ctx.store.save_subscription(expired)
    assert saved is not None
    events = [
        DomainEvent.of(
            "customer.subscription.updated", saved, now, cause="expire", previous={"status": sub.status.value}
        )
    ]
    if voided is not None:
        events.append(DomainEvent.of("invoice.voided", voided, now, cause="expire"))
    ctx.emit(*events)
    return "expired"
