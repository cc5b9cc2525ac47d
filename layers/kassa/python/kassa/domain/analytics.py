"""Subscription analytics: MRR and its movements, churn, cohorts, LTV, trial conversion (docs/analytics.md).

Definitions, as subscription-analytics tools use them (ChartMogul, Baremetrics, Stripe Billing):

- A subscription's **MRR** follows what it is billed for its periods: each open, paid or uncollectible invoice's
  recurring lines (lines of a subscription item, without usage lines and without proration lines)
  net of discounts (already taken off the line) and of tax (an inclusive line's tax is taken out),
  normalized to a month from the billed period: ``amount / N`` for N months (a year: N = 12),
  ``amount × 52 / (12 × N)`` for N weeks, ``amount × 365 / (12 × N)`` for N days. It holds from the
  period's start until the next billed period, a mid-period change (its positive proration line,
  brought back to a full period: ``unit_amount × quantity`` net of its discount; a partial first
  period before a billing-cycle anchor counts the same way) or the
  subscription's end (``ended_at``; ``unpaid``: from its latest invoice's period). A trial bills
  nothing, so it has no MRR; an ``incomplete`` subscription (first invoice unpaid) has none either.
- Normalized amounts are rounded once per subscription and step, ``Rounding.HALF_UP``, to an integer
  in the currency's minor unit (``round_fraction``).
- The **month's MRR** is the MRR at the end of the month. Movements are taken per customer and
  currency from one month end to the next: ``new`` (0 → >0, the customer's first time), ``reactivation``
  (0 → >0 after having had MRR before), ``expansion`` / ``contraction`` (>0 → more / less),
  ``churn`` (>0 → 0: the MRR lost). So, by construction,
  ``new + expansion + reactivation − contraction − churn = MRR(month) − MRR(month before)``.
- A customer's **cohort** is the first month it has MRR at a month end, per currency.
- **Usage** (metered lines, billed in arrears) is never MRR; it is reported on its own, per month used.
- A trial **converts** when its subscription gets a paid invoice of a period that starts at or after the
  trial end; trials are counted in the month the trial started.

Everything here is a pure function of the subscriptions and invoices (and of ``now`` nowhere): the
incremental analytics and the rebuild call the very same :func:`customer_contributions`, and a
contribution is an additive set of counters, so a customer's change is applied as the difference.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.money import Rounding, exponent, round_fraction
from kassa.domain.periods import Interval
from kassa.domain.settings import RateTable
from kassa.domain.subscription import Status, Subscription

#: the rounding of every normalized monthly amount, and of every converted amount
MRR_ROUNDING = Rounding.HALF_UP
#: how rates are shown: decimal strings with this many decimals, rounded half up ("0.0833")
RATE_DECIMALS = 4
#: the longest range a report answers (months)
MAX_MONTHS = 120

MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
MRR_COUNTERS = (*MOVEMENTS, "new_customers", "reactivated_customers", "churned_customers")

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

# A contribution: (kind, currency, key) -> counters. Kinds: "mrr" (key: month), "cohort" (key:
# "<cohort month>|<month>", counters customers and mrr: changes of the cohort's figures that month),
# "trial" (key: the trial's start month; counters started, converted), "usage" (key: the month the usage
# was used; counter amount: billed usage, net of tax — never part of MRR).
AggregateKey = tuple[str, str, str]
Contribution = dict[AggregateKey, dict[str, int]]


# ------------------------------------------------------------------------------------------- months
def month_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


def parse_month(raw: str, param: str) -> str:
    match = _MONTH.match(raw or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise InvalidInput(f"{param} must be a month like 2027-02 (YYYY-MM)", param=param)
    return raw


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:])
    return f"{year - 1:04d}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included."""
    out: list[str] = []
    month = first
    while month <= last:
        out.append(month)
        month = next_month(month)
    return out


def month_range(start: str, end: str) -> list[str]:
    """A report's months, validated: ``from`` ≤ ``to`` and at most MAX_MONTHS of them."""
    parse_month(start, "from")
    parse_month(end, "to")
    if start > end:
        raise InvalidInput(f"from ({start}) must not be after to ({end})", param="from")
    months = months_between(start, end)
    if len(months) > MAX_MONTHS:
        raise InvalidInput(f"a report covers at most {MAX_MONTHS} months", param="to")
    return months


