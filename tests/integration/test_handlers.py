"""The Lambda handlers through the local stack: webhook_ingest and checkout over HTTP (the emulated API
Gateway), webhook_processor and renewal_worker through SQS or invoked with SQS events, renewal_sweep
invoked as EventBridge Scheduler would."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from infra import wiring
from kassa.adapters.dynamodb import DynamoStore
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.customer import Address, Customer
from kassa.domain.invoice import BillingReason, InvoiceStatus, build_subscription_invoice, invoice_id_for
from kassa.domain.periods import Interval
from kassa.domain.subscription import Status, Subscription, start_subscription
from kassa.services.ports import WebhookRecord
from kassa_local.client import Api
from kassa_local.scheduler import scheduler_event
from kassa_local.stack import LocalStack

from .conftest import (
    confirm_like_stripe_js,
    delete,
    post_webhook,
    release,
    sqs_event,
    stripe_event,
    stripe_object,
    take_all,
    webhook_item,
)

pytestmark = pytest.mark.integration


def _messages_for(messages: list[dict[str, Any]], key: str, value: str) -> list[dict[str, Any]]:
    return [m for m in messages if json.loads(m["Body"]).get(key) == value]


def _pi_event(uid: str, event_type: str, invoice_id: str | None, status: str = "succeeded") -> dict[str, Any]:
    metadata = {"kassa_invoice": invoice_id, "kassa_attempt": "1"} if invoice_id else {}
    error = (
        None
        if status == "succeeded"
        else {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "type": "card_error",
        }
    )
    intent = stripe_object("payment_intent", id=f"pi_{uid}", amount=1500, currency="eur", status=status,
                           metadata=metadata, last_payment_error=error)  # fmt: skip
    return stripe_event(event_type, intent, f"evt_{event_type.replace('.', '_')}_{uid}")


def _processor_failures(stack: LocalStack) -> int:
    return int(stack.stats()["consumers"]["webhook_processor"]["failed"])


# ----------------------------------------------------------------------------- webhook_ingest


def test_a_signed_event_is_recorded_once_and_enqueued_once(stack, config, ddb, sqs, table, uid):
    event = _pi_event(uid, "payment_intent.succeeded", f"in_unknown_{uid}")
    body = json.dumps(event).encode()
    queue = stack.queue_url("webhook-events")

    with stack.paused():
        stack.drain()
        first = post_webhook(config, body)
        assert first.status_code == 200, first.text
        assert first.json() == {"received": True, "duplicate": False}
        item = webhook_item(ddb, table, event["id"])
        assert item is not None
        # the raw body, byte for byte (stored zlib-compressed)
        assert zlib.decompress(item["payload_z"]["B"]) == body
        assert (item["type"]["S"], item["status"]["S"]) == ("payment_intent.succeeded", "received")
        taken = take_all(sqs, queue)
        release(sqs, queue, taken)  # a peek: everything goes back (other messages are not ours)
        mine = _messages_for(taken, "event_id", event["id"])
        assert [json.loads(m["Body"]) for m in mine] == [{"event_id": event["id"]}]
    stack.drain()
    processed = webhook_item(ddb, table, event["id"])
    assert processed is not None and processed["status"]["S"] == "ignored"

    with stack.paused():
        again = post_webhook(config, body)
        assert again.status_code == 200, again.text
        assert again.json() == {"received": True, "duplicate": True}
        taken = take_all(sqs, queue)
        release(sqs, queue, taken)
        assert _messages_for(taken, "event_id", event["id"]) == []  # not enqueued again
    assert webhook_item(ddb, table, event["id"]) == processed  # not recorded again


def test_a_duplicate_payment_webhook_pays_the_invoice_once(stack, api, config, ddb, table, uid):
    price = api.catalog(currency="EUR", amount=1500)
    done = api.subscribe(price["id"], f"dup-{uid}@example.com", card="4000000000000341")
    invoice_id = done["invoice"]["id"]
    assert done["invoice"]["status"] == "open"  # the first charge declined
    stack.drain()  # localstripe's own payment_intent.payment_failed webhook, too
    event = _pi_event(uid, "payment_intent.succeeded", invoice_id)

    for _ in range(2):
        assert post_webhook(config, event).status_code == 200
        stack.drain()

    invoice = api.get(f"/v1/invoices/{invoice_id}")
    assert invoice["status"] == "paid" and invoice["subtotal"] == 1500
    assert invoice["amount_paid"] == invoice["total"] == 1500 + invoice["tax"]
    assert invoice["payment_intent"] == f"pi_{uid}"
    assert api.get(f"/v1/subscriptions/{done['subscription']['id']}")["status"] == "active"
    paid = [e for e in stack.events("invoice.paid") if e["detail"]["data"]["id"] == invoice_id]
    assert len(paid) == 1
    item = webhook_item(ddb, table, event["id"])
    assert item is not None and (item["status"]["S"], item["note"]["S"]) == ("processed", "applied")


def test_an_expired_signature_is_refused_and_nothing_is_recorded(config, ddb, table, uid):
    event = stripe_event("customer.created", stripe_object("customer", id=f"cus_{uid}"), f"evt_old_{uid}")

    response = post_webhook(config, event, timestamp=int(time.time()) - 400)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "Stripe-Signature" and "tolerance" in error["message"]
    assert webhook_item(ddb, table, event["id"]) is None


def test_a_signature_within_the_tolerance_is_accepted(stack, config, ddb, table, uid):
    event = stripe_event("customer.created", stripe_object("customer", id=f"cus_{uid}"), f"evt_late_{uid}")

    response = post_webhook(config, event, timestamp=int(time.time()) - 240)  # Stripe retried after 4 minutes

    assert response.status_code == 200, response.text
    assert webhook_item(ddb, table, event["id"]) is not None


def test_a_signed_body_that_is_not_json_is_refused_naming_the_body(config):
    response = post_webhook(config, b"id=evt_1&type=customer.created")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


@pytest.mark.parametrize("body", [b"[]", b"42", b"null"])
def test_a_signed_json_body_that_is_not_an_event_object_is_refused_naming_the_body(config, body):
    response = post_webhook(config, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


def test_an_event_type_kassa_does_not_handle_is_recorded_and_ignored(stack, config, ddb, table, uid):
    event = stripe_event("customer.created", stripe_object("customer", id=f"cus_{uid}"), f"evt_cus_{uid}")
    failures = _processor_failures(stack)

    assert post_webhook(config, event).status_code == 200
    stack.drain()

    item = webhook_item(ddb, table, event["id"])
    assert item is not None
    assert (item["type"]["S"], item["status"]["S"]) == ("customer.created", "ignored")
    assert item["note"]["S"] == "ignored:unhandled type"
    assert _processor_failures(stack) == failures  # never failed, never retried


@pytest.mark.parametrize(
    ("event_type", "invoice", "note"),
    [
        ("payment_intent.succeeded", "in_kassa_never_issued", "ignored:unknown invoice in_kassa_never_issued"),
        ("payment_intent.payment_failed", "in_kassa_never_issued", "ignored:unknown invoice in_kassa_never_issued"),
        ("payment_intent.succeeded", None, "ignored:not a kassa payment"),
    ],
    ids=["succeeded-unknown-invoice", "failed-unknown-invoice", "succeeded-not-kassa"],
)
def test_a_payment_event_for_an_invoice_kassa_does_not_know_is_ignored(
    stack, config, ddb, table, uid, event_type, invoice, note
):
    status = "succeeded" if event_type.endswith("succeeded") else "requires_payment_method"
    event = _pi_event(uid, event_type, invoice, status)
    failures = _processor_failures(stack)

    assert post_webhook(config, event).status_code == 200
    stack.drain()

    item = webhook_item(ddb, table, event["id"])
    assert item is not None and (item["status"]["S"], item["note"]["S"]) == ("ignored", note)
    assert _processor_failures(stack) == failures


# ----------------------------------------------------------------------------- webhook_processor


def test_a_malformed_message_fails_alone_in_its_batch(stack, store, ddb, table, uid):
    event = stripe_event("customer.created", stripe_object("customer", id=f"cus_{uid}"), f"evt_batch_{uid}")
    store.record_webhook(WebhookRecord(id=event["id"], type=event["type"], status="received",
                                       payload=json.dumps(event), received_at=stack.clock.now()))  # fmt: skip
    batch = sqs_event("this is not json", json.dumps({"event_id": event["id"]}))

    response = stack.invoke("webhook_processor", batch)

    assert response == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    item = webhook_item(ddb, table, event["id"])
    assert item is not None and item["status"]["S"] == "ignored"


# ----------------------------------------------------------------------------- renewals


@pytest.fixture
def now(stack: LocalStack) -> datetime:
    """The virtual clock's time (no integration test moves it)."""
    return stack.clock.now()


