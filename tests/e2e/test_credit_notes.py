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
