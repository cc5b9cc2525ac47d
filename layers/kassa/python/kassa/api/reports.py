"""Subscription analytics reports (docs/analytics.md): ``GET /v1/reports/mrr | churn | cohorts | ltv``.

Each takes ``from`` and ``to`` (months, ``YYYY-MM``; default: the last twelve months up to this one),
``currency`` (one currency as billed; default: every currency in the reporting currency, converted with
the rates of ``settings.analytics``) and ``format`` (``json`` or ``csv``). A bad parameter is a 400
naming it. Included in the api function's resolver (``kassa.api.app``).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from kassa.adapters import container
from kassa.api import openapi
from kassa.api.common import csv_response
from kassa.domain.errors import InvalidInput

router = Router()

DEFAULT_MONTHS = 12
FromParam = Annotated[str | None, Query(alias="from", description="first month, YYYY-MM (default: to − 11)")]
ToParam = Annotated[str | None, Query(description="last month, YYYY-MM (default: this month)")]
CurrencyParam = Annotated[
    str | None, Query(description="one currency as billed, e.g. EUR (default: all, in the reporting currency)")
]
FormatParam = Annotated[str | None, Query(description="json (default) or csv")]

RESPONSES = openapi.JSON_OR_CSV


def _report(kind: str, start: str | None, end: str | None, currency: str | None, fmt: str | None) -> Any:
    from kassa.domain.analytics import month_of, parse_month, previous_month  # the reports' routes only
    from kassa.domain.csv_text import csv_text
    from kassa.services import analytics

    if fmt not in (None, "json", "csv"):
        raise InvalidInput("format is json or csv", param="format")
    this_month = month_of(container.now())
    last = parse_month(end, "to") if end is not None else this_month
    first = start
    if first is None:  # the twelve months up to ``to``
        first = last
        for _ in range(DEFAULT_MONTHS - 1):
            first = previous_month(first)
    if currency is not None and not currency.strip():
        raise InvalidInput("currency must be an ISO 4217 code such as EUR", param="currency")
    report = analytics.REPORTS[kind](container.analytics(), container.store().get_settings(), first, last, currency)
    if fmt == "csv":
        header, rows = analytics.csv_rows(kind, report)
        return csv_response(csv_text(header, rows), f"{kind}-{first}-{last}.csv")
    return {"object": f"report.{kind}", "from": first, "to": last, **report}


@router.get("/v1/reports/mrr", tags=["reports"], responses=RESPONSES)
def report_mrr(
    start: FromParam = None, to: ToParam = None, currency: CurrencyParam = None, format: FormatParam = None
) -> Any:
    """MRR per month with its movements (new, expansion, contraction, churn, reactivation) and customers."""
    return _report("mrr", start, to, currency, format)


@router.get("/v1/reports/churn", tags=["reports"], responses=RESPONSES)
def report_churn(
    start: FromParam = None, to: ToParam = None, currency: CurrencyParam = None, format: FormatParam = None
) -> Any:
    """Logo churn, gross and net revenue churn, and trial conversion per month."""
    return _report("churn", start, to, currency, format)


@router.get("/v1/reports/cohorts", tags=["reports"], responses=RESPONSES)
def report_cohorts(
    start: FromParam = None, to: ToParam = None, currency: CurrencyParam = None, format: FormatParam = None
) -> Any:
    """Retention by signup month: customers and MRR of each cohort, month by month."""
    return _report("cohorts", start, to, currency, format)


@router.get("/v1/reports/ltv", tags=["reports"], responses=RESPONSES)
def report_ltv(
    start: FromParam = None, to: ToParam = None, currency: CurrencyParam = None, format: FormatParam = None
) -> Any:
    """ARPU and lifetime value (ARPU ÷ logo churn rate) per month, and over the range."""
    return _report("ltv", start, to, currency, format)
