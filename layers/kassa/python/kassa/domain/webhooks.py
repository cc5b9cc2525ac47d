"""Outbound webhooks, as Stripe's: endpoints, event matching, signatures, the retry schedule, the
3-day disable rule and the addresses a delivery may never reach (SSRF). Pure: no I/O; every
function gets ``now`` (and resolved addresses) passed in. See docs/webhooks.md.

Signature (the scheme of Stripe's ``Stripe-Signature``, so ``stripe.WebhookSignature.verify_header``
verifies it): ``Kassa-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>``, one ``v1``
per valid secret while a rolled secret is still valid (24 h).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets as _secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel

from kassa.domain.errors import InvalidInput
from kassa.domain.events import DomainEvent

SIGNATURE_HEADER = "Kassa-Signature"
EVENT_ID_HEADER = "Kassa-Event-Id"
MAX_ENDPOINTS = 16  # as Stripe's limit per account: a delivery fans out to at most this many
MAX_BODY_BYTES = 256 * 1024  # a payload larger than this is never sent (recorded as failed)
TIMEOUT_S = 10.0  # per attempt: connect + answer
ROLL_OVERLAP = timedelta(hours=24)  # a rolled secret keeps signing (a second v1) this long
RETRY_FOR = timedelta(days=3)  # Stripe retries for up to 3 days (live mode), kassa too
DISABLE_AFTER = timedelta(days=3)  # an endpoint failing this long without one success is disabled
FIRST_RETRY = timedelta(minutes=1)
BACKOFF_FACTOR = 3
MAX_RETRY_GAP = timedelta(hours=6)
MAX_URL = 2048

#: the events kassa publishes (kassa.domain.events names, like Stripe's), for docs and validation
EVENT_TYPES: tuple[str, ...] = (
    "billing.meter.created", "billing.meter.deactivated", "billing.meter.error_report_triggered",
    "billing_portal.session.created",
    "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.refund.updated", "charge.refunded",
    "coupon.created", "coupon.deleted", "credit_note.created",
    "customer.created", "customer.updated",
    "customer.discount.created", "customer.discount.deleted", "customer.discount.updated",
    "customer.subscription.created", "customer.subscription.deleted", "customer.subscription.paused",
    "customer.subscription.resumed", "customer.subscription.trial_will_end", "customer.subscription.updated",
    "entitlements.active_entitlement_summary.updated", "experiment.created", "experiment.stopped",
    "invoice.created", "invoice.finalized", "invoice.marked_uncollectible", "invoice.paid",
    "invoice.payment_action_required", "invoice.payment_failed", "invoice.payment_processing",
    "invoice.payment_succeeded", "invoice.upcoming", "invoice.updated", "invoice.voided",
    "payment_method.automatically_updated", "payment_method.updated",
    "price.created", "product.created", "promotion_code.created", "promotion_code.updated",
    "radar.early_fraud_warning.created", "usage.threshold_reached",
)  # fmt: skip

DeliveryStatus = Literal["pending", "retrying", "succeeded", "failed"]


class SigningSecret(BaseModel):
    secret: str
    expires_at: datetime | None = None  # None: the current secret; else a rolled one, valid until then


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    enabled_events: list[str]
    description: str | None = None
    status: Literal["enabled", "disabled"] = "enabled"
    disabled_reason: str | None = None  # "failing" (3 days without a success) | None (by the merchant)
    secrets: list[SigningSecret]
    created: datetime
    failing_since: datetime | None = None  # the first failed attempt since the last success
    version: int = 0

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The API shape: ``secret`` only when it was just created or rolled (as Stripe)."""
        body = self.model_dump(mode="json", exclude={"secrets", "version"})
        body["object"] = "webhook_endpoint"
        if with_secret:
            body["secret"] = self.secrets[0].secret
        return body


class EndpointLimitReached(InvalidInput):
    """One endpoint more than ``MAX_ENDPOINTS`` (the store refuses it atomically with the write)."""

    def __init__(self, limit: int = MAX_ENDPOINTS) -> None:
        super().__init__(f"at most {limit} webhook endpoints: delete one to create another", param="url")


