"""Invoice actions over HTTP on the local stack: a draft kept while collection was paused is
finalized and paid; an open invoice is written off, then voided; illegal transitions are a 409
naming both statuses, repeated actions answer the same invoice; a declined checkout that expires
leaves its invoice void and unnumbered, and a checkout's invoice is numbered when it is paid."""

from __future__ import annotations

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR"}
DECLINING_CARD = "4000000000000341"


def _invoices(api: Api, customer: str) -> list[dict]:
    found = api.get(f"/v1/customers/{customer}/invoices", params={"limit": 100})["data"]
    return sorted(found, key=lambda i: i["period_start"])


def _refused(api: Api, path: str, body: dict | None = None) -> dict:
    response = api.request("POST", path, json=body or {})
    assert response.status_code == 409, response.text
    return response.json()["error"]


def test_a_kept_draft_is_finalized_then_paid_and_a_paid_invoice_cannot_be_voided(api: Api):
    price = api.catalog(currency="USD", amount=1200)
    sub = api.subscribe(price["id"], "actions-draft@example.com", address=OREGON)["subscription"]
    api.post(f"/v1/subscriptions/{sub['id']}/pause_collection", {"behavior": "keep_as_draft"})
    api.advance("32d")
    draft = _invoices(api, sub["customer"])[-1]
    assert (draft["status"], draft["number"]) == ("draft", None)

    error = _refused(api, f"/v1/invoices/{draft['id']}/pay")
    assert error["code"] == "illegal_transition" and "draft" in error["message"] and "paid" in error["message"]

    final = api.post(f"/v1/invoices/{draft['id']}/finalize", {})
    assert final["status"] == "open" and final["number"] is not None and final["amount_paid"] == 0
    assert api.post(f"/v1/invoices/{draft['id']}/finalize", {}) == final  # idempotent
    assert api.wait_events("invoice.finalized", lambda e: e["detail"]["data"]["id"] == draft["id"])

    paid = api.post(f"/v1/invoices/{draft['id']}/pay", {})  # charged with the default card (4242)
    assert (paid["status"], paid["amount_paid"], paid["paid_out_of_band"]) == ("paid", 1200, False)
    assert api.post(f"/v1/invoices/{draft['id']}/pay", {}) == paid
    assert api.wait_events("invoice.paid", lambda e: e["detail"]["data"]["id"] == draft["id"])

    error = _refused(api, f"/v1/invoices/{draft['id']}/void")
    assert error["code"] == "illegal_transition" and error["param"] == "status"
    assert "paid" in error["message"] and "void" in error["message"]


def test_a_declined_checkout_is_written_off_voided_and_burns_no_number(api: Api):
    price = api.catalog(currency="USD", amount=900)
    declined = api.subscribe(price["id"], "actions-declined@example.com", card=DECLINING_CARD, address=OREGON)
    invoice = declined["invoice"]
    assert declined["subscription"]["status"] == "incomplete"
    assert (invoice["status"], invoice["number"]) == ("open", None)  # numbered only once paid

    written_off = api.post(f"/v1/invoices/{invoice['id']}/mark_uncollectible", {})
    assert written_off["status"] == "uncollectible" and written_off["next_dunning_at"] is None
    assert api.post(f"/v1/invoices/{invoice['id']}/mark_uncollectible", {}) == written_off
    voided = api.post(f"/v1/invoices/{invoice['id']}/void", {})
    assert (voided["status"], voided["number"]) == ("void", None)
    error = _refused(api, f"/v1/invoices/{invoice['id']}/mark_uncollectible")
    assert "void" in error["message"] and "uncollectible" in error["message"]
    assert api.wait_events("invoice.voided", lambda e: e["detail"]["data"]["id"] == invoice["id"])
    missing = api.request("POST", "/v1/invoices/in_missing/void", json={})
    assert missing.status_code == 404


def test_an_expired_checkout_leaves_no_number_and_the_next_paid_one_takes_the_next(api: Api):
    price = api.catalog(currency="USD", amount=800)
    before = api.subscribe(price["id"], "actions-before@example.com", address=OREGON)
    last_number = api.get(f"/v1/invoices/{before['invoice']['id']}")["number"]
    expiring = api.subscribe(price["id"], "actions-expires@example.com", card=DECLINING_CARD, address=OREGON)
    api.advance("24h")
    assert api.get(f"/v1/subscriptions/{expiring['subscription']['id']}")["status"] == "incomplete_expired"
    expired = api.get(f"/v1/invoices/{expiring['invoice']['id']}")
    assert (expired["status"], expired["number"]) == ("void", None)

    after = api.subscribe(price["id"], "actions-after@example.com", address=OREGON)
    paid = api.get(f"/v1/invoices/{after['invoice']['id']}")
    prefix, seq = last_number.rsplit("-", 1)
    assert paid["status"] == "paid" and paid["number"] == f"{prefix}-{int(seq) + 1:04d}"


def test_paid_out_of_band_reactivates_without_charging(api: Api):
    price = api.catalog(currency="USD", amount=700)
    declined = api.subscribe(price["id"], "actions-oob@example.com", card=DECLINING_CARD, address=OREGON)
    invoice = declined["invoice"]
    paid = api.post(f"/v1/invoices/{invoice['id']}/pay", {"paid_out_of_band": True})
    assert (paid["status"], paid["paid_out_of_band"], paid["attempt_count"]) == ("paid", True, 1)
    assert paid["number"] is not None  # numbered as it is paid
    assert api.get(f"/v1/subscriptions/{declined['subscription']['id']}")["status"] == "active"
    bad = api.request("POST", f"/v1/invoices/{invoice['id']}/pay", json={"paid_out_of_band": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "paid_out_of_band"
