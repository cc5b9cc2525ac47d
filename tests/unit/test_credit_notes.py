"""Credit notes on open and paid invoices: limits, Stripe's refund/credit/out-of-band split, voiding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.domain.balance import BalanceTransactionType, ledger_balance
from kassa.domain.catalog import TaxBehavior
from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteLine,
    CreditNoteLineType,
    CreditNoteOutcome,
    CreditNoteReason,
    CreditNoteRequest,
    CreditNoteStatus,
    CreditNoteType,
    credit_note_id,
    credit_note_number,
    credit_state,
    issue_credit_note,
    void_credit_note,
)
from kassa.domain.errors import CurrencyMismatch, IllegalTransition, InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus, from_lines
from kassa.domain.periods import Period

NOW = datetime(2025, 4, 10, tzinfo=UTC)
PERIOD = Period(datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))
IS = InvoiceStatus


def inv_line(amount: int, tax: int = 0, behavior: TaxBehavior = TaxBehavior.EXCLUSIVE) -> InvoiceLine:
    return InvoiceLine(
        description="Pro",
        amount=amount,
        quantity=1,
        unit_amount=amount,
        price="price_1",
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        tax_behavior=behavior,
        tax_amount=tax,
    )


def invoice(
    *amounts: int, status: InvoiceStatus = IS.OPEN, lines: list[InvoiceLine] | None = None, due: int | None = None
) -> Invoice:
    draft = from_lines(
        "in_1", "cus_1", "sub_1", "EUR", lines or [inv_line(a) for a in amounts], PERIOD, NOW, BillingReason.MANUAL
    )
    if due is not None:
        draft = draft.model_copy(update={"amount_due": due})
    if status is IS.DRAFT:
        return draft
    opened = draft.finalize("KASSA-0007", NOW)
    return opened if status is IS.OPEN else opened.transition(status, NOW)


def on_line(index: int, amount: int) -> CreditNoteLine:
    return CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, invoice_line=index, amount=amount)


def custom(amount: int) -> CreditNoteLine:
    return CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, amount=amount, description="Goodwill")


def issue(
    inv: Invoice, *lines: CreditNoteLine, previous: tuple[CreditNote, ...] = (), seq: int = 1, **kw: object
) -> CreditNoteOutcome:
    request = CreditNoteRequest(lines=lines, **kw)  # type: ignore[arg-type]
    return issue_credit_note(
        inv,
        request,
        previous=previous,
        credit_note_id=credit_note_id(inv.id, seq),
        number=credit_note_number(inv.number or "", seq),
        now=NOW,
    )


# ------------------------------------------------------------------ open invoices: reduce the amount due
def test_a_note_on_an_open_invoice_reduces_the_amount_due() -> None:
    out = issue(invoice(2000, 1000), on_line(0, 500), reason=CreditNoteReason.ORDER_CHANGE, memo="one seat less")
    assert (out.amount_due, out.invoice_status, out.refund_amount) == (2500, IS.OPEN, 0)
    assert out.pre_payment_credit_notes_amount == 500 and out.post_payment_credit_notes_amount == 0
    assert out.balance_transaction is None
    note = out.credit_note
    assert (note.type, note.total, note.number, note.status) == (
        CreditNoteType.PRE_PAYMENT,
        500,
        "KASSA-0007-CN-01",
        CreditNoteStatus.ISSUED,
    )


def test_crediting_the_whole_amount_due_marks_the_invoice_paid() -> None:
    out = issue(invoice(2000, 1000), on_line(0, 2000), custom(1000))
    assert (out.amount_due, out.invoice_status) == (0, IS.PAID)


def test_an_open_invoice_note_refunds_nothing() -> None:
    with pytest.raises(InvalidInput) as error:
        issue(invoice(2000), on_line(0, 500), refund_amount=500)
    assert error.value.param == "refund_amount"


def test_an_open_invoice_note_cannot_exceed_the_amount_due() -> None:
    # 1000 of the 3000 were paid from the customer balance: 2000 are due
    with pytest.raises(InvalidInput, match="amount due 2000"):
        issue(invoice(2000, 1000, due=2000), on_line(0, 2000), custom(100))


def test_uncollectible_invoices_take_pre_payment_notes() -> None:
    out = issue(invoice(2000, status=IS.UNCOLLECTIBLE), on_line(0, 2000))
    assert out.credit_note.type is CreditNoteType.PRE_PAYMENT and out.invoice_status is IS.PAID


# ------------------------------------------------------------------ paid invoices: refund + credit + out of band
def test_a_note_on_a_paid_invoice_splits_into_refund_credit_and_out_of_band() -> None:
    out = issue(
        invoice(2000, 1000, status=IS.PAID),
        on_line(0, 2000),
        refund_amount=1000,
        credit_amount=600,
        out_of_band_amount=400,
        reason=CreditNoteReason.PRODUCT_UNSATISFACTORY,
    )
    note = out.credit_note
    assert note.type is CreditNoteType.POST_PAYMENT
    assert (note.refund_amount, note.credit_amount, note.out_of_band_amount) == (1000, 600, 400)
    assert out.refund_amount == 1000 and out.post_payment_credit_notes_amount == 2000
    assert out.amount_due == 3000 and out.invoice_status is IS.PAID  # a paid invoice stays paid
    txn = out.balance_transaction
    assert txn is not None
    assert (txn.type, txn.amount, txn.credit_note, txn.invoice) == (
        BalanceTransactionType.CREDIT_NOTE,
        -600,
        note.id,
        "in_1",
    )


def test_a_paid_invoice_note_defaults_to_a_full_refund() -> None:
    out = issue(invoice(2000, status=IS.PAID), on_line(0, 800))
    assert (out.refund_amount, out.credit_note.credit_amount, out.balance_transaction) == (800, 0, None)


def test_the_split_must_sum_to_the_total() -> None:
    with pytest.raises(InvalidInput, match="= 900, but the credit note total is 1000") as error:
        issue(invoice(2000, status=IS.PAID), on_line(0, 1000), refund_amount=500, credit_amount=400)
    assert error.value.param == "refund_amount"


def test_refunds_never_exceed_what_was_paid() -> None:
    # total 1000, 300 came from the customer balance: 700 paid by card
    paid = invoice(1000, status=IS.PAID, due=700)
    assert paid.amount_paid == 700
    with pytest.raises(InvalidInput, match="exceeds the 700 paid"):
        issue(paid, on_line(0, 1000), refund_amount=1000)
    out = issue(paid, on_line(0, 1000), refund_amount=700, credit_amount=300)
    assert out.balance_transaction is not None and out.balance_transaction.amount == -300


# ------------------------------------------------------------------ limits
def test_the_total_never_exceeds_what_is_left_to_credit() -> None:
    paid = invoice(2000, 1000, status=IS.PAID)
    first = issue(paid, on_line(0, 2000), custom(500), credit_amount=2500)
    assert credit_state(paid, [first.credit_note]).creditable == 500
    with pytest.raises(InvalidInput, match="exceeds the 500 still creditable") as error:
        issue(paid, custom(600), previous=(first.credit_note,), seq=2)
    assert error.value.param == "lines"
    second = issue(paid, on_line(1, 500), previous=(first.credit_note,), seq=2)
    assert second.credit_note.number == "KASSA-0007-CN-02"
    assert second.post_payment_credit_notes_amount == 3000


def test_a_line_is_never_credited_beyond_its_amount_including_exclusive_tax() -> None:
    taxed = invoice(lines=[inv_line(1000, 210), inv_line(500, 0)], status=IS.PAID)
    assert taxed.total == 1710
    first = issue(taxed, on_line(0, 1000))
    with pytest.raises(InvalidInput, match="line 0 can be credited 210 more") as error:
        issue(taxed, on_line(0, 211), previous=(first.credit_note,), seq=2)
    assert error.value.param == "lines.amount"
    assert issue(taxed, on_line(0, 210), previous=(first.credit_note,), seq=2).credit_note.total == 210
    inclusive = invoice(lines=[inv_line(1210, 210, TaxBehavior.INCLUSIVE)], status=IS.PAID)
    with pytest.raises(InvalidInput):
        issue(inclusive, on_line(0, 1211))


def test_unknown_lines_other_currencies_and_unfinalized_invoices_are_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        issue(invoice(1000), on_line(3, 10))
    assert error.value.param == "lines.invoice_line"
    with pytest.raises(CurrencyMismatch):
        issue(invoice(1000), on_line(0, 10), currency="usd")
    with pytest.raises(IllegalTransition):
        issue(invoice(1000, status=IS.DRAFT), on_line(0, 10))
    with pytest.raises(IllegalTransition):
        issue(invoice(1000, status=IS.VOID), on_line(0, 10))


def test_credit_note_lines_are_validated() -> None:
    with pytest.raises(InvalidInput):
        CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=10)
    with pytest.raises(InvalidInput):
        CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, amount=10)
    with pytest.raises(InvalidInput, match="sum of its lines"):
        CreditNote(
            id="cn_1",
            number="N",
            invoice="in_1",
            customer="cus_1",
            currency="EUR",
            type=CreditNoteType.PRE_PAYMENT,
            lines=(custom(10),),
            total=11,
            created=NOW,
        )


# ------------------------------------------------------------------ voiding
def test_voiding_a_pre_payment_note_gives_the_amount_due_back() -> None:
    open_invoice = invoice(2000)
    out = issue(open_invoice, on_line(0, 500))
    reduced = open_invoice.model_copy(update={"amount_due": out.amount_due})
    voided = void_credit_note(out.credit_note, reduced, NOW)
    assert voided.amount_due == 2000 and voided.credit_note.status is CreditNoteStatus.VOID
    assert void_credit_note(voided.credit_note, open_invoice, NOW).balance_transaction is None  # twice: no-op
    assert credit_state(open_invoice, [voided.credit_note]).creditable == 2000


def test_voiding_a_credit_reverses_the_balance_entry_and_refunds_cannot_be_voided() -> None:
    paid = invoice(2000, status=IS.PAID)
    credited = issue(paid, on_line(0, 800), credit_amount=800)
    reversal = void_credit_note(credited.credit_note, paid, NOW).balance_transaction
    assert reversal is not None and reversal.amount == 800
    assert credited.balance_transaction is not None
    assert ledger_balance([credited.balance_transaction, reversal]).amount == 0
    refunded = issue(paid, on_line(0, 800), seq=2)
    with pytest.raises(IllegalTransition):
        void_credit_note(refunded.credit_note, paid, NOW)


# ------------------------------------------------------------------ property
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=4),
    requests=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.integers(min_value=1, max_value=10**6), st.integers(0, 2)),
        max_size=8,
    ),
)
def test_credit_notes_never_credit_more_than_the_invoice(
    amounts: list[int], requests: list[tuple[int, int, int]]
) -> None:
    paid = invoice(*amounts, status=IS.PAID)
    notes: list[CreditNote] = []
    for index, amount, split in requests:
        kw = [{}, {"credit_amount": amount}, {"out_of_band_amount": amount}][split]
        try:
            out = issue(paid, on_line(index, amount), previous=tuple(notes), seq=len(notes) + 1, **kw)
        except InvalidInput:
            continue
        note = out.credit_note
        assert note.refund_amount + note.credit_amount + note.out_of_band_amount == note.total
        notes.append(note)
    state = credit_state(paid, notes)
    assert sum(n.total for n in notes) == state.post_payment_credit_notes_amount <= paid.total
    for i, credited in enumerate(state.credited_per_line):
        assert credited <= amounts[i] if i < len(amounts) else credited == 0
    assert state.refunded <= paid.amount_paid
