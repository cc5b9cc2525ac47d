"""Credit notes: on an open invoice they lower the amount due; on a paid one they refund through
Stripe (reaching localstripe), credit the customer's balance, or record an out-of-band settlement."""

from __future__ import annotations

import pytest
import requests

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}


def _refunds(config: dict, payment_intent: str) -> list[dict]:
    response = requests.get(
        f"{config['stripe_url']}/v1/refunds",
        params={"payment_intent": payment_intent},
        headers={"Authorization": f"Bearer {config['stripe_secret_key']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_a_refund_through_a_credit_note_reaches_stripe(api: Api, stack_config):
    price = api.catalog(currency="USD", amount=4000)
    invoice = api.subscribe(price["id"], "refund@example.com", address=OREGON)["invoice"]
    assert invoice["status"] == "paid" and invoice["payment_intent"]
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 4000}], "reason": "duplicate"}
    issued = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)
    note = issued["credit_note"]
    assert (note["type"], note["total"], note["refund_amount"]) == ("post_payment", 4000, 4000)
    assert note["number"] == f"{invoice['number']}-CN-01"
    assert issued["invoice"]["post_payment_credit_notes_amount"] == 4000
    refunds = _refunds(stack_config, invoice["payment_intent"])
    assert [(r["amount"], r["metadata"]["kassa_credit_note"]) for r in refunds] == [(4000, note["id"])]
    again = api.request("POST", f"/v1/invoices/{invoice['id']}/credit_notes", json=body)
    assert again.status_code == 400 and again.json()["error"]["param"] in ("lines", "lines.amount")
    assert len(api.get(f"/v1/invoices/{invoice['id']}/credit_notes")["data"]) == 1


def test_a_credit_note_split_into_refund_and_balance_credit(api: Api, stack_config):
    price = api.catalog(currency="USD", amount=1000)
    done = api.subscribe(price["id"], "split@example.com", address=OREGON)
    invoice = done["invoice"]
    body = {
        "lines": [{"type": "custom_line_item", "amount": 500, "description": "service outage"}],
        "refund_amount": 300,
        "credit_amount": 200,
    }
    note = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)["credit_note"]
    assert (note["refund_amount"], note["credit_amount"], note["out_of_band_amount"]) == (300, 200, 0)
    assert [r["amount"] for r in _refunds(stack_config, invoice["payment_intent"])] == [300]
    customer = api.get(f"/v1/customers/{done['subscription']['customer']}")
    assert (customer["balance"], customer["balance_currency"]) == (-200, "USD")
    bad = api.request(
        "POST",
        f"/v1/invoices/{invoice['id']}/credit_notes",
        json={**body, "refund_amount": 100},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "refund_amount"  # parts must sum up


def test_a_credit_note_on_an_open_invoice_lowers_what_is_due(api: Api):
    price = api.catalog(currency="USD", amount=1500)
    done = api.subscribe(price["id"], "open@example.com", address=OREGON, card="4000000000000341")
    invoice = done["invoice"]
    assert invoice["status"] == "open"
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 500}], "reason": "order_change"}
    issued = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)
    assert issued["credit_note"]["type"] == "pre_payment"
    assert (issued["invoice"]["amount_due"], issued["invoice"]["status"]) == (1000, "open")
    rest = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 1000}]}
    settled = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", rest, expect=201)["invoice"]
    assert (settled["amount_due"], settled["status"]) == (0, "paid")


def test_a_credit_note_carries_its_tax_and_the_oss_return_nets_it(api: Api):
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings["tax"] = {"home_country": "NL", "oss_registered": True}
    api.request("PUT", "/v1/settings", expect=200, json=settings)
    price = api.catalog(currency="EUR", amount=1000)
    invoice = api.subscribe(price["id"], "fi-consumer@example.com", address={"country": "FI"})["invoice"]
    assert (invoice["status"], invoice["tax"], invoice["total"]) == ("paid", 255, 1255)
    assert invoice["tax_rule"] == "eu_b2c_oss"
    body = {"lines": [{"type": "invoice_line_item", "invoice_line": 0, "amount": 627}], "out_of_band_amount": 627}
    note = api.post(f"/v1/invoices/{invoice['id']}/credit_notes", body, expect=201)["credit_note"]
    # 627 × 255 / 1255 = 127.4 → 127 of VAT, 500 net
    assert (note["subtotal"], note["tax"], note["total"]) == (500, 127, 627)
    [line] = note["lines"]
    assert (line["net_amount"], line["tax_amount"], line["tax_rate"]) == (500, 127, "25.5")
    assert line["tax_behavior"] == "exclusive"
    assert [(r["jurisdiction"], r["rate"], r["taxable_amount"], r["tax_amount"]) for r in note["tax_breakdown"]] == [
        ("FI", "25.5", 500, 127)
    ]
    assert api.get(f"/v1/invoices/{invoice['id']}/credit_notes")["data"][0]["tax"] == 127
    on = invoice["tax_date"]
    assert note["tax_date"][:7] == on[:7]  # issued in the invoice's month: the same quarter
    year, quarter = int(on[:4]), (int(on[5:7]) - 1) // 3 + 1
    oss = api.get("/v1/tax/reports/oss", params={"year": year, "quarter": quarter})
    assert [(r["member_state"], r["rate"], r["taxable_amount"], r["vat_amount"]) for r in oss["rows"]] == [
        ("FI", "25.5", 1000 - 500, 255 - 127)
    ]
    report = api.get("/v1/tax/reports/jurisdictions", params={"from": on, "to": note["tax_date"]})
    fi = [r for r in report["rows"] if r["jurisdiction"] == "FI"]
    assert [(r["taxable_amount"], r["tax_amount"], r["invoices"], r["credit_notes"]) for r in fi] == [(500, 128, 1, 1)]
