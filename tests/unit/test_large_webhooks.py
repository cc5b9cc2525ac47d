"""Signed Stripe events too large for a DynamoDB item (docs/operations.md "Large webhooks"): the
payload is kept whole in the FileStore under ``webhooks/<event id>.json`` (written before the
record), the ``WHEVT#`` record points to it, and the event is answered 200, enqueued and applied
like any other. Beyond ``MAX_WEBHOOK_PAYLOAD`` it is a 413 and a rejected record; a FileStore that
is unavailable is a 503 with nothing recorded, so Stripe delivers it again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import zlib
from typing import Any

import pytest
from fakes import ListQueue, World, stripe_event, stripe_object

from kassa.adapters.memory import MemoryFileStore
from kassa.adapters.stripe_webhooks import stripe_verifier
from kassa.api.webhook import delivery, response
from kassa.domain.errors import Unavailable
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.subscription import Status
from kassa.services.ports import FileStore
from kassa.services.webhooks import (
    MAX_RECORDED_PAYLOAD,
    MAX_WEBHOOK_PAYLOAD,
    REJECTED_COPY_CHARS,
    ingest,
    process_recorded_event,
)

SECRET = "whsec_large_events"


class SpyFiles(MemoryFileStore):
    """A MemoryFileStore that keeps every put (key, only_if_absent, whether it wrote)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, bool, bool]] = []

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool:
        wrote = super().put(key, data, content_type, only_if_absent=only_if_absent)
        self.puts.append((key, only_if_absent, wrote))
        return wrote


class DownFiles:
    """S3 throttling or unreachable: every call is ``Unavailable``."""

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool:
        raise Unavailable(f"S3 refused {key} for now (SlowDown)")

    def get(self, key: str) -> bytes | None:
        raise Unavailable(f"S3 refused {key} for now (SlowDown)")


