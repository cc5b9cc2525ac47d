"""One local stack for the whole integration run: moto server + localstripe + gateway + pollers + clock.

The stack is shared, so tests use unique ids and emails (``uid``) and never advance the virtual
clock: nothing a checkout creates ever falls due, and a test that needs due work writes it itself
with a due time in the past and removes it again.

moto, localstripe, the environment and the clock are process-wide (one ``LocalStack`` per process):
the stack is stopped as soon as the last test of this directory has run, so that other directories'
stacks (tests/local) can start after it in the same pytest process.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from kassa.adapters.dynamodb import DynamoStore
from kassa_local.client import Api, confirm_card_setup_request
from kassa_local.probes import default_idle_probes
from kassa_local.stack import LocalStack

HERE = Path(__file__).resolve().parent


def _load_reference() -> Any:
    """tests/reference.py (Stripe's own fixture objects), by path: ``tests`` is not a package, and
    ``from tests.reference import …`` works only when the repository root is on sys.path."""
    spec = importlib.util.spec_from_file_location("kassa_integration_reference", HERE.parent / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_reference = _load_reference()
stripe_object = _reference.stripe_object  # stripe_object(kind, **overrides)
stripe_event = _reference.stripe_event  # stripe_event(type, obj, id)

# A fixed, month-end virtual start time. No integration test advances the clock.
START = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)

_running: list[LocalStack] = []


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        api_port=0,
        aws_port=0,
        stripe_port=0,
        state_dir=tmp_path_factory.mktemp("kassa-integration"),
        start_time=START,
        idle_probes=default_idle_probes(),
        extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"},
        real_stripe=False,
    ) as running:
        _running.append(running)
        try:
            yield running
        finally:
            _running.remove(running)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the stack right after the last integration test (``stop`` is idempotent; the session
    finalizer then finds it stopped)."""
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        for running in list(_running):
            running.stop()


@pytest.fixture(scope="session")
def config(stack: LocalStack) -> dict[str, Any]:
    assert stack.config is not None
    return stack.config.as_json()


@pytest.fixture(scope="session")
def api(config: dict[str, Any]) -> Api:
    return Api(config)


@pytest.fixture(scope="session")
def ddb(stack: LocalStack) -> Any:
    return stack.client("dynamodb")


@pytest.fixture(scope="session")
def sqs(stack: LocalStack) -> Any:
    return stack.client("sqs")


@pytest.fixture(scope="session")
def table(stack: LocalStack) -> str:
    return stack.environment["BILLING_TABLE"]


@pytest.fixture(scope="session")
def store(stack: LocalStack, ddb: Any, table: str) -> DynamoStore:
    """The billing table the functions use, through the adapter under test."""
    return DynamoStore(ddb, table, int(stack.environment["KASSA_DUE_SHARDS"]))


@pytest.fixture
def uid() -> str:
    """A suffix unique to this test (ids, emails) on the shared stack."""
    return uuid.uuid4().hex[:12]


# ----------------------------------------------------------------------------- Stripe-side helpers


def stripe_get(config: dict[str, Any], path: str) -> dict[str, Any]:
    """Read an object straight from localstripe with the secret key (bypassing kassa)."""
    response = requests.get(
        config["stripe_url"] + path, headers={"Authorization": f"Bearer {config['stripe_secret_key']}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


confirm_like_stripe_js = confirm_card_setup_request  # Stripe.js's confirmCardSetup, as the browser sends it


# ----------------------------------------------------------------------------- webhooks


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header exactly as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post_webhook(
    config: dict[str, Any], payload: bytes | dict[str, Any], *, timestamp: int | None = None, secret: str | None = None
) -> requests.Response:
    body = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    header = stripe_signature(body, secret or config["webhook_secret"], timestamp)
    return requests.post(
        config["api_url"] + "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=30,
    )


def webhook_item(ddb: Any, table: str, event_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = ddb.get_item(
        TableName=table, Key={"pk": {"S": f"WHEVT#{event_id}"}, "sk": {"S": "EVENT"}}, ConsistentRead=True
    ).get("Item")
    return item


# ----------------------------------------------------------------------------- SQS helpers


def take_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive every visible message (the caller holds the stack paused, so no poller competes)."""
    taken: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return taken
        taken.extend(got)


def release(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once (a peek)."""
    for m in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)


def delete(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def sqs_event(*bodies: str, queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:queue") -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it, one record per body."""
    return {
        "Records": [
            {
                "messageId": f"msg-{i}-{uuid.uuid4().hex[:8]}",
                "receiptHandle": f"rh-{i}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "123456789012",
                    "ApproximateFirstReceiveTimestamp": "1700000000000",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - what SQS sends
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }
