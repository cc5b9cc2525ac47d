"""The PDF renderer: a real invoice layout in every supported language, with babel's money, dates and
percentages for the document's locale, both parties' VAT numbers, each VAT rate, the legal mentions,
Unicode text intact, and a 5-line invoice on one A4 page. One page per case is rendered to PNG in
``tests/artefacts/`` (git-ignored) for a look."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from babel.dates import format_date
from babel.numbers import format_currency, format_percent
from pypdf import PdfReader

from kassa.documents import pdf as renderer
from kassa.documents.pdf import render_pdf
from kassa.domain.customer import Address
from kassa.domain.documents import Document, DocumentLine, VatGroup
from kassa.domain.parties import Party

ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"
LOCALES = ("en", "nl", "de", "fr", "es", "it", "pl", "sv")
TRANSLATIONS = Path(renderer.__file__).parent / "translations"

P0, P1 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
SELLER = Party(
    name="Koffie BV",
    address=Address(country="NL", line1="Keizersgracht 1", city="Amsterdam", postal_code="1015 CJ"),
    tax_id="NL123456782B01",
    registration="KvK 12345678",
    iban="NL91ABNA0417164300",
    email="billing@koffie.example",
)
BUYER = Party(
    name="Łukasz Wiśniewski",
    address=Address(country="PL", line1="ul. Świętokrzyska 12", city="Łódź", postal_code="90-001"),
    tax_id="PL5260250274",
    email="lukasz@example.pl",
)
TIERS = (
    {"tier": 1, "up_to": 5, "quantity": 5, "unit_amount": 700, "flat_amount": 0, "amount": 3500},
    {"tier": 2, "up_to": 10, "quantity": 5, "unit_amount": 650, "flat_amount": 0, "amount": 3250},
    {"tier": 3, "up_to": None, "quantity": 2, "unit_amount": 600, "flat_amount": 0, "amount": 1200},
)


def line(description: str, net: int, rate: str, *, quantity: int = 1, unit: int | None = None, **extra) -> DocumentLine:
    tax = (Decimal(net) * Decimal(rate) / 100).quantize(Decimal(1))
    return DocumentLine(
        description=description,
        quantity=quantity,
        unit_amount=unit if unit is not None else (net if quantity == 1 else None),
        net_amount=net,
        discount_amount=extra.pop("discount_amount", 0),
        tax_rate=rate,
        category="S",
        period_start=extra.pop("period_start", P0),
        period_end=P1,
        tax_amount=int(tax),
        **extra,
    )


def five_line_invoice(locale: str, status: str = "open") -> Document:
    """Five lines at two rates (21% and 9%): a box, tiered seats, a discounted add-on, a proration, a fee."""
    lines = (
        line("Coffee club — monthly box", 1999, "21"),
        line("Seats", 7950, "21", quantity=12, tiers=TIERS),
        line("Grinder add-on", 400, "21", unit=500, discount_amount=100),
        line("Unused time on Tea club", -450, "9", proration=True, period_start=datetime(2026, 3, 15, tzinfo=UTC)),
        line("Książka kawowa (e-book)", 2500, "9"),
    )
    groups = []
    for rate in ("21", "9"):
        members = [item for item in lines if item.tax_rate == rate]
        taxable, tax = sum(m.net_amount for m in members), sum(m.tax_amount for m in members)
        groups.append(VatGroup(category="S", rate=rate, taxable_amount=taxable, tax_amount=tax))
    subtotal, tax = sum(item.net_amount for item in lines), sum(item.tax_amount for item in lines)
    paid = subtotal + tax if status == "paid" else 0
    return Document(
        kind="invoice",
        number="KASSA-0042",
        issue_date=date(2026, 3, 1),
        due_date=None,
        currency="EUR",
        seller=SELLER,
        buyer=BUYER,
        period_start=P0,
        period_end=P1,
        lines=lines,
        vat_groups=tuple(groups),
        subtotal=subtotal,
        allowance_total=0,
        tax=tax,
        total=subtotal + tax,
        credit_applied=0,
        amount_paid=paid,
        amount_due=subtotal + tax - paid,
        status=status,
        locale=locale,
    )


def reverse_charge_invoice(locale: str) -> Document:
    doc = five_line_invoice(locale)
    lines = tuple(replace(item, tax_rate="0", tax_amount=0, category="AE") for item in doc.lines)
    subtotal = sum(item.net_amount for item in lines)
    group = VatGroup("AE", "0", subtotal, 0, "reverse_charge", "VATEX-EU-AE", "Reverse charge")
    return replace(
        doc, lines=lines, vat_groups=(group,), tax=0, total=subtotal, amount_due=subtotal, notes=("reverse_charge",)
    )


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pages(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)


def save_png(data: bytes, name: str) -> Path:
    """Page 1 as a PNG in tests/artefacts/ (git-ignored), for looking at the layout."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    pdfium.PdfDocument(data)[0].render(scale=1.6).to_pil().save(path)
    print(f"rendered {path}")
    return path


def euros(amount: int, locale: str) -> str:
    return format_currency(Decimal(amount) / 100, "EUR", locale=locale)


