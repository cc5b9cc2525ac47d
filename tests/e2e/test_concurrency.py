"""20 identical concurrent requests on every mutating route of the merchant API over HTTP, then the
state checked: one effect, or several that are all kept — never a lost or a doubled one.

20 concurrent ``POST /v1/subscriptions/{id}/invoice_items`` leave 20 pending lines, and the next
invoice bills every one of them; creates without an Idempotency-Key are all kept, with one key they
make one object; state changes (archive, deactivate, delete, pause, cancel, resume, finalize, pay,
void, write off, discount) happen once with one event; credit notes and refunds never credit more than
the invoice; concurrent updates with different values keep one of them with every write published.
(The service-level race on DynamoDB is in tests/integration/test_concurrency.py: the local stack runs
one invocation at a time per function.)"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from kassa_local.client import Api, authenticate_payment, confirm_card_setup

pytestmark = pytest.mark.e2e

REQUESTS = 20


def test_twenty_concurrent_invoice_items_are_all_kept(api: Api) -> None:
    price = api.catalog(currency="EUR", amount=1500)
    started = api.subscribe(price["id"], "concurrent-items@example.com")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]

    def post(n: int) -> int:
        response = api.request(
            "POST",
            f"/v1/subscriptions/{sub_id}/invoice_items",
            json={"amount": 100 + n, "description": f"item {n:02d}"},
        )
        return int(response.status_code)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        statuses = list(pool.map(post, range(REQUESTS)))
    assert statuses == [201] * REQUESTS
    api.advance("32d")  # the renewal invoice carries every pending line
    invoices = api.get(f"/v1/invoices?customer={customer}&limit=10")["data"]
    renewal = next(i for i in invoices if i["billing_reason"] == "subscription_cycle")
    items = sorted(line["description"] for line in renewal["lines"] if line["description"].startswith("item "))
    assert items == [f"item {n:02d}" for n in range(REQUESTS)]
    assert sum(line["amount"] for line in renewal["lines"] if line["description"].startswith("item ")) == sum(
        100 + n for n in range(REQUESTS)
    )


# ---------------------------------------------------------------- every other mutating route
# The local stack runs one invocation at a time per function, so over HTTP these 20 requests
# queue up rather than interleave inside a handler: what is checked is that the twentieth request
# finds the state the first left and neither repeats its effect nor loses it.

OREGON = {"country": "US", "state": "OR"}
DECLINING_CARD = "4000000000000341"
THREE_D_SECURE_CARD = "4000002760003184"


def _burst(
    config: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    *,
    bodies: list[Any] | None = None,
    key: str | None = None,
) -> list[requests.Response]:
    """20 concurrent requests, each on its own connection; ``bodies`` gives each its own body."""
    headers = {"Authorization": f"Bearer {config['api_secret_key']}"}
    if key is not None:
        headers["Idempotency-Key"] = key

    def one(n: int) -> requests.Response:
        payload = bodies[n] if bodies is not None else body
        return requests.request(method, config["api_url"] + path, json=payload, headers=headers, timeout=120)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        return list(pool.map(one, range(REQUESTS)))


def _statuses(responses: list[requests.Response]) -> dict[int, int]:
    return dict(Counter(r.status_code for r in responses))


def _events(api: Api, type_: str, object_id: str, changed: str | None = None) -> list[dict[str, Any]]:
    """The events of one object (``changed``: only those whose previous values name that field)."""
    return [
        e
        for e in api.events(type_)
        if e["detail"]["data"]["id"] == object_id
        and (changed is None or changed in (e["detail"].get("previous_attributes") or {}))
    ]


def _paid_once(api: Api, invoice_id: str) -> None:
    """One ``invoice.paid`` and one receipt. A request that finds the invoice already paid may
    publish its events again (the run that paid it may have died before publishing) under the same
    deterministic ids, which every consumer takes once: one id, one receipt."""
    events = _events(api, "invoice.paid", invoice_id)
    assert events and len({e["detail"]["id"] for e in events}) == 1
    customer = events[0]["detail"]["data"]["customer"]
    sent = api.get(f"/v1/customers/{customer}/emails", params={"limit": 50})["data"]
    assert [m["template"] for m in sent if invoice_id in m["key"]].count("receipt") == 1


def _stripe(kind: str, **metadata: str) -> list[Any]:
    """localstripe's objects of a kind (``payment_intent``, ``refund``) whose metadata has these values,
    read from its in-process store: every one ever made, whatever a list endpoint would page."""
    from localstripe.resources import store

    return [
        value
        for key, value in list(store.items())
        if key.startswith(kind + ":") and all((value.metadata or {}).get(k) == v for k, v in metadata.items())
    ]


def _tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def plans(stack_config: dict[str, Any]) -> dict[str, str]:
    """One catalog for the module: a product with a USD 10.00 and a USD 20.00 monthly price."""
    api = Api(stack_config)
    product = api.post("/v1/products", {"name": "Concurrency"}, expect=201)["id"]

    def price(amount: int) -> str:
        body = {"product": product, "currency": "USD", "unit_amount": amount, "recurring": {"interval": "month"}}
        return str(api.post("/v1/prices", body, expect=201)["id"])

    return {"product": product, "basic": price(1000), "pro": price(2000)}


def _subscribed(api: Api, plans: dict[str, str], card: str = "4242424242424242") -> dict[str, Any]:
    """A checkout completed with ``card``. With the declining card, it returns once the decline's
    webhook (payment_intent.payment_failed, which records the PaymentIntent on the invoice) has been
    applied: a burst that starts earlier races that write and its answers show either state."""
    started = api.subscribe(plans["basic"], f"burst-{_tag()}@example.com", card=card, address=OREGON)
    if card == DECLINING_CARD:
        invoice_id = started["invoice"]["id"]
        deadline = time.monotonic() + 30
        while api.get(f"/v1/invoices/{invoice_id}")["payment_intent"] is None:
            assert time.monotonic() < deadline, f"the decline of {invoice_id} never reached its webhook"
            time.sleep(0.1)
    return started


# ---------------------------------------------------------------- creates
CREATES = {
    "products": lambda plans, tag: {"name": f"burst {tag}"},
    "prices": lambda plans, tag: {
        "product": plans["product"],
        "currency": "USD",
        "unit_amount": 700,
        "nickname": f"burst {tag}",
        "recurring": {"interval": "month"},
    },
    "coupons": lambda plans, tag: {"name": f"burst {tag}"[:40], "percent_off": 10, "duration": "once"},
}


def _listed(api: Api, route: str, tag: str) -> list[dict[str, Any]]:
    found = api.get(f"/v1/{route}", params={"limit": 100})["data"]
    return [o for o in found if f"burst {tag}" in (o.get("name"), o.get("nickname"))]


@pytest.mark.parametrize("route", sorted(CREATES))
def test_identical_creates_without_a_key_are_all_kept(api: Api, stack_config, plans, route: str) -> None:
    tag = _tag()
    responses = _burst(stack_config, "POST", f"/v1/{route}", CREATES[route](plans, tag))
    assert _statuses(responses) == {201: REQUESTS}, [r.text for r in responses if r.status_code != 201][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == REQUESTS
    assert {o["id"] for o in _listed(api, route, tag)} == ids
    for object_id in ids:
        assert api.get(f"/v1/{route}/{object_id}")["id"] == object_id


def _one_key(config: dict[str, Any], path: str, body: Any) -> list[requests.Response]:
    """20 identical requests under one Idempotency-Key: one is executed, the others replay it (or, while
    it runs on another Lambda environment, are 409 ``idempotency_key_in_progress``)."""
    responses = _burst(config, "POST", path, body, key=f"burst-{_tag()}")
    done = [r for r in responses if r.status_code != 409]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["code"] == "idempotency_key_in_progress", refused.text
    assert done and {r.status_code for r in done} == {201}, [r.text for r in done][:3]
    assert len({r.text for r in done}) == 1  # the very same answer
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in responses) == 1
    return done


@pytest.mark.parametrize("route", sorted(CREATES))
def test_identical_creates_with_one_key_make_one_object(api: Api, stack_config, plans, route: str) -> None:
    tag = _tag()
    done = _one_key(stack_config, f"/v1/{route}", CREATES[route](plans, tag))
    assert [o["id"] for o in _listed(api, route, tag)] == [done[0].json()["id"]]


def test_identical_customers_make_one_customer_with_or_without_a_key(api: Api, stack_config) -> None:
    email = f"burst-{_tag()}@example.com"
    body = {"email": email, "name": "Burst", "address": OREGON}
    responses = _burst(stack_config, "POST", "/v1/customers", body)
    assert _statuses(responses) == {201: 1, 409: REQUESTS - 1}
    assert {r.json()["error"]["param"] for r in responses if r.status_code == 409} == {"email"}
    created = next(r.json() for r in responses if r.status_code == 201)
    assert [c["id"] for c in api.get("/v1/customers", params={"email": email})["data"]] == [created["id"]]
    assert len(_events(api, "customer.created", created["id"])) == 1

    other = {**body, "email": f"burst-{_tag()}@example.com"}
    done = _one_key(stack_config, "/v1/customers", other)
    listed = api.get("/v1/customers", params={"email": other["email"]})["data"]
    assert [c["id"] for c in listed] == [done[0].json()["id"]]


def test_identical_promotion_codes_make_one_code_with_or_without_a_key(api: Api, stack_config) -> None:
    coupon = api.post("/v1/coupons", {"percent_off": 5, "duration": "once"}, expect=201)["id"]
    code = f"BURST{_tag().upper()}"
    responses = _burst(stack_config, "POST", "/v1/promotion_codes", {"code": code, "coupon": coupon})
    assert _statuses(responses) == {201: 1, 409: REQUESTS - 1}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"already_exists"}
    assert len(api.get("/v1/promotion_codes", params={"code": code})["data"]) == 1

    other = f"BURST{_tag().upper()}"
    done = _one_key(stack_config, "/v1/promotion_codes", {"code": other, "coupon": coupon})
    listed = api.get("/v1/promotion_codes", params={"code": other})["data"]
    assert [p["id"] for p in listed] == [done[0].json()["id"]]


def test_identical_checkouts_of_a_new_customer_make_one_subscription(api: Api, stack_config, plans) -> None:
    email = f"burst-{_tag()}@example.com"
    body = {"price_id": plans["basic"], "customer": {"email": email, "address": OREGON}}
    responses = _burst(stack_config, "POST", "/v1/checkout", body)
    assert _statuses(responses) == {201: 1, 409: REQUESTS - 1}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"customer_exists"}
    customer = next(r.json()["customer"]["id"] for r in responses if r.status_code == 201)
    assert len(api.get(f"/v1/customers/{customer}/subscriptions")["data"]) == 1

    other = {**body, "customer": {"email": f"burst-{_tag()}@example.com", "address": OREGON}}
    done = _one_key(stack_config, "/v1/checkout", other)
    started = done[0].json()
    subs = api.get(f"/v1/customers/{started['customer']['id']}/subscriptions")["data"]
    assert [s["id"] for s in subs] == [started["subscription"]["id"]]
    assert len(api.get(f"/v1/customers/{started['customer']['id']}/invoices")["data"]) == 1


def test_identical_checkouts_of_a_returning_customer_are_all_kept(api: Api, stack_config, plans) -> None:
    customer = api.post("/v1/customers", {"email": f"burst-{_tag()}@example.com", "address": OREGON}, expect=201)["id"]
    responses = _burst(stack_config, "POST", "/v1/checkout", {"price_id": plans["basic"], "customer_id": customer})
    assert _statuses(responses) == {201: REQUESTS}, [r.text for r in responses if r.status_code != 201][:3]
    made = {r.json()["subscription"]["id"] for r in responses}
    assert len(made) == REQUESTS
    listed = api.get(f"/v1/customers/{customer}/subscriptions")["data"]
    assert {s["id"] for s in listed} == made
    assert len({r.json()["invoice"]["id"] for r in responses}) == REQUESTS


# ---------------------------------------------------------------- updates with different values
def test_concurrent_product_updates_keep_one_value_and_publish_each(api: Api, stack_config) -> None:
    product = api.post("/v1/products", {"name": "before"}, expect=201)["id"]
    names = [f"name {n:02d}" for n in range(REQUESTS)]
    responses = _burst(stack_config, "POST", f"/v1/products/{product}", bodies=[{"name": n} for n in names])
    assert _statuses(responses) == {200: REQUESTS}
    final = api.get(f"/v1/products/{product}")["name"]
    updates = _events(api, "product.updated", product)
    assert sorted(e["detail"]["data"]["name"] for e in updates) == names  # every write is kept, none twice
    assert final == updates[-1]["detail"]["data"]["name"]
    previous = ["before"] + [e["detail"]["data"]["name"] for e in updates[:-1]]
    assert [e["detail"]["previous_attributes"]["name"] for e in updates] == previous  # a chain: none lost


def test_concurrent_customer_updates_keep_one_value_with_consistent_versions(api: Api, stack_config) -> None:
    customer = api.post(
        "/v1/customers", {"email": f"burst-{_tag()}@example.com", "name": "before", "address": OREGON}, expect=201
    )
    names = [f"name {n:02d}" for n in range(REQUESTS)]
    path = f"/v1/customers/{customer['id']}"
    responses = _burst(stack_config, "POST", path, bodies=[{"name": n} for n in names])
    assert _statuses(responses) == {200: REQUESTS}
    final = api.get(path)
    assert final["name"] in names
    updates = sorted(_events(api, "customer.updated", customer["id"]), key=lambda e: e["detail"]["data"]["version"])
    versions = [e["detail"]["data"]["version"] for e in updates]
    assert versions == list(range(versions[0], versions[0] + REQUESTS))  # one write per request, in sequence
    assert final["name"] == updates[-1]["detail"]["data"]["name"]
    assert sorted(e["detail"]["data"]["name"] for e in updates) == names
    previous = ["before"] + [e["detail"]["data"]["name"] for e in updates[:-1]]
    assert [e["detail"]["previous_attributes"]["name"] for e in updates] == previous
    assert sorted(r.json()["name"] for r in responses) == names  # each answer is its own write


def test_concurrent_settings_replacements_leave_one_of_them(api: Api, stack_config) -> None:
    before = {k: v for k, v in api.get("/v1/settings").items() if k != "object"}
    emails = [f"billing-{n:02d}@example.com" for n in range(REQUESTS)]
    try:
        bodies = [{**before, "support_email": e} for e in emails]
        responses = _burst(stack_config, "PUT", "/v1/settings", bodies=bodies)
        assert _statuses(responses) == {200: REQUESTS}, [r.text for r in responses if r.status_code != 200][:3]
        after = {k: v for k, v in api.get("/v1/settings").items() if k != "object"}
        assert after["support_email"] in emails
        assert {**after, "support_email": before["support_email"]} == before  # nothing else moved
    finally:
        assert api.request("PUT", "/v1/settings", json=before).status_code == 200


# ---------------------------------------------------------------- catalog and coupon state changes
def test_concurrent_archives_of_a_price_archive_it_once(api: Api, stack_config, plans) -> None:
    price = api.post(
        "/v1/prices",
        {"product": plans["product"], "currency": "USD", "unit_amount": 300, "recurring": {"interval": "month"}},
        expect=201,
    )["id"]
    responses = _burst(stack_config, "POST", f"/v1/prices/{price}", {"active": False})
    assert _statuses(responses) == {200: REQUESTS}
    assert {r.json()["active"] for r in responses} == {False}
    assert api.get(f"/v1/prices/{price}")["active"] is False
    assert len(_events(api, "price.updated", price)) == 1


def test_concurrent_deactivations_of_a_code_deactivate_it_once(api: Api, stack_config) -> None:
    coupon = api.post("/v1/coupons", {"percent_off": 5, "duration": "once"}, expect=201)["id"]
    code = api.post("/v1/promotion_codes", {"code": f"OFF{_tag().upper()}", "coupon": coupon}, expect=201)["id"]
    responses = _burst(stack_config, "POST", f"/v1/promotion_codes/{code}", {"active": False})
    assert _statuses(responses) == {200: REQUESTS}
    assert api.get(f"/v1/promotion_codes/{code}")["active"] is False
    assert len(_events(api, "promotion_code.updated", code)) == 1


def test_concurrent_deletes_of_a_coupon_delete_it_once(api: Api, stack_config) -> None:
    coupon = api.post("/v1/coupons", {"percent_off": 5, "duration": "once"}, expect=201)["id"]
    responses = _burst(stack_config, "DELETE", f"/v1/coupons/{coupon}")
    assert _statuses(responses) == {200: REQUESTS}
    assert {(r.json()["id"], r.json()["deleted"]) for r in responses} == {(coupon, True)}
    assert len(_events(api, "coupon.deleted", coupon)) == 1


def test_concurrent_discounts_redeem_the_coupon_once(api: Api, stack_config, plans) -> None:
    sub = _subscribed(api, plans)["subscription"]
    coupon = api.post("/v1/coupons", {"percent_off": 20, "duration": "forever", "max_redemptions": 5}, expect=201)
    path = f"/v1/subscriptions/{sub['id']}/discount"
    responses = _burst(stack_config, "POST", path, {"coupon": coupon["id"]})
    assert _statuses(responses) == {200: REQUESTS}, [r.text for r in responses if r.status_code != 200][:3]
    discount = api.get(f"/v1/subscriptions/{sub['id']}")["discount"]
    assert discount["coupon"]["id"] == coupon["id"]
    assert api.get(f"/v1/coupons/{coupon['id']}")["times_redeemed"] == 1  # one subscription, one redemption
    assert len(_events(api, "customer.discount.created", discount["id"])) == 1
    assert _events(api, "customer.discount.updated", discount["id"]) == []

    removed = _burst(stack_config, "DELETE", path)
    assert _statuses(removed) == {200: 1, 404: REQUESTS - 1}
    assert {r.json()["error"]["param"] for r in removed if r.status_code == 404} == {"discount"}
    assert api.get(f"/v1/subscriptions/{sub['id']}")["discount"] is None
    assert len(_events(api, "customer.discount.deleted", discount["id"])) == 1


# ---------------------------------------------------------------- subscription state changes
@pytest.mark.parametrize(
    ("route", "body", "field", "undo"),
    [
        ("pause_collection", {"behavior": "void"}, "pause_collection", "resume_collection"),
        ("cancel", {"at_period_end": True}, "cancel_at_period_end", "uncancel"),
    ],
)
def test_concurrent_state_changes_and_their_undo_happen_once_each(
    api: Api, stack_config, plans, route: str, body: dict[str, Any], field: str, undo: str
) -> None:
    sub = _subscribed(api, plans)["subscription"]
    before = api.get(f"/v1/subscriptions/{sub['id']}")
    responses = _burst(stack_config, "POST", f"/v1/subscriptions/{sub['id']}/{route}", body)
    assert _statuses(responses) == {200: REQUESTS}
    changed = api.get(f"/v1/subscriptions/{sub['id']}")
    assert changed[field] and changed["status"] == "active"
    assert all(r.json()[field] == changed[field] for r in responses)
    assert len(_events(api, "customer.subscription.updated", sub["id"], changed=field)) == 1

    undone = _burst(stack_config, "POST", f"/v1/subscriptions/{sub['id']}/{undo}", {})
    assert _statuses(undone) == {200: REQUESTS}
    after = api.get(f"/v1/subscriptions/{sub['id']}")
    assert after[field] == before[field]
    assert len(_events(api, "customer.subscription.updated", sub["id"], changed=field)) == 2


def test_concurrent_immediate_cancels_cancel_once(api: Api, stack_config, plans) -> None:
    sub = _subscribed(api, plans)["subscription"]
    responses = _burst(
        stack_config,
        "POST",
        f"/v1/subscriptions/{sub['id']}/cancel",
        {"prorate": True, "reason": "cancellation_requested"},
    )
    assert _statuses(responses) == {200: 1, 409: REQUESTS - 1}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"illegal_transition"}
    assert {r.json()["status"] for r in responses if r.status_code == 200} == {"canceled"}
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "canceled"
    assert len(_events(api, "customer.subscription.deleted", sub["id"])) == 1
    finals = [
        i for i in api.get(f"/v1/customers/{sub['customer']}/invoices")["data"] if i["id"] != sub["latest_invoice"]
    ]
    assert len(finals) == 1 and finals[0]["billing_reason"] == "subscription_update"  # one prorated credit


def test_concurrent_identical_changes_change_and_charge_once(api: Api, stack_config, plans) -> None:
    sub = _subscribed(api, plans)["subscription"]
    change = {"price_id": plans["pro"], "proration_behavior": "always_invoice"}
    before = api.get(f"/v1/subscriptions/{sub['id']}")
    preview = _burst(stack_config, "POST", f"/v1/subscriptions/{sub['id']}/preview", change)
    assert _statuses(preview) == {200: REQUESTS} and len({r.text for r in preview}) == 1
    assert api.get(f"/v1/subscriptions/{sub['id']}") == before  # a preview changes nothing

    responses = _burst(stack_config, "POST", f"/v1/subscriptions/{sub['id']}/change", change)
    assert _statuses(responses) == {200: REQUESTS}  # the repeats find the change made: nothing more to do
    current = api.get(f"/v1/subscriptions/{sub['id']}")
    assert current["price"] == plans["pro"]
    updates = [
        i
        for i in api.get(f"/v1/customers/{sub['customer']}/invoices")["data"]
        if i["billing_reason"] == "subscription_update"
    ]
    assert len(updates) == 1 and updates[0]["status"] == "paid"
    assert len(_stripe("payment_intent", kassa_invoice=updates[0]["id"])) == 1


def test_twenty_concurrent_completions_charge_the_first_invoice_once(api: Api, stack, stack_config, plans) -> None:
    body = {"price_id": plans["basic"], "customer": {"email": f"burst-{_tag()}@example.com", "address": OREGON}}
    started = api.post("/v1/checkout", body, expect=201)
    confirm_card_setup(stack_config, started["setup_intent_id"], started["client_secret"], "4242424242424242")
    sub_id, invoice = started["subscription"]["id"], started["invoice"]["id"]
    responses = _burst(
        stack_config, "POST", f"/v1/checkout/{sub_id}/complete", {"setup_intent_id": started["setup_intent_id"]}
    )
    assert _statuses(responses) == {200: REQUESTS}
    assert {(r.json()["subscription"]["status"], r.json()["invoice"]["status"]) for r in responses} == {
        ("active", "paid")
    }
    stack.drain()  # the webhooks of the charge, too
    assert len(_stripe("payment_intent", kassa_invoice=invoice)) == 1
    _paid_once(api, invoice)


def test_twenty_concurrent_payment_confirmations_pay_once(api: Api, stack, stack_config, plans) -> None:
    body = {"price_id": plans["basic"], "customer": {"email": f"burst-{_tag()}@example.com", "address": OREGON}}
    started = api.post("/v1/checkout", body, expect=201)
    confirm_card_setup(stack_config, started["setup_intent_id"], started["client_secret"], THREE_D_SECURE_CARD)
    sub_id, invoice = started["subscription"]["id"], started["invoice"]["id"]
    asked = api.post(f"/v1/checkout/{sub_id}/complete", {"setup_intent_id": started["setup_intent_id"]})
    assert asked["requires_action"] is True
    authenticate_payment(stack_config, asked["payment_intent_client_secret"])
    responses = _burst(
        stack_config, "POST", f"/v1/checkout/{sub_id}/confirm_payment", {"payment_intent": asked["payment_intent"]}
    )
    assert _statuses(responses) == {200: REQUESTS}
    assert {r.json()["invoice"]["status"] for r in responses} == {"paid"}
    stack.drain()
    assert len(_stripe("payment_intent", kassa_invoice=invoice)) == 1
    _paid_once(api, invoice)
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"


# ---------------------------------------------------------------- after the clock moved
@pytest.fixture(scope="module")
def aged(stack_config: dict[str, Any], plans: dict[str, str]) -> dict[str, Any]:
    """Made before one advance of 32 days: a kept draft (collection paused with keep_as_draft) and a
    trial that ended without a card and paused; the paused trial's customer then adds a card."""
    api = Api(stack_config)
    kept = _subscribed(api, plans)["subscription"]
    api.post(f"/v1/subscriptions/{kept['id']}/pause_collection", {"behavior": "keep_as_draft"})
    trial = api.post(
        "/v1/checkout",
        {
            "price_id": plans["basic"],
            "trial_days": 7,
            "trial_end_behavior": "pause",
            "customer": {"email": f"burst-{_tag()}@example.com", "address": OREGON},
        },
        expect=201,
    )
    api.advance("32d")
    drafts = [i for i in api.get(f"/v1/customers/{kept['customer']}/invoices")["data"] if i["status"] == "draft"]
    assert len(drafts) == 1
    trial_id = trial["subscription"]["id"]
    assert api.get(f"/v1/subscriptions/{trial_id}")["status"] == "paused"
    confirm_card_setup(stack_config, trial["setup_intent_id"], trial["client_secret"], "4242424242424242")
    api.post(f"/v1/checkout/{trial_id}/complete", {"setup_intent_id": trial["setup_intent_id"]})
    return {"draft": drafts[0], "paused": trial_id}


