"""Peppol BIS Billing 3.0 e-invoices (kassa.documents.ubl), each checked with the official EN 16931
and Peppol business rules (Saxon-HE over the shared validation artefacts, ../shared/reference/einvoice).

A consumer has no Peppol id and no VAT number: its e-invoice addresses it by email (scheme EM),
which EN 16931 allows and Peppol's EAS list does not (PEPPOL-EN16931-CL008). Consumer documents are
therefore asserted to fail exactly that one rule and nothing else; every other document passes with
no fatal failure at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from document_builders import NL_SELLER, NL_SELLER_NO_PEPPOL, START, customer, invoice, line
from fakes import make_world

from kassa.documents.ubl import EInvoiceError, credit_note_ubl, invoice_ubl, party_endpoint
from kassa.domain.credit_notes import CreditNoteLineInput, CreditNoteLineType, CreditNoteRequest
from kassa.domain.customer import Address
from kassa.domain.discounts import Coupon, Duration
from kassa.domain.documents import Document, credit_note_document, invoice_document
from kassa.domain.proration import ProrationBehavior
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.coupons import create_coupon
from kassa.services.credit_notes import credit_invoice
from kassa.services.plan_changes import change_plan

# the repository is <root>/main (or a CI clone) with shared/ beside it
EINVOICE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "einvoice"
if not (EINVOICE / "validate.py").is_file():
    pytest.skip(f"the e-invoice validation artefacts are not at {EINVOICE}", allow_module_level=True)
sys.path.insert(0, str(EINVOICE))
from validate import validate  # noqa: E402

NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
EMAIL_ENDPOINT = {("PEPPOL", "PEPPOL-EN16931-CL008")}  # see the module docstring


def fatal(xml: bytes) -> set[tuple[str, str]]:
    return {(f.ruleset, f.rule) for f in validate(xml) if f.fatal}


def assert_valid(xml: bytes, *, consumer: bool = False) -> None:
    failures = [f for f in validate(xml) if f.fatal]
    expected = EMAIL_ENDPOINT if consumer else set()
    assert {(f.ruleset, f.rule) for f in failures} == expected, [f"{f.rule}: {f.text[:200]}" for f in failures]


def tree(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def text(root: ET.Element, path: str) -> str | None:
    found = root.find(path, NS)
    return None if found is None else found.text


def texts(root: ET.Element, path: str) -> list[str | None]:
    return [e.text for e in root.findall(path, NS)]


def ubl(inv: Any, buyer: Any, settings: Any = NL_SELLER) -> tuple[Document, bytes]:
    doc = invoice_document(inv, settings=settings, customer=buyer)
    return doc, invoice_ubl(doc)


# ------------------------------------------------------------------ the kinds of invoice
def test_domestic_consumer() -> None:
    buyer = customer("NL")
    doc, xml = ubl(invoice(buyer, [line(1000), line(1999, "Tea club")])[0], buyer)
    assert_valid(xml, consumer=True)
    root = tree(xml)
    assert (
        text(root, "cbc:CustomizationID")
        == "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
    )
    assert text(root, "cbc:InvoiceTypeCode") == "380" and text(root, "cbc:BuyerReference") == "sub_test"
    assert text(root, "cac:TaxTotal/cbc:TaxAmount") == "6.30"
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "36.29"
    supplier = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    assert supplier is not None
    assert supplier.find("cbc:EndpointID", NS).attrib["schemeID"] == "0106"  # type: ignore[union-attr]
    assert text(supplier, "cac:PartyTaxScheme/cbc:CompanyID") == "NL000099998B57"
    assert text(supplier, "cac:PartyLegalEntity/cbc:CompanyID") == "12345678"
    endpoint = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS)
    assert endpoint is not None and (endpoint.attrib["schemeID"], endpoint.text) == ("EM", "ada@example.nl")
    assert text(root, "cac:PaymentMeans/cbc:PaymentMeansCode") == "30"
    assert text(root, "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID") == "NL91ABNA0417164300"
    # the same consumer with a Peppol id is a fully valid Peppol e-invoice
    addressed = buyer.model_copy(update={"peppol_id": "9944:NL123456782B01"})
    assert_valid(ubl(invoice(addressed, [line(1000)])[0], addressed)[1])


def test_oss_consumer() -> None:
    buyer = customer("DE")
    doc, xml = ubl(invoice(buyer, [line(1000)])[0], buyer)
    assert_valid(xml, consumer=True)
    root = tree(xml)
    assert texts(root, "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:Percent") == ["19"]
    assert "One-Stop Shop" in (text(root, "cbc:Note") or "")


def test_eu_business_reverse_charge_with_endpoints_from_vat_numbers() -> None:
    buyer = customer("DE", tax_id="DE136695976", name="Kaffee GmbH")
    doc, xml = ubl(invoice(buyer, [line(1000)], settings=NL_SELLER_NO_PEPPOL)[0], buyer, NL_SELLER_NO_PEPPOL)
    assert_valid(xml)
    root = tree(xml)
    category = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert category is not None
    assert [text(category, p) for p in ("cbc:ID", "cbc:Percent", "cbc:TaxExemptionReasonCode")] == [
        "AE",
        "0",
        "VATEX-EU-AE",
    ]
    assert "Article 196" in (text(category, "cbc:TaxExemptionReason") or "")
    endpoints = [(e.attrib["schemeID"], e.text) for e in root.iter(f"{{{NS['cbc']}}}EndpointID")]
    assert endpoints == [("9944", "NL000099998B57"), ("9930", "DE136695976")]
    assert text(root, "cac:PaymentMeans/cbc:PaymentMeansCode") == "48"  # no IBAN: the card


def test_export_outside_the_eu() -> None:
    buyer = customer("US", peppol_id="9959:123456789", name="Coffee Inc.")
    doc, xml = ubl(invoice(buyer, [line(1000), line(-200, "Unused time", proration=True)])[0], buyer)
    assert_valid(xml)
    assert [(g.category, g.exemption_reason_code) for g in doc.vat_groups] == [("G", "VATEX-EU-G")]
    assert text(tree(xml), "cac:LegalMonetaryTotal/cbc:PayableAmount") == "8.00"


def test_not_subject_to_vat_without_seller_vat_number() -> None:
    settings = NL_SELLER.model_copy(update={"seller_tax_id": None})
    buyer = customer("US", peppol_id="9959:123456789", name="Coffee Inc.")
    inv, _ = invoice(buyer, [line(1000)], settings=settings)
    doc, xml = ubl(inv, buyer, settings)
    assert [g.category for g in doc.vat_groups] == ["O"]
    assert_valid(xml)
    assert texts(tree(xml), ".//cac:ClassifiedTaxCategory/cbc:Percent") == []  # BR-O-05


def test_zero_rated_and_exempt_lines_beside_standard_ones() -> None:
    buyer = customer("NL", tax_id="NL123456782B01", name="Kantoor B.V.")
    inv, _ = invoice(
        buyer,
        [line(1000), line(500, "Filters", price="price_free"), line(700, "E-book", price="price_book")],
        tax_codes={"price_free": "nontaxable"},
    )
    # kassa's rate file has no 0 % rate for a taxable SaaS line: make the e-book zero rated by hand
    book = inv.lines[2]
    details = dict(book.tax_details or {}) | {"rate": "0", "tax_amount": 0, "total": book.amount}
    zero = book.model_copy(update={"tax_amount": 0, "tax_rate": "0", "tax_details": details})
    inv = inv.model_copy(
        update={
            "lines": [*inv.lines[:2], zero],
            "tax": inv.tax - book.tax_amount,
            "total": inv.total - book.tax_amount,
            "amount_due": inv.amount_due - book.tax_amount,
        }
    )
    doc, xml = ubl(inv, buyer)
    assert [(g.category, g.taxable_amount, g.tax_amount) for g in doc.vat_groups] == [
        ("S", 1000, 210),
        ("E", 500, 0),
        ("Z", 700, 0),
    ]
    assert_valid(xml)


def test_coupon_as_line_allowances_with_inclusive_prices() -> None:
    buyer = customer("NL", tax_id="NL123456782B01", name="Kantoor B.V.")
    coupon = Coupon(id="TENOFF", percent_off="12.5", duration=Duration.ONCE)
    inv, _ = invoice(
        buyer,
        [line(1000), line(12100, "Inclusive plan", inclusive=True), line(1001, "Seats", quantity=3)],
        coupon=coupon,
    )
    doc, xml = ubl(inv, buyer)
    assert_valid(xml)
    root = tree(xml)
    assert texts(root, "cac:InvoiceLine/cac:AllowanceCharge/cbc:Amount") == ["1.25", "12.50", "1.25"]
    assert texts(root, "cac:InvoiceLine/cac:AllowanceCharge/cbc:AllowanceChargeReasonCode") == ["95"] * 3
    assert text(root, "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount") == f"{doc.total / 100:.2f}"


def test_customer_balance_is_prepaid() -> None:
    buyer = customer("NL", tax_id="NL123456782B01", name="Kantoor B.V.", balance=-1000, balance_currency="EUR")
    inv, _ = invoice(buyer, [line(2000)])
    doc, xml = ubl(inv, buyer)
    assert_valid(xml)
    root = tree(xml)
    assert text(root, "cac:LegalMonetaryTotal/cbc:PrepaidAmount") == "10.00"
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "14.20"


def test_jpy_has_no_decimals() -> None:
    buyer = customer("JP", tax_id="T9583567825624", peppol_id="0188:9583567825624", name="Kissa KK")
    inv, _ = invoice(buyer, [line(1200, "Matcha box", quantity=1), line(3001, "Seats", quantity=2)], currency="JPY")
    doc, xml = ubl(inv, buyer)
    assert_valid(xml)
    root = tree(xml)
    assert [g.category for g in doc.vat_groups] == ["AE"]  # a non-resident seller, a Japanese business
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "4201"
    assert texts(root, "cac:InvoiceLine/cac:Price/cbc:BaseQuantity") == ["2"]  # 3001 ¥ for 2: priced per 2


def test_kwd_three_decimals_only_when_exact_in_two() -> None:
    buyer = customer("KW", peppol_id="9959:123456789", name="Qahwa Co")
    inv, _ = invoice(buyer, [line(12340)], currency="KWD")  # 12.340 KWD
    doc, xml = ubl(inv, buyer)
    assert_valid(xml)
    assert text(tree(xml), "cac:LegalMonetaryTotal/cbc:PayableAmount") == "12.34"
    inexact, _ = invoice(buyer, [line(12345)], currency="KWD")
    with pytest.raises(EInvoiceError, match="BR-DEC"):
        invoice_ubl(invoice_document(inexact, settings=NL_SELLER, customer=buyer))


# ------------------------------------------------------------------ through the services
def _world_with_business() -> tuple[Any, Any, Any]:
    world = make_world()
    world.store.put_settings(NL_SELLER)
    product = create_product(world.billing, "Coffee club")
    from kassa.domain.catalog import Recurring
    from kassa.domain.periods import Interval

    price = create_price(world.billing, product.id, "eur", 1500, Recurring(interval=Interval.MONTH))
    return world, product, price


def _paid_checkout(world: Any, price: Any, **kwargs: Any) -> tuple[Any, Any]:
    result = start_checkout(
        world.billing,
        price_id=price.id,
        email="office@kantoor.example",
        name="Kantoor B.V.",
        address=Address(country="NL", line1="Kerkstraat 2", city="Utrecht", postal_code="3511 AB"),
        tax_id="NL123456782B01",
        **kwargs,
    )
    complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    assert result.invoice is not None
    return result, world.store.get_invoice(result.invoice.id)


def test_a_paid_checkout_with_a_coupon_and_a_proration_through_the_services() -> None:
    world, _, price = _world_with_business()
    coupon = create_coupon(world.billing, percent_off=20, duration=Duration.ONCE)
    result, paid = _paid_checkout(world, price, quantity=2, coupon=coupon.id)
    settings = world.store.get_settings()
    buyer = world.store.get_customer(paid.customer)
    doc = invoice_document(paid, settings=settings, customer=buyer)
    assert (doc.status, doc.amount_due, doc.lines[0].discount_amount) == ("paid", 0, 600)
    xml = invoice_ubl(doc)
    assert_valid(xml)
    assert text(tree(xml), "cac:PaymentMeans/cbc:PaymentMeansCode") == "48"  # paid by card
    # half-way through the month, one seat less, invoiced now: a credit line for the unused time
    world.clock.advance(timedelta(days=14))
    change = change_plan(world.billing, result.subscription.id, quantity=1, behavior=ProrationBehavior.ALWAYS_INVOICE)
    assert change.invoice is not None
    changed = world.store.get_invoice(change.invoice.id)
    doc = invoice_document(changed, settings=settings, customer=world.store.get_customer(paid.customer))
    assert any(ln.net_amount < 0 and ln.proration for ln in doc.lines)
    xml = invoice_ubl(doc)
    assert_valid(xml)
    assert any(q.startswith("-") for q in texts(tree(xml), "cac:InvoiceLine/cbc:InvoicedQuantity") if q)


def test_credit_notes_full_and_partial_refer_to_their_invoice() -> None:
    world, _, price = _world_with_business()
    _, paid = _paid_checkout(world, price, quantity=2)
    settings = world.store.get_settings()
    buyer = world.store.get_customer(paid.customer)
    whole = paid.lines[0].amount + paid.lines[0].tax_amount
    partial, paid = credit_invoice(
        world.billing,
        paid.id,
        CreditNoteRequest(
            lines=(CreditNoteLineInput(type=CreditNoteLineType.INVOICE_LINE_ITEM, invoice_line=0, amount=1000),)
        ),
    )
    doc = credit_note_document(partial, paid, settings=settings, customer=buyer)
    xml = credit_note_ubl(doc)
    assert_valid(xml)
    root = tree(xml)
    assert root.tag.endswith("}CreditNote") and text(root, "cbc:CreditNoteTypeCode") == "381"
    assert text(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == paid.number
    assert text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == "10.00"
    rest, paid = credit_invoice(
        world.billing,
        paid.id,
        CreditNoteRequest(
            lines=(CreditNoteLineInput(type=CreditNoteLineType.INVOICE_LINE_ITEM, invoice_line=0, amount=whole - 1000),)
        ),
    )
    doc = credit_note_document(rest, paid, settings=settings, customer=buyer, previous=[partial])
    assert doc.tax + (partial.tax if hasattr(partial, "tax") else 0) == paid.tax  # all the VAT reversed
    assert_valid(credit_note_ubl(doc))


# ------------------------------------------------------------------ the check bites, and refusals
def test_one_cent_off_fails_the_rules() -> None:
    buyer = customer("NL", tax_id="NL123456782B01", name="Kantoor B.V.")
    _, xml = ubl(invoice(buyer, [line(1000)])[0], buyer)
    assert fatal(xml) == set()
    tampered = xml.replace(
        b'<cbc:TaxInclusiveAmount currencyID="EUR">12.10<', b'<cbc:TaxInclusiveAmount currencyID="EUR">12.11<'
    )
    assert tampered != xml
    assert {rule for _, rule in fatal(tampered)} & {"BR-CO-15", "BR-CO-16"}


def test_refusals_and_endpoints() -> None:
    buyer = customer("NL")
    inv, _ = invoice(buyer, [line(1000)])
    doc = invoice_document(inv, settings=NL_SELLER, customer=buyer)
    with pytest.raises(EInvoiceError):
        credit_note_ubl(doc)
    draft = inv.model_copy(update={"number": None})
    with pytest.raises(EInvoiceError, match="numbered"):
        invoice_ubl(invoice_document(draft, settings=NL_SELLER, customer=buyer))
    no_vat = NL_SELLER.model_copy(update={"seller_tax_id": None})
    with pytest.raises(EInvoiceError, match="seller_tax_id"):
        invoice_ubl(
            invoice_document(inv.model_copy(update={"seller": no_vat.seller_party()}), settings=no_vat, customer=buyer)
        )
    seller = NL_SELLER_NO_PEPPOL.seller_party()
    assert party_endpoint(seller) == ("9944", "NL000099998B57")
    assert party_endpoint(seller.model_copy(update={"tax_id": "EL094259216", "peppol_id": None})) == (
        "9933",
        "094259216",
    )
    assert party_endpoint(seller.model_copy(update={"tax_id": "SE556036079301"})) == ("0007", "5560360793")
    assert party_endpoint(seller.model_copy(update={"tax_id": None})) == ("EM", "billing@koffie.example")
    assert START.year == 2025
