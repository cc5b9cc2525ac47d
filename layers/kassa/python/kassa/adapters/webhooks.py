"""Outbound webhooks' adapters: the ``WebhookStore`` on the billing table (and in memory), the
HTTP sender (no redirects, 10 s, the resolved address checked and pinned), and the delayed queue on
SQS (``DelaySeconds`` of at most 15 minutes; the due time rides along as a message attribute).

Items (see docs/data-model.md)::

    pk = WHEP               sk = WHEP#<endpoint id>    doc, version             (all endpoints: one query)
    pk = WHEP               sk = STATE                 endpoints, changes, synced
        (how many endpoints exist, checked against the limit in the transaction of each create and
        decremented in each delete's; the route changes counted in the same transactions, and the
        one the EventBridge rule was last put for: kassa.domain.webhooks.RouteState)
    pk = WHD#<endpoint id>  sk = EVT#<event id>        doc, version, body_z     (a delivery and its payload)
        gsi3pk = WHDLOG#<endpoint id>  gsi3sk = <event created>#<event id>    (the log, by event time)
        expires_at = event created + 30 days (TTL)
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from kassa.adapters import usage
from kassa.adapters.dynamodb import DynamoStore, _n, _s
from kassa.domain.errors import AlreadyExists, Conflict, NotFound, Unavailable
from kassa.domain.webhooks import (
    MAX_BODY_BYTES,
    MAX_ENDPOINTS,
    TIMEOUT_S,
    Delivery,
    EndpointLimitReached,
    RouteState,
    WebhookEndpoint,
    check_url,
    refused_addresses,
)
from kassa.services.ports import WebhookResponse

ENDPOINTS_PK = "WHEP"
ENDPOINT_PREFIX = "WHEP#"
STATE_SK = "STATE"  # the endpoints' count and route state, in the endpoints' partition
_STATE_NAMES = {"#n": "endpoints", "#c": "changes", "#s": "synced"}
_ROUNDS = 5  # transactions tried again after a concurrent one on the state item (TransactionConflict)
DELIVERY_PREFIX = "WHD#"
LOG_PREFIX = "WHDLOG#"
RETENTION = timedelta(days=30)
DUE_ATTRIBUTE = "kassa-due-at"  # unix seconds: when a delayed message is meant to be received
MAX_DELAY_S = 900  # SQS's longest DelaySeconds
NO_EVENT = "kassa.webhooks.none"  # the detail-type of a webhook rule that lets nothing through
_CREATED = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_CREATED)


def _in_range(d: Delivery, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or d.event_created >= since) and (until is None or d.event_created <= until)


class DynamoWebhookStore(DynamoStore):
    """``WebhookStore`` on the billing table (a ``DynamoStore`` only for its low-level helpers)."""

    def _state_key(self) -> dict[str, Any]:
        return {"pk": _s(ENDPOINTS_PK), "sk": _s(STATE_SK)}

    def _state_update(self, expression: str, condition: str | None, values: dict[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._state_key(),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {k: v for k, v in _STATE_NAMES.items() if k in expression + (condition or "")},
            "ExpressionAttributeValues": values,
        }
        if condition:
            update["ConditionExpression"] = condition
        return {"Update": update}

    def _seed_count(self) -> bool:
        """The endpoints counted once, when the state item has no count yet (a table written before
        the count existed, or a new one): True when it had none (the caller tries again). Nothing
        creates or deletes an endpoint without the count, so the list cannot change meanwhile; of
        two seeds, the first one written stays."""
        item = self._get(ENDPOINTS_PK, STATE_SK)
        if item is not None and "endpoints" in item:
            return False
        count = len(self.list_endpoints())
        with contextlib.suppress(Conflict):  # seeded by a concurrent request
            self._call("update_item", TableName=self._table, Key=self._state_key(), UpdateExpression="SET #n = :n",
                       ConditionExpression="attribute_not_exists(#n)", ExpressionAttributeNames={"#n": "endpoints"},
                       ExpressionAttributeValues={":n": _n(count)})  # fmt: skip
        return True

    def add_endpoint(self, endpoint: WebhookEndpoint, limit: int = MAX_ENDPOINTS) -> None:
        """The endpoint and its count in one transaction, the count under ``endpoints < limit``: of two
        concurrent creates at the limit one is written, the other refused (or, on a TransactionConflict,
        tried again and then refused). The endpoint's own condition (new) makes a create written twice
        count once; the request token makes an SDK retry of a written one answer written."""
        item = self._item(ENDPOINTS_PK, f"{ENDPOINT_PREFIX}{endpoint.id}", endpoint)
        actions = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            self._state_update("ADD #n :one, #c :one", "#n < :max", {":one": _n(1), ":max": _n(limit)}),
        ]
        for round_ in range(_ROUNDS):
            reasons = self._transact_reasons(actions, token=f"{endpoint.id}-{round_}")
            if reasons is None:
                return
            codes = [r.get("Code") for r in reasons]
            if codes[0] == "ConditionalCheckFailed":
                raise AlreadyExists(f"webhook endpoint {endpoint.id} already exists")
            if codes[1] == "ConditionalCheckFailed" and not self._seed_count():
                raise EndpointLimitReached(limit)
        raise Conflict("webhook endpoints kept changing; retry")

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        return self._require(ENDPOINTS_PK, f"{ENDPOINT_PREFIX}{endpoint_id}", WebhookEndpoint,
                             f"no webhook endpoint {endpoint_id}", "id")  # fmt: skip

    def list_endpoints(self) -> list[WebhookEndpoint]:
        response = self._call(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :p AND begins_with(sk, :e)",  # not the STATE item
            ExpressionAttributeValues={":p": _s(ENDPOINTS_PK), ":e": _s(ENDPOINT_PREFIX)},
            # consistent: sync_route lists right after a change and again after its put; a stale list
            # would put a route without the change (a few endpoints: one read unit either way)
            ConsistentRead=True,
        )
        found = [self._load(item, WebhookEndpoint) for item in response.get("Items", [])]
        return sorted(found, key=lambda e: (e.created, e.id))

    def save_endpoint(self, endpoint: WebhookEndpoint, *, reroutes: bool = False) -> WebhookEndpoint:
        saved = endpoint.model_copy(update={"version": endpoint.version + 1})
        put = self._versioned_put(self._item(ENDPOINTS_PK, f"{ENDPOINT_PREFIX}{endpoint.id}", saved), endpoint.version)
        put["ConditionExpression"] = "attribute_exists(pk) AND version = :v"
        try:
            if not reroutes:
                self._call("put_item", **put)
                return saved
            reasons = self._transact_reasons([{"Put": put}, self._state_update("ADD #c :one", None, {":one": _n(1)})])
            if reasons is not None:
                raise Conflict(f"transaction cancelled: {[r.get('Code') for r in reasons]}")
        except Conflict:
            self.get_endpoint(endpoint.id)  # NotFound when it was deleted
            raise
        return saved

    def delete_endpoint(self, endpoint_id: str) -> None:
        key = {"pk": _s(ENDPOINTS_PK), "sk": _s(f"{ENDPOINT_PREFIX}{endpoint_id}")}
        actions = [
            {"Delete": {"TableName": self._table, "Key": key, "ConditionExpression": "attribute_exists(pk)"}},
            self._state_update("ADD #n :minus, #c :one", "attribute_exists(#n)", {":minus": _n(-1), ":one": _n(1)}),
        ]
        for _ in range(_ROUNDS):
            reasons = self._transact_reasons(actions)
            if reasons is None or reasons[0].get("Code") == "ConditionalCheckFailed":
                return  # deleted, or already gone (counted by the delete that removed it)
            if reasons[1].get("Code") == "ConditionalCheckFailed":
                self._seed_count()
        raise Conflict("webhook endpoints kept changing; retry")

    def route_state(self) -> RouteState:
        item = self._get(ENDPOINTS_PK, STATE_SK) or {}
        changes, synced = (int(item.get(name, {}).get("N", 0)) for name in ("changes", "synced"))
        return RouteState(changes=changes, synced=synced)

    def mark_route_synced(self, changes: int) -> None:
        with contextlib.suppress(Conflict):  # a later change was marked already
            self._call("update_item", TableName=self._table, Key=self._state_key(), UpdateExpression="SET #s = :c",
                       ConditionExpression="attribute_not_exists(#s) OR #s < :c",
                       ExpressionAttributeNames={"#s": "synced"},
                       ExpressionAttributeValues={":c": _n(changes)})  # fmt: skip

    def _delivery_item(self, delivery: Delivery) -> dict[str, Any]:
        return self._item(
            f"{DELIVERY_PREFIX}{delivery.endpoint}",
            f"EVT#{delivery.event_id}",
            delivery,
            gsi3pk=_s(f"{LOG_PREFIX}{delivery.endpoint}"),
            gsi3sk=_s(f"{_stamp(delivery.event_created)}#{delivery.event_id}"),
            expires_at=_n(int((delivery.event_created + RETENTION).timestamp())),
        )

    def claim_delivery(self, delivery: Delivery, body: bytes) -> Delivery | None:
        item = self._delivery_item(delivery)
        item["body_z"] = {"B": zlib.compress(body, 6)}
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return None
        except Conflict:
            stored = self.get_delivery(delivery.endpoint, delivery.event_id)
            if stored is None:  # pragma: no cover - expired between the two calls
                raise Conflict(f"the delivery of {delivery.event_id} changed; retry") from None
            return stored

    def get_delivery(self, endpoint_id: str, event_id: str) -> Delivery | None:
        item = self._get(f"{DELIVERY_PREFIX}{endpoint_id}", f"EVT#{event_id}")
        return self._load(item, Delivery) if item else None

    def load_delivery(self, endpoint_id: str, event_id: str) -> tuple[Delivery, bytes] | None:
        item = self._get(f"{DELIVERY_PREFIX}{endpoint_id}", f"EVT#{event_id}")
        if item is None:
            return None
        return self._load(item, Delivery), zlib.decompress(item["body_z"]["B"]) if "body_z" in item else b""

    def save_delivery(self, delivery: Delivery) -> Delivery:
        saved = delivery.model_copy(update={"version": delivery.version + 1})
        names = {"#d": "doc", "#v": "version"}
        self._call(
            "update_item",
            TableName=self._table,
            Key={"pk": _s(f"{DELIVERY_PREFIX}{delivery.endpoint}"), "sk": _s(f"EVT#{delivery.event_id}")},
            UpdateExpression="SET #d = :d, #v = :n",
            ConditionExpression="attribute_exists(pk) AND #v = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":d": _s(saved.model_dump_json(exclude_defaults=True)),
                ":n": _n(saved.version),
                ":v": _n(delivery.version),
            },
        )
        return saved

    def list_deliveries(
        self, endpoint_id: str, limit: int, since: datetime | None = None, until: datetime | None = None
    ) -> list[Delivery]:
        low = _stamp(since) if since else "0"
        high = (_stamp(until) if until else "9") + "#~"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi3",
            "KeyConditionExpression": "gsi3pk = :p AND gsi3sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":p": _s(f"{LOG_PREFIX}{endpoint_id}"), ":lo": _s(low), ":hi": _s(high)},
            "ScanIndexForward": False,
        }
        found: list[Delivery] = []
        while len(found) < limit:
            kwargs["Limit"] = limit - len(found)
            response = self._call("query", **kwargs)
            found.extend(self._load(item, Delivery) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def pending_deliveries(self, limit: int) -> list[Delivery]:
        """A Scan of the ``WHD#`` items (the local stack resuming its retries at start; AWS needs
        none: SQS keeps the delayed attempts)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :p)",
            "ExpressionAttributeValues": {":p": _s(DELIVERY_PREFIX)},
        }
        found: list[Delivery] = []
        while True:
            response = self._call("scan", **kwargs)
            found.extend(d for d in (self._load(i, Delivery) for i in response.get("Items", [])) if _pending(d))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted(found, key=_due_order)[:limit]


