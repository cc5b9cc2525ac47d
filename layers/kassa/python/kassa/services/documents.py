"""Invoice and credit-note documents (PDF, UBL), made once per state and kept in the file store.

A document exists only for a finalized, numbered invoice (a draft, or a checkout's first invoice
before it is paid, is a 400 naming ``status``). What it says is ``kassa.domain.documents``'
:class:`Document`; this module only keys, renders and stores it:

    documents/<invoice or credit note id>/<status>-<digest>.<pdf|xml>

``digest`` is the first 20 hex digits of the SHA-256 of everything the file shows: the Document
(parties, lines, VAT, totals, status, locale), the day it was paid, the brand colour and the
layout version (``kassa.documents.pdf.LAYOUT_VERSION``; for UBL, ``ubl`` and the document). So:

- an unchanged invoice asked for 100 times is rendered once: each request reads the invoice, the
  settings and the customer, derives the key and finds the stored file (one S3 GET);
- a paid invoice's key differs from its open one's (``paid-…`` vs ``open-…``): its PDF says paid,
  and the open one stays stored as it was sent;
- the first writer wins (``put(..., only_if_absent=True)``, S3's ``If-None-Match: *``): two
  concurrent requests may both render, one object is kept and both answer the same content.

The logo: ``settings.emails.logo_url`` is never fetched while rendering (no network call inside a
request, no server-side request forgery surface). A merchant who wants the logo on documents stores
it once at ``documents/_brand/logo`` (PNG or JPEG) in the files bucket; it is read only when a
document is rendered (not on cache hits), and documents made before keep their look. Without it
the merchant's name is drawn in the brand colour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from kassa.domain.errors import InvalidInput, NotFound
from kassa.domain.invoice import InvoiceStatus
from kassa.services.context import BillingContext
from kassa.services.ports import FileStore

if TYPE_CHECKING:
    from kassa.domain.credit_notes import CreditNote
    from kassa.domain.customer import Customer
    from kassa.domain.documents import Document
    from kassa.domain.invoice import Invoice
    from kassa.domain.settings import MerchantSettings

PREFIX = "documents/"  # infra/wiring.py DOCUMENTS_PREFIX: the api and dunning functions may read and write it
LOGO_KEY = PREFIX + "_brand/logo"
PDF = "application/pdf"
XML = "application/xml"
DIGEST_CHARS = 20


# ---------------------------------------------------------------------------------- keys
def _plain(value: Any) -> Any:
    """A JSON-able, canonical form of a Document and what it holds (dataclasses, pydantic models)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return value


