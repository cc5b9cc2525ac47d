"""A signed Stripe event too large for a DynamoDB item, through the local stack's API Gateway on moto:
its payload is put into the files bucket (``webhooks/<event id>.json``), its ``WHEVT#`` record points
there, and the processor applies it — delivered twice, one effect."""

from __future__ import annotations

import base64
import json
import os
import zlib
from typing import Any

import pytest

from kassa.services.webhooks import MAX_RECORDED_PAYLOAD
from kassa_local.client import Api
from kassa_local.stack import LocalStack

from .conftest import post_webhook, stripe_event, stripe_object, webhook_item

pytestmark = pytest.mark.integration


def test_a_signed_800_kb_event_is_kept_in_the_files_bucket_and_applied_once(
    stack: LocalStack, api: Api, config: dict[str, Any], ddb: Any, table: str, uid: str
) -> None:
    price = api.catalog(currency="EUR", amount=1500)
    done = api.subscribe(price["id"], f"large-{uid}@example.com", card="4000000000000341")
    invoice_id = done["invoice"]["id"]
    assert done["invoice"]["status"] == "open"  # the first charge declined
    stack.drain()
    blob = base64.b64encode(os.urandom(600_000)).decode()  # incompressible: ~800 KB
    intent = stripe_object("payment_intent", id=f"pi_{uid}", amount=1500, currency="eur", status="succeeded",
                           metadata={"kassa_invoice": invoice_id, "kassa_attempt": "1", "blob": blob},
                           last_payment_error=None)  # fmt: skip
    event = stripe_event("payment_intent.succeeded", intent, f"evt_large_{uid}")
    body = json.dumps(event).encode()
    assert len(zlib.compress(body, 6)) > MAX_RECORDED_PAYLOAD

    for _ in range(2):
        answer = post_webhook(config, body)
        assert answer.status_code == 200, answer.text
        stack.drain()

    item = webhook_item(ddb, table, event["id"])
    assert item is not None and "payload_z" not in item  # a pointer, not the body
    assert item["payload_key"]["S"] == f"webhooks/{event['id']}.json"
    assert (item["status"]["S"], item["note"]["S"]) == ("processed", "applied")
    s3 = stack.client("s3")
    stored = s3.get_object(Bucket=stack.environment["FILES_BUCKET"], Key=f"webhooks/{event['id']}.json")
    assert stored["Body"].read() == body  # the exact bytes
    assert stored["ServerSideEncryption"] == "AES256"
    versions = s3.list_object_versions(Bucket=stack.environment["FILES_BUCKET"], Prefix=f"webhooks/{event['id']}")
    assert len(versions.get("Versions", [])) == 1  # the second delivery wrote nothing

    invoice = api.get(f"/v1/invoices/{invoice_id}")
    assert invoice["status"] == "paid" and invoice["payment_intent"] == f"pi_{uid}"
    assert api.get(f"/v1/subscriptions/{done['subscription']['id']}")["status"] == "active"
    paid = [e for e in stack.events("invoice.paid") if e["detail"]["data"]["id"] == invoice_id]
    assert len(paid) == 1
