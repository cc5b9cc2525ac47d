"""Use case: usage-based billing — meters, ingesting meter events (one or a batch of up to 100), the
usage a subscription accrued, its in-arrears invoice lines (with late adjustments), and invoices for
usage thresholds (progressive billing). The rules are ``kassa.domain.usage``; see docs/usage.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kassa.domain.customer import Customer
from kassa.domain.errors import DomainError, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.ids import derived_id, new_id
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine
from kassa.domain.items import SubscriptionItem
from kassa.domain.periods import Period, period_at
from kassa.domain.subscription import TERMINAL, Status, Subscription
from kassa.domain.usage import (
    DEDUPE_RETENTION,
    MAX_BATCH,
    Aggregation,
    ErrorReport,
    Meter,
    MeterEvent,
    MeterStatus,
    Rejection,
    UnknownReference,
    UsageAlert,
    UsageState,
    parse_event,
    threshold_reached,
    usage_amount,
    usage_line,
)
from kassa.services.context import BillingContext
from kassa.services.ports import BillingStore, Page, UsageKey, UsageOutcome, UsageWrite, WorkQueue

# ---------------------------------------------------------------- meters


def create_meter(
    ctx: BillingContext, *, event_name: str, display_name: str, aggregation: Aggregation, value_property: str | None
) -> Meter:
    if aggregation is Aggregation.COUNT and value_property:
        raise InvalidInput("a count meter has no value_property", param="value_property")
    meter = Meter(
        id=new_id("mtr"),
        event_name=event_name,
        display_name=display_name,
        aggregation=aggregation,
        value_property=value_property or "value",
        created=ctx.now(),
    )
    ctx.store.put_meter(meter)
    ctx.emit(DomainEvent.of("billing.meter.created", meter, ctx.now(), cause="create"))
    return meter


def archive_meter(ctx: BillingContext, meter_id: str) -> Meter:
    """Archive (``inactive``): new events are refused; what it recorded is still billed."""
    meter = ctx.store.get_meter(meter_id)
    if meter.status is MeterStatus.INACTIVE:
        return meter
    archived = ctx.store.save_meter(meter.model_copy(update={"status": MeterStatus.INACTIVE}))
    ctx.emit(DomainEvent.of("billing.meter.deactivated", archived, ctx.now(), cause="archive"))
    return archived


def list_meters(store: BillingStore, limit: int, starting_after: str | None) -> Page:
    return store.list_meters(limit, starting_after)


# ---------------------------------------------------------------- ingestion


@dataclass
class Ingested:
    """The answer to one call: per accepted event its index, identifier and outcome (accepted, duplicate,
    late); per refused event its index and error naming the field."""

    results: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    thresholds: list[str] = field(default_factory=list)  # subscriptions whose usage threshold was passed


class _Lookups:
    """What a call reads once however many events name it: meters, customers' subscriptions."""

    def __init__(self, store: BillingStore) -> None:
        self.store = store
        self.meters: dict[str, Meter | None] = {}
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.customers: dict[str, Customer] = {}
        self.meters_by_id: dict[str, Meter] = {}
        self.accrued: dict[str, int] = {}  # per subscription: its usage accrued, not invoiced

    def meter(self, event_name: str) -> Meter | None:
        if event_name not in self.meters:
            found = self.meters[event_name] = self.store.find_meter(event_name)
            if found is not None:
                self.meters_by_id[found.id] = found
        return self.meters[event_name]

    def subscriptions_of(self, customer: str, param: str) -> list[Subscription]:
        if customer not in self.subscriptions:
            try:
                self.customers[customer] = self.store.get_customer(customer)
            except NotFound:
                raise UnknownReference(f"no such customer: {customer}", param=param) from None
            self.subscriptions[customer] = self.store.list_customer_subscriptions(customer)
        return self.subscriptions[customer]


def billing_item(subscriptions: Sequence[Subscription], meter_id: str) -> tuple[Subscription, SubscriptionItem] | None:
    """The live subscription item of a customer that bills ``meter_id`` (the newest subscription first)."""
    for sub in subscriptions:
        if sub.status in TERMINAL:
            continue
        for item in sub.items:
            if item.metered and item.meter == meter_id:
                return sub, item
    return None


def event_period(sub: Subscription, at: datetime) -> Period:
    """The billing period of ``sub`` an event at ``at`` belongs to (a past one for a late event)."""
    if sub.current_period_start <= at < sub.current_period_end:
        return sub.period
    return period_at(sub.billing_cycle_anchor, sub.interval, sub.interval_count, at)