# ----------------------------------------------------------------------------------- normalization
def monthly_factor(start: datetime, end: datetime) -> Fraction:
    """What a period's amount is multiplied by to make it monthly: 1/N for N months (a year = 12),
    52/(12 N) for N weeks, 365/(12 N) for N days (a partial period: by its days)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    days = (end - start).days
    if months >= 1 and days >= 28:
        return Fraction(1, months)
    if days >= 7 and days % 7 == 0:
        return Fraction(52, 12 * (days // 7))
    return Fraction(365, 12 * max(days, 1))


def interval_factor(interval: Interval, count: int) -> Fraction:
    """The same normalization from a price's interval (yearly / 12, weekly × 52 / 12, every N months / N)."""
    if interval is Interval.YEAR:
        return Fraction(1, 12 * count)
    if interval is Interval.MONTH:
        return Fraction(1, count)
    if interval is Interval.WEEK:
        return Fraction(52, 12 * count)
    return Fraction(365, 12 * count)


def net_of_tax(line: InvoiceLine) -> int:
    """A line's amount after its discount and without tax (an inclusive line carries its tax)."""
    return line.amount - line.tax_amount if line.tax_behavior is TaxBehavior.INCLUSIVE else line.amount


def _recurring(line: InvoiceLine) -> bool:
    return line.subscription_item is not None and line.usage is None and line.unit_amount_decimal is None


def _full_period_amount(line: InvoiceLine) -> Fraction | None:
    """A positive proration line brought back to a whole period: unit price × quantity, with the line's
    share of discount and tax taken off (None for a tiered price: its next period decides)."""
    if line.unit_amount is None:
        return None
    gross = line.amount + line.discount_amount
    if gross == 0:
        return Fraction(0)
    return Fraction(line.unit_amount * line.quantity * net_of_tax(line), gross)


@dataclass(frozen=True)
class Step:
    at: datetime
    mrr: int  # minor units, the subscription's MRR from ``at`` on


#: the invoices that bill a period: open (past due), paid, or written off (the subscription was past due
#: while it was dunned; its end, canceled or unpaid, ends the MRR); drafts and void ones bill nothing
BILLED = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)


def counted_invoices(sub: Subscription, invoices: Iterable[Invoice]) -> list[Invoice]:
    """The subscription's invoices that bill it (a checkout's first invoice only once paid)."""
    out = []
    for invoice in invoices:
        if invoice.subscription != sub.id or invoice.status not in BILLED:
            continue
        if invoice.billing_reason is BillingReason.SUBSCRIPTION_CREATE and invoice.status is not InvoiceStatus.PAID:
            continue
        out.append(invoice)
    return sorted(out, key=lambda i: (i.period_start, i.created, i.id))


def subscription_steps(sub: Subscription, invoices: Iterable[Invoice]) -> list[Step]:
    """The subscription's MRR over time, from its billed periods (see the module's definitions)."""
    if sub.status in (Status.INCOMPLETE, Status.INCOMPLETE_EXPIRED):
        return []
    billed = counted_invoices(sub, invoices)
    # changes at a time: full periods (every item's amount, replacing the set) and prorations (some items)
    full: dict[datetime, dict[str, Fraction]] = {}
    partial: dict[datetime, dict[str, Fraction]] = defaultdict(dict)
    for invoice in billed:
        for line in invoice.lines:
            if not _recurring(line):
                continue
            start = line.period_start
            assert line.subscription_item is not None
            if not line.proration:
                items = full.setdefault(start, {})
                factor = monthly_factor(line.period_start, line.period_end)
                items[line.subscription_item] = (
                    items.get(line.subscription_item, Fraction(0)) + net_of_tax(line) * factor
                )
            else:
                items = partial[start]
                amount = _full_period_amount(line) if line.amount > 0 else Fraction(0)
                if amount is None:
                    continue
                monthly = amount * interval_factor(sub.interval, sub.interval_count)
                items[line.subscription_item] = items.get(line.subscription_item, Fraction(0)) + monthly
    end: datetime | None = None
    if sub.status in (Status.CANCELED, Status.INCOMPLETE_EXPIRED):
        end = sub.ended_at or sub.canceled_at or sub.current_period_end
    elif sub.status is Status.UNPAID and billed:
        end = billed[-1].period_start
    steps: list[Step] = []
    current: dict[str, Fraction] = {}
    for at in sorted(set(full) | set(partial)):
        if end is not None and at >= end:
            break
        if at in full:
            current = dict(full[at])
        # a proration alone (a change, or a partial first period before the anchor) sets only its items
        for item, monthly in partial.get(at, {}).items():
            current[item] = monthly
        mrr = round_fraction(sum(current.values(), Fraction(0)), MRR_ROUNDING)
        if not steps or steps[-1].mrr != mrr:
            steps.append(Step(at, mrr))
    if end is not None and steps and steps[-1].mrr != 0:
        steps.append(Step(end, 0))
    return steps