@pytest.fixture
def billing_objects(store: DynamoStore, uid: str, now: datetime) -> tuple[Customer, Price]:
    """A customer without a card and a monthly EUR price, written straight to the billing table."""
    store.put_product(Product(id=f"prod_{uid}", name="Renewal club", created=now))
    price = Price(id=f"price_{uid}", product=f"prod_{uid}", currency="EUR", unit_amount=700,
                  recurring=Recurring(interval=Interval.MONTH), created=now)  # fmt: skip
    store.put_price(price)
    customer = Customer(id=f"cus_{uid}", email=f"renew-{uid}@example.com", address=Address(country="NL"),
                        stripe_customer_id=f"cus_stripe_{uid}", created=now)  # fmt: skip
    store.create_customer(customer)
    return customer, price


def _due_subscription(
    store: DynamoStore, customer: Customer, price: Price, n: int, due: datetime, status: Status = Status.ACTIVE
) -> Subscription:
    """A subscription (active, trialing or canceled) that falls due at ``due``."""
    sub = start_subscription(customer=customer.id, price=price, quantity=1, now=due - timedelta(days=31),
                             subscription_id=f"sub_{customer.id[4:]}_{n}")  # fmt: skip
    if status is Status.TRIALING:
        sub = sub.model_copy(update={"status": status, "trial_start": sub.created, "trial_end": due,
                                     "billing_cycle_anchor": due, "current_period_end": due,
                                     "incomplete_expires_at": None})  # fmt: skip
    else:
        sub = sub.model_copy(update={"status": status, "incomplete_expires_at": None, "current_period_end": due})
    store.create_subscription(sub, None, "ITEST")
    return sub


