"""Pricing what-if: the merchant's real history re-billed under a proposed price book.

    kassa export --history --from 2026-01-01 --to 2026-12-31 --out history.json
    kassa simulate --history history.json --price-book new.json [--elasticity 0.1]
                   [--csv whatif.csv] [--chart whatif.svg]

The history (``kassa_local.export``'s history mode: products, prices, coupons, customers,
subscriptions and their invoices, read through the merchant API) is taken as it happened; every
invoice a subscription received is billed again with the proposed terms by the domain's own code —
``Price.priced`` (per unit, package, tiers), the proration fraction of a prorated line,
``discounts.discount_invoice`` (the coupon), ``invoice.period_lines`` (the periods a shorter trial
adds) and ``periods`` (the cycle) — so there is no second implementation of a price rule here. The
report puts the actual and the what-if figures side by side per month and per plan (product):
revenue, MRR at the month's end, customers and customers affected, as a table, a CSV file and an
SVG chart. Nothing in the stack is read or written: the engine only reads the export.

Assumptions (docs/whatif.md): each invoice keeps its payment outcome (paid stays paid, unpaid stays
unpaid); customers keep their cancellation dates; a price increase adds
``churn_elasticity × relative increase`` to each affected customer's monthly churn, applied as an
expected value (revenue and MRR are weighted by the survival ``(1 − h)^months``, rounded per
invoice half-up to the minor unit); a decrease is not assumed to win customers; a changed trial
moves the subscription's invoices by the difference (a subscription that ended inside its actual
trial is never charged, whatever the trial).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from kassa.domain.analytics import Step, net_of_tax, subscription_steps
from kassa.domain.catalog import Price
from kassa.domain.discounts import Coupon, Discount, discount_invoice, start_discount
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus, from_lines, period_lines
from kassa.domain.money import Money, round_fraction
from kassa.domain.periods import Interval, Period, boundary, period_at, period_index
from kassa.domain.pricing import TERMS_FIELDS
from kassa.domain.proration import PRORATION_ROUNDING
from kassa.domain.subscription import Subscription

HISTORY_OBJECT = "kassa_history"
HISTORY_VERSION = 1
CSV_COLUMNS = (
    "month", "plan", "currency", "customers", "customers_affected", "expected_churned",
    "actual_revenue", "whatif_revenue", "actual_mrr", "whatif_mrr",
)  # fmt: skip
WEIGHT_ROUNDING = PRORATION_ROUNDING  # expected-value amounts: half-up, once per invoice line


class PriceBookError(ValueError):
    """A price book that cannot be used, naming the field (``prices.price_x.unit_amount``)."""


# ---------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PriceBook:
    """A proposed price book: new terms for existing prices, an optional coupon for everyone, and
    the churn assumption. ``prices`` are full Price models, validated by the domain."""

    name: str
    prices: Mapping[str, Price]
    coupon: Coupon | None = None
    churn_elasticity: Fraction = Fraction(0)
    trials: Mapping[str, int] = field(default_factory=dict)  # price id → new trial days (0: none)


def parse_price_book(raw: Mapping[str, Any], prices: Mapping[str, Price]) -> PriceBook:
    """The price book JSON (docs/whatif.md) over the history's prices."""
    if not isinstance(raw, Mapping):
        raise PriceBookError("a price book is a JSON object")
    unknown = set(raw) - {"name", "prices", "coupon", "assumptions"}
    if unknown:
        raise PriceBookError(f"unknown field {sorted(unknown)[0]!r} (name, prices, coupon, assumptions)")
    changed: dict[str, Price] = {}
    trials: dict[str, int] = {}
    for price_id, terms in (raw.get("prices") or {}).items():
        if price_id not in prices:
            raise PriceBookError(f"prices.{price_id}: no such price in the history")
        if not isinstance(terms, Mapping) or not terms:
            raise PriceBookError(f'prices.{price_id}: give the terms that change, e.g. {{"unit_amount": 1800}}')
        extra = set(terms) - {*TERMS_FIELDS, "trial_period_days"}
        if extra:
            raise PriceBookError(f"prices.{price_id}.{sorted(extra)[0]}: not a price term that can change")
        old = prices[price_id].model_dump()
        new = {**old, **{k: v for k, v in terms.items() if k in TERMS_FIELDS}}
        if terms.get("billing_scheme") == "tiered":
            new["unit_amount"] = terms.get("unit_amount")
        elif "unit_amount" in terms and "billing_scheme" not in terms and old.get("billing_scheme") == "tiered":
            new.update(billing_scheme="per_unit", tiers=None, tiers_mode=None)
        if "trial_period_days" in terms:
            trials[price_id] = terms["trial_period_days"] or 0
            new["recurring"] = {**old["recurring"], "trial_period_days": terms["trial_period_days"] or None}
        try:
            changed[price_id] = Price.model_validate(new)
        except InvalidInput as error:
            raise PriceBookError(f"prices.{price_id}.{error.param or 'terms'}: {error.message}") from None
        except ValueError as error:
            raise PriceBookError(f"prices.{price_id}: {error}") from None
    coupon = None
    if raw.get("coupon") is not None:
        spec = dict(raw["coupon"])
        try:
            coupon = Coupon.model_validate({"id": "whatif", "name": spec.pop("name", None), **spec})
        except InvalidInput as error:
            raise PriceBookError(f"coupon.{error.param or 'coupon'}: {error.message}") from None
        except ValueError as error:
            raise PriceBookError(f"coupon: {error}") from None
    assumptions = raw.get("assumptions") or {}
    elasticity = _fraction(assumptions.get("churn_elasticity", 0), "assumptions.churn_elasticity")
    return PriceBook(str(raw.get("name") or "what-if"), changed, coupon, elasticity, trials)