def _write_for(event: MeterEvent, meter: Meter, lookups: _Lookups, prefix: str) -> UsageWrite:
    found = billing_item(lookups.subscriptions_of(event.customer, f"{prefix}customer"), meter.id)
    if found is None:
        raise InvalidInput(
            f"customer {event.customer} has no subscription with a price on meter {meter.id} ({meter.event_name})",
            param=f"{prefix}customer",
        )
    sub, _ = found
    if event.timestamp < sub.created:
        raise InvalidInput(f"{prefix}timestamp is before the subscription {sub.id} started", param=f"{prefix}timestamp")
    period = event_period(sub, event.timestamp)
    return UsageWrite(
        event=event,
        key=UsageKey(sub.id, meter.id, period.start),
        aggregation=meter.aggregation,
        expires_at=period.end + DEDUPE_RETENTION,
    )


def ingest(ctx: BillingContext, raw_events: Any, *, batch: bool, queue: WorkQueue | None = None) -> Ingested:
    """Validate and record meter events, each once (by customer and identifier). In a batch the valid
    events are recorded and each refused one is listed with its index; a single event that is refused
    raises (a 4xx naming the field). Refusals are published as ``billing.meter.error_report_triggered``;
    subscriptions whose usage passed their ``billing_thresholds.amount_gte`` are queued for a
    threshold invoice (``queue``); a customer whose usage alert is reached gets ``usage.threshold_reached``."""
    if batch:
        if not isinstance(raw_events, list):
            raise InvalidInput("events is a list of meter events", param="events")
        if not raw_events:
            raise InvalidInput("events holds at least one event", param="events")
        if len(raw_events) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} events", param="events")
    events = raw_events if batch else [raw_events]
    now = ctx.clock.now()
    lookups = _Lookups(ctx.store)
    out = Ingested()
    writes: list[tuple[int, UsageWrite]] = []
    for index, raw in enumerate(events):
        prefix = f"events[{index}]." if batch else ""
        try:
            event = parse_event(raw, lookups.meter, now, prefix)
            meter = lookups.meter(event.event_name)
            assert meter is not None
            writes.append((index, _write_for(event, meter, lookups, prefix)))
        except DomainError as error:
            if not batch:
                _report(ctx, [Rejection.of(index, error)], now)
                raise
            out.rejected.append(Rejection.of(index, error))
    outcomes = ctx.store.record_usage([w for _, w in writes]) if writes else []
    for (index, write), outcome in zip(writes, outcomes, strict=True):
        out.results.append(
            {
                "index": index,
                "identifier": write.event.identifier,
                "status": outcome.value,
                "duplicate": outcome is UsageOutcome.DUPLICATE,
                "late": outcome is UsageOutcome.LATE,
                "subscription": write.key.subscription,
                "period_start": write.key.period_start.isoformat(),
            }
        )
    if out.rejected:
        _report(ctx, out.rejected, now)
    counted = [w for (_, w), o in zip(writes, outcomes, strict=True) if o is not UsageOutcome.DUPLICATE]
    touched = {w.key.subscription for w in counted}
    for sub in [s for subs in lookups.subscriptions.values() for s in subs if s.id in touched]:
        if _threshold_due(ctx, sub, lookups):  # the subscription as read for this call: its thresholds and period
            out.thresholds.append(sub.id)
    for customer_id in sorted({w.event.customer for w in counted}):
        _usage_alert(ctx, lookups.customers[customer_id], lookups.subscriptions[customer_id], lookups)
    if out.thresholds and queue is not None:
        queue.send([{"subscription": sub_id, "threshold": True} for sub_id in out.thresholds])
    return out


def _report(ctx: BillingContext, rejected: list[Rejection], now: datetime) -> None:
    """Stripe's ``billing.meter.error_report_triggered``: what was refused and why (no event bodies)."""
    report = ErrorReport(
        id=derived_id("mer", now.isoformat(), *(f"{r.index}:{r.param}:{r.code}" for r in rejected)),
        errors=rejected,
        created=now,
    )
    ctx.emit(DomainEvent.of("billing.meter.error_report_triggered", report, now, cause="rejected"))


# ---------------------------------------------------------------- what a subscription accrued


def _meter_of(ctx: BillingContext, meter_id: str) -> Meter:
    return ctx.store.get_meter(meter_id)


def metered_items(sub: Subscription) -> list[SubscriptionItem]:
    return [item for item in sub.items if item.metered and item.meter]


