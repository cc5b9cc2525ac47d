"""Use case: pausing collection (Stripe's ``pause_collection``: access continues, the invoices made
meanwhile are kept as drafts, written off or voided) and resuming a paused subscription."""

from __future__ import annotations

from datetime import datetime

from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id
from kassa.domain.invoice import BillingReason
from kassa.domain.pausing import PauseBehavior, PauseCollection, resume_subscription
from kassa.domain.subscription import Status, Subscription
from kassa.services.collection import collect_new
from kassa.services.context import BillingContext, update_subscription
from kassa.services.invoicing import finish_invoice, new_invoice
from kassa.services.plan_changes import PlanChange


def pause_collection(
    ctx: BillingContext, subscription_id: str, behavior: PauseBehavior, resumes_at: datetime | None = None
) -> Subscription:
    """Stop collecting: the status stays active and access continues; the invoices generated
    meanwhile are kept as drafts, written off or voided."""
    pause = PauseCollection(behavior=behavior, resumes_at=resumes_at)
    return update_subscription(
        ctx, subscription_id, {"pause_collection": pause.model_dump(mode="json")}, "pause_collection"
    )


def resume_collection(ctx: BillingContext, subscription_id: str) -> Subscription:
    return update_subscription(ctx, subscription_id, {"pause_collection": None}, "resume_collection")


def resume(ctx: BillingContext, subscription_id: str) -> PlanChange:
    """Resume a paused subscription (Stripe: the billing cycle restarts now and the new period is
    invoiced at once; the subscription stays paused until that invoice is paid)."""
    sub = ctx.store.get_subscription(subscription_id)
    now = ctx.now()
    plan = resume_subscription(sub, now)
    settings = ctx.store.get_settings()
    customer = ctx.store.get_customer(sub.customer)
    resumed = plan.subscription
    draft = new_invoice(
        sub,
        derived_id("in", sub.id, "resume", now.isoformat()),
        [line.to_invoice_line() for line in plan.lines],
        resumed.period,
        now,
        BillingReason.SUBSCRIPTION_UPDATE,
    )
    resumed, invoice, moved = finish_invoice(ctx, resumed, draft, customer, settings)
    invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "resume"})
    saved, invoice = ctx.store.renew(resumed, invoice, settings.invoice_prefix, moved)
    ctx.emit(
        DomainEvent.of("invoice.created", invoice, now, cause="create"),
        DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
    )
    collected = collect_new(ctx, invoice, moved or customer)
    if collected.subscription is not None and collected.subscription.status is Status.ACTIVE:
        ctx.emit(DomainEvent.of("customer.subscription.resumed", collected.subscription, now, cause="resume"))
    return PlanChange(collected.subscription or saved, collected.invoice, upcoming=None)


__all__ = ["PauseBehavior", "pause_collection", "resume", "resume_collection"]
