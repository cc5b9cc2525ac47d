"""``Idempotency-Key`` on every POST of the merchant API, with Stripe's rules.

A resolver middleware (after auth, around the route and its error handlers) runs the request once
per key through Powertools' idempotency utility (``idempotent_function`` over
``kassa.adapters.idempotency``, records on the billing table):

- the key is scoped to the API key presented: ``(sha256 of the bearer token, Idempotency-Key)``;
- the same key with the same route and body (parsed JSON: spacing and key order do not count)
  replays the first response — status, body, headers — with ``Idempotent-Replayed: true``, for 24 h;
- the same key with another body or route is ``400 idempotency_error`` / ``idempotency_key_in_use``
  naming ``Idempotency-Key``;
- while the first request runs, another with the key is ``409 idempotency_error`` /
  ``idempotency_key_in_progress`` (Stripe answers 409 too): the client retries later;
- only 2xx and 4xx answers that a retry would give again are stored: a 5xx (and a 401, 403, 408,
  409, 423, 425 or 429) deletes the record, so a retry executes again, as on Stripe; a request
  that fails validation never reaches this middleware (Powertools validates first) and stores nothing;
- a key longer than 255 characters (or empty) is ``400`` naming ``Idempotency-Key``;
- without the header, the request runs as before, and nothing is imported or written.

Why a middleware and not ``@idempotent`` on the handler: the handler serves every route (and
``/portal``, ``/docs``), and a route returns a model or raises a domain error that the resolver
turns into the response afterwards; the middleware sees the final status, which decides what is
stored, and only the POSTs of ``/v1``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from kassa.api.common import error_response
from kassa.domain.errors import IdempotencyKeyReused

logger = logging.getLogger("kassa.api.idempotency")

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
TTL_S = 24 * 3600  # Stripe keeps a key's result 24 hours
KEY_PREFIX = "api"  # the records' pk: IDEMP#api#<sha256>
# 4xx answers that may change on a retry (auth, timeouts, conflicts, locks, rate limits): not stored
NOT_STORED = frozenset({401, 403, 408, 409, 423, 425, 429})
REUSED_MESSAGE = (
    "Keys for idempotent requests can only be used with the same parameters they were first used with "
    "(the same route and body). Try using a key other than {key!r} if you meant to execute a different request."
)


class _NotStored(Exception):
    """The answer is not to be kept: Powertools deletes the in-progress record and it is returned as is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def storable(status: int) -> bool:
    return 200 <= status < 300 or (400 <= status < 500 and status not in NOT_STORED)


def idempotency_middleware(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    event = app.current_event
    if event.http_method.upper() != "POST" or not event.path.startswith("/v1/"):
        return next_middleware(app)
    key = event.headers.get(HEADER)
    if key is None:
        return next_middleware(app)
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        return error_response(
            400,
            "invalid_request_error",
            "parameter_invalid",
            f"{HEADER} must have 1 to {MAX_KEY_LENGTH} characters (got {len(key)})",
            HEADER,
        )
    return _once(app, next_middleware, key)


def _once(app: APIGatewayRestResolver, next_middleware: NextMiddleware, key: str) -> Response:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    from kassa.adapters import idempotency as records

    event = app.current_event
    token = event.headers.get("Authorization") or ""
    request = {
        "account": hashlib.sha256(token.encode()).hexdigest(),
        "key": key,
        "route": f"POST {event.path}",
        "body": _canonical_body(event.body, bool(event.is_base64_encoded)),
    }
    config = IdempotencyConfig(
        event_key_jmespath="[account, key]",
        payload_validation_jmespath="[route, body]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=TTL_S,
        hash_function="sha256",
        response_hook=lambda stored, _record: {**stored, "replayed": True},
    )
    if getattr(app, "lambda_context", None) is not None:
        config.register_lambda_context(app.lambda_context)  # in-progress records expire with the invocation
    executed: list[Response] = []

    def execute(request: dict[str, Any]) -> dict[str, Any]:
        response = _run(app, next_middleware, key)
        executed.append(response)
        if not storable(response.status_code) or not isinstance(response.body, str):
            raise _NotStored(response)
        return {
            "status": response.status_code,
            "content_type": response.headers.get("Content-Type") or "application/json",
            "headers": {k: v for k, v in response.headers.items() if k.lower() != "content-type"},
            "body": response.body,
        }

    once = idempotent_function(
        data_keyword_argument="request",
        persistence_store=records.persistence(),
        config=config,
        key_prefix=KEY_PREFIX,
    )(execute)
    try:
        stored = once(request=request)
    except _NotStored as not_stored:
        return not_stored.response
    except IdempotencyValidationError:
        return error_response(
            400, "idempotency_error", "idempotency_key_in_use", REUSED_MESSAGE.format(key=key), HEADER
        )
    except IdempotencyAlreadyInProgressError:
        response = error_response(
            409,
            "idempotency_error",
            "idempotency_key_in_progress",
            f"another request with {HEADER} {key!r} is in progress; retry it once that one has finished",
            HEADER,
        )
        response.headers["Retry-After"] = "1"
        return response
    except IdempotencyPersistenceLayerError:
        if executed:  # the request ran; only recording its answer failed: answer it (a retry may run again)
            logger.exception("idempotency record of %s not saved", event.path)
            return executed[0]
        logger.exception("idempotency record of %s not readable", event.path)
        return error_response(
            503, "api_error", "service_unavailable", "the request could not be recorded; retry it", HEADER
        )
    headers = dict(stored.get("headers") or {})
    headers[HEADER] = key
    if stored.get("replayed"):
        headers["Idempotent-Replayed"] = "true"
    return Response(
        status_code=int(stored["status"]),
        content_type=str(stored["content_type"]),
        body=stored["body"],
        headers=headers,
    )


def _run(app: APIGatewayRestResolver, next_middleware: NextMiddleware, key: str) -> Response:
    """The route's final answer, as the resolver would send it: its result, or the response of the
    exception handler of what it raised (a domain error is a stored 4xx)."""
    try:
        result = next_middleware(app)
    except IdempotencyKeyReused as reused:  # a refund's own check (kept beyond the 24 h): the same error
        result = error_response(400, "idempotency_error", "idempotency_key_in_use", reused.message, HEADER)
    except Exception as exc:
        handler = app.exception_handler_manager.lookup_exception_handler(type(exc))
        if handler is None:
            raise
        result = handler(exc)
    response = app._to_response(result)  # noqa: SLF001 - the resolver's own dict/tuple/Response conversion
    assert isinstance(response, Response)  # a REST resolver's routes return no Bedrock responses
    if response.body is not None and not isinstance(response.body, str | bytes) and response.is_json():
        response.body = app._serializer(response.body)  # noqa: SLF001 - as the response builder does
    return response


def _canonical_body(body: str | None, base64: bool) -> Any:
    if not body:
        return None
    if not base64:
        try:
            return json.loads(body)
        except ValueError:
            pass
    return hashlib.sha256(body.encode()).hexdigest()
