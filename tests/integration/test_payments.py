"""Refunds, disputes and early fraud warnings through the local stack: kassa's own refund through the
API, and Stripe events (which localstripe never sends) built from Stripe's fixtures, signed with the
webhook secret and delivered to the webhook route — each delivered twice, one effect."""

from __future__ import annotations

import pytest

from kassa_local.client import Api

from .conftest import post_webhook, stripe_event, stripe_object

pytestmark = pytest.mark.integration


def _deliver(stack, config, event: dict, times: int = 2) -> None:
    for _ in range(times):
        assert post_webhook(config, event).status_code == 200
        stack.drain()


def test_a_refund_through_the_api_is_made_once_and_shown(stack, api: Api, uid):
    price = api.catalog(currency="EUR", amount=1500)
    invoice = api.subscribe(price["id"], f"refund-{uid}@example.com")["invoice"]
    assert invoice["status"] == "paid"
    body = {"invoice": invoice["id"], "amount": 500, "reason": "requested_by_customer"}
    headers = {"Idempotency-Key": f"key-{uid}"}
    first = api.request("POST", "/v1/refunds", 201, json=body, headers=headers).json()
    again = api.request("POST", "/v1/refunds", 201, json=body, headers=headers).json()
    assert first["id"] == again["id"] and first["amount"] == 500 and first["status"] == "succeeded"
    too_much = api.request("POST", "/v1/refunds", 400, json={"invoice": invoice["id"], "amount": 10**6}).json()
    assert too_much["error"]["param"] == "amount"
    listed = api.get(f"/v1/refunds?invoice={invoice['id']}")["data"]
    assert [(r["id"], r["amount"], r["reason"]) for r in listed] == [(first["id"], 500, "requested_by_customer")]
    assert api.get(f"/v1/invoices/{invoice['id']}")["amount_refunded"] == 500


def test_a_dashboard_refund_and_a_dispute_arrive_as_signed_webhooks(stack, api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1500)
    invoice = api.subscribe(price["id"], f"dispute-{uid}@example.com")["invoice"]
    intent = invoice["payment_intent"]
    refund = stripe_object("refund", id=f"re_{uid}", amount=300, currency="eur", status="succeeded",
                           payment_intent=intent, charge=f"ch_{uid}", reason="requested_by_customer")  # fmt: skip
    listed = {"object": "list", "data": [refund]}
    charge = stripe_object("charge", id=f"ch_{uid}", payment_intent=intent, amount=invoice["amount_paid"],
                           amount_refunded=300, currency="eur", refunds=listed)  # fmt: skip
    _deliver(stack, config, stripe_event("charge.refunded", charge, f"evt_refunded_{uid}"))
    _deliver(stack, config, stripe_event("refund.created", refund, f"evt_refund_{uid}"))
    shown = api.get(f"/v1/invoices/{invoice['id']}")
    assert shown["amount_refunded"] == 300
    assert [(r["id"], r["amount"], r["source"]) for r in shown["refunds"]] == [(f"re_{uid}", 300, "stripe")]

    def dispute(status: str) -> dict:
        return stripe_object("dispute", id=f"dp_{uid}", amount=1000, currency="eur", status=status,
                             payment_intent=intent, charge=f"ch_{uid}", reason="fraudulent")  # fmt: skip

    closed = stripe_event("charge.dispute.closed", dispute("lost"), f"evt_dp_closed_{uid}")
    closed["created"] += 100
    _deliver(stack, config, closed)  # closed before created: stays closed
    _deliver(stack, config, stripe_event("charge.dispute.created", dispute("needs_response"), f"evt_dp_{uid}"))
    shown = api.get(f"/v1/invoices/{invoice['id']}")
    assert [(d["id"], d["status"], d["amount_lost"]) for d in shown["disputes"]] == [(f"dp_{uid}", "lost", 1000)]
    assert shown["amount_disputed_lost"] == 1000
    closed_events = [e for e in stack.events("charge.dispute.closed") if e["detail"]["data"]["id"] == f"dp_{uid}"]
    assert len(closed_events) == 1


def test_an_early_fraud_warning_flags_the_invoice_and_customer(stack, api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1500)
    done = api.subscribe(price["id"], f"efw-{uid}@example.com")
    invoice = done["invoice"]
    warning = stripe_object("radar.early_fraud_warning", id=f"issfr_{uid}", payment_intent=invoice["payment_intent"])
    _deliver(stack, config, stripe_event("radar.early_fraud_warning.created", warning, f"evt_efw_{uid}"))
    shown = api.get(f"/v1/invoices/{invoice['id']}")
    assert [(w["id"], w["action"]) for w in shown["fraud_warnings"]] == [(f"issfr_{uid}", "flagged")]
    assert api.get(f"/v1/customers/{invoice['customer']}")["fraud_warnings"] == [f"issfr_{uid}"]