def test_concurrent_finalize_then_pay_number_and_charge_a_draft_once(api: Api, stack, stack_config, aged) -> None:
    draft = aged["draft"]
    finalized = _burst(stack_config, "POST", f"/v1/invoices/{draft['id']}/finalize", {})
    assert _statuses(finalized) == {200: REQUESTS}
    assert len({r.text for r in finalized}) == 1 and finalized[0].json()["status"] == "open"
    number = finalized[0].json()["number"]
    assert number is not None and api.get(f"/v1/invoices/{draft['id']}")["number"] == number
    assert len(_events(api, "invoice.finalized", draft["id"])) == 1

    paid = _burst(stack_config, "POST", f"/v1/invoices/{draft['id']}/pay", {})
    assert _statuses(paid) == {200: REQUESTS}
    assert {(r.json()["status"], r.json()["amount_paid"]) for r in paid} == {("paid", draft["amount_due"])}
    stack.drain()
    assert len(_stripe("payment_intent", kassa_invoice=draft["id"])) == 1
    _paid_once(api, draft["id"])


def test_concurrent_resumes_of_a_paused_subscription_start_one_cycle(api: Api, stack_config, aged) -> None:
    sub_id = aged["paused"]
    responses = _burst(stack_config, "POST", f"/v1/subscriptions/{sub_id}/resume", {})
    assert _statuses(responses) == {200: 1, 409: REQUESTS - 1}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"illegal_transition"}
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "active"
    invoices = api.get(f"/v1/customers/{sub['customer']}/invoices")["data"]
    assert [(i["billing_reason"], i["status"]) for i in invoices] == [("subscription_update", "paid")]
    assert len(_stripe("payment_intent", kassa_invoice=invoices[0]["id"])) == 1
    assert len(_events(api, "customer.subscription.resumed", sub_id)) == 1


