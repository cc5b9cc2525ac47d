"""Invoice documents end to end on the local stack, as a customer and an accountant meet them.

An Irish seller registered for the EU One-Stop Shop sells to a Dutch consumer (OSS, Dutch VAT), a
German business (reverse charge) and a US customer (export, no VAT). Each subscribes and renews;
every receipt links the hosted invoice page, whose PDF downloads and names the invoice, both
parties' VAT numbers and the total as the customer's language writes it. The business's and the
export's e-invoices pass the EN 16931 and Peppol rules. A partial credit note on the Dutch
consumer's first invoice, issued in the next quarter, lowers that quarter's OSS return by exactly
the VAT it reverses and leaves the invoice's own quarter as it was.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from pypdf import PdfReader

from kassa.emails.render import format_money
from kassa_local.client import Api

pytestmark = pytest.mark.e2e

EINVOICE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "einvoice"

SELLER = {
    "seller_name": "Irish SaaS Ltd",
    "seller_address": {"country": "IE", "line1": "1 Grand Canal Square", "city": "Dublin", "postal_code": "D02 P820"},
    "seller_tax_id": "IE6388047V",
    "seller_iban": "IE29AIBK93115212345678",
    "invoice_prefix": "IEDOC",
    "tax": {"home_country": "IE", "oss_registered": True},
}
GERMAN_VAT = "DE136695976"
CUSTOMERS = {
    "nl": {"email": "nl-consumer@example.nl", "address": {"country": "NL"}, "locale": "nl"},
    "de": {"email": "einkauf@example.de", "address": {"country": "DE"}, "tax_id": GERMAN_VAT, "locale": "de"},
    "us": {"email": "buyer@example.com", "address": {"country": "US", "state": "NY"}, "locale": "en"},
}


def _receipts(stack: Any, customer: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in stack.outbox(customer) if e["template"] == "receipt"]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} receipts for {customer}, wanted {count}"
            return found
        stack.drain()
        time.sleep(0.2)


def _link(email: dict[str, Any]) -> str:
    return next(word for word in email["text"].split() if "/portal/invoices/" in word)


def _oss(api: Api, year: int, quarter: int) -> dict[tuple[str, str], tuple[int, int]]:
    rows = api.get("/v1/tax/reports/oss", params={"year": year, "quarter": quarter})["rows"]
    return {(r["member_state"], r["rate"]): (r["taxable_amount"], r["vat_amount"]) for r in rows}


@pytest.fixture(scope="module")
def journey(stack: Any, stack_config: dict[str, Any]) -> dict[str, Any]:
    api = Api(stack_config)
    settings = {k: v for k, v in api.get("/v1/settings").items() if k != "object"}
    api.request("PUT", "/v1/settings", expect=200, json=settings | SELLER)
    price = api.catalog(currency="EUR", amount=2500)
    started = {
        key: api.subscribe(price["id"], c["email"], address=c["address"], tax_id=c.get("tax_id"), locale=c["locale"])
        for key, c in CUSTOMERS.items()
    }
    # the checkout's answer already links the paid invoice's page and PDF, as every invoice does
    for done in started.values():
        hosted = done["invoice"]["hosted_invoice_url"]
        assert hosted.startswith(f"{stack_config['api_url']}/portal/invoices/")
        assert done["invoice"]["invoice_pdf"] == f"{hosted}/pdf"
    subs = {key: done["subscription"] for key, done in started.items()}
    # the US customer is a business on the Peppol network (a DUNS number); it says so after its first invoice
    api.post(f"/v1/customers/{subs['us']['customer']}", {"peppol_id": "0060:123456789"})
    api.advance("29d")  # 2026-01-31 → past the renewal on 2026-02-28
    invoices = {
        key: sorted(api.get(f"/v1/customers/{s['customer']}/invoices")["data"], key=lambda i: i["number"])
        for key, s in subs.items()
    }
    return {"api": api, "subs": subs, "invoices": invoices}


def test_each_customer_subscribed_and_renewed_with_the_tax_of_their_case(journey: dict[str, Any]) -> None:
    invoices = journey["invoices"]
    assert {k: [i["status"] for i in v] for k, v in invoices.items()} == {k: ["paid", "paid"] for k in CUSTOMERS}
    assert {k: v[-1]["billing_reason"] for k, v in invoices.items()} == {k: "subscription_cycle" for k in CUSTOMERS}
    assert {k: (v[-1]["tax_rule"], v[-1]["tax"]) for k, v in invoices.items()} == {
        "nl": ("eu_b2c_oss", 525),  # 21% of €25.00
        "de": ("eu_reverse_charge", 0),
        "us": ("not_registered", 0),  # no US registration: no tax collected (an export)
    }


@pytest.mark.parametrize("key", list(CUSTOMERS))
def test_every_receipt_links_a_pdf_that_downloads(stack: Any, journey: dict[str, Any], key: str) -> None:
    invoices = journey["invoices"][key]
    customer = journey["subs"][key]["customer"]
    receipts = _receipts(stack, customer, len(invoices))
    assert len({r["key"] for r in receipts}) == len(invoices)  # one receipt per paid invoice
    for invoice in invoices:
        [email] = [r for r in receipts if r["key"] == f"{invoice['id']}:receipt"]
        link = _link(email)
        page = requests.get(link, timeout=30)
        assert page.status_code == 200 and invoice["number"] in page.text
        pdf = requests.get(link + "/pdf", timeout=60)
        assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
        text = " ".join((p.extract_text() or "") for p in PdfReader(io.BytesIO(pdf.content)).pages)
        assert invoice["number"] in text
        assert SELLER["seller_tax_id"] in text
        if key == "de":
            assert GERMAN_VAT in text
        total = format_money(invoice["total"], "EUR", CUSTOMERS[key]["locale"])
        assert total.replace("\xa0", " ") in text.replace("\xa0", " "), (total, text)


def _fatal(xml: bytes) -> list[tuple[str, str]]:
    sys.path.insert(0, str(EINVOICE))
    from validate import validate

    return sorted((f.ruleset, f.rule) for f in validate(xml) if f.fatal)


@pytest.mark.skipif(not (EINVOICE / "validate.py").is_file(), reason=f"no e-invoice rules at {EINVOICE}")
@pytest.mark.parametrize(("key", "category"), [("de", "AE"), ("us", "G")])
def test_the_business_and_export_e_invoices_pass_the_official_rules(
    journey: dict[str, Any], key: str, category: str
) -> None:
    api = journey["api"]
    renewal = journey["invoices"][key][-1]
    response = api.request("GET", f"/v1/invoices/{renewal['id']}/ubl", expect=200)
    assert response.headers["Content-Type"].startswith("application/xml")
    assert _fatal(response.content) == []
    assert f"<cbc:ID>{category}</cbc:ID>".encode() in response.content
    assert SELLER["seller_tax_id"].encode() in response.content


@pytest.mark.skipif(not (EINVOICE / "validate.py").is_file(), reason=f"no e-invoice rules at {EINVOICE}")
def test_a_consumers_e_invoice_passes_en_16931_and_is_addressed_by_email(journey: dict[str, Any]) -> None:
    """A consumer has no Peppol address: the e-invoice names their email (scheme EM, which EN 16931
    allows). Peppol's own code list has no EM, so its CL008 is the one rule such a file fails — it is
    for the consumer's mailbox, not for the Peppol network (docs/documents.md)."""
    api = journey["api"]
    renewal = journey["invoices"]["nl"][-1]
    xml = api.request("GET", f"/v1/invoices/{renewal['id']}/ubl", expect=200).content
    assert f'schemeID="EM">{CUSTOMERS["nl"]["email"]}<'.encode() in xml
    assert _fatal(xml) == [("PEPPOL", "PEPPOL-EN16931-CL008")]


