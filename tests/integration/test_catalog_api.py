"""The catalog routes over HTTP (the emulated API Gateway in front of the checkout Lambda, with the
secret key): per-unit, package and tiered prices, errors naming the field, updates and archiving,
filtered listings, and that an archived price cannot be bought."""

from __future__ import annotations

from typing import Any

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.integration

MONTHLY = {"interval": "month"}
THREE_TIERS = [
    {"up_to": 5, "unit_amount": 700},
    {"up_to": 10, "unit_amount": 650},
    {"up_to": "inf", "unit_amount": 600, "flat_amount": 100},
]


@pytest.fixture
def product(api: Api, uid: str) -> dict[str, Any]:
    return api.post("/v1/products", {"name": f"Fonts {uid}"}, expect=201)


def _price_body(product: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"product": product["id"], "currency": "USD", "recurring": MONTHLY, **fields}


def _error(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def _events(api: Api, type_: str, object_id: str, count: int) -> list[dict[str, Any]]:
    """The published DomainEvents (EventBridge details) of ``type_`` about ``object_id``."""
    found = api.wait_events(type_, lambda e: e["detail"]["data"]["id"] == object_id, count=count)
    return [e["detail"] for e in found]


# ----------------------------------------------------------------------------- creating prices


def test_a_graduated_price_with_three_tiers(api: Api, product):
    body = _price_body(product, billing_scheme="tiered", tiers_mode="graduated", tiers=THREE_TIERS)

    created = api.post("/v1/prices", body, expect=201)

    assert created["object"] == "price" and created["billing_scheme"] == "tiered"
    assert created["tiers_mode"] == "graduated" and created["unit_amount"] is None
    assert created["transform_quantity"] is None and "version" not in created
    assert created["tiers"] == [
        {"up_to": 5, "unit_amount": 700, "flat_amount": 0},
        {"up_to": 10, "unit_amount": 650, "flat_amount": 0},
        {"up_to": None, "unit_amount": 600, "flat_amount": 100},  # Stripe: null for the last tier
    ]
    assert api.get(f"/v1/prices/{created['id']}") == created


def test_a_volume_price(api: Api, product):
    tiers = [{"up_to": 10, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 500}]

    created = api.post("/v1/prices", _price_body(product, billing_scheme="tiered", tiers_mode="volume", tiers=tiers),
                       expect=201)  # fmt: skip

    assert created["tiers_mode"] == "volume" and [t["up_to"] for t in created["tiers"]] == [10, None]


def test_a_package_price(api: Api, product):
    created = api.post("/v1/prices", _price_body(product, unit_amount=1000,
                                                 transform_quantity={"divide_by": 5, "round": "up"}),
                       expect=201)  # fmt: skip

    assert created["billing_scheme"] == "per_unit" and created["unit_amount"] == 1000
    assert created["transform_quantity"] == {"divide_by": 5, "round": "up"} and created["tiers"] is None


def test_a_per_unit_price_shows_its_scheme(api: Api, product):
    created = api.post("/v1/prices", _price_body(product, unit_amount=1500), expect=201)

    assert created["billing_scheme"] == "per_unit" and created["tiers_mode"] is None and created["tiers"] is None


TIERED = {"billing_scheme": "tiered", "tiers_mode": "graduated"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        pytest.param({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": 10, "unit_amount": 1},
                                          {"up_to": 8, "unit_amount": 1}, {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[2].up_to", id="not-ascending"),
        pytest.param({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": 10, "unit_amount": 1}]},
                     "tiers[1].up_to", id="last-not-inf"),
        pytest.param({**TIERED, "tiers": [{"up_to": "inf", "unit_amount": 1}, {"up_to": 5, "unit_amount": 1}]},
                     "tiers[0].up_to", id="inf-not-last"),
        pytest.param({**TIERED, "tiers": [{"up_to": "ten", "unit_amount": 1}, {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[0].up_to", id="up_to-not-a-number"),
        pytest.param({**TIERED, "tiers": [{"up_to": 0, "unit_amount": 1}, {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[0].up_to", id="up_to-zero"),
        pytest.param({**TIERED, "tiers": [{"up_to": 5}, {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[0]", id="no-amount"),
        pytest.param({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": "inf", "unit_amount": -1}]},
                     "tiers[1].unit_amount", id="negative-amount"),
        pytest.param({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1.5}, {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[0].unit_amount", id="float-amount"),
        pytest.param({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1, "colour": "red"},
                                          {"up_to": "inf", "unit_amount": 1}]},
                     "tiers[0].colour", id="unknown-field"),
        pytest.param({**TIERED, "tiers": []}, "tiers", id="no-tiers"),
        pytest.param({"billing_scheme": "tiered", "tiers": THREE_TIERS}, "tiers_mode", id="no-tiers_mode"),
        pytest.param({"tiers_mode": "graduated", "tiers": THREE_TIERS}, "tiers", id="tiers-on-per_unit"),
        pytest.param({**TIERED, "tiers": THREE_TIERS, "unit_amount": 1000}, "unit_amount", id="unit_amount-and-tiers"),
        pytest.param({**TIERED, "tiers": THREE_TIERS, "transform_quantity": {"divide_by": 5, "round": "up"}},
                     "transform_quantity", id="package-on-tiered"),
        pytest.param({"unit_amount": 1000, "transform_quantity": {"divide_by": 0, "round": "up"}},
                     "transform_quantity.divide_by", id="divide_by-zero"),
        pytest.param({}, "unit_amount", id="per_unit-without-amount"),
    ],
)  # fmt: skip
def test_bad_price_terms_are_400_naming_the_field(api: Api, product, fields, param):
    response = api.request("POST", "/v1/prices", json=_price_body(product, **fields))

    error = _error(response)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_an_archived_product_gets_no_new_prices(api: Api, product):
    api.post(f"/v1/products/{product['id']}", {"active": False})

    error = _error(api.request("POST", "/v1/prices", json=_price_body(product, unit_amount=100)))

    assert error["param"] == "product" and "archived" in error["message"]


# ----------------------------------------------------------------------------- updating prices


def test_archiving_and_unarchiving_a_price_publishes_price_updated(api: Api, product):
    price = api.post("/v1/prices", _price_body(product, unit_amount=900, nickname="Monthly"), expect=201)

    archived = api.post(f"/v1/prices/{price['id']}", {"active": False})
    assert archived["active"] is False and {**archived, "active": True} == price
    assert api.get(f"/v1/prices/{price['id']}")["active"] is False
    [event] = _events(api, "price.updated", price["id"], 1)
    assert event["data"]["active"] is False and event["previous_attributes"] == {"active": True}

    restored = api.post(f"/v1/prices/{price['id']}", {"active": True, "nickname": "Monthly v2"})
    assert restored["active"] is True and restored["nickname"] == "Monthly v2"
    assert api.post(f"/v1/prices/{price['id']}", {"nickname": None})["nickname"] is None  # null removes it
    assert len(_events(api, "price.updated", price["id"], 3)) == 3


def test_an_update_that_changes_nothing_publishes_nothing(api: Api, product):
    price = api.post("/v1/prices", _price_body(product, unit_amount=900), expect=201)

    assert api.post(f"/v1/prices/{price['id']}", {"active": True}) == price
    assert api.post(f"/v1/prices/{price['id']}", {}) == price

    assert [e for e in api.events("price.updated") if e["detail"]["data"]["id"] == price["id"]] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_amount", 2000),
        ("tiers", THREE_TIERS),
        ("currency", "EUR"),
        ("recurring", {"interval": "year"}),
        ("transform_quantity", {"divide_by": 2, "round": "up"}),
        ("unit_amount", None),
    ],
)
def test_a_price_amounts_and_terms_are_immutable(api: Api, product, field, value):
    price = api.post("/v1/prices", _price_body(product, unit_amount=900), expect=201)

    error = _error(api.request("POST", f"/v1/prices/{price['id']}", json={"active": False, field: value}))

    assert error["param"] == field and "immutable" in error["message"]
    assert api.get(f"/v1/prices/{price['id']}") == price  # nothing changed, not even active


def test_updating_a_price_refuses_unknown_fields_and_wrong_types(api: Api, product):
    price = api.post("/v1/prices", _price_body(product, unit_amount=900), expect=201)

    assert _error(api.request("POST", f"/v1/prices/{price['id']}", json={"colour": "red"}))["param"] == "colour"
    assert _error(api.request("POST", f"/v1/prices/{price['id']}", json={"active": "no"}))["param"] == "active"
    assert _error(api.request("POST", f"/v1/prices/{price['id']}", json={"active": None}))["param"] == "active"


def test_updating_an_unknown_price_is_404(api: Api):
    error = _error(api.request("POST", "/v1/prices/price_doesnotexist", json={"active": False}), 404)
    assert error["code"] == "resource_missing"


# ----------------------------------------------------------------------------- updating products


def test_updating_a_product_publishes_product_updated(api: Api, uid):
    product = api.post("/v1/products", {"name": f"Mugs {uid}", "description": "Ceramic", "tax_code": "txcd_99999999"},
                       expect=201)  # fmt: skip

    updated = api.post(f"/v1/products/{product['id']}",
                       {"name": f"Cups {uid}", "description": None, "tax_code": "txcd_30011000"})  # fmt: skip

    assert updated == {**product, "name": f"Cups {uid}", "description": None, "tax_code": "txcd_30011000"}
    assert api.get(f"/v1/products/{product['id']}") == updated
    [event] = _events(api, "product.updated", product["id"], 1)
    assert event["previous_attributes"] == {"name": f"Mugs {uid}", "description": "Ceramic",
                                            "tax_code": "txcd_99999999"}  # fmt: skip

    archived = api.post(f"/v1/products/{product['id']}", {"active": False})
    assert archived["active"] is False and api.get(f"/v1/products/{product['id']}")["active"] is False


def test_a_product_name_cannot_be_removed(api: Api, product):
    assert _error(api.request("POST", f"/v1/products/{product['id']}", json={"name": ""}))["param"] == "name"
    assert _error(api.request("POST", f"/v1/products/{product['id']}", json={"name": None}))["param"] == "name"
    assert api.get(f"/v1/products/{product['id']}") == product


def test_an_unknown_product_is_404_naming_product(api: Api):
    assert _error(api.request("GET", "/v1/products/prod_doesnotexist"), 404)["param"] == "product"
    assert _error(api.request("POST", "/v1/products/prod_doesnotexist", json={"active": False}), 404)["param"] == (
        "product"
    )


# ----------------------------------------------------------------------------- listings


def _walk(api: Api, path: str, active: str) -> list[str]:
    walked: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2, "active": active, **({"starting_after": cursor} if cursor else {})}
        page = api.get(path, params=params)
        assert len(page["data"]) == 2 or not page["has_more"], page
        walked += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            return walked
        cursor = walked[-1]
        assert len(walked) < 500, "pagination does not end"


def test_listing_prices_by_active(api: Api, product):
    ids = [api.post("/v1/prices", _price_body(product, unit_amount=n), expect=201)["id"] for n in range(100, 700, 100)]
    archived = set(ids[1::2])
    for price_id in archived:
        api.post(f"/v1/prices/{price_id}", {"active": False})

    active = _walk(api, "/v1/prices", "true")
    inactive = _walk(api, "/v1/prices", "false")
    everything = [p["id"] for p in api.get("/v1/prices", params={"limit": 100})["data"]]

    assert set(ids) - archived <= set(active) and archived <= set(inactive)
    assert not set(active) & set(inactive)
    assert active == [i for i in everything if i in set(active)]  # newest first, each once
    assert inactive == [i for i in everything if i in set(inactive)]
    assert all(p["active"] for p in api.get("/v1/prices", params={"active": "true", "limit": 100})["data"])


def test_listing_products_by_active(api: Api, uid):
    kept = api.post("/v1/products", {"name": f"Kept {uid}"}, expect=201)
    gone = api.post("/v1/products", {"name": f"Gone {uid}"}, expect=201)
    api.post(f"/v1/products/{gone['id']}", {"active": False})

    active = {p["id"] for p in api.get("/v1/products", params={"active": "true", "limit": 100})["data"]}
    inactive = {p["id"] for p in api.get("/v1/products", params={"active": "false", "limit": 100})["data"]}

    assert kept["id"] in active and gone["id"] not in active
    assert gone["id"] in inactive and kept["id"] not in inactive


@pytest.mark.parametrize("path", ["/v1/prices", "/v1/products"])
def test_a_bad_active_filter_is_400_naming_active(api: Api, path):
    assert _error(api.request("GET", path, params={"active": "yes"}))["param"] == "active"


# ----------------------------------------------------------------------------- archived prices at checkout


def test_checkout_with_an_archived_price_is_400_naming_the_price(api: Api, product, uid):
    price = api.post("/v1/prices", _price_body(product, unit_amount=1200), expect=201)
    api.post(f"/v1/prices/{price['id']}", {"active": False})

    response = api.request("POST", "/v1/checkout", json={
        "price_id": price["id"], "customer": {"email": f"archived-{uid}@example.com", "address": {"country": "NL"}},
    })  # fmt: skip

    error = _error(response)
    assert error["param"] in ("price_id", "items[0].price"), error
    api.post(f"/v1/prices/{price['id']}", {"active": True})  # unarchived, it can be bought again
    api.post("/v1/checkout", {"price_id": price["id"],
                              "customer": {"email": f"archived-{uid}@example.com", "address": {"country": "NL"}}},
             expect=201)  # fmt: skip