def _fraction(value: Any, param: str) -> Fraction:
    try:
        result = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise PriceBookError(f"{param}: a non-negative number, e.g. 0.1") from None
    if result < 0:
        raise PriceBookError(f"{param}: a non-negative number, e.g. 0.1")
    return result


@dataclass(frozen=True)
class History:
    start: datetime
    end: datetime
    products: Mapping[str, dict[str, Any]]
    prices: Mapping[str, Price]
    subscriptions: list[Subscription]
    invoices: Mapping[str, list[Invoice]]  # per subscription, oldest first


def _model(cls: Any, body: Mapping[str, Any]) -> Any:
    return cls.model_validate({k: v for k, v in body.items() if k != "object"})


def load_history(raw: Mapping[str, Any]) -> History:
    if raw.get("object") != HISTORY_OBJECT or raw.get("version") != HISTORY_VERSION:
        raise PriceBookError(f"not a history export (object {HISTORY_OBJECT!r}, version {HISTORY_VERSION})")
    subs = []
    for body in raw["subscriptions"]:
        items = body["items"]["data"] if isinstance(body.get("items"), Mapping) else body["items"]
        clean = {k: v for k, v in body.items() if k not in ("price", "quantity")}
        subs.append(_model(Subscription, {**clean, "items": [_item(i) for i in items]}))
    invoices: dict[str, list[Invoice]] = defaultdict(list)
    for body in raw["invoices"]:
        invoice = _model(Invoice, body)
        if invoice.subscription:
            invoices[invoice.subscription].append(invoice)
    for found in invoices.values():
        found.sort(key=lambda i: (i.period_start, i.created, i.id))
    # the history ends at --to, or when it was exported if that is earlier (a period that is not over
    # yet): nothing is assumed about time the stack had not reached
    end = _instant(raw["to"])
    if raw.get("as_of"):
        end = min(end, _instant(raw["as_of"]))
    return History(
        start=_instant(raw["from"]),
        end=end,
        products={p["id"]: p for p in raw.get("products", [])},
        prices={p["id"]: _model(Price, p) for p in raw.get("prices", [])},
        subscriptions=sorted(subs, key=lambda s: (s.created, s.id)),
        invoices=invoices,
    )


