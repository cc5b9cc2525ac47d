"""SQS event source mappings, emulated: one polling thread per queue-triggered function.

A poller polls its queue (short polls with an idle back-off, see ``Poller``), builds the event
Lambda would send (``Records`` of ``eventSource: aws:sqs``), invokes the handler, deletes the
messages that succeeded and leaves the rest for redelivery (``ReportBatchItemFailures``
semantics: the ids in ``batchItemFailures`` fail; an exception, or an id that is not in the batch,
fails the whole batch).

In AWS a failed message comes back after the queue's visibility timeout (minutes). Locally the
poller shortens it with ``ChangeMessageVisibility`` to ``retry_delay_s`` (default 1 s), so a
message that keeps failing reaches its DLQ after ``maxReceiveCount`` receives within seconds
(moto applies the RedrivePolicy on receive, like SQS).

The same ``QueueConsumer.poll_once`` is used by the virtual-clock drain, synchronously, while the
pollers are paused by the ``PauseGate``.

Delays in virtual time: SQS's ``DelaySeconds`` runs on the wall clock (moto's too), so the functions
of the local stack send delayed messages with no delay (``KASSA_SQS_MAX_DELAY_S=0``) and their due
time in the ``kassa-due-at`` attribute; a consumer given the virtual clock holds a message received
before its due time (off the queue) and the scheduler puts it back when the clock reaches it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infra import wiring

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("kassa_local.pollers")

REGION = "us-east-1"
SQS_MAX_BATCH = 10
DUE_ATTRIBUTE = "kassa-due-at"  # as kassa.adapters.webhooks.DUE_ATTRIBUTE: unix seconds


def due_at(message: dict[str, Any]) -> datetime | None:
    """The virtual time a delayed message is meant to be received at (None: at once)."""
    raw = (message.get("MessageAttributes") or {}).get(DUE_ATTRIBUTE, {}).get("StringValue")
    try:
        return datetime.fromtimestamp(int(raw), UTC) if raw is not None else None
    except ValueError:
        return None


class PauseGate:
    """A readers–writer gate: pollers deliver as readers; ``exclusive()`` (advance, drain) waits for
    running deliveries to finish and keeps new ones out until it is released. Writers are preferred
    and exclusive among themselves."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer: int | None = None  # thread id
        self._depth = 0
        self._writers_waiting = 0

    @contextmanager
    def reading(self, stop: threading.Event) -> Iterator[bool]:
        """Yields True when the caller may deliver, False when ``stop`` was set while waiting."""
        with self._cond:
            while (self._writer is not None or self._writers_waiting) and not stop.is_set():
                self._cond.wait(0.2)
            if stop.is_set():
                yield False
                return
            self._readers += 1
        try:
            yield True
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:  # re-entrant for the holder
                self._depth += 1
            else:
                self._writers_waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._writers_waiting -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._writer = None
                    self._cond.notify_all()


@dataclass
class ConsumerStats:
    invocations: int = 0
    messages: int = 0
    succeeded: int = 0
    failed: int = 0  # messages reported as failures (they will be retried or dead-lettered)
    errors: int = 0  # invocations that raised (the whole batch failed)


def lambda_message_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        binary = value.get("BinaryValue")
        out[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType", "String"),
        }
    return out


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping sends."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": lambda_message_attributes(m.get("MessageAttributes", {})),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def failed_ids(response: Any, batch_ids: set[str]) -> set[str]:
    """The message ids a handler response reports as failed (ReportBatchItemFailures)."""
    if not isinstance(response, dict):
        return set()
    items = response.get("batchItemFailures") or []
    failed: set[str] = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in batch_ids:
            log.warning("invalid batchItemFailures entry %r: the whole batch fails", item)
            return set(batch_ids)
        failed.add(ident)
    return failed


