"""Stripe webhook ingestion and processing.

Ingestion verifies the signature with the stripe SDK (300 s tolerance), records the raw event once
(dedupe on the event id) and enqueues only its id; a missing or forged signature gets 400 and
nothing is recorded or enqueued. An event too large for a DynamoDB item is kept whole in the
FileStore (``webhooks/<event id>.json``, written before the record) and its record holds only that
key. Processing loads the recorded event (from the FileStore when its record points there), applies
it once, and marks it processed / ignored / rejected — never dropping it silently.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kassa.domain.errors import DomainError, IllegalTransition, InvalidInput, Unavailable
from kassa.services.ports import BillingStore, Clock, FileStore, WebhookRecord, WorkQueue

if TYPE_CHECKING:
    from kassa.services.context import BillingContext

SIGNATURE_TOLERANCE_S = 300  # Stripe's default
#: deepest JSON nesting accepted (Stripe's events nest a handful of levels); checked before parsing
MAX_JSON_DEPTH = 64
#: the largest compressed payload a record keeps (DynamoDB's item limit is 400 KB, the rest is margin);
#: a larger one is kept in the FileStore under ``payload_key(event id)`` and the record points there
MAX_RECORDED_PAYLOAD = 350_000
#: the largest body kept at all (API Gateway takes up to 10 MB; Stripe's events are a few KB): beyond
#: it a signed event is refused with 413 and kept as a ``rejected`` record with a truncated copy
MAX_WEBHOOK_PAYLOAD = 5_000_000
#: where large payloads live in the FileStore (infra/wiring.py ``WEBHOOK_PAYLOADS_PREFIX``)
PAYLOADS_PREFIX = "webhooks/"
#: how much of a refused body is kept on its rejected record, for inspection
REJECTED_COPY_CHARS = 4_096
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def too_deep(payload: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON nests deeper than ``limit`` (strings skipped), without parsing it."""
    depth = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", payload)):
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _printable(payload: str) -> str:
    """A storable copy of a body (a non-UTF-8 body arrives with surrogate escapes)."""
    return payload.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def payload_key(event_id: str) -> str:
    """The FileStore key of an event's payload too large for its record: ``webhooks/<event id>.json``."""
    return f"{PAYLOADS_PREFIX}{event_id}.json"


class PayloadMissing(Exception):
    """A webhook record points to a FileStore object that is not there."""


def load_payload(record: WebhookRecord, files: FileStore | None) -> str:
    """A record's raw body: its own copy, or the FileStore object it points to. Raises ``Unavailable``
    when the store cannot be reached (or none is given), ``PayloadMissing`` when the object is not there."""
    if record.payload_key is None:
        return record.payload
    if files is None:
        raise Unavailable(f"webhook record {record.id} keeps its payload in {record.payload_key}: no file store")
    data = files.get(record.payload_key)
    if data is None:
        raise PayloadMissing(f"the payload object {record.payload_key} is missing")
    return data.decode()


