"""Outbound webhooks: the merchant's endpoints, fan-out of domain events, signed attempts with
retries on a delayed queue, redelivery, and the 3-day disable with an email to the merchant.

Messages on the delivery queue (``webhook-deliveries``)::

    an EventBridge envelope {"detail-type", "detail": DomainEvent}   -> fan_out: one delivery per
                                                                        matching enabled endpoint
    {"kind": "webhook_attempt", "endpoint", "event", "attempt"}       -> attempt

Every step is idempotent and order-tolerant: a delivery is claimed once per (endpoint, event); an
attempt message carries the number of attempts made when it was sent, so a duplicate or stale
message (another copy already attempted) is dropped; an early message (the wait was longer than the
queue's longest delay) is sent again for the rest of the wait. The rules (matching, signature,
backoff, disable) are in ``kassa.domain.webhooks``.

Only the events some enabled endpoint subscribes to reach the queue: every endpoint change puts the
route (the EventBridge rule) to their union (``sync_route``), and an event that arrives anyway (the
deployed catch-all rule, an endpoint disabled meanwhile) narrows it. The store counts each such change
with its write and keeps the change the route was last put for: a change whose put never came (the
request died between the two, or the put failed) is put by the scheduled check (``heal_route``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from kassa.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.ids import new_id
from kassa.domain.webhooks import (
    EVENT_ID_HEADER,
    MAX_BODY_BYTES,
    MAX_ENDPOINTS,
    SIGNATURE_HEADER,
    Delivery,
    SigningSecret,
    WebhookEndpoint,
    after_attempt,
    check_enabled_events,
    check_url,
    matches,
    new_secret,
    ok_status,
    payload,
    record_attempt,
    refused_addresses,
    roll_secret,
    signature_header,
    subscribed,
    unix,
    valid_secrets,
)
from kassa.services.ports import (
    Clock,
    DelayedQueue,
    Mailer,
    Outbox,
    OutgoingEmail,
    WebhookResponse,
    WebhookRoute,
    WebhookSender,
    WebhookStore,
)

log = logging.getLogger(__name__)

ATTEMPT = "webhook_attempt"
MAX_REDELIVER = 1000  # deliveries one time-range redelivery sends again
Resolve = Callable[[str], list[str]]  # host -> its IP addresses


@dataclass(frozen=True)
class Notify:
    """How the merchant is told an endpoint was disabled: through the outbox, to ``to``."""

    outbox: Outbox
    mailer: Mailer
    sender: str
    to: Callable[[], str]  # the merchant's address (settings.support_email), read when needed


class Webhooks:
    def __init__(
        self,
        store: WebhookStore,
        clock: Clock,
        *,
        sender: WebhookSender | None = None,
        queue: DelayedQueue | None = None,
        public_only: bool = True,
        resolve: Resolve | None = None,
        notify: Notify | None = None,
        route: WebhookRoute | None = None,
    ) -> None:
        """``public_only`` (AWS): https URLs whose host resolves to public addresses only; off on
        the local stack (any URL, e.g. a receiver on 127.0.0.1). ``route``: the filter in front of
        the delivery queue, kept to what the enabled endpoints subscribe to (None: every event comes)."""
        self.store = store
        self.clock = clock
        self._sender = sender
        self._queue = queue
        self.public_only = public_only
        self._resolve = resolve
        self._notify = notify
        self._route = route

    def now(self) -> datetime:
        return self.clock.now().replace(microsecond=0)

    # ------------------------------------------------------------------ endpoints
    def check_url(self, url: str) -> str:
        _, host, _ = check_url(url, https_only=self.public_only)
        if self.public_only:
            if self._resolve is None:  # pragma: no cover - wiring error
                raise RuntimeError("public_only needs a resolver")
            try:
                addresses = self._resolve(host)
            except OSError:
                raise InvalidInput(f"url: the host {host} does not resolve", param="url") from None
            reason = refused_addresses(addresses)
            if reason:
                raise InvalidInput(f"url: {host} is refused ({reason}); use a public https URL", param="url")
        return url

    def create(self, url: str, enabled_events: list[str], description: str | None = None) -> WebhookEndpoint:
        events = check_enabled_events(enabled_events)
        self.check_url(url)
        endpoint = WebhookEndpoint(
            id=new_id("we"),
            url=url,
            enabled_events=events,
            description=description,
            secrets=[SigningSecret(secret=new_secret())],
            created=self.now(),
        )
        self.store.add_endpoint(endpoint, MAX_ENDPOINTS)  # EndpointLimitReached: counted with the write
        try:
            self.sync_route()
        except Unavailable:
            self.store.delete_endpoint(endpoint.id)  # not half made: it would receive nothing
            raise
        return endpoint

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return self.store.get_endpoint(endpoint_id)

    def endpoints(self) -> list[WebhookEndpoint]:
        return self.store.list_endpoints()

    def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        enabled_events: list[str] | None = None,
        description: str | None = None,
        disabled: bool | None = None,
    ) -> WebhookEndpoint:
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = self.check_url(url)
        if enabled_events is not None:
            changes["enabled_events"] = check_enabled_events(enabled_events)
        if description is not None:
            changes["description"] = description
        if disabled is not None:
            changes["status"] = "disabled" if disabled else "enabled"
            changes["disabled_reason"] = None
            if not disabled:
                changes["failing_since"] = None  # enabled again: the 3 days start over
        reroutes = "enabled_events" in changes or "status" in changes
        changed = self._change(endpoint_id, lambda _: changes, reroutes=reroutes)
        if reroutes:  # Unavailable: the change is saved; sent again, or the scheduled check, puts the route
            self.sync_route()
        return changed

    def roll(self, endpoint_id: str) -> WebhookEndpoint:
        """A new signing secret; the previous one keeps signing (a second v1) for 24 hours."""
        fresh = new_secret()
        now = self.now()
        return self._change(endpoint_id, lambda e: {"secrets": roll_secret(e, fresh, now).secrets})

    def delete(self, endpoint_id: str) -> None:
        self.store.get_endpoint(endpoint_id)
        self.store.delete_endpoint(endpoint_id)
        self.sync_route()

    def sync_route(self, *, cached: bool = False) -> list[str]:
        """Put the route in front of the delivery queue to what the enabled endpoints subscribe to
        (none: nothing reaches the queue, so a merchant without endpoints costs nothing). Listed again
        after the put: a concurrent change that put an older list first is put over (3 rounds; the
        list read last is always put, so changes that keep coming never leave an older one put).
        The route changes counted before the first list are then marked put (not by a ``cached``
        put, which may have been skipped on this container's memory of an older put)."""
        if self._route is None:
            return subscribed(self.store.list_endpoints())
        state = None if cached else self.store.route_state()  # read before the list: it covers them
        wanted = self._put_route(self._route, cached)
        if state is not None and state.changes:
            try:
                self.store.mark_route_synced(state.changes)
            except Unavailable as error:  # the route is put; the scheduled check only puts it again
                log.warning("the webhook route was put but not marked: %s", error.message)
        return wanted

    def _put_route(self, route: WebhookRoute, cached: bool) -> list[str]:
        wanted = subscribed(self.store.list_endpoints())
        for _ in range(3):
            route.route(wanted, cached=cached)
            again = subscribed(self.store.list_endpoints())
            if again == wanted:
                return wanted
            wanted = again
        route.route(wanted, cached=cached)
        return wanted

    def heal_route(self) -> str:
        """The scheduled check: when an endpoint change was written but its route put never came
        (the request died in between, or the put failed), put the route now. One read when nothing
        is behind."""
        if self._route is None:
            return "no_route"
        if not self.store.route_state().behind:
            return "in_sync"
        self.sync_route()
        return "synced"

    def route_behind(self) -> bool:
        """Whether ``heal_route`` would put the route (the local stack's idle probe)."""
        return self._route is not None and self.store.route_state().behind

    def _change(
        self, endpoint_id: str, change: Callable[[WebhookEndpoint], dict[str, Any]], *, reroutes: bool = False
    ) -> WebhookEndpoint:
        for _ in range(5):
            current = self.store.get_endpoint(endpoint_id)
            try:
                return self.store.save_endpoint(current.model_copy(update=change(current)), reroutes=reroutes)
            except Conflict:
                continue
        raise Conflict(f"webhook endpoint {endpoint_id} kept changing; retry")

    # ------------------------------------------------------------------ delivery
    def handle(self, message: dict[str, Any]) -> str:
        """One message of the delivery queue (see the module docstring)."""
        if message.get("kind") == ATTEMPT:
            return self.attempt(str(message.get("endpoint")), str(message.get("event")), message.get("attempt"))
        detail = message.get("detail")
        if not isinstance(detail, dict):
            raise InvalidInput("an EventBridge event with a kassa domain event as detail is expected", param="detail")
        return self.fan_out(DomainEvent.model_validate(detail))

    def fan_out(self, event: DomainEvent) -> str:
        """A delivery for each enabled endpoint subscribed to the event, each attempted at once."""
        body = payload(event)
        now = self.now()
        due: list[tuple[dict[str, Any], datetime]] = []
        endpoints = self.store.list_endpoints()
        for endpoint in endpoints:
            if endpoint.status != "enabled" or not matches(endpoint.enabled_events, event.type):
                continue
            delivery = Delivery(
                endpoint=endpoint.id, event_id=event.id, event_type=event.type, event_created=event.created
            )
            stored = self.store.claim_delivery(delivery, body)
            if stored is not None and stored.attempts:  # a redelivered fan-out: its attempts are on their way
                continue
            due.append((_attempt_message(endpoint.id, event.id, 0), now))
        if due:
            self._require_queue().send_at(due, now)
        elif self._route is not None and not matches(subscribed(endpoints), event.type):
            # the route let through an event no enabled endpoint wants (a deploy put the catch-all
            # rule back, an endpoint was disabled): narrow it, so the next ones cost nothing
            self._narrow_route()
        return f"fanned_out:{len(due)}"

    def _narrow_route(self) -> None:
        try:
            self.sync_route(cached=True)
        except Unavailable as error:  # the event is handled; a too-wide route only costs
            log.warning("the webhook route was not narrowed: %s", error.message)

    def attempt(self, endpoint_id: str, event_id: str, expected_attempts: Any = None) -> str:
        loaded = self.store.load_delivery(endpoint_id, event_id)
        if loaded is None:
            return "unknown"
        delivery, body = loaded
        if expected_attempts is not None and expected_attempts != delivery.attempts:
            return "stale"  # another copy of this message already made this attempt
        if delivery.status in ("succeeded", "failed"):
            return f"already_{delivery.status}"
        now = self.now()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            # received before its time: the wait was longer than the queue's longest delay
            self._require_queue().send_at([(_attempt_message(endpoint_id, event_id, delivery.attempts),
                                            delivery.next_attempt_at)], now)  # fmt: skip
            return "early"
        try:
            endpoint = self.store.get_endpoint(endpoint_id)
        except NotFound:
            self._save(delivery.model_copy(update={"status": "failed", "error": "the endpoint was deleted"}))
            return "endpoint_deleted"
        if endpoint.status != "enabled":
            self._save(delivery.model_copy(update={"status": "failed", "error": "the endpoint is disabled",
                                                   "next_attempt_at": None}))  # fmt: skip
            return "endpoint_disabled"
        if len(body) > MAX_BODY_BYTES:  # never sent cut, never retried
            error = f"the payload is larger than {MAX_BODY_BYTES} bytes"
            self._save(delivery.model_copy(update={"status": "failed", "error": error, "next_attempt_at": None}))
            return "too_large"
        response = self._post(endpoint, event_id, body, now)
        ok = ok_status(response.status)
        recorded = record_attempt(delivery, now, ok, response.status, response.latency_ms, response.error)
        if recorded.status == "retrying" and recorded.next_attempt_at is not None:
            # the next attempt is queued before the outcome is saved: if the save fails, this message is
            # received again and tries again; the queued one then finds its attempt number unmet (stale)
            self._require_queue().send_at([(_attempt_message(endpoint_id, event_id, recorded.attempts),
                                            recorded.next_attempt_at)], now)  # fmt: skip
        try:
            saved = self._save(recorded)
        except Conflict:
            return "stale"  # a concurrent copy of this attempt recorded its own result and queued the next
        self._endpoint_after(endpoint, now, ok)
        return "delivered" if ok else saved.status

    def _post(self, endpoint: WebhookEndpoint, event_id: str, body: bytes, now: datetime) -> WebhookResponse:
        if self._sender is None:  # pragma: no cover - wiring error
            raise RuntimeError("this Webhooks service has no sender")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "kassa-webhooks/1",
            SIGNATURE_HEADER: signature_header(body, valid_secrets(endpoint, now), unix(now)),
            EVENT_ID_HEADER: event_id,
        }
        return self._sender.post(endpoint.url, body, headers)

    def _save(self, delivery: Delivery) -> Delivery:
        return self.store.save_delivery(delivery)

    def _endpoint_after(self, endpoint: WebhookEndpoint, now: datetime, ok: bool) -> None:
        """Write the endpoint only when its failure clock changes (first failure, first success after)."""
        changed, disabled = after_attempt(endpoint, now, ok)
        if changed == endpoint:
            return
        try:
            self.store.save_endpoint(changed, reroutes=disabled)
        except Conflict:
            return  # a concurrent attempt (or the merchant) changed it; the next attempt looks again
        if disabled:
            log.warning("webhook endpoint %s disabled: failing since %s", endpoint.id, endpoint.failing_since)
            self._email_disabled(changed)
            self._narrow_route()

    def _email_disabled(self, endpoint: WebhookEndpoint) -> str:
        if self._notify is None:
            return "no_mailer"
        n = self._notify
        since = endpoint.failing_since.isoformat() if endpoint.failing_since else ""
        key = f"{endpoint.id}:webhook_endpoint_disabled:{since}"
        lines = [
            f"kassa disabled the webhook endpoint {endpoint.id} ({endpoint.url}):",
            f"every delivery to it has failed since {since} (3 days).",
            "No events are sent to it until it is enabled again (POST /v1/webhook_endpoints/"
            f"{endpoint.id} with disabled=false); events missed meanwhile can be redelivered.",
        ]
        email = OutgoingEmail(
            key=key,
            template="webhook_endpoint_disabled",
            to=n.to(),
            customer=None,
            locale="en",
            subject=f"Webhook endpoint disabled: {endpoint.url}",
            html="".join(f"<p>{escape(line)}</p>" for line in lines),
            text="\n".join(lines) + "\n",
            created=self.now(),
        )
        claimed = n.outbox.claim(email)
        if claimed is not None and claimed.status == "sent":
            return "duplicate"
        try:
            message_id = n.mailer.send(email, n.sender)
        except (InvalidInput, Unavailable) as error:
            n.outbox.mark_failed(key, error.message)
            return "failed"
        n.outbox.mark_sent(key, message_id, self.now())
        return "sent"

    def _require_queue(self) -> DelayedQueue:
        if self._queue is None:  # pragma: no cover - wiring error
            raise RuntimeError("this Webhooks service has no delivery queue")
        return self._queue

    # ------------------------------------------------------------------ log and redelivery
    def deliveries(
        self, endpoint_id: str, limit: int = 10, since: datetime | None = None, until: datetime | None = None
    ) -> list[Delivery]:
        self.store.get_endpoint(endpoint_id)
        return self.store.list_deliveries(endpoint_id, limit, since, until)

    def redeliver(
        self,
        endpoint_id: str,
        event_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Delivery]:
        """Send one event (``event_id``), or every event created in [since, until], again now: a new
        attempt (and, if it fails, a new round of retries), even after a success."""
        endpoint = self.store.get_endpoint(endpoint_id)
        if endpoint.status != "enabled":
            raise InvalidInput(f"the webhook endpoint {endpoint_id} is disabled: enable it first", param="id")
        if event_id is not None:
            found = self.store.get_delivery(endpoint_id, event_id)
            if found is None:
                raise NotFound(f"no delivery of {event_id} to {endpoint_id}", param="event")
            chosen = [found]
        else:
            if since is None:
                raise InvalidInput("give event, or since (and until) for a time range", param="since")
            since, until = redeliver_window(since, until, self.clock.now())
            chosen = self.store.list_deliveries(endpoint_id, MAX_REDELIVER, since, until)
        now = self.now()
        if chosen:  # queued first: a message whose save then fails finds its attempt number unmet (stale)
            self._require_queue().send_at(
                [(_attempt_message(endpoint_id, d.event_id, d.attempts), now) for d in chosen], now
            )
        queued: list[Delivery] = []
        for delivery in chosen:
            again = {"status": "pending", "next_attempt_at": now, "first_attempt_at": now,
                     "round_start": delivery.attempts}  # fmt: skip
            try:
                queued.append(self._save(delivery.model_copy(update=again)))
            except Conflict:
                continue  # being attempted right now: that attempt makes the queued message stale
        return queued

    def resume(self, limit: int = 10_000) -> int:
        """Queue again the next attempt of every delivery still to be attempted, at its
        ``next_attempt_at`` (at once when it is past or unset): after a restart of the local stack's
        pollers, which held the delayed attempts in memory. A copy of an attempt still on its way
        finds its attempt number passed once either is made (stale). Returns how many were queued."""
        now = self.now()
        pending = self.store.pending_deliveries(limit)
        if pending:
            self._require_queue().send_at(
                [(_attempt_message(d.endpoint, d.event_id, d.attempts), max(d.next_attempt_at or now, now))
                 for d in pending], now)  # fmt: skip
        return len(pending)


