"""Subscription analytics: kept up to date from the domain events, rebuilt on demand, reported.

- :func:`handle_event`: an event only names a customer; the customer's subscriptions and invoices are
  read again and its contribution (``kassa.domain.analytics.customer_contributions``) recomputed; the
  difference with the contribution last applied is added to the monthly aggregates, in the same
  transaction that stores the new one (under its version). A duplicated, replayed or out-of-order
  event finds nothing to change.
- :class:`Batch` / :func:`handle_batch` (the ``analytics`` function, fed by the ``analytics`` EventBridge
  rule through its queue): the same, once per customer of a batch of records.
- :func:`rebuild`: every customer's contribution recomputed from the subscriptions and invoices and the
  aggregates written anew — the same function, so the same numbers.
- :func:`mrr_report`, :func:`churn_report`, :func:`ltv_report`, :func:`cohort_report`: one currency, or all
  in the merchant's reporting currency with the rates it set (``settings.analytics``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kassa.domain import analytics as a
from kassa.domain.errors import Conflict, InvalidInput
from kassa.domain.invoice import Invoice
from kassa.domain.money import normalize_currency, round_fraction
from kassa.domain.settings import AnalyticsSettings, MerchantSettings, RateTable
from kassa.services.context import retry_pause
from kassa.services.ports import AnalyticsStore, BillingStore, CustomerAnalytics, ListQuery, every_item

#: applying a customer's change retries this often when a concurrent refresh of the customer wins
REFRESH_RETRIES = 10
PAGE = 100


def customer_invoices(store: BillingStore, customer_id: str) -> list[Invoice]:
    return list(every_item(lambda after: store.list_customer_invoices(customer_id, PAGE, after)))


def contribution_of(store: BillingStore, customer_id: str) -> a.Contribution:
    return a.customer_contributions(
        store.list_customer_subscriptions(customer_id), customer_invoices(store, customer_id)
    )


def refresh_customer(store: BillingStore, analytics: AnalyticsStore, customer_id: str) -> int:
    """Bring one customer's share of the aggregates up to date; answers how many aggregates changed."""
    for attempt in range(REFRESH_RETRIES):
        if attempt:
            retry_pause(attempt)
        previous = analytics.customer_state(customer_id) or CustomerAnalytics(customer_id, {}, 0)
        contribution = contribution_of(store, customer_id)
        delta = a.difference(previous.contribution, contribution)
        if not delta:
            return 0  # a replay, or a change that moves no figure: nothing written
        try:
            analytics.apply(previous, contribution, delta)
        except Conflict:
            continue
        return len(delta)
    raise Conflict(f"the analytics of customer {customer_id} kept changing; retry")


def customer_of_event(envelope: Mapping[str, Any]) -> str | None:
    """The customer an EventBridge envelope (or a bare domain event) is about, if any."""
    detail = envelope.get("detail", envelope)
    data = detail.get("data") if isinstance(detail, Mapping) else None
    customer = data.get("customer") if isinstance(data, Mapping) else None
    return customer if isinstance(customer, str) and customer else None


def handle_event(store: BillingStore, analytics: AnalyticsStore, envelope: Mapping[str, Any]) -> str:
    customer = customer_of_event(envelope)
    if customer is None:
        return "ignored"
    changed = refresh_customer(store, analytics, customer)
    return f"changed:{changed}" if changed else "unchanged"


class Batch:
    """One delivery of the analytics queue (one invocation of the function): each customer its records
    name is refreshed once, at the first of them, and the customer's other records in the batch are
    answered by that refresh.

    The refresh reads the customer's subscriptions and invoices as they are when it runs, after every
    event of the batch was published, so one refresh gives the aggregates that one per event gives
    (the last of those reads the same store), and stays idempotent and order-tolerant. A refresh that
    raises fails every record of its customer in the batch (each raises the same error: the queue
    delivers them again), and only those; the customer is not refreshed again within the batch."""

    def __init__(self, store: BillingStore, analytics: AnalyticsStore) -> None:
        self.store = store
        self.analytics = analytics
        self._done: dict[str, Exception | None] = {}  # customer -> the refresh's error, None: refreshed

    def handle(self, envelope: Mapping[str, Any]) -> str:
        """``changed:N`` / ``unchanged`` for a customer's first record, ``coalesced`` for the others
        (answered by that refresh), ``ignored`` for a record that names no customer; raises what the
        customer's refresh raised."""
        customer = customer_of_event(envelope)
        if customer is None:
            return "ignored"
        if customer in self._done:
            error = self._done[customer]
            if error is not None:
                raise error
            return "coalesced"
        try:
            changed = refresh_customer(self.store, self.analytics, customer)
        except Exception as error:
            self._done[customer] = error
            raise
        self._done[customer] = None
        return f"changed:{changed}" if changed else "unchanged"