def _item(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("object", "subscription")}


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------------------------------- engine


@dataclass
class Billed:
    """One invoice as it was (actual) or would have been (what-if): pre-tax amounts after discount."""

    invoice: Invoice
    weight: Fraction = Fraction(1)  # the expected survival under the churn assumption
    month: int = 0  # which month of the subscription's billing it is (``_month_index``)

    @property
    def created(self) -> datetime:
        return self.invoice.created

    @property
    def lines(self) -> list[InvoiceLine]:
        return self.invoice.lines

    def revenue(self) -> int:
        """Paid, net of discount and tax (the analytics' ``net_of_tax``), weighted."""
        if self.invoice.status is not InvoiceStatus.PAID:
            return 0
        return sum(self._weighted(net_of_tax(line)) for line in self.lines)

    def recurring(self) -> int:
        """What MRR counts of it: the whole-period lines (no prorations, no usage), after discount."""
        return sum(self._weighted(line.amount) for line in self.lines if not line.proration and not line.usage)

    def _weighted(self, amount: int) -> int:
        return amount if self.weight == 1 else round_fraction(amount * self.weight, WEIGHT_ROUNDING)


def reprice_line(line: InvoiceLine, old: Price | None, new: Price | None) -> InvoiceLine:
    """The line's amount before discount under ``new`` terms: the domain's price for its quantity
    (a prorated line keeps its fraction of the period: its old amount over the old full charge)."""
    undiscounted = line.amount + line.discount_amount
    if new is None or old is None:
        return line.model_copy(update={"amount": undiscounted, "discount_amount": 0})
    full_new = new.priced(line.quantity).amount
    if line.proration:
        full_old = old.priced(line.quantity).amount
        fraction = Fraction(undiscounted, full_old) if full_old else Fraction(0)
        amount = round_fraction(full_new * fraction, PRORATION_ROUNDING)
    else:
        amount = full_new
    unit = new.unit_amount if new.unit_amount is not None else None
    return line.model_copy(update={"amount": amount, "discount_amount": 0, "unit_amount": unit})


@dataclass
class SubscriptionOutcome:
    subscription: Subscription
    plan: str
    actual: list[Billed]
    whatif: list[Billed]
    hazard: Fraction = Fraction(0)


def _trial_days(sub: Subscription) -> int:
    if sub.trial_start is None or sub.trial_end is None:
        return 0
    return round((sub.trial_end - sub.trial_start).total_seconds() / 86400)


def _discount_of(sub: Subscription, book: PriceBook, shift: timedelta) -> Discount | None:
    """The book's coupon, redeemed when the subscription's first paid period starts under the book
    (its trial's end moved by ``shift`` when the book changes the trial), or the subscription's own."""
    if book.coupon is not None:
        start = (sub.trial_end if sub.trial_end is not None else sub.created) + shift
        return start_discount(book.coupon, start, subscription=sub.id)
    return Discount.model_validate(sub.discount) if sub.discount else None


def _anchor(sub: Subscription) -> datetime:
    return sub.trial_end if sub.trial_end is not None else sub.billing_cycle_anchor


def _month_index(anchor: datetime, period_start: datetime, trial_end: datetime | None) -> int:
    """Which month of the subscription's billing a period starting at ``period_start`` is, counted
    on the anchor's own month boundaries (``periods.period_index``): Jan 31, Feb 28, Mar 31 are
    months 0, 1, 2 — none lost or counted twice at a month's end. The trial's period counts as the
    month its trial ends in; a period before a moved anchor (a custom anchor's first, prorated
    period; an interval switch) counts back from it (−1 …)."""
    when = max(period_start, trial_end) if trial_end is not None else period_start
    return period_index(anchor, Interval.MONTH, 1, when)