def _pending(d: Delivery) -> bool:
    return d.status in ("pending", "retrying")


def _due_order(d: Delivery) -> tuple[datetime, str, str]:
    return (d.next_attempt_at or d.event_created, d.endpoint, d.event_id)


class MemoryWebhookStore:
    """``WebhookStore`` in memory (unit tests, the simulator)."""

    def __init__(self) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}
        self.deliveries: dict[tuple[str, str], tuple[Delivery, bytes]] = {}
        self.route = RouteState()
        self._lock = threading.Lock()

    def _rerouted(self) -> None:  # under the lock
        self.route = RouteState(changes=self.route.changes + 1, synced=self.route.synced)

    def add_endpoint(self, endpoint: WebhookEndpoint, limit: int = MAX_ENDPOINTS) -> None:
        with self._lock:  # counted and written under one lock: concurrent creates never pass the limit
            if endpoint.id in self.endpoints:
                raise AlreadyExists(f"webhook endpoint {endpoint.id} already exists")
            if len(self.endpoints) >= limit:
                raise EndpointLimitReached(limit)
            self.endpoints[endpoint.id] = endpoint
            self._rerouted()

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        found = self.endpoints.get(endpoint_id)
        if found is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}", param="id")
        return found

    def list_endpoints(self) -> list[WebhookEndpoint]:
        return sorted(self.endpoints.values(), key=lambda e: (e.created, e.id))

    def save_endpoint(self, endpoint: WebhookEndpoint, *, reroutes: bool = False) -> WebhookEndpoint:
        with self._lock:
            current = self.get_endpoint(endpoint.id)
            if current.version != endpoint.version:
                raise Conflict("the item changed or already exists")
            saved = endpoint.model_copy(update={"version": endpoint.version + 1})
            self.endpoints[endpoint.id] = saved
            if reroutes:
                self._rerouted()
            return saved

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self._lock:
            if self.endpoints.pop(endpoint_id, None) is not None:
                self._rerouted()

    def route_state(self) -> RouteState:
        return self.route

    def mark_route_synced(self, changes: int) -> None:
        with self._lock:
            if changes > self.route.synced:
                self.route = RouteState(changes=self.route.changes, synced=changes)

    def claim_delivery(self, delivery: Delivery, body: bytes) -> Delivery | None:
        with self._lock:
            key = (delivery.endpoint, delivery.event_id)
            if key in self.deliveries:
                return self.deliveries[key][0]
            self.deliveries[key] = (delivery, body)
            return None

    def get_delivery(self, endpoint_id: str, event_id: str) -> Delivery | None:
        found = self.deliveries.get((endpoint_id, event_id))
        return found[0] if found else None

    def load_delivery(self, endpoint_id: str, event_id: str) -> tuple[Delivery, bytes] | None:
        return self.deliveries.get((endpoint_id, event_id))

    def save_delivery(self, delivery: Delivery) -> Delivery:
        with self._lock:
            key = (delivery.endpoint, delivery.event_id)
            current = self.deliveries.get(key)
            if current is None or current[0].version != delivery.version:
                raise Conflict("the item changed or already exists")
            saved = delivery.model_copy(update={"version": delivery.version + 1})
            self.deliveries[key] = (saved, current[1])
            return saved

    def list_deliveries(
        self, endpoint_id: str, limit: int, since: datetime | None = None, until: datetime | None = None
    ) -> list[Delivery]:
        mine = [d for (e, _), (d, _b) in self.deliveries.items() if e == endpoint_id and _in_range(d, since, until)]
        mine.sort(key=lambda d: (d.event_created, d.event_id), reverse=True)
        return mine[:limit]

    def pending_deliveries(self, limit: int) -> list[Delivery]:
        return sorted((d for d, _ in self.deliveries.values() if _pending(d)), key=_due_order)[:limit]


