"""Accounting on the local stack: a yearly and a monthly plan bought on 31 January, a renewal, a
refund through a credit note on 1 March; the journal balances per document and matches the revenue
report, the bookkeeping CSVs list the documents, and the audit trail recorded the refund."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def _price(api: Api, amount: int, interval: str) -> dict[str, Any]:
    product = api.post("/v1/products", {"name": f"Plan {interval}"}, expect=201)
    body = {"product": product["id"], "currency": "EUR", "unit_amount": amount, "recurring": {"interval": interval}}
    return api.post("/v1/prices", body, expect=201)


def test_journal_revenue_exports_and_audit_over_two_months(api: Api) -> None:
    yearly = api.subscribe(_price(api, 12000, "year")["id"], "yearly@example.com")["invoice"]
    monthly = api.subscribe(_price(api, 3000, "month")["id"], "monthly@example.com")["invoice"]
    assert yearly["status"] == monthly["status"] == "paid"
    assert yearly["lines"][0]["amount"] == 12000 and yearly["total"] == 12000 + yearly["tax"]
    api.advance(to="2026-03-01T10:00:00Z")
    # half of the yearly plan back: the credit note refunds through Stripe on 1 March
    half = (12000 + yearly["tax"]) // 2
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": half}]}
    note = api.post(f"/v1/invoices/{yearly['id']}/credit_notes", body, expect=201)["credit_note"]
    assert note["refund_amount"] == half

    report = api.get("/v1/reports/revenue", params={"from": "2026-01", "to": "2026-03"})["data"]
    january, february, march = report
    # 31 January: one day of 365 of €120 (33), one day of 28 of €30 (107)
    assert (january["month"], january["currency"], january["recognized"]) == ("2026-01", "EUR", 33 + 107)
    assert january["deferred"] == (12000 - 33) + (3000 - 107)
    assert january["billed"] == 12000 + 3000

    journal = api.get("/v1/exports/journal", params={"from": "2026-01-01", "to": "2026-03-31"})
    lines = journal["data"]
    per_document: dict[str, int] = {}
    for line in lines:
        per_document[line["document"]] = per_document.get(line["document"], 0) + line["debit"] - line["credit"]
    assert per_document and all(v == 0 for v in per_document.values())
    assert {yearly["id"], f"{yearly['id']}:payment", note["id"]} <= set(per_document)
    assert [t["debit"] == t["credit"] for t in journal["totals"]] == [True]
    for month in report:
        earned = sum(
            x["credit"] - x["debit"] for x in lines if x["account"] == "revenue" and x["date"][:7] == month["month"]
        )
        assert earned == month["recognized"]
    deferred = sum(x["credit"] - x["debit"] for x in lines if x["account"] == "deferred_revenue")
    assert deferred == march["deferred"]
    assert february["recognized"] > 0 and march["billed"] < 0 < march["deferred"]

    as_csv = api.request(
        "GET", "/v1/exports/journal", params={"from": "2026-01-01", "to": "2026-03-31", "format": "csv"}
    )
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(as_csv.text)))) == len(lines)
    revenue_csv = api.request(
        "GET", "/v1/reports/revenue", params={"from": "2026-01", "to": "2026-03", "format": "csv"}
    )
    assert [r["recognized"] for r in csv.DictReader(io.StringIO(revenue_csv.text))] == [
        str(m["recognized"]) for m in report
    ]
    invoices = api.request("GET", "/v1/exports/invoices", params={"from": "2026-01-01", "to": "2026-03-31"})
    numbers = {row["invoice_number"] for row in csv.DictReader(io.StringIO(invoices.text))}
    assert {yearly["number"], monthly["number"]} <= numbers and len(numbers) == 3  # with the renewal
    payments = api.request("GET", "/v1/exports/payments", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert [r["type"] for r in csv.DictReader(io.StringIO(payments.text))].count("refund") == 1

    [created] = api.get("/v1/audit_events", params={"object": note["id"]})["data"]
    assert created["action"] == "created" and created["route"] == "POST /v1/invoices/{invoice_id}/credit_notes"
    changed = api.get("/v1/audit_events", params={"object": yearly["id"], "from": "2026-03-01"})["data"]
    assert [e["route"] for e in changed] == ["POST /v1/invoices/{invoice_id}/credit_notes"]
    assert changed[0]["changes"]["amount_refunded"] == {"before": 0, "after": half}
