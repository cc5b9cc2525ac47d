"""The BillingStore contract for catalog updates (``save_product`` / ``save_price``), run on MemoryStore
and on DynamoStore over a private moto table (the ``store`` fixture of conftest.py)."""

from __future__ import annotations

import pytest
from integration.conftest import START

from kassa.adapters.dynamodb import DynamoStore
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.errors import AlreadyExists, Conflict
from kassa.domain.periods import Interval


def _product() -> Product:
    return Product(id="prod_u0", name="Coffee club", created=START)


def _price() -> Price:
    return Price(id="price_u0", product="prod_u0", currency="EUR", unit_amount=1500,
                 recurring=Recurring(interval=Interval.MONTH), created=START)  # fmt: skip


def test_saving_a_price_writes_the_next_version_and_refuses_a_stale_one(store):
    store.put_price(_price())
    original = store.get_price("price_u0")
    assert original.version == 0

    saved = store.save_price(original.model_copy(update={"active": False}))

    assert saved.version == 1 and store.get_price("price_u0") == saved
    with pytest.raises(Conflict) as raised:
        store.save_price(original.model_copy(update={"nickname": "lost update"}))
    assert not isinstance(raised.value, AlreadyExists)
    assert store.get_price("price_u0") == saved
    assert store.save_price(saved.model_copy(update={"active": True})).version == 2


def test_saving_a_product_writes_the_next_version_and_refuses_a_stale_one(store):
    store.put_product(_product())
    original = store.get_product("prod_u0")

    saved = store.save_product(original.model_copy(update={"name": "Tea club", "active": False}))

    assert saved.version == 1 and store.get_product("prod_u0") == saved
    with pytest.raises(Conflict):
        store.save_product(original.model_copy(update={"description": "lost update"}))
    assert store.get_product("prod_u0") == saved


def test_a_saved_price_stays_in_the_listing_once(store):
    store.put_price(_price())
    store.save_price(store.get_price("price_u0").model_copy(update={"active": False}))

    listed = store.list_prices(10, None)

    assert [p.id for p in listed.items] == ["price_u0"] and listed.items[0].active is False


def test_a_price_stored_before_versions_existed_can_be_saved_once(store):
    """Items written before prices had versions carry no ``version`` attribute: they read as version 0
    and the first save is accepted (then versions apply)."""
    if not isinstance(store, DynamoStore):
        pytest.skip("the version attribute is DynamoDB's")
    item = store._price_item(_price())
    del item["version"]
    store._call("put_item", TableName=store._table, Item=item)

    saved = store.save_price(store.get_price("price_u0").model_copy(update={"active": False}))

    assert saved.version == 1
    with pytest.raises(Conflict):
        store.save_price(saved.model_copy(update={"version": 0, "active": True}))
