"""The audit trail's rules: who acted, what changed (field by field, before and after), what is never
kept (secrets and card data), how long an entry lives, and the one id that makes an entry unique
(docs/audit.md).

An entry is written once (a conditional put on its id) and never updated: its id is derived from
the request (the actor and its ``Idempotency-Key`` — or the request's own id when there is none —
and the object), so a replayed or retried request that changed the same object again finds its
entry there and adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kassa.domain.ids import derived_id

REDACTED = "[redacted]"
#: a field is redacted when its name contains one of these (secrets, tokens, bank and card numbers)
SECRET_MARKERS = ("secret", "password", "token", "iban", "account_number", "routing_number", "cvc", "signing_key")
#: … or is one of these: card data (brand, last four digits, expiry, fingerprint), payment method
#: details, and the signed links that open an invoice without a login
SECRET_FIELDS = frozenset(
    {
        "card",
        "last4",
        "fingerprint",
        "exp_month",
        "exp_year",
        "default_payment_method",
        "payment_method",
        "payment_method_id",
        "payment_method_details",
        "mandate",
        "bank_account",
        "hosted_invoice_url",
        "invoice_pdf",
    }
)
#: fields that change with every write and say nothing about what was changed
IGNORED_FIELDS = frozenset({"version", "object"})
DEFAULT_RETENTION_DAYS = 2557  # 7 years (invoices are kept 7 to 10 years under most EU tax laws)


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_FIELDS or any(marker in lowered for marker in SECRET_MARKERS)


def redact(value: Any) -> Any:
    """``value`` (JSON) with every secret field's value replaced by ``"[redacted]"``, at any depth."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret(str(k)) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The top-level fields that differ, each ``{"before", "after"}`` (redacted; absent: null). A
    secret that changed shows as changed, its values as ``"[redacted]"``."""
    old, new = redact(dict(before or {})), redact(dict(after or {}))
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old) | set(new)):
        if name in IGNORED_FIELDS:
            continue
        if (before or {}).get(name) != (after or {}).get(name):
            out[name] = {"before": old.get(name), "after": new.get(name)}
    return out


class Actor(BaseModel):
    """Who made a change: an API key (``id`` = the key's id, never its secret) or a dashboard user
    (its ``dusr_`` id); ``dashboard``: through a dashboard session."""

    model_config = ConfigDict(frozen=True)

    type: Literal["api_key", "user"]
    id: str
    dashboard: bool = False


class AuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    created: datetime
    actor: Actor
    method: str
    route: str  # the method and route template, e.g. POST /v1/prices/{price_id}
    path: str
    object_id: str  # the object that changed (``settings`` for the merchant settings)
    object_type: str
    action: Literal["created", "updated", "deleted"]
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    request_id: str | None = None
    idempotency_key: str | None = None
    expires_at: datetime


def event_id(actor: Actor, request_key: str, object_id: str) -> str:
    """One entry per (actor, request, object): ``request_key`` is the Idempotency-Key (``idem:…``) or
    the request's id (``req:…``)."""
    return derived_id("aud", actor.type, actor.id, request_key, object_id)


@dataclass(frozen=True)
class AuditedRequest:
    """The request that made a change: who, and which request it was."""

    actor: Actor
    request_key: str  # idem:<Idempotency-Key> or req:<request id>: one entry per request and object
    method: str
    route: str  # the method and route template
    path: str
    request_id: str | None = None
    idempotency_key: str | None = None


def audit_event(
    request: AuditedRequest,
    *,
    object_id: str,
    object_type: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    created: datetime,
    retention_days: int,
) -> AuditEvent | None:
    """The entry for one object a request changed, or None when nothing changed (a no-op, a read)."""
    diff = changes(before, after)
    if not diff:
        return None
    action: Literal["created", "updated", "deleted"] = (
        "created"
        if before is None
        else "deleted"
        if after is None or (after or {}).get("deleted") is True
        else "updated"
    )
    return AuditEvent(
        id=event_id(request.actor, request.request_key, object_id),
        created=created,
        actor=request.actor,
        method=request.method,
        route=request.route,
        path=request.path,
        object_id=object_id,
        object_type=object_type,
        action=action,
        changes=diff,
        request_id=request.request_id,
        idempotency_key=request.idempotency_key,
        expires_at=created + timedelta(days=retention_days),
    )


class PendingRef(BaseModel):
    """An object a pending request named (with its state before, redacted) or answered."""

    model_config = ConfigDict(frozen=True)

    kind: str
    id: str
    before: dict[str, Any] | None = None


class PendingAudit(BaseModel):
    """The durable half of recording a request (docs/audit.md, *Recorded once*): written before the
    route runs, removed once its entries are written. One left behind (the entries could not be written,
    the function stopped) is delivered later: its objects are read again and what changed is recorded
    under the same ids, so it is recorded once whichever way it gets there.

    ``named``: the objects the request named, with their state before (redacted: a secret is never
    stored, so a secret's change is not seen by a late delivery); ``shown``: those its answer showed,
    once it answered (None: it had not); ``answered``: when it answered (the entries' time)."""

    model_config = ConfigDict(frozen=True)

    key: str
    created: datetime
    actor: Actor
    request_key: str
    method: str
    route: str
    path: str
    request_id: str | None = None
    idempotency_key: str | None = None
    named: list[PendingRef] = Field(default_factory=list)
    shown: list[PendingRef] | None = None
    answered: datetime | None = None

    @property
    def request(self) -> AuditedRequest:
        return AuditedRequest(
            actor=self.actor,
            request_key=self.request_key,
            method=self.method,
            route=self.route,
            path=self.path,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
        )


def pending_key(request: AuditedRequest) -> str:
    """The pending record's key: one per (actor, request)."""
    return derived_id("audp", request.actor.type, request.actor.id, request.request_key)
