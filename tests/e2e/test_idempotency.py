"""Idempotency keys over HTTP on the local stack: the merchant API's ``Idempotency-Key`` (Stripe's
rules), and one PaymentIntent per (invoice, attempt) in the local Stripe even when every schedule
tick is delivered twice."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

DECLINING_CARD = "4000000000000341"


@pytest.fixture(scope="module")
def price(stack, stack_config) -> dict[str, Any]:
    return Api(stack_config).catalog(currency="EUR", amount=1500)


def _checkout_body(price: dict[str, Any], email: str) -> dict[str, Any]:
    return {"price_id": price["id"], "customer": {"email": email, "name": "Idem", "address": {"country": "NL"}}}


def _post(api: Api, path: str, body: Any, key: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.session.post(api.base + path, json=body, headers=headers, timeout=60)


def _subscriptions_of(api: Api, email: str) -> list[dict[str, Any]]:
    customers = api.get("/v1/customers", params={"email": email})["data"]
    assert len(customers) <= 1
    if not customers:
        return []
    return api.get("/v1/subscriptions", params={"customer": customers[0]["id"], "status": "all"})["data"]


def test_a_retried_checkout_returns_the_same_subscription_and_creates_one(stack, api, price):
    email, key = f"retry-{uuid.uuid4().hex[:8]}@example.com", f"checkout-{uuid.uuid4()}"
    first = _post(api, "/v1/checkout", _checkout_body(price, email), key)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # the same body, other spacing and key order: the same request
    reordered = {"customer": _checkout_body(price, email)["customer"], "price_id": price["id"]}
    again = _post(api, "/v1/checkout", reordered, key)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Idempotency-Key"] == key
    subs = _subscriptions_of(api, email)
    assert [s["id"] for s in subs] == [first.json()["subscription"]["id"]]

    # the record: one item under its own pk, expiring 24 h later (wall clock), the response kept
    items = stack.client("dynamodb").scan(
        TableName=stack.environment["BILLING_TABLE"],
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "IDEMP#api#"}},
    )["Items"]
    assert items and all(item["sk"]["S"] == "IDEMP" for item in items)
    mine = [i for i in items if first.json()["subscription"]["id"] in i.get("response", {}).get("S", "")]
    assert len(mine) == 1 and mine[0]["status"]["S"] == "COMPLETED"
    assert abs(int(mine[0]["expires_at"]["N"]) - (time.time() + 24 * 3600)) < 600


def test_the_same_key_with_another_body_or_route_is_a_400_naming_the_header(api, price):
    email, key = f"other-{uuid.uuid4().hex[:8]}@example.com", f"checkout-{uuid.uuid4()}"
    assert _post(api, "/v1/checkout", _checkout_body(price, email), key).status_code == 201
    other = _post(api, "/v1/checkout", {**_checkout_body(price, email), "coupon": "NOPE"}, key)
    assert other.status_code == 400, other.text
    error = other.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "idempotency_error",
        "idempotency_key_in_use",
        "Idempotency-Key",
    )
    elsewhere = _post(api, "/v1/products", {"name": "Tea"}, key)
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (400, "idempotency_key_in_use")
    assert len(_subscriptions_of(api, email)) == 1


def test_ten_concurrent_requests_with_one_key_create_one_subscription(stack_config, api, price):
    email, key = f"burst-{uuid.uuid4().hex[:8]}@example.com", f"checkout-{uuid.uuid4()}"
    body = _checkout_body(price, email)

    def send(_: int) -> requests.Response:
        return requests.post(
            stack_config["api_url"] + "/v1/checkout",
            json=body,
            headers={"Authorization": f"Bearer {stack_config['api_secret_key']}", "Idempotency-Key": key},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(10)))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    assert statuses[201] >= 1
    assert len({a.text for a in answers if a.status_code == 201}) == 1  # every success is the first answer
    for busy in (a for a in answers if a.status_code == 409):
        assert busy.json()["error"]["code"] == "idempotency_key_in_progress"
        assert busy.json()["error"]["param"] == "Idempotency-Key"
    subs = _subscriptions_of(api, email)
    assert len(subs) == 1
    created = next(a for a in answers if a.status_code == 201).json()
    assert subs[0]["id"] == created["subscription"]["id"]


def test_without_a_key_a_post_behaves_as_before(api, price):
    email = f"nokey-{uuid.uuid4().hex[:8]}@example.com"
    first = _post(api, "/v1/checkout", _checkout_body(price, email), None)
    assert first.status_code == 201, first.text
    assert "Idempotency-Key" not in first.headers
    again = _post(api, "/v1/checkout", _checkout_body(price, email), None)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "customer_exists")
    products = [_post(api, "/v1/products", {"name": "Same"}, None).json()["id"] for _ in range(2)]
    assert len(set(products)) == 2


def test_a_conflict_is_not_stored_and_a_bad_key_is_refused(api, price):
    email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
    assert _post(api, "/v1/checkout", _checkout_body(price, email), None).status_code == 201
    key = f"checkout-{uuid.uuid4()}"
    for _ in range(2):  # a 409 may change on a retry: executed again, never replayed
        taken = _post(api, "/v1/checkout", _checkout_body(price, email), key)
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "customer_exists")
        assert "Idempotent-Replayed" not in taken.headers
    # a 4xx of a request that ran is stored: the same answer, replayed
    missing = [_post(api, "/v1/subscriptions/sub_missing/cancel", {}, f"cancel-{key}") for _ in range(2)]
    assert [m.status_code for m in missing] == [404, 404]
    assert missing[1].headers["Idempotent-Replayed"] == "true"
    too_long = _post(api, "/v1/products", {"name": "x"}, "k" * 256)
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "Idempotency-Key"
    assert _post(api, "/v1/products", {"name": "x"}, "k" * 255).status_code == 201


def test_one_payment_intent_per_invoice_and_attempt_with_duplicated_deliveries(stack, stack_config, api):
    """Renewals and dunning retries with every schedule tick delivered twice: kassa claims each
    attempt before charging, and the local Stripe honours the Idempotency-Key that carries it."""
    from localstripe.resources import store

    settings = api.get("/v1/settings")
    settings.pop("object", None)
    settings["retry_schedule"] = {"offset_days": [1, 2, 3]}
    api.request("PUT", "/v1/settings", 200, json=settings)
    monthly = api.catalog(currency="EUR", amount=1200)
    trial = api.catalog(currency="EUR", amount=900, trial_days=3)
    payer = api.subscribe(monthly["id"], f"payer-{uuid.uuid4().hex[:6]}@example.com")
    decliner = api.subscribe(trial["id"], f"decliner-{uuid.uuid4().hex[:6]}@example.com", card=DECLINING_CARD)
    now = datetime.fromisoformat(api.get("/_local/clock")["now"].replace("Z", "+00:00")).astimezone(UTC)
    api.advance(to=(now + timedelta(days=65)).isoformat(), deliveries=2)

    per_attempt = Counter(
        (pi.metadata["kassa_invoice"], pi.metadata["kassa_attempt"])
        for name, pi in list(store.items())
        if name.startswith("payment_intent:") and "kassa_invoice" in (getattr(pi, "metadata", None) or {})
    )
    doubles = {k: n for k, n in per_attempt.items() if n != 1}
    assert not doubles, doubles
    payer_invoices = api.get(f"/v1/customers/{payer['subscription']['customer']}/invoices")["data"]
    assert sum(1 for inv in payer_invoices if inv["status"] == "paid") >= 3  # checkout + two renewals
    decliner_invoices = api.get(f"/v1/customers/{decliner['subscription']['customer']}/invoices")["data"]
    attempts = {int(a) for (inv, a) in per_attempt if inv in {i["id"] for i in decliner_invoices}}
    assert {1, 2, 3, 4} <= attempts  # the first charge and three retries, each once


def _record_key(stack_config: dict[str, Any], key: str) -> dict[str, Any]:
    """The record's key as docs/data-model.md describes it (Powertools' sha256 of [account, key])."""
    account = hashlib.sha256(f"Bearer {stack_config['api_secret_key']}".encode()).hexdigest()
    digest = hashlib.sha256(json.dumps([account, key], sort_keys=True).encode()).hexdigest()
    return {"pk": {"S": f"IDEMP#api#{digest}"}, "sk": {"S": "IDEMP"}}


def test_a_request_still_in_progress_is_a_409_and_a_dead_one_runs_again(stack, stack_config, api):
    key, body = f"product-{uuid.uuid4()}", {"name": "In progress"}
    request_hash = hashlib.sha256(json.dumps(["POST /v1/products", body], sort_keys=True).encode()).hexdigest()
    dynamodb, table = stack.client("dynamodb"), stack.environment["BILLING_TABLE"]
    now = time.time()
    record = {
        **_record_key(stack_config, key),
        "status": {"S": "INPROGRESS"},
        "expires_at": {"N": str(int(now + 24 * 3600))},
        "in_progress_expires_at": {"N": str(int((now + 60) * 1000))},  # an invocation still running
        "request_hash": {"S": request_hash},
    }
    dynamodb.put_item(TableName=table, Item=record)
    busy = _post(api, "/v1/products", body, key)
    assert busy.status_code == 409, busy.text
    assert (busy.json()["error"]["code"], busy.json()["error"]["param"]) == (
        "idempotency_key_in_progress",
        "Idempotency-Key",
    )
    # the invocation died (its deadline passed): the next request with the key runs
    dynamodb.put_item(TableName=table, Item={**record, "in_progress_expires_at": {"N": str(int((now - 1) * 1000))}})
    ran = _post(api, "/v1/products", body, key)
    assert ran.status_code == 201, ran.text
    assert _post(api, "/v1/products", body, key).json() == ran.json()
