"""The document view (kassa.domain.documents): what an invoice's or credit note's documents say —
parties, lines without VAT, the VAT breakdown per category, totals, mentions."""

from __future__ import annotations

from datetime import date

import pytest
from document_builders import END, NL_SELLER, START, customer, invoice, line

from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteLineInput,
    CreditNoteLineType,
    CreditNoteRequest,
    issue_credit_note,
)
from kassa.domain.discounts import Coupon, Duration
from kassa.domain.documents import (
    Document,
    credit_note_document,
    format_rate,
    invoice_document,
    line_treatment,
    vat_identifier,
)
from kassa.domain.parties import Party
from kassa.domain.tax.model import EU_REVERSE_CHARGE_MENTION


def _doc(inv, buyer) -> Document:  # type: ignore[no-untyped-def]
    return invoice_document(inv, settings=NL_SELLER, customer=buyer)


def _note(inv, *lines: CreditNoteLineInput, sequence: int = 1, previous=()) -> CreditNote:  # type: ignore[no-untyped-def]
    outcome = issue_credit_note(
        inv,
        CreditNoteRequest(lines=lines),
        previous=previous,
        credit_note_id=f"cn_{sequence}",
        number=f"{inv.number}-CN-{sequence:02d}",
        now=START,
    )
    return outcome.credit_note


def test_domestic_consumer_is_standard_rated_with_totals_in_minor_units() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(1000), line(1999, "Tea club")])
    doc = _doc(inv, buyer)
    assert doc.kind == "invoice" and doc.number == "KASSA-0042" and doc.issue_date == date(2025, 3, 1)
    assert [(g.category, g.rate, g.taxable_amount, g.tax_amount, g.mention) for g in doc.vat_groups] == [
        ("S", "21", 2999, 630, None)
    ]
    assert (doc.subtotal, doc.tax, doc.total, doc.allowance_total) == (2999, 630, 3629, 0)
    assert doc.total == inv.total and doc.amount_due == inv.amount_due and doc.credit_applied == 0
    assert doc.seller == inv.seller and doc.buyer == inv.buyer
    assert doc.buyer_reference == "sub_test" and doc.locale == "en" and doc.notes == ()
    assert [(ln.category, ln.tax_rate, ln.net_amount) for ln in doc.lines] == [("S", "21", 1000), ("S", "21", 1999)]


def test_oss_consumer_gets_the_member_state_rate_and_the_oss_mention() -> None:
    buyer = customer("DE")
    doc = _doc(invoice(buyer, [line(1000)])[0], buyer)
    assert [(g.category, g.rate, g.tax_amount, g.mention) for g in doc.vat_groups] == [("S", "19", 190, "oss")]
    assert doc.notes == ("oss",) and doc.rule_ids == ("eu_b2c_oss",)


def test_eu_business_is_reverse_charged_with_the_article_text() -> None:
    buyer = customer("DE", tax_id="DE136695976", name="Kaffee GmbH")
    doc = _doc(invoice(buyer, [line(1000)])[0], buyer)
    (group,) = doc.vat_groups
    assert (group.category, group.rate, group.tax_amount, group.mention) == ("AE", "0", 0, "reverse_charge")
    assert group.exemption_reason_code == "VATEX-EU-AE" and group.exemption_reason == EU_REVERSE_CHARGE_MENTION
    assert doc.notes == ("reverse_charge",)


def test_a_customer_outside_the_eu_is_an_export_when_the_seller_has_a_vat_number() -> None:
    buyer = customer("US")
    doc = _doc(invoice(buyer, [line(1000)])[0], buyer)
    assert [(g.category, g.exemption_reason_code, g.mention) for g in doc.vat_groups] == [("G", "VATEX-EU-G", "export")]
    # a seller without a VAT number: not subject to VAT (O)
    no_vat = NL_SELLER.model_copy(update={"seller_tax_id": None})
    inv, _ = invoice(buyer, [line(1000)], settings=no_vat)
    doc = invoice_document(inv, settings=no_vat, customer=buyer)
    assert [(g.category, g.exemption_reason_code, g.mention) for g in doc.vat_groups] == [
        ("O", "VATEX-EU-O", "not_subject")
    ]


