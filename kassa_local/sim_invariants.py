"""The simulator's invariants, computed independently of the services' bookkeeping: from Stripe's
record of PaymentIntents (``MemoryGateway.intents``) and what the store holds.

* ``double_charges`` — succeeded PaymentIntents beyond the first for one invoice;
* ``unmatched_paid_invoices`` — paid invoices (with an amount due) not matched by exactly one
  succeeded PaymentIntent of their amount and currency, the one the invoice names;
* ``unmatched_charges`` — succeeded PaymentIntents whose invoice is not paid (money taken for nothing);
* ``duplicate_invoices`` — more than one invoice for one subscription's period;
* ``lost_invoices`` — a period of a subscription that has no invoice: a gap between consecutive
  invoices, a subscription whose period moved past its latest invoice, or a live subscription whose
  period ended more than ``grace`` ago without being renewed;
* ``number_gaps`` — invoice numbers missing or used twice in the gapless sequence of each prefix;
* ``stuck_invoices`` — open invoices of live subscriptions with an attempt claimed and no outcome;
* ``balance_mismatches`` — customers whose balance is not the sum of their ledger (every invoice's
  ``ending_balance − starting_balance`` and every credit note's balance transaction);
* ``receipts_missing`` — paid invoices whose receipt email was never sent (the ``invoice.paid``
  event that the dunning function answers with it was lost), when an outbox is given;
* ``ledger_balanced`` — what the paid invoices say was paid equals what Stripe charged, per currency,
  and no balance mismatches.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from kassa.adapters.memory import MemoryOutbox, MemoryStore
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.subscription import Status
from kassa_local.memory_gateway import MemoryGateway

_LIVE = (Status.ACTIVE, Status.PAST_DUE, Status.UNPAID)
_NUMBER = re.compile(r"^(?P<prefix>.+)-(?P<seq>\d+)$")


def check(
    store: MemoryStore,
    gateway: MemoryGateway,
    now: datetime,
    grace: timedelta = timedelta(hours=2),
    outbox: MemoryOutbox | None = None,
) -> dict[str, Any]:
    succeeded = gateway.succeeded()
    by_invoice: dict[str, list[Any]] = defaultdict(list)
    for charge in succeeded:
        by_invoice[charge.invoice].append(charge)
    examples: dict[str, list[str]] = defaultdict(list)

    def note(kind: str, what: str) -> None:
        if len(examples[kind]) < 5:
            examples[kind].append(what)

    double = 0
    for invoice_id, charges in by_invoice.items():
        if len(charges) > 1:
            double += len(charges) - 1
            note("double_charges", invoice_id)

    invoices = list(store.invoices.values())
    unmatched_paid = 0
    unmatched_charges = 0
    paid_by_invoices: Counter[str] = Counter()
    for inv in invoices:
        charges = by_invoice.get(inv.id, [])
        if inv.status is InvoiceStatus.PAID and inv.amount_due > 0 and not inv.paid_out_of_band:
            paid_by_invoices[inv.currency] += inv.amount_paid
            good = (
                len(charges) == 1
                and charges[0].amount == inv.amount_due == inv.amount_paid
                and charges[0].currency == inv.currency
                and inv.payment_intent == charges[0].id
            )
            if not good:
                unmatched_paid += 1
                note("unmatched_paid_invoices", inv.id)
        elif charges and inv.status is not InvoiceStatus.PAID:
            unmatched_charges += len(charges)
            note("unmatched_charges", inv.id)
    known = {inv.id for inv in invoices}
    for invoice_id, charges in by_invoice.items():
        if invoice_id not in known:
            unmatched_charges += len(charges)
            note("unmatched_charges", invoice_id)
    charged: Counter[str] = Counter()
    for charge in succeeded:
        charged[charge.currency] += charge.amount

    duplicates, lost = _periods(store, invoices, now, grace, note)
    gaps = _number_gaps(invoices, note)
    stuck = 0
    for inv in invoices:
        sub = store.subscriptions.get(inv.subscription) if inv.subscription else None
        live = inv.status is InvoiceStatus.OPEN and inv.attempt_pending and sub is not None and sub.status in _LIVE
        claimed = inv.attempted_at or inv.finalized_at or inv.created  # a renewal's is claimed as it is made
        if live and now - claimed > grace:
            stuck += 1
            note("stuck_invoices", inv.id)
    mismatches = _balances(store, invoices, note)
    ledger_balanced = mismatches == 0 and paid_by_invoices == charged
    receipts = 0
    if outbox is not None:
        for inv in invoices:
            record = outbox.get(f"{inv.id}:receipt")
            if inv.status is InvoiceStatus.PAID and inv.amount_paid > 0 and (record is None or record.status != "sent"):
                receipts += 1
                note("receipts_missing", inv.id)
    bad = double or unmatched_paid or unmatched_charges or duplicates or lost or gaps or stuck or receipts
    ok = not bad and ledger_balanced
    return {
        "double_charges": double,
        "unmatched_paid_invoices": unmatched_paid,
        "unmatched_charges": unmatched_charges,
        "duplicate_invoices": duplicates,
        "lost_invoices": lost,
        "number_gaps": gaps,
        "stuck_invoices": stuck,
        "balance_mismatches": mismatches,
        "receipts_missing": receipts,
        "ledger_balanced": ledger_balanced,
        "charged": dict(sorted(charged.items())),
        "ok": ok,
        "violations": dict(examples),
    }


def _periods(
    store: MemoryStore, invoices: list[Invoice], now: datetime, grace: timedelta, note: Any
) -> tuple[int, int]:
    by_sub: dict[str, list[Invoice]] = defaultdict(list)
    for inv in invoices:
        if inv.subscription and inv.billing_reason.value in ("subscription_create", "subscription_cycle"):
            by_sub[inv.subscription].append(inv)
    duplicates = lost = 0
    for sub in store.subscriptions.values():
        own = sorted(by_sub.get(sub.id, []), key=lambda i: (i.period_start, i.id))
        starts = Counter(i.period_start for i in own)
        for start, count in starts.items():
            if count > 1:
                duplicates += count - 1
                note("duplicate_invoices", f"{sub.id}@{start.isoformat()}")
        distinct = sorted({(i.period_start, i.period_end) for i in own})
        for (_, end), (start, _) in zip(distinct, distinct[1:], strict=False):
            if start != end:
                lost += 1
                note("lost_invoices", f"{sub.id}: nothing for {end.isoformat()}–{start.isoformat()}")
        if sub.trial_end is not None and not own:
            continue
        if distinct and sub.current_period_start > distinct[-1][0] and sub.status in _LIVE:
            lost += 1
            note("lost_invoices", f"{sub.id}: period {sub.current_period_start.isoformat()} has no invoice")
        due = sub.status in _LIVE and not sub.cancel_at_period_end and sub.pause_collection is None
        if due and sub.current_period_end + grace < now:
            lost += 1
            note("lost_invoices", f"{sub.id}: not renewed at {sub.current_period_end.isoformat()}")
    return duplicates, lost


def _number_gaps(invoices: list[Invoice], note: Any) -> int:
    sequences: dict[str, list[int]] = defaultdict(list)
    for inv in invoices:
        if inv.number is None:
            continue
        match = _NUMBER.match(inv.number)
        if match is None:
            note("number_gaps", f"unparsable number {inv.number}")
            continue
        sequences[match["prefix"]].append(int(match["seq"]))
    gaps = 0
    for prefix, seqs in sequences.items():
        expected = set(range(1, max(seqs) + 1))
        missing = expected - set(seqs)
        twice = len(seqs) - len(set(seqs))
        gaps += len(missing) + twice
        for seq in sorted(missing)[:3]:
            note("number_gaps", f"{prefix}-{seq:04d} missing")
        if twice:
            note("number_gaps", f"{prefix}: {twice} numbers used twice")
    return gaps


def _balances(store: MemoryStore, invoices: list[Invoice], note: Any) -> int:
    ledger: Counter[str] = Counter()
    for inv in invoices:
        if inv.ending_balance is not None:
            ledger[inv.customer] += inv.ending_balance - inv.starting_balance
    for credit_note in store.credit_notes.values():
        entry = getattr(credit_note, "balance_transaction", None)
        if entry is not None:
            ledger[entry.customer] += entry.amount
    mismatches = 0
    for customer in store.customers.values():
        if customer.balance != ledger.get(customer.id, 0):
            mismatches += 1
            note(
                "balance_mismatches", f"{customer.id}: balance {customer.balance}, ledger {ledger.get(customer.id, 0)}"
            )
    return mismatches