# ---------------------------------------------------------------------------------------------- HTTP
Resolve = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address of ``host`` (IPv4 and IPv6), as the system resolver answers now."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpWebhookSender:
    """``WebhookSender`` over urllib3: one POST, redirects never followed, ``timeout_s`` for connect
    and read, at most 1 KB of the answer kept. With ``public_only`` (AWS) the host is resolved at
    each attempt, refused when any address is private, loopback or link-local, and the connection is
    made to the checked address (the TLS name and Host header stay the URL's): a DNS answer that
    changes between the check and the connection (rebinding) cannot redirect it."""

    def __init__(
        self, *, public_only: bool = True, timeout_s: float = TIMEOUT_S, resolve: Resolve = resolve_host
    ) -> None:
        self.public_only = public_only
        self.timeout_s = timeout_s
        self._resolve = resolve

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        import urllib3

        t0 = time.perf_counter()

        def answer(status: int | None, error: str | None = None) -> WebhookResponse:
            return WebhookResponse(status, int((time.perf_counter() - t0) * 1000), error)

        if len(body) > MAX_BODY_BYTES:
            return answer(None, f"the payload is larger than {MAX_BODY_BYTES} bytes")
        try:
            scheme, host, port = check_url(url, https_only=self.public_only)
        except Exception as error:  # noqa: BLE001 - an endpoint stored before a rule changed
            return answer(None, f"refused: {error}")
        connect_to = host
        if self.public_only:
            try:
                addresses = self._resolve(host)
            except OSError as error:
                return answer(None, f"the host {host} does not resolve: {error}")
            reason = refused_addresses(addresses)
            if reason:
                return answer(None, f"refused: {reason}")
            connect_to = addresses[0]
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")  # never the fragment
        timeout = urllib3.Timeout(connect=self.timeout_s, read=self.timeout_s)
        pool: Any
        if scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                connect_to, port, timeout=timeout, retries=False, maxsize=1,
                server_hostname=host, assert_hostname=host, ssl_context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            pool = urllib3.HTTPConnectionPool(connect_to, port, timeout=timeout, retries=False, maxsize=1)
        host_header = host if port in (80, 443) else f"{host}:{port}"
        try:
            response = pool.urlopen(
                "POST", path, body=body, headers={**headers, "Host": host_header},
                redirect=False, retries=False, preload_content=False,
            )  # fmt: skip
            try:
                response.read(1024, decode_content=False)
            finally:
                response.release_conn()
            status = int(response.status)
            took = time.perf_counter() - t0
            if took > self.timeout_s:  # each read came in time, the whole answer did not (a trickle)
                return answer(None, f"timed out after {self.timeout_s:g} s (answered in {took:.1f} s)")
            return answer(status, None if 200 <= status < 300 else f"HTTP {status}")
        except urllib3.exceptions.NewConnectionError as error:  # a ConnectTimeoutError subclass: first
            return answer(None, f"connection failed: {str(error)[:200]}")
        except urllib3.exceptions.TimeoutError:
            return answer(None, f"timed out after {self.timeout_s:g} s")
        except urllib3.exceptions.HTTPError as error:
            return answer(None, f"connection failed: {type(error).__name__}: {str(error)[:200]}")
        except OSError as error:
            return answer(None, f"connection failed: {error}")
        finally:
            usage.count("webhooks.post")
            pool.close()