def month_end_values(steps: Sequence[Step]) -> dict[str, int]:
    """The MRR at the end of each month in which it changed (the last step of the month wins)."""
    values: dict[str, int] = {}
    for step in steps:
        values[month_of(step.at)] = step.mrr
    return values


# ---------------------------------------------------------------------------------- contributions
def _add(out: Contribution, key: AggregateKey, counter: str, value: int) -> None:
    if value:
        counters = out.setdefault(key, {})
        counters[counter] = counters.get(counter, 0) + value


def customer_contributions(subscriptions: Iterable[Subscription], invoices: Sequence[Invoice]) -> Contribution:
    """One customer's share of every aggregate: MRR movements per month, cohort changes, trials."""
    out: Contribution = {}
    per_currency: dict[str, list[dict[str, int]]] = defaultdict(list)
    for sub in subscriptions:
        values = month_end_values(subscription_steps(sub, invoices))
        per_currency[sub.currency].append(values)
        for invoice in counted_invoices(sub, invoices):  # usage, reported on its own: by the month it was used
            for line in invoice.lines:
                if line.usage is not None or line.unit_amount_decimal is not None:
                    _add(out, ("usage", invoice.currency, month_of(line.period_start)), "amount", net_of_tax(line))
        if sub.trial_start is not None and sub.trial_end is not None:
            started = month_of(sub.trial_start)
            _add(out, ("trial", sub.currency, started), "started", 1)
            if any(
                i.status is InvoiceStatus.PAID and i.subscription == sub.id and i.period_start >= sub.trial_end
                for i in invoices
            ):
                _add(out, ("trial", sub.currency, started), "converted", 1)
    for currency, series in per_currency.items():
        months = sorted({m for values in series for m in values})
        level = [0] * len(series)  # each subscription's month-end MRR so far
        previous_total, ever, cohort = 0, False, ""
        for month in months:
            for index, values in enumerate(series):
                if month in values:
                    level[index] = values[month]
            total = sum(level)
            key = ("mrr", currency, month)
            if previous_total == 0 and total > 0:
                if ever:
                    _add(out, key, "reactivation", total)
                    _add(out, key, "reactivated_customers", 1)
                else:
                    _add(out, key, "new", total)
                    _add(out, key, "new_customers", 1)
                    ever, cohort = True, month
            elif previous_total > 0 and total == 0:
                _add(out, key, "churn", previous_total)
                _add(out, key, "churned_customers", 1)
            elif total > previous_total:
                _add(out, key, "expansion", total - previous_total)
            elif total < previous_total:
                _add(out, key, "contraction", previous_total - total)
            if cohort and total != previous_total:
                cohort_key = ("cohort", currency, f"{cohort}|{month}")
                _add(out, cohort_key, "customers", (total > 0) - (previous_total > 0))
                _add(out, cohort_key, "mrr", total - previous_total)
            previous_total = total
    return out


def difference(
    old: Mapping[AggregateKey, Mapping[str, int]], new: Mapping[AggregateKey, Mapping[str, int]]
) -> Contribution:
    """What to add to the aggregates to replace ``old`` by ``new`` (only counters that change)."""
    out: Contribution = {}
    for key in set(old) | set(new):
        before, after = old.get(key, {}), new.get(key, {})
        for counter in set(before) | set(after):
            _add(out, key, counter, after.get(counter, 0) - before.get(counter, 0))
    return out


def total(contributions: Iterable[Mapping[AggregateKey, Mapping[str, int]]]) -> Contribution:
    """The aggregates of many customers (what a rebuild writes)."""
    out: Contribution = {}
    for contribution in contributions:
        for key, counters in contribution.items():
            for counter, value in counters.items():
                _add(out, key, counter, value)
    cleaned = {key: {name: value for name, value in counters.items() if value} for key, counters in out.items()}
    return {key: counters for key, counters in cleaned.items() if counters}


# ------------------------------------------------------------------------------- reporting currency
def convert(amount: int | Fraction, currency: str, reporting: str, rate: Fraction) -> Fraction:
    """``amount`` minor units of ``currency`` in minor units of ``reporting`` (exact; rounded by the caller)."""
    return Fraction(amount) * rate * Fraction(10) ** (exponent(reporting) - exponent(currency))


