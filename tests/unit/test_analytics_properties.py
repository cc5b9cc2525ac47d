"""Properties of the analytics over random billing histories (hypothesis), in the domain alone.

- month by month, new + expansion + reactivation − contraction − churn = the change in MRR;
- the MRR and customers summed up from the movements equal those counted directly from every
  subscription's month-end MRR;
- applying each customer's successive states as differences, in any order and with repeats, ends in
  the aggregates a rebuild from the final state writes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kassa.domain import analytics as a
from kassa.domain.invoice import Invoice
from kassa.domain.subscription import Subscription

MONTHS = [datetime(2027 + (m // 12), m % 12 + 1, 7, tzinfo=UTC) for m in range(10)]


def _subscription(sub_id: str, customer: str, currency: str, start: int, end: int | None) -> Subscription:
    item = {"id": f"si_{sub_id}", "price": "price_x", "quantity": 1, "unit_amount": 100, "currency": currency}
    return Subscription.model_validate(
        {
            "id": sub_id,
            "customer": customer,
            "items": [{**item, "interval": "month"}],
            "currency": currency,
            "interval": "month",
            "interval_count": 1,
            "status": "canceled" if end is not None else "active",
            "billing_cycle_anchor": MONTHS[start],
            "current_period_start": MONTHS[start],
            "current_period_end": MONTHS[start + 1],
            "created": MONTHS[start],
            "ended_at": MONTHS[end].replace(day=20) if end is not None else None,
        }
    )


def _invoice(sub: Subscription, month: int, amount: int, change: int | None) -> Invoice:
    start, end = MONTHS[month], MONTHS[month + 1]
    line = {"description": "plan", "quantity": 1, "subscription_item": sub.items[0].id, "unit_amount": amount}
    lines = [{**line, "amount": amount, "period_start": start, "period_end": end}]
    if change is not None:  # a mid-period change to ``change`` from the 17th: its two proration lines
        mid = start.replace(day=17)
        lines.append({**line, "amount": -amount // 2, "proration": True, "period_start": mid, "period_end": end})
        lines.append(
            {
                **line,
                "unit_amount": change,
                "amount": change // 2,
                "proration": True,
                "period_start": mid,
                "period_end": end,
            }
        )
    total = sum(int(x["amount"]) for x in lines)
    return Invoice.model_validate(
        {
            "id": f"in_{sub.id}_{month}",
            "customer": sub.customer,
            "subscription": sub.id,
            "status": "paid",
            "currency": sub.currency,
            "lines": lines,
            "subtotal": total,
            "tax": 0,
            "total": total,
            "amount_due": total,
            "billing_reason": "subscription_create" if month == 0 else "subscription_cycle",
            "period_start": start,
            "period_end": end,
            "created": start,
        }
    )


@st.composite
def histories(draw: st.DrawFn) -> dict[str, tuple[list[Subscription], list[Invoice]]]:
    out: dict[str, tuple[list[Subscription], list[Invoice]]] = {}
    for c in range(draw(st.integers(1, 4))):
        customer = f"cus_{c}"
        subs, invoices = [], []
        for s in range(draw(st.integers(1, 3))):
            currency = draw(st.sampled_from(["EUR", "JPY"]))
            start = draw(st.integers(0, 6))
            end = draw(st.none() | st.integers(start, 8))
            sub = _subscription(f"sub_{c}_{s}", customer, currency, start, end)
            subs.append(sub)
            last = end if end is not None else 8
            for month in range(start, last + 1):
                amount = draw(st.sampled_from([0, 500, 1000, 2500]))
                change = draw(st.none() | st.sampled_from([0, 700, 3000]))
                invoices.append(_invoice(sub, month, amount, change))
        out[customer] = (subs, invoices)
    return out


def _direct(history: dict[str, tuple[list[Subscription], list[Invoice]]], currency: str, month: str) -> tuple[int, int]:
    """MRR and customers at the end of ``month``, straight from every subscription's steps."""
    per_customer: dict[str, int] = defaultdict(int)
    for customer, (subs, invoices) in history.items():
        for sub in subs:
            if sub.currency != currency:
                continue
            value = 0
            for step in a.subscription_steps(sub, invoices):
                if a.month_of(step.at) <= month:
                    value = step.mrr
            per_customer[customer] += value
    return sum(per_customer.values()), sum(1 for v in per_customer.values() if v > 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_movements_add_up_to_the_change_in_mrr_and_match_a_direct_count(history: Any) -> None:
    totals = a.total(a.customer_contributions(subs, invoices) for subs, invoices in history.values())
    last = a.month_of(MONTHS[9])
    for currency in ("EUR", "JPY"):
        aggregates = {k[2]: v for k, v in totals.items() if k[:2] == ("mrr", currency)}
        previous = 0
        for row in a.mrr_months(aggregates, last):
            assert row.new + row.expansion + row.reactivation - row.contraction - row.churn == row.mrr - previous
            assert min(row.new, row.expansion, row.contraction, row.churn, row.reactivation) >= 0
            assert (row.mrr, row.customers) == _direct(history, currency, row.month)
            previous = row.mrr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_applying_states_as_differences_in_any_order_ends_where_a_rebuild_does(history: Any, rnd: Any) -> None:
    # each customer's states as its invoices appeared one by one; applied shuffled across customers, with
    # repeats of stale states (a redelivered event reads the store as it is then: here, a later state)
    applied: dict[str, a.Contribution] = {}
    counters: a.Contribution = {}
    work = []
    for customer, (_, invoices) in history.items():
        for n in range(len(invoices) + 1):
            work.append((customer, n))
    rnd.shuffle(work)
    work.extend((customer, len(invoices)) for customer, (_, invoices) in history.items())  # every queue drains
    for customer, n in work:
        subs, invoices = history[customer]
        state = a.customer_contributions(subs, invoices[:n])
        delta = a.difference(applied.get(customer, {}), state)
        for key, values in delta.items():
            for name, value in values.items():
                counters.setdefault(key, {})[name] = counters.get(key, {}).get(name, 0) + value
        applied[customer] = state
    rebuilt = a.total(a.customer_contributions(subs, invoices) for subs, invoices in history.values())
    assert {k: {n: v for n, v in c.items() if v} for k, c in counters.items() if any(c.values())} == rebuilt


def test_usage_is_never_mrr_and_is_reported_on_its_own_by_the_month_used() -> None:
    from kassa.adapters.analytics import MemoryAnalytics
    from kassa.domain.settings import MerchantSettings
    from kassa.services.analytics import CustomerAnalytics, mrr_report

    sub = _subscription("sub_u", "cus_u", "EUR", 0, None)
    invoice = _invoice(sub, 1, 1000, None)
    usage_line = invoice.lines[0].model_copy(
        update={
            "amount": 437,
            "unit_amount": None,
            "unit_amount_decimal": "0.437",
            "quantity": 1000,
            "usage": {"meter": "mtr_1"},
            "period_start": MONTHS[0],
            "period_end": MONTHS[1],
        }
    )
    billed = invoice.model_copy(update={"lines": [*invoice.lines, usage_line]})
    contribution = a.customer_contributions([sub], [billed])
    assert contribution[("mrr", "EUR", a.month_of(MONTHS[1]))] == {"new": 1000, "new_customers": 1}
    assert contribution[("usage", "EUR", a.month_of(MONTHS[0]))] == {"amount": 437}
    store = MemoryAnalytics()
    store.apply(CustomerAnalytics("cus_u", {}, 0), contribution, contribution)
    report = mrr_report(store, MerchantSettings(), "2027-01", "2027-02", "EUR")
    assert [row["mrr"] for row in report["data"]] == [0, 1000]
    assert report["usage"] == [{"month": "2027-01", "amount": 437}, {"month": "2027-02", "amount": 0}]
