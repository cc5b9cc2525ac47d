"""The usage API's edges on the local stack: meters, the meter_ingest function's validation (a 400
naming the field and the event's index), the OpenAPI document listing the usage routes."""

from __future__ import annotations

from typing import Any

from kassa_local.client import Api


def _meter(api: Api, uid: str, aggregation: str = "sum") -> dict[str, Any]:
    body = {"event_name": f"tokens_{uid}", "display_name": "Tokens", "aggregation": aggregation}
    return api.post("/v1/meters", body, expect=201)


def test_meters_are_created_listed_and_archived(api: Api, uid: str) -> None:
    meter = _meter(api, uid)
    assert meter["id"].startswith("mtr_") and meter["value_property"] == "value"
    assert meter["id"] in [m["id"] for m in api.get("/v1/meters?limit=100")["data"]]
    bad = api.request("POST", "/v1/meters", json={"event_name": "x", "display_name": "X", "aggregation": "avg"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "aggregation"
    archived = api.post(f"/v1/meters/{meter['id']}/deactivate", {})
    assert archived["status"] == "inactive"
    refused = api.request(
        "POST", "/v1/meter_events", json={"event_name": meter["event_name"], "customer": "cus_x", "identifier": "a"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "event_name"


def test_a_batch_with_nothing_valid_is_a_400_listing_every_refusal(api: Api, uid: str) -> None:
    _meter(api, uid)
    response = api.request("POST", "/v1/meter_events/batch", json={"events": [{"event_name": "nope"}, 5]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "events[0].customer"
    assert [(r["index"], r["param"]) for r in error["rejected"]] == [(0, "events[0].customer"), (1, "events[1]")]


def test_batch_shape_errors_name_events(api: Api) -> None:
    too_many = [{"event_name": "e", "customer": "c", "identifier": str(i)} for i in range(101)]
    for body, param in (({"events": too_many}, "events"), ({"events": []}, "events"), ({}, "events")):
        response = api.request("POST", "/v1/meter_events/batch", json=body)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
    assert api.request("POST", "/v1/meter_events", data=b"{nope").json()["error"]["param"] == "body"


def test_the_usage_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.get("/openapi.json")["paths"]
    for path in (
        "/v1/meters",
        "/v1/meter_events",
        "/v1/meter_events/batch",
        "/v1/subscriptions/{subscription_id}/usage",
    ):
        assert path in paths


def test_an_unknown_customer_or_meter_is_a_400_naming_the_field(api: Api, uid: str) -> None:
    meter = _meter(api, uid)
    event = {"event_name": meter["event_name"], "customer": "cus_nobody", "identifier": "a", "payload": {"value": 1}}
    for body, param in ((event, "customer"), ({**event, "event_name": "nothing_like_it"}, "event_name")):
        response = api.request("POST", "/v1/meter_events", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param and response.json()["error"]["code"] == "resource_missing"
