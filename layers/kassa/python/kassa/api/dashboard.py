"""The merchant dashboard, served by the API function under /dashboard (docs/dashboard.md).

``GET /dashboard`` is a single page (``static/dashboard.html``, its script and styles, Chart.js vendored
with its licence) that signs in here and then calls the very /v1 routes a storefront calls, with the
session cookie and the ``X-CSRF-Token`` header instead of a secret key (``kassa.api.common``): every
action is validated and recorded like any other API call, under the session's actor.

* ``POST /dashboard/session`` — ``{"email", "password"}`` or ``{"key"}``: sets the HttpOnly, Secure,
  SameSite=Strict session cookie and answers the CSRF token (the secret key is never kept or echoed);
* ``GET /dashboard/session`` — who is signed in, and the CSRF token (``signed_in: false`` when nobody is);
* ``DELETE /dashboard/session`` — sign out (needs the CSRF header).

Every /dashboard response carries a strict CSP (only this origin's scripts and styles, no inline
script, no framing), no-store, no referrer and nosniff.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from kassa.adapters import container
from kassa.api.common import csrf_refused, error_response, static_text
from kassa.api.models import DashboardSignInIn
from kassa.domain.dashboard import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_HOURS,
    Session,
    SignInRefused,
    cookie_token,
    csrf_matches,
)
from kassa.services import dashboard

router = APIGatewayRouter()


def _answer(description: str, schema: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}}


_ERROR, _SESSION = "#/components/schemas/Error", "#/components/schemas/KassaObject"
SIGN_IN_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _answer("Signed in: the session (actor, csrf_token, expires_at) and its cookie", _SESSION),
    401: _answer("Wrong email or password, or not a valid key (sign_in_refused)", _ERROR),
    403: _answer("Posted from another site's page (cross_origin)", _ERROR),
}
SIGN_OUT_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _answer("Signed out: the session is deleted and the cookie cleared", _SESSION),
    401: _answer("No live dashboard session (session_expired)", _ERROR),
    403: _answer("Without the session's X-CSRF-Token header, or from another site", _ERROR),
}

ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "chart.umd.min.js": "text/javascript; charset=utf-8",
    "chart.js.LICENSE.md": "text/plain; charset=utf-8",
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def dashboard_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def headers_middleware(app: Any, next_middleware: Any) -> Response:
    """The dashboard's security headers on every /dashboard response (errors included)."""
    response: Response = next_middleware(app)
    path = app.current_event.path
    if path == "/dashboard" or path.startswith("/dashboard/"):
        for name, value in dashboard_headers().items():
            response.headers.setdefault(name, value)
    return response


def _static(name: str) -> str:
    return static_text(f"dashboard/{name}")


@router.get("/dashboard", include_in_schema=False)
def dashboard_page() -> Response[str]:
    """The dashboard (``/dashboard/`` is sent to ``/dashboard``: the page's asset paths are relative)."""
    if router.current_event.path.endswith("/"):
        return Response(status_code=301, content_type="text/plain", body="", headers={"Location": "../dashboard"})
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=_static("dashboard.html"))


@router.get("/dashboard/assets/<name>", include_in_schema=False)
def dashboard_asset(name: str) -> Response[str]:
    if name not in ASSETS:
        return error_response(404, "invalid_request_error", "route_not_found", f"no asset {name}")
    # gzipped when the browser accepts it (Chart.js: 208 KB → 70 KB; API Gateway passes */* as binary),
    # kept a few minutes (the page itself is never cached)
    return Response(
        status_code=200,
        content_type=ASSETS[name],
        body=_static(name),
        headers={"Cache-Control": "private, max-age=300"},
        compress=True,
    )


def _cookie(token: str, max_age: int) -> Cookie:
    return Cookie(
        name=SESSION_COOKIE,
        value=token,
        path="/",
        secure=True,
        http_only=True,
        same_site=SameSite.STRICT_MODE,
        max_age=max_age,
    )


def _session_json(session: Session) -> dict[str, Any]:
    return {
        "object": "dashboard_session",
        "signed_in": True,
        "actor": {"type": session.actor_kind, "id": session.actor_id, "role": session.role, "email": session.email},
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at.isoformat(),
    }


def _refused(message: str, code: str = "sign_in_refused") -> Response[str]:
    return error_response(401, "authentication_error", code, message)


def _cross_origin() -> Response[str] | None:
    """The 403 for a sign-in or sign-out posted from another site's page (its ``Origin`` is not this
    host): SameSite keeps the cookie from being sent, but a cross-site POST could still set one."""
    headers = router.current_event.headers
    origin = headers.get("Origin")
    if origin and urlsplit(origin).netloc != headers.get("Host", ""):
        return error_response(403, "invalid_request_error", "cross_origin", "sign in from the dashboard's own page")
    return None


@router.post("/dashboard/session", tags=["dashboard"], responses=SIGN_IN_RESPONSES)
def sign_in(body: DashboardSignInIn) -> Response[Any]:
    """Sign in to the dashboard with an email and password or a secret key: sets the session cookie."""
    refused = _cross_origin()
    if refused is not None:
        return refused
    accounts, now = container.dashboard_accounts(), container.now()
    try:
        if body.key:
            token, session = dashboard.sign_in_with_key(accounts, container.api_keys(), body.key, now)
        elif body.email and body.password:
            token, session = dashboard.sign_in_with_password(accounts, body.email, body.password, now)
        else:
            return error_response(
                400, "invalid_request_error", "parameter_missing", "give email and password, or key", "email"
            )
    except SignInRefused as error:
        return _refused(error.message)
    return Response(
        status_code=200,
        content_type="application/json",
        body=_session_json(session),
        cookies=[_cookie(token, SESSION_HOURS * 3600)],
    )


def _live_session() -> tuple[str, Session] | None:
    token = cookie_token(router.current_event.headers.get("Cookie"))
    if token is None:
        return None
    session = dashboard.current_session(container.dashboard_accounts(), container.api_keys(), token, container.now())
    return (token, session) if session is not None else None


@router.get("/dashboard/session", tags=["dashboard"])
def who_is_signed_in() -> Response[Any]:
    """The dashboard session of the cookie, or signed_in false (a 200: the page asks this first)."""
    live = _live_session()
    body = _session_json(live[1]) if live is not None else {"object": "dashboard_session", "signed_in": False}
    return Response(status_code=200, content_type="application/json", body=body)


@router.delete("/dashboard/session", tags=["dashboard"], responses=SIGN_OUT_RESPONSES)
def sign_out() -> Response[Any]:
    """Sign out of the dashboard (needs the X-CSRF-Token header): the session ends, the cookie is cleared."""
    live = _live_session()
    if live is None:
        return _refused("not signed in", "session_expired")
    token, session = live
    if _cross_origin() is not None or not csrf_matches(session, router.current_event.headers.get(CSRF_HEADER)):
        return csrf_refused()
    dashboard.sign_out(container.dashboard_accounts(), token)
    return Response(
        status_code=200,
        content_type="application/json",
        body={"object": "dashboard_session", "signed_out": True},
        cookies=[_cookie("", 0)],
    )


def install(app: Any) -> None:
    """The dashboard's routes and headers on the API's resolver."""
    app.include_router(router)
    app.use(middlewares=[headers_middleware])
