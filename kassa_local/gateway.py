"""API Gateway (REST, v1 proxy integration), emulated with ``http.server`` on 127.0.0.1.

Every wiring route (``ANY /v1/{proxy+}``, ``POST /webhooks/stripe`` …) turns an HTTP request into
the proxy event API Gateway would send to the function, and the function's response
(``statusCode``, ``headers``, ``multiValueHeaders``, ``body``, ``isBase64Encoded``) back into HTTP.
A handler that raises becomes ``502 {"message": "Internal server error"}``, as in API Gateway.

Local-only routes, never deployed:

- ``GET /_local/health``, ``GET /_local/clock``, ``POST /_local/clock/advance``
  (``{"by": "35d"}`` or ``{"to": "2027-01-01T00:00:00Z"}``), ``POST /_local/drain``,
  ``GET /_local/events[?type=invoice.paid]``;
- ``GET /_local/outbox`` (an HTML page of the customer emails), ``GET /_local/outbox.json[?customer=…]``,
  ``GET /_local/outbox/<key>`` (the email's HTML; ``?format=text`` its text, ``?format=json`` all of it);
- ``GET /`` and ``GET /storefront``: the demo storefront, ``GET /storefront/config.json``;
- ``/demo/…``: a tiny backend for the storefront that forwards to the API with the secret key,
  so the browser never holds it: ``GET /demo/prices``, ``POST /demo/checkout``,
  ``POST /demo/checkout/{id}/complete``, ``POST /demo/checkout/{id}/confirm_payment`` (3-D Secure).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from infra import wiring

log = logging.getLogger("kassa_local.gateway")

STATIC_DIR = Path(__file__).parent / "static"
STAGE = "local"
ACCOUNT_ID = "123456789012"
API_ID = "kassalocal"


@dataclass(frozen=True)
class ApiRoute:
    method: str  # GET, POST, …, or ANY
    path: str  # resource path, e.g. /v1/{proxy+}
    function: wiring.Function

    @property
    def segments(self) -> tuple[str, ...]:
        return _split(self.path)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when the route matches the request, else None."""
        if self.method != "ANY" and self.method != method:
            return None
        return match_resource(self.segments, _split(path))

    def specificity(self) -> tuple[tuple[int, ...], int]:
        """API Gateway prefers literal segments over ``{name}`` over ``{proxy+}``, then an exact
        method over ANY."""
        ranks = tuple(0 if s.endswith("+}") else 1 if s.startswith("{") else 2 for s in self.segments)
        return ranks, int(self.method != "ANY")


def _split(path: str) -> tuple[str, ...]:
    stripped = path.strip("/")
    return tuple(stripped.split("/")) if stripped else ()


