"""The analytics function's handler (functions/analytics/handler.py) on an SQS batch, over the
in-memory store: one refresh per customer of the batch, and Powertools' partial batch response
naming exactly the records that failed — a customer's whose refresh raised, a body that is not JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fakes import CountingStore, make_world

from infra import wiring
from kassa.adapters import container
from kassa.adapters.analytics import MemoryAnalytics
from kassa.services import analytics as svc
from kassa_local.stack import FakeLambdaContext

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "analytics" / "handler.py"


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kassa_fn_analytics_unit", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _sqs_event(bodies: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"rh-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:analytics",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def _function() -> wiring.Function:
    return next(fn for fn in wiring.FUNCTIONS if fn.name == "analytics")


def test_a_batch_refreshes_each_customer_once_and_fails_only_the_failing_customers_records(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(datetime(2027, 1, 5, tzinfo=UTC))
    _, price = world.catalog(1500, "eur")
    failing = world.active_subscription(price, email="failing@example.com").subscription.customer
    fine = world.active_subscription(price, email="fine@example.com").subscription.customer
    routed = [e for e in world.publisher.events if e.type in wiring.ANALYTICS_ROUTE.detail_types]
    # the two customers' events interleaved, as a batch may take them, and a body that is not JSON
    by_customer = [[e for e in routed if e.data["customer"] == c] for c in (failing, fine)]
    mixed = [e for pair in zip(*by_customer, strict=False) for e in pair][:9]
    envelopes = [{"detail-type": e.type, "detail": e.model_dump(mode="json")} for e in mixed]
    customers = [svc.customer_of_event(e) for e in envelopes]
    assert customers.count(failing) > 1 and customers.count(fine) > 1
    bodies = [json.dumps(e) for e in envelopes] + ["this is not json"]
    store, analytics = CountingStore(world.store, fail_for=failing), MemoryAnalytics()
    monkeypatch.setattr(container, "store", lambda: store)
    monkeypatch.setattr(container, "analytics", lambda: analytics)

    response = handler.lambda_handler(_sqs_event(bodies), FakeLambdaContext(_function()))

    expected = [f"msg-{i}" for i, c in enumerate(customers) if c == failing] + [f"msg-{len(envelopes)}"]
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(expected)
    assert store.refreshes == {failing: 1, fine: 1}  # once per customer of the batch
    assert analytics.customer_state(failing) is None and analytics.customer_state(fine) is not None

    # the failed records delivered again, the store answering: the aggregates are the rebuild's
    store.fail_for = None
    again = [bodies[int(i.split("-")[1])] for i in expected[:-1]]
    assert handler.lambda_handler(_sqs_event(again), FakeLambdaContext(_function())) == {"batchItemFailures": []}
    rebuilt = MemoryAnalytics()
    svc.rebuild(world.store, rebuilt)
    assert analytics.counters == rebuilt.counters
