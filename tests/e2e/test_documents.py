"""Invoice and credit-note documents through the API of a running local stack: a Dutch consumer's
invoice downloads as PDF (in Dutch) and UBL with the right types and file names; so does a credit
note; a read-only key may read them; unknown ids are 404s and a missing key a 401."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
import requests
from pypdf import PdfReader

from kassa.emails.render import format_money
from kassa_local.client import Api

pytestmark = pytest.mark.e2e

AMSTERDAM = {"country": "NL", "line1": "Damrak 5", "city": "Amsterdam", "postal_code": "1012 LG"}


SELLER = {
    "seller_name": "Koffie BV",
    "seller_address": {"country": "NL", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ"},
    "seller_tax_id": "NL123456782B01",
    "seller_registration": "KvK 12345678",
    "seller_iban": "NL91ABNA0417164300",
}


@pytest.fixture(scope="module", autouse=True)
def seller(stack_config):
    """The merchant's seller details (an e-invoice needs the seller's VAT number)."""
    api = Api(stack_config)
    settings = api.get("/v1/settings")
    settings = {k: v for k, v in settings.items() if k != "object"} | SELLER
    api.request("PUT", "/v1/settings", expect=200, json=settings)


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_a_dutch_consumers_invoice_downloads_as_pdf_and_ubl(api: Api):
    price = api.catalog(currency="EUR", amount=10500)
    invoice = api.subscribe(price["id"], "jan@example.nl", address=AMSTERDAM, locale="nl")["invoice"]
    assert invoice["status"] == "paid" and invoice["number"]

    pdf = api.request("GET", f"/v1/invoices/{invoice['id']}/pdf", expect=200)
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == f'inline; filename="{invoice["number"]}.pdf"'
    assert pdf.content.startswith(b"%PDF-")  # the bytes arrive intact (base64 through the gateway)
    text = _text(pdf.content)
    assert invoice["number"] in text and "Factuur" in text and "betaald op" in text
    assert "NL123456782B01" in text and "Koffie BV" in text
    assert format_money(invoice["total"], "EUR", "nl") in text

    again = api.request("GET", f"/v1/invoices/{invoice['id']}/pdf", expect=200)
    assert again.content == pdf.content  # stored once, served from the files bucket

    ubl = api.request("GET", f"/v1/invoices/{invoice['id']}/ubl", expect=200)
    assert ubl.headers["Content-Type"].startswith("application/xml")
    assert ubl.headers["Content-Disposition"] == f'inline; filename="{invoice["number"]}.xml"'
    assert ubl.content.lstrip().startswith(b"<?xml") and invoice["number"].encode() in ubl.content


def test_a_credit_notes_pdf_and_ubl_download(api: Api):
    price = api.catalog(currency="EUR", amount=2000)
    invoice = api.subscribe(price["id"], "els@example.nl", address=AMSTERDAM, locale="nl")["invoice"]
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 1210}], "reason": "order_change"}
    note = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)["credit_note"]

    pdf = api.request("GET", f"/v1/credit_notes/{note['id']}/pdf", expect=200)
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == f'inline; filename="{note["number"]}.pdf"'
    text = _text(pdf.content)
    assert "Creditnota" in text and note["number"] in text and invoice["number"] in text
    ubl = api.request("GET", f"/v1/credit_notes/{note['id']}/ubl", expect=200)
    assert ubl.headers["Content-Type"].startswith("application/xml") and b"CreditNote" in ubl.content


def test_documents_need_a_key_and_name_what_is_missing(api: Api, stack_config):
    assert requests.get(api.base + "/v1/invoices/in_missing/pdf", timeout=30).status_code == 401
    missing = api.request("GET", "/v1/invoices/in_missing/pdf")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
    assert api.request("GET", "/v1/credit_notes/cn_missing/ubl").json()["error"]["param"] == "credit_note"


def test_the_openapi_document_lists_the_document_routes_with_their_types(api: Api):
    paths = requests.get(api.base + "/openapi.json", timeout=30).json()["paths"]
    for path, media in (
        ("/v1/invoices/{invoice_id}/pdf", "application/pdf"),
        ("/v1/invoices/{invoice_id}/ubl", "application/xml"),
        ("/v1/credit_notes/{credit_note_id}/pdf", "application/pdf"),
        ("/v1/credit_notes/{credit_note_id}/ubl", "application/xml"),
    ):
        responses = paths[path]["get"]["responses"]
        assert list(responses["200"]["content"]) == [media]
        assert {"400", "401", "404"} <= set(responses)


def test_the_export_zips_a_periods_invoices_and_credit_notes(api: Api, stack_config, tmp_path):
    import csv
    import zipfile
    from datetime import timedelta

    from kassa_local.export import Exporter, _day, export

    price = api.catalog(currency="EUR", amount=3000)
    invoice = api.subscribe(price["id"], "export@example.nl", address=AMSTERDAM, locale="nl")["invoice"]
    body = {"lines": [{"type": "custom_line_item", "amount": 500, "description": "goodwill"}], "credit_amount": 500}
    note = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)["credit_note"]
    created = datetime.fromisoformat(invoice["created"].replace("Z", "+00:00")).date()
    out = tmp_path / "export.zip"

    start, end = _day(str(created - timedelta(days=1)), end=False), _day(str(created), end=True)
    counts = export(Exporter(api.base, stack_config["api_secret_key"]), start, end, out, ["pdf", "ubl"], progress=False)

    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert {f"invoices/{invoice['number']}.pdf", f"invoices/{invoice['number']}.xml"} <= names
        assert {f"credit_notes/{note['number']}.pdf", f"credit_notes/{note['number']}.xml"} <= names
        assert archive.read(f"invoices/{invoice['number']}.pdf").startswith(b"%PDF-")
        index = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode())))
    assert {(row["kind"], row["number"]) for row in index} >= {
        ("invoice", invoice["number"]),
        ("credit_note", note["number"]),
    }
    assert counts["missing"] == 0 and counts["files"] == 2 * (counts["invoices"] + counts["credit_notes"])