# ---------------------------------------------------------------------------------------------- SQS
class SqsDelayedQueue:
    """``DelayedQueue`` on SQS: ``DelaySeconds`` = the wait, at most ``max_delay_s`` (900, SQS's
    limit); a message due later is received early and sent again for the rest (the service does).
    The due time rides along as the ``kassa-due-at`` attribute (the local stack's pollers hold a
    message until the virtual clock reaches it)."""

    def __init__(self, client: Any, url: str, max_delay_s: int = MAX_DELAY_S) -> None:
        self._client = client
        self._url = url
        self.max_delay_s = max(0, min(MAX_DELAY_S, max_delay_s))

    def send_at(self, messages: list[tuple[dict[str, Any], datetime]], now: datetime) -> None:
        import json

        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = []
            for i, (message, due) in enumerate(chunk):
                wait = max(0, int((due - now).total_seconds() + 0.999))
                entries.append(
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(message, separators=(",", ":")),
                        "DelaySeconds": min(wait, self.max_delay_s),
                        "MessageAttributes": {
                            DUE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(int(due.timestamp()))}
                        },
                    }
                )
            try:
                response = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                raise Unavailable(f"the delivery queue is unavailable ({type(error).__name__}); retry") from error
            usage.count("sqs.send_message_batch")
            if response.get("Failed"):
                raise Unavailable(f"SQS refused {len(response['Failed'])} messages; retry")