def rate(value: str, locale: str) -> str:
    return format_percent(Decimal(value) / 100, locale=locale, decimal_quantization=False)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_five_line_invoice_in_each_language(locale: str) -> None:
    doc = five_line_invoice(locale)
    data = render_pdf(doc, brand_colour="#aa3300")
    text = text_of(data)

    assert data.startswith(b"%PDF-") and pages(data) == 1
    assert "KASSA-0042" in text
    assert "NL123456782B01" in text and "PL5260250274" in text
    assert euros(doc.total, locale) in text  # "€ 147,43" (nl), "147,43 €" (de, fr), "€147.43" (en)
    assert euros(doc.amount_due, locale) in text
    for group in doc.vat_groups:
        assert rate(group.rate, locale) in text
        assert euros(group.tax_amount, locale) in text and euros(group.taxable_amount, locale) in text
    assert format_date(doc.issue_date, "long", locale=locale) in text
    assert "Łukasz Wiśniewski" in text and "Łódź" in text and "Książka kawowa" in text
    words = json.loads((TRANSLATIONS / f"{locale}.json").read_text(encoding="utf-8"))
    assert words["invoice"] in text and words["subtotal"] in text and words["prorated"] in text
    assert words["discount"] in text
    save_png(data, f"invoice-{locale}")


def test_polish_words_and_letters_are_intact() -> None:
    text = text_of(render_pdf(five_line_invoice("pl"), brand_colour="#1f6feb"))
    for words in ("Faktura", "SPRZEDAWCA", "NABYWCA", "Wartość netto", "Pozostało do zapłaty", "Próg 3: od 11"):
        assert words in text
    assert "ł" in text and "ś" in text and "ą" in text


@pytest.mark.parametrize("locale", LOCALES)
def test_the_reverse_charge_mention_is_printed_in_the_documents_language(locale: str) -> None:
    data = render_pdf(reverse_charge_invoice(locale), brand_colour="#1f6feb")
    words = json.loads((TRANSLATIONS / f"{locale}.json").read_text(encoding="utf-8"))
    text = " ".join(text_of(data).split())
    assert " ".join(words["mention.reverse_charge"].split()) in text
    assert "196" in text and "2006/112" in text
    if locale == "de":
        save_png(data, "reverse-charge-de")


def test_the_payment_status_is_shown() -> None:
    paid = text_of(render_pdf(five_line_invoice("en", "paid"), brand_colour="#1f6feb", paid_on=date(2026, 3, 2)))
    assert "€147.58 paid on March 2, 2026" in paid and "Paid" in paid and "€0.00" in paid
    open_ = text_of(render_pdf(five_line_invoice("en"), brand_colour="#1f6feb"))
    assert (
        "€147.58 due March 1, 2026" in open_
        and "Due" in open_
        and "Pay by bank transfer to IBAN NL91ABNA0417164300" in open_
    )
    void = text_of(render_pdf(replace(five_line_invoice("en"), status="void"), brand_colour="#1f6feb"))
    assert "Void" in void and "Pay by bank transfer" not in void


def test_a_credit_note_names_the_invoice_it_credits() -> None:
    invoice = five_line_invoice("fr")
    note = replace(
        invoice,
        kind="credit_note",
        number="KASSA-0042-CN-01",
        lines=invoice.lines[:1],
        vat_groups=(VatGroup("S", "21", 1999, 420),),
        subtotal=1999,
        tax=420,
        total=2419,
        amount_due=2419,
        status="issued",
        invoice_reference="KASSA-0042",
        invoice_reference_date=date(2026, 3, 1),
        reason="order_change",
        refund_amount=2419,
    )
    data = render_pdf(note, brand_colour="#0a7d4f")
    text = text_of(data)
    assert "Avoir" in text and "KASSA-0042-CN-01" in text and "KASSA-0042 du 1 mars 2026" in text
    assert euros(2419, "fr") in text and "Remboursé sur le moyen de paiement" in text
    assert "modification de commande" in text
    save_png(data, "credit-note-fr")


def test_an_unknown_locale_falls_back_to_english_words_and_formats() -> None:
    text = text_of(render_pdf(five_line_invoice("xx-YY"), brand_colour="#1f6feb"))
    assert "Invoice" in text and euros(five_line_invoice("en").total, "en") in text


def test_a_long_invoice_flows_onto_more_pages_with_page_numbers() -> None:
    doc = five_line_invoice("de")
    many = replace(doc, lines=doc.lines * 8)
    data = render_pdf(many, brand_colour="#1f6feb")
    assert pages(data) >= 2
    assert f"Seite 1 von {pages(data)}" in text_of(data)


def test_a_logo_is_drawn_when_given_and_an_unreadable_one_falls_back_to_the_name() -> None:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (300, 90), (31, 111, 235)).save(png, format="PNG")
    with_logo = render_pdf(five_line_invoice("en"), brand_colour="#1f6feb", logo=png.getvalue())
    assert list(PdfReader(io.BytesIO(with_logo)).pages[0].images)
    broken = render_pdf(five_line_invoice("en"), brand_colour="#1f6feb", logo=b"not an image")
    assert "Koffie BV" in text_of(broken).splitlines()[0]


def test_a_bad_brand_colour_is_refused() -> None:
    with pytest.raises(ValueError):
        render_pdf(five_line_invoice("en"), brand_colour="red")


def test_every_language_has_the_english_keys_and_placeholders() -> None:
    import string

    def placeholders(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    english = json.loads((TRANSLATIONS / "en.json").read_text(encoding="utf-8"))
    assert set(renderer.available_languages()) == set(LOCALES)
    for locale in LOCALES:
        words = json.loads((TRANSLATIONS / f"{locale}.json").read_text(encoding="utf-8"))
        assert words.keys() == english.keys(), locale
        for key, text in words.items():
            assert placeholders(text) == placeholders(english[key]), (locale, key)