def rate_in(rate: Fraction | RateTable, month: str) -> Fraction:
    """The rate that applies to ``month`` (a constant rate, or a table's month: ``RateTable.at``)."""
    return rate if isinstance(rate, Fraction) else rate.at(month)


def rate_string(numerator: int | Fraction, denominator: int | Fraction) -> str | None:
    """A ratio as a decimal string with RATE_DECIMALS decimals (half up); None when undefined."""
    if not denominator:
        return None
    scaled = round_fraction(Fraction(numerator) / Fraction(denominator) * 10**RATE_DECIMALS, MRR_ROUNDING)
    sign = "-" if scaled < 0 else ""
    whole, rest = divmod(abs(scaled), 10**RATE_DECIMALS)
    return f"{sign}{whole}.{rest:0{RATE_DECIMALS}d}"


# ------------------------------------------------------------------------------------------ reports
@dataclass
class MrrMonth:
    month: str
    mrr: int = 0
    new: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    customers: int = 0
    new_customers: int = 0
    reactivated_customers: int = 0
    churned_customers: int = 0

    def as_row(self) -> dict[str, object]:
        return {
            "month": self.month,
            "mrr": self.mrr,
            "new": self.new,
            "expansion": self.expansion,
            "contraction": self.contraction,
            "churn": self.churn,
            "reactivation": self.reactivation,
            "customers": self.customers,
        }


def mrr_months(aggregates: Mapping[str, Mapping[str, int]], until: str) -> list[MrrMonth]:
    """Every month from the first with a movement to ``until``, MRR and customers summed up from the
    movements (``aggregates``: month -> counters, as the "mrr" aggregates hold them)."""
    known = sorted(m for m in aggregates if m <= until)
    if not known:
        return []
    out: list[MrrMonth] = []
    mrr = customers = 0
    for month in months_between(known[0], until):
        counters = aggregates.get(month, {})
        row = MrrMonth(month, **{c: counters.get(c, 0) for c in MRR_COUNTERS})
        mrr += row.new + row.expansion + row.reactivation - row.contraction - row.churn
        customers += row.new_customers + row.reactivated_customers - row.churned_customers
        row.mrr, row.customers = mrr, customers
        out.append(row)
    return out


def in_range(rows: Sequence[MrrMonth], months: Sequence[str]) -> list[MrrMonth]:
    """The rows of ``months`` (zeros before the first movement)."""
    by_month = {row.month: row for row in rows}
    return [by_month.get(month) or MrrMonth(month) for month in months]


def converted_months(
    per_currency: Mapping[str, Sequence[MrrMonth]], reporting: str, rates: Mapping[str, Fraction | RateTable]
) -> list[MrrMonth]:
    """Several currencies' months in the reporting currency, each month at its own rate (``rate_in``).
    MRR is converted exactly and rounded half up; the movements are converted and rounded too, and the
    month's rounding remainder (a few minor units at most) is put on its largest movement, so the
    movements add up to the change from the month before's MRR taken at this month's rates (when a
    rate changes, the reported MRR also moves by that revaluation, which is no movement).
    Customers are summed (a customer billed in two currencies counts in each)."""
    months = sorted({row.month for rows in per_currency.values() for row in rows})
    if not months:
        return []
    filled = {c: {row.month: row for row in rows} for c, rows in per_currency.items()}
    out: list[MrrMonth] = []
    previous_mrr, previous_exact = 0, Fraction(0)
    last: dict[str, MrrMonth] = {}
    for month in months_between(months[0], months[-1]):
        exact: dict[str, Fraction] = defaultdict(Fraction)
        row = MrrMonth(month)
        for currency, rows in filled.items():
            rate = rate_in(rates[currency], month)
            if currency in last:
                exact["previous"] += convert(last[currency].mrr, currency, reporting, rate)
            if month in rows:
                last[currency] = rows[month]
            source = rows.get(month)
            level = last.get(currency)
            if level is None:
                continue
            exact["mrr"] += convert(level.mrr, currency, reporting, rate)
            row.customers += level.customers
            if source is not None:
                for name in MOVEMENTS:
                    exact[name] += convert(getattr(source, name), currency, reporting, rate)
                row.new_customers += source.new_customers
                row.reactivated_customers += source.reactivated_customers
                row.churned_customers += source.churned_customers
        row.mrr = round_fraction(exact["mrr"], MRR_ROUNDING)
        for name in MOVEMENTS:
            setattr(row, name, round_fraction(exact[name], MRR_ROUNDING))
        if exact["previous"] != previous_exact:  # a rate changed: the month before's MRR at this month's rates
            previous_mrr = round_fraction(exact["previous"], MRR_ROUNDING)
        remainder = (row.mrr - previous_mrr) - (
            row.new + row.expansion + row.reactivation - row.contraction - row.churn
        )
        if remainder:
            largest = max(MOVEMENTS, key=lambda name: getattr(row, name))
            sign = -1 if largest in ("contraction", "churn") else 1
            setattr(row, largest, getattr(row, largest) + sign * remainder)
            if getattr(row, largest) < 0:  # nothing large enough to carry it: keep the identity in new
                setattr(row, largest, getattr(row, largest) - sign * remainder)
                row.new += remainder
        previous_mrr, previous_exact = row.mrr, exact["mrr"]
        out.append(row)
    return out


