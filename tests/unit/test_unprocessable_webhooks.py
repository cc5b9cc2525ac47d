"""Webhook bodies that can never be processed: refused with 400 (413 when too large to keep) and
kept as a ``rejected`` record with the reason — never a 502, never a silent drop."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

from fakes import make_world

from kassa.adapters.stripe_webhooks import stripe_verifier
from kassa.api.webhook import delivery, response
from kassa.services.webhooks import MAX_WEBHOOK_PAYLOAD, REJECTED_COPY_CHARS, ingest

SECRET = "whsec_unprocessable"


class _Queue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)


def _sign(raw: bytes) -> str:
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def _post(raw: bytes) -> tuple[Any, _Queue, dict[str, Any]]:
    world, queue = make_world(), _Queue()
    event = {
        "headers": {"Stripe-Signature": _sign(raw)},
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }
    payload, signature = delivery(event)
    outcome = ingest(
        payload, signature, store=world.store, queue=queue, secret=SECRET, clock=world.clock, verify=stripe_verifier
    )
    return world, queue, response(outcome)


def _rejected(world: Any) -> Any:
    [record] = world.store.webhooks.values()
    assert record.status == "rejected"
    return record


def test_json_nested_5000_deep_is_refused_with_400_and_recorded() -> None:
    raw = ("[" * 5000 + "]" * 5000).encode()
    world, queue, answer = _post(raw)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "body_too_deep"
    record = _rejected(world)
    assert "nested deeper" in (record.note or "") and len(record.payload) <= REJECTED_COPY_CHARS
    assert queue.messages == []


def test_a_body_that_is_not_utf8_is_refused_with_400_and_recorded() -> None:
    raw = b'{"id": "evt_latin1", "type": "invoice.paid", "name": "Jos\xe9"}'
    world, queue, answer = _post(raw)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "body_not_utf8"
    record = _rejected(world)
    assert record.id.startswith("rejected_") and "not UTF-8" in (record.note or "")
    assert "Jos\ufffd" in record.payload
    assert queue.messages == []


def test_a_signed_event_too_large_to_keep_gets_413_and_a_truncated_copy() -> None:
    # (an event too large only for a DynamoDB item is kept in the file store: test_large_webhooks.py)
    blob = base64.b64encode(os.urandom(4_500_000)).decode()  # incompressible: ~6 MB
    raw = json.dumps({"id": "evt_huge", "type": "invoice.paid", "data": {"object": {"blob": blob}}}).encode()
    assert len(raw) > MAX_WEBHOOK_PAYLOAD
    world, queue, answer = _post(raw)
    assert answer["statusCode"] == 413
    assert json.loads(answer["body"])["error"]["code"] == "payload_too_large"
    record = world.store.get_webhook("evt_huge")
    assert record is not None and record.status == "rejected" and record.type == "invoice.paid"
    assert len(record.payload) == REJECTED_COPY_CHARS and "truncated copy" in (record.note or "")
    assert queue.messages == []
