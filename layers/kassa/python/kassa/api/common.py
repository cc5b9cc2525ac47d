"""What every kassa REST resolver shares: secret-key auth, errors as 4xx ``{"error": {...}}`` naming
the field, Stripe-like object and list shapes."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

from kassa.adapters import container
from kassa.domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    Unavailable,
)

logger = logging.getLogger("kassa.api")


def error_response(status: int, type_: str, code: str, message: str, param: str | None = None) -> Response:
    body: dict[str, Any] = {"type": type_, "code": code, "message": message}
    if param:
        body["param"] = param
    return Response(status_code=status, content_type="application/json", body=json.dumps({"error": body}))


def _auth(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    if app.current_event.path.startswith("/v1/"):
        header = app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), container.api_secret_key().encode()):
            return error_response(
                401,
                "authentication_error",
                "invalid_api_key",
                "a valid secret key is required (Authorization: Bearer …)",
            )
    return next_middleware(app)


def _invalid(error: RequestValidationError) -> Response:
    errors = error.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "missing":
        message = f"missing required field {param}"
    elif param:
        message = f"{param}: {message}"
    return error_response(400, "invalid_request_error", "parameter_invalid", message, param)


def _domain(error: DomainError) -> Response:
    status = 400
    if isinstance(error, NotFound):
        status = 404
    elif isinstance(error, AlreadyExists | Conflict | IllegalTransition):
        status = 409
    elif isinstance(error, Unavailable):
        status = 503  # retryable: nothing was half-written (conditional writes and transactions)
    elif not isinstance(error, InvalidInput):
        status = 400
    type_ = "api_error" if status >= 500 else "invalid_request_error"
    return error_response(status, type_, error.code, error.message, error.param)


def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return error_response(500, "api_error", "internal_error", "an unexpected error occurred; it has been logged")


def _not_found(_: Exception) -> Response:
    return error_response(404, "invalid_request_error", "route_missing", "no such route")


def new_app() -> APIGatewayRestResolver:
    """A resolver with validation, auth on /v1 and kassa's error shapes."""
    app = APIGatewayRestResolver(enable_validation=True)
    app.use(middlewares=[_auth])
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(DomainError)(_domain)
    app.exception_handler(Exception)(_unexpected)
    app.not_found(_not_found)
    return app


def obj(kind: str, model: BaseModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    body = {"object": kind, **model.model_dump(mode="json", exclude={"version"})}
    if kind == "subscription":
        return _subscription(body)
    return body


def _subscription(body: dict[str, Any]) -> dict[str, Any]:
    """Stripe's subscription shape: ``items`` is a list object of ``subscription_item``s; ``price``
    and ``quantity`` are the one item's (null when there are several, as Stripe's ``plan``)."""
    items = [{"object": "subscription_item", "subscription": body["id"], **item} for item in body["items"]]
    single = items[0] if len(items) == 1 else None
    return {
        **body,
        "price": single["price"] if single else None,
        "quantity": single["quantity"] if single else None,
        "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items)},
    }


def page(kind: str, items: list[Any], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": [obj(kind, i) for i in items], "has_more": has_more}