def churn_row(row: MrrMonth, before: MrrMonth, trials: Mapping[str, int]) -> dict[str, object]:
    lost = row.churn + row.contraction
    return {
        "month": row.month,
        "customers_start": before.customers,
        "churned_customers": row.churned_customers,
        "logo_churn_rate": rate_string(row.churned_customers, before.customers),
        "mrr_start": before.mrr,
        "churn": row.churn,
        "contraction": row.contraction,
        "expansion": row.expansion,
        "gross_revenue_churn_rate": rate_string(lost, before.mrr),
        "net_revenue_churn_rate": rate_string(lost - row.expansion, before.mrr),
        "trials_started": trials.get("started", 0),
        "trials_converted": trials.get("converted", 0),
        "trial_conversion_rate": rate_string(trials.get("converted", 0), trials.get("started", 0)),
    }


def arpu(row: MrrMonth) -> int | None:
    return round_fraction(Fraction(row.mrr, row.customers), MRR_ROUNDING) if row.customers else None


def ltv_row(row: MrrMonth, before: MrrMonth) -> dict[str, object]:
    """ARPU ÷ the month's logo churn rate (None when nobody churned: the lifetime is unbounded)."""
    value = arpu(row)
    ltv = None
    if value is not None and row.churned_customers and before.customers:
        ltv = round_fraction(Fraction(value) * before.customers / row.churned_customers, MRR_ROUNDING)
    return {
        "month": row.month,
        "mrr": row.mrr,
        "customers": row.customers,
        "arpu": value,
        "logo_churn_rate": rate_string(row.churned_customers, before.customers),
        "ltv": ltv,
    }


def ltv_summary(rows: Sequence[MrrMonth], befores: Sequence[MrrMonth]) -> dict[str, object]:
    """Over the range: the last month's ARPU ÷ the range's mean monthly logo churn rate
    (Σ churned customers ÷ Σ customers at the months' starts)."""
    churned = sum(r.churned_customers for r in rows)
    exposed = sum(b.customers for b in befores)
    value = arpu(rows[-1]) if rows else None
    ltv = None
    if value is not None and churned and exposed:
        ltv = round_fraction(Fraction(value) * exposed / churned, MRR_ROUNDING)
    return {"arpu": value, "logo_churn_rate": rate_string(churned, exposed), "ltv": ltv}


def cohort_table(changes: Mapping[str, Mapping[str, int | Fraction]], months: Sequence[str]) -> list[dict[str, object]]:
    """Retention by signup month: for each cohort in ``months``, its customers and MRR at each month end
    from the cohort month to the last month, and their share of the cohort month's."""
    by_cohort: dict[str, dict[str, Mapping[str, int | Fraction]]] = defaultdict(dict)
    for key, counters in changes.items():
        cohort, month = key.split("|")
        by_cohort[cohort][month] = counters
    out: list[dict[str, object]] = []
    for cohort in months:
        if cohort not in by_cohort:
            continue
        customers, exact = 0, Fraction(0)
        start_customers = start_mrr = 0
        cells = []
        for month in months_between(cohort, months[-1]):
            counters = by_cohort[cohort].get(month, {})
            customers += int(counters.get("customers", 0))
            exact += counters.get("mrr", 0)
            mrr = round_fraction(exact, MRR_ROUNDING)  # converted figures are exact until shown
            if month == cohort:
                start_customers, start_mrr = customers, mrr
            cells.append(
                {
                    "month": month,
                    "customers": customers,
                    "mrr": mrr,
                    "customer_retention": rate_string(customers, start_customers),
                    "revenue_retention": rate_string(mrr, start_mrr),
                }
            )
        out.append({"cohort": cohort, "customers": start_customers, "mrr": start_mrr, "months": cells})
    return out