def test_exempt_lines_and_not_subject_lines_on_a_mixed_document() -> None:
    buyer = customer("NL", tax_exempt=True)
    doc = _doc(invoice(buyer, [line(1000)])[0], buyer)
    assert [(g.category, g.mention, g.exemption_reason) for g in doc.vat_groups] == [
        ("E", "exempt", "Exempt from VAT: the customer is tax exempt")
    ]
    buyer = customer("NL")
    inv, _ = invoice(
        buyer, [line(1000), line(500, "Filter", price="price_free")], tax_codes={"price_free": "nontaxable"}
    )
    doc = _doc(inv, buyer)
    assert [(g.category, g.rate, g.taxable_amount, g.tax_amount) for g in doc.vat_groups] == [
        ("S", "21", 1000, 210),
        ("E", "0", 500, 0),
    ]
    assert doc.notes == ("exempt",)


def test_rule_to_category_table() -> None:
    def cat(rule: str | None, rate: str = "0", tax: int = 0, *, seller_vat: bool = True, country: str = "NL") -> str:
        details = {"rule": {"id": rule}} if rule else None
        return line_treatment(
            details=details, rate=rate, tax_amount=tax, seller_vat=seller_vat, buyer_country=country
        ).category

    assert cat("eu_domestic", "21", 210) == "S"
    assert cat("registered", "5", 500, country="US") == "S"
    assert cat("eu_domestic", "0") == "Z" and cat("registered", "0", country="US") == "Z"
    assert cat("eu_reverse_charge") == "AE" and cat("b2b_reverse_charge", country="GB") == "AE"
    assert cat("customer_exempt") == "E" and cat("product_nontaxable") == "E"
    assert cat("no_tax_rule", country="BR") == "G" and cat("not_taxable", country="US") == "G"
    assert cat("outside_eu_vat_area", country="ES") == "G"  # the Canary Islands
    assert cat("not_registered", country="DE") == "O"  # an EU consumer of a seller outside the EU
    assert cat("no_tax_rule", country="BR", seller_vat=False) == "O"
    assert cat(None) == "O"  # an untaxed line of an old invoice


def test_inclusive_lines_are_shown_net_exactly() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(12100, inclusive=True), line(999, "Extra", inclusive=True)])
    doc = _doc(inv, buyer)
    assert [ln.net_amount + ln.tax_amount for ln in doc.lines] == [12100, 999]
    assert [ln.net_amount for ln in doc.lines] == [10000, 826]
    assert doc.total == inv.total == 13099 and doc.subtotal + doc.tax == doc.total


def test_a_coupon_is_a_discount_on_each_line() -> None:
    buyer = customer("NL")
    coupon = Coupon(id="TENOFF", percent_off="10", duration=Duration.ONCE)
    inv, _ = invoice(buyer, [line(1000), line(12100, "Inclusive", inclusive=True)], coupon=coupon)
    doc = _doc(inv, buyer)
    first, second = doc.lines
    assert (first.net_amount, first.discount_amount, first.unit_amount) == (900, 100, 1000)
    # 12100 incl. 21% less 10% = 10890 incl. → 9000 net; before the discount 10000 net
    assert (second.net_amount, second.discount_amount) == (9000, 1000)
    assert doc.allowance_total == 0 and doc.subtotal == 9900


def test_a_proration_credit_is_a_negative_line() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(2000), line(-500, "Unused time", proration=True)])
    doc = _doc(inv, buyer)
    assert [(ln.net_amount, ln.tax_amount, ln.proration) for ln in doc.lines] == [
        (2000, 420, False),
        (-500, -105, True),
    ]
    assert doc.vat_groups[0].taxable_amount == 1500 and doc.total == 1815


