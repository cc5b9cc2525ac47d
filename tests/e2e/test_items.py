"""Subscriptions of several items over HTTP: a base plan, graduated seats and add-ons in one EUR
subscription; items added, removed and re-quantified mid-period, each previewed first, and the
renewal invoice equal to the last preview's ``upcoming_invoice``. The customer is Dutch (21% VAT on
exclusive prices), so the first invoice's tax is 21% of whole-euro line amounts: no rounding."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from kassa_local.client import Api, confirm_card_setup

pytestmark = pytest.mark.e2e

NL = {"country": "NL"}
MONTH = {"interval": "month"}
# graduated: 1–5 at 10.00, 6–10 at 8.00, 11+ at 5.00, no flat fee
SEAT_TIERS = [
    {"up_to": 5, "unit_amount": 1000, "flat_amount": 0},
    {"up_to": 10, "unit_amount": 800, "flat_amount": 0},
    {"up_to": "inf", "unit_amount": 500, "flat_amount": 0},
]
# what an invoice line keeps of itself, ids of the invoice aside: a preview and the real invoice agree on these
LINE_FIELDS = ("description", "amount", "quantity", "unit_amount", "price", "subscription_item", "proration", "tiers")
LINE_FIELDS += ("period_start", "period_end", "tax_amount", "tax_rate", "discount_amount")
TOTAL_FIELDS = ("currency", "subtotal", "tax", "total", "amount_due", "period_start", "period_end")


def _lines(invoice: dict[str, Any]) -> list[dict[str, Any]]:
    return [{field: line.get(field) for field in LINE_FIELDS} for line in invoice["lines"]]


def _totals(invoice: dict[str, Any]) -> dict[str, Any]:
    return {field: invoice.get(field) for field in TOTAL_FIELDS}


def _checkout(api: Api, body: dict[str, Any]) -> Any:
    return api.request("POST", "/v1/checkout", json=body)


def _error(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.fixture(scope="module")
def catalog(stack_config) -> dict[str, str]:
    api = Api(stack_config)

    def price(name: str, **terms: Any) -> str:
        product = api.post("/v1/products", {"name": name}, expect=201)["id"]
        body = {"product": product, "currency": terms.pop("currency", "EUR"), "recurring": MONTH, **terms}
        return str(api.post("/v1/prices", body, expect=201)["id"])

    return {
        "base": price("Base plan", unit_amount=2900),
        "seats": price("Seats", billing_scheme="tiered", tiers_mode="graduated", tiers=SEAT_TIERS),
        "addon": price("Priority support", unit_amount=500),
        "addon2": price("Audit log", unit_amount=700),
        "usd": price("US add-on", unit_amount=500, currency="USD"),
    }


def _subscribe(api: Api, items: list[dict[str, Any]], email: str) -> dict[str, Any]:
    customer = {"email": email, "name": email.split("@")[0], "address": NL}
    started = api.post("/v1/checkout", {"items": items, "customer": customer}, expect=201)
    confirm_card_setup(api.config, started["setup_intent_id"], started["client_secret"], "4242424242424242")
    done = api.post(
        f"/v1/checkout/{started['subscription']['id']}/complete", {"setup_intent_id": started["setup_intent_id"]}
    )
    return {**started, **done}


def _items(sub: dict[str, Any]) -> dict[str, int]:
    assert sub["items"]["object"] == "list"
    return {item["price"]: item["quantity"] for item in sub["items"]["data"]}


def _item_id(sub: dict[str, Any], price: str) -> str:
    return str(next(item["id"] for item in sub["items"]["data"] if item["price"] == price))


def test_three_items_changed_mid_period_renew_as_previewed(api: Api, catalog):
    three = [
        {"price": catalog["base"], "quantity": 1},
        {"price": catalog["seats"], "quantity": 7},
        {"price": catalog["addon"], "quantity": 1},
    ]
    started = _subscribe(api, three, "items@example.com")
    sub, first = started["subscription"], started["invoice"]
    assert sub["status"] == "active"
    assert _items(sub) == {catalog["base"]: 1, catalog["seats"]: 7, catalog["addon"]: 1}
    ids = {item["price"]: item["id"] for item in sub["items"]["data"]}
    assert all(i.startswith("si_") for i in ids.values()) and len(set(ids.values())) == 3

    # the first invoice: one line per item, the seats graduated 5 × 10.00 + 2 × 8.00
    assert first["status"] == "paid" and first["currency"] == "EUR"
    by_price = {line["price"]: line for line in first["lines"]}
    assert len(first["lines"]) == 3 and set(by_price) == set(ids)
    assert {p: line["subscription_item"] for p, line in by_price.items()} == ids
    assert not any(line["proration"] for line in first["lines"])
    seats = by_price[catalog["seats"]]
    assert (seats["quantity"], seats["amount"], seats["unit_amount"]) == (7, 6600, None)
    assert [(t["tier"], t["up_to"], t["quantity"], t["unit_amount"], t["amount"]) for t in seats["tiers"]] == [
        (1, 5, 5, 1000, 5000),
        (2, 10, 2, 800, 1600),
    ]
    assert by_price[catalog["base"]]["amount"] == 2900 and by_price[catalog["base"]]["tiers"] is None
    assert by_price[catalog["addon"]]["amount"] == 500
    # 2900 + 6600 + 500 = 10000, Dutch VAT 21% = 2100 (609 + 1386 + 105, no rounding anywhere)
    assert [line["tax_amount"] for line in first["lines"]] == [609, 1386, 105]
    assert (first["subtotal"], first["tax"], first["total"]) == (10000, 2100, 12100)
    assert (first["amount_due"], first["amount_paid"]) == (12100, 12100)

    # day 7 of 28: add a second add-on, invoiced at once
    api.advance("7d")
    add = {"items": [{"price": catalog["addon2"], "quantity": 1}], "proration_behavior": "always_invoice"}
    preview = api.post(f"/v1/subscriptions/{sub['id']}/preview", add)
    assert preview["upcoming_invoice"] is None and preview["invoice"] is not None
    [added_line] = preview["invoice"]["lines"]  # 21 of 28 days of 7.00
    assert added_line["proration"] is True and added_line["amount"] == 525 and added_line["price"] == catalog["addon2"]
    assert _items(api.get(f"/v1/subscriptions/{sub['id']}")) == _items(sub)  # a preview changes nothing
    done = api.post(f"/v1/subscriptions/{sub['id']}/change", add)
    invoice = done["invoice"]
    assert invoice["billing_reason"] == "subscription_update"
    assert _lines(invoice) == _lines(preview["invoice"])
    assert _totals(invoice) == _totals(preview["invoice"])
    assert (invoice["total"], invoice["amount_due"]) == (525 + 110, 635)  # 21% of 5.25 = 1.1025 → 1.10
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 635)
    assert _items(done["subscription"]) == {**_items(sub), catalog["addon2"]: 1}
    assert added_line["subscription_item"] == _item_id(done["subscription"], catalog["addon2"])

    # day 14: remove the first add-on, credited on the next invoice
    api.advance("7d")
    remove = {"items": [{"id": ids[catalog["addon"]], "deleted": True}], "proration_behavior": "create_prorations"}
    preview = api.post(f"/v1/subscriptions/{sub['id']}/preview", remove)
    assert preview["invoice"] is None
    credit = [line for line in preview["upcoming_invoice"]["lines"] if line["proration"]]
    assert [(line["subscription_item"], line["amount"]) for line in credit] == [(ids[catalog["addon"]], -250)]
    done = api.post(f"/v1/subscriptions/{sub['id']}/change", remove)
    assert done["invoice"] is None
    after_remove = done["subscription"]
    assert _items(after_remove) == {catalog["base"]: 1, catalog["seats"]: 7, catalog["addon2"]: 1}
    assert ids[catalog["addon"]] not in [item["id"] for item in after_remove["items"]["data"]]
    assert [line["amount"] for line in after_remove["pending_lines"]] == [-250]

    # still day 14: seats 7 → 12, prorated onto the renewal; this preview's upcoming invoice is the renewal
    seats12 = {"items": [{"id": ids[catalog["seats"]], "quantity": 12}], "proration_behavior": "create_prorations"}
    preview = api.post(f"/v1/subscriptions/{sub['id']}/preview", seats12)
    upcoming = preview["upcoming_invoice"]
    assert preview["invoice"] is None and upcoming is not None
    done = api.post(f"/v1/subscriptions/{sub['id']}/change", seats12)
    changed = done["subscription"]
    assert _items(changed) == {catalog["base"]: 1, catalog["seats"]: 12, catalog["addon2"]: 1}
    assert _item_id(changed, catalog["seats"]) == ids[catalog["seats"]]  # the same item, a new quantity
    # −half of 66.00 for 7 seats, +half of 100.00 for 12 (5 × 10 + 5 × 8 + 2 × 5): −3300 + 5000
    assert [line["amount"] for line in changed["pending_lines"]] == [-250, -3300, 5000]
    # the next period: 2900 + 10000 + 700, the pending prorations first
    full = [line for line in upcoming["lines"] if not line["proration"]]
    assert [(line["price"], line["amount"]) for line in full] == [
        (catalog["base"], 2900),
        (catalog["seats"], 10000),
        (catalog["addon2"], 700),
    ]
    assert [line["amount"] for line in upcoming["lines"] if line["proration"]] == [-250, -3300, 5000]
    seats_next = next(line for line in full if line["price"] == catalog["seats"])
    assert [(t["quantity"], t["amount"]) for t in seats_next["tiers"]] == [(5, 5000), (5, 4000), (2, 1000)]
    assert upcoming["subtotal"] == 2900 + 10000 + 700 - 250 - 3300 + 5000

    # past the period end: the renewal is the previewed upcoming invoice, paid
    period_end = datetime.fromisoformat(changed["current_period_end"])
    api.advance(to=(period_end + timedelta(hours=1)).isoformat())
    renewed = api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = api.get(f"/v1/invoices/{renewed['latest_invoice']}")
    assert renewal["billing_reason"] == "subscription_cycle"
    assert _lines(renewal) == _lines(upcoming)
    assert _totals(renewal) == _totals(upcoming)
    assert renewal["status"] == "paid" and renewal["amount_paid"] == upcoming["amount_due"] == upcoming["total"]
    assert renewed["pending_lines"] == []
    assert _items(renewed) == _items(changed)


def test_the_last_item_cannot_be_removed(api: Api, catalog):
    started = _subscribe(api, [{"price": catalog["base"], "quantity": 1}], "last-item@example.com")
    sub = started["subscription"]
    only = {"items": [{"id": sub["items"]["data"][0]["id"], "deleted": True}]}
    for route in ("preview", "change"):
        error = _error(api.request("POST", f"/v1/subscriptions/{sub['id']}/{route}", json=only))
        assert error["param"] == "items[0].deleted", error
    assert _items(api.get(f"/v1/subscriptions/{sub['id']}")) == {catalog["base"]: 1}


def test_an_item_in_another_currency_is_refused(api: Api, catalog):
    started = _subscribe(api, [{"price": catalog["base"], "quantity": 1}], "currency-item@example.com")
    sub = started["subscription"]
    add = {"items": [{"price": catalog["usd"], "quantity": 1}]}
    error = _error(api.request("POST", f"/v1/subscriptions/{sub['id']}/change", json=add))
    assert "currency" in error["message"].lower()
    assert (error["code"], error["param"]) == ("currency_mismatch", "items[0].price"), error  # the request's entry
    both = {"items": [{"id": sub["items"]["data"][0]["id"], "quantity": 2}, {"price": catalog["usd"]}]}
    error = _error(api.request("POST", f"/v1/subscriptions/{sub['id']}/preview", json=both))
    assert error["param"] == "items[1].price", error
    # at checkout the offending item is named by its place in the request
    customer = {"email": "mixed@example.com", "address": NL}
    mixed = [{"price": catalog["base"]}, {"price": catalog["usd"]}]
    error = _error(_checkout(api, {"items": mixed, "customer": customer}))
    assert error["param"] == "items[1].price", error
    usd_first = [{"price": catalog["usd"]}, {"price": catalog["base"]}]
    error = _error(_checkout(api, {"items": usd_first, "customer": customer}))
    assert error["param"] == "items[1].price", error
    assert _items(api.get(f"/v1/subscriptions/{sub['id']}")) == {catalog["base"]: 1}


def test_a_checkout_of_21_items_is_refused(api: Api):
    product = api.post("/v1/products", {"name": "Many add-ons"}, expect=201)["id"]
    prices = [
        api.post(
            "/v1/prices", {"product": product, "currency": "EUR", "unit_amount": 100 + i, "recurring": MONTH}, 201
        )["id"]
        for i in range(21)
    ]
    customer = {"email": "many@example.com", "address": NL}
    error = _error(_checkout(api, {"items": [{"price": p} for p in prices], "customer": customer}))
    assert error["param"] == "items" and "at most 20" in error["message"], error
    # twenty are allowed
    ok = _checkout(api, {"items": [{"price": p} for p in prices[:20]], "customer": customer})
    assert ok.status_code == 201, ok.text
    assert len(ok.json()["subscription"]["items"]["data"]) == 20
