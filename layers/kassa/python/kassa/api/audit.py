"""The audit trail of the merchant API (docs/audit.md): a resolver middleware around every write to
``/v1`` (POST, PUT, DELETE), inside the ``Idempotency-Key`` middleware, so a replayed answer never
runs it again.

Before the route runs, the objects the request names (its path parameters, the ids in its body)
are read and kept in a pending record (``kassa.services.audit.hold``: if it cannot be written, the
request fails before it changes anything); after a 2xx answer they are read again, with those the
answer shows, ``kassa.services.audit.record`` appends one entry per object that changed and the
pending record is removed. When the entries cannot be written then, the pending record stays (with
what the answer showed) and is delivered later (``deliver_stale``: by an audit listing, or by a write
once a minute per warm function — not a Query on every request): recorded once, or
not made. A request that fails
(4xx, 5xx, an exception) records nothing; a write that changed nothing (a repeated action, an
identical PUT) records nothing. Who acted is what authentication found
(``kassa.api.common.current_actor``: a secret key, or a dashboard user through its session).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from kassa.adapters import container
from kassa.api.common import current_actor
from kassa.domain.audit import Actor, AuditedRequest

logger = logging.getLogger("kassa.api.audit")

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: writes that change nothing, not read twice for nothing
NOT_AUDITED = frozenset({("POST", "/v1/subscriptions/{subscription_id}/preview")})
SETTINGS_ROUTE = "/v1/settings"
#: how often a warm function's writes look for pending records left behind (a Query of one index
#: partition, not one per request); the audit listing always looks
SWEEP_EVERY = timedelta(minutes=1)
_swept_at: datetime | None = None


def audit_middleware(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    event = app.current_event
    method = event.http_method.upper()
    if method not in AUDITED_METHODS or not event.path.startswith("/v1/"):
        return next_middleware(app)
    route = app.request.route
    who = current_actor(app)
    if who is None or (method, route) in NOT_AUDITED:
        return next_middleware(app)
    actor = Actor(type="api_key" if who.kind == "key" else "user", id=who.id, dashboard=who.session)
    from kassa.services import audit

    store = container.store()
    log = container.audit_log()
    named = audit.refs_named(app.request.path_parameters, _json(event.body))
    if route == SETTINGS_ROUTE:
        named.append(audit.Ref(audit.SETTINGS, audit.SETTINGS))
    key = event.headers.get("Idempotency-Key")
    request_id = event.request_context.request_id or None
    request = AuditedRequest(
        actor=actor,
        request_key=f"idem:{key}" if key else f"req:{request_id or uuid.uuid4().hex}",
        method=method,
        route=f"{method} {route}",
        path=event.path,
        request_id=request_id,
        idempotency_key=key,
    )
    started = container.now()
    before = audit.snapshots(store, named)
    # the durable half: if this cannot be written the request fails here, before it changes anything
    pending = audit.hold(log, request, before, started)
    try:
        result = next_middleware(app)  # an exception (a domain error: a 4xx) records nothing
    except Exception:
        _release(log, pending.key)
        raise
    status, payload = _answer(result)
    if not 200 <= status < 300:
        _release(log, pending.key)
        return result
    clock = container.clocks.current()
    shown = audit.refs_in(payload)
    answered = clock.now()
    try:
        audit.record(log, store, clock, request, before, shown, started, created=answered)
        log.release(pending.key)
    except Exception:  # the change is made: answer it; its pending record delivers the entries later
        logger.exception("audit entry of %s %s not written now: left to its pending record", method, event.path)
        try:
            log.hold(audit.answered(pending, shown, answered))
        except Exception:
            logger.exception("pending audit record of %s %s not updated (its named objects are kept)", method,
                             event.path)  # fmt: skip
    if _sweep_due(answered):
        try:
            audit.deliver_stale(log, store, clock)  # any left behind by earlier requests
        except Exception:
            logger.exception("pending audit records not delivered (the next request tries again)")
    return result


def _sweep_due(now: datetime) -> bool:
    """Whether this write looks for pending records left behind: once per SWEEP_EVERY in a warm
    function (a clock set back starts again)."""
    global _swept_at
    if _swept_at is not None and _swept_at <= now < _swept_at + SWEEP_EVERY:
        return False
    _swept_at = now
    return True


def _release(log: Any, key: str) -> None:
    """A request that failed changed nothing to record: drop its pending record (one that stays
    behind is delivered later and finds nothing changed)."""
    try:
        log.release(key)
    except Exception:
        logger.exception("pending audit record %s not removed", key)


def _json(body: str | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _answer(result: Any) -> tuple[int, Any]:
    """The status and JSON body of what a route returned (a Response, a dict, or a (body, status) tuple)."""
    if isinstance(result, Response):
        body = result.body
        return result.status_code, _json(body) if isinstance(body, str) else body
    if isinstance(result, tuple):
        return int(result[1]) if len(result) > 1 else 200, result[0]
    return 200, result