def rebill(history: History, book: PriceBook) -> list[SubscriptionOutcome]:
    outcomes = []
    for sub in history.subscriptions:
        invoices = [i for i in history.invoices.get(sub.id, []) if i.status is not InvoiceStatus.DRAFT]
        actual = [Billed(i) for i in invoices]
        product = history.products.get(sub.items[0].product or "", {})
        plan = str(product.get("name") or sub.items[0].product or sub.items[0].price)
        outcome = SubscriptionOutcome(sub, plan, actual, _rebill_subscription(history, book, sub, invoices))
        outcome.hazard = _hazard(outcome, book)
        if outcome.hazard:
            first = outcome.whatif[0].month if outcome.whatif else 0
            for billed in outcome.whatif:
                billed.weight = (1 - outcome.hazard) ** max(0, billed.month - first)
        outcomes.append(outcome)
    return outcomes


def _rebill_subscription(history: History, book: PriceBook, sub: Subscription, invoices: list[Invoice]) -> list[Billed]:
    products = {p.id: p.product for p in history.prices.values()}
    # a trial the book changes moves the subscription's invoices by the difference in days
    new_trial = book.trials.get(sub.items[0].price)
    shift = timedelta(0) if new_trial is None else timedelta(days=new_trial - _trial_days(sub))
    discount = _discount_of(sub, book, shift)
    anchor = _anchor(sub)

    def within(when: datetime) -> bool:  # billed before the subscription ended and the history did
        return when <= history.end and (sub.ended_at is None or when < sub.ended_at)

    if shift and sub.trial_end is not None and sub.ended_at is not None and sub.ended_at <= sub.trial_end:
        return []  # ended inside the actual trial: never charged, whatever the trial
    # each invoice's month is counted on the actual periods (a shift moves them all alike)
    drafts = [(_shifted(i, shift), _month_index(anchor, i.period_start, sub.trial_end)) for i in invoices]
    drafts = [(d, month) for d, month in drafts if within(d.created) or not shift]
    if shift < timedelta(0) or (shift and not drafts):
        extra = _extra_periods(sub, [d for d, _ in drafts], shift, within)
        drafts += [(d, _month_index(anchor + shift, d.period_start, None)) for d in extra]
    billed = []
    for draft, month in drafts:
        lines = [reprice_line(line, history.prices.get(line.price or ""), book.prices.get(line.price or ""))
                 if line.price in book.prices else reprice_line(line, None, None)
                 for line in draft.lines]  # fmt: skip
        repriced = draft.model_copy(update={"lines": lines, "total_discount": 0, "discount": None})
        done, counted = discount_invoice(repriced, discount, products=products)
        if counted is not None:
            discount = counted
        billed.append(Billed(done, month=month))
    return billed


def _shifted(invoice: Invoice, shift: timedelta) -> Invoice:
    if not shift:
        return invoice
    lines = [
        line.model_copy(update={"period_start": line.period_start + shift, "period_end": line.period_end + shift})
        for line in invoice.lines
    ]
    return invoice.model_copy(
        update={
            "lines": lines,
            "period_start": invoice.period_start + shift,
            "period_end": invoice.period_end + shift,
            "created": invoice.created + shift,
        }
    )


def _extra_periods(
    sub: Subscription, drafts: list[Invoice], shift: timedelta, within: Callable[[datetime], bool]
) -> list[Invoice]:
    """The periods a shorter trial (or a trial's end moved inside the history) adds before the
    horizon, billed with the subscription's items by ``invoice.period_lines``; they count as paid
    like the subscription's last invoice (or, without one, as paid). They continue the moved
    invoices' grid — the subscription's own periods moved by ``shift`` — so none overlaps the last
    moved one at a month's end (a Jan 30 anchor moved a day earlier is Jan 29 → Feb 27 → Mar 29)."""
    anchor = _anchor(sub)
    start = drafts[-1].period_end if drafts else anchor + shift
    paid = drafts[-1].status is InvoiceStatus.PAID if drafts else True
    extra: list[Invoice] = []
    while within(start):
        actual = period_at(anchor, sub.interval, sub.interval_count, start - shift)
        period = Period(actual.start + shift, actual.end + shift)
        draft = from_lines(
            f"whatif_{sub.id}_{len(extra)}", sub.customer, sub.id, sub.currency, period_lines(sub, period),
            period, period.start, BillingReason.SUBSCRIPTION_CYCLE,
        )  # fmt: skip
        extra.append(draft.model_copy(update={"status": InvoiceStatus.PAID if paid else InvoiceStatus.OPEN}))
        start = period.end
    return extra