# ---------------------------------------------------------------- invoice actions on an open invoice
def test_concurrent_out_of_band_payments_pay_once(api: Api, stack_config, plans) -> None:
    invoice = _subscribed(api, plans, card=DECLINING_CARD)["invoice"]
    responses = _burst(stack_config, "POST", f"/v1/invoices/{invoice['id']}/pay", {"paid_out_of_band": True})
    assert _statuses(responses) == {200: REQUESTS}
    assert len({r.text for r in responses}) == 1
    assert (responses[0].json()["status"], responses[0].json()["paid_out_of_band"]) == ("paid", True)
    _paid_once(api, invoice["id"])


def test_concurrent_write_offs_then_voids_happen_once_each(api: Api, stack_config, plans) -> None:
    invoice = _subscribed(api, plans, card=DECLINING_CARD)["invoice"]
    written_off = _burst(stack_config, "POST", f"/v1/invoices/{invoice['id']}/mark_uncollectible", {})
    assert _statuses(written_off) == {200: REQUESTS} and len({r.text for r in written_off}) == 1
    assert written_off[0].json()["status"] == "uncollectible"
    assert len(_events(api, "invoice.marked_uncollectible", invoice["id"])) == 1
    voided = _burst(stack_config, "POST", f"/v1/invoices/{invoice['id']}/void", {})
    assert _statuses(voided) == {200: REQUESTS} and len({r.text for r in voided}) == 1
    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "void"
    assert len(_events(api, "invoice.voided", invoice["id"])) == 1