def _signed(raw: bytes) -> dict[str, Any]:
    """The API Gateway proxy event of one delivery, signed now (the SDK verifier checks the time)."""
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return {
        "headers": {"Stripe-Signature": f"t={t},v1={digest}"},
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


def _deliver(world: World, queue: ListQueue, raw: bytes, files: FileStore | None) -> dict[str, Any]:
    payload, signature = delivery(_signed(raw))
    outcome = ingest(
        payload,
        signature,
        store=world.store,
        queue=queue,
        secret=SECRET,
        clock=world.clock,
        verify=stripe_verifier,
        files=files,
    )
    return response(outcome)


def _blob(size: int) -> str:
    """Incompressible text: base64 of random bytes, ``size`` characters."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def _paid_event(invoice: Invoice, event_id: str, blob: str) -> bytes:
    """A payment_intent.succeeded paying ``invoice``, with ``blob`` in the intent's metadata."""
    intent = stripe_object(
        "payment_intent",
        id="pi_large_1",
        status="succeeded",
        amount=invoice.amount_due,
        amount_received=invoice.amount_due,
        currency=invoice.currency.lower(),
        customer="cus_fake000001",
        canceled_at=None,
        next_action=None,
        last_payment_error=None,
        metadata={"kassa_invoice": invoice.id, "kassa_attempt": "1", "blob": blob},
    )
    return json.dumps(stripe_event("payment_intent.succeeded", intent, event_id=event_id)).encode()


@pytest.fixture
def open_invoice(world: World) -> tuple[Invoice, str]:
    _, price = world.catalog()
    result = world.checkout(price)
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.OPEN
    return result.invoice, result.subscription.id


def test_an_800_kb_signed_event_is_kept_in_the_file_store_and_applied(
    world: World, open_invoice: tuple[Invoice, str]
) -> None:
    invoice, sub_id = open_invoice
    raw = _paid_event(invoice, "evt_large", _blob(800_000))
    assert len(zlib.compress(raw, 6)) > MAX_RECORDED_PAYLOAD  # would not fit in a DynamoDB item
    files, queue = SpyFiles(), ListQueue()

    answer = _deliver(world, queue, raw, files)

    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"]) == {"received": True, "duplicate": False}
    assert files.objects["webhooks/evt_large.json"] == (raw, "application/json")  # the exact bytes
    assert files.puts == [("webhooks/evt_large.json", True, True)]  # only_if_absent
    record = world.store.get_webhook("evt_large")
    assert record is not None
    assert (record.status, record.type) == ("received", "payment_intent.succeeded")
    assert (record.payload, record.payload_key) == ("", "webhooks/evt_large.json")  # a pointer, not the body
    assert queue.messages == [{"event_id": "evt_large"}]

    assert process_recorded_event(queue.messages[0], world.billing, files) == "applied"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID
    assert world.store.get_subscription(sub_id).status is Status.ACTIVE
    assert world.store.get_webhook("evt_large").status == "processed"  # type: ignore[union-attr]


def test_a_duplicate_delivery_of_a_large_event_stores_nothing_new_and_is_applied_once(
    world: World, open_invoice: tuple[Invoice, str]
) -> None:
    invoice, _ = open_invoice
    raw = _paid_event(invoice, "evt_large_dup", _blob(800_000))
    files, queue = SpyFiles(), ListQueue()
    assert _deliver(world, queue, raw, files)["statusCode"] == 200

    # Stripe delivers it again before it was processed: no new object, the same record, enqueued again
    writes = world.store.writes
    again = _deliver(world, queue, raw, files)
    assert again["statusCode"] == 200 and json.loads(again["body"])["duplicate"] is True
    assert files.puts[-1] == ("webhooks/evt_large_dup.json", True, False)  # nothing written
    assert list(files.objects) == ["webhooks/evt_large_dup.json"] and world.store.writes == writes
    assert queue.messages == [{"event_id": "evt_large_dup"}] * 2

    assert process_recorded_event(queue.messages[0], world.billing, files) == "applied"
    assert process_recorded_event(queue.messages[1], world.billing, files) == "duplicate:processed"
    assert len(world.publisher.of_type("invoice.paid")) == 1

    # after processing: 200, not enqueued again, still one object
    late = _deliver(world, queue, raw, files)
    assert late["statusCode"] == 200 and json.loads(late["body"]) == {"received": True, "duplicate": True}
    assert len(queue.messages) == 2 and list(files.objects) == ["webhooks/evt_large_dup.json"]
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID


def test_a_small_event_stays_in_its_record(world: World, open_invoice: tuple[Invoice, str]) -> None:
    invoice, _ = open_invoice
    raw = _paid_event(invoice, "evt_small", "tiny")
    files, queue = SpyFiles(), ListQueue()

    assert _deliver(world, queue, raw, files)["statusCode"] == 200

    record = world.store.get_webhook("evt_small")
    assert record is not None and (record.payload, record.payload_key) == (raw.decode(), None)
    assert files.puts == [] and files.objects == {}


def test_a_large_but_compressible_event_stays_in_its_record(world: World) -> None:
    raw = json.dumps(stripe_event("customer.updated", stripe_object("customer", id="cus_x", note="a" * 800_000)))
    files, queue = SpyFiles(), ListQueue()

    assert _deliver(world, queue, raw.encode(), files)["statusCode"] == 200

    assert files.objects == {}


def test_a_6_mb_signed_event_is_refused_with_413_and_kept_as_rejected(world: World) -> None:
    raw = json.dumps(stripe_event("customer.updated", stripe_object("customer", id="cus_x", blob=_blob(6_000_000))))
    assert len(raw) > MAX_WEBHOOK_PAYLOAD
    files, queue = SpyFiles(), ListQueue()

    answer = _deliver(world, queue, raw.encode(), files)

    assert answer["statusCode"] == 413
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "payload_too_large" and error["type"] == "invalid_request_error"
    [record] = world.store.webhooks.values()
    assert record.status == "rejected" and record.type == "customer.updated" and record.payload_key is None
    assert len(record.payload) == REJECTED_COPY_CHARS and "too large" in (record.note or "")
    assert files.puts == [] and queue.messages == []


def test_an_unavailable_file_store_is_a_503_and_nothing_is_recorded(
    world: World, open_invoice: tuple[Invoice, str]
) -> None:
    invoice, _ = open_invoice
    raw = _paid_event(invoice, "evt_large_down", _blob(800_000))
    queue = ListQueue()
    writes = world.store.writes

    answer = _deliver(world, queue, raw, DownFiles())

    assert answer["statusCode"] == 503  # Stripe delivers it again
    error = json.loads(answer["body"])["error"]
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
    assert world.store.get_webhook("evt_large_down") is None and world.store.writes == writes
    assert queue.messages == []

    # the retry, once S3 is back: kept and applied
    files = SpyFiles()
    assert _deliver(world, queue, raw, files)["statusCode"] == 200
    assert process_recorded_event(queue.messages[0], world.billing, files) == "applied"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.PAID


def test_without_a_file_store_a_large_event_is_a_503(world: World, open_invoice: tuple[Invoice, str]) -> None:
    invoice, _ = open_invoice
    answer = _deliver(world, ListQueue(), _paid_event(invoice, "evt_large_none", _blob(800_000)), None)
    assert answer["statusCode"] == 503 and world.store.webhooks == {}


def test_the_processor_retries_while_the_file_store_is_unavailable(
    world: World, open_invoice: tuple[Invoice, str]
) -> None:
    invoice, _ = open_invoice
    files, queue = SpyFiles(), ListQueue()
    _deliver(world, queue, _paid_event(invoice, "evt_large_retry", _blob(800_000)), files)

    with pytest.raises(Unavailable):  # the SQS message is retried (then the DLQ), never dropped
        process_recorded_event(queue.messages[0], world.billing, DownFiles())
    with pytest.raises(Unavailable):
        process_recorded_event(queue.messages[0], world.billing)  # no file store wired
    assert world.store.get_webhook("evt_large_retry").status == "received"  # type: ignore[union-attr]
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN

    assert process_recorded_event(queue.messages[0], world.billing, files) == "applied"


def test_a_record_whose_payload_object_is_gone_is_rejected_with_the_reason(
    world: World, open_invoice: tuple[Invoice, str]
) -> None:
    invoice, _ = open_invoice
    files, queue = SpyFiles(), ListQueue()
    _deliver(world, queue, _paid_event(invoice, "evt_large_gone", _blob(800_000)), files)
    files.objects.clear()

    outcome = process_recorded_event(queue.messages[0], world.billing, files)

    assert outcome == "rejected:PayloadMissing: the payload object webhooks/evt_large_gone.json is missing"
    record = world.store.get_webhook("evt_large_gone")
    assert record is not None and record.status == "rejected"
    assert world.store.get_invoice(invoice.id).status is InvoiceStatus.OPEN