class QueueConsumer:
    """Receives a batch for one queue-triggered function, invokes it, deletes the successes."""

    def __init__(
        self,
        function: wiring.Function,
        queue_url: str,
        queue_arn: str,
        sqs: SQSClient,
        invoke: Callable[[wiring.Function, dict[str, Any]], Any],
        *,
        retry_delay_s: int = 1,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """``now``: the virtual clock, to hold delayed messages until their ``kassa-due-at``."""
        if function.queue_trigger is None:
            raise ValueError(f"{function.name} has no queue trigger")
        self.function = function
        self.trigger = function.queue_trigger
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.sqs = sqs
        self._invoke = invoke
        self.retry_delay_s = int(retry_delay_s)
        self.stats = ConsumerStats()
        self._stats_lock = threading.Lock()
        self._now = now
        self._held: list[tuple[datetime, dict[str, Any]]] = []  # (due, message), received before their time

    def _hold_early(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take the messages due later than the virtual now off the queue (held); returns the rest."""
        if self._now is None:
            return messages
        now = self._now()
        ready: list[dict[str, Any]] = []
        early: list[dict[str, Any]] = []
        for m in messages:
            due = due_at(m)
            (early if due is not None and due > now else ready).append(m)
        for chunk in _chunks(early):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if early:
            with self._stats_lock:
                self._held.extend((due_at(m) or now, m) for m in early)
                self._held.sort(key=lambda held: held[0])
        return ready

    def next_due(self) -> datetime | None:
        """The earliest due time of a held message."""
        with self._stats_lock:
            return self._held[0][0] if self._held else None

    def release(self, now: datetime) -> int:
        """Put the held messages due by ``now`` back on the queue (body and attributes unchanged)."""
        with self._stats_lock:
            due = [m for at, m in self._held if at <= now]
            self._held = [(at, m) for at, m in self._held if at > now]
        for m in due:
            attributes: Any = {
                name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
                for name, value in (m.get("MessageAttributes") or {}).items()
            }
            self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=m.get("Body", ""),
                MessageAttributes=attributes,
            )
        return len(due)

    def held(self) -> int:
        with self._stats_lock:
            return len(self._held)

    def receive(self, wait_s: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.trigger.batch_size:
            want = min(SQS_MAX_BATCH, self.trigger.batch_size - len(messages))
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=want,
                WaitTimeSeconds=wait_s if not messages else 0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(dict(m) for m in got)
            if len(got) < want:
                break
        return messages

    def deliver(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """Invoke the handler with one batch; returns (succeeded, failed)."""
        messages = self._hold_early(messages)
        if not messages:
            return 0, 0
        ids = {m["MessageId"] for m in messages}
        error = False
        try:
            response = self._invoke(self.function, sqs_event(messages, self.queue_arn))
            failed = failed_ids(response, ids)
        except Exception:
            log.exception("%s failed on a batch of %d messages", self.function.name, len(messages))
            error, failed = True, set(ids)
        ok = [m for m in messages if m["MessageId"] not in failed]
        bad = [m for m in messages if m["MessageId"] in failed]
        for chunk in _chunks(ok):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        for chunk in _chunks(bad):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.retry_delay_s}
                    for i, m in enumerate(chunk)
                ],
            )
        with self._stats_lock:
            self.stats.invocations += 1
            self.stats.messages += len(messages)
            self.stats.succeeded += len(ok)
            self.stats.failed += len(bad)
            self.stats.errors += int(error)
        return len(ok), len(bad)

    def poll_once(self, wait_s: int) -> int:
        """Receive one batch (waiting up to ``wait_s``) and deliver it; returns the batch size."""
        messages = self.receive(wait_s)
        if messages:
            self.deliver(messages)
        return len(messages)

    def backlog(self) -> int:
        """Messages visible, in flight or delayed on the queue (0 = drained)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def stats_json(self) -> dict[str, Any]:
        with self._stats_lock:
            return {"function": self.function.name, "queue": self.trigger.queue, **asdict(self.stats)}


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), SQS_MAX_BATCH):
        yield items[i : i + SQS_MAX_BATCH]