@dataclass(frozen=True)
class RouteState:
    """Which endpoint change the route (the EventBridge rule) was last put for: ``changes`` counts the
    endpoint writes that change what is subscribed (written with them, atomically), ``synced`` is the
    ``changes`` a put of the whole list was made after. Behind: a write whose put never came (the
    process died, or the put failed) — the scheduled check puts it (``Webhooks.heal_route``)."""

    changes: int = 0
    synced: int = 0

    @property
    def behind(self) -> bool:
        return self.synced < self.changes


class Delivery(BaseModel):
    """One event to one endpoint: its log entry and retry state (at least once; a success ends it)."""

    endpoint: str
    event_id: str
    event_type: str
    event_created: datetime
    status: DeliveryStatus = "pending"
    attempts: int = 0
    round_start: int = 0  # attempts made before the current round of retries (a redelivery starts one)
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    response_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    version: int = 0


def new_secret() -> str:
    return "whsec_" + _secrets.token_hex(24)


# ---------------------------------------------------------------------------------------- matching
def check_enabled_events(patterns: list[str]) -> list[str]:
    """``*``, a known event type, or a prefix wildcard ``customer.subscription.*`` (which must match one)."""
    if not patterns:
        raise InvalidInput("enabled_events needs at least one event type (or *)", param="enabled_events")
    for i, pattern in enumerate(patterns):
        if pattern == "*":
            continue
        if pattern.endswith(".*"):
            prefix = pattern[:-1]
            if any(t.startswith(prefix) for t in EVENT_TYPES):
                continue
        elif pattern in EVENT_TYPES:
            continue
        raise InvalidInput(f"{pattern!r} is not an event type kassa sends (see docs/webhooks.md)",
                           param=f"enabled_events.{i}")  # fmt: skip
    return list(dict.fromkeys(patterns))


def matches(patterns: list[str], event_type: str) -> bool:
    """``*`` matches every event; ``a.b.*`` every event whose type starts with ``a.b.``."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def subscribed(endpoints: list[WebhookEndpoint]) -> list[str]:
    """What the enabled endpoints subscribe to, together: ``[]`` nothing (no enabled endpoint),
    ``["*"]`` every event, else the event types and prefix wildcards (``invoice.*``) of their
    ``enabled_events``, without those a wider wildcard covers. What the delivery queue must receive."""
    wanted = {p for e in endpoints if e.status == "enabled" for p in e.enabled_events}
    if "*" in wanted:
        return ["*"]
    prefixes = {p[:-1] for p in wanted if p.endswith(".*")}
    widest = sorted(p for p in prefixes if not any(o != p and p.startswith(o) for o in prefixes))
    exact = sorted(p for p in wanted if not p.endswith(".*") and not any(p.startswith(w) for w in widest))
    return [*exact, *(f"{w}*" for w in widest)]


# ---------------------------------------------------------------------------------------- payload
def payload(event: DomainEvent) -> bytes:
    """The JSON body: Stripe's event shape (``created`` in unix seconds, ``data.object``)."""
    body = {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": unix(event.created),
        "data": {"object": event.data, "previous_attributes": event.previous_attributes},
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def unix(when: datetime) -> int:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return int(aware.timestamp())


# ---------------------------------------------------------------------------------------- signing
def valid_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    return [s.secret for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]


def signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: list[str], timestamp: int) -> str:
    """``t=<unix>,v1=<hex>[,v1=<hex>]``: one v1 per secret (the current first)."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(body, s, timestamp)}" for s in secrets)])


def roll_secret(
    endpoint: WebhookEndpoint, fresh: str, now: datetime, overlap: timedelta = ROLL_OVERLAP
) -> WebhookEndpoint:
    """A new current secret; the old current one stays valid ``overlap`` more (already rolled ones
    keep their expiry; expired ones are dropped)."""
    kept = [
        SigningSecret(secret=s.secret, expires_at=s.expires_at or now + overlap)
        for s in endpoint.secrets
        if s.expires_at is None or s.expires_at > now
    ]
    return endpoint.model_copy(update={"secrets": [SigningSecret(secret=fresh), *kept]})


# ---------------------------------------------------------------------------------------- retries
def retry_gap(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 min × 3^(n−1), at most 6 h
    (1 m, 3 m, 9 m, 27 m, 81 m, 4 h 3 m, then every 6 h)."""
    if attempts < 1:
        raise ValueError("attempts counts from 1")
    gap = FIRST_RETRY * BACKOFF_FACTOR ** min(attempts - 1, 20)
    return min(gap, MAX_RETRY_GAP)