def handle_batch(
    store: BillingStore, analytics: AnalyticsStore, envelopes: Sequence[Mapping[str, Any]]
) -> list[str | Exception]:
    """A batch of envelopes through one :class:`Batch`: one answer per envelope, in order — its outcome,
    or the exception its customer's refresh raised (the record to report failed)."""
    batch = Batch(store, analytics)
    answers: list[str | Exception] = []
    for envelope in envelopes:
        try:
            answers.append(batch.handle(envelope))
        except Exception as error:
            answers.append(error)
    return answers


@dataclass(frozen=True)
class RebuildSummary:
    customers: int
    aggregates: int


def rebuild(store: BillingStore, analytics: AnalyticsStore) -> RebuildSummary:
    """Recompute every customer's contribution (customers through the listing index, never a Scan)
    and write the aggregates anew."""
    contributions: dict[str, a.Contribution] = {}
    for customer in every_item(lambda after: store.list_customers(ListQuery(limit=PAGE, starting_after=after))):
        contribution = contribution_of(store, customer.id)
        if contribution or analytics.customer_state(customer.id) is not None:
            contributions[customer.id] = contribution
    totals = a.total(contributions.values())
    analytics.replace_all(contributions, totals)
    return RebuildSummary(customers=len(contributions), aggregates=len(totals))


# ------------------------------------------------------------------------------------------ reports
@dataclass(frozen=True)
class Scope:
    """Which figures a report shows: one currency as billed, or every currency in the reporting one."""

    currency: str
    sources: tuple[str, ...]  # the currencies summed up
    rates: dict[str, RateTable]  # each currency's rates per month (RateTable.at)
    excluded: tuple[str, ...] = ()  # billed currencies without a rate (left out of a converted report)

    @property
    def converted(self) -> bool:
        return self.sources != (self.currency,)


def scope(analytics: AnalyticsStore, settings: MerchantSettings, currency: str | None) -> Scope:
    if currency is not None:
        try:
            code = normalize_currency(currency)
        except InvalidInput:
            raise InvalidInput(
                f"unknown currency {currency!r} (an ISO 4217 code such as EUR)", param="currency"
            ) from None
        return Scope(code, (code,), {code: RateTable(Fraction(1))})
    config = settings.analytics or AnalyticsSettings()
    reporting = config.reporting_currency or settings.default_currency
    rates: dict[str, RateTable] = {reporting: RateTable(Fraction(1))}
    excluded = []
    for billed in analytics.currencies():
        rate = config.rates(billed, reporting)
        if rate is None:
            excluded.append(billed)
        else:
            rates[billed] = rate
    return Scope(reporting, tuple(sorted(rates)), rates, tuple(excluded))


def _months(analytics: AnalyticsStore, where: Scope, until: str) -> list[a.MrrMonth]:
    per_currency = {c: a.mrr_months(analytics.aggregates("mrr", c, high=until), until) for c in where.sources}
    if not where.converted:
        return per_currency[where.currency]
    return a.converted_months(per_currency, where.currency, dict(where.rates))


def _header(where: Scope, months: list[str]) -> dict[str, Any]:
    """The report's currency; converted: from which currencies, at which rates (``exchange_rates``: each
    currency's rate of the last month; ``exchange_rates_by_month``, for the currencies whose rate
    changes: the rate of each month of the report)."""
    out: dict[str, Any] = {"currency": where.currency}
    if where.converted:
        others = {c: table for c, table in where.rates.items() if c != where.currency}
        out["converted_from"] = [c for c in where.sources if c != where.currency]
        out["exchange_rates"] = {c: _rate_text(table.at(months[-1])) for c, table in others.items()}
        varying = {c: {m: _rate_text(table.at(m)) for m in months} for c, table in others.items() if table.varies}
        if varying:
            out["exchange_rates_by_month"] = varying
        out["excluded_currencies"] = list(where.excluded)
    return out