def _attempt_message(endpoint_id: str, event_id: str, attempts: int) -> dict[str, Any]:
    return {"kind": ATTEMPT, "endpoint": endpoint_id, "event": event_id, "attempt": attempts}


REDELIVER_SPAN = timedelta(days=30)  # as long as deliveries are kept


def redeliver_window(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """A redelivery range: from ``since`` to ``until`` (none: now), at most the 30 days deliveries
    are kept, the same rules whichever bounds are given: ``since`` is required (``until`` alone is a
    400 naming since), not in the future, not after ``until``, and the range is at most 30 days — with
    no ``until``, ``since`` at most 30 days ago (400 naming since, else until)."""
    if since is None:
        if until is not None:
            raise InvalidInput("until needs since: a redelivery range starts at since", param="since")
        return since, until
    if since > now:
        raise InvalidInput("since is in the future: no event of the range exists yet", param="since")
    if until is not None and until < since:
        raise InvalidInput("until is before since", param="until")
    if until is not None and until - since > REDELIVER_SPAN:
        raise InvalidInput("a redelivery range spans at most 30 days", param="until")
    if until is None and now - since > REDELIVER_SPAN:
        raise InvalidInput("since is more than 30 days ago: a redelivery range (to now) spans at most 30 days",
                           param="since")  # fmt: skip
    return since, until
