"""Dunning on the local stack: a declined renewal retried at the configured offsets as the virtual
clock advances, recovered through the emailed card-update link; and a customer who never pays
going warning → suspended → canceled — each email once, in the customer's language, even when
every schedule tick is delivered twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kassa_local.client import Api, confirm_card_setup

pytestmark = pytest.mark.e2e

DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined (card_declined)
OFFSETS = [1, 3, 5, 7]  # Kill Bill style: retry 1, 3, 5 and 7 days after the first failure


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def dunning_world(stack, stack_config):
    api = Api(stack_config)
    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings["retry_schedule"] = {"offset_days": OFFSETS}
    api.request("PUT", "/v1/settings", 200, json=settings)
    price = api.catalog(currency="EUR", amount=1900, trial_days=7)
    recovers = api.subscribe(
        price["id"], "sanne@example.nl", card=DECLINING_CARD, address={"country": "NL"}, locale="nl"
    )
    return api, recovers, price


def _invoice(api: Api, sub_id: str) -> dict:
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    return api.get(f"/v1/invoices/{sub['latest_invoice']}")


def _emails(stack, customer: str) -> list[dict]:
    return sorted(stack.outbox(customer), key=lambda e: (e["created"], e["key"]))


def test_a_declined_renewal_is_retried_at_the_offsets_and_recovered_through_the_emailed_link(
    stack, stack_config, dunning_world
):
    api, recovers, _ = dunning_world
    sub_id = recovers["subscription"]["id"]
    customer = recovers["subscription"]["customer"]
    trial_end = _iso(recovers["subscription"]["trial_end"])

    api.advance(to=(trial_end + timedelta(minutes=1)).isoformat(), deliveries=2)
    invoice = _invoice(api, sub_id)
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "past_due"
    first_failure = _iso(invoice["first_failed_at"])
    assert first_failure == trial_end

    # each retry fires at its offset, not before
    for attempt, day in enumerate(OFFSETS[:2], start=2):
        api.advance(to=(first_failure + timedelta(days=day) - timedelta(minutes=1)).isoformat(), deliveries=2)
        assert _invoice(api, sub_id)["attempt_count"] == attempt - 1
        api.advance(to=(first_failure + timedelta(days=day) + timedelta(minutes=1)).isoformat(), deliveries=2)
        assert _invoice(api, sub_id)["attempt_count"] == attempt
    retry_intents = [
        pi
        for pi in requests.get(
            f"{stack_config['stripe_url']}/v1/payment_intents",
            params={"limit": 100},
            auth=(stack_config["stripe_secret_key"], ""),
            timeout=30,
        ).json()["data"]
        if (pi.get("metadata") or {}).get("kassa_invoice") == invoice["id"]
    ]
    assert sorted(pi["metadata"]["kassa_attempt"] for pi in retry_intents) == ["1", "2", "3"]  # one per attempt

    # the payment_failed email (Dutch) carries the signed card-update link
    emails = _emails(stack, customer)
    # day 3 is also the overdue ladder's warning
    assert [e["template"] for e in emails] == ["trial_ending", "payment_failed", "payment_reminder"]
    failed = emails[1]
    assert failed["locale"] == "nl" and failed["status"] == "sent"
    link = next(word for word in failed["text"].split() if "/portal/card?token=" in word)
    assert link.startswith(stack_config["api_url"])
    token = parse_qs(urlsplit(link).query)["token"][0]

    # the customer opens the link, Stripe.js (localstripe's shim) confirms 4242…, the page confirms
    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and "Uw kaart bijwerken" in page.text  # the Dutch customer's language
    session = requests.post(f"{stack_config['api_url']}/portal/card/session", json={"token": token}, timeout=30)
    assert session.status_code == 200, session.text
    body = session.json()
    assert [i["number"] for i in body["open_invoices"]] == [invoice["number"]]
    confirm_card_setup(stack_config, body["setup_intent_id"], body["client_secret"], "4242424242424242")
    done = requests.post(
        f"{stack_config['api_url']}/portal/card/confirm",
        json={"token": token, "setup_intent_id": body["setup_intent_id"]},
        timeout=30,
    )
    assert done.status_code == 200, done.text
    assert done.json()["card"]["last4"] == "4242"
    assert done.json()["invoices"] == [{"id": invoice["id"], "number": invoice["number"], "status": "paid"}]

    stack.drain()
    paid = _invoice(api, sub_id)
    assert paid["status"] == "paid" and paid.get("next_dunning_at") is None
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    attempts = paid["attempt_count"]
    api.advance("10d", deliveries=2)  # past the remaining offsets: nothing is retried
    assert _invoice(api, sub_id)["attempt_count"] == attempts
    assert [e["template"] for e in _emails(stack, customer)] == [
        "trial_ending",
        "payment_failed",
        "payment_reminder",
        "receipt",
    ]
    assert api.get(f"/v1/subscriptions/{sub_id}")["overdue_state"] is None

    figures = api.get("/v1/dunning/figures", params={"from": "2026-01-01", "to": "2026-12-31"})
    assert figures["recovered"] >= 1
    assert figures["amount_recovered"]["EUR"] >= paid["amount_paid"]
    assert "card_declined" in figures["by_decline_code"]


def test_a_customer_who_never_pays_is_warned_suspended_and_canceled_once_each(stack, stack_config, dunning_world):
    api, _, price = dunning_world
    never_pays = api.subscribe(
        price["id"], "camille@example.fr", card=DECLINING_CARD, address={"country": "FR"}, locale="fr"
    )
    sub_id = never_pays["subscription"]["id"]
    customer = never_pays["subscription"]["customer"]
    api.advance(to=(_iso(never_pays["subscription"]["trial_end"]) + timedelta(hours=1)).isoformat(), deliveries=2)
    invoice = _invoice(api, sub_id)
    first_failure = _iso(invoice["first_failed_at"])

    api.advance(to=(first_failure + timedelta(days=3, hours=1)).isoformat(), deliveries=2)
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert (sub["status"], sub["overdue_state"]) == ("past_due", "warning")
    assert api.get(f"/v1/customers/{customer}/entitlements")["data"]  # warned, not yet cut off

    api.advance(to=(first_failure + timedelta(days=10, hours=1)).isoformat(), deliveries=2)
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert (sub["overdue_state"], sub["entitlements_suspended"]) == ("suspended", True)
    assert api.get(f"/v1/customers/{customer}/entitlements")["data"] == []
    blocked = api.request("POST", f"/v1/subscriptions/{sub_id}/change", json={"quantity": 2})
    assert blocked.status_code == 409 and "overdue" in blocked.json()["error"]["message"]
    suspended_events = [
        e for e in api.events("entitlements.active_entitlement_summary.updated") if e["detail"]["data"]["id"] == sub_id
    ]
    assert len(suspended_events) == 1  # the storefront is told once

    api.advance(to=(first_failure + timedelta(days=21, hours=1)).isoformat(), deliveries=2)
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert (sub["status"], sub["overdue_state"]) == ("canceled", "canceled")
    assert sub["cancellation_details"]["reason"] == "payment_failed"
    assert _invoice(api, sub_id)["status"] == "uncollectible"
    assert _invoice(api, sub_id)["attempt_count"] == 1 + len(OFFSETS)

    emails = _emails(stack, customer)
    assert [e["template"] for e in emails] == [
        "trial_ending",
        "payment_failed",
        "payment_reminder",
        "account_suspended",
        "subscription_canceled",
    ]
    assert {e["locale"] for e in emails} == {"fr"} and {e["status"] for e in emails} == {"sent"}
    assert {e["to"] for e in emails} == {"camille@example.fr"}
    # SES (moto) received exactly these, once each
    sent = [m for m in stack.ses_sent_messages() if "camille@example.fr" in str(m.get("destination", m))]
    assert len(sent) == len(emails)
    listed = api.get(f"/v1/customers/{customer}/emails", params={"limit": 20})["data"]
    assert sorted(e["key"] for e in listed) == sorted(e["key"] for e in emails)


def test_a_tampered_or_expired_link_is_refused(stack, stack_config, dunning_world):
    api, recovers, _ = dunning_world
    customer = recovers["subscription"]["customer"]
    link = api.post(f"/v1/customers/{customer}/card_update_link", {}, expect=201)
    token = parse_qs(urlsplit(link["url"]).query)["token"][0]
    base = stack_config["api_url"]
    assert requests.get(link["url"], timeout=30).status_code == 200
    tampered = token[:-3] + ("x" if token[-3] != "x" else "y") + token[-2:]
    refused = requests.post(f"{base}/portal/card/session", json={"token": tampered}, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "link_invalid"
    assert requests.get(f"{base}/portal/card", params={"token": tampered}, timeout=30).status_code == 403
    api.advance("8d")
    expired = requests.post(f"{base}/portal/card/session", json={"token": token}, timeout=30)
    assert expired.status_code == 403 and expired.json()["error"]["code"] == "link_expired"