def _hazard(outcome: SubscriptionOutcome, book: PriceBook) -> Fraction:
    """The extra monthly churn of this subscription: elasticity × the relative increase of its first
    whole-period charge (before discounts); nothing for a decrease or an unchanged price."""
    if not book.churn_elasticity:
        return Fraction(0)
    old = next((b for b in outcome.actual if b.recurring()), None)
    new = next((b for b in outcome.whatif if b.recurring()), None)
    if old is None or new is None:
        return Fraction(0)
    before = sum(line.amount + line.discount_amount for line in old.lines if not line.proration and not line.usage)
    after = sum(line.amount + line.discount_amount for line in new.lines if not line.proration and not line.usage)
    if before <= 0 or after <= before:
        return Fraction(0)
    return min(Fraction(1), book.churn_elasticity * Fraction(after - before, before))


# ---------------------------------------------------------------------------------------- report


@dataclass
class Row:
    month: str
    plan: str
    currency: str
    customers: int = 0
    affected: set[str] = field(default_factory=set)
    expected_churned: Fraction = Fraction(0)
    actual_revenue: int = 0
    whatif_revenue: int = 0
    actual_mrr: Fraction = Fraction(0)
    whatif_mrr: Fraction = Fraction(0)

    def as_csv(self) -> list[Any]:
        return [
            self.month, self.plan, self.currency, self.customers, len(self.affected),
            f"{float(self.expected_churned):.2f}", self.actual_revenue, self.whatif_revenue,
            round_fraction(self.actual_mrr), round_fraction(self.whatif_mrr),
        ]  # fmt: skip


def months(start: datetime, end: datetime) -> list[datetime]:
    """The first instant of each calendar month from ``start``'s to ``end``'s."""
    first = datetime(start.year, start.month, 1, tzinfo=UTC)
    found = []
    k = 0
    while (month := boundary(first, Interval.MONTH, 1, k)) <= end:
        found.append(month)
        k += 1
    return found


def _mrr_at(steps: list[Step], when: datetime) -> int:
    """The MRR in force at ``when`` (the last step at or before it)."""
    return next((step.mrr for step in reversed(steps) if step.at <= when), 0)


def _weight_at(billed: Iterable[Billed], when: datetime) -> Fraction:
    """The survival of the latest invoice billed at or before ``when``."""
    return next((b.weight for b in reversed(list(billed)) if b.created <= when), Fraction(1))


def report(history: History, outcomes: list[SubscriptionOutcome]) -> list[Row]:
    """Per month and plan. MRR is the analytics' own (``analytics.subscription_steps`` over the
    invoices, actual or billed again), at the month's end; the what-if's weighted by its survival."""
    rows: dict[tuple[str, str, str], Row] = {}
    steps = {
        o.subscription.id: (
            subscription_steps(o.subscription, [b.invoice for b in o.actual]),
            subscription_steps(o.subscription, [b.invoice for b in o.whatif]),
        )
        for o in outcomes
    }
    for month in months(history.start, history.end):
        next_month = boundary(month, Interval.MONTH, 1, 1)
        at = min(next_month - timedelta(seconds=1), history.end)  # MRR: the month's end, or the history's
        label = month.strftime("%Y-%m")
        for outcome in outcomes:
            sub = outcome.subscription
            row = rows.setdefault((label, outcome.plan, sub.currency), Row(label, outcome.plan, sub.currency))
            actual_revenue = sum(b.revenue() for b in outcome.actual if month <= b.created <= at)
            whatif_revenue = sum(b.revenue() for b in outcome.whatif if month <= b.created <= at)
            actual_steps, whatif_steps = steps[sub.id]
            actual_mrr = _mrr_at(actual_steps, at)
            weight = _weight_at(outcome.whatif, at)
            whatif_mrr = _mrr_at(whatif_steps, at) * weight
            row.actual_revenue += actual_revenue
            row.whatif_revenue += whatif_revenue
            row.actual_mrr += actual_mrr
            row.whatif_mrr += whatif_mrr
            if actual_mrr:
                row.customers += 1
            if whatif_mrr and weight != 1:
                row.expected_churned += 1 - weight
            if actual_revenue != whatif_revenue or actual_mrr != whatif_mrr:
                row.affected.add(sub.id)
    kept = [r for r in rows.values() if r.customers or r.actual_revenue or r.whatif_revenue or r.affected]
    return sorted(kept, key=lambda r: (r.month, r.plan, r.currency))