# ---------------------------------------------------------------- credit notes and refunds
ONE_DOLLAR = {"lines": [{"type": "custom_line_item", "amount": 100, "description": "goodwill"}]}


def test_twenty_credit_notes_of_one_tenth_on_an_open_invoice_issue_ten(api: Api, stack_config, plans) -> None:
    invoice = _subscribed(api, plans, card=DECLINING_CARD)["invoice"]
    assert (invoice["status"], invoice["amount_due"]) == ("open", 1000)
    responses = _burst(stack_config, "POST", f"/v1/invoices/{invoice['id']}/credit_notes", ONE_DOLLAR)
    assert _statuses(responses) == {201: 10, 400: 10}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 400} == {"invalid_input"}
    notes = api.get(f"/v1/invoices/{invoice['id']}/credit_notes")["data"]
    assert sorted(n["total"] for n in notes) == [100] * 10
    number = api.get(f"/v1/invoices/{invoice['id']}")["number"]
    assert sorted(n["number"] for n in notes) == [f"{number}-CN-{k:02d}" for k in range(1, 11)]
    after = api.get(f"/v1/invoices/{invoice['id']}")
    assert (after["amount_due"], after["pre_payment_credit_notes_amount"], after["status"]) == (0, 1000, "paid")
    assert len(_events(api, "credit_note.created", notes[0]["id"])) == 1


