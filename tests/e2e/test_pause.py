"""Pausing collection (Stripe's pause_collection) and resuming: access continues, the invoices of
the paused periods are kept as drafts, written off or voided, and billing resumes normally."""

from __future__ import annotations

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}


def _invoices(api: Api, customer: str) -> list[dict]:
    found = api.get(f"/v1/customers/{customer}/invoices", params={"limit": 100})["data"]
    return sorted(found, key=lambda i: i["period_start"])


@pytest.mark.parametrize(
    ("behavior", "paused_status", "numbered"),
    [("keep_as_draft", "draft", False), ("void", "void", False), ("mark_uncollectible", "uncollectible", True)],
)
def test_pause_then_resume_bills_correctly(api: Api, behavior: str, paused_status: str, numbered: bool):
    price = api.catalog(currency="USD", amount=1200)
    sub = api.subscribe(price["id"], f"pause-{behavior}@example.com", address=OREGON)["subscription"]
    paused = api.post(f"/v1/subscriptions/{sub['id']}/pause_collection", {"behavior": behavior})
    assert paused["status"] == "active" and paused["pause_collection"]["behavior"] == behavior
    assert api.get(f"/v1/customers/{sub['customer']}/entitlements")["data"]  # access continues

    api.advance("32d")  # one renewal while paused
    first, during = _invoices(api, sub["customer"])
    assert first["status"] == "paid"
    assert during["status"] == paused_status and during["amount_paid"] == 0
    assert (during["number"] is not None) is numbered  # no number is spent on a draft or a draft voided

    resumed = api.post(f"/v1/subscriptions/{sub['id']}/resume_collection", {})
    assert resumed["pause_collection"] is None
    api.advance("31d")
    after = _invoices(api, sub["customer"])[-1]
    assert (after["status"], after["amount_paid"], after["billing_reason"]) == ("paid", 1200, "subscription_cycle")
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_a_pause_with_a_resume_date_ends_by_itself(api: Api, stack):
    price = api.catalog(currency="USD", amount=700)
    sub = api.subscribe(price["id"], "pause-until@example.com", address=OREGON)["subscription"]
    resumes_at = stack.clock.now().replace(microsecond=0).isoformat()
    api.post(f"/v1/subscriptions/{sub['id']}/pause_collection", {"behavior": "void", "resumes_at": resumes_at})
    api.advance("32d")  # the renewal comes after resumes_at: collected as usual
    assert _invoices(api, sub["customer"])[-1]["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub['id']}")["pause_collection"] is None
    bad = api.request("POST", f"/v1/subscriptions/{sub['id']}/pause_collection", json={"behavior": "sleep"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "behavior"
