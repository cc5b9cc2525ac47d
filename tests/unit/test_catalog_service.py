"""services/catalog.py on the in-memory world: price terms, updates and archiving, filtered listings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import World

from kassa.domain.catalog import Price, Recurring
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.invoice import BillingReason, InvoiceStatus
from kassa.domain.periods import Interval
from kassa.domain.pricing import BillingScheme, PriceTerms, TiersMode
from kassa.services import catalog, renewals
from kassa.services.plan_changes import change_plan

MONTHLY = Recurring(interval=Interval.MONTH)
GRADUATED = PriceTerms.parse(
    billing_scheme="tiered",
    tiers_mode="graduated",
    tiers=[{"up_to": 5, "unit_amount": 700}, {"up_to": 10, "unit_amount": 650}, {"up_to": "inf", "unit_amount": 600}],
)


def _price(world: World, terms: PriceTerms | int = 1000, **kwargs: object) -> Price:
    product = catalog.create_product(world.billing, "Fonts")
    return catalog.create_price(
        world.billing, product_id=product.id, currency="usd", terms=terms, recurring=MONTHLY, **kwargs
    )


# ------------------------------------------------------------------------------------- create_price
def test_a_graduated_price_keeps_its_tiers_and_prices_stripes_example(world: World) -> None:
    price = _price(world, GRADUATED)

    stored = world.store.get_price(price.id)
    assert stored == price
    assert stored.billing_scheme is BillingScheme.TIERED and stored.tiers_mode is TiersMode.GRADUATED
    assert stored.unit_amount is None
    assert [t.up_to for t in stored.tiers or ()] == [5, 10, None]
    assert stored.amount_for(20).amount == 12750  # 5 × 700 + 5 × 650 + 10 × 600
    assert world.publisher.of_type("price.created")[0].data["tiers"][2]["up_to"] is None


def test_a_volume_price_and_a_package_price(world: World) -> None:
    volume = _price(world, PriceTerms.parse(billing_scheme="tiered", tiers_mode="volume",
                                            tiers=[{"up_to": 5, "unit_amount": 700},
                                                   {"up_to": "inf", "unit_amount": 600}]))  # fmt: skip
    package = _price(world, PriceTerms.parse(unit_amount=1000, transform_quantity={"divide_by": 5, "round": "up"}))

    assert volume.amount_for(6).amount == 3600
    assert package.transform_quantity is not None and package.transform_quantity.divide_by == 5
    assert [package.amount_for(q).amount for q in (1, 5, 6)] == [1000, 1000, 2000]


def test_a_bare_integer_is_a_per_unit_price(world: World) -> None:
    price = _price(world, 1500)

    assert price.billing_scheme is BillingScheme.PER_UNIT and price.unit_amount == 1500 and price.tiers is None


def test_an_archived_product_gets_no_new_prices(world: World) -> None:
    product = catalog.create_product(world.billing, "Old")
    catalog.update_product(world.billing, product.id, active=False)

    with pytest.raises(InvalidInput) as error:
        catalog.create_price(world.billing, product.id, "usd", 1000, MONTHLY)

    assert error.value.param == "product" and "archived" in error.value.message
    assert world.store.prices == {}


def test_a_price_for_an_unknown_product_is_not_found_naming_product(world: World) -> None:
    with pytest.raises(NotFound) as error:
        catalog.create_price(world.billing, "prod_nope", "usd", GRADUATED, MONTHLY)
    assert error.value.param == "product"


# ------------------------------------------------------------------------------------- update_price
def test_archiving_a_price_saves_a_new_version_and_publishes_price_updated(world: World) -> None:
    price = _price(world)
    world.publisher.clear()

    archived = catalog.update_price(world.billing, price.id, active=False)

    assert archived.active is False and archived.version == price.version + 1
    assert world.store.get_price(price.id) == archived
    [event] = world.publisher.events
    assert event.type == "price.updated" and event.data["active"] is False
    assert event.previous_attributes == {"active": True}
    assert archived.terms == price.terms  # the terms never change


def test_unarchiving_and_renaming_a_price(world: World) -> None:
    price = _price(world, nickname="old")
    catalog.update_price(world.billing, price.id, active=False)

    back = catalog.update_price(world.billing, price.id, active=True, nickname="new")

    assert back.active is True and back.nickname == "new" and back.version == 2
    assert world.publisher.of_type("price.updated")[-1].previous_attributes == {"active": False, "nickname": "old"}
    assert catalog.update_price(world.billing, price.id, nickname="").nickname is None  # "" removes it


def test_an_update_that_changes_nothing_writes_and_publishes_nothing(world: World) -> None:
    price = _price(world, nickname="same")
    product = world.store.get_product(price.product)
    world.publisher.clear()
    writes = world.store.writes

    assert catalog.update_price(world.billing, price.id, active=True, nickname="same") == price
    assert catalog.update_price(world.billing, price.id) == price
    assert catalog.update_product(world.billing, product.id, name=product.name, active=True) == product

    assert world.store.writes == writes and world.publisher.events == []


def test_updating_an_unknown_price_is_not_found(world: World) -> None:
    with pytest.raises(NotFound) as error:
        catalog.update_price(world.billing, "price_nope", active=False)
    assert error.value.param == "price_id"


def test_a_concurrent_update_is_reread_and_applied_again(world: World) -> None:
    price = _price(world)
    store = world.store
    real_save = store.save_price
    raced: list[bool] = []

    def save_losing_once(changed: Price) -> Price:
        if not raced:  # another request renames the price between our read and our write
            raced.append(True)
            real_save(store.get_price(changed.id).model_copy(update={"nickname": "theirs"}))
        return real_save(changed)

    store.save_price = save_losing_once  # type: ignore[method-assign]

    saved = catalog.update_price(world.billing, price.id, active=False)

    assert saved.active is False and saved.nickname == "theirs" and saved.version == 2


def test_an_update_that_keeps_losing_is_a_conflict(world: World) -> None:
    price = _price(world)

    def always_stale(changed: Price) -> Price:
        raise Conflict("the item changed")

    world.store.save_price = always_stale  # type: ignore[method-assign]

    with pytest.raises(Conflict):
        catalog.update_price(world.billing, price.id, active=False)


# ------------------------------------------------------------------------------------- update_product
def test_updating_a_product_publishes_product_updated_with_the_previous_values(world: World) -> None:
    product = catalog.create_product(world.billing, "Fonts", description="Type", tax_code="txcd_10000000")
    world.publisher.clear()

    updated = catalog.update_product(world.billing, product.id, name="Fonts Pro", description="", active=False)

    assert (updated.name, updated.description, updated.tax_code, updated.active) == (
        "Fonts Pro",
        None,
        "txcd_10000000",
        False,
    )
    assert updated.version == 1 and world.store.get_product(product.id) == updated
    [event] = world.publisher.events
    assert event.type == "product.updated"
    assert event.previous_attributes == {"name": "Fonts", "description": "Type", "active": True}


def test_a_product_name_cannot_be_emptied(world: World) -> None:
    product = catalog.create_product(world.billing, "Fonts")

    with pytest.raises(InvalidInput) as error:
        catalog.update_product(world.billing, product.id, name="")

    assert error.value.param == "name"


# ------------------------------------------------------------------------------------- archived prices
def test_an_archived_price_cannot_be_bought_nor_switched_to(world: World) -> None:
    _, current = world.catalog(unit_amount=1000)
    sub = world.active_subscription(current).subscription
    _, other = world.catalog(unit_amount=2000)
    catalog.update_price(world.billing, other.id, active=False)

    with pytest.raises(InvalidInput) as bought:
        world.checkout(other, email="bob@example.com")
    with pytest.raises(InvalidInput) as switched:
        change_plan(world.billing, sub.id, price_id=other.id)

    assert "price" in (bought.value.param or "") and "price" in (switched.value.param or "")


def test_a_subscription_on_an_archived_price_keeps_renewing(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    sub = world.active_subscription(price).subscription
    catalog.update_price(world.billing, price.id, active=False)

    world.clock.set(sub.current_period_end + timedelta(minutes=1))
    renewals.process_due(world.billing, sub.id)

    renewed = world.store.get_subscription(sub.id)
    assert renewed.current_period_start == sub.current_period_end
    invoice = world.store.get_invoice(renewed.latest_invoice or "")
    assert invoice.billing_reason is BillingReason.SUBSCRIPTION_CYCLE
    assert invoice.status is InvoiceStatus.PAID and invoice.total > 0


# ------------------------------------------------------------------------------------- listings
def _catalog_of(world: World, actives: list[bool]) -> list[str]:
    """Prices created a second apart, newest last; ``actives[i]`` False archives the i-th."""
    product = catalog.create_product(world.billing, "Many")
    ids = []
    for active in actives:
        world.clock.advance(seconds=1)
        price = catalog.create_price(world.billing, product.id, "usd", 100, MONTHLY)
        if not active:
            catalog.update_price(world.billing, price.id, active=False)
        ids.append(price.id)
    return ids


def _walk(world: World, limit: int, active: bool | None) -> list[str]:
    walked: list[str] = []
    cursor: str | None = None
    while True:
        page = catalog.list_prices(world.store, limit, cursor, active)
        walked += [p.id for p in page.items]
        assert len(page.items) == limit or not page.has_more
        if not page.has_more:
            return walked
        cursor = walked[-1]


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
def test_listing_only_active_or_only_archived_prices_paginates_exactly(world: World, limit: int) -> None:
    actives = [True, False, False, True, False, True, True, False]
    ids = _catalog_of(world, actives)
    newest_first = list(reversed(list(zip(ids, actives, strict=True))))

    assert _walk(world, limit, True) == [i for i, a in newest_first if a]
    assert _walk(world, limit, False) == [i for i, a in newest_first if not a]
    assert _walk(world, limit, None) == [i for i, _ in newest_first]


def test_a_filtered_listing_reads_the_store_in_batches(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "FILTER_BATCH", 2)
    ids = _catalog_of(world, [True] * 3 + [False] * 6)  # the newest six are archived

    page = catalog.list_prices(world.store, 2, None, True)

    assert [p.id for p in page.items] == [ids[2], ids[1]] and page.has_more is True
    rest = catalog.list_prices(world.store, 2, ids[1], True)
    assert [p.id for p in rest.items] == [ids[0]] and rest.has_more is False


def test_listing_products_by_active(world: World) -> None:
    kept = catalog.create_product(world.billing, "Kept")
    world.clock.advance(seconds=1)
    gone = catalog.create_product(world.billing, "Gone")
    catalog.update_product(world.billing, gone.id, active=False)

    assert [p.id for p in catalog.list_products(world.store, 10, None, True).items] == [kept.id]
    assert [p.id for p in catalog.list_products(world.store, 10, None, False).items] == [gone.id]
    assert [p.id for p in catalog.list_products(world.store, 10, None).items] == [gone.id, kept.id]


def test_a_filtered_listing_still_refuses_an_unknown_cursor(world: World) -> None:
    _catalog_of(world, [True, False])
    with pytest.raises(NotFound) as error:
        catalog.list_prices(world.store, 10, "price_nope", True)
    assert error.value.param == "starting_after"