class Poller:
    """Background thread: polls one queue while the gate lets it.

    Short polls (``WaitTimeSeconds=0``) with an idle back-off from 20 ms up to ``idle_s`` instead of
    SQS long polling: a long poll would hold the gate for up to a second and make every
    ``drain``/``advance`` wait for it. A poll that finds messages polls again at once."""

    MIN_IDLE_S = 0.02

    def __init__(self, consumer: QueueConsumer, gate: PauseGate, *, idle_s: float = 0.25) -> None:
        self.consumer = consumer
        self.gate = gate
        self.idle_s = max(idle_s, self.MIN_IDLE_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kassa-poller-{consumer.function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 15) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - diagnostic
            log.warning("poller %s did not stop within %s s", self.consumer.function.name, timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        idle = self.MIN_IDLE_S
        while not self._stop.is_set():
            try:
                with self.gate.reading(self._stop) as may_deliver:
                    if not may_deliver:
                        break
                    got = self.consumer.poll_once(0)
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("poller %s: receive failed", self.consumer.function.name)
                got = 0
                idle = self.idle_s
            if got:
                idle = self.MIN_IDLE_S
                continue
            self._stop.wait(idle)
            idle = min(idle * 2, self.idle_s)


def drain(
    consumers: list[QueueConsumer],
    *,
    pending_webhooks: Callable[[], int] | None = None,
    timeout_s: float = 120,
    max_rounds: int = 10_000,
) -> int:
    """Deliver synchronously until every queue is empty (visible, in flight and delayed all 0) and,
    when ``pending_webhooks`` is given, no webhook is on its way from localstripe. Failed messages
    are retried after their (shortened) visibility delay until they succeed or are dead-lettered.

    The caller must hold the gate exclusively. Returns the number of messages delivered."""
    delivered = 0
    deadline = time.monotonic() + timeout_s
    for _ in range(max_rounds):
        progressed = False
        for consumer in consumers:
            n = consumer.poll_once(0)
            delivered += n
            progressed = progressed or n > 0
        if progressed:
            continue
        waiting_webhooks = pending_webhooks() if pending_webhooks is not None else 0
        if not waiting_webhooks and all(c.backlog() == 0 for c in consumers):
            return delivered
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    log.warning("drain gave up after %s s / %s rounds with work left", timeout_s, max_rounds)
    return delivered


class EventTap:
    """Collects every kassa domain event published on the bus (via the ``kassa-event-tap`` queue)."""

    def __init__(self, sqs: SQSClient, queue_url: str, *, idle_s: float = 0.25) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.idle_s = idle_s
        self._events: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kassa-event-tap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 15) -> None:
        self._thread.join(timeout)

    def _take(self, wait_s: int) -> int:
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=SQS_MAX_BATCH, WaitTimeSeconds=wait_s
        ).get("Messages", [])
        if not got:
            return 0
        with self._lock:
            for m in got:
                try:
                    event = json.loads(m.get("Body", ""))
                except ValueError:
                    event = {"raw": m.get("Body", "")}
                key = str(event.get("id") or m["MessageId"]) if isinstance(event, dict) else m["MessageId"]
                if key not in self._seen:
                    self._seen.add(key)
                    self._events.append(event)
        self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )
        return len(got)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._take(0):
                    continue
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("event tap: receive failed")
            self._stop.wait(self.idle_s)

    def collect(self, timeout_s: float = 2.0) -> None:
        """Take everything on the tap queue now (messages the poller holds land within ~timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            while self._take(0):
                pass
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            if sum(int(v) for v in attrs.values()) == 0 or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
        if type is None:
            return events
        return [e for e in events if type in _event_types(e)]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


def _event_types(event: dict[str, Any]) -> set[str]:
    """An event's type as EventBridge's ``detail-type`` and as the domain event's ``detail.type``."""
    types: set[str] = set()
    if isinstance(event.get("detail-type"), str):
        types.add(event["detail-type"])
    detail = event.get("detail")
    if isinstance(detail, dict) and isinstance(detail.get("type"), str):
        types.add(detail["type"])
    return types
