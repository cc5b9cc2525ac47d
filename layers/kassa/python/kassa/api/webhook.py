"""The Stripe webhook route's HTTP side: the API Gateway proxy event in, a proxy response out
(kept apart from the REST resolver: the ingest function imports only this and the service)."""

from __future__ import annotations

import base64
import json
from typing import Any

from kassa.services.webhooks import IngestOutcome


def delivery(event: dict[str, Any]) -> tuple[str, str | None]:
    """The raw body (decoded when base64) and the ``Stripe-Signature`` header of a proxy event."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        # a body that is not UTF-8 keeps its bytes as surrogate escapes: ingest refuses and records it
        body = base64.b64decode(body).decode("utf-8", "surrogateescape")
    signature = next((str(v) for k, v in (event.get("headers") or {}).items() if k.lower() == "stripe-signature"), None)
    return body, signature


def response(outcome: IngestOutcome) -> dict[str, Any]:
    """200 once the event is recorded (Stripe stops redelivering); 400 or 413 naming why it was
    refused; 503 when it could not be kept for now (Stripe delivers it again)."""
    if outcome.error is not None:
        error = {
            "type": "api_error" if outcome.http_status >= 500 else "invalid_request_error",
            "code": outcome.error_code or outcome.error.code,
            "message": outcome.error.message,
            "param": outcome.error.param,
        }
        return _proxy(outcome.http_status, {"error": error})
    return _proxy(200, {"received": True, "duplicate": outcome.duplicate})


def _proxy(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