def usage_lines(ctx: BillingContext, sub: Subscription, period: Period, names: dict[str, str]) -> list[InvoiceLine]:
    """The in-arrears lines of ``sub``'s metered items for ``period`` (ending now), and a late
    adjustment line for each earlier period that received events after it was invoiced."""
    lines = []
    for item in metered_items(sub):
        assert item.meter is not None
        meter = _meter_of(ctx, item.meter)
        label = names.get(item.price) or item.label
        state = ctx.store.get_usage(UsageKey(sub.id, meter.id, period.start))
        for late_start in ctx.store.late_usage(sub.id, meter.id):
            if late_start >= period.start:
                continue
            late_state = ctx.store.get_usage(UsageKey(sub.id, meter.id, late_start))
            late_period = Period(
                late_start, period_at(sub.billing_cycle_anchor, sub.interval, sub.interval_count, late_start).end
            )
            lines.append(usage_line(item, label, late_period, late_state, meter.aggregation, late=True))
        lines.append(usage_line(item, label, period, state, meter.aggregation))
    return lines


def changed_usage_lines(
    ctx: BillingContext, sub: Subscription, new_items: Sequence[SubscriptionItem], now: datetime
) -> list[InvoiceLine]:
    """A change that removes a metered item or switches it to another price bills the usage so far
    in the period at the old price (the aggregate remembers it as invoiced: a price on the same meter
    then bills only what comes after)."""
    from kassa.services.invoicing import product_names

    after = {item.id: item for item in new_items}
    lines = []
    names: dict[str, str] | None = None
    for item in metered_items(sub):
        kept = after.get(item.id)
        if kept is not None and kept.price == item.price:
            continue
        assert item.meter is not None
        meter = _meter_of(ctx, item.meter)
        state = ctx.store.get_usage(UsageKey(sub.id, meter.id, sub.current_period_start))
        names = names if names is not None else product_names(ctx, sub)
        so_far = Period(sub.current_period_start, max(now, sub.current_period_start + timedelta(seconds=1)))
        lines.append(
            usage_line(item, names.get(item.price) or item.label, so_far, state, meter.aggregation, close=False)
        )
    return lines


def subscription_usage(ctx: BillingContext, subscription_id: str) -> dict[str, Any]:
    """Per metered item: the usage so far in the current period, what it costs so far, what was invoiced."""
    sub = ctx.store.get_subscription(subscription_id)
    data = []
    for item in metered_items(sub):
        assert item.meter is not None
        meter = _meter_of(ctx, item.meter)
        state = ctx.store.get_usage(UsageKey(sub.id, meter.id, sub.current_period_start))
        quantity = state.quantity(meter.aggregation)
        data.append(
            {
                "object": "usage_summary",
                "subscription_item": item.id,
                "price": item.price,
                "meter": meter.id,
                "event_name": meter.event_name,
                "aggregation": meter.aggregation.value,
                "period_start": sub.current_period_start.isoformat(),
                "period_end": sub.current_period_end.isoformat(),
                "quantity": quantity,
                "events": state.count,
                "amount": item.priced_usage(quantity).amount,
                "invoiced_quantity": state.billed_quantity,
                "amount_not_invoiced": usage_amount(item, quantity, state.billed_quantity),
                "currency": item.currency,
                "late_periods": [p.isoformat() for p in ctx.store.late_usage(sub.id, meter.id)],
            }
        )
    return {"object": "list", "data": data, "has_more": False, "subscription": sub.id}


def _accrued(
    ctx: BillingContext, sub: Subscription, meters: dict[str, Meter] | None = None
) -> tuple[int, dict[str, tuple[SubscriptionItem, UsageState, Meter]]]:
    found = {}
    total = 0
    for item in metered_items(sub):
        assert item.meter is not None and item.id is not None
        meter = meters.get(item.meter) if meters is not None else None
        if meter is None:
            meter = _meter_of(ctx, item.meter)
            if meters is not None:
                meters[meter.id] = meter
        state = ctx.store.get_usage(UsageKey(sub.id, meter.id, sub.current_period_start))
        found[item.id] = (item, state, meter)
        total += usage_amount(item, state.quantity(meter.aggregation), state.billed_quantity)
    return total, found


def _accrued_once(ctx: BillingContext, sub: Subscription, lookups: _Lookups) -> int:
    """``_accrued``'s total, read once per call (the threshold and the alert both need it)."""
    if sub.id not in lookups.accrued:
        lookups.accrued[sub.id] = _accrued(ctx, sub, lookups.meters_by_id)[0]
    return lookups.accrued[sub.id]


