"""Usage-based billing: meters, meter events, their aggregation over a billing period and the
in-arrears invoice line a metered item makes. Pure: no I/O; ``now`` is passed in.

Aggregations (Stripe's meters, Lago's billable metrics), over the events of one customer and meter in
one billing period, each event counted once whatever its deliveries (deduplicated by ``identifier``):

* ``count`` — the number of events;
* ``sum`` — the sum of their ``payload.value``;
* ``max`` — the largest ``payload.value``;
* ``unique_count`` — the number of distinct values of ``payload[value_property]``;
* ``latest`` — the ``payload.value`` of the last event by its timestamp (ties: the greater identifier,
  so that any order of arrival gives the same answer).

Lago's published example, two events of one user with values 10 and 20: count 2, sum 30, max 20,
unique count (of the user) 1, latest 20 (the later one). Every aggregation here is order-independent
and idempotent per identifier, so any shuffle and duplication of one event set aggregates the same.

Values are whole numbers ≥ 0 (Stripe's meter events take integer values), so a period's quantity is an
integer and a price's tiers apply to it unchanged; sub-cent prices come from ``unit_amount_decimal``
and a line is rounded once (``kassa.domain.pricing.price_total``).

A metered item is billed in arrears (Stripe): the invoice made at the end of a period charges that
period's usage next to the next period's fixed fees. What was already billed in the period (a usage
threshold's invoice) is the aggregate's ``billed_quantity``: a line charges
``total(quantity) − total(billed_quantity)``, so the lines of one period always add up to the total
of its final quantity, rounded once, and nothing is billed twice. An event that arrives after its
period's invoice was made is a *late* event: it is added to that period's aggregate and the next
invoice carries a late adjustment line with the difference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kassa.domain.errors import DomainError, InvalidInput
from kassa.domain.invoice import InvoiceLine, item_line, period_span
from kassa.domain.items import SubscriptionItem
from kassa.domain.periods import Period, ensure_utc
from kassa.domain.pricing import tier_dicts

#: events older than this are refused (Stripe: 35 days), and so are events from further in the future
PAST_WINDOW = timedelta(days=35)
FUTURE_WINDOW = timedelta(minutes=5)
#: a batch holds at most this many events (Lago's batch endpoint)
MAX_BATCH = 100
#: an identifier is remembered this long after the end of the period its event belongs to: longer
#: than any late event can arrive (PAST_WINDOW), so a replay inside the window is always a duplicate
DEDUPE_RETENTION = PAST_WINDOW + timedelta(days=1)
MAX_VALUE = 10**15
MAX_IDENTIFIER = 100
MAX_UNIQUE_VALUE = 200
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class UnknownReference(InvalidInput):
    """An event naming a meter (event_name) or a customer that does not exist: a 400 naming the field
    (the request is wrong, nothing at its path is missing), with Stripe's code for it."""

    code = "resource_missing"


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"

    @property
    def needs_value(self) -> bool:
        return self in (Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST)


class MeterStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"  # archived: new events are refused, prices on it keep billing what it has


class Meter(BaseModel):
    id: str
    event_name: str = Field(pattern=EVENT_NAME.pattern)
    display_name: str = Field(min_length=1, max_length=250)
    aggregation: Aggregation
    value_property: str = Field(default="value", min_length=1, max_length=100)
    status: MeterStatus = MeterStatus.ACTIVE
    created: datetime
    version: int = 0


class MeterEvent(BaseModel):
    """One accepted event, as validated (``value`` for sum, max and latest; ``unique`` for unique_count)."""

    model_config = ConfigDict(frozen=True)

    event_name: str
    meter: str
    customer: str
    identifier: str
    timestamp: datetime
    value: int = 0
    unique: str | None = None


def _field(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def parse_timestamp(raw: Any, param: str, now: datetime) -> datetime:
    """An event time: unix seconds (an integer) or ISO 8601 with a zone; default ``now``. It must lie
    within :data:`PAST_WINDOW` before ``now`` and :data:`FUTURE_WINDOW` after it."""
    if raw is None:
        return now
    if isinstance(raw, bool):
        raise InvalidInput(f"{param} is unix seconds or ISO 8601", param=param)
    if isinstance(raw, int):
        try:
            when = datetime.fromtimestamp(raw, tz=now.tzinfo)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(f"{param} is out of range", param=param) from None
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{param} is unix seconds or ISO 8601 (e.g. 2026-04-01T12:00:00Z)", param=param
            ) from None
        if when.tzinfo is None:
            raise InvalidInput(f"{param} needs a time zone (e.g. Z)", param=param)
    else:
        raise InvalidInput(f"{param} is unix seconds or ISO 8601", param=param)
    when = ensure_utc(when)
    if when < now - PAST_WINDOW:
        raise InvalidInput(
            f"{param} is more than {PAST_WINDOW.days} days in the past: such events are no longer accepted",
            param=param,
        )
    if when > now + FUTURE_WINDOW:
        raise InvalidInput(f"{param} is more than 5 minutes in the future", param=param)
    return when


