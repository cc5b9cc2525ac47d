"""SEPA Direct Debit on the local stack (localstripe's sepa_debit, settled as Stripe settles: the
PaymentIntent is processing until the bank answers): a Dutch customer subscribes with an IBAN, the
first invoice is processing, then paid by ``payment_intent.succeeded``; a returned debit is dunned by
the bank's reason — account closed (hard: no retry, a new payment method asked for) or insufficient
funds (soft: retried on the schedule); a SEPA customer's renewal is pre-notified 14 days ahead."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from kassa_local.client import Api, confirm_sepa_debit_setup_request

pytestmark = pytest.mark.e2e

CREDITOR = "DE98ZZZ09999999999"
DEBITED = "NL91ABNA0417164300"
CLOSED = "DE62370400440532013001"  # returned: account_closed
NO_FUNDS = "DE78370400440532013004"  # returned: insufficient_funds


@pytest.fixture(scope="module")
def sepa_price(stack_config) -> dict[str, Any]:
    api = Api(stack_config)
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings.update(seller_name="Koffie Club BV", payment_method_types=["card", "sepa_debit"])
    settings["bank_debits"] = {"sepa_creditor_id": CREDITOR}
    settings["retry_schedule"] = {"offset_days": [3, 7]}
    api.request("PUT", "/v1/settings", expect=200, json=settings)
    return api.catalog(currency="EUR", amount=1500)


def subscribe_with_iban(api: Api, price: dict[str, Any], email: str, iban: str) -> dict[str, Any]:
    customer = {"email": email, "name": "Daan de Vries", "address": {"country": "NL"}, "preferred_locale": "nl"}
    started = api.post("/v1/checkout", {"price_id": price["id"], "customer": customer}, expect=201)
    assert started["payment_method_types"] == ["card", "sepa_debit"]
    # the rulebook's mandate in the customer's language (preferred_locale nl), creditor and identifier filled in
    mandate = started["mandate"]
    assert mandate["language"] == "nl"
    assert f"toestemming aan (A) Koffie Club BV (incassant-ID {CREDITOR})" in mandate["sepa_debit"]
    assert "binnen 8 weken" in mandate["sepa_debit"] and mandate["sepa_debit_accept"].startswith("Ik ga akkoord")
    confirmed = confirm_sepa_debit_setup_request(
        api.config, started["setup_intent_id"], started["client_secret"], iban, "Daan de Vries", email
    )
    assert confirmed.status_code == 200, confirmed.text
    done = api.post(
        f"/v1/checkout/{started['subscription']['id']}/complete",
        {
            "setup_intent_id": started["setup_intent_id"],
            "mandate_acceptance": {"ip_address": "198.51.100.4", "user_agent": "Mozilla/5.0 (kassa e2e)"},
        },
    )
    return {**started, **done}


def test_a_dutch_customer_subscribes_with_an_iban_processing_then_paid(api: Api, stack, sepa_price):
    done = subscribe_with_iban(api, sepa_price, "daan@example.nl", DEBITED)
    assert done["processing"] is True
    invoice = done["invoice"]
    assert (invoice["status"], invoice["attempt_outcome"]) == ("open", "processing")
    assert done["subscription"]["status"] == "active"  # access kept while the bank settles (Stripe's default)
    customer = api.get(f"/v1/customers/{done['subscription']['customer']}")
    account = customer["default_payment_method"]
    assert (account["type"], account["last4"], account["country"]) == ("sepa_debit", "4300", "NL")
    mandate = account["mandate"]
    assert mandate["reference"] and mandate["accepted_at"]
    assert (mandate["ip_address"], mandate["user_agent"]) == ("198.51.100.4", "Mozilla/5.0 (kassa e2e)")

    stack.drain()  # days later in live mode: payment_intent.succeeded
    paid = api.get(f"/v1/invoices/{invoice['id']}")
    assert paid["status"] == "paid" and paid["number"]
    assert [e["detail"]["data"]["id"] for e in stack.events(type="invoice.paid")].count(invoice["id"]) == 1
    receipt = next(e for e in stack.outbox(customer["id"]) if e["template"] == "receipt")
    assert "bankrekening eindigend op 4300" in receipt["text"] and mandate["reference"] in receipt["text"]


def test_a_closed_account_is_dunned_as_hard_with_the_banks_reason(api: Api, stack, sepa_price):
    done = subscribe_with_iban(api, sepa_price, "closed@example.nl", CLOSED)
    assert done["invoice"]["attempt_outcome"] == "processing"
    stack.drain()  # the bank returns the debit
    invoice = api.get(f"/v1/invoices/{done['invoice']['id']}")
    assert invoice["status"] == "open" and invoice["attempt_outcome"] == "declined"
    assert invoice["last_payment_error"]["decline_code"] == "account_closed"
    assert api.get(f"/v1/subscriptions/{done['subscription']['id']}")["status"] == "past_due"
    emails = stack.outbox(done["subscription"]["customer"])
    failed = [e for e in emails if e["template"] == "payment_failed"]
    assert len(failed) == 1 and "/portal/card?token=" in failed[0]["text"]  # asked for a new payment method
    charges_before = invoice["attempt_count"]
    stack.advance("8d")  # past every retry offset: a hard reason is never retried
    assert api.get(f"/v1/invoices/{invoice['id']}")["attempt_count"] == charges_before


def test_insufficient_funds_is_dunned_as_soft_and_retried(api: Api, stack, sepa_price):
    done = subscribe_with_iban(api, sepa_price, "broke@example.nl", NO_FUNDS)
    stack.drain()
    invoice = api.get(f"/v1/invoices/{done['invoice']['id']}")
    assert invoice["last_payment_error"]["decline_code"] == "insufficient_funds"
    failed = [e for e in stack.outbox(done["subscription"]["customer"]) if e["template"] == "payment_failed"]
    assert len(failed) == 1
    stack.advance("3d1h")  # the first retry (offset 3 days): debited again, processing
    assert api.get(f"/v1/invoices/{invoice['id']}")["attempt_count"] == 2
    stack.drain()  # and returned again
    retried = api.get(f"/v1/invoices/{invoice['id']}")
    assert retried["attempt_count"] == 2 and retried["attempt_outcome"] == "declined"
    assert retried["last_payment_error"]["attempt"] == 2


def test_a_sepa_renewal_is_pre_notified_14_days_before_the_debit(api: Api, stack, sepa_price):
    done = subscribe_with_iban(api, sepa_price, "notice@example.nl", DEBITED)
    stack.drain()
    sub = api.get(f"/v1/subscriptions/{done['subscription']['id']}")
    renews_at = datetime.fromisoformat(sub["current_period_end"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(sub["renewal_reminder_at"].replace("Z", "+00:00")) == renews_at - timedelta(days=14)
    stack.advance(to=renews_at - timedelta(days=14) + timedelta(hours=1))
    [notice] = [e for e in stack.outbox(sub["customer"]) if e["template"] == "upcoming_renewal"]
    assert "Vooraankondiging van een SEPA-incasso" in notice["text"]
    assert "bankrekening eindigend op 4300" in notice["text"] and CREDITOR in notice["text"]
    stack.advance(to=renews_at + timedelta(hours=1))  # the renewal is debited: processing, then settled
    stack.drain()
    renewed = api.get(f"/v1/subscriptions/{sub['id']}")
    latest = api.get(f"/v1/invoices/{renewed['latest_invoice']}")
    assert latest["id"] != done["invoice"]["id"] and latest["status"] == "paid"


def test_the_checkout_offers_ideal_to_a_dutch_customer_and_refuses_what_it_does_not_offer(api: Api, sepa_price):
    """The routes and answers on the stack (localstripe has no iDEAL: the payment itself is tested with
    stubbed HTTP and in-memory, tests/integration/test_bank_debit_gateway.py, tests/unit/test_bank_debits.py)."""
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    refused = api.request("PUT", "/v1/settings", json={**settings, "payment_method_types": ["card", "ideal"]})
    assert refused.status_code == 400 and "sepa_debit" in refused.text, refused.text
    api.request(
        "PUT", "/v1/settings", expect=200, json={**settings, "payment_method_types": ["card", "sepa_debit", "ideal"]}
    )
    try:
        customer = {"email": "eva@example.nl", "name": "Eva", "address": {"country": "NL"}, "preferred_locale": "nl"}
        started = api.post("/v1/checkout", {"price_id": sepa_price["id"], "customer": customer}, expect=201)
        assert started["payment_method_types"] == ["card", "sepa_debit"]  # the SetupIntent's: no redirect method
        assert started["redirect_payment_method_types"] == ["ideal"]
        path = f"/v1/checkout/{started['subscription']['id']}/redirect_payment"
        wrong = api.request(
            "POST", path, json={"payment_method_type": "bancontact", "return_url": "https://shop.example/"}
        )
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "payment_method_type", wrong.text
        bad = api.request("POST", path, json={"payment_method_type": "ideal", "return_url": "javascript:alert(1)"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "return_url", bad.text
        belgian = {**customer, "email": "lotte@example.be", "address": {"country": "BE"}}
        other = api.post("/v1/checkout", {"price_id": sepa_price["id"], "customer": belgian}, expect=201)
        assert other["redirect_payment_method_types"] == []  # bancontact is not switched on
    finally:
        api.request("PUT", "/v1/settings", expect=200, json=settings)
