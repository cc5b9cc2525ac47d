"""Credit notes carry their tax: the split of a credited amount into net and tax (one rule,
exact integers), custom lines, notes stored before they carried tax, and the tax reports netting
credit notes in the period of the note (not of its invoice)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.domain.catalog import TaxBehavior
from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteLine,
    CreditNoteLineType,
    CreditNoteRequest,
    CreditNoteStatus,
    credit_note_id,
    credit_note_number,
    credit_note_taxed_lines,
    issue_credit_note,
    line_creditable_amount,
    notes_with_tax,
    reversed_tax,
)
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus, from_lines
from kassa.domain.periods import Period
from kassa.domain.tax import TaxCustomer, TaxLineInput, TaxSettings, jurisdiction_report, oss_return, quote_tax
from kassa.domain.tax.report import to_euro_cents
from kassa.services.tax import reported_lines

SELLER = TaxSettings(home_country="NL", oss_registered=True, registrations=frozenset({"CA", "CA-QC"}))
INVOICED = datetime(2025, 2, 10, tzinfo=UTC)  # Q1
PERIOD = Period(INVOICED, datetime(2025, 3, 10, tzinfo=UTC))
Q2 = datetime(2025, 4, 10, tzinfo=UTC)
EX, INC = TaxBehavior.EXCLUSIVE, TaxBehavior.INCLUSIVE


def taxed_invoice(
    *amounts: int,
    country: str = "FI",
    state: str | None = None,
    currency: str = "EUR",
    behavior: TaxBehavior = EX,
    tax_codes: tuple[str | None, ...] = (),
    status: InvoiceStatus = InvoiceStatus.PAID,
) -> Invoice:
    """A finalized invoice taxed by the engine at the tax point ``INVOICED`` (Q1 2025)."""
    quote = quote_tax(
        [
            TaxLineInput(amount=a, tax_behavior=behavior, tax_code=(tax_codes[i] if i < len(tax_codes) else None))
            for i, a in enumerate(amounts)
        ],
        currency=currency,
        customer=TaxCustomer(address=Address(country=country, state=state)),
        settings=SELLER,
        tax_date=INVOICED.date(),
    )
    lines = [
        InvoiceLine(
            description="Pro",
            amount=a,
            quantity=1,
            unit_amount=a,
            price="price_1",
            period_start=PERIOD.start,
            period_end=PERIOD.end,
            tax_behavior=behavior,
            tax_amount=taxed.tax_amount,
            tax_rate=taxed.rate,
            tax_jurisdiction=taxed.jurisdiction,
            tax_details=taxed.model_dump(mode="json"),
        )
        for a, taxed in zip(amounts, quote.lines, strict=True)
    ]
    draft = from_lines("in_1", "cus_1", "sub_1", currency, lines, PERIOD, INVOICED, BillingReason.MANUAL)
    draft = draft.model_copy(
        update={"tax_date": quote.tax_date, "tax_breakdown": [r.model_dump(mode="json") for r in quote.breakdown]}
    )
    opened = draft.finalize("KASSA-0001", INVOICED)
    return opened if status is InvoiceStatus.OPEN else opened.transition(status, INVOICED)


def on_line(index: int, amount: int) -> CreditNoteLine:
    return CreditNoteLine.model_validate({"type": "invoice_line_item", "invoice_line": index, "amount": amount})


def custom(amount: int) -> CreditNoteLine:
    return CreditNoteLine.model_validate({"type": "custom_line_item", "amount": amount, "description": "Goodwill"})


def credit(invoice: Invoice, *lines: CreditNoteLine, previous: list[CreditNote] | None = None, now: datetime = Q2):
    earlier = previous or []
    seq = len(earlier) + 1
    return issue_credit_note(
        invoice,
        CreditNoteRequest(lines=lines, out_of_band_amount=sum(line.amount for line in lines)),
        previous=earlier,
        credit_note_id=credit_note_id(invoice.id, seq),
        number=credit_note_number(invoice.number or "", seq),
        now=now,
    ).credit_note


def credit_in_steps(invoice: Invoice, index: int, amounts: list[int]) -> list[CreditNote]:
    notes: list[CreditNote] = []
    for amount in amounts:
        notes.append(credit(invoice, on_line(index, amount), previous=notes))
    return notes


# ------------------------------------------------------------------ the split
def test_the_rule_rounds_half_up_and_stays_within_what_is_left() -> None:
    assert reversed_tax(5, gross=100, tax=10) == 1  # 0.5 → 1
    assert reversed_tax(4, gross=100, tax=10) == 0  # 0.4 → 0
    assert reversed_tax(100, gross=100, tax=10) == 10  # the whole: the whole tax
    assert reversed_tax(5, gross=100, tax=10, credited_before=95, reversed_before=9) == 1  # the rest of it
    assert reversed_tax(5, gross=100, tax=10, credited_before=90, reversed_before=10) == 0  # none left
    assert reversed_tax(5, gross=0, tax=0) == reversed_tax(5, gross=100, tax=0) == 0


def test_crediting_a_whole_exclusive_line_reverses_its_whole_tax() -> None:
    invoice = taxed_invoice(10000)  # FI 25.5 % on top: 10000 + 2550
    note = credit(invoice, on_line(0, line_creditable_amount(invoice.lines[0])))
    [line] = note.lines
    assert (line.amount, line.net_amount, line.tax_amount) == (12550, 10000, 2550)
    assert (line.tax_rate, line.tax_behavior, line.tax_jurisdiction) == ("25.5", EX, "FI")
    assert (note.subtotal, note.tax, note.total, note.tax_date) == (10000, 2550, 12550, Q2.date())
    assert [(r["jurisdiction"], r["rate"], r["taxable_amount"], r["tax_amount"]) for r in note.tax_breakdown] == [
        ("FI", "25.5", 10000, 2550)
    ]
    assert line.tax_details is not None and line.tax_details["rule"]["id"] == "eu_b2c_oss"


def test_a_partial_credit_reverses_tax_in_proportion() -> None:
    note = credit(taxed_invoice(10000), on_line(0, 5000))
    # 5000 × 2550 / 12550 = 1015.94 → 1016
    assert (note.lines[0].net_amount, note.lines[0].tax_amount) == (3984, 1016)
    assert note.tax_breakdown[0]["taxable_amount"] == 3984


def test_an_inclusive_line_credits_tax_out_of_the_amount() -> None:
    invoice = taxed_invoice(12100, country="NL", behavior=INC)  # 10000 + 2100 inside
    assert line_creditable_amount(invoice.lines[0]) == 12100
    half = credit(invoice, on_line(0, 6050))
    assert (half.subtotal, half.tax, half.lines[0].tax_behavior) == (5000, 1050, INC)
    whole = credit(invoice, on_line(0, 12100))
    assert (whole.subtotal, whole.tax) == (10000, 2100)


def test_several_partial_notes_add_up_to_the_line_tax_exactly() -> None:
    invoice = taxed_invoice(12100, country="NL", behavior=INC)
    notes = credit_in_steps(invoice, 0, [3333, 3333, 3333, 2101])
    # 3333 × 2100 / 12100 = 578.47 → 578 three times; the last takes the remaining 366 (not its own 365)
    assert [n.tax for n in notes] == [578, 578, 578, 366]
    assert sum(n.tax for n in notes) == 2100 and sum(n.subtotal for n in notes) == 10000


def test_tiny_credits_never_make_the_net_negative_and_the_last_one_takes_the_rest() -> None:
    invoice = taxed_invoice(10, currency="JPY")  # 10 + round(2.55) = 3 → gross 13
    notes = credit_in_steps(invoice, 0, [1] * 13)
    assert all(0 <= n.tax <= 1 and n.subtotal >= 0 for n in notes)
    assert sum(n.tax for n in notes) == 3 and sum(n.subtotal for n in notes) == 10


@pytest.mark.parametrize(
    ("currency", "amount", "credited", "tax"),
    [
        ("EUR", 10000, 5000, 1016),  # 5000 × 2550 / 12550 = 1015.94
        ("JPY", 999, 500, 102),  # tax 255 (no decimals), gross 1254: 500 × 255 / 1254 = 101.67
        ("KWD", 10001, 3333, 677),  # tax 2550 fils, gross 12551: 3333 × 2550 / 12551 = 677.17
    ],
)
def test_rounding_in_the_currencys_minor_unit(currency: str, amount: int, credited: int, tax: int) -> None:
    invoice = taxed_invoice(amount, currency=currency)
    first = credit(invoice, on_line(0, credited))
    assert first.tax == tax and first.subtotal == credited - tax
    rest = credit(invoice, on_line(0, line_creditable_amount(invoice.lines[0]) - credited), previous=[first])
    assert first.tax + rest.tax == invoice.lines[0].tax_amount
    assert first.subtotal + rest.subtotal == amount


def test_two_taxes_on_a_line_are_each_reversed_exactly() -> None:
    invoice = taxed_invoice(10000, country="CA", state="QC", currency="CAD")  # GST 500 + QST 998
    notes = credit_in_steps(invoice, 0, [3001, 4497, 4000])  # 11498 in all

    def component(note: CreditNote, jurisdiction: str) -> tuple[int, int]:
        details = note.lines[0].tax_details or {}
        found = [c for c in details["components"] if c["jurisdiction"] == jurisdiction]
        return found[0]["taxable_amount"], found[0]["tax_amount"]

    for note in notes:
        assert component(note, "CA")[1] + component(note, "CA-QC")[1] == note.tax
    assert sum(component(n, "CA")[1] for n in notes) == 500
    assert sum(component(n, "CA-QC")[1] for n in notes) == 998
    assert sum(component(n, "CA")[0] for n in notes) == sum(component(n, "CA-QC")[0] for n in notes) == 10000


# ------------------------------------------------------------------ custom lines
def test_a_custom_line_on_a_single_rate_invoice_reverses_tax_at_that_rate_inclusive() -> None:
    invoice = taxed_invoice(10000, 5000)  # FI 25.5 % on both: 15000 + 3825
    note = credit(invoice, custom(1255))
    [line] = note.lines
    assert (line.net_amount, line.tax_amount) == (1000, 255)  # 1255 × 3825 / 18825
    assert (line.tax_rate, line.tax_behavior, line.tax_jurisdiction) == ("25.5", INC, "FI")
    assert line.tax_details is not None and line.tax_details["components"][0]["tax_amount"] == 255


def test_a_custom_line_crediting_the_whole_invoice_reverses_its_whole_tax() -> None:
    invoice = taxed_invoice(10000, 5000)
    first = credit(invoice, on_line(0, 6000))
    rest = credit(invoice, custom(invoice.total - 6000), previous=[first])
    assert first.tax + rest.tax == invoice.tax == 3825


def test_a_custom_line_on_a_multi_rate_or_untaxed_invoice_carries_no_tax() -> None:
    mixed = taxed_invoice(10000, 5000, tax_codes=(None, "nontaxable"))  # 25.5 % and 0 %
    untaxed = (
        from_lines(
            "in_2",
            "cus_1",
            None,
            "EUR",
            [InvoiceLine(description="x", amount=1000, quantity=1, period_start=PERIOD.start, period_end=PERIOD.end)],
            PERIOD,
            INVOICED,
            BillingReason.MANUAL,
        )
        .finalize("KASSA-0002", INVOICED)
        .transition(InvoiceStatus.PAID, INVOICED)
    )
    for invoice in (mixed, untaxed):
        [line] = credit(invoice, custom(500)).lines
        assert (line.net_amount, line.tax_amount, line.tax_rate, line.tax_behavior, line.tax_details) == (
            500,
            0,
            None,
            None,
            None,
        )


def test_the_amounts_of_a_note_are_checked() -> None:
    with pytest.raises(InvalidInput, match="net_amount"):
        CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, description="x", amount=10, net_amount=9)
    with pytest.raises(InvalidInput, match="subtotal"):
        CreditNote(
            id="cn_1",
            number="N",
            invoice="in_1",
            customer="cus_1",
            currency="EUR",
            type="post_payment",  # type: ignore[arg-type]
            lines=(custom(10),),
            total=10,
            subtotal=9,
            out_of_band_amount=10,
            created=Q2,
        )


# ------------------------------------------------------------------ notes stored before they carried tax
def _stored_before(invoice: Invoice, amount: int) -> CreditNote:
    return CreditNote.model_validate(
        {
            "id": "cn_old",
            "number": "KASSA-0001-CN-01",
            "invoice": invoice.id,
            "customer": "cus_1",
            "currency": "EUR",
            "type": "post_payment",
            "lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": amount}],
            "total": amount,
            "refund_amount": amount,
            "created": "2025-03-01T00:00:00Z",
        }
    )


def test_an_old_note_loads_untaxed_and_its_tax_is_derived_from_the_invoice() -> None:
    invoice = taxed_invoice(10000)
    old = _stored_before(invoice, 6275)
    assert (old.subtotal, old.tax, old.tax_date, old.lines[0].net_amount) == (6275, 0, None, 6275)
    [derived] = notes_with_tax(invoice, [old])
    assert (derived.subtotal, derived.tax, derived.tax_date) == (5000, 1275, date(2025, 3, 1))
    rest = credit(invoice, on_line(0, 6275), previous=[old])  # the earlier note's share is not reversed again
    assert (rest.subtotal, rest.tax) == (5000, 1275)


# ------------------------------------------------------------------ property
@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(min_value=1, max_value=10**6),
    where=st.sampled_from([("FI", None, "EUR"), ("NL", None, "EUR"), ("FI", None, "JPY"), ("CA", "QC", "CAD")]),
    inclusive=st.booleans(),
    credits=st.lists(st.integers(min_value=1, max_value=2 * 10**6), max_size=8),
    finish=st.booleans(),
)
def test_partial_credits_never_reverse_more_than_the_line_tax(
    amount: int, where: tuple[str, str | None, str], inclusive: bool, credits: list[int], finish: bool
) -> None:
    country, state, currency = where
    invoice = taxed_invoice(amount, country=country, state=state, currency=currency, behavior=INC if inclusive else EX)
    line = invoice.lines[0]
    gross = line_creditable_amount(line)
    notes: list[CreditNote] = []
    for wanted in credits:
        try:
            notes.append(credit(invoice, on_line(0, wanted), previous=notes))
        except InvalidInput:
            continue
    credited = sum(n.total for n in notes)
    if finish and credited < gross:
        notes.append(credit(invoice, on_line(0, gross - credited), previous=notes))
        credited = gross
    for note in notes:
        assert 0 <= note.tax <= note.total and note.subtotal + note.tax == note.total
    reversed_ = sum(n.tax for n in notes)
    assert reversed_ <= line.tax_amount
    assert sum(n.subtotal for n in notes) <= gross - line.tax_amount
    if credited == gross:
        assert reversed_ == line.tax_amount
        for c in (line.tax_details or {})["components"]:
            parts = [
                x
                for n in notes
                for x in (n.lines[0].tax_details or {})["components"]
                if x["jurisdiction"] == c["jurisdiction"]
            ]
            assert sum(x["tax_amount"] for x in parts) == c["tax_amount"]


# ------------------------------------------------------------------ reports
def test_a_q2_credit_note_on_a_q1_invoice_is_declared_in_q2() -> None:
    invoice = taxed_invoice(10000)  # FI OSS, tax point 2025-02-10
    note = credit(invoice, on_line(0, 6275), now=Q2)  # 5000 + 1275
    lines = reported_lines([invoice], [note])
    q1 = oss_return(lines, year=2025, quarter=1)
    assert [(r.member_state, r.rate, r.taxable_amount, r.vat_amount) for r in q1.rows] == [("FI", "25.5", 10000, 2550)]
    q2 = oss_return(lines, year=2025, quarter=2)
    assert [(r.member_state, r.rate, r.taxable_amount, r.vat_amount) for r in q2.rows] == [("FI", "25.5", -5000, -1275)]
    assert (q2.total_taxable_amount, q2.total_vat_amount) == (-5000, -1275)
    report = jurisdiction_report(lines, period_start=date(2025, 4, 1), period_end=date(2025, 6, 30))
    [row] = report.rows
    assert (row.jurisdiction, row.taxable_amount, row.tax_amount, row.invoices, row.credit_notes) == (
        "FI",
        -5000,
        -1275,
        0,
        1,
    )
    q1_report = jurisdiction_report(lines, period_start=date(2025, 1, 1), period_end=date(2025, 3, 31))
    assert [(r.taxable_amount, r.tax_amount, r.invoices) for r in q1_report.rows] == [(10000, 2550, 1)]


def test_a_credit_note_in_the_same_quarter_nets_out() -> None:
    invoice = taxed_invoice(10000)
    note = credit(invoice, on_line(0, 6275), now=datetime(2025, 3, 20, tzinfo=UTC))
    q1 = oss_return(reported_lines([invoice], [note]), year=2025, quarter=1)
    assert (q1.total_taxable_amount, q1.total_vat_amount) == (5000, 1275)
    whole = credit(invoice, on_line(0, 12550), now=datetime(2025, 3, 20, tzinfo=UTC))
    nothing = oss_return(reported_lines([invoice], [whole]), year=2025, quarter=1)
    assert [(r.taxable_amount, r.vat_amount) for r in nothing.rows] == [(0, 0)]


def test_a_void_note_counts_for_nothing() -> None:
    invoice = taxed_invoice(10000)
    note = credit(invoice, on_line(0, 6275)).model_copy(update={"status": CreditNoteStatus.VOID})
    assert credit_note_taxed_lines(note) == ()
    assert oss_return(reported_lines([invoice], [note]), year=2025, quarter=2).rows == ()


def test_oss_credit_notes_in_other_currencies_convert_with_the_ecb_rate() -> None:
    invoice = taxed_invoice(100000, currency="SEK")  # 1000 SEK + 255 SEK
    note = credit(invoice, on_line(0, 62750))  # 500 + 127.50 SEK
    ecb = {"SEK": "11.2"}
    q2 = oss_return(reported_lines([invoice], [note]), year=2025, quarter=2, eur_rates=ecb)
    assert [(r.taxable_amount, r.vat_amount) for r in q2.rows] == [
        (to_euro_cents(-50000, "SEK", ecb), to_euro_cents(-12750, "SEK", ecb))
    ]
    assert q2.rows[0].taxable_amount == -4464  # −500 SEK / 11.2 = −44.64 EUR


def test_the_service_issues_the_note_with_its_tax_and_the_store_finds_it_for_the_report() -> None:
    from fakes import make_world

    from kassa.services.credit_notes import credit_invoice

    world = make_world(Q2)
    invoice = world.store.save_invoice(taxed_invoice(10000))
    note, _ = credit_invoice(
        world.billing, invoice.id, CreditNoteRequest(lines=(on_line(0, 6275),), out_of_band_amount=6275)
    )
    assert (note.subtotal, note.tax, note.tax_date) == (5000, 1275, Q2.date())
    assert world.store.list_credit_notes(invoice.id) == [note]
    start, end = date(2025, 4, 1), date(2025, 6, 30)
    lines = reported_lines(
        world.store.invoices_by_tax_date(start, end), world.store.credit_notes_by_tax_date(start, end)
    )
    q2 = oss_return(lines, year=2025, quarter=2)
    assert (q2.total_taxable_amount, q2.total_vat_amount) == (-5000, -1275)
