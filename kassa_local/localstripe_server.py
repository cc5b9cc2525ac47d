"""localstripe (a stateful fake Stripe) served in-process on 127.0.0.1.

localstripe's own CLI binds every interface and pickles its whole store to
``/tmp/localstripe.pickle`` after every write; here it runs on an aiohttp ``AppRunner`` in a
dedicated thread with its own event loop, bound to 127.0.0.1, with the disk persistence disabled.
Its state (``localstripe.resources.store`` and the registered webhooks) is process-wide: one
local stack per process at a time.

localstripe ignores ``Idempotency-Key``; ``StripeIdempotency``, the outermost middleware, applies
Stripe's rules in front of it, so a retried call that would charge or refund twice on Stripe is
caught here too (a replay, or a 400 ``idempotency_error`` for other parameters).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import requests
from aiohttp import web

log = logging.getLogger("kassa_local.localstripe")

_patched = False


#: SEPA test IBANs that localstripe debits and the bank then returns, with the bank's reason (Stripe's
#: failure codes). localstripe fails DE62… with a card's ``card_declined``; a bank answers with a
#: return reason, which decides whether kassa retries (soft) or asks for a new payment method (hard).
SEPA_RETURNS: dict[str, tuple[str, str]] = {
    "DE62370400440532013001": ("account_closed", "The customer's bank account has been closed."),
    "DE78370400440532013004": ("insufficient_funds", "The customer's account has insufficient funds."),
}


def _patch_localstripe() -> None:
    """No pickling to /tmp: the store lives in memory only. A returned SEPA debit carries the bank's
    reason (``SEPA_RETURNS``) instead of a card's decline code."""
    global _patched
    if _patched:
        return
    from localstripe import resources

    def _no_op(self: Any) -> None:
        return None

    resources.Store.dump_to_disk = _no_op
    resources.Store.try_load_from_disk = _no_op

    declined = resources.PaymentMethod._charging_is_declined
    set_failure = resources.Charge._set_auth_failure

    def _charging_is_declined(self: Any) -> bool:
        if getattr(self, "type", None) == "sepa_debit" and getattr(self, "_sepa_debit_iban", "") in SEPA_RETURNS:
            return True
        return bool(declined(self))

    def _set_auth_failure(self: Any) -> None:
        set_failure(self)
        try:
            pm = resources.PaymentMethod._api_retrieve(self.payment_method)
        except Exception:  # a source or card object: a card decline
            return
        reason = SEPA_RETURNS.get(getattr(pm, "_sepa_debit_iban", ""))
        if pm.type == "sepa_debit" and reason is not None:
            self.failure_code, self.failure_message = reason

    initialize = resources.Charge._initialize_charge

    def _initialize_charge(
        self: Any, on_success: Any = None, on_failure_now: Any = None, on_failure_later: Any = None
    ) -> None:
        # localstripe marks a SEPA charge succeeded at once and only sends the event later; on Stripe
        # the PaymentIntent is ``processing`` until the bank settles (here ~0.5 s of wall time)
        if self._authorized and self.captured and self._is_async_payment_method():
            self._trigger_payment(on_success)
            return
        initialize(self, on_success, on_failure_now, on_failure_later)

    resources.PaymentMethod._charging_is_declined = _charging_is_declined
    resources.Charge._set_auth_failure = _set_auth_failure
    resources.Charge._initialize_charge = _initialize_charge
    _patched = True


IDEMPOTENCY_TTL_S = 24 * 3600  # Stripe keeps an idempotency key's result for 24 hours
# Stripe saves the result of a request that started executing; these answers may change on a retry
_NOT_SAVED = frozenset({401, 403, 409, 429})


@dataclass
class _Saved:
    method: str
    path: str
    fingerprint: str
    at: float
    status: int = 0  # 0: still running
    body: bytes = b""
    content_type: str = "application/json"


