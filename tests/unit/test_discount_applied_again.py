"""Applying the discount a subscription already carries is the same request again: the coupon (and
code) is not redeemed twice and nothing is published — but a coupon deleted (a code deactivated)
meanwhile is still refused, and a coupon whose last redemption was this one is not."""

from __future__ import annotations

import pytest
from fakes import make_world

from kassa.domain.errors import InvalidInput
from kassa.services.coupons import apply_subscription_discount, create_coupon, create_promotion_code, delete_coupon


def _discount_events(world) -> list[str]:
    return [e.type for e in world.publisher.events if e.type.startswith("customer.discount.")]


def test_the_same_coupon_twice_is_redeemed_once_even_at_its_last_redemption() -> None:
    world = make_world()
    _, price = world.catalog()
    sub = world.active_subscription(price).subscription
    coupon = create_coupon(world.billing, percent_off=20, duration="forever", max_redemptions=1)
    first = apply_subscription_discount(world.billing, sub.id, coupon_id=coupon.id)
    again = apply_subscription_discount(world.billing, sub.id, coupon_id=coupon.id)
    assert again == first and again.discount is not None
    assert world.store.get_coupon(coupon.id).times_redeemed == 1
    assert _discount_events(world) == ["customer.discount.created"]

    delete_coupon(world.billing, coupon.id)
    with pytest.raises(InvalidInput, match="coupon_deleted"):
        apply_subscription_discount(world.billing, sub.id, coupon_id=coupon.id)


def test_the_same_code_twice_in_another_case_is_redeemed_once() -> None:
    world = make_world()
    _, price = world.catalog()
    sub = world.active_subscription(price).subscription
    coupon = create_coupon(world.billing, percent_off=20, duration="forever")
    promo = create_promotion_code(world.billing, "SPRING", coupon.id)
    apply_subscription_discount(world.billing, sub.id, code="SPRING")
    apply_subscription_discount(world.billing, sub.id, code="spring")
    assert world.store.get_promotion_code_by_id(promo.id).times_redeemed == 1
    assert world.store.get_coupon(coupon.id).times_redeemed == 1
    assert _discount_events(world) == ["customer.discount.created"]


def test_a_once_coupon_already_used_is_redeemed_again() -> None:
    world = make_world()
    _, price = world.catalog()
    sub = world.active_subscription(price).subscription
    coupon = create_coupon(world.billing, percent_off=20, duration="once")
    apply_subscription_discount(world.billing, sub.id, coupon_id=coupon.id)
    used = world.store.get_subscription(sub.id)
    assert used.discount is not None
    spent = {**used.discount, "invoices_applied": 1}  # the next invoice took it
    world.store.save_subscription(used.model_copy(update={"discount": spent}))
    apply_subscription_discount(world.billing, sub.id, coupon_id=coupon.id)
    assert world.store.get_coupon(coupon.id).times_redeemed == 2
