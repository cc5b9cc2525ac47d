"""The hosted invoice page as rendered on the server: every language has every string, money, dates
and VAT per rate in the invoice's locale, a Pay form only while the invoice can be paid, "Paid on …"
once paid, a void notice, escaping, and the refused-link pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html import unescape
from importlib.resources import files

import pytest

from kassa.api.invoice_page import (
    SCRIPT_KEYS,
    accept_language,
    page_languages,
    page_locale,
    page_strings,
    payable,
    placeholders,
    render_invoice,
    render_refused,
)
from kassa.domain.customer import SUPPORTED_LOCALES, Address, Customer
from kassa.domain.invoice import BillingReason, Invoice, InvoiceLine, InvoiceStatus
from kassa.domain.settings import EmailSettings, MerchantSettings
from kassa.emails.render import format_day, format_money

LOCALES = ("en", "nl", "de", "fr", "es", "it", "pl", "sv")
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def _invoice(status: InvoiceStatus = InvoiceStatus.OPEN, locale: str | None = "en", **changes: object) -> Invoice:
    paid = status is InvoiceStatus.PAID
    base = Invoice(
        id="in_page",
        number="KASSA-0042",
        customer="cus_page",
        status=status,
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Coffee club",
                amount=123456,
                quantity=1,
                unit_amount=123456,
                period_start=START,
                period_end=END,
                tax_amount=25926,
                tax_rate="21",
            ),
            InvoiceLine(
                description="Beans",
                amount=1000,
                quantity=2,
                unit_amount=500,
                period_start=START,
                period_end=END,
                tax_amount=90,
                tax_rate="9",
            ),
        ],
        subtotal=124456,
        tax=26016,
        total=150472,
        amount_due=150472,
        amount_paid=150472 if paid else 0,
        billing_reason=BillingReason.SUBSCRIPTION_CYCLE,
        period_start=START,
        period_end=END,
        created=START,
        finalized_at=START,
        paid_at=datetime(2026, 3, 2, 10, tzinfo=UTC) if paid else None,
        locale=locale,
    )
    return base.model_copy(update=changes)


def _customer(locale: str = "en", name: str = "Anna de Vries") -> Customer:
    return Customer.model_validate(
        {
            "id": "cus_page",
            "email": "anna@example.nl",
            "name": name,
            "address": {"country": "NL", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 AA"},
            "preferred_locale": locale,
            "created": START,
        }
    )


SETTINGS = MerchantSettings(
    seller_name="Bean & Leaf B.V.",
    seller_address=Address(country="NL", line1="Damrak 5", city="Amsterdam", postal_code="1012 LG"),
    support_email="help@beanleaf.example",
    emails=EmailSettings(colour="#0a7c66"),
)


def _page(invoice: Invoice, customer: Customer | None = None, **kwargs: object) -> str:
    return render_invoice(invoice, customer or _customer(), SETTINGS, token="tok.sig", **kwargs)  # type: ignore[arg-type]


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_page_speaks_every_customer_language_with_exactly_englishs_keys() -> None:
    assert page_languages() == set(LOCALES) == set(SUPPORTED_LOCALES)
    english = page_strings("en")
    for language in LOCALES:
        strings = page_strings(language)
        assert list(strings) == list(english), language
        for key, text in strings.items():
            assert text.strip(), (language, key)
            assert placeholders(text) == placeholders(english[key]), (language, key)
    for key in SCRIPT_KEYS:
        assert key in english


def test_the_files_are_packaged_with_the_api() -> None:
    static = files("kassa.api") / "static"
    for name in ("invoice.html.j2", "invoice.js", "portal.js", *(f"invoice_page.{lang}.json" for lang in LOCALES)):
        assert (static / name).is_file(), name
    json.loads((static / "invoice_page.en.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("locale", LOCALES)
def test_an_open_invoice_in_each_language(locale: str) -> None:
    html = _page(_invoice(locale=locale))
    text = _text(html)
    assert f'<html lang="{locale}">' in html
    assert "KASSA-0042" in text
    total = format_money(150472, "EUR", locale)
    assert total in html  # €1,504.72 / € 1.504,72 / 1.504,72 € / 1 504,72 € …
    assert format_money(25926, "EUR", locale) in html  # the 21 % VAT
    assert format_day(START, locale) in html
    strings = page_strings(locale)
    assert strings["download_pdf"] in html and 'href="tok.sig/pdf"' in html
    assert strings["pay_button"].format(amount=total) in html
    assert 'id="form"' in html and 'src="../assets/invoice.js"' in html
    assert strings["status.open"] in html


def test_the_locale_comes_from_the_invoice_then_the_customer() -> None:
    assert "Rechnung KASSA-0042" in _page(_invoice(locale="de"), _customer("fr"))
    assert "Facture KASSA-0042" in _page(_invoice(locale=None), _customer("fr"))
    assert "Invoice KASSA-0042" in _page(_invoice(locale="xx"), _customer("fr"))  # unknown: English
    assert page_locale("nl-BE") == ("nl", "nl_BE")
    assert page_locale("pt") == ("en", "en")


def test_vat_per_rate_and_totals() -> None:
    text = _text(_page(_invoice(locale="en")))
    assert "VAT 21% on €1,234.56 €259.26" in text
    assert "VAT 9% on €10.00 €0.90" in text
    assert "Subtotal €1,244.56" in text and "Total €1,504.72" in text and "Amount due €1,504.72" in text
    assert "Bean &amp; Leaf B.V." in _page(_invoice())  # escaped, seller shown
    assert "Keizersgracht 1" in text and "Netherlands" in text  # the buyer's address


def test_a_paid_invoice_says_when_and_offers_no_button() -> None:
    html = _page(_invoice(InvoiceStatus.PAID, locale="nl"))
    text = _text(html)
    assert "Betaald op 2 maart 2026" in text
    assert 'id="form"' not in html and "<script" not in html
    assert "Betaald bedrag" in text
    thanks = _page(_invoice(InvoiceStatus.PAID, locale="nl"), thanks=True)
    assert page_strings("nl")["thanks"] in thanks


def test_a_void_invoice_shows_void_and_an_uncollectible_one_can_be_paid() -> None:
    void = _page(_invoice(InvoiceStatus.VOID))
    assert "This invoice has been voided" in void and "Void" in void and 'id="form"' not in void
    assert "Amount due" not in void
    written_off = _page(_invoice(InvoiceStatus.UNCOLLECTIBLE))
    assert 'id="form"' in written_off and "Overdue" in written_off


def test_nothing_due_offers_no_button() -> None:
    html = _page(_invoice(amount_due=0))
    assert 'id="form"' not in html


@pytest.mark.parametrize("locale", LOCALES)
def test_a_bank_debit_with_the_bank_says_so_and_offers_no_button(locale: str) -> None:
    """A SEPA debit of the invoice is processing (paid when the bank settles): nothing to pay now."""
    debiting = _invoice(locale=locale, attempt_outcome="processing")
    html = _page(debiting)
    assert page_strings(locale)["processing_notice"] in unescape(_text(html))
    assert f'<span class="badge processing" id="status">{page_strings(locale)["status.processing"]}</span>' in html
    assert 'id="form"' not in html and "<script" not in html
    assert not payable(debiting) and payable(_invoice(locale=locale))


def test_the_pay_form_has_the_bank_account_fields_hidden_until_the_session_offers_them() -> None:
    html = _page(_invoice(locale="de"))
    words = page_strings("de")
    for element in ('id="methods" role="radiogroup" hidden', 'id="iban-box" hidden', 'id="iban"', 'id="mandate-ok"'):
        assert element in html, element
    assert words["method_sepa_debit"] in html and words["account_holder"] in html
    assert unescape(words["pay_intro_bank"]) in unescape(html)  # the script's words when a bank account is offered
    assert {"processing_message", "iban_invalid", "mandate_required"} <= set(SCRIPT_KEYS)


def test_customer_and_line_text_is_escaped() -> None:
    line = _invoice().lines[0].model_copy(update={"description": "<img src=x onerror=alert(1)>"})
    html = _page(_invoice(lines=[line]), _customer(name="<script>alert(1)</script>"))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_the_script_data_is_json_that_cannot_close_its_tag() -> None:
    html = _page(_invoice())
    found = re.search(r'<script type="application/json" id="invoice-data">(.*?)</script>', html, re.DOTALL)
    assert found is not None
    data = json.loads(found.group(1))
    assert data["token"] == "tok.sig" and set(data["strings"]) == set(SCRIPT_KEYS)


def test_an_unnumbered_first_invoice_is_named_for_what_it_is() -> None:
    html = _page(_invoice(number=None))
    assert "First payment of your subscription" in html and '<h1 id="title">Invoice</h1>' in html


@pytest.mark.parametrize("kind", ["link_expired", "link_invalid", "not_found", "pdf_unavailable"])
@pytest.mark.parametrize("locale", LOCALES)
def test_refused_pages_say_why_in_the_language(kind: str, locale: str) -> None:
    html = render_refused(kind, locale)
    assert f'<html lang="{locale}">' in html and "<script" not in html and 'id="form"' not in html
    from kassa.api.invoice_page import REFUSALS

    title, body = REFUSALS[kind]
    assert page_strings(locale)[title] in html
    assert page_strings(locale)[body] in html


def test_accept_language_picks_a_spoken_language() -> None:
    assert accept_language("de-DE,de;q=0.9,en;q=0.8") == "de-DE"
    assert accept_language("pt-BR, fr;q=0.7, en;q=0.5") == "fr"
    assert accept_language("ja") is None
    assert accept_language(None) is None


def test_a_reverse_charged_invoice_carries_its_legal_mention_in_the_language() -> None:
    line = (
        _invoice()
        .lines[0]
        .model_copy(update={"tax_amount": 0, "tax_rate": "0", "tax_details": {"rule": {"id": "eu_reverse_charge"}}})
    )
    invoice = _invoice(locale="de", lines=[line], subtotal=123456, tax=0, total=123456, amount_due=123456)
    from kassa.documents.pdf import translations

    html = _page(invoice, _customer("de"))
    assert translations("de")["mention.reverse_charge"] in html
