"""Invoice and credit-note documents over the memory stores: made once per state, stored under a key
that says which state, refused for drafts; a paid invoice's PDF says paid."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fakes import World, make_world
from pypdf import PdfReader

from kassa.adapters.memory import MemoryFileStore
from kassa.documents import pdf as pdf_module
from kassa.domain.credit_notes import CreditNoteLineInput, CreditNoteLineType, CreditNoteRequest
from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput, NotFound
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.settings import MerchantSettings
from kassa.emails.render import format_money
from kassa.services import documents
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.credit_notes import credit_invoice
from kassa.services.invoice_actions import pay
from kassa.services.renewals import process_due

SETTINGS = {
    "seller_name": "Koffie BV",
    "seller_address": {"country": "NL", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ"},
    "seller_tax_id": "NL123456782B01",
    "seller_registration": "KvK 12345678",
    "seller_iban": "NL91 ABNA 0417 1643 00",
}


class CountingFiles(MemoryFileStore):
    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str] = []

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool:
        self.puts.append(key)
        return super().put(key, data, content_type, only_if_absent=only_if_absent)


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of the PDF renderer."""
    calls: list[Any] = []
    real: Callable[..., bytes] = pdf_module.render_pdf

    def counting(doc: Any, **kwargs: Any) -> bytes:
        calls.append(doc)
        return real(doc, **kwargs)

    monkeypatch.setattr(pdf_module, "render_pdf", counting)
    return calls


def dutch_subscriber(world: World, unit_amount: int = 10500) -> Invoice:
    """A Dutch consumer (locale nl) subscribed and paid: the first invoice (21% VAT)."""
    world.store.put_settings(MerchantSettings.model_validate(SETTINGS))
    _, price = world.catalog(unit_amount=unit_amount)
    started = start_checkout(
        world.billing,
        price_id=price.id,
        email="jan@example.nl",
        name="Jan de Vries",
        address=Address(country="NL", line1="Damrak 5", city="Amsterdam", postal_code="1012 LG"),
        locale="nl",
    )
    complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)
    assert started.invoice is not None
    return world.store.get_invoice(started.invoice.id)


def open_renewal(world: World, first: Invoice) -> Invoice:
    """The next period's invoice, left open by a declined card."""
    assert first.subscription is not None
    world.gateway.will_decline("pm_card_visa")
    sub = world.store.get_subscription(first.subscription)
    world.clock.set(sub.current_period_end + timedelta(seconds=1))
    process_due(world.billing, sub.id)
    renewal = next(i for i in world.store.list_customer_invoices(first.customer, 10, None).items if i.id != first.id)
    assert renewal.status is InvoiceStatus.OPEN and renewal.number is not None
    return renewal


def test_an_invoice_pdf_is_rendered_once_and_stored_under_its_state(renders: list[Any]) -> None:
    world = make_world()
    invoice = dutch_subscriber(world)
    files = CountingFiles()

    first = documents.invoice_pdf(world.billing, files, invoice.id)
    for _ in range(99):
        assert documents.invoice_pdf(world.billing, files, invoice.id) == first

    assert len(renders) == 1 and len(files.puts) == 1
    (key,) = files.objects
    assert key.startswith(f"documents/{invoice.id}/paid-") and key.endswith(".pdf")
    assert files.objects[key] == (first, "application/pdf")
    text = text_of(first)
    assert invoice.number is not None and invoice.number in text
    assert "NL123456782B01" in text
    assert format_money(invoice.total, "EUR", "nl") in text  # € 127,05
    assert "Factuur" in text and "betaald op" in text


def test_a_file_stored_by_another_request_first_is_the_one_answered(renders: list[Any]) -> None:
    world = make_world()
    invoice = dutch_subscriber(world)
    files = MemoryFileStore()
    key = documents.invoice_file(world.billing, files, invoice.id, "pdf")
    stored_key = next(iter(files.objects))
    files.objects[stored_key] = (b"%PDF-the first writer", "application/pdf")  # as if a concurrent request won

    again = documents.invoice_file(world.billing, files, invoice.id, "pdf")
    assert again.data == b"%PDF-the first writer" and again.filename == key.filename == f"{invoice.number}.pdf"
    assert len(renders) == 1