def _threshold_due(ctx: BillingContext, sub: Subscription, lookups: _Lookups) -> bool:
    amount_gte = (sub.billing_thresholds or {}).get("amount_gte")
    if amount_gte is None or sub.status not in (Status.ACTIVE, Status.PAST_DUE):
        return False
    return threshold_reached(_accrued_once(ctx, sub, lookups), amount_gte)


def _usage_alert(ctx: BillingContext, customer: Customer, subscriptions: list[Subscription], lookups: _Lookups) -> None:
    """The customer's optional usage alert: ``usage.threshold_reached`` when the usage accrued (not
    invoiced) over its metered subscriptions' current periods reaches ``usage_alert_amount_gte``. The
    event id is derived from the customer and the period, so consumers see it once per period
    however many calls find it reached."""
    amount_gte = customer.usage_alert_amount_gte
    live = [s for s in subscriptions if s.status not in TERMINAL and metered_items(s)]
    if amount_gte is None or not live:
        return
    total = sum(_accrued_once(ctx, sub, lookups) for sub in live)
    if threshold_reached(total, amount_gte):
        period_start = live[0].current_period_start
        alert = UsageAlert(id=customer.id, customer=customer.id, period_start=period_start, amount=total,
                           amount_gte=amount_gte, currency=live[0].currency)  # fmt: skip
        ctx.emit(DomainEvent.of("usage.threshold_reached", alert, ctx.now(), cause=f"alert:{period_start.isoformat()}"))


def set_usage_alert(ctx: BillingContext, customer_id: str, amount_gte: int | None) -> Customer:
    """Set (or, with None, remove) the customer's usage alert."""
    from kassa.domain.errors import Conflict

    for _ in range(5):
        customer = ctx.store.get_customer(customer_id)
        try:
            return ctx.store.save_customer(customer.model_copy(update={"usage_alert_amount_gte": amount_gte}))
        except Conflict:
            continue
    raise Conflict(f"customer {customer_id} kept changing; retry")


def bill_threshold(ctx: BillingContext, subscription_id: str) -> str:
    """Progressive billing: when the usage accrued in the current period and not invoiced yet reaches
    ``billing_thresholds.amount_gte``, invoice it now and charge it (the period-end invoice then
    bills only the rest). Safe to repeat: below the threshold (already invoiced) nothing happens, and
    the invoice records the usage it billed under each aggregate's ``seq``."""
    from kassa.services.collection import collect_new
    from kassa.services.invoicing import finish_invoice, new_invoice, product_names

    sub = ctx.store.get_subscription(subscription_id)
    amount_gte = (sub.billing_thresholds or {}).get("amount_gte")
    if amount_gte is None or sub.status not in (Status.ACTIVE, Status.PAST_DUE):
        return "no_threshold"
    total, found = _accrued(ctx, sub)
    if not threshold_reached(total, amount_gte):
        return "below_threshold"
    now = ctx.now()
    so_far = Period(sub.current_period_start, max(now, sub.current_period_start + timedelta(seconds=1)))
    names = product_names(ctx, sub)
    lines = [
        usage_line(item, names.get(item.price) or item.label, so_far, state, meter.aggregation, close=False)
        for item, state, meter in found.values()
    ]  # fmt: skip
    draft = new_invoice(
        sub,
        derived_id("in", sub.id, "threshold", sub.current_period_start.isoformat(), str(total), now.isoformat()),
        lines,
        so_far,
        now,
        BillingReason.SUBSCRIPTION_THRESHOLD,
    )
    customer = ctx.store.get_customer(sub.customer)
    settings = ctx.store.get_settings()
    sub, invoice, moved = finish_invoice(ctx, sub, draft, customer, settings)
    invoice = invoice.model_copy(update={"attempt_count": 1, "attempt_trigger": "threshold"})
    saved, invoice = ctx.store.renew(sub, invoice, settings.invoice_prefix, moved)
    ctx.emit(
        DomainEvent.of("invoice.created", invoice, now, cause="create"),
        DomainEvent.of("invoice.finalized", invoice, now, cause="finalize"),
    )
    return collect_new(ctx, invoice, moved or customer).status


def invoice_usage(invoice: Invoice) -> int:
    """The usage amount an invoice bills (its usage lines)."""
    return sum(line.amount for line in invoice.lines if line.usage)