def _rate_text(rate: Fraction) -> str:
    """A rate as the decimal string it was set as (settings keep at most 12 decimals)."""
    text = f"{rate.numerator * 10**12 // rate.denominator:013d}"
    whole, decimals = text[:-12].lstrip("0") or "0", text[-12:].rstrip("0")
    return f"{whole}.{decimals}" if decimals else whole


@dataclass(frozen=True)
class Window:
    """A report's months, its scope, and the MRR rows of those months and of each month before."""

    months: list[str]
    where: Scope
    rows: list[a.MrrMonth]
    before: list[a.MrrMonth]


def _window(
    analytics: AnalyticsStore, settings: MerchantSettings, start: str, end: str, currency: str | None
) -> Window:
    months = a.month_range(start, end)
    where = scope(analytics, settings, currency)
    rows = _months(analytics, where, end)
    before = a.in_range(rows, [a.previous_month(months[0]), *months[:-1]])
    return Window(months, where, a.in_range(rows, months), before)


def mrr_report(
    analytics: AnalyticsStore, settings: MerchantSettings, start: str, end: str, currency: str | None
) -> dict[str, Any]:
    w = _window(analytics, settings, start, end, currency)
    used: dict[str, Fraction] = defaultdict(Fraction)
    for source in w.where.sources:
        for month, counters in analytics.aggregates("usage", source, start, end).items():
            rate = w.where.rates[source].at(month)
            used[month] += a.convert(counters.get("amount", 0), source, w.where.currency, rate)
    usage = [{"month": month, "amount": round_fraction(used[month], a.MRR_ROUNDING)} for month in w.months]
    return {"data": [row.as_row() for row in w.rows], "usage": usage, **_header(w.where, w.months)}


def churn_report(
    analytics: AnalyticsStore, settings: MerchantSettings, start: str, end: str, currency: str | None
) -> dict[str, Any]:
    w = _window(analytics, settings, start, end, currency)
    trials: dict[str, dict[str, int]] = defaultdict(dict)
    for source in w.where.sources:
        for month, counters in analytics.aggregates("trial", source, start, end).items():
            for name, value in counters.items():
                trials[month][name] = trials[month].get(name, 0) + value
    data = [a.churn_row(row, prior, trials.get(row.month, {})) for row, prior in zip(w.rows, w.before, strict=True)]
    return {"data": data, **_header(w.where, w.months)}


def ltv_report(
    analytics: AnalyticsStore, settings: MerchantSettings, start: str, end: str, currency: str | None
) -> dict[str, Any]:
    w = _window(analytics, settings, start, end, currency)
    data = [a.ltv_row(row, prior) for row, prior in zip(w.rows, w.before, strict=True)]
    return {"data": data, "summary": a.ltv_summary(w.rows, w.before), **_header(w.where, w.months)}


def cohort_report(
    analytics: AnalyticsStore, settings: MerchantSettings, start: str, end: str, currency: str | None
) -> dict[str, Any]:
    months = a.month_range(start, end)
    where = scope(analytics, settings, currency)
    changes: dict[str, dict[str, Fraction]] = defaultdict(dict)
    for source in where.sources:
        found = analytics.aggregates("cohort", source, f"{start}|", f"{end}|~")
        for key, counters in found.items():
            cell = changes[key]
            cell["customers"] = cell.get("customers", Fraction(0)) + counters.get("customers", 0)
            mrr = Fraction(counters.get("mrr", 0))
            if where.converted:
                mrr = a.convert(mrr, source, where.currency, where.rates[source].at(key.split("|")[-1]))
            cell["mrr"] = cell.get("mrr", Fraction(0)) + mrr
    return {"data": a.cohort_table(changes, months), **_header(where, months)}


REPORTS = {"mrr": mrr_report, "churn": churn_report, "ltv": ltv_report, "cohorts": cohort_report}


def csv_rows(kind: str, report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A report as a table (header, rows): one row per month; cohorts one row per cohort and month."""
    if kind == "cohorts":
        header = ["cohort", "month", "customers", "mrr", "customer_retention", "revenue_retention", "currency"]
        rows = [
            [
                c["cohort"],
                m["month"],
                m["customers"],
                m["mrr"],
                m["customer_retention"],
                m["revenue_retention"],
                report["currency"],
            ]
            for c in report["data"]
            for m in c["months"]
        ]
        return header, rows
    data = report["data"]
    header = [*(list(data[0]) if data else ["month"]), "currency"]
    return header, [
        [row.get(h, report["currency"]) if h != "currency" else report["currency"] for h in header] for row in data
    ]
