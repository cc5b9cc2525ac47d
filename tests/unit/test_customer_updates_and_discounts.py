"""Customer updates, coupons on existing subscriptions, first-time-only codes and checkout's
validate-before-write and no-reuse-by-email rules, on the in-memory world."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import World, make_world

from kassa.domain.customer import Address
from kassa.domain.errors import AlreadyExists, CustomerExists, InvalidInput, NotFound
from kassa.domain.invoice import InvoiceStatus
from kassa.services import coupons, customers
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.renewals import process_due

DE_VAT = "DE136695976"  # a valid German VAT number (checksum)


@pytest.fixture
def world() -> World:
    return make_world()


def _renew(world: World, sub_id: str) -> str:
    sub = world.store.get_subscription(sub_id)
    world.clock.set(sub.current_period_end + timedelta(seconds=1))
    return process_due(world.billing, sub_id)


def _latest_invoice(world: World, sub_id: str):  # type: ignore[no-untyped-def]
    sub = world.store.get_subscription(sub_id)
    assert sub.latest_invoice is not None
    return world.store.get_invoice(sub.latest_invoice)


def _counts(world: World) -> tuple[int, int]:
    return len(world.store.customers), len(world.gateway.stripe_customers)


# ------------------------------------------------------------------ 1. updating a customer
def test_changing_the_email_moves_the_lookup_and_updates_stripe(world: World) -> None:
    ada = customers.create_customer(world.billing, "ada@example.com", "Ada", Address(country="NL"))
    world.publisher.clear()

    saved = customers.update_customer(world.billing, ada.id, {"email": "Ada.L@Example.com", "name": "Ada L"})

    assert saved.email == "Ada.L@Example.com" and saved.name == "Ada L"
    assert world.store.find_customer_by_email("ada.l@example.com").id == ada.id  # type: ignore[union-attr]
    assert world.store.find_customer_by_email("ada@example.com") is None  # the old email is free again
    assert world.gateway.stripe_customers[ada.stripe_customer_id]["email"] == "Ada.L@Example.com"  # type: ignore[index]
    (event,) = world.publisher.of_type("customer.updated")
    assert event.previous_attributes == {"email": "ada@example.com", "name": "Ada"}
    other = customers.create_customer(world.billing, "ada@example.com", None, Address(country="NL"))
    assert other.id != ada.id


def test_another_customers_email_is_409_naming_email_and_changes_nothing(world: World) -> None:
    ada = customers.create_customer(world.billing, "ada@example.com", "Ada", Address(country="NL"))
    customers.create_customer(world.billing, "bob@example.com", "Bob", Address(country="NL"))

    with pytest.raises(AlreadyExists) as error:
        customers.update_customer(world.billing, ada.id, {"email": "BOB@example.com"})

    assert error.value.param == "email"
    assert world.store.get_customer(ada.id).email == "ada@example.com"
    assert world.store.find_customer_by_email("bob@example.com").name == "Bob"  # type: ignore[union-attr]
    assert "update_customer" not in world.gateway.call_names()


def test_a_change_of_case_only_keeps_the_lookup(world: World) -> None:
    ada = customers.create_customer(world.billing, "ada@example.com", "Ada", Address(country="NL"))
    customers.update_customer(world.billing, ada.id, {"email": "ADA@example.com"})
    assert world.store.find_customer_by_email("ada@example.com").email == "ADA@example.com"  # type: ignore[union-attr]


def test_update_refuses_unknown_or_null_fields_and_bad_locales(world: World) -> None:
    ada = customers.create_customer(world.billing, "ada@example.com", "Ada", Address(country="NL"))
    refused = [
        ({"balance": -100}, "balance"),
        ({"address": None}, "address"),
        ({"preferred_locale": "x"}, "preferred_locale"),
    ]
    for changes, param in refused:
        with pytest.raises(InvalidInput) as error:
            customers.update_customer(world.billing, ada.id, changes)
        assert error.value.param == param


def test_a_dutch_consumer_who_becomes_a_german_business_is_reverse_charged_from_the_next_invoice(
    world: World,
) -> None:
    _, price = world.catalog(unit_amount=1000)
    started = start_checkout(
        world.billing, price_id=price.id, email="jan@example.nl", name="Jan", address=Address(country="NL")
    )
    complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)
    first = world.store.get_invoice(started.invoice.id)  # type: ignore[union-attr]
    assert first.tax == 210 and first.status is InvoiceStatus.PAID  # Dutch VAT 21 %

    customers.update_customer(
        world.billing,
        started.customer.id,
        {"address": Address(country="DE", city="Berlin"), "tax_id": DE_VAT, "name": "Jan GmbH"},
    )
    assert _renew(world, started.subscription.id) == "paid"

    renewal = _latest_invoice(world, started.subscription.id)
    assert renewal.id != first.id
    assert renewal.tax == 0 and renewal.total == 1000
    assert renewal.tax_note is not None and "everse charge" in renewal.tax_note
    assert world.store.get_invoice(first.id).tax == 210  # the finalized invoice keeps its tax
    (event,) = world.publisher.of_type("customer.updated")[-1:]
    assert event.previous_attributes["address"]["country"] == "NL" and event.previous_attributes["tax_id"] is None


# ------------------------------------------------------------------ 2. coupons on existing subscriptions
def test_a_coupon_applied_to_a_running_subscription_discounts_the_next_invoice_only(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    started = world.active_subscription(price)
    coupons.create_coupon(world.billing, id="HALF", percent_off=50, duration="once")

    sub = coupons.apply_subscription_discount(world.billing, started.subscription.id, coupon_id="HALF")

    assert sub.discount is not None and sub.discount["coupon"]["id"] == "HALF"
    assert world.store.get_coupon("HALF").times_redeemed == 1
    assert world.store.get_invoice(started.invoice.id).total == 1000  # type: ignore[union-attr]
    assert "customer.discount.created" in world.publisher.types()
    _renew(world, started.subscription.id)
    assert _latest_invoice(world, started.subscription.id).total == 500
    _renew(world, started.subscription.id)
    assert _latest_invoice(world, started.subscription.id).total == 1000  # once


def test_a_new_discount_replaces_the_current_one_and_delete_removes_it(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    started = world.active_subscription(price)
    coupons.create_coupon(world.billing, id="TEN", percent_off=10, duration="forever")
    coupons.create_coupon(world.billing, id="TWENTY", percent_off=20, duration="forever")
    coupons.create_promotion_code(world.billing, "spring", "TWENTY")
    sub_id = started.subscription.id

    coupons.apply_subscription_discount(world.billing, sub_id, coupon_id="TEN")
    sub = coupons.apply_subscription_discount(world.billing, sub_id, code="SPRING")  # case-insensitive

    assert sub.discount is not None and sub.discount["coupon"]["id"] == "TWENTY"
    assert (
        world.publisher.of_type("customer.discount.updated")[0].previous_attributes["coupon"]["coupon"]["id"] == "TEN"
    )
    _renew(world, sub_id)
    assert _latest_invoice(world, sub_id).total == 800

    removed = coupons.remove_subscription_discount(world.billing, sub_id)
    assert removed.discount is None and "customer.discount.deleted" in world.publisher.types()
    _renew(world, sub_id)
    assert _latest_invoice(world, sub_id).total == 1000
    with pytest.raises(NotFound) as error:
        coupons.remove_subscription_discount(world.billing, sub_id)
    assert error.value.param == "discount"


def test_a_subscription_discount_is_redeemed_under_the_checkout_rules(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)  # EUR
    started = world.active_subscription(price)
    coupons.create_coupon(world.billing, id="USD5", amount_off=500, currency="usd", duration="once")
    coupons.create_coupon(world.billing, id="ONE", percent_off=5, duration="once", max_redemptions=1)
    coupons.apply_subscription_discount(world.billing, started.subscription.id, coupon_id="ONE")
    other = world.active_subscription(price, email="other@example.com")  # ONE again on its own: no new redemption

    for coupon_id, reason in (("USD5", "currency_mismatch"), ("ONE", "coupon_max_redemptions_reached")):
        with pytest.raises(InvalidInput) as error:
            coupons.apply_subscription_discount(world.billing, other.subscription.id, coupon_id=coupon_id)
        assert error.value.param == "coupon" and reason in error.value.message
    assert world.store.get_coupon("ONE").times_redeemed == 1


def test_a_deleted_coupon_cannot_be_redeemed_but_its_discounts_go_on(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="LOYAL", percent_off=10, duration="forever")
    coupons.create_promotion_code(world.billing, "LOYAL10", "LOYAL")
    started = world.active_subscription(price, coupon="LOYAL")

    deleted = coupons.delete_coupon(world.billing, "LOYAL")
    assert deleted.valid is False and coupons.delete_coupon(world.billing, "LOYAL").valid is False
    assert world.publisher.types().count("coupon.deleted") == 1

    for kwargs, param in (({"coupon": "LOYAL"}, "coupon"), ({"promotion_code": "loyal10"}, "promotion_code")):
        with pytest.raises(InvalidInput) as error:
            world.checkout(price, email=f"{param}@example.com", **kwargs)
        assert error.value.param == param and "coupon_deleted" in error.value.message
    _renew(world, started.subscription.id)
    assert _latest_invoice(world, started.subscription.id).total == 900  # the existing discount goes on
    promo = world.store.get_promotion_code("LOYAL10")
    with pytest.raises(InvalidInput) as error:
        coupons.update_promotion_code(world.billing, promo.id, False)
        coupons.update_promotion_code(world.billing, promo.id, True)
    assert error.value.param == "active"


def test_a_deactivated_code_is_refused_and_a_reactivated_one_redeems(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="C", percent_off=10, duration="once")
    promo = coupons.create_promotion_code(world.billing, "WELCOME", "C")

    off = coupons.update_promotion_code(world.billing, promo.id, False)
    assert off.active is False and off.version == 1
    assert world.publisher.of_type("promotion_code.updated")[0].previous_attributes == {"active": True}
    with pytest.raises(InvalidInput) as error:
        world.checkout(price, promotion_code="welcome")
    assert "code_inactive" in error.value.message
    coupons.update_promotion_code(world.billing, promo.id, True)
    assert world.checkout(price, promotion_code="welcome").subscription.discount is not None


def test_a_redemption_read_before_a_deactivation_is_not_written_back(world: World) -> None:
    coupons.create_coupon(world.billing, id="C", percent_off=10, duration="once")
    promo = coupons.create_promotion_code(world.billing, "RACE", "C")
    stale = world.store.get_promotion_code("RACE")
    coupons.update_promotion_code(world.billing, promo.id, False)
    redeemed = stale.model_copy(update={"times_redeemed": 1})
    coupon = world.store.get_coupon("C").model_copy(update={"times_redeemed": 1})
    with pytest.raises(Exception, match="concurrently"):
        world.store.count_redemption(coupon, redeemed)
    assert world.store.get_promotion_code("RACE").active is False


def test_listings_filter_on_active_and_code(world: World) -> None:
    coupons.create_coupon(world.billing, id="A", percent_off=10, duration="once")
    world.clock.advance(seconds=1)
    coupons.create_coupon(world.billing, id="B", percent_off=10, duration="once")
    coupons.delete_coupon(world.billing, "A")
    a1 = coupons.create_promotion_code(world.billing, "ONE", "B")
    world.clock.advance(seconds=1)
    coupons.create_promotion_code(world.billing, "TWO", "B")
    coupons.update_promotion_code(world.billing, a1.id, False)

    assert [c.id for c in coupons.list_coupons(world.billing, 10, None).items] == ["B", "A"]
    assert [c.id for c in coupons.list_coupons(world.billing, 10, None, active=True).items] == ["B"]
    assert [c.id for c in coupons.list_coupons(world.billing, 10, None, active=False).items] == ["A"]
    page = coupons.list_coupons(world.billing, 1, None)
    assert [c.id for c in page.items] == ["B"] and page.has_more
    assert [c.id for c in coupons.list_coupons(world.billing, 1, "B").items] == ["A"]
    codes = coupons.list_promotion_codes
    assert [p.code for p in codes(world.billing, 10, None).items] == ["TWO", "ONE"]
    assert [p.code for p in codes(world.billing, 10, None, active=False).items] == ["ONE"]
    assert [p.code for p in codes(world.billing, 10, None, code="two").items] == ["TWO"]
    assert codes(world.billing, 10, None, code="two", active=False).items == []
    assert codes(world.billing, 10, None, code="nope").items == []


# ------------------------------------------------------------------ 3. first-time-transaction codes
def test_a_first_time_code_is_refused_to_a_customer_who_paid_before(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="NEW", percent_off=25, duration="once")
    coupons.create_promotion_code(world.billing, "FIRST", "NEW", first_time_transaction=True)
    paid = world.active_subscription(price)  # a paid invoice

    with pytest.raises(InvalidInput) as error:
        start_checkout(world.billing, price_id=price.id, customer_id=paid.customer.id, promotion_code="FIRST")
    assert error.value.param == "promotion_code" and "code_first_time_transaction_only" in error.value.message
    with pytest.raises(InvalidInput):
        coupons.apply_subscription_discount(world.billing, paid.subscription.id, code="FIRST")
    assert world.store.get_promotion_code("FIRST").times_redeemed == 0
    # a customer who never paid may use it
    fresh = world.checkout(price, email="new@example.com", promotion_code="FIRST")
    assert fresh.subscription.discount is not None


def test_an_unpaid_checkout_is_not_a_prior_transaction(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="NEW", percent_off=25, duration="once")
    coupons.create_promotion_code(world.billing, "FIRST", "NEW", first_time_transaction=True)
    unpaid = world.checkout(price)  # the first invoice is open, nothing paid
    assert coupons.prior_transactions(world.billing, unpaid.customer.id) is False
    again = start_checkout(world.billing, price_id=price.id, customer_id=unpaid.customer.id, promotion_code="FIRST")
    assert again.subscription.discount is not None


# ------------------------------------------------------------------ 4. checkout validates before it writes
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"coupon": "NOPE"}, "coupon"),
        ({"coupon": "OLD"}, "coupon"),
        ({"promotion_code": "NOPE"}, "promotion_code"),
        ({"promotion_code": "OFF"}, "promotion_code"),
        ({"promotion_code": "MINE"}, "promotion_code"),
        ({"coupon": "USD5"}, "coupon"),
    ],
)
def test_a_checkout_with_an_unredeemable_offer_leaves_no_customer_behind(
    world: World, kwargs: dict[str, str], param: str
) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="OLD", percent_off=10, duration="once", redeem_by=world.clock.now())
    coupons.create_coupon(world.billing, id="OK", percent_off=10, duration="once")
    coupons.create_coupon(world.billing, id="USD5", amount_off=500, currency="usd", duration="once")
    off = coupons.create_promotion_code(world.billing, "OFF", "OK")
    coupons.update_promotion_code(world.billing, off.id, False)
    coupons.create_promotion_code(world.billing, "MINE", "OK", customer="cus_someone")
    before = _counts(world)

    with pytest.raises((InvalidInput, NotFound)) as error:
        world.checkout(price, email="eve@example.com", **kwargs)

    assert error.value.param == param
    assert _counts(world) == before == (0, 0)
    assert "create_customer" not in world.gateway.call_names()
    assert world.store.get_coupon("OK").times_redeemed == 0


def test_a_checkout_with_a_good_coupon_counts_it_once(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    coupons.create_coupon(world.billing, id="OK", percent_off=10, duration="once")
    coupons.create_promotion_code(world.billing, "GO", "OK")
    assert world.checkout(price, promotion_code="go").invoice.total == 900  # type: ignore[union-attr]
    assert world.store.get_coupon("OK").times_redeemed == 1
    assert world.store.get_promotion_code("GO").times_redeemed == 1


def test_other_bad_checkouts_leave_no_customer_behind(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    archived = price.model_copy(update={"active": False})
    world.store.save_price(archived)
    for kwargs in ({"price_id": price.id}, {"price_id": "price_nope"}, {"items": []}):
        with pytest.raises((InvalidInput, NotFound)):
            start_checkout(world.billing, email="eve@example.com", address=Address(country="NL"), **kwargs)
    assert _counts(world) == (0, 0)


# ------------------------------------------------------------------ 5. no customer is found by email
def test_a_checkout_with_an_existing_customers_email_is_refused(world: World) -> None:
    _, price = world.catalog(unit_amount=1000)
    first = world.active_subscription(price)
    card = world.store.get_customer(first.customer.id).default_payment_method

    with pytest.raises(CustomerExists) as error:
        start_checkout(
            world.billing, price_id=price.id, email="ADA@example.com", name="Eve", address=Address(country="DE")
        )

    assert error.value.param == "customer.email" and error.value.code == "customer_exists"
    assert "customer_id" in error.value.message
    assert world.store.get_customer(first.customer.id).default_payment_method == card
    assert len(world.store.list_customer_subscriptions(first.customer.id)) == 1
    # the merchant's back end knows who is signed in and passes customer_id
    second = start_checkout(world.billing, price_id=price.id, customer_id=first.customer.id)
    assert second.customer.id == first.customer.id
