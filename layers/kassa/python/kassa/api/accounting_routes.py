"""Routes of the audit trail, the accounting journal, the bookkeeping CSVs and the revenue report
(docs/audit.md, docs/accounting.md, docs/revenue.md), on the api function's resolver."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from kassa.adapters import container
from kassa.api import openapi
from kassa.api.common import csv_response, query_date, query_limit, query_month, wants_csv
from kassa.domain.errors import InvalidInput


def _accounting() -> Any:
    """The bookkeeping use cases (journal, revenue, exports): imported by the first accounting request,
    not at a cold start of the api function (most requests never ask for them)."""
    from kassa.services import accounting

    return accounting


logger = logging.getLogger("kassa.api.audit")

router = Router()
CSV = openapi.document_responses("text/csv")

DEFAULT_DAYS = 31  # the merchant-wide audit listing without ``from``: the last month
MAX_MONTHS = 13  # the merchant-wide audit listing reads one index partition per month


def _instant(name: str, default: datetime) -> datetime:
    """A ``from`` / ``to`` query parameter: an ISO 8601 time, or a date (``to``: its whole day)."""
    raw = router.current_event.get_query_string_value(name)
    if not raw:
        return default
    try:
        if "T" in raw:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        else:
            value = datetime.combine(date.fromisoformat(raw), time.min)
            if name == "to":
                value += timedelta(days=1, microseconds=-1)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD) or a time (ISO 8601)", param=name) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _deliver_pending(log: Any) -> None:
    """Entries left behind in pending records (docs/audit.md) are written before the trail is read."""
    from kassa.services import audit

    try:
        audit.deliver_stale(log, container.store(), container.clocks.current())
    except Exception:  # the listing still answers; the next request tries again
        logger.exception("pending audit records not delivered")


@router.get("/v1/audit_events", tags=["audit"])
def list_audit_events() -> dict[str, Any]:
    """The audit trail, oldest first: every change made through the API (``object=`` one object's,
    ``from`` / ``to`` dates or times, cursor ``starting_after``)."""
    query = router.current_event.get_query_string_value
    object_id = query("object") or None
    from kassa.services.audit import ID_PATTERN

    if object_id is not None and not ID_PATTERN.match(object_id):  # not a 500 from an over-long index key
        raise InvalidInput("object must be an id (letters, digits, _ and -, at most 64)", param="object")
    now = container.clocks.current().now()  # not rounded to the second: entries keep their microseconds
    start = _instant("from", datetime(2000, 1, 1, tzinfo=UTC) if object_id else now - timedelta(days=DEFAULT_DAYS))
    end = _instant("to", now)
    if end < start:
        raise InvalidInput("to is before from", param="to")
    if object_id is None and (end.year - start.year) * 12 + end.month - start.month >= MAX_MONTHS:
        raise InvalidInput(f"without object, a listing covers at most {MAX_MONTHS} months", param="from")
    log = container.audit_log()
    _deliver_pending(log)
    page = log.list(object_id, start, end, query_limit(router), query("starting_after") or None)
    data = [{"object": "audit_event", **event.model_dump(mode="json")} for event in page.items]
    return {"object": "list", "data": data, "has_more": page.has_more}


@router.get("/v1/exports/journal", tags=["accounting"], responses=openapi.JSON_OR_CSV)
def export_journal() -> Any:
    """Double-entry journal lines of [from, to] (dates), balanced per document (JSON, or format=csv)."""
    first, last = query_date(router, "from"), query_date(router, "to")
    as_csv = wants_csv(router)
    from kassa.domain.journal import render_journal_csv

    lines = _accounting().journal_lines(container.store(), first, last)
    if as_csv:
        return csv_response(render_journal_csv(lines), f"journal-{first}-{last}.csv")
    totals: dict[str, dict[str, int]] = {}
    for line in lines:
        total = totals.setdefault(line.currency, {"debit": 0, "credit": 0})
        total["debit"] += line.debit
        total["credit"] += line.credit
    return {
        "object": "journal",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "data": [line.as_json() for line in lines],
        "totals": [{"currency": c, **t} for c, t in sorted(totals.items())],
    }


@router.get("/v1/exports/invoices", tags=["accounting"], responses=CSV)
def export_invoices() -> Any:
    """Invoices booked in [from, to], one CSV row per line, for bookkeeping imports."""
    first, last = query_date(router, "from"), query_date(router, "to")
    return csv_response(_accounting().invoices_export(container.store(), first, last), f"invoices-{first}-{last}.csv")


@router.get("/v1/exports/payments", tags=["accounting"], responses=CSV)
def export_payments() -> Any:
    """Payments received and refunds paid out in [from, to], as CSV."""
    first, last = query_date(router, "from"), query_date(router, "to")
    return csv_response(_accounting().payments_export(container.store(), first, last), f"payments-{first}-{last}.csv")


@router.get("/v1/exports/customers", tags=["accounting"], responses=CSV)
def export_customers() -> Any:
    """The customers invoiced in [from, to], as CSV (contacts for bookkeeping imports)."""
    first, last = query_date(router, "from"), query_date(router, "to")
    return csv_response(_accounting().customers_export(container.store(), first, last), f"customers-{first}-{last}.csv")


@router.get("/v1/reports/revenue", tags=["accounting"], responses=openapi.JSON_OR_CSV)
def revenue_report() -> Any:
    """Billed, recognized and deferred revenue per month (from, to: YYYY-MM) and currency (JSON, or format=csv)."""
    first, last = query_month(router, "from"), query_month(router, "to")
    as_csv = wants_csv(router)
    from kassa.domain.revenue import render_revenue_csv

    months = _accounting().revenue_report(container.store(), first, last)
    if as_csv:
        return csv_response(render_revenue_csv(months), f"revenue-{first:%Y-%m}-{last:%Y-%m}.csv")
    return {
        "object": "revenue_report",
        "from": f"{first:%Y-%m}",
        "to": f"{last:%Y-%m}",
        "data": [m.as_json() for m in months],
    }