class Verifier(Protocol):
    def __call__(self, payload: str, header: str | None, secret: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class IngestOutcome:
    """What ingesting one delivery did: ``error`` (the delivery is refused — kept as a rejected
    record, see ``rejected_record`` — or, with 503, not taken yet: Stripe delivers it again), or
    recorded — ``duplicate`` when the event was known already, ``enqueued`` when it waits for the
    processor (an echo of a charge already applied is recorded as processed and not enqueued)."""

    error: DomainError | None = None
    error_code: str | None = None
    duplicate: bool = False
    enqueued: bool = False
    http_status: int = 400  # of a refusal: 400, 413 for an event too large to keep, 503 (retry later)
    rejected_record: str | None = None  # the webhook record a refused delivery is kept under

    @property
    def accepted(self) -> bool:
        return self.error is None


def ingest(
    payload: str,
    signature: str | None,
    *,
    store: BillingStore,
    queue: WorkQueue,
    secret: str,
    clock: Clock,
    verify: Verifier,
    files: FileStore | None = None,
) -> IngestOutcome:
    """Verify one delivery's signature, record the raw event once and enqueue its id. A payload too
    large for the record is put into ``files`` first (once: a duplicate writes nothing), then the
    record points to it; ``files`` unavailable (or not given) is a 503 with nothing recorded, so
    Stripe delivers it again. A body that can never be processed (not UTF-8, nested too deep, beyond
    ``MAX_WEBHOOK_PAYLOAD``) is refused and kept as a ``rejected`` record (a truncated copy and the
    reason), never dropped silently."""
    if _SURROGATES.search(payload):
        return _refuse(store, clock, payload, None, "the body is not UTF-8", "body_not_utf8")
    if too_deep(payload):
        return _refuse(store, clock, payload, None, f"JSON nested deeper than {MAX_JSON_DEPTH}", "body_too_deep")
    try:
        stripe_event = verify(payload, signature, secret)
    except InvalidInput as error:
        return IngestOutcome(error=error, error_code="signature_invalid")
    except (ValueError, RecursionError) as error:  # JSON the parser refuses
        return _refuse(store, clock, payload, None, f"unparsable JSON: {type(error).__name__}", "body_invalid")
    event_id, event_type = stripe_event.get("id"), stripe_event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        return IngestOutcome(
            error=InvalidInput("a Stripe event has an id and a type", param="id"), error_code="parameter_missing"
        )
    raw = payload.encode()
    if len(raw) > MAX_WEBHOOK_PAYLOAD:
        reason = f"payload too large to keep ({len(raw)} bytes, the limit is {MAX_WEBHOOK_PAYLOAD})"
        return _refuse(store, clock, payload, (event_id, event_type), reason, "payload_too_large", 413)
    key = None
    if len(raw) > MAX_RECORDED_PAYLOAD and len(zlib.compress(raw, 6)) > MAX_RECORDED_PAYLOAD:
        key = payload_key(event_id)
        try:
            if files is None:
                raise Unavailable(f"no file store for the payload of {event_id} ({len(raw)} bytes)")
            # the object first, then the record: no record ever points to a missing object; a
            # duplicate delivery (or a retry after the record failed) finds it and writes nothing
            files.put(key, raw, "application/json", only_if_absent=True)
        except Unavailable as error:
            return IngestOutcome(error=error, error_code="service_unavailable", http_status=503)
    settled = already_settled(store, stripe_event)
    record = WebhookRecord(
        id=event_id,
        type=event_type,
        status="processed" if settled else "received",
        payload="" if key else payload,
        received_at=clock.now().replace(microsecond=0),
        note=settled,
        payload_key=key,
    )
    existing = store.record_webhook(record)
    if settled and existing is None:
        # the echo of a charge kassa already applied from Stripe's synchronous answer (every
        # successful renewal): recorded as processed, nothing to enqueue
        return IngestOutcome()
    if existing is not None and existing.status != "received":
        return IngestOutcome(duplicate=True)
    # new, or recorded earlier but maybe never enqueued: (re-)enqueue; processing is idempotent
    queue.send([{"event_id": event_id}])
    return IngestOutcome(duplicate=existing is not None, enqueued=True)


def _refuse(
    store: BillingStore,
    clock: Clock,
    payload: str,
    event: tuple[str, str] | None,
    reason: str,
    code: str,
    status: int = 400,
) -> IngestOutcome:
    """Keep a refused delivery as a ``rejected`` record: under its event id when it was verified,
    else under ``rejected_<sha256 of the body>`` (the same body twice is one record)."""
    raw = payload.encode("utf-8", "surrogateescape")
    record_id, record_type = event or (f"rejected_{hashlib.sha256(raw).hexdigest()[:32]}", "unknown")
    copy = _printable(payload)
    truncated = len(copy) > REJECTED_COPY_CHARS
    record = WebhookRecord(
        id=record_id,
        type=record_type,
        status="rejected",
        payload=copy[:REJECTED_COPY_CHARS],
        received_at=clock.now().replace(microsecond=0),
        note=f"{reason}; {len(raw)} bytes{' (truncated copy)' if truncated else ''}",
    )
    store.record_webhook(record)
    return IngestOutcome(
        error=InvalidInput(f"{reason}; kept as webhook record {record_id}", param="body"),
        error_code=code,
        http_status=status,
        rejected_record=record_id,
    )


def already_settled(store: BillingStore, event: dict[str, Any]) -> str | None:
    """Why this event needs no processing, if its effect is already recorded: a
    payment_intent.succeeded for a kassa invoice that is paid by that very PaymentIntent."""
    if event.get("type") != "payment_intent.succeeded":
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    invoice_id = metadata.get("kassa_invoice") if isinstance(metadata, dict) else None
    if not isinstance(invoice_id, str) or not isinstance(obj, dict):
        return None
    invoice = store.find_invoice(invoice_id)
    if invoice is not None and invoice.status.value == "paid" and invoice.payment_intent == obj.get("id"):
        # unless the run that paid it is never run again: the processor then publishes its events
        # again, should that run have died before it did
        from kassa.domain.invoice import payment_unretried

        if not payment_unretried(invoice):
            return f"applied:invoice {invoice_id} already paid by {obj.get('id')}"
    return None


def process_recorded_event(message: dict[str, Any], billing: BillingContext, files: FileStore | None = None) -> str:
    """Apply one recorded event (its payload read from ``files`` when the record points there). Raises
    only for retryable trouble (the message is then retried), such as ``files`` being unavailable."""
    from kassa.services.stripe_events import apply_stripe_event  # not needed by the ingest function

    event_id = message.get("event_id")
    if not isinstance(event_id, str):
        return "rejected:message without event_id"  # nothing to record it under; logged by the caller
    record = billing.store.get_webhook(event_id)
    if record is None:
        return "ignored:unknown event"
    if record.status != "received":
        return f"duplicate:{record.status}"
    try:
        event = json.loads(load_payload(record, files))
        outcome = apply_stripe_event(billing, event)
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        PayloadMissing,
        KeyError,
        TypeError,
        AttributeError,
        InvalidInput,
        IllegalTransition,
    ) as error:
        note = error.message if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        billing.store.mark_webhook(event_id, "rejected", note)
        return f"rejected:{note}"
    status = "processed" if outcome == "applied" else "ignored"
    billing.store.mark_webhook(event_id, status, outcome)
    return outcome