def test_the_pdf_after_payment_says_paid(renders: list[Any]) -> None:
    world = make_world()
    renewal = open_renewal(world, dutch_subscriber(world))
    files = CountingFiles()

    unpaid = text_of(documents.invoice_pdf(world.billing, files, renewal.id))
    assert "te betalen vóór" in unpaid and "betaald op" not in unpaid
    assert format_money(renewal.amount_due, "EUR", "nl") in unpaid

    world.gateway.will_succeed("pm_card_visa")
    pay(world.billing, renewal.id)
    paid = text_of(documents.invoice_pdf(world.billing, files, renewal.id))

    assert "betaald op" in paid and "Betaald" in paid
    assert sorted(k.split("/")[-1].split("-")[0] for k in files.objects) == ["open", "paid"]
    assert len(renders) == 2  # one per state; asking again renders nothing
    documents.invoice_pdf(world.billing, files, renewal.id)
    assert len(renders) == 2


def test_a_draft_has_no_documents() -> None:
    world = make_world()
    invoice = dutch_subscriber(world)
    draft = invoice.model_copy(update={"id": "in_draft", "status": InvoiceStatus.DRAFT, "number": None})
    world.store.invoices[draft.id] = draft
    files = MemoryFileStore()
    for make in (documents.invoice_pdf, documents.invoice_ubl):
        with pytest.raises(InvalidInput) as refused:
            make(world.billing, files, draft.id)
        assert refused.value.param == "status" and "draft" in refused.value.message
    assert files.objects == {}


def test_an_unknown_invoice_or_credit_note_is_not_found() -> None:
    world = make_world()
    files = MemoryFileStore()
    with pytest.raises(NotFound):
        documents.invoice_pdf(world.billing, files, "in_missing")
    with pytest.raises(NotFound) as missing:
        documents.credit_note_pdf(world.billing, files, "cn_missing")
    assert missing.value.param == "credit_note"


def test_a_credit_note_pdf_names_the_invoice_it_credits(renders: list[Any]) -> None:
    world = make_world()
    invoice = dutch_subscriber(world)
    request = CreditNoteRequest(
        lines=(CreditNoteLineInput(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=2541, invoice_line=0),),
        reason="order_change",
    )
    note, _ = credit_invoice(world.billing, invoice.id, request)
    files = CountingFiles()

    made = documents.credit_note_file(world.billing, files, note.id, "pdf")
    assert documents.credit_note_pdf(world.billing, files, note.id) == made.data
    assert made.filename == f"{note.number}.pdf" and made.content_type == "application/pdf"
    assert len(renders) == 1
    text = text_of(made.data)
    assert "Creditnota" in text and note.number in text and str(invoice.number) in text
    assert format_money(2541, "EUR", "nl") in text
    assert next(iter(files.objects)).startswith(f"documents/{note.id}/issued-")


def test_ubl_is_stored_once_next_to_the_pdf() -> None:
    world = make_world()
    invoice = dutch_subscriber(world)
    files = CountingFiles()
    xml = documents.invoice_file(world.billing, files, invoice.id, "ubl")
    assert documents.invoice_ubl(world.billing, files, invoice.id) == xml.data
    assert xml.content_type == "application/xml" and xml.filename == f"{invoice.number}.xml"
    assert xml.data.lstrip().startswith(b"<?xml") and str(invoice.number).encode() in xml.data
    assert len(files.puts) == 1 and files.puts[0].endswith(".xml")


def test_the_logo_is_drawn_only_when_stored(renders: list[Any]) -> None:
    from PIL import Image

    world = make_world()
    invoice = dutch_subscriber(world)
    files = MemoryFileStore()
    logo = io.BytesIO()
    Image.new("RGB", (120, 40), (170, 51, 0)).save(logo, format="PNG")
    files.put(documents.LOGO_KEY, logo.getvalue(), "image/png")

    with_logo = documents.invoice_pdf(world.billing, files, invoice.id)
    page = PdfReader(io.BytesIO(with_logo)).pages[0]
    assert list(page.images)  # the stored logo is on the page