def next_attempt(first_attempt_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failures, or None: the 3 days since the first try are
    over. The last try is at 3 days exactly, so an endpoint failing all along reaches the disable rule."""
    last = first_attempt_at + RETRY_FOR
    if now >= last:
        return None
    return min(now + retry_gap(attempts), last)


def retry_schedule(start: datetime) -> list[datetime]:
    """Every attempt's time for a delivery that always fails (the first at ``start``)."""
    times, attempts = [start], 0
    while True:
        attempts += 1
        at = next_attempt(start, attempts, times[-1])
        if at is None:
            return times
        times.append(at)


def record_attempt(delivery: Delivery, now: datetime, ok: bool, code: int | None, latency_ms: int | None,
                   error: str | None) -> Delivery:  # fmt: skip
    """The delivery after one attempt: succeeded, retrying (with its next time) or failed for good."""
    first = delivery.first_attempt_at or now
    attempts = delivery.attempts + 1
    update: dict[str, Any] = {
        "attempts": attempts,
        "first_attempt_at": first,
        "last_attempt_at": now,
        "response_code": code,
        "latency_ms": latency_ms,
        "error": None if ok else (error or f"HTTP {code}")[:500],
    }
    if ok:
        update.update(status="succeeded", next_attempt_at=None)
    else:
        at = next_attempt(first, attempts - delivery.round_start, now)
        update.update(status="retrying" if at else "failed", next_attempt_at=at)
    return delivery.model_copy(update=update)


def after_attempt(endpoint: WebhookEndpoint, now: datetime, ok: bool) -> tuple[WebhookEndpoint, bool]:
    """The endpoint's failure clock after an attempt, and whether this attempt disables it: an
    endpoint with no successful attempt for 3 days (since its first failure) is disabled."""
    if ok:
        return endpoint.model_copy(update={"failing_since": None}), False
    since = endpoint.failing_since or now
    if endpoint.status == "enabled" and now - since >= DISABLE_AFTER:
        disabled = {"failing_since": since, "status": "disabled", "disabled_reason": "failing"}
        return endpoint.model_copy(update=disabled), True
    return endpoint.model_copy(update={"failing_since": since}), False


def ok_status(code: int | None) -> bool:
    return code is not None and 200 <= code < 300


# ---------------------------------------------------------------------------------------- SSRF
def check_url(url: str, *, https_only: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URL; https only in AWS, no credentials in it."""
    if len(url) > MAX_URL:
        raise InvalidInput(f"url is longer than {MAX_URL} characters", param="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL", param="url") from None
    allowed = ("https",) if https_only else ("https", "http")
    if parts.scheme not in allowed:
        raise InvalidInput(f"url must be {' or '.join(allowed)}", param="url")
    if not parts.hostname:
        raise InvalidInput("url has no host", param="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not contain credentials", param="url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refused_address(address: str) -> str | None:
    """Why a delivery may not connect to this IP (None: a public address). Loopback, private,
    link-local (169.254.169.254, the instance metadata service), carrier-grade NAT, multicast,
    reserved and unspecified addresses are refused, IPv4 and IPv6, IPv4-mapped IPv6 included."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag in ("is_loopback", "is_link_local", "is_private", "is_multicast", "is_reserved", "is_unspecified"):
        if getattr(ip, flag):
            return f"{ip} is a {flag[3:].replace('_', '-')} address"
    if not ip.is_global:  # 100.64.0.0/10 and other special-purpose ranges
        return f"{ip} is not a public address"
    return None


def refused_addresses(addresses: list[str]) -> str | None:
    """A host is refused when ANY of its addresses is (a resolver answering a public and a private
    one must not get the private one used)."""
    if not addresses:
        return "the host has no address"
    for address in addresses:
        reason = refused_address(address)
        if reason:
            return reason
    return None


def delivery_log_entry(delivery: Delivery) -> dict[str, Any]:
    body = delivery.model_dump(mode="json", exclude={"version"})
    body["object"] = "webhook_delivery"
    return body