def test_twenty_credit_notes_of_one_tenth_on_a_paid_invoice_refund_ten(api: Api, stack_config, plans) -> None:
    invoice = _subscribed(api, plans)["invoice"]
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 1000)
    responses = _burst(stack_config, "POST", f"/v1/invoices/{invoice['id']}/credit_notes", ONE_DOLLAR)
    assert _statuses(responses) == {201: 10, 400: 10}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 400} == {"invalid_input"}
    notes = api.get(f"/v1/invoices/{invoice['id']}/credit_notes")["data"]
    assert sorted((n["total"], n["refund_amount"]) for n in notes) == [(100, 100)] * 10
    refunds = [r for r in _stripe("refund") if r.payment_intent == invoice["payment_intent"]]
    assert sorted(r.amount for r in refunds) == [100] * 10
    assert {r.metadata["kassa_credit_note"] for r in refunds} == {n["id"] for n in notes}
    after = api.get(f"/v1/invoices/{invoice['id']}")
    assert (after["post_payment_credit_notes_amount"], after["amount_refunded"]) == (1000, 1000)


def test_twenty_refunds_of_the_whole_amount_refund_once(api: Api, stack_config, plans) -> None:
    invoice = _subscribed(api, plans)["invoice"]
    responses = _burst(stack_config, "POST", "/v1/refunds", {"invoice": invoice["id"]})
    assert _statuses(responses) == {201: 1, 400: REQUESTS - 1}
    assert {r.json()["error"]["param"] for r in responses if r.status_code == 400} == {"amount"}
    refunds = [r for r in _stripe("refund") if r.payment_intent == invoice["payment_intent"]]
    assert [r.amount for r in refunds] == [1000]
    after = api.get(f"/v1/invoices/{invoice['id']}")
    assert [r["amount"] for r in after["refunds"]] == [1000] and after["amount_refunded"] == 1000

    again = _subscribed(api, plans)["invoice"]
    done = _one_key(stack_config, "/v1/refunds", {"invoice": again["id"], "amount": 400})
    assert done[0].json()["amount"] == 400
    refunds = [r for r in _stripe("refund") if r.payment_intent == again["payment_intent"]]
    assert [r.amount for r in refunds] == [400]
    assert [r["amount"] for r in api.get(f"/v1/invoices/{again['id']}")["refunds"]] == [400]


# ---------------------------------------------------------------- requests that write nothing
def test_twenty_card_update_links_are_all_valid(api: Api, stack_config) -> None:
    customer = api.post("/v1/customers", {"email": f"burst-{_tag()}@example.com", "address": OREGON}, expect=201)
    responses = _burst(stack_config, "POST", f"/v1/customers/{customer['id']}/card_update_link", {})
    assert _statuses(responses) == {201: REQUESTS}
    for response in responses:
        page = requests.get(response.json()["url"].replace("https://", "http://"), timeout=30)
        assert page.status_code == 200, page.text[:200]


def test_twenty_tax_quotes_answer_the_same(stack_config) -> None:
    body = {"country": "DE", "amount": 1000, "currency": "EUR"}
    responses = _burst(stack_config, "POST", "/v1/tax/quote", body)
    assert _statuses(responses) == {200: REQUESTS} and len({r.text for r in responses}) == 1