@pytest.fixture
def cancel_afterwards(store: DynamoStore) -> Iterator[list[str]]:
    """Subscriptions to take out of the due index after the test (the table is shared)."""
    ids: list[str] = []
    yield ids
    for sub_id in ids:
        sub = store.get_subscription(sub_id)
        if sub.due_at is not None:
            store.save_subscription(sub.transition(Status.CANCELED, sub.created))


def _due_now(ddb: Any, table: str, now: datetime) -> dict[str, str]:
    """Every subscription in the table that is due at ``now``, found independently (a test-side Scan)."""
    due: dict[str, str] = {}
    pages = ddb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="sk = :s",
        ExpressionAttributeValues={":s": {"S": "SUBSCRIPTION"}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page["Items"]:
            sub = Subscription.model_validate_json(item["doc"]["S"])
            if sub.due_at is not None and sub.due_at <= now:
                due[sub.id] = sub.due_at.isoformat()
    return due


def test_the_renewal_sweep_enqueues_exactly_the_due_subscriptions(
    stack, store, ddb, sqs, table, now, billing_objects, cancel_afterwards
):
    customer, price = billing_objects
    renewing = _due_subscription(store, customer, price, 1, now - timedelta(days=1))
    trial_over = _due_subscription(store, customer, price, 2, now - timedelta(hours=1), Status.TRIALING)
    not_yet = _due_subscription(store, customer, price, 3, now + timedelta(days=10))
    canceled = _due_subscription(store, customer, price, 4, now - timedelta(days=2), Status.CANCELED)
    cancel_afterwards.extend([renewing.id, trial_over.id, not_yet.id])
    queue = stack.queue_url("renewals")
    schedule = wiring.function("renewal_sweep").schedule
    assert schedule is not None
    tick = scheduler_event(schedule, now)

    with stack.paused():
        stack.drain()
        expected = _due_now(ddb, table, now)
        result = stack.invoke("renewal_sweep", tick)
        messages = take_all(sqs, queue)
        delete(sqs, queue, messages)  # ours: the worker is tested on its own below

    bodies = [json.loads(m["Body"]) for m in messages]
    enqueued = [b["subscription"] for b in bodies]
    assert result == {"enqueued": len(expected)}
    assert sorted(enqueued) == sorted(expected)  # each due subscription exactly once, nothing else
    assert {renewing.id, trial_over.id} <= set(enqueued)
    assert not_yet.id not in enqueued and canceled.id not in enqueued
    for body in bodies:
        assert body["due_at"] == expected[body["subscription"]]


def test_a_renewal_message_for_an_unknown_subscription_is_acknowledged(stack):
    batch = sqs_event(json.dumps({"subscription": "sub_doesnotexist", "due_at": "2026-03-01T00:00:00+00:00"}))

    assert stack.invoke("renewal_worker", batch) == {"batchItemFailures": []}


def test_a_redelivered_renewal_message_renews_once(stack, store, now, billing_objects, cancel_afterwards):
    customer, price = billing_objects
    sub = _due_subscription(store, customer, price, 1, now - timedelta(hours=3))
    cancel_afterwards.append(sub.id)
    message = json.dumps({"subscription": sub.id, "due_at": sub.current_period_end.isoformat()})

    first = stack.invoke("renewal_worker", sqs_event(message))
    second = stack.invoke("renewal_worker", sqs_event(message))

    assert first == second == {"batchItemFailures": []}
    renewed = store.get_subscription(sub.id)
    period = sub.next_period()
    assert (renewed.current_period_start, renewed.current_period_end) == (period.start, period.end)
    assert renewed.status is Status.PAST_DUE  # no card on file: the charge could not even be tried
    invoices = store.list_customer_invoices(customer.id, 10, None).items
    assert [i.id for i in invoices] == [invoice_id_for(sub.id, period.start)]
    invoice = invoices[0]
    assert invoice.status is InvoiceStatus.OPEN and invoice.number and invoice.subtotal == 700
    assert invoice.amount_due == invoice.total == 700 + invoice.tax
    assert invoice.last_payment_error is not None and invoice.last_payment_error.code == "no_payment_method"


# ----------------------------------------------------------------------------- the API


def _walk(api: Api, path: str) -> list[str]:
    """Follow ``starting_after`` with ``limit=1`` until ``has_more`` is false."""
    walked: list[str] = []
    cursor: str | None = None
    while True:
        page = api.get(path, params={"limit": 1, **({"starting_after": cursor} if cursor else {})})
        assert page["object"] == "list" and len(page["data"]) == 1, page
        walked.append(cursor := page["data"][0]["id"])
        if not page["has_more"]:
            return walked
        assert len(walked) < 100, "pagination does not end"


@pytest.mark.parametrize("kind", ["prices", "products"])
def test_catalog_listings_paginate_with_limit_and_starting_after(api: Api, uid, kind):
    product = api.post("/v1/products", {"name": f"Pages {uid}"}, expect=201)
    mine = set()
    for amount in (100, 200, 300):
        if kind == "prices":
            body = {"product": product["id"], "currency": "EUR", "unit_amount": amount,
                    "recurring": {"interval": "month"}}  # fmt: skip
        else:
            body = {"name": f"Pages {uid} {amount}"}
        mine.add(api.post(f"/v1/{kind}", body, expect=201)["id"])
    everything = api.get(f"/v1/{kind}", params={"limit": 100})
    assert everything["has_more"] is False  # the shared table holds fewer than 100 of them

    walked = _walk(api, f"/v1/{kind}")

    assert walked == [p["id"] for p in everything["data"]]  # each once, in the same (newest first) order
    assert mine <= set(walked)


def _customer_with_invoices(store: DynamoStore, uid: str, now: datetime, n: int) -> tuple[str, list[str]]:
    """A customer with ``n`` subscriptions, each with its first invoice, created a minute apart."""
    customer = Customer(id=f"cus_{uid}", email=f"pages-{uid}@example.com", address=Address(country="NL"),
                        created=now)  # fmt: skip
    store.create_customer(customer)
    price = Price(id=f"price_{uid}", product=f"prod_{uid}", currency="EUR", unit_amount=500,
                  recurring=Recurring(interval=Interval.MONTH), created=now)  # fmt: skip
    invoices = []
    for i in range(n):
        created = now - timedelta(minutes=n - i)
        sub = start_subscription(customer=customer.id, price=price, quantity=1, now=created,
                                 subscription_id=f"sub_{uid}_{i}")  # fmt: skip
        draft = build_subscription_invoice(sub, sub.period, created, BillingReason.SUBSCRIPTION_CREATE)
        final = store.create_subscription(sub.model_copy(update={"latest_invoice": draft.id}), draft, "ITEST")
        assert final is not None
        invoices.append(final.id)
    return customer.id, invoices


def test_customer_invoices_paginate_with_limit_and_starting_after(api: Api, store, uid, now):
    customer, invoices = _customer_with_invoices(store, uid, now, 3)

    walked = _walk(api, f"/v1/customers/{customer}/invoices")

    assert walked == list(reversed(invoices))  # newest first, each once
    everything = api.get(f"/v1/customers/{customer}/invoices", params={"limit": 3})
    assert [i["id"] for i in everything["data"]] == walked and everything["has_more"] is False
    rest = api.get(f"/v1/customers/{customer}/invoices", params={"limit": 5, "starting_after": walked[0]})
    assert [i["id"] for i in rest["data"]] == walked[1:] and rest["has_more"] is False


@pytest.mark.parametrize("foreign", ["other_customers_invoice", "own_subscription"])
def test_a_cursor_from_another_listing_is_refused_naming_starting_after(api: Api, store, uid, now, foreign):
    customer, _ = _customer_with_invoices(store, uid, now, 2)
    _, others = _customer_with_invoices(store, f"{uid}o", now, 1)
    cursor = others[0] if foreign == "other_customers_invoice" else f"sub_{uid}_0"

    response = api.request("GET", f"/v1/customers/{customer}/invoices", params={"starting_after": cursor})

    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == "starting_after"


def test_bad_pagination_parameters_are_4xx_naming_them(api: Api):
    unknown = api.request("GET", "/v1/prices", params={"starting_after": "price_doesnotexist"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "starting_after"
    for limit in ("0", "101", "ten"):
        bad = api.request("GET", "/v1/prices", params={"limit": limit})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit", limit


def test_an_unknown_invoice_is_404_naming_invoice(api: Api):
    response = api.request("GET", "/v1/invoices/in_doesnotexist")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["param"] == "invoice"
    assert error["code"] == "resource_missing" and error["type"] == "invalid_request_error"


def _checkout(api: Api, price_id: str, email: str) -> dict[str, Any]:
    return api.post("/v1/checkout", {"price_id": price_id, "customer": {"email": email, "address": {"country": "NL"}}},
                    expect=201)  # fmt: skip


def test_completing_checkout_before_the_card_is_confirmed_is_400_naming_setup_intent_id(stack, api: Api, uid):
    price = api.catalog(currency="EUR", amount=1100)
    started = _checkout(api, price["id"], f"early-{uid}@example.com")
    sub_id = started["subscription"]["id"]

    response = api.request(
        "POST", f"/v1/checkout/{sub_id}/complete", json={"setup_intent_id": started["setup_intent_id"]}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "setup_intent_id" and "requires_payment_method" in error["message"]
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "incomplete"
    invoice = api.get(f"/v1/invoices/{started['invoice']['id']}")
    assert invoice["status"] == "open" and invoice["attempt_count"] == 0  # nothing was charged


def test_completing_checkout_with_another_subscriptions_setup_intent_is_400(api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1100)
    mine = _checkout(api, price["id"], f"mine-{uid}@example.com")
    theirs = _checkout(api, price["id"], f"theirs-{uid}@example.com")
    confirmed = confirm_like_stripe_js(config, theirs["setup_intent_id"], theirs["client_secret"], "4242424242424242")
    assert confirmed.status_code == 200, confirmed.text

    response = api.request("POST", f"/v1/checkout/{mine['subscription']['id']}/complete",
                           json={"setup_intent_id": theirs["setup_intent_id"]})  # fmt: skip

    assert response.status_code == 400 and response.json()["error"]["param"] == "setup_intent_id"
    assert api.get(f"/v1/subscriptions/{mine['subscription']['id']}")["status"] == "incomplete"


def test_checkout_for_an_existing_email_is_409_and_customer_id_reuses_the_customer(api: Api, config, uid):
    price = api.catalog(currency="EUR", amount=1300)
    first = _checkout(api, price["id"], f"again-{uid}@example.com")
    assert set(first["customer"]) == {"object", "id", "email", "name"}  # nothing more of the customer

    refused = api.request("POST", "/v1/checkout", json={
        "price_id": price["id"], "customer": {"email": f"Again-{uid}@Example.com", "address": {"country": "NL"}},
    })  # fmt: skip
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("customer_exists", "customer.email")
    assert "customer_id" in error["message"] and first["customer"]["id"] not in refused.text

    second = api.post("/v1/checkout", {"price_id": price["id"], "customer_id": first["customer"]["id"]}, expect=201)
    assert second["customer"]["id"] == first["customer"]["id"]
    assert second["subscription"]["customer"] == first["customer"]["id"]
    subs = api.get(f"/v1/customers/{first['customer']['id']}/subscriptions")["data"]
    assert {s["id"] for s in subs} == {first["subscription"]["id"], second["subscription"]["id"]}
    stripe_customers = requests.get(
        f"{config['stripe_url']}/v1/customers", params={"email": f"again-{uid}@example.com", "limit": 100},
        headers={"Authorization": f"Bearer {config['stripe_secret_key']}"}, timeout=10,
    ).json()["data"]  # fmt: skip
    assert len([c for c in stripe_customers if c["email"].lower() == f"again-{uid}@example.com"]) == 1


def test_the_webhook_route_schedule_puts_a_rule_whose_put_never_came(stack, ddb, table, now, uid):
    """An endpoint written as the API writes it, the API then dying before its rule put: the
    webhook-route schedule's tick (the local clock fires it: the idle probe says it is due) puts the
    rule to the endpoint's events; then it is in sync, and the probe lets no tick fire."""
    from kassa.adapters.webhooks import DynamoWebhookStore
    from kassa.domain.webhooks import SigningSecret, WebhookEndpoint
    from kassa_local.probes import webhook_route_probe

    hooks = DynamoWebhookStore(ddb, table)
    events = stack.client("events")
    rule, bus = wiring.WEBHOOKS_ROUTE.rule_name, stack.environment[wiring.RULE_BUS_ENV]
    schedule = wiring.function("webhook_delivery").schedule
    assert schedule is not None
    tick = scheduler_event(schedule, now)
    endpoint = WebhookEndpoint(id=f"we_{uid}", url="http://127.0.0.1:9/never", enabled_events=["coupon.deleted"],
                               secrets=[SigningSecret(secret="whsec_x")], created=now)  # fmt: skip
    hooks.add_endpoint(endpoint)
    try:
        assert webhook_route_probe(now) == now
        assert stack.invoke("webhook_delivery", tick) == {"outcome": "synced"}
        described = events.describe_rule(Name=rule, EventBusName=bus)
        assert json.loads(described["EventPattern"])["detail-type"] == ["coupon.deleted"]
        assert described["State"] == "ENABLED"
        assert webhook_route_probe(now) is None
        assert stack.invoke("webhook_delivery", tick) == {"outcome": "in_sync"}
    finally:
        hooks.delete_endpoint(endpoint.id)
        stack.invoke("webhook_delivery", tick)  # the rule without it again
