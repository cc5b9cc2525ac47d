"""Revenue recognition, the double-entry journal and the bookkeeping CSVs over a hand-computed year:
a monthly €30 plan upgraded to €60 on 16 June, a yearly €120 plan from 15 January with half of it
refunded on 1 March (a credit note), Dutch VAT at 21% (docs/revenue.md, docs/accounting.md)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.adapters.memory import MemoryStore
from kassa.domain.catalog import TaxBehavior
from kassa.domain.credit_notes import CreditNote, CreditNoteLine, CreditNoteLineType, CreditNoteType
from kassa.domain.customer import Address, Customer
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.journal import Account, DocumentType, JournalLine, journal, render_journal_csv
from kassa.domain.payments import InvoiceDispute, InvoiceRefund, dispute_of, merge_dispute
from kassa.domain.revenue import Recognizable, history_items, month_bounds, revenue_by_month
from kassa.services import accounting


def at(y: int, m: int, d: int, h: int = 9) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def line(amount: int, start: datetime, end: datetime, *, tax_rate: int = 21, proration: bool = False,
         item: str | None = "si_1", behavior: TaxBehavior = TaxBehavior.EXCLUSIVE) -> InvoiceLine:  # fmt: skip
    tax = amount * tax_rate // 100 if behavior is TaxBehavior.EXCLUSIVE else amount - amount * 100 // (100 + tax_rate)
    return InvoiceLine(
        description="plan",
        amount=amount,
        quantity=1,
        period_start=start,
        period_end=end,
        subscription_item=item,
        proration=proration,
        tax_behavior=behavior,
        tax_amount=tax,
        tax_jurisdiction="NL",
        tax_rate=str(tax_rate),
    )


def invoice(number: int, customer: str, lines: list[InvoiceLine], when: datetime, *, paid: bool = True,
            currency: str = "EUR", **extra: object) -> Invoice:  # fmt: skip
    subtotal = sum(x.amount for x in lines)
    exclusive = sum(x.tax_amount for x in lines if x.tax_behavior is TaxBehavior.EXCLUSIVE)
    total = subtotal + exclusive
    return Invoice(
        id=f"in_{number:03d}",
        number=f"KASSA-{number:04d}",
        customer=customer,
        status=InvoiceStatus.PAID if paid else InvoiceStatus.OPEN,
        currency=currency,
        lines=lines,
        subtotal=subtotal,
        tax=sum(x.tax_amount for x in lines),
        total=total,
        amount_due=max(total, 0),
        amount_paid=max(total, 0) if paid else 0,
        billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
        period_start=lines[0].period_start,
        period_end=lines[0].period_end,
        created=when,
        finalized_at=when,
        paid_at=when if paid else None,
        tax_date=when.date(),
        customer_country="NL",
        **extra,
    )


def year_history() -> tuple[list[Invoice], list[tuple[CreditNote, Invoice]]]:
    invoices = []
    for month in range(1, 13):  # the monthly plan: €30 until June, €60 from July
        start, end = at(2026, month, 1), at(2026 + (month == 12), month % 12 + 1, 1)
        invoices.append(invoice(month, "cus_a", [line(3000 if month <= 6 else 6000, start, end)], start))
    upgrade = at(2026, 6, 16)  # half of June (15 of 30 days) left: −€15 unused + €30 at the new price
    invoices.append(
        invoice(
            13,
            "cus_a",
            [line(-1500, upgrade, at(2026, 7, 1), proration=True), line(3000, upgrade, at(2026, 7, 1), proration=True)],
            upgrade,
        )
    )
    refund = InvoiceRefund(id="re_1", amount=7260, currency="EUR", source="kassa", credit_note="cn_1",
                           created=at(2026, 3, 1))  # fmt: skip
    yearly = invoice(14, "cus_b", [line(12000, at(2026, 1, 15), at(2027, 1, 15))], at(2026, 1, 15),
                     refunds=[refund], amount_refunded=7260)  # fmt: skip
    invoices.append(yearly)
    note = CreditNote(
        id="cn_1",
        number="KASSA-0014-CN-01",
        invoice=yearly.id,
        customer="cus_b",
        currency="EUR",
        type=CreditNoteType.POST_PAYMENT,
        lines=(
            CreditNoteLine(
                type=CreditNoteLineType.INVOICE_LINE_ITEM,
                amount=7260,
                invoice_line=0,
                net_amount=6000,
                tax_amount=1260,
                tax_jurisdiction="NL",
                tax_rate="21",
            ),  # fmt: skip
        ),
        total=7260,
        subtotal=6000,
        tax=1260,
        refund_amount=7260,
        created=at(2026, 3, 1),
        tax_date=date(2026, 3, 1),
    )
    return invoices, [(note, yearly)]


# the yearly €120 line, by hand: cumulative days from 15 January at each month's end over 365 days,
# round_half_up(12000 × days / 365): 17 → 559 (€5.59), 45 → 1479, 76 → 2499 …, 365 → 12000
YEARLY_MONTHS = [559, 920, 1020, 986, 1019, 986, 1020, 1019, 986, 1019, 987, 1019, 460]
# the credit note reverses half of it from 1 March: nothing before, then the catch-up through 31 March
HALF_REVERSED = [0, 0, -1249, -493, -510, -493, -510, -509, -494, -509, -493, -510, -230]


def test_a_yearly_plan_from_15_january_recognizes_17_of_365_days_in_january() -> None:
    item = Recognizable("in_1", 0, "EUR", 12000, date(2026, 1, 15), date(2027, 1, 15), date(2026, 1, 15))
    assert item.days == 365
    assert item.through(date(2026, 1, 31)) == 559  # €5.59
    assert item.amount - item.through(date(2026, 1, 31)) == 11441  # €114.41 deferred
    assert item.through(date(2026, 1, 14)) == 0
    assert item.through(date(2027, 1, 14)) == 12000 == item.through(date(2030, 1, 1))
    months = revenue_by_month([item], date(2026, 1, 1), date(2027, 1, 1))
    assert [m.recognized for m in months] == YEARLY_MONTHS
    assert sum(m.recognized for m in months) == 12000


@pytest.mark.parametrize(
    ("currency", "amount", "january"),
    [("EUR", 12000, 559), ("JPY", 12000, 559), ("KWD", 120000, 5589)],  # KWD 120.000: 5.589 in January
)
def test_rounding_is_per_minor_unit_and_the_months_sum_to_the_line(currency: str, amount: int, january: int) -> None:
    item = Recognizable("in_1", 0, currency, amount, date(2026, 1, 15), date(2027, 1, 15), date(2026, 1, 15))
    months = revenue_by_month([item], date(2026, 1, 1), date(2027, 1, 1))
    assert months[0].recognized == january
    assert sum(m.recognized for m in months) == amount


def test_one_off_items_at_once_and_late_invoices_catch_up() -> None:
    one_off = line(5000, at(2026, 2, 10), at(2026, 2, 10), item=None)
    inv = invoice(1, "cus_a", [one_off], at(2026, 2, 10))
    [item] = history_items([inv], [])
    assert item.through(date(2026, 2, 9)) == 0 and item.through(date(2026, 2, 10)) == 5000
    # usage billed in arrears on 1 March for February: all of it on the day it is booked
    arrears = invoice(2, "cus_a", [line(2800, at(2026, 2, 1), at(2026, 3, 1), item="si_m")], at(2026, 3, 1))
    [late] = history_items([arrears], [])
    assert late.through(date(2026, 2, 28)) == 0 and late.through(date(2026, 3, 1)) == 2800


def test_inclusive_prices_recognize_the_amount_without_its_tax() -> None:
    inv = invoice(1, "cus_a", [line(1210, at(2026, 1, 1), at(2026, 2, 1), behavior=TaxBehavior.INCLUSIVE)],
                  at(2026, 1, 1))  # fmt: skip
    [item] = history_items([inv], [])
    assert item.amount == 1000 and inv.lines[0].tax_amount == 210


def test_revenue_over_the_hand_computed_year() -> None:
    invoices, notes = year_history()
    months = revenue_by_month(history_items(invoices, notes), date(2026, 1, 1), date(2026, 12, 1))
    monthly = [3000] * 5 + [3000 - 1500 + 3000] + [6000] * 6
    expected = [a + b + c for a, b, c in zip(monthly, YEARLY_MONTHS, HALF_REVERSED, strict=False)]
    assert [m.recognized for m in months] == expected
    assert months[0].recognized == 3559 and months[2].recognized == 3000 + 1020 - 1249
    # deferred at the end of March: 12000 − 2499 of the yearly line, −6000 + 1249 of its reversal
    assert months[2].deferred == (12000 - 2499) + (-6000 + 1249) == 4750
    assert months[-1].deferred == (12000 - 11540) + (-6000 + 5770)  # 15 days of January 2027 left
    assert months[2].billed == 3000 - 6000 and months[5].billed == 3000 + 1500


def _balances(lines: list[JournalLine], account: Account, first: date, last: date) -> int:
    """Debits minus credits of ``account`` on days in [first, last]."""
    return sum(x.debit - x.credit for x in lines if x.account is account and first <= x.date <= last)


def test_the_journal_of_the_year_matches_the_revenue_report() -> None:
    invoices, notes = year_history()
    lines = journal(invoices, notes, date(2026, 1, 1), date(2026, 12, 31))
    months = revenue_by_month(history_items(invoices, notes), date(2026, 1, 1), date(2026, 12, 1))
    for month in months:
        y, m = map(int, month.month.split("-"))
        first = date(y, m, 1)
        last = date.fromordinal(date(y + (m == 12), m % 12 + 1, 1).toordinal() - 1)
        assert -_balances(lines, Account.REVENUE, first, last) == month.recognized
        assert -_balances(lines, Account.DEFERRED_REVENUE, date(2026, 1, 1), last) == month.deferred


def test_each_document_of_the_year_is_balanced_and_posts_what_it_should() -> None:
    invoices, notes = year_history()
    lines = journal(invoices, notes, date(2026, 1, 1), date(2026, 12, 31))
    documents: dict[str, list[JournalLine]] = {}
    for x in lines:
        documents.setdefault(x.document, []).append(x)
    for posted in documents.values():
        assert sum(x.debit for x in posted) == sum(x.credit for x in posted)

    def postings(document: str) -> set[tuple[str, str | None, int, int]]:
        return {(x.account.value, x.jurisdiction, x.debit, x.credit) for x in documents[document]}

    assert postings("in_014") == {
        ("accounts_receivable", None, 14520, 0),
        ("deferred_revenue", None, 0, 12000),
        ("vat_payable", "NL", 0, 2520),
    }
    assert postings("in_014:payment") == {("stripe_balance", None, 14520, 0), ("accounts_receivable", None, 0, 14520)}
    assert postings("cn_1") == {
        ("deferred_revenue", None, 6000, 0),
        ("vat_payable", "NL", 1260, 0),
        ("accounts_receivable", None, 0, 7260),
    }
    assert postings("re_1") == {("accounts_receivable", None, 7260, 0), ("stripe_balance", None, 0, 7260)}
    assert postings("in_014:recognition:2026-01-31") == {("deferred_revenue", None, 559, 0), ("revenue", None, 0, 559)}
    assert postings("cn_1:recognition:2026-03-31") == {("deferred_revenue", None, 0, 1249), ("revenue", None, 1249, 0)}
    # everything paid, the refund offsets the note: nothing receivable; VAT: the invoices' less the note's
    year = (date(2026, 1, 1), date(2026, 12, 31))
    assert _balances(lines, Account.RECEIVABLE, *year) == 0
    vat = sum(i.tax for i in invoices) - 1260
    assert -_balances(lines, Account.VAT_PAYABLE, *year) == vat
    assert {x.type for x in lines} >= {DocumentType.INVOICE, DocumentType.PAYMENT, DocumentType.REFUND,
                                      DocumentType.CREDIT_NOTE, DocumentType.RECOGNITION}  # fmt: skip


def test_a_journal_of_part_of_the_year_is_the_part_of_the_year_journal() -> None:
    invoices, notes = year_history()
    whole = journal(invoices, notes, date(2026, 1, 1), date(2026, 12, 31))
    halves = journal(invoices, notes, date(2026, 1, 1), date(2026, 3, 10)) + journal(
        invoices, notes, date(2026, 3, 11), date(2026, 12, 31)
    )
    for account in Account:
        assert _balances(halves, account, date(2026, 1, 1), date(2026, 12, 31)) == _balances(
            whole, account, date(2026, 1, 1), date(2026, 12, 31)
        )


def test_refunds_without_a_note_lost_disputes_and_out_of_band_payments() -> None:
    start = at(2026, 4, 1)
    refund = InvoiceRefund(id="re_dash", amount=500, currency="EUR", source="stripe", created=at(2026, 4, 3))
    dispute = InvoiceDispute(id="dp_1", amount=1210, currency="EUR", status="lost", amount_lost=1210,
                             updated_at=at(2026, 4, 20))  # fmt: skip
    inv = invoice(1, "cus_a", [line(1000, start, at(2026, 5, 1))], start, refunds=[refund], disputes=[dispute])
    cash = invoice(2, "cus_a", [line(1000, start, at(2026, 5, 1))], start, paid_out_of_band=True)
    lines = journal([inv, cash], [], date(2026, 4, 1), date(2026, 4, 30))
    by_doc = {(x.document, x.account.value): (x.debit, x.credit) for x in lines}
    assert by_doc[("re_dash", "refunds")] == (500, 0) and by_doc[("re_dash", "stripe_balance")] == (0, 500)
    assert by_doc[("dp_1:lost", "dispute_losses")] == (1210, 0)
    assert by_doc[("dp_1", "disputed_funds")] == (1210, 0) and by_doc[("dp_1", "stripe_balance")] == (0, 1210)
    assert by_doc[("in_002:payment", "bank")] == (1210, 0)


def _dispute(status: str, **extra: object) -> InvoiceDispute:
    return InvoiceDispute(id="dp_9", amount=1210, currency="EUR", status=status, created=at(2026, 4, 5),
                          updated_at=at(2026, 5, 20), **extra)  # type: ignore[arg-type]  # fmt: skip


def _dispute_lines(dispute: InvoiceDispute) -> dict[tuple[str, str], tuple[int, int]]:
    start = at(2026, 4, 1)
    inv = invoice(1, "cus_a", [line(1000, start, at(2026, 5, 1))], start, disputes=[dispute])
    lines = journal([inv], [], date(2026, 4, 1), date(2026, 5, 31))
    return {(x.document, x.account.value): (x.debit, x.credit) for x in lines if x.type is DocumentType.DISPUTE}


def test_a_dispute_is_booked_when_opened_with_its_fee_and_when_won_or_lost() -> None:
    opened = _dispute_lines(_dispute("needs_response", fee=1500))
    assert opened == {
        ("dp_9", "disputed_funds"): (1210, 0),
        ("dp_9", "dispute_fees"): (1500, 0),
        ("dp_9", "stripe_balance"): (0, 2710),
    }
    won = _dispute_lines(_dispute("won", fee=1500, fee_returned=1500))
    assert won[("dp_9:won", "stripe_balance")] == (2710, 0)
    assert won[("dp_9:won", "disputed_funds")] == (0, 1210) and won[("dp_9:won", "dispute_fees")] == (0, 1500)
    lost = _dispute_lines(_dispute("lost", amount_lost=1210, fee=1500))
    assert lost[("dp_9:lost", "dispute_losses")] == (1210, 0) and lost[("dp_9:lost", "disputed_funds")] == (0, 1210)
    assert ("dp_9:lost", "dispute_fees") not in lost  # a lost dispute's fee stays an expense
    # an inquiry withdraws nothing; the opening is dated at the dispute's creation, the outcome at its update
    assert _dispute_lines(_dispute("warning_needs_response")) == {}
    start = at(2026, 4, 1)
    inv = invoice(1, "cus_a", [line(1000, start, at(2026, 5, 1))], start, disputes=[_dispute("won")])
    april = journal([inv], [], date(2026, 4, 1), date(2026, 4, 30))
    assert {x.document for x in april if x.type is DocumentType.DISPUTE} == {"dp_9"}


def test_the_dispute_fee_is_read_from_the_dispute_s_balance_transactions() -> None:
    obj = {"id": "dp_1", "amount": 1210, "currency": "eur", "status": "won", "created": 1775000000,
           "balance_transactions": [{"amount": -1210, "fee": 1500}, {"amount": 1210, "fee": -1500}]}  # fmt: skip
    dispute = dispute_of(obj, at(2026, 5, 1), "EUR")
    assert (dispute.fee, dispute.fee_returned) == (1500, 1500)
    assert dispute_of({**obj, "balance_transactions": []}, None, "EUR").fee == 0
    known = dispute.model_copy(update={"status": "needs_response", "fee_returned": 0, "updated_at": at(2026, 4, 1)})
    later = dispute.model_copy(update={"fee": 0, "fee_returned": 0})  # an event without the expanded fees
    merged, _ = merge_dispute([known], later)
    assert merged[0].fee == 1500 and merged[0].status == "won"


def test_void_and_draft_invoices_are_not_booked() -> None:
    inv = invoice(1, "cus_a", [line(1000, at(2026, 4, 1), at(2026, 5, 1))], at(2026, 4, 1), paid=False)
    void = inv.model_copy(update={"status": InvoiceStatus.VOID})
    assert journal([void], [], date(2026, 1, 1), date(2026, 12, 31)) == []
    assert history_items([void], []) == []


amounts = st.integers(min_value=-500_000, max_value=5_000_000)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Invoice], list[tuple[CreditNote, Invoice]]]:
    invoices, notes = [], []
    for n in range(draw(st.integers(1, 6))):
        day = draw(st.integers(0, 500))
        start = datetime.fromordinal(date(2026, 1, 1).toordinal() + day).replace(tzinfo=UTC, hour=9)
        length = draw(st.integers(0, 400))
        end = datetime.fromordinal(start.toordinal() + length).replace(tzinfo=UTC, hour=9)
        lines = [
            line(draw(amounts), start, end, tax_rate=draw(st.sampled_from([0, 7, 21])),
                 behavior=draw(st.sampled_from(list(TaxBehavior))), item=draw(st.sampled_from(["si_1", None])))
            for _ in range(draw(st.integers(1, 3)))
        ]  # fmt: skip
        refunds = []
        inv = invoice(
            n, "cus_a", lines, start, paid=draw(st.booleans()), currency=draw(st.sampled_from(["EUR", "JPY"]))
        )
        if inv.status is InvoiceStatus.PAID and inv.amount_paid and draw(st.booleans()):
            refunds.append(InvoiceRefund(id=f"re_{n}", amount=draw(st.integers(1, inv.amount_paid)),
                                         currency=inv.currency, created=end))  # fmt: skip
        disputes = []
        if inv.status is InvoiceStatus.PAID and inv.amount_paid > 0 and draw(st.booleans()):
            status = draw(st.sampled_from(["warning_needs_response", "needs_response", "won", "lost"]))
            disputes.append(InvoiceDispute(id=f"dp_{n}", amount=inv.amount_paid, currency=inv.currency, status=status,
                                           amount_lost=inv.amount_paid if status == "lost" else 0,
                                           fee=draw(st.sampled_from([0, 1500])),
                                           fee_returned=draw(st.sampled_from([0, 1500])),
                                           created=start, updated_at=end))  # fmt: skip
        inv = inv.model_copy(update={"refunds": refunds, "disputes": disputes})
        invoices.append(inv)
        if draw(st.booleans()):
            credited = lines[0]
            net = draw(st.integers(min_value=1, max_value=max(abs(credited.amount), 1)))
            tax = draw(st.integers(0, 1000))
            note = CreditNote(
                id=f"cn_{n}", number=f"CN-{n}", invoice=inv.id, customer="cus_a", currency=inv.currency,
                type=CreditNoteType.PRE_PAYMENT,
                lines=(CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=net + tax, invoice_line=0,
                                      net_amount=net, tax_amount=tax, tax_jurisdiction="NL"),),
                total=net + tax, subtotal=net, tax=tax, created=end, tax_date=end.date(),
            )  # fmt: skip
            notes.append((note, inv))
    return invoices, notes


@given(histories(), st.integers(0, 900), st.integers(0, 400))
def test_every_document_balances_over_a_random_history(history, offset: int, span: int) -> None:  # type: ignore[no-untyped-def]
    invoices, notes = history
    first = date.fromordinal(date(2026, 1, 1).toordinal() + offset)
    last = date.fromordinal(first.toordinal() + span)
    lines = journal(invoices, notes, first, last)
    per_document: dict[tuple[str, str], int] = {}
    for x in lines:
        assert x.debit >= 0 and x.credit >= 0 and (x.debit == 0) != (x.credit == 0)
        assert first <= x.date <= last
        key = (x.document, x.currency)
        per_document[key] = per_document.get(key, 0) + x.debit - x.credit
    assert all(balance == 0 for balance in per_document.values())
    # and over all time, each invoice's revenue is recognized exactly (the cumulative method)
    everything = journal(invoices, notes, date(2025, 1, 1), date(2029, 12, 31))
    deferred = sum(x.credit - x.debit for x in everything if x.account is Account.DEFERRED_REVENUE)
    assert deferred == 0


@given(histories())
def test_each_month_recognized_and_deferred_revenue_add_up_to_the_invoiced_net(history) -> None:  # type: ignore[no-untyped-def]
    invoices, notes = history
    # the invoiced net per month and currency, from the documents themselves (invoices less credit notes)
    invoiced: dict[tuple[str, str], int] = {}
    for inv in invoices:
        if inv.status is not InvoiceStatus.VOID:
            key = (f"{inv.tax_date:%Y-%m}", inv.currency)
            inclusive = (x.tax_amount if x.tax_behavior is TaxBehavior.INCLUSIVE else 0 for x in inv.lines)
            revenue = sum(x.amount for x in inv.lines) - sum(inclusive)
            invoiced[key] = invoiced.get(key, 0) + revenue
    for note, _ in notes:
        key = (f"{note.tax_date:%Y-%m}", note.currency)
        invoiced[key] = invoiced.get(key, 0) - sum(x.net_amount for x in note.lines)
    first, last = date(2026, 1, 1), date(2028, 12, 31)
    rows = revenue_by_month(history_items(invoices, notes), first, last)
    lines = journal(invoices, notes, first, last)
    cumulative: dict[str, list[int]] = {}  # currency: [invoiced, recognized] so far
    for row in rows:
        so_far = cumulative.setdefault(row.currency, [0, 0])
        so_far[0] += invoiced.get((row.month, row.currency), 0)
        so_far[1] += row.recognized
        assert row.billed == invoiced.get((row.month, row.currency), 0)
        assert so_far[1] + row.deferred == so_far[0]  # recognized to date + deferred = invoiced to date
        end = month_bounds(date(int(row.month[:4]), int(row.month[5:]), 1))[1]
        month = [x for x in lines if x.currency == row.currency and f"{x.date:%Y-%m}" == row.month]
        assert sum(x.credit - x.debit for x in month if x.account is Account.REVENUE) == row.recognized
        booked = [x for x in lines if x.currency == row.currency and x.date <= end]
        assert sum(x.credit - x.debit for x in booked if x.account is Account.DEFERRED_REVENUE) == row.deferred


def test_the_journal_csv_has_the_json_fields() -> None:
    invoices, notes = year_history()
    lines = journal(invoices, notes, date(2026, 1, 1), date(2026, 1, 31))
    rows = list(csv.DictReader(io.StringIO(render_journal_csv(lines))))
    assert len(rows) == len(lines)
    assert rows[0].keys() == lines[0].as_json().keys()
    assert sum(int(r["debit"]) for r in rows) == sum(int(r["credit"]) for r in rows)


# -------------------------------------------------------------- the service, over the in-memory store
@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    invoices, notes = year_history()
    for inv in invoices:
        store.invoices[inv.id] = inv
    for note, _ in notes:
        store.credit_notes[note.id] = note
    for cid, name in (("cus_a", 'Anna; "A" BV'), ("cus_b", None)):
        store.customers[cid] = Customer(id=cid, email=f"{cid}@example.com", name=name, created=at(2025, 12, 1),
                                        address=Address(country="NL", city="Utrecht"), tax_id=None)  # fmt: skip
    return store


def test_the_service_reads_the_history_the_period_needs(store: MemoryStore) -> None:
    # March's journal: the yearly invoice was booked in January, its revenue and refund fall in March
    lines = accounting.journal_lines(store, date(2026, 3, 1), date(2026, 3, 31))
    documents = {x.document for x in lines}
    assert {"in_014:recognition:2026-03-31", "cn_1", "re_1", "in_003", "in_003:payment"} <= documents
    assert "in_014" not in documents
    report = accounting.revenue_report(store, date(2026, 1, 1), date(2026, 12, 1))
    assert report[0].recognized == 3559 and report[2].deferred == 4750
    with pytest.raises(InvalidInput) as error:
        accounting.journal_lines(store, date(2026, 3, 1), date(2026, 2, 1))
    assert error.value.param == "to"
    with pytest.raises(InvalidInput):
        accounting.journal_lines(store, date(2025, 1, 1), date(2026, 3, 1))


def test_bookkeeping_csvs(store: MemoryStore) -> None:
    rows = list(csv.DictReader(io.StringIO(accounting.invoices_export(store, date(2026, 6, 1), date(2026, 6, 30)))))
    assert [(r["invoice_number"], r["net_amount"], r["tax_amount"], r["gross_amount"]) for r in rows] == [
        ("KASSA-0006", "30.00", "6.30", "36.30"),
        ("KASSA-0013", "-15.00", "-3.15", "-18.15"),
        ("KASSA-0013", "30.00", "6.30", "36.30"),
    ]
    assert rows[0]["customer_name"] == 'Anna; "A" BV' and rows[0]["account_code"] == "4000"
    payments = list(csv.DictReader(io.StringIO(accounting.payments_export(store, date(2026, 3, 1), date(2026, 3, 31)))))
    assert [(p["type"], p["reference"], p["amount"]) for p in payments] == [
        ("payment", "in_003:payment", "36.30"),
        ("refund", "re_1", "-72.60"),
    ]
    customers = list(
        csv.DictReader(io.StringIO(accounting.customers_export(store, date(2026, 1, 1), date(2026, 1, 31))))
    )
    assert [(c["customer_id"], c["name"], c["city"], c["country"]) for c in customers] == [
        ("cus_a", 'Anna; "A" BV', "Utrecht", "NL"),
        ("cus_b", "", "Utrecht", "NL"),
    ]


def test_consecutive_months_are_contiguous() -> None:
    invoices, notes = year_history()
    months = revenue_by_month(history_items(invoices, notes), date(2026, 1, 1), date(2026, 12, 1))
    assert [m.month for m in months] == [f"2026-{m:02d}" for m in range(1, 13)]
    for before, after in pairwise(months):  # deferred moves by what is billed less what is recognized
        assert after.deferred == before.deferred + after.billed - after.recognized


# -------------------------------------------------------------- invoices made by the services themselves
def test_invoices_made_by_checkout_an_upgrade_and_a_refund() -> None:
    """A yearly €120 plan and a monthly €30 plan bought on 15 January (Oregon: no tax), the monthly one
    upgraded to €60 on 30 January (always_invoice: 16 of 31 days left), half of the yearly one refunded
    the same day."""
    from fakes import make_world

    from kassa.domain.proration import ProrationBehavior
    from kassa.services import payments, plan_changes

    world = make_world(at(2026, 1, 15))
    _, yearly_price = world.catalog(12000, interval="year")
    _, monthly_price = world.catalog(3000)
    _, bigger = world.catalog(6000)
    yearly = world.active_subscription(yearly_price, email="y@example.com")
    monthly = world.active_subscription(monthly_price, email="m@example.com")
    world.clock.set(at(2026, 1, 30))
    change = plan_changes.change_plan(world.billing, monthly.subscription.id, price_id=bigger.id,
                                      behavior=ProrationBehavior.ALWAYS_INVOICE)  # fmt: skip
    assert change.invoice is not None
    assert sorted(x.amount for x in change.invoice.lines) == [-1548, 3097]  # ∓ price × 16/31, half up
    payments.refund_invoice(world.billing, yearly.invoice.id, 6000)
    store = world.store

    [january] = accounting.revenue_report(store, date(2026, 1, 1), date(2026, 1, 1))
    # yearly 17/365 of 12000; monthly 17/31 of 3000; the prorations 2 of their 16 days (−193.5 → −194,
    # 387.125 → 387); the refund's note reverses 17/365 of 6000 from 30 January
    assert january.recognized == 559 + 1645 - 194 + 387 - 279
    lines = accounting.journal_lines(store, date(2026, 1, 1), date(2026, 1, 31))
    documents: dict[str, int] = {}
    for x in lines:
        documents[x.document] = documents.get(x.document, 0) + x.debit - x.credit
    assert len(documents) >= 9 and all(v == 0 for v in documents.values())
    assert -_balances(lines, Account.REVENUE, date(2026, 1, 1), date(2026, 1, 31)) == january.recognized
    assert -_balances(lines, Account.DEFERRED_REVENUE, date(2026, 1, 1), date(2026, 1, 31)) == january.deferred
    # paid in full, 6000 refunded through the note: the receivable is settled
    assert _balances(lines, Account.RECEIVABLE, date(2026, 1, 1), date(2026, 1, 31)) == 0


def test_the_revenue_csv_has_the_report_s_fields() -> None:
    from kassa.domain.revenue import render_revenue_csv

    invoices, notes = year_history()
    months = revenue_by_month(history_items(invoices, notes), date(2026, 1, 1), date(2026, 3, 1))
    rows = list(csv.DictReader(io.StringIO(render_revenue_csv(months))))
    assert [(r["month"], int(r["recognized"]), int(r["deferred"])) for r in rows] == [
        (m.month, m.recognized, m.deferred) for m in months
    ]


def test_the_payments_export_reads_only_the_customers_it_shows(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookback's invoices are read for their payments; their customers only when one falls in the period."""
    read: list[str] = []
    get = store.get_customer
    monkeypatch.setattr(store, "get_customer", lambda cid: read.append(cid) or get(cid))
    assert accounting.payments_export(store, date(2027, 6, 1), date(2027, 6, 30)).count("\n") == 1  # the header
    assert read == []
    accounting.payments_export(store, date(2026, 3, 1), date(2026, 3, 31))
    assert read and len(read) == len(set(read))