def totals(rows: Iterable[Row]) -> dict[str, dict[str, list[int]]]:
    """Per currency: month → [actual revenue, what-if revenue, actual MRR, what-if MRR] over plans."""
    out: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for r in rows:
        t = out[r.currency].setdefault(r.month, [0, 0, 0, 0])
        t[0] += r.actual_revenue
        t[1] += r.whatif_revenue
        t[2] += round_fraction(r.actual_mrr)
        t[3] += round_fraction(r.whatif_mrr)
    return out


def table(rows: list[Row]) -> str:
    head = ("month", "plan", "customers", "affected", "revenue", "what-if", "MRR", "what-if MRR")
    body = [
        (r.month, r.plan, str(r.customers), str(len(r.affected)),
         Money(r.actual_revenue, r.currency).format(), Money(r.whatif_revenue, r.currency).format(),
         Money(round_fraction(r.actual_mrr), r.currency).format(),
         Money(round_fraction(r.whatif_mrr), r.currency).format())
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(row, widths, strict=True)))
             for row in (head, *body)]  # fmt: skip
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for r in rows:
            out.writerow(r.as_csv())


def axis_ticks(peak: int, scale: int) -> list[int]:
    """Gridline values (minor units) from 0 up to ``peak``: a round step in major units (1, 2 or 5
    times a power of ten) giving at most five lines above zero."""
    major = max(peak / scale, 1)
    step = next(m * 10**e for e in range(19) for m in (1, 2, 5) if major / (m * 10**e) <= 5)
    return [k * step * scale for k in range(int(major // step) + 1)]


def svg_chart(rows: list[Row], title: str) -> str:
    """Actual and what-if MRR and revenue per month, one panel per currency (amounts in major units)."""
    per_currency = totals(rows)
    width, panel, pad = 760, 260, 50
    colors = ("#9ca3af", "#4f46e5", "#111827", "#dc2626")
    names = ("revenue (actual)", "revenue (what-if)", "MRR (actual)", "MRR (what-if)")
    parts = [f'<text x="{pad}" y="24" font-size="16" font-family="sans-serif">{escape(title)}</text>']
    for n, (currency, series) in enumerate(sorted(per_currency.items())):
        top = 40 + n * (panel + 40)
        labels = sorted(series)
        scale = 10 ** Money(0, currency).exponent
        peak = max([v for s in series.values() for v in s] + [1])
        plot_w, plot_h = width - 2 * pad, panel - 60

        def x(i: int, count: int = len(labels), w: int = plot_w) -> float:
            return pad + (w * i / max(1, count - 1) if count > 1 else w / 2)

        def y(v: int, t: int = top, h: int = plot_h, p: int = peak) -> float:
            return t + 20 + h * (1 - v / p)

        parts.append(
            f'<text x="{pad}" y="{top + 12}" font-size="13" font-family="sans-serif">{currency}, per month</text>'
        )
        for value in axis_ticks(peak, scale):  # gridlines at round amounts, labelled in major units
            parts.append(f'<line x1="{pad}" y1="{y(value):.1f}" x2="{pad + plot_w}" y2="{y(value):.1f}" '
                         f'stroke="{"#9ca3af" if value == 0 else "#e5e7eb"}"/>')  # fmt: skip
            parts.append(
                f'<text x="{pad - 4}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end" '
                f'font-family="sans-serif">{value / scale:,.0f}</text>'
            )
        for k in range(4):
            points = " ".join(f"{x(i):.1f},{y(series[m][k]):.1f}" for i, m in enumerate(labels))
            dash = ' stroke-dasharray="5,3"' if k % 2 else ""
            parts.append(f'<polyline fill="none" stroke="{colors[k]}" stroke-width="2"{dash} points="{points}"/>')
        for i, m in enumerate(labels):
            parts.append(
                f'<text x="{x(i):.1f}" y="{y(0) + 14:.1f}" font-size="10" text-anchor="middle" '
                f'font-family="sans-serif">{m}</text>'
            )
        for k, name in enumerate(names):
            lx = pad + k * 170
            parts.append(f'<rect x="{lx}" y="{top + panel - 18}" width="12" height="4" fill="{colors[k]}"/>')
            parts.append(
                f'<text x="{lx + 16}" y="{top + panel - 12}" font-size="11" font-family="sans-serif">{name}</text>'
            )
    height = 40 + max(1, len(per_currency)) * (panel + 40)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">\n' + "\n".join(parts) + "\n</svg>\n"
    )


# ---------------------------------------------------------------------------------------- CLI


WHATIF_OPTIONS = ("history", "price_book", "elasticity", "csv", "chart")  # dests, all defaulting to None


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The what-if's options (``kassa simulate``'s "pricing what-if" group). Their defaults are None
    so that ``given`` tells which were given; ``run`` needs --history and --price-book."""
    parser.add_argument("--history", metavar="FILE", help="a `kassa export --history` file (JSON)")
    parser.add_argument("--price-book", metavar="FILE", help="the proposed price book (JSON, docs/whatif.md)")
    parser.add_argument(
        "--elasticity",
        metavar="E",
        help="extra monthly churn per 100%% price increase (0.1: +10%% price → +1%% churn a month); "
        "overrides the price book's assumptions.churn_elasticity",
    )
    parser.add_argument("--csv", metavar="FILE", help="the CSV to write (default whatif.csv)")
    parser.add_argument("--chart", metavar="FILE", help="the SVG chart to write (default whatif.svg)")


def given(args: argparse.Namespace) -> list[str]:
    """The what-if options given, as typed (``--price-book``)."""
    return ["--" + dest.replace("_", "-") for dest in WHATIF_OPTIONS if getattr(args, dest, None) is not None]


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``kassa simulate`` was asked for a pricing what-if (any of its options given)."""
    return bool(given(args))


def run(args: argparse.Namespace) -> int:
    if not (args.history and args.price_book):
        raise SystemExit("kassa simulate: a pricing what-if needs --history and --price-book")
    try:
        history = load_history(json.loads(Path(args.history).read_text()))
        raw_book = json.loads(Path(args.price_book).read_text())
        book = parse_price_book(raw_book, history.prices)
        if args.elasticity is not None:
            book = dataclasses.replace(book, churn_elasticity=_fraction(args.elasticity, "--elasticity"))
    except (OSError, json.JSONDecodeError, KeyError, PriceBookError) as error:
        raise SystemExit(f"kassa simulate: {error}") from None
    rows = report(history, rebill(history, book))
    print(
        f"{book.name}: {history.start.date()} – {history.end.date()}, churn elasticity {float(book.churn_elasticity)}"
    )
    print(table(rows))
    csv_path, chart_path = Path(args.csv or "whatif.csv"), Path(args.chart or "whatif.svg")
    write_csv(rows, csv_path)
    chart_path.write_text(svg_chart(rows, f"{book.name}: actual and what-if"))
    print(f"wrote {csv_path} and {chart_path}")
    return 0
