"""Trials ending without a card: create_invoice (Stripe's default), cancel, or pause — and resuming
a paused subscription once a card is on file."""

from __future__ import annotations

import pytest

from kassa_local.client import Api, confirm_card_setup

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}


def _start_trial(api: Api, price_id: str, email: str, behavior: str) -> dict:
    return api.post(
        "/v1/checkout",
        {
            "price_id": price_id,
            "trial_days": 7,
            "trial_end_behavior": behavior,
            "customer": {"email": email, "address": OREGON},
        },
        expect=201,
    )


def test_a_trial_without_a_card_set_to_cancel_ends_canceled(api: Api):
    price = api.catalog(currency="USD", amount=900)
    started = _start_trial(api, price["id"], "trial-cancel@example.com", "cancel")
    api.advance("8d")
    sub = api.get(f"/v1/subscriptions/{started['subscription']['id']}")
    assert sub["status"] == "canceled"
    assert api.get(f"/v1/customers/{sub['customer']}/invoices")["data"] == []  # nothing was invoiced


def test_a_trial_without_a_card_set_to_pause_pauses_then_resumes_with_a_card(api: Api, stack_config):
    price = api.catalog(currency="USD", amount=900)
    started = _start_trial(api, price["id"], "trial-pause@example.com", "pause")
    sub_id = started["subscription"]["id"]
    api.advance("8d")
    paused = api.get(f"/v1/subscriptions/{sub_id}")
    assert paused["status"] == "paused"
    assert api.get(f"/v1/customers/{paused['customer']}/entitlements")["data"] == []  # no access while paused

    # the customer adds a card (the checkout's SetupIntent), then the subscription is resumed
    confirm_card_setup(stack_config, started["setup_intent_id"], started["client_secret"], "4242424242424242")
    api.post(f"/v1/checkout/{sub_id}/complete", {"setup_intent_id": started["setup_intent_id"]})
    resumed = api.post(f"/v1/subscriptions/{sub_id}/resume", {})
    assert resumed["subscription"]["status"] == "active"
    assert (resumed["invoice"]["status"], resumed["invoice"]["amount_paid"]) == ("paid", 900)
    assert resumed["subscription"]["current_period_start"] == resumed["invoice"]["period_start"]
    assert api.get(f"/v1/customers/{paused['customer']}/entitlements")["data"]
    not_paused = api.request("POST", f"/v1/subscriptions/{sub_id}/resume", json={})
    assert not_paused.status_code == 409


def test_trial_will_end_is_published_three_days_before_the_end(api: Api):
    price = api.catalog(currency="USD", amount=900)
    started = _start_trial(api, price["id"], "trial-notice@example.com", "create_invoice")
    sub_id = started["subscription"]["id"]
    api.advance("3d")
    early = [e for e in api.events("customer.subscription.trial_will_end") if e["detail"]["data"]["id"] == sub_id]
    assert early == []  # day 3 of 7: not yet
    api.advance("1d")  # day 4 of 7: three days before the end
    notices = api.wait_events("customer.subscription.trial_will_end", lambda e: e["detail"]["data"]["id"] == sub_id)
    assert len(notices) == 1
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "trialing"


def test_a_trial_without_a_card_by_default_invoices_and_goes_past_due(api: Api):
    price = api.catalog(currency="USD", amount=900)
    started = _start_trial(api, price["id"], "trial-invoice@example.com", "create_invoice")
    api.advance("8d")
    sub = api.get(f"/v1/subscriptions/{started['subscription']['id']}")
    assert sub["status"] == "past_due"
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "open" and invoice["last_payment_error"]["code"] == "no_payment_method"
