"""The usage ingestion API: ``POST /v1/meter_events`` (one event) and ``POST /v1/meter_events/batch``
(``{"events": [...]}``, up to 100, as Lago's batch endpoint), served by the ``meter_ingest`` function
with its own least-privilege keys (meters, customers, subscriptions, usage aggregates, dedupe
records). Each event is counted once by its customer and ``identifier``; the answer says whether it
was a duplicate, or late (its period was already invoiced: the next invoice adjusts it). A refused
event is a 400 naming the field (``events[3].payload.value``); in a batch the valid events are
recorded and each refused one is listed with its index."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from kassa.adapters import container
from kassa.api.common import new_app
from kassa.services import usage

app = new_app()

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_name", "customer", "identifier"],
    "properties": {
        "event_name": {"type": "string", "description": "the meter's event_name"},
        "customer": {"type": "string", "description": "cus_…"},
        "identifier": {
            "type": "string",
            "maxLength": 100,
            "description": "unique per customer: the same identifier sent again is counted once",
        },
        "timestamp": {
            "anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
            "description": "unix seconds or ISO 8601; default now; at most 35 days old, 5 minutes ahead",
        },
        "payload": {"type": "object", "description": "value (a whole number) or the meter's value_property"},
    },
}


class MeterEventIn(BaseModel):
    """One meter event, checked by ``kassa.domain.usage.parse_event`` (errors name the field)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_EVENT_SCHEMA)


class MeterEventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(description="1 to 100 meter events", json_schema_extra={"items": _EVENT_SCHEMA})


def _queue() -> Any:
    """The renewals queue, where subscriptions past their usage threshold are sent to be invoiced."""
    return container.queue("renewal_queue_url") if container.env().renewal_queue_url else None


def _result(result: dict[str, Any]) -> dict[str, Any]:
    return {"object": "billing.meter_event", **result}


@app.post("/v1/meter_events", tags=["usage"], status_code=201)
def create_meter_event(body: MeterEventIn) -> Response[dict[str, Any]]:
    """Record one meter event (counted once per customer and identifier)."""
    out = usage.ingest(container.billing(with_gateway=False), body.model_dump(), batch=False, queue=_queue())
    answer = _result(out.results[0])
    return Response(status_code=201 if answer["status"] != "duplicate" else 200, content_type="application/json",
                    body=answer)  # fmt: skip


@app.post("/v1/meter_events/batch", tags=["usage"])
def create_meter_event_batch(body: MeterEventBatchIn) -> Response[dict[str, Any]]:
    """Record up to 100 meter events: the valid ones are recorded, each refused one is listed by index."""
    out = usage.ingest(container.billing(with_gateway=False), body.events, batch=True, queue=_queue())
    results = [_result(r) for r in out.results]
    summary = {
        "object": "billing.meter_event_batch",
        "received": len(body.events),
        "accepted": sum(r["status"] == "accepted" for r in results),
        "duplicates": sum(r["status"] == "duplicate" for r in results),
        "late": sum(r["status"] == "late" for r in results),
        "data": results,
        "rejected": [r.model_dump() for r in out.rejected],
    }
    if not results:  # nothing could be recorded: the first refusal names its field, the list has them all
        first = out.rejected[0]
        error = {"type": "invalid_request_error", "code": first.code, "message": first.message,
                 "param": first.param, "rejected": summary["rejected"]}  # fmt: skip
        return Response(status_code=400, content_type="application/json", body={"error": error})
    return Response(status_code=200, content_type="application/json", body=summary)
