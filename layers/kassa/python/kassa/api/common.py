"""What every kassa REST resolver shares: secret-key auth, errors as 4xx ``{"error": {...}}`` naming
the field, Stripe-like object and list shapes."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from datetime import date
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from kassa.adapters import container
from kassa.domain.api_keys import authenticate
from kassa.domain.dashboard import CSRF_HEADER, Actor, cookie_token, csrf_matches
from kassa.domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    Unavailable,
)
from kassa.services.dashboard import current_session

logger = logging.getLogger("kassa.api")


def error_response(status: int, type_: str, code: str, message: str, param: str | None = None) -> Response:
    body: dict[str, Any] = {"type": type_, "code": code, "message": message}
    if param:
        body["param"] = param
    return Response(status_code=status, content_type="application/json", body=json.dumps({"error": body}))


ACTOR = "actor"  # the request context's entry naming who makes the request (kassa.domain.dashboard.Actor)


def current_actor(app: APIGatewayRestResolver) -> Actor | None:
    """Who makes this /v1 request — a secret key (its id) or a dashboard user (its ``dusr_`` id), with
    its role — as authentication put it in the request context (None outside /v1)."""
    actor: Actor | None = app.context.get(ACTOR)
    return actor


def _authenticate(app: APIGatewayRestResolver) -> Actor | Response:
    """The request's actor: a Bearer secret key, or a dashboard session cookie with its CSRF header."""
    headers = app.current_event.headers
    header = headers.get("Authorization") or ""
    # the session cookie counts only on the resolver that serves the dashboard (the api function's)
    token = cookie_token(headers.get("Cookie")) if getattr(app, "dashboard_sessions", False) else None
    if header or token is None:
        scheme, _, secret = header.partition(" ")
        key = authenticate(container.api_keys(), secret, container.now()) if scheme.lower() == "bearer" else None
        if key is None:  # unknown, or a rolled key past its expires_at
            return error_response(
                401,
                "authentication_error",
                "invalid_api_key",
                "a valid secret key is required (Authorization: Bearer …)",
            )
        return Actor(kind="key", id=key.id, role=key.role)
    session = current_session(container.dashboard_accounts(), container.api_keys(), token, container.now())
    if session is None:
        return error_response(
            401, "authentication_error", "session_expired", "the dashboard session has ended: sign in again"
        )
    if not csrf_matches(session, headers.get(CSRF_HEADER)):
        return csrf_refused()
    return session.actor


def csrf_refused() -> Response:
    """The 403 for a request with the dashboard's session cookie but without its CSRF token."""
    return error_response(
        403,
        "invalid_request_error",
        "csrf_token_invalid",
        f"a request with the dashboard's session cookie must carry its {CSRF_HEADER} header",
        CSRF_HEADER,
    )


@lru_cache(maxsize=16)
def static_text(path: str) -> str:
    """A file of the API's static folder (``static/<path>``), read once per process."""
    from importlib.resources import files

    return files("kassa.api").joinpath(f"static/{path}").read_text(encoding="utf-8")


def _unauthenticated(app: APIGatewayRestResolver) -> Response | None:
    """The 401 / 403 for a /v1 request without a valid secret key or dashboard session (None:
    authenticated — the actor is then in the request context — or not /v1)."""
    if not app.current_event.path.startswith("/v1/") or ACTOR in app.context:
        return None
    found = _authenticate(app)
    if isinstance(found, Response):
        return found
    method = app.current_event.http_method.upper()
    if not found.permits(method):  # a restricted (read_only) key or user
        who = f"the API key {found.id}" if found.kind == "key" else f"the dashboard user {found.id}"
        return error_response(
            403,
            "invalid_request_error",
            "permission_denied",
            f"{who} is {found.role}: it may not {method} {app.current_event.path}",
        )
    app.append_context(**{ACTOR: found})
    return None