def document_key(owner_id: str, status: str, extension: str, *parts: Any) -> str:
    """``documents/<id>/<status>-<digest>.<extension>``: the digest of everything the file shows."""
    canonical = json.dumps([_plain(p) for p in parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    return f"{PREFIX}{owner_id}/{status}-{digest}.{extension}"


def _stored(files: FileStore, key: str, content_type: str, make: Callable[[], bytes]) -> bytes:
    """The file at ``key``, made and stored (first writer wins) when it is not there yet."""
    found = files.get(key)
    if found is not None:
        return found
    data = make()
    if not files.put(key, data, content_type, only_if_absent=True):
        kept = files.get(key)  # another request stored it first: answer what is kept
        if kept is not None:
            return kept
    return data


# ---------------------------------------------------------------------------------- reading
def _finalized(invoice: Invoice) -> Invoice:
    if invoice.status is InvoiceStatus.DRAFT:
        raise InvalidInput(f"invoice {invoice.id} is a draft: its documents exist once it is finalized", param="status")
    if invoice.number is None:
        raise InvalidInput(
            f"invoice {invoice.id} has no number yet (a checkout's first invoice is numbered when it is paid)",
            param="status",
        )
    return invoice


def _customer(ctx: BillingContext, customer_id: str) -> Customer | None:
    try:
        return ctx.store.get_customer(customer_id)
    except NotFound:  # the invoice's frozen buyer is enough; older invoices need the customer
        return None


def _invoice_view(ctx: BillingContext, invoice_id: str) -> tuple[Invoice, Document, MerchantSettings]:
    from kassa.domain.documents import invoice_document

    invoice = _finalized(ctx.store.get_invoice(invoice_id))
    settings = ctx.store.get_settings()
    doc = invoice_document(invoice, settings=settings, customer=_customer(ctx, invoice.customer))
    return invoice, doc, settings


def _credit_note_view(ctx: BillingContext, credit_note_id: str) -> tuple[CreditNote, Document, MerchantSettings]:
    from kassa.domain.documents import credit_note_document

    note = ctx.store.get_credit_note(credit_note_id)
    invoice = ctx.store.get_invoice(note.invoice)
    settings = ctx.store.get_settings()
    doc = credit_note_document(note, invoice, settings=settings, customer=_customer(ctx, invoice.customer))
    return note, doc, settings


def _logo(files: FileStore) -> bytes | None:
    return files.get(LOGO_KEY)


def _paid_on(invoice: Invoice) -> date | None:
    return invoice.paid_at.date() if invoice.status is InvoiceStatus.PAID and invoice.paid_at else None


def _pdf(files: FileStore, owner_id: str, doc: Document, settings: MerchantSettings, paid_on: date | None) -> bytes:
    from kassa.documents import pdf  # fpdf2: ~220 ms to import, only when a document is rendered

    colour = settings.emails.colour
    key = document_key(owner_id, doc.status, "pdf", "pdf", pdf.LAYOUT_VERSION, colour, paid_on, doc)
    return _stored(
        files, key, PDF, lambda: pdf.render_pdf(doc, brand_colour=colour, logo=_logo(files), paid_on=paid_on)
    )


# ---------------------------------------------------------------------------------- use cases
@dataclass(frozen=True)
class DocumentFile:
    """A stored document and how to serve it."""

    data: bytes
    filename: str  # the document number, e.g. KASSA-0042.pdf
    content_type: str


Format = Literal["pdf", "ubl"]


def _file(owner_id: str, number: str | None, fmt: Format, data: bytes) -> DocumentFile:
    extension = "pdf" if fmt == "pdf" else "xml"
    return DocumentFile(data, filename(number, owner_id, extension), PDF if fmt == "pdf" else XML)


def invoice_file(ctx: BillingContext, files: FileStore, invoice_id: str, fmt: Format) -> DocumentFile:
    """The invoice's PDF (in the customer's language) or UBL 2.1 e-invoice, made once per state."""
    invoice, doc, settings = _invoice_view(ctx, invoice_id)
    if fmt == "pdf":
        data = _pdf(files, invoice.id, doc, settings, _paid_on(invoice))
    else:
        from kassa.documents import ubl

        key = document_key(invoice.id, doc.status, "xml", "ubl", doc)
        data = _stored(files, key, XML, lambda: ubl.invoice_ubl(doc))
    return _file(invoice.id, invoice.number, fmt, data)


def invoice_pdf_file(
    files: FileStore, invoice: Invoice, settings: MerchantSettings, customer: Customer | None
) -> DocumentFile:
    """The invoice's PDF from an invoice, settings and customer the caller has read already (the
    hosted page's download: the same file as ``invoice_file``, without reading them again)."""
    from kassa.domain.documents import invoice_document

    invoice = _finalized(invoice)
    doc = invoice_document(invoice, settings=settings, customer=customer)
    return _file(invoice.id, invoice.number, "pdf", _pdf(files, invoice.id, doc, settings, _paid_on(invoice)))


def credit_note_file(ctx: BillingContext, files: FileStore, credit_note_id: str, fmt: Format) -> DocumentFile:
    """The credit note's PDF or UBL 2.1 CreditNote, referring to the invoice it credits."""
    note, doc, settings = _credit_note_view(ctx, credit_note_id)
    if fmt == "pdf":
        data = _pdf(files, note.id, doc, settings, None)
    else:
        from kassa.documents import ubl

        key = document_key(note.id, doc.status, "xml", "ubl", doc)
        data = _stored(files, key, XML, lambda: ubl.credit_note_ubl(doc))
    return _file(note.id, note.number, fmt, data)


def invoice_pdf(ctx: BillingContext, files: FileStore, invoice_id: str) -> bytes:
    """The invoice's PDF in the customer's language, made once per state."""
    return invoice_file(ctx, files, invoice_id, "pdf").data


def credit_note_pdf(ctx: BillingContext, files: FileStore, credit_note_id: str) -> bytes:
    """The credit note's PDF, referring to the invoice it credits."""
    return credit_note_file(ctx, files, credit_note_id, "pdf").data


def invoice_ubl(ctx: BillingContext, files: FileStore, invoice_id: str) -> bytes:
    """The invoice as a UBL 2.1 e-invoice (EN 16931), made once per state."""
    return invoice_file(ctx, files, invoice_id, "ubl").data


def credit_note_ubl(ctx: BillingContext, files: FileStore, credit_note_id: str) -> bytes:
    """The credit note as a UBL 2.1 CreditNote, referring to its invoice."""
    return credit_note_file(ctx, files, credit_note_id, "ubl").data


def filename(number: str | None, fallback: str, extension: str) -> str:
    """A safe download name from a document number (``KASSA-0042.pdf``)."""
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (number or fallback)) or fallback
    return f"{base}.{extension}"