def parse_value(raw: Any, param: str) -> int:
    """A whole number ≥ 0: a JSON integer or a string of digits (never a float or a boolean)."""
    if isinstance(raw, bool):
        raise InvalidInput(f"{param} must be a whole number, not a boolean", param=param)
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int):
        raise InvalidInput(f"{param} must be a whole number (an integer ≥ 0)", param=param)
    if raw < 0:
        raise InvalidInput(f"{param} must not be negative", param=param)
    if raw > MAX_VALUE:
        raise InvalidInput(f"{param} must be at most {MAX_VALUE:,}", param=param)
    return raw


def parse_event(raw: Any, meter_of: Callable[[str], Meter | None], now: datetime, prefix: str = "") -> MeterEvent:
    """An event body as a :class:`MeterEvent`; every refusal names its field (``events[3].payload.value``
    with ``prefix="events[3]."``). ``meter_of`` finds a meter by event name. The customer's existence
    is checked by the caller."""
    if not isinstance(raw, dict):
        raise InvalidInput("an event is a JSON object", param=prefix.rstrip(".") or "body")
    allowed = {"event_name", "customer", "identifier", "timestamp", "payload"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {_field(prefix, unknown[0])}", param=_field(prefix, unknown[0]))
    for name in ("event_name", "customer", "identifier"):
        value = raw.get(name)
        if value is None:
            raise InvalidInput(f"missing required field {_field(prefix, name)}", param=_field(prefix, name))
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{_field(prefix, name)} must be a non-empty string", param=_field(prefix, name))
    identifier = raw["identifier"]
    if len(identifier) > MAX_IDENTIFIER:
        raise InvalidInput(
            f"{_field(prefix, 'identifier')} is at most {MAX_IDENTIFIER} characters", param=_field(prefix, "identifier")
        )
    meter = meter_of(raw["event_name"])
    if meter is None:
        raise UnknownReference(
            f"no meter for event_name {raw['event_name']!r}: create one with POST /v1/meters",
            param=_field(prefix, "event_name"),
        )
    if meter.status is not MeterStatus.ACTIVE:
        raise InvalidInput(
            f"meter {meter.id} ({meter.event_name}) is archived: it accepts no events",
            param=_field(prefix, "event_name"),
        )
    timestamp = parse_timestamp(raw.get("timestamp"), _field(prefix, "timestamp"), now)
    payload = raw.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidInput(f"{_field(prefix, 'payload')} is a JSON object", param=_field(prefix, "payload"))
    value, unique = 0, None
    if meter.aggregation.needs_value:
        at = _field(prefix, f"payload.{meter.value_property}")
        if meter.value_property not in payload or payload[meter.value_property] is None:
            raise InvalidInput(
                f"missing required field {at} (meter {meter.id} aggregates {meter.aggregation.value})", param=at
            )
        value = parse_value(payload[meter.value_property], at)
    elif meter.aggregation is Aggregation.UNIQUE_COUNT:
        at = _field(prefix, f"payload.{meter.value_property}")
        raw_unique = payload.get(meter.value_property)
        if raw_unique is None or isinstance(raw_unique, bool | dict | list) or raw_unique == "":
            raise InvalidInput(f"missing required field {at} (a string or an integer to count once)", param=at)
        unique = str(raw_unique)
        if len(unique) > MAX_UNIQUE_VALUE:
            raise InvalidInput(f"{at} is at most {MAX_UNIQUE_VALUE} characters", param=at)
    return MeterEvent(
        event_name=meter.event_name,
        meter=meter.id,
        customer=raw["customer"],
        identifier=identifier,
        timestamp=timestamp,
        value=value,
        unique=unique,
    )


class Rejection(BaseModel):
    """A refused event of a batch: its index and the error naming the field."""

    index: int
    code: str
    message: str
    param: str | None = None

    @classmethod
    def of(cls, index: int, error: DomainError) -> Rejection:
        return cls(index=index, code=error.code, message=error.message, param=error.param)


class ErrorReport(BaseModel):
    """What ``billing.meter.error_report_triggered`` carries: the refused events' indexes and errors."""

    id: str
    errors: list[Rejection]
    created: datetime


# ---------------------------------------------------------------- aggregation


def later(a_at: datetime, a_id: str, b_at: datetime | None, b_id: str | None) -> bool:
    """Whether event (a_at, a_id) comes after (b_at, b_id) for ``latest``: by timestamp, ties by identifier."""
    if b_at is None or b_id is None:
        return True
    return (a_at, a_id) > (b_at, b_id)


class UsageState(BaseModel):
    """What the store keeps per (subscription, meter, period): enough for every aggregation. ``seq``
    counts the writes that changed it (a renewal bills it only if it did not change since it was read);
    ``closed``: the period's invoice was made, later events are late; ``billed_quantity``: the quantity
    already invoiced in this period (a threshold's invoice, the period-end invoice)."""

    count: int = 0
    sum: int = 0
    max: int | None = None
    latest: int | None = None
    latest_at: datetime | None = None
    latest_id: str | None = None
    unique: int = 0
    seq: int = 0
    closed: bool = False
    billed_quantity: int = 0

    def quantity(self, aggregation: Aggregation) -> int:
        return {
            Aggregation.COUNT: self.count,
            Aggregation.SUM: self.sum,
            Aggregation.MAX: self.max or 0,
            Aggregation.UNIQUE_COUNT: self.unique,
            Aggregation.LATEST: self.latest or 0,
        }[aggregation]


def fold(state: UsageState, events: Iterable[MeterEvent], seen_unique: set[str]) -> UsageState:
    """``state`` with new (never seen) ``events`` applied; ``seen_unique`` holds the distinct values
    counted so far and is updated. The reference the stores implement with atomic writes."""
    changes = state.model_dump()
    for event in events:
        changes["count"] += 1
        changes["sum"] += event.value
        changes["max"] = event.value if changes["max"] is None else max(changes["max"], event.value)
        if later(event.timestamp, event.identifier, changes["latest_at"], changes["latest_id"]):
            changes.update(latest=event.value, latest_at=event.timestamp, latest_id=event.identifier)
        if event.unique is not None and event.unique not in seen_unique:
            seen_unique.add(event.unique)
            changes["unique"] += 1
        changes["seq"] += 1
    return UsageState(**changes)


def aggregate(aggregation: Aggregation, events: Iterable[MeterEvent]) -> int:
    """The quantity of a set of events: duplicates (same identifier) count once, order does not matter."""
    unique: dict[str, MeterEvent] = {}
    for event in events:
        unique.setdefault(event.identifier, event)
    return fold(UsageState(), sorted(unique.values(), key=lambda e: e.identifier), set()).quantity(aggregation)


# ---------------------------------------------------------------- billing in arrears


def usage_period(anchor_period: Period, at: datetime, period_of: Callable[[datetime], Period]) -> Period:
    """The billing period an event at ``at`` belongs to: the current one, or the one ``period_of`` gives."""
    if anchor_period.start <= at < anchor_period.end:
        return anchor_period
    return period_of(at)


class UsageRef(BaseModel):
    """What an invoice line of usage billed, so the store can record it with the invoice, atomically:
    the aggregate (meter, period) at ``seq``, billed up to ``quantity``; ``close``: the period is over
    (later events are late); ``late``: the line is a late adjustment (its period leaves the late list)."""

    model_config = ConfigDict(frozen=True)

    meter: str
    period_start: datetime
    quantity: int
    seq: int
    close: bool = True
    late: bool = False


def usage_amount(item: SubscriptionItem, quantity: int, billed_quantity: int) -> int:
    """What ``quantity`` units cost beyond the ``billed_quantity`` already invoiced in the period:
    ``total(quantity) − total(billed_quantity)``, each total rounded once (so the lines of a period
    add up to the rounded total of its final quantity)."""
    return item.priced_usage(quantity).amount - item.priced_usage(billed_quantity).amount


def usage_line(
    item: SubscriptionItem,
    label: str,
    period: Period,
    state: UsageState,
    aggregation: Aggregation,
    *,
    close: bool = True,
    late: bool = False,
) -> InvoiceLine:
    """The line billing ``item``'s usage in ``period`` not billed yet (a late adjustment with ``late``)."""
    quantity = state.quantity(aggregation)
    priced = item.priced_usage(quantity)
    amount = usage_amount(item, quantity, state.billed_quantity)
    span = period_span(period)
    description = f"{quantity} × {label} ({span})"
    if late:
        description = f"Late usage: {quantity - state.billed_quantity} × {label} ({span})"
    elif state.billed_quantity:
        description = f"{quantity} × {label} ({span}), {state.billed_quantity} already invoiced"
    return item_line(
        item,
        period,
        description,
        amount,
        quantity - state.billed_quantity if late else quantity,
        tier_dicts(priced),
        unit_amount_decimal=item.unit_amount_decimal,
        usage=UsageRef(
            meter=item.meter or "",
            period_start=period.start,
            quantity=quantity,
            seq=state.seq,
            close=close,
            late=late,
        ).model_dump(mode="json"),
    )


def usage_refs(lines: Iterable[InvoiceLine]) -> list[UsageRef]:
    """The usage an invoice's lines bill (what the store records with it)."""
    return [UsageRef.model_validate(line.usage) for line in lines if line.usage]


def accrued(items: Mapping[str, tuple[SubscriptionItem, UsageState, Aggregation]]) -> int:
    """The amount of usage accrued and not invoiced yet, over a subscription's metered items."""
    return sum(
        usage_amount(item, state.quantity(aggregation), state.billed_quantity)
        for item, state, aggregation in items.values()
    )


class UsageAlert(BaseModel):
    """What ``usage.threshold_reached`` carries: a customer's usage accrued in a period reached its alert."""

    id: str  # the customer
    customer: str
    period_start: datetime
    amount: int  # accrued and not invoiced, minor units of ``currency``
    amount_gte: int
    currency: str


def threshold_reached(accrued_amount: int, amount_gte: int | None) -> bool:
    """Stripe's ``billing_thresholds.amount_gte``: an invoice for the usage so far is due."""
    return amount_gte is not None and accrued_amount >= amount_gte > 0