# ---------------------------------------------------------------------------------------------- EventBridge
def rule_pattern(subscribed: list[str], source: str) -> dict[str, Any]:
    """The EventBridge pattern of what the endpoints subscribe to (``kassa.domain.webhooks.subscribed``):
    an event type matches its detail-type, ``invoice.*`` becomes ``{"prefix": "invoice."}``, ``*`` every
    event of ``source``; nothing: a detail-type kassa never sends (the rule is disabled too; moto, under
    the local stack, ignores a rule's state but not its pattern)."""
    if not subscribed:
        return {"source": [source], "detail-type": [NO_EVENT]}
    if "*" in subscribed:
        return {"source": [source]}
    types: list[Any] = [{"prefix": p[:-1]} if p.endswith(".*") else p for p in subscribed]
    return {"source": [source], "detail-type": types}


class EventBridgeWebhookRule:
    """``WebhookRoute`` on the EventBridge rule that sends the bus's events to the delivery queue
    (``infra.wiring.WEBHOOKS_ROUTE``): PutRule with the endpoints' detail-types, ``DISABLED`` when no
    endpoint is enabled (its target, the queue, is CloudFormation's and stays). With ``cached``, a put
    identical to this container's last one within ``repeat_after_s`` is skipped (a burst of
    narrowing fan-outs puts once)."""

    _last: dict[tuple[str, str], tuple[str, str, float]] = {}  # (bus, rule) -> (pattern, state, monotonic)

    def __init__(self, client: Any, bus: str, rule: str, source: str, repeat_after_s: float = 60.0) -> None:
        self._client = client
        self._bus = bus
        self._rule = rule
        self._source = source
        self._repeat_after_s = repeat_after_s

    def route(self, subscribed: list[str], *, cached: bool = False) -> None:
        import json

        pattern = json.dumps(rule_pattern(subscribed, self._source), separators=(",", ":"))
        state = "ENABLED" if subscribed else "DISABLED"
        key = (self._bus, self._rule)
        last = self._last.get(key)
        fresh = last is not None and time.monotonic() - last[2] < self._repeat_after_s
        if cached and fresh and last is not None and last[:2] == (pattern, state):
            return
        try:
            self._client.put_rule(
                Name=self._rule,
                EventBusName=self._bus,
                EventPattern=pattern,
                State=state,
                Description="kassa: the events the enabled outbound webhook endpoints subscribe to, "
                "to the webhook-deliveries queue (kept by kassa.services.outbound_webhooks)",
            )
        except (BotoCoreError, ClientError) as error:
            self._last.pop(key, None)
            raise Unavailable(f"the webhook event rule could not be updated ({type(error).__name__}); retry") from error
        usage.count("events.put_rule")
        self._last[key] = (pattern, state, time.monotonic())
