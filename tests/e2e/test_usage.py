"""Usage-based billing over HTTP on the local stack: a hybrid plan (a fixed €29 and €0.002 per API
call in graduated tiers), over a thousand events through the batch endpoint (the meter_ingest
function on moto), a duplicate batch that changes nothing, the renewal's usage line equal to the
hand-computed amount, and a late event on the next invoice. The customer is in Oregon (no sales
tax), so the invoice amounts are the prices'."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from kassa_local.client import Api, confirm_card_setup

pytestmark = pytest.mark.e2e

OREGON = {"country": "US", "state": "OR", "postal_code": "97201"}
# 0.2 cents (€0.002) a call for the first 1,000 calls, 0.15 cents beyond
TIERS = [{"up_to": 1000, "unit_amount_decimal": "0.2"}, {"up_to": "inf", "unit_amount_decimal": "0.15"}]
CALLS = 1333  # 1,000 × 0.2 + 333 × 0.15 = 200 + 49.95 = 249.95 cents → 250, rounded once


def _subscribe(api: Api, items: list[dict[str, Any]], email: str) -> dict[str, Any]:
    started = api.post("/v1/checkout", {"items": items, "customer": {"email": email, "address": OREGON}}, expect=201)
    confirm_card_setup(api.config, started["setup_intent_id"], started["client_secret"], "4242424242424242")
    api.post(f"/v1/checkout/{started['subscription']['id']}/complete", {"setup_intent_id": started["setup_intent_id"]})
    return started


def _events(customer: str, start: int, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"event_name": "api_request", "customer": customer, "identifier": f"req-{i}", "payload": {}, **extra}
        for i in range(start, start + n)
    ]


def _send(api: Api, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = []
    for k in range(0, len(events), 100):
        answers.append(api.post("/v1/meter_events/batch", {"events": events[k : k + 100]}))
    return answers


def test_a_hybrid_plan_is_billed_its_usage_in_arrears(api: Api) -> None:
    meter = api.post(
        "/v1/meters", {"event_name": "api_request", "display_name": "API requests", "aggregation": "count"}, expect=201
    )
    assert meter["object"] == "billing.meter" and meter["status"] == "active"
    assert api.request("POST", "/v1/meters", json={**meter | {"id": None}}).status_code == 400
    duplicate_name = api.request("POST", "/v1/meters", json={"event_name": "api_request", "display_name": "again",
                                                             "aggregation": "sum"})  # fmt: skip
    assert duplicate_name.status_code == 409 and duplicate_name.json()["error"]["param"] == "event_name"
    base_product = api.post("/v1/products", {"name": "Platform"}, expect=201)["id"]
    calls_product = api.post("/v1/products", {"name": "API calls"}, expect=201)["id"]
    base = api.post("/v1/prices", {"product": base_product, "currency": "EUR", "unit_amount": 2900,
                                   "recurring": {"interval": "month"}}, expect=201)  # fmt: skip
    metered = api.post(
        "/v1/prices",
        {"product": calls_product, "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "graduated",
         "tiers": TIERS, "recurring": {"interval": "month", "usage_type": "metered", "meter": meter["id"]}},
        expect=201,
    )  # fmt: skip
    assert metered["recurring"]["usage_type"] == "metered" and metered["tiers"][0]["unit_amount_decimal"] == "0.2"
    no_meter = api.request("POST", "/v1/prices", json={"product": calls_product, "currency": "EUR",
                           "unit_amount_decimal": "0.2", "recurring": {"interval": "month", "usage_type": "metered",
                                                                       "meter": "mtr_nope"}})  # fmt: skip
    assert no_meter.status_code == 404 and no_meter.json()["error"]["param"] == "recurring.meter"

    started = _subscribe(api, [{"price": base["id"]}, {"price": metered["id"]}], "usage@example.com")
    sub_id, customer = started["subscription"]["id"], started["customer"]["id"]
    assert started["invoice"]["total"] == 2900  # the first invoice: the fixed fee in advance, no usage yet

    answers = _send(api, _events(customer, 0, CALLS))
    assert sum(a["accepted"] for a in answers) == CALLS
    replay = _send(api, _events(customer, 0, 100))  # a duplicate batch changes nothing
    assert replay[0]["duplicates"] == 100 and replay[0]["accepted"] == 0

    usage = api.get(f"/v1/subscriptions/{sub_id}/usage")["data"][0]
    assert (usage["quantity"], usage["amount"], usage["currency"]) == (CALLS, 250, "EUR")
    preview = api.get(f"/v1/subscriptions/{sub_id}/upcoming_invoice")
    assert preview["total"] == 2900 + 250

    # bad input: a 400 naming the field, with the event's index in a batch
    one = api.request("POST", "/v1/meter_events", json={"event_name": "api_request", "customer": customer})
    assert one.status_code == 400 and one.json()["error"]["param"] == "identifier"
    mixed = api.post("/v1/meter_events/batch", {"events": [
        _events(customer, 90_000, 1)[0],
        {"event_name": "api_request", "customer": "cus_nobody", "identifier": "x"},
        {"event_name": "api_request", "customer": customer, "identifier": "y", "timestamp": "2020-01-01T00:00:00Z"},
    ]})  # fmt: skip
    assert mixed["accepted"] == 1
    assert [(r["index"], r["param"]) for r in mixed["rejected"]] == [
        (1, "events[1].customer"),
        (2, "events[2].timestamp"),
    ]
    none = api.request("POST", "/v1/meter_events/batch", json={"events": [{"event_name": "nope"}]})
    assert none.status_code == 400 and none.json()["error"]["rejected"][0]["index"] == 0
    single = api.request("POST", "/v1/meter_events", json=_events(customer, 90_001, 1)[0])
    assert single.status_code == 201 and single.json()["status"] == "accepted"
    again = api.request("POST", "/v1/meter_events", json=_events(customer, 90_001, 1)[0])
    assert again.status_code == 200 and again.json()["duplicate"] is True
    billed_calls = CALLS + 2  # 1,335 calls: 200 + 335 × 0.15 = 250.25 → 250

    sub = api.get(f"/v1/subscriptions/{sub_id}")
    period_end = datetime.fromisoformat(sub["current_period_end"].replace("Z", "+00:00"))
    api.advance(to=(period_end + timedelta(hours=1)).isoformat())

    renewal = api.get(f"/v1/invoices/{api.get(f'/v1/subscriptions/{sub_id}')['latest_invoice']}")
    usage_lines = [line for line in renewal["lines"] if line.get("usage")]
    assert len(usage_lines) == 1 and usage_lines[0]["quantity"] == billed_calls
    assert usage_lines[0]["amount"] == 250  # by hand: 1,000 × 0.2 + 335 × 0.15 = 250.25 → 250
    assert renewal["total"] == 2900 + 250 and renewal["status"] == "paid"

    # late events (their period already invoiced) land on the next invoice as an adjustment
    before_end = (period_end - timedelta(minutes=5)).isoformat()
    late = api.post("/v1/meter_events/batch", {"events": _events(customer, 95_000, 5, timestamp=before_end)})
    assert late["late"] == 5 and all(r["late"] for r in late["data"])
    _send(api, _events(customer, 100_000, 10))  # this period's own usage
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    next_end = datetime.fromisoformat(sub["current_period_end"].replace("Z", "+00:00"))
    api.advance(to=(next_end + timedelta(hours=1)).isoformat())
    following = api.get(f"/v1/invoices/{api.get(f'/v1/subscriptions/{sub_id}')['latest_invoice']}")
    lines = [
        (line["description"][:12], line["quantity"], line["amount"]) for line in following["lines"] if line.get("usage")
    ]
    # the late period: 1,340 calls, 200 + 340 × 0.15 = 251 against the 250 billed → 1; this period: 10 × 0.2 = 2
    assert lines == [("Late usage: ", 5, 1), ("10 × API cal", 10, 2)]
    assert following["total"] == 2900 + 1 + 2