def test_a_partial_credit_note_lowers_the_next_oss_return_by_its_vat(journey: dict[str, Any]) -> None:
    api = journey["api"]
    api.advance("32d")  # past the renewal on 2026-03-31, into the second quarter (2026-04-01 …)
    q1_before, q2_before = _oss(api, 2026, 1), _oss(api, 2026, 2)
    first = journey["invoices"]["nl"][0]  # the January invoice: €25.00 + €5.25 VAT
    assert q1_before[("NL", "21")] == (3 * 2500, 3 * 525)  # January, February, March
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 1210}], "out_of_band_amount": 1210}
    note = api.post(f"/v1/invoices/{first['id']}/credit_notes", body, expect=201)["credit_note"]
    assert (note["subtotal"], note["tax"], note["total"]) == (1000, 210, 1210)  # 1210 × 525 / 3025
    assert note["tax_date"] >= "2026-04-01"
    q1_after, q2_after = _oss(api, 2026, 1), _oss(api, 2026, 2)
    assert q1_after == q1_before  # the invoice's quarter is filed as it was
    taxable, vat = q2_before.get(("NL", "21"), (0, 0))
    assert q2_after[("NL", "21")] == (taxable - 1000, vat - 210)

    pdf = api.request("GET", f"/v1/credit_notes/{note['id']}/pdf", expect=200)
    text = " ".join((p.extract_text() or "") for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert note["number"] in text and first["number"] in text