def test_a_negative_invoice_is_owed_to_the_customer() -> None:
    buyer = customer("NL")
    inv, moved = invoice(buyer, [line(-500, "Unused time", proration=True)])
    doc = _doc(inv, buyer)
    assert doc.total == -605 and doc.amount_due == -605 and doc.credit_applied == 0
    assert moved.balance == -605


def test_the_customer_balance_is_credit_applied() -> None:
    buyer = customer("NL", balance=-1000, balance_currency="EUR")
    inv, _ = invoice(buyer, [line(2000)], paid=True)
    doc = _doc(inv, buyer)
    assert (doc.total, doc.credit_applied, doc.amount_paid, doc.amount_due) == (2420, 1000, 1420, 0)


def test_old_invoices_fall_back_to_the_settings_and_the_customer() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(1000)])
    old = inv.model_copy(update={"seller": None, "buyer": None, "locale": None})
    doc = invoice_document(old, settings=NL_SELLER, customer=buyer.model_copy(update={"preferred_locale": "nl"}))
    assert doc.seller == NL_SELLER.seller_party() and doc.buyer.email == buyer.email and doc.locale == "nl"


def test_credit_notes_full_and_partial() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(1000), line(2000, "Tea")], paid=True)
    full = _note(inv, CreditNoteLineInput(type=CreditNoteLineType.INVOICE_LINE_ITEM, invoice_line=0, amount=1210))
    doc = credit_note_document(full, inv, settings=NL_SELLER, customer=buyer)
    assert doc.kind == "credit_note" and doc.invoice_reference == "KASSA-0042"
    assert doc.invoice_reference_date == date(2025, 3, 1)
    assert [(g.category, g.taxable_amount, g.tax_amount) for g in doc.vat_groups] == [("S", 1000, 210)]
    assert doc.total == 1210 == doc.amount_due
    partial = _note(
        inv,
        CreditNoteLineInput(type=CreditNoteLineType.INVOICE_LINE_ITEM, invoice_line=1, amount=605),
        sequence=2,
        previous=(full,),
    )
    doc = credit_note_document(partial, inv, settings=NL_SELLER, customer=buyer)
    assert [(ln.net_amount, ln.tax_amount) for ln in doc.lines] == [(500, 105)]


def test_credit_notes_stored_before_they_carried_tax_are_derived_from_the_invoice_line() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(1000)], paid=True)
    old = CreditNote.model_validate(
        {
            "id": "cn_old",
            "number": "KASSA-0042-CN-01",
            "invoice": inv.id,
            "customer": buyer.id,
            "currency": "EUR",
            "type": "post_payment",
            "total": 605,
            "refund_amount": 605,
            "created": START,
            "lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 605}],
        }
    )
    doc = credit_note_document(old, inv, settings=NL_SELLER, customer=buyer)
    assert [(ln.net_amount, ln.tax_amount, ln.category) for ln in doc.lines] == [(500, 105, "S")]


def test_helpers() -> None:
    assert [format_rate(r) for r in ("21", "25.5", "14.975", "0", None, "21.000")] == [
        "21",
        "25.5",
        "14.975",
        "0",
        "0",
        "21",
    ]
    party = Party.model_validate({"name": "x", "address": {"country": "DE"}})
    assert vat_identifier(party.model_copy(update={"tax_id": "de 136.695.976"})) == "DE136695976"
    assert vat_identifier(party.model_copy(update={"tax_id": "51824753556"})) is None  # an ABN
    assert vat_identifier(party) is None
    assert END > START


@pytest.mark.parametrize("country", ["NL", "DE", "US"])
def test_every_document_adds_up(country: str) -> None:
    buyer = customer(country)
    inv, _ = invoice(buyer, [line(1000), line(-300, "Credit", proration=True), line(2500, "Seats", quantity=3)])
    doc = _doc(inv, buyer)
    assert doc.subtotal == sum(ln.net_amount for ln in doc.lines) == sum(g.taxable_amount for g in doc.vat_groups)
    assert doc.tax == sum(g.tax_amount for g in doc.vat_groups) == inv.tax
    assert doc.total == inv.total