@dataclass
class StripeIdempotency:
    """Stripe's ``Idempotency-Key`` rules in front of localstripe, which ignores the header.

    On ``POST /v1/…`` with an ``Idempotency-Key`` (per API key, kept ``IDEMPOTENCY_TTL_S``):

    - the same key with the same parameters (and endpoint) replays the first response, status and
      body, with ``Idempotent-Replayed: true`` — nothing is created again;
    - the same key with other parameters or another endpoint is ``400`` ``idempotency_error``;
    - a request while one with the same key is still running is ``409`` ``idempotency_key_in_use``
      (stripe-python retries it);
    - a 5xx, 401, 403, 409 or 429 is not saved: a retry executes again.

    GET and DELETE are idempotent by nature and pass through, as on Stripe.
    """

    saved: dict[tuple[str, str], _Saved] = field(default_factory=dict)
    replayed: int = 0
    rejected: int = 0

    def stats(self) -> dict[str, int]:
        return {"keys": len(self.saved), "replayed": self.replayed, "rejected": self.rejected}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None or request.method != "POST" or not request.path.startswith("/v1/"):
            return await handler(request)
        if not key.strip() or len(key) > 255:
            return _stripe_error(
                400, "invalid_request_error", f"Invalid idempotency key {key[:300]!r}: 1 to 255 characters"
            )
        from localstripe.server import get_api_key

        account = get_api_key(request) or ""
        fingerprint = await _fingerprint(request)
        now = time.time()
        for stale in [k for k, v in self.saved.items() if v.status and now - v.at > IDEMPOTENCY_TTL_S]:
            del self.saved[stale]
        known = self.saved.get((account, key))
        if known is not None:
            if (known.method, known.path) != (request.method, request.path):
                self.rejected += 1
                return _stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used for the same endpoint they were first used for "
                    f"({known.method} {known.path} vs {request.method} {request.path}). Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                )
            if known.fingerprint != fingerprint:
                self.rejected += 1
                return _stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                )
            if not known.status:
                return _stripe_error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key (probably means you "
                    f"submitted twice, and the other request is still going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
            self.replayed += 1
            replay = web.Response(status=known.status, body=known.body, content_type=known.content_type)
            replay.headers["Idempotency-Key"] = key
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        entry = _Saved(method=request.method, path=request.path, fingerprint=fingerprint, at=now)
        self.saved[(account, key)] = entry
        saved = False
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # e.g. a route localstripe does not have
                response = exc
            if (
                isinstance(response, web.Response)
                and response.status < 500
                and response.status not in _NOT_SAVED
                and response.body is not None
                and isinstance(response.body, bytes)
            ):
                entry.status, entry.body = response.status, response.body
                entry.content_type = response.content_type or "application/json"
                entry.at = time.time()
                saved = True
            response.headers["Idempotency-Key"] = key
            if isinstance(response, web.HTTPException):
                raise response
            return response
        finally:
            if not saved:
                self.saved.pop((account, key), None)


IDEMPOTENCY_APP_KEY = web.AppKey("kassa_idempotency", StripeIdempotency)


async def _fingerprint(request: web.Request) -> str:
    """The request's parameters, canonical: form-encoded (as stripe-python sends them) or JSON."""
    from localstripe.server import get_post_data

    try:
        data = await get_post_data(request, remove_auth=False)
        text = json.dumps(data, sort_keys=True, default=str)
    except Exception:  # not parseable: the raw body
        text = (await request.read()).decode("utf-8", "replace")
    return hashlib.sha256(text.encode()).hexdigest()


def _stripe_error(status: int, type_: str, message: str, code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status)


def _fresh_app() -> web.Application:
    """A new Application with localstripe's routes, middlewares and CORS hook.

    ``localstripe.server.app`` binds itself to the first event loop that runs it; a copy per start
    lets one process start and stop the local stack several times (tests do).
    """
    with warnings.catch_warnings():
        # localstripe's handlers are plain functions, which aiohttp deprecates (and still supports)
        warnings.simplefilter("ignore", DeprecationWarning)
        from localstripe import server

        src: web.Application = server.app
        idempotency = StripeIdempotency()
        app = web.Application(middlewares=[idempotency.middleware, *src.middlewares])
        app[IDEMPOTENCY_APP_KEY] = idempotency
        for callback in src.on_response_prepare:
            app.on_response_prepare.append(callback)
        for route in src.router.routes():
            if route.resource is None:  # pragma: no cover - localstripe has none
                continue
            app.router.add_route(route.method, route.resource.canonical, route.handler)
    return app


class LocalStripe:
    """Runs ``localstripe.server.app`` on 127.0.0.1:{port} (0 = pick a free port)."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.idempotency = StripeIdempotency()  # replaced by the running app's (replays, rejections)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        _patch_localstripe()
        from localstripe import resources, webhooks

        resources.store.clear()
        webhooks._webhooks.clear()
        self._thread = threading.Thread(target=self._serve, name="kassa-localstripe", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("localstripe did not start in time")
        if self._error is not None:
            raise RuntimeError(f"localstripe failed to start: {self._error}") from self._error

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
            app = _fresh_app()
            self.idempotency = app[IDEMPOTENCY_APP_KEY]
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self._requested_port)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def register_webhook(self, webhook_id: str, url: str, secret: str) -> None:
        resp = requests.post(
            f"{self.url}/_config/webhooks/{webhook_id}", data={"url": url, "secret": secret}, timeout=10
        )
        resp.raise_for_status()

    def pending_webhooks(self) -> int:
        """Webhook deliveries scheduled by localstripe and not finished yet (each waits ~1 s), and bank
        debits it has not settled yet (SEPA: ~0.5 s, then their webhook)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return 0

        async def count() -> int:
            return sum(
                1
                for task in asyncio.all_tasks()
                if not task.done()
                and (
                    getattr(task.get_coro(), "__name__", "") == "_send_webhook"
                    or getattr(task.get_coro(), "__qualname__", "").startswith("Charge.")  # a debit settling
                )
            )

        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)

    def stop(self, timeout: float = 10) -> None:
        loop, runner = self._loop, self._runner
        if loop is not None and loop.is_running():

            async def shutdown() -> None:
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current:
                        task.cancel()
                if runner is not None:
                    await runner.cleanup()
                await asyncio.get_running_loop().shutdown_default_executor()  # getaddrinfo threads

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=timeout)
            except Exception:  # pragma: no cover - diagnostic
                log.exception("localstripe did not shut down cleanly")
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():  # pragma: no cover - diagnostic
                log.warning("localstripe thread did not stop within %s s", timeout)
        self._loop = None
        self._runner = None