def _auth(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    return _unauthenticated(app) or next_middleware(app)


def _body_error(kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body",), "msg": message, "input": {}, "ctx": {}}])


class _AuthThenValidate(OpenAPIRequestValidationMiddleware):  # type: ignore[misc]
    """Powertools' request validation, run after the secret key is checked: without a valid key a
    /v1 route answers 401 before its body is read (Powertools runs validation before any middleware
    given to ``use``). A body Powertools cannot decode is a 400 naming ``body``, never a 500."""

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response:
        denied = _unauthenticated(app)
        if denied is not None:
            return denied
        return super().handler(app, next_middleware)

    def _get_body(self, app: Any) -> dict[str, Any]:
        try:
            return super()._get_body(app)
        except RequestUnsupportedContentType as error:
            media = app.current_event.headers.get("content-type", "")
            raise _body_error(
                "unsupported_content_type", f"Content-Type {media} is not supported: send JSON"
            ) from error
        except UnicodeDecodeError as error:
            raise _body_error(
                "body_not_utf8", f"the body is not UTF-8 text ({error.reason} at byte {error.start})"
            ) from error
        except ValueError as error:  # multipart without a boundary, an integer of more than 4,300 digits …
            reason = "a number has too many digits" if "digits" in str(error) else str(error)
            raise _body_error("body_unreadable", f"the body cannot be read: {reason}") from error


def _json_decode_reason(body: str | None, fallback: str) -> str:
    try:
        json.loads(body or "")
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return fallback


def _invalid_handler(app: APIGatewayRestResolver) -> Callable[[RequestValidationError], Response]:
    def _invalid(error: RequestValidationError) -> Response:
        errors = error.errors()
        first = errors[0] if errors else {}
        raw_loc = tuple(first.get("loc", ()))
        kind = first.get("type")
        if kind == "json_invalid":
            reason = _json_decode_reason(app.current_event.body, str(first.get("ctx", {}).get("error", "")))
            message = f"the body is not valid JSON: {reason}"
            return error_response(400, "invalid_request_error", "parameter_invalid", message, "body")
        if kind == "missing" and raw_loc == ("body",):
            return error_response(400, "invalid_request_error", "parameter_invalid", "a JSON body is required", "body")
        loc = [str(p) for p in raw_loc if p not in ("body", "query")]
        param = ".".join(loc) or ("body" if raw_loc[:1] == ("body",) else None)
        message = first.get("msg", "invalid request")
        if kind == "missing":
            message = f"missing required field {param}"
        elif param:
            message = f"{param}: {message}"
        return error_response(400, "invalid_request_error", "parameter_invalid", message, param)

    return _invalid


def domain_error_response(error: DomainError) -> Response:
    """A domain error as the API answers it: 400 naming the field, 404, 409, 503."""
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


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods of the routes registered for ``path`` (empty: no such path)."""
    routes = app._static_routes + app._dynamic_routes  # noqa: SLF001 - Powertools keeps them there
    return sorted({route.method.upper() for route in routes if route.rule.match(path)})


def _not_found_handler(app: APIGatewayRestResolver) -> Callable[[Exception], Response]:
    def _not_found(_: Exception) -> Response:
        method, path = app.current_event.http_method.upper(), app.current_event.path
        allowed = allowed_methods(app, path)
        if allowed:
            response = error_response(
                405,
                "invalid_request_error",
                "method_not_allowed",
                f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}",
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(404, "invalid_request_error", "route_not_found", f"No route for {method} {path}")

    return _not_found


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _looks_like_json(body: str) -> bool:
    if body.lstrip()[:1] in ("{", "["):
        return True
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def json_body_event(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with ``Content-Type: application/json`` when its body is meant as JSON.

    A JSON body is read as JSON whatever the Content-Type says (``curl -d`` sends
    ``application/x-www-form-urlencoded``). Only real form data (a form-urlencoded body that is not
    JSON) and multipart bodies keep their type; any other body (text/plain, none given, …) is JSON,
    so a malformed one is reported as such, and no body at all is "a JSON body is required".
    """
    body = event.get("body") or ""
    headers = dict(event.get("headers") or {})
    names = [name for name in headers if name.lower() == "content-type"]
    content_type = str(headers[names[0]]) if names else ""
    media = content_type.split(";", 1)[0].strip().lower()
    if event.get("isBase64Encoded"):  # binary as API Gateway sent it: text if it is UTF-8
        if media == "multipart/form-data":
            return event
        text = _utf8_text(body)
        if text is None:  # read as JSON, so Powertools' decoding error is reported as "not UTF-8"
            return _with_json_type(event, headers, names)
        event, body = {**event, "body": text, "isBase64Encoded": False}, text
    if not names or _is_json_type(content_type) or media == "multipart/form-data":  # none: Powertools reads JSON
        return event
    if media == "application/x-www-form-urlencoded" and body and not _looks_like_json(body):
        return event
    return _with_json_type(event, headers, names)


def _utf8_text(base64_body: str) -> str | None:
    try:
        return base64.b64decode(base64_body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _with_json_type(event: Mapping[str, Any], headers: dict[str, Any], names: list[str]) -> Mapping[str, Any]:
    for name in names:
        del headers[name]
    headers["Content-Type"] = "application/json"
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    multi["Content-Type"] = ["application/json"]
    return {**event, "headers": headers, "multiValueHeaders": multi}


class KassaResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, reading any JSON body as JSON (see ``json_body_event``)."""

    dashboard_sessions = False  # whether a dashboard session cookie authenticates /v1 (``new_app``)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._enable_validation:
            self._request_validation_middleware = _AuthThenValidate()

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        return super().resolve(json_body_event(event), context)


def new_app(*, dashboard_sessions: bool = False) -> APIGatewayRestResolver:
    """A resolver with validation, auth on /v1 and kassa's error shapes. ``dashboard_sessions``: a
    dashboard session cookie (with its CSRF header) is accepted like a key, where the function holds
    the sessions (the api function); elsewhere only a secret key is."""
    app = KassaResolver(enable_validation=True)
    app.dashboard_sessions = dashboard_sessions
    app.use(middlewares=[_auth])
    app.exception_handler(RequestValidationError)(_invalid_handler(app))
    app.exception_handler(DomainError)(domain_error_response)
    app.exception_handler(Exception)(_unexpected)
    app.not_found(_not_found_handler(app))
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


def csv_response(text: str, name: str) -> Response[str]:
    """A CSV report, offered for download as ``name``."""
    return Response(
        status_code=200,
        content_type="text/csv; charset=utf-8",
        body=text,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def query_date(app: BaseRouter, name: str, default: date | None = None) -> date:
    """A ``YYYY-MM-DD`` query parameter, required unless a ``default`` is given (400 naming it when
    absent or not a date)."""
    raw = app.current_event.get_query_string_value(name)
    if not raw:
        if default is not None:
            return default
        raise InvalidInput(f"{name} is required (YYYY-MM-DD)", param=name)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a date, YYYY-MM-DD", param=name) from None


def query_month(app: BaseRouter, name: str) -> date:
    """A required ``YYYY-MM`` query parameter, as the month's first day."""
    raw = app.current_event.get_query_string_value(name) or ""
    try:
        if len(raw) != 7:
            raise ValueError(raw)
        return date.fromisoformat(f"{raw}-01")
    except ValueError:
        raise InvalidInput(f"{name} is required, a month YYYY-MM", param=name) from None


def wants_csv(app: BaseRouter) -> bool:
    """``format=json`` (default) or ``format=csv``."""
    fmt = app.current_event.get_query_string_value("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput("format is json or csv", param="format")
    return fmt == "csv"


MAX_LIMIT = 100


def query_limit(app: BaseRouter) -> int:
    """``limit`` of a listing: 1 to 100, default 10."""
    raw = app.current_event.get_query_string_value("limit", "10") or "10"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
    return int(raw)
