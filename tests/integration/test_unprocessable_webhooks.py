"""Webhook bodies that can never be processed, through the local stack's API Gateway on moto:
400 (413: too large to keep) and a ``rejected`` record with the reason in DynamoDB."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest

from kassa.adapters.dynamodb import DynamoStore

from .conftest import post_webhook

pytestmark = pytest.mark.integration


def _record_of(store: DynamoStore, raw: bytes) -> Any:
    return store.get_webhook(f"rejected_{hashlib.sha256(raw).hexdigest()[:32]}")


def test_json_nested_5000_deep_gets_400_and_a_rejected_record(config: dict[str, Any], store: DynamoStore) -> None:
    raw = ("[" * 5000 + "]" * 5000).encode()
    answer = post_webhook(config, raw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "body_too_deep"
    record = _record_of(store, raw)
    assert record is not None and record.status == "rejected" and "nested deeper" in record.note


def test_a_body_that_is_not_utf8_gets_400_and_a_rejected_record(config: dict[str, Any], store: DynamoStore) -> None:
    raw = b'{"id": "evt_not_utf8_' + os.urandom(4).hex().encode() + b'", "name": "Jos\xe9"}'
    answer = post_webhook(config, raw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "body_not_utf8"
    record = _record_of(store, raw)
    assert record is not None and record.status == "rejected" and "not UTF-8" in record.note


def test_a_signed_event_over_the_size_limit_gets_413_and_a_truncated_copy(
    config: dict[str, Any], store: DynamoStore, uid: str
) -> None:
    # one over the item limit only is kept in the files bucket: test_large_webhooks.py
    blob = base64.b64encode(os.urandom(4_500_000)).decode()  # ~6 MB
    answer = post_webhook(config, {"id": f"evt_huge_{uid}", "type": "invoice.paid", "data": {"object": {"b": blob}}})
    assert answer.status_code == 413, answer.text
    record = store.get_webhook(f"evt_huge_{uid}")
    assert record is not None and record.status == "rejected" and "too large" in record.note
    assert len(record.payload) < 5_000 and json.dumps  # the copy is truncated