def match_resource(resource: tuple[str, ...], path: tuple[str, ...]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, seg in enumerate(resource):
        if seg.startswith("{") and seg.endswith("+}"):
            rest = path[i:]
            if not rest or any(not p for p in rest):
                return None
            params[seg[1:-2]] = "/".join(rest)
            return params
        if i >= len(path) or not path[i]:
            return None
        if seg.startswith("{") and seg.endswith("}"):
            params[seg[1:-1]] = path[i]
        elif seg != path[i]:
            return None
    return params if len(path) == len(resource) else None


def routes_from(functions: tuple[wiring.Function, ...] | list[wiring.Function]) -> list[ApiRoute]:
    return [ApiRoute(r.method.upper(), r.path, fn) for fn in functions for r in fn.routes]


def allowed_methods(routes: list[ApiRoute], path: str) -> list[str]:
    """The methods routed on ``path`` whatever the request's method (empty: no route has the path)."""
    methods = {r.method for r in routes if match_resource(r.segments, _split(path)) is not None}
    return sorted(methods)


def find_route(routes: list[ApiRoute], method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
    best: tuple[ApiRoute, dict[str, str]] | None = None
    for route in routes:
        params = route.match(method, path)
        if params is None:
            continue
        if best is None or route.specificity() > best[0].specificity():
            best = (route, params)
    return best


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        body = json.dumps(payload, indent=2, default=str).encode()
        return cls(status, [("Content-Type", "application/json"), *(headers or [])], body)

    @classmethod
    def error(cls, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        return cls.json(status, {"error": {"type": "invalid_request_error", "code": code, "message": message}}, headers)

    @classmethod
    def not_routed(cls, method: str, path: str, allowed: list[str] | tuple[str, ...] = ()) -> HttpResponse:
        """404 ``route_not_found`` for an unknown path, 405 ``method_not_allowed`` with ``Allow`` for a
        known path asked with another method."""
        if allowed:
            methods = ", ".join(allowed)
            message = f"{method} is not allowed on {path}; allowed: {methods}"
            return cls.error(405, "method_not_allowed", message, [("Allow", methods)])
        return cls.error(404, "route_not_found", f"No route for {method} {path}")


def proxy_event(
    route: ApiRoute,
    path_params: dict[str, str],
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    now: datetime,
    host: str,
) -> dict[str, Any]:
    """The API Gateway REST proxy (payload 1.0) event for one request."""
    path = unquote(raw_path)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    lower = {k.lower() for k in single}
    for name, value in (("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Proto", "http")):
        if name.lower() not in lower:
            single[name] = value
            multi[name] = [value]
    mq = parse_qs(query, keep_blank_values=True) if query else {}
    text: str | None
    is_b64 = False
    if not body:
        text = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
    epoch_ms = int(now.timestamp() * 1000)
    request_id = str(uuid.uuid4())
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": {k: v[-1] for k, v in mq.items()} or None,
        "multiValueQueryStringParameters": mq or None,
        "pathParameters": {k: unquote(v) for k, v in path_params.items()} or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "resourceId": route.path,
            "resourcePath": route.path,
            "httpMethod": method,
            # the path as the client asked for it: the local gateway serves the stage at its root (as a
            # custom domain does), so it carries no /local prefix and the API's base path is ""
            "path": path,
            "stage": STAGE,
            "protocol": "HTTP/1.1",
            "domainName": host,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": epoch_ms,
            "identity": {
                "sourceIp": "127.0.0.1",
                "userAgent": single.get("User-Agent") or single.get("user-agent"),
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "accessKey": None,
                "apiKey": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
            "authorizer": None,
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def http_response(result: Any) -> HttpResponse:
    """A Lambda proxy response → HTTP (API Gateway merges ``headers`` and ``multiValueHeaders``)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        log.error("handler returned a malformed proxy response: %r", result)
        return HttpResponse.json(502, {"message": "Internal server error"})
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    multi_lower = {k.lower() for k in multi}
    for name, values in multi.items():
        headers.extend((name, str(v)) for v in values)
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in multi_lower:
            headers.append((name, str(value)))
    headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, body)


class StackControl(Protocol):
    """What the local routes need from the stack."""

    @property
    def api_secret_key(self) -> str: ...

    def health(self) -> dict[str, Any]: ...

    def clock_state(self) -> dict[str, Any]: ...

    def advance_json(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def drain_json(self) -> dict[str, Any]: ...

    def events_json(self, type: str | None) -> list[dict[str, Any]]: ...

    def storefront_config(self) -> dict[str, Any]: ...

    def outbox_json(self, customer: str | None) -> list[dict[str, Any]]: ...

    def outbox_email(self, key: str) -> dict[str, Any] | None: ...

    def keys_json(self, body: dict[str, Any]) -> dict[str, Any]: ...


Invoke = Callable[[wiring.Function, dict[str, Any]], Any]

_LOCAL_ROUTES: dict[str, tuple[str, ...]] = {
    "/_local/health": ("GET",),
    "/_local/clock": ("GET",),
    "/_local/clock/advance": ("POST",),
    "/_local/drain": ("POST",),
    "/_local/keys": ("POST",),
    "/_local/events": ("GET",),
}


def _with_mandate_acceptance(body: bytes, headers: list[tuple[str, str]]) -> bytes:
    """The demo back end is the merchant's: it tells kassa how the customer accepted a bank-debit
    mandate — the browser's address and user agent (SEPA: the mandate's online acceptance)."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return body  # the API answers the 400
    if not isinstance(payload, dict) or "mandate_acceptance" in payload:
        return body
    agent = next((value for name, value in headers if name.lower() == "user-agent"), None)
    payload["mandate_acceptance"] = {"ip_address": "127.0.0.1", "user_agent": agent}
    return json.dumps(payload).encode()


_DEMO_COMPLETE = re.compile(r"^/demo/checkout/([^/]+)/(complete|confirm_payment)$")


class Gateway:
    """The HTTP server; ``start()`` binds 127.0.0.1:{port} (0 = a free port)."""

    def __init__(
        self,
        functions: tuple[wiring.Function, ...] | list[wiring.Function],
        invoke: Invoke,
        now: Callable[[], datetime],
        control: StackControl | None = None,
        *,
        port: int = 0,
    ) -> None:
        self.routes = routes_from(functions)
        self._invoke = invoke
        self._now = now
        self.control = control
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- dispatch -------------------------------------------------------------------------------

    def dispatch(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> HttpResponse:
        parts = urlsplit(target)
        path = parts.path or "/"
        if self.control is not None:
            if path.startswith("/_local/") and self.cross_origin(headers):
                return HttpResponse.error(
                    403, "cross_origin_refused", "the /_local routes answer the CLI and this gateway's own pages only"
                )
            local = self._local(method, path, parts.query, body, headers)
            if local is not None:
                return local
        return self.dispatch_api(method, path, parts.query, headers, body)

    def own_origins(self) -> tuple[str, ...]:
        return (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    def cross_origin(self, headers: list[tuple[str, str]]) -> bool:
        """A browser request from another site: an ``Origin`` that is not this gateway's, or
        ``Sec-Fetch-Site`` cross-site / same-site (another port of localhost). A web page can send a
        text/plain POST without a preflight; this keeps it from moving the clock or rolling keys. The
        CLI and curl send neither header."""
        values = {name.lower(): value.strip() for name, value in headers}
        origin = values.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self.own_origins():
            return True
        return values.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")

    def dispatch_api(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpResponse:
        found = find_route(self.routes, method, path)
        if found is None:
            return HttpResponse.not_routed(method, path, allowed_methods(self.routes, path))
        route, params = found
        event = proxy_event(
            route,
            params,
            method=method,
            raw_path=path,
            query=query,
            headers=headers,
            body=body,
            now=self._now(),
            host=next((v for k, v in headers if k.lower() == "host"), f"127.0.0.1:{self.port}"),
        )
        try:
            result = self._invoke(route.function, event)
        except Exception:
            log.exception("%s raised on %s %s", route.function.name, method, path)
            return HttpResponse.json(502, {"message": "Internal server error"})
        return http_response(result)

    def _local(
        self, method: str, path: str, query: str, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> HttpResponse | None:
        control = self.control
        assert control is not None
        try:
            if path in ("/", "/storefront", "/storefront/"):
                if method not in ("GET", "HEAD"):
                    return HttpResponse.not_routed(method, path, ("GET", "HEAD"))
                html = (STATIC_DIR / "storefront.html").read_bytes()
                return HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], html)
            if path == "/storefront/config.json":
                if method != "GET":
                    return HttpResponse.not_routed(method, path, ("GET",))
                return HttpResponse.json(200, control.storefront_config())
            if path == "/favicon.ico":
                return HttpResponse(204)
            if path.startswith("/_local/"):
                return self._control(control, method, path, query, body)
            if path.startswith("/demo/"):
                return self._demo(control, method, path, query, body, headers or [])
        except ValueError as exc:
            return HttpResponse.error(400, "invalid_request", str(exc))
        return None

    def _control(self, control: StackControl, method: str, path: str, query: str, body: bytes) -> HttpResponse:
        if path == "/_local/health" and method == "GET":
            return HttpResponse.json(200, control.health())
        if path == "/_local/clock" and method == "GET":
            return HttpResponse.json(200, control.clock_state())
        if path == "/_local/clock/advance" and method == "POST":
            try:
                payload = json.loads(body or b"{}")
            except ValueError as exc:
                raise ValueError(f"body is not JSON: {exc}") from exc
            if not isinstance(payload, dict):
                raise ValueError('expected {"by": "35d"} or {"to": "<ISO-8601>"}')
            return HttpResponse.json(200, control.advance_json(payload))
        if path == "/_local/keys" and method == "POST":
            return HttpResponse.json(200, control.keys_json(_json_object(body)))
        if path == "/_local/drain" and method == "POST":
            return HttpResponse.json(200, control.drain_json())
        if path == "/_local/events" and method == "GET":
            types = parse_qs(query).get("type")
            events = control.events_json(types[-1] if types else None)
            return HttpResponse.json(200, {"object": "list", "data": events, "count": len(events)})
        if path.startswith("/_local/outbox") and method in ("GET", "HEAD"):
            return self._outbox(control, path, query)
        if path.startswith("/_local/outbox"):
            return HttpResponse.not_routed(method, path, ("GET", "HEAD"))
        return HttpResponse.not_routed(method, path, _LOCAL_ROUTES.get(path, ()))

    def _outbox(self, control: StackControl, path: str, query: str) -> HttpResponse:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if path == "/_local/outbox.json":
            emails = control.outbox_json(params.get("customer") or None)
            return HttpResponse.json(200, {"object": "list", "data": emails, "count": len(emails)})
        if path in ("/_local/outbox", "/_local/outbox/"):
            page = outbox_page(control.outbox_json(params.get("customer") or None), params.get("customer"))
            return HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], page.encode())
        key = unquote(path.removeprefix("/_local/outbox/"))
        email = control.outbox_email(key) if path.startswith("/_local/outbox/") else None
        if email is None:
            return HttpResponse.error(404, "resource_missing", f"No email {key!r} in the outbox")
        fmt = params.get("format", "html")
        if fmt == "json":
            return HttpResponse.json(200, email)
        if fmt == "text":
            return HttpResponse(200, [("Content-Type", "text/plain; charset=utf-8")], email["text"].encode())
        if fmt != "html":
            raise ValueError('format must be "html", "text" or "json"')
        # the email's own HTML, as a mail client would show it: no scripts, no fetches but images
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", EMAIL_CSP)]
        return HttpResponse(200, headers, email["html"].encode())

    def _demo(
        self, control: StackControl, method: str, path: str, query: str, body: bytes, headers: list[tuple[str, str]]
    ) -> HttpResponse:
        auth = [
            ("Authorization", f"Bearer {control.api_secret_key}"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ]
        if path == "/demo/prices" and method == "GET":
            return self._prices(auth, parse_qs(query).get("email", [""])[-1].strip())
        if path == "/demo/checkout" and method == "POST":
            return self.dispatch_api("POST", "/v1/checkout", "", auth, self._returning_customer(auth, body))
        if path == "/demo/payment_methods" and method == "GET":
            return self._payment_methods(auth, parse_qs(query).get("locale", [None])[-1])
        match = _DEMO_COMPLETE.match(path)
        if match and method == "POST":
            if match.group(2) == "complete":
                body = _with_mandate_acceptance(body, headers)
            return self.dispatch_api("POST", f"/v1/checkout/{match.group(1)}/{match.group(2)}", "", auth, body)
        allowed = (
            ("GET",)
            if path in ("/demo/prices", "/demo/payment_methods")
            else ("POST",)
            if path == "/demo/checkout" or match
            else ()
        )
        return HttpResponse.not_routed(method, path, allowed)

    def _prices(self, auth: list[tuple[str, str]], email: str) -> HttpResponse:
        """The prices the storefront offers. A product in a running price experiment shows one of its
        variants: the visitor's (``?email=``, from ``POST /v1/products/{id}/experiment_assignment``,
        the very variant the checkout charges) or, before an email is typed, the first (the control);
        the price carries ``experiment: {id, variant}``."""
        found = self.dispatch_api("GET", "/v1/prices", "", auth, b"")
        if found.status != 200:
            return found
        listing = json.loads(found.body or b"{}")
        running = self.dispatch_api("GET", "/v1/experiments", urlencode({"limit": 100}), auth, b"")
        experiments = [e for e in json.loads(running.body or b"{}").get("data", []) if e.get("status") == "running"]
        prices = listing.get("data") or []
        for experiment in experiments:
            variants = {v["price"]: v["id"] for v in experiment["variants"]}
            if not any(p["id"] in variants for p in prices):
                continue
            shown = experiment["variants"][0]["price"]
            if email:
                body = json.dumps({"email": email}).encode()
                assigned = self.dispatch_api(
                    "POST", f"/v1/products/{experiment['product']}/experiment_assignment", "", auth, body
                )
                if assigned.status == 200:
                    shown = json.loads(assigned.body)["price"]
            tag = {"id": experiment["id"], "variant": variants[shown]}
            prices = [
                {**p, "experiment": tag} if p["id"] == shown else p
                for p in prices
                if p["id"] == shown or p["id"] not in variants
            ]
        return HttpResponse.json(200, {**listing, "data": prices})

    def _payment_methods(self, auth: list[tuple[str, str]], locale: str | None) -> HttpResponse:
        """What the storefront may offer before a checkout exists: the merchant's payment method types
        and the mandate text for a bank account (the merchant's name and SEPA creditor identifier) in
        the language the customer chose (``?locale=``; the checkout's answer then carries the same text
        for the customer's ``preferred_locale``)."""
        from kassa.emails.render import mandate_terms

        found = self.dispatch_api("GET", "/v1/settings", "", auth, b"")
        if found.status != 200:
            return found
        settings = json.loads(found.body or b"{}")
        debits = settings.get("bank_debits") or {}
        types = settings.get("payment_method_types") or ["card"]
        terms = mandate_terms(
            locale,
            ["sepa_debit", "us_bank_account"],
            seller_name=str(settings.get("seller_name")),
            creditor_id=debits.get("sepa_creditor_id"),
            pre_notification_days=debits.get("pre_notification_days"),
        )
        return HttpResponse.json(200, {"payment_method_types": types, "mandate": terms})

    def _returning_customer(self, auth: list[tuple[str, str]], body: bytes) -> bytes:
        """The checkout API never finds a customer by an unverified email (409 customer_exists): the
        merchant's back end passes ``customer_id``. This demo back end is that merchant: it looks the
        storefront's email up server-side (``GET /v1/customers?email=``, with the secret key) and
        checks out a returning customer by id; the response shows no more of them than id/email/name."""
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return body  # the API answers the 400
        customer = payload.get("customer") if isinstance(payload, dict) else None
        email = customer.get("email") if isinstance(customer, dict) else None
        if not isinstance(email, str) or not email or payload.get("customer_id"):
            return body
        found = self.dispatch_api("GET", "/v1/customers", urlencode({"email": email, "limit": 1}), auth, b"")
        if found.status != 200:
            return body
        data = json.loads(found.body or b"{}").get("data") or []
        if not data or str(data[0].get("email", "")).lower() != email.strip().lower():
            return body
        rest = {key: value for key, value in payload.items() if key != "customer"}
        return json.dumps({**rest, "customer_id": data[0]["id"]}).encode()

    # -- server ---------------------------------------------------------------------------------

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "kassa-local-gateway"
            timeout = 120  # idle keep-alive connections close after this

            def setup(self) -> None:
                super().setup()
                with gateway._conn_lock:
                    gateway._connections.add(self.connection)

            def finish(self) -> None:
                with gateway._conn_lock:
                    gateway._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._read_body()
                headers = [(k, v) for k, v in self.headers.items()]
                try:
                    resp = gateway.dispatch(self.command, self.path, headers, body)
                except Exception:
                    log.exception("gateway failure on %s %s", self.command, self.path)
                    resp = HttpResponse.json(500, {"message": "local gateway error"})
                try:
                    self.send_response(resp.status, _reason(resp.status))
                    for name, value in resp.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    if self.command != "HEAD" and resp.body:
                        self.wfile.write(resp.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

        server = _QuietServer(("127.0.0.1", self._requested_port), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kassa-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        with self._conn_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the connection threads
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None


EMAIL_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_OUTBOX_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; }
.status-sent { color: #17803d; } .status-failed { color: #b42318; } .status-pending { color: #b54708; }
.muted { color: #777; }
"""


def outbox_page(emails: list[dict[str, Any]], customer: str | None = None) -> str:
    """The local outbox as an HTML page: one row per email, newest first, every value escaped."""

    def esc(value: Any) -> str:
        return html.escape("" if value is None else str(value), quote=True)

    rows = []
    for email in emails:
        link = "/_local/outbox/" + quote(str(email["key"]), safe="")
        status = str(email.get("status") or "")
        error = f'<div class="muted">{esc(email.get("error"))}</div>' if email.get("error") else ""
        rows.append(
            "<tr>"
            f"<td>{esc(email.get('created'))}</td>"
            f"<td>{esc(email.get('to'))}</td>"
            f"<td>{esc(email.get('template'))}</td>"
            f"<td>{esc(email.get('locale'))}</td>"
            f'<td><a href="{esc(link)}">{esc(email.get("subject"))}</a>'
            f' <a class="muted" href="{esc(link)}?format=text">text</a></td>'
            f'<td class="status-{esc(status)}">{esc(status)}{error}</td>'
            "</tr>"
        )
    title = f"Outbox of {customer}" if customer else "Outbox"
    json_link = "/_local/outbox.json" + (f"?customer={quote(customer, safe='')}" if customer else "")
    body = (
        "<table><thead><tr><th>created</th><th>to</th><th>template</th><th>locale</th><th>subject</th>"
        f"<th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">No emails yet.</p>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · kassa local</title><style>{_OUTBOX_STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>"
        f'<p class="muted">{len(emails)} email(s), newest first · <a href="{esc(json_link)}">JSON</a></p>'
        f"{body}</body></html>"
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (localstripe's webhook sender, a closed browser tab) are not errors.
    Connection threads are not daemons, so ``server_close`` joins them: ``stop`` returns with no
    request thread left behind (``stop`` shuts the open sockets first, so none waits on a client)."""

    daemon_threads = False
    # the listen backlog: a burst of 100+ concurrent connections (bench, a test's thread pool) waits to
    # be accepted instead of overflowing socketserver's default of 5
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return
        super().handle_error(request, client_address)
