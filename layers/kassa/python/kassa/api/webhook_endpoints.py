"""Outbound webhook endpoints, as Stripe's ``/v1/webhook_endpoints``: create (answers the signing
``secret``), list, get, update (``disabled``), delete, roll the secret (the old one signs 24 h more),
the delivery log and manual redelivery. A Router included in the api function's resolver
(``kassa.api.app``); the use cases are ``kassa.services.outbound_webhooks``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kassa.adapters import container
from kassa.domain.errors import InvalidInput
from kassa.domain.webhooks import MAX_URL, delivery_log_entry

router = APIGatewayRouter()
TAG = "webhooks"
MAX_LIMIT = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointIn(_Strict):
    url: str = Field(min_length=1, max_length=MAX_URL, description="https (in AWS), to a public address")
    enabled_events: list[str] = Field(
        min_length=1, max_length=100, description='event types, "*" or a wildcard like "customer.subscription.*"'
    )
    description: str | None = Field(default=None, max_length=500)


class WebhookEndpointUpdateIn(_Strict):
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL)
    enabled_events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    disabled: bool | None = Field(default=None, description="true: send nothing; false: enable again")


class RedeliverIn(_Strict):
    event: str | None = Field(default=None, min_length=1, max_length=100, description="one event id (evt_…)")
    since: AwareDatetime | None = Field(default=None, description="or every event created from this time")
    until: AwareDatetime | None = Field(default=None, description="… to this time (default: now)")


def _service() -> Any:
    return container.webhooks(with_delivery=False)


def _time_param(name: str) -> datetime | None:
    raw = router.current_event.get_query_string_value(name)
    if raw is None or raw == "":
        return None
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw), UTC)
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"{name} must be ISO 8601 or unix seconds", param=name) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _limit() -> int:
    raw = router.current_event.get_query_string_value("limit", "10") or "10"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
    return int(raw)


@router.post("/v1/webhook_endpoints", tags=[TAG], status_code=201)
def create_webhook_endpoint(body: WebhookEndpointIn) -> Response[dict[str, Any]]:
    """Create an endpoint; the answer's ``secret`` signs its deliveries (shown only here and on a roll)."""
    endpoint = _service().create(body.url, body.enabled_events, body.description)
    return Response(status_code=201, content_type="application/json", body=endpoint.public(with_secret=True))


@router.get("/v1/webhook_endpoints", tags=[TAG])
def list_webhook_endpoints() -> dict[str, Any]:
    endpoints = _service().endpoints()
    return {"object": "list", "data": [e.public() for e in endpoints], "has_more": False}


@router.get("/v1/webhook_endpoints/<endpoint_id>", tags=[TAG])
def get_webhook_endpoint(endpoint_id: str) -> dict[str, Any]:
    return dict(_service().get(endpoint_id).public())


@router.post("/v1/webhook_endpoints/<endpoint_id>", tags=[TAG])
def update_webhook_endpoint(endpoint_id: str, body: WebhookEndpointUpdateIn) -> dict[str, Any]:
    """Change the url, events or description, or disable / enable it again."""
    endpoint = _service().update(
        endpoint_id,
        url=body.url,
        enabled_events=body.enabled_events,
        description=body.description,
        disabled=body.disabled,
    )
    return dict(endpoint.public())


@router.delete("/v1/webhook_endpoints/<endpoint_id>", tags=[TAG])
def delete_webhook_endpoint(endpoint_id: str) -> dict[str, Any]:
    _service().delete(endpoint_id)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


@router.post("/v1/webhook_endpoints/<endpoint_id>/roll_secret", tags=[TAG])
def roll_webhook_endpoint_secret(endpoint_id: str) -> dict[str, Any]:
    """A new signing secret; deliveries carry a v1 of the previous one too for 24 hours."""
    endpoint = _service().roll(endpoint_id)
    body = endpoint.public(with_secret=True)
    body["previous_secret_expires_at"] = (
        endpoint.secrets[1].expires_at.isoformat() if len(endpoint.secrets) > 1 and endpoint.secrets[1].expires_at
        else None
    )  # fmt: skip
    return dict(body)


@router.get("/v1/webhook_endpoints/<endpoint_id>/deliveries", tags=[TAG])
def list_webhook_deliveries(endpoint_id: str) -> dict[str, Any]:
    """The delivery log, newest event first: status, attempts, response code, latency (30 days kept).

    ``limit`` (1–100), ``since`` / ``until`` (ISO 8601 or unix seconds) select by event time."""
    since, until = _time_param("since"), _time_param("until")
    limit = _limit()
    found = _service().deliveries(endpoint_id, limit + 1, since, until)
    return {"object": "list", "data": [delivery_log_entry(d) for d in found[:limit]], "has_more": len(found) > limit}


@router.post("/v1/webhook_endpoints/<endpoint_id>/redeliver", tags=[TAG])
def redeliver_webhooks(endpoint_id: str, body: RedeliverIn) -> dict[str, Any]:
    """Send one event (``event``) or every event of a time range (``since``, ``until``) again now."""
    if body.event is not None and (body.since is not None or body.until is not None):
        raise InvalidInput("give either event or a time range (since, until), not both", param="event")
    if body.event is None and body.since is None:
        if body.until is not None:
            raise InvalidInput("until needs since: a redelivery range starts at since", param="since")
        raise InvalidInput("give either event or since (with until)", param="event")
    # the range (either bound alone too) is checked by the service against its clock (redeliver_window)
    queued = _service().redeliver(endpoint_id, body.event, body.since, body.until)
    return {"object": "list", "data": [delivery_log_entry(d) for d in queued], "has_more": False}
