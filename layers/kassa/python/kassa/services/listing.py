"""Use case: merchant-wide lists and search — customers, subscriptions, invoices — in Stripe's shapes.

The request's query parameters are checked here (a bad value is ``InvalidInput`` naming the parameter,
e.g. ``status`` or ``created[gte]``) and turned into a ``ListQuery``; the store answers it from its
indexes (never a Scan, see docs/data-model.md). Filters that match nothing give an empty page.

* ``limit`` (checked by the API, 1–100), ``starting_after`` (older objects) or ``ending_before``
  (newer ones), newest first;
* ``created`` (exact), ``created[gte]``, ``created[gt]``, ``created[lte]``, ``created[lt]``: unix
  seconds or ISO 8601 (a date is its midnight UTC; a time without offset is UTC), in whole seconds;
* customers: ``email`` (exact, case-insensitive), ``name`` (a part of the name, case-insensitive:
  the dashboard's search; read through the listing index, so a rare name costs reads of many customers);
  subscriptions: ``status`` (a status, ``all`` or ``ended``; by default every status but ``canceled``,
  as Stripe), ``customer``, ``price``; invoices: ``status``, ``customer``, ``subscription``, ``price``
  (a line on it), ``total[gte]`` / ``total[lte]`` (minor units).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.subscription import Status
from kassa.services.ports import BillingStore, ListQuery, Page

Params = Mapping[str, str | None]

SUBSCRIPTION_STATUSES = frozenset(s.value for s in Status)
INVOICE_STATUSES = frozenset(s.value for s in InvoiceStatus)
#: Stripe: without ``status``, every subscription that is not canceled
DEFAULT_SUBSCRIPTION_STATUSES = SUBSCRIPTION_STATUSES - {Status.CANCELED.value}
ENDED = frozenset({Status.CANCELED.value, Status.INCOMPLETE_EXPIRED.value})
SECOND = timedelta(seconds=1)


def list_customers(store: BillingStore, params: Params, limit: int) -> Page:
    email = _text(params, "email")
    return store.list_customers(_query(params, limit, email=email, name=_text(params, "name")))


def list_subscriptions(store: BillingStore, params: Params, limit: int) -> Page:
    raw = _text(params, "status")
    if raw is None:
        statuses: frozenset[str] | None = DEFAULT_SUBSCRIPTION_STATUSES
    elif raw == "all":
        statuses = None
    elif raw == "ended":
        statuses = ENDED
    elif raw in SUBSCRIPTION_STATUSES:
        statuses = frozenset({raw})
    else:
        allowed = ", ".join(sorted(SUBSCRIPTION_STATUSES | {"all", "ended"}))
        raise InvalidInput(f"status must be one of {allowed}", param="status")
    query = _query(params, limit, statuses=statuses, customer=_text(params, "customer"), price=_text(params, "price"))
    return store.list_subscriptions(query)


def list_invoices(store: BillingStore, params: Params, limit: int) -> Page:
    raw = _text(params, "status")
    if raw is not None and raw not in INVOICE_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(sorted(INVOICE_STATUSES))}", param="status")
    statuses = frozenset({raw}) if raw is not None else None
    query = _query(
        params,
        limit,
        statuses=statuses,
        customer=_text(params, "customer"),
        price=_text(params, "price"),
        subscription=_text(params, "subscription"),
        total_gte=_amount(params, "total[gte]"),
        total_lte=_amount(params, "total[lte]"),
    )
    if query.total_gte is not None and query.total_lte is not None and query.total_gte > query.total_lte:
        raise InvalidInput("total[gte] is above total[lte]", param="total[gte]")
    return store.list_invoices(query)


MAX_AMOUNT = 10**12  # far above any invoice (Stripe caps an amount at 8 digits)


def _amount(params: Params, name: str) -> int | None:
    raw = _text(params, name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 13 or int(raw) > MAX_AMOUNT:
        raise InvalidInput(f"{name} must be a whole number of minor units (e.g. 2500 for 25.00)", param=name)
    return int(raw)


def _query(
    params: Params,
    limit: int,
    *,
    statuses: frozenset[str] | None = None,
    customer: str | None = None,
    price: str | None = None,
    email: str | None = None,
    name: str | None = None,
    subscription: str | None = None,
    total_gte: int | None = None,
    total_lte: int | None = None,
) -> ListQuery:
    starting_after, ending_before = _text(params, "starting_after"), _text(params, "ending_before")
    if starting_after and ending_before:
        raise InvalidInput("give starting_after or ending_before, not both", param="ending_before")
    gte, lte = created_range(params)
    return ListQuery(
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
        statuses=statuses,
        customer=customer,
        price=price,
        email=email,
        name=name,
        subscription=subscription,
        total_gte=total_gte,
        total_lte=total_lte,
        created_gte=gte,
        created_lte=lte,
    )


def created_range(params: Params) -> tuple[datetime | None, datetime | None]:
    """``created`` / ``created[gte|gt|lte|lt]`` as an inclusive range of whole seconds."""
    bounds: list[tuple[str, datetime | None, datetime | None]] = []  # (param, low, high)
    for name in ("created", "created[gte]", "created[gt]", "created[lte]", "created[lt]"):
        raw = _text(params, name)
        if raw is None:
            continue
        when = parse_time(raw, name)
        floor = when.replace(microsecond=0)
        ceil = floor if when == floor else floor + SECOND
        if name == "created":
            bounds.append((name, ceil, floor))
        elif name == "created[gte]":
            bounds.append((name, ceil, None))
        elif name == "created[gt]":
            bounds.append((name, floor + SECOND, None))
        elif name == "created[lte]":
            bounds.append((name, None, floor))
        else:
            bounds.append((name, None, ceil - SECOND))
    lows = [(low, name) for name, low, _ in bounds if low is not None]
    highs = [(high, name) for name, _, high in bounds if high is not None]
    gte = max(lows)[0] if lows else None
    lte = min(highs)[0] if highs else None
    if gte is not None and lte is not None and gte > lte:
        name = max(lows)[1]
        raise InvalidInput(f"{name} is after the end of the range ({min(highs)[1]})", param=name)
    return gte, lte


def parse_time(raw: str, param: str) -> datetime:
    """Unix seconds or ISO 8601 (``2026-03-31``, ``2026-03-31T09:00:00Z``, with an offset) in UTC."""
    text = raw.strip()
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text), tz=UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError) as error:
        raise InvalidInput(
            f"{param} must be unix seconds or an ISO 8601 date or time, like 1774947600 or 2026-03-31T09:00:00Z",
            param=param,
        ) from error
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise InvalidInput(f"{name} must not be empty", param=name)
    return value
