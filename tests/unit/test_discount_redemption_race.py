"""``POST /v1/subscriptions/{id}/discount`` counts the redemption and writes the subscription's
discount in one store write (``count_redemption`` with the subscription, under its version), from a
fresh read each attempt: two identical requests at once count one redemption, a write that fails
counts nothing, and coupons racing each count once for the discount they actually put on.

``RacingStore`` hands the service the stored subscription and then, before the service can write,
runs a "concurrent request" (once, or on every read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fakes import START, BillingContext, FakeGateway, FixedClock, ListPublisher, World

from kassa.adapters.memory import MemoryStore
from kassa.domain.errors import Conflict
from kassa.domain.events import DomainEvent
from kassa.domain.subscription import Subscription
from kassa.services import coupons as coupons_module
from kassa.services.coupons import apply_subscription_discount, create_coupon, create_promotion_code


class RacingStore(MemoryStore):
    """A MemoryStore whose reads of an armed subscription run a concurrent request right after the
    read (``times`` of them); it counts the writes the service makes through each method."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: dict[str, tuple[Callable[[], None], int]] = {}
        self.calls: list[str] = []

    def arm(self, subscription_id: str, concurrent: Callable[[], None], times: int = 1) -> None:
        self.armed[subscription_id] = (concurrent, times)

    def get_subscription(self, subscription_id: str) -> Subscription:
        sub = super().get_subscription(subscription_id)
        concurrent, times = self.armed.pop(subscription_id, (None, 0))
        if concurrent is not None:
            if times > 1:
                self.armed[subscription_id] = (concurrent, times - 1)
            concurrent()
        return sub

    def count_redemption(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("count_redemption")
        return super().count_redemption(*args, **kwargs)

    def save_subscription(self, sub: Subscription) -> Subscription:
        self.calls.append("save_subscription")
        return super().save_subscription(sub)


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coupons_module, "retry_pause", lambda attempt: None)


def racing_world() -> tuple[World, RacingStore, str]:
    store, gateway, publisher, clock = RacingStore(), FakeGateway(), ListPublisher(), FixedClock(START)
    world = World(store, gateway, publisher, clock, BillingContext(store, gateway, publisher, clock))
    _, price = world.catalog()
    return world, store, world.active_subscription(price).subscription.id


def _discount_events(world: World) -> list[tuple[str, str]]:
    return [(e.type, e.data["coupon"]["id"]) for e in world.publisher.events if e.type.startswith("customer.discount.")]


def _discount_updates(world: World) -> list[DomainEvent]:
    return [e for e in world.publisher.of_type("customer.subscription.updated") if "discount" in e.previous_attributes]


def test_two_identical_applies_at_once_count_one_redemption() -> None:
    world, store, sub_id = racing_world()
    coupon = create_coupon(world.billing, id="FIVE", percent_off=20, duration="forever", max_redemptions=5)
    others: list[Subscription] = []
    store.arm(sub_id, lambda: others.append(apply_subscription_discount(world.billing, sub_id, coupon_id="FIVE")))

    mine = apply_subscription_discount(world.billing, sub_id, coupon_id=coupon.id)

    assert others and others[0].discount is not None  # the concurrent request got in between
    assert store.get_coupon("FIVE").times_redeemed == 1
    assert mine == others[0] == MemoryStore.get_subscription(store, sub_id)
    assert _discount_events(world) == [("customer.discount.created", "FIVE")]
    assert len(_discount_updates(world)) == 1


def test_two_identical_applies_of_a_code_at_once_count_it_once() -> None:
    world, store, sub_id = racing_world()
    create_coupon(world.billing, id="C", percent_off=20, duration="forever")
    promo = create_promotion_code(world.billing, "SPRING", "C", max_redemptions=5)
    store.arm(sub_id, lambda: apply_subscription_discount(world.billing, sub_id, code="spring"))

    apply_subscription_discount(world.billing, sub_id, code="SPRING")

    assert store.get_promotion_code_by_id(promo.id).times_redeemed == 1
    assert store.get_coupon("C").times_redeemed == 1
    assert _discount_events(world) == [("customer.discount.created", "C")]


def test_the_redemption_and_the_discount_are_one_store_write() -> None:
    """Nothing can come between counting and the discount landing (a crash there used to leave a
    counted redemption and no discount): the service makes one write."""
    world, store, sub_id = racing_world()
    create_coupon(world.billing, id="ONE", percent_off=20, duration="forever")
    writes = store.writes
    store.calls.clear()

    saved = apply_subscription_discount(world.billing, sub_id, coupon_id="ONE")

    assert store.calls == ["count_redemption"] and store.writes == writes + 1
    assert saved.discount is not None and saved.discount["coupon"]["id"] == "ONE"
    assert store.get_coupon("ONE").times_redeemed == 1


def test_a_subscription_write_that_keeps_failing_counts_no_redemption() -> None:
    world, store, sub_id = racing_world()
    create_coupon(world.billing, id="HOT", percent_off=20, duration="forever", max_redemptions=5)

    def concurrent_write() -> None:  # another request changes the subscription before every write
        current = MemoryStore.get_subscription(store, sub_id)
        MemoryStore.save_subscription(store, current.model_copy(update={"trial_will_end_notified": True}))

    store.arm(sub_id, concurrent_write, times=10_000)
    with pytest.raises(Conflict):
        apply_subscription_discount(world.billing, sub_id, coupon_id="HOT")

    assert store.get_coupon("HOT").times_redeemed == 0
    assert MemoryStore.get_subscription(store, sub_id).discount is None
    assert _discount_events(world) == [] and _discount_updates(world) == []


def test_different_coupons_racing_count_each_once_and_the_last_write_wins() -> None:
    """Stripe: replacing a discount does not un-count the replaced coupon's redemption."""
    world, store, sub_id = racing_world()
    create_coupon(world.billing, id="MINE", percent_off=10, duration="forever")
    create_coupon(world.billing, id="THEIRS", percent_off=20, duration="forever")
    store.arm(sub_id, lambda: apply_subscription_discount(world.billing, sub_id, coupon_id="THEIRS"))

    saved = apply_subscription_discount(world.billing, sub_id, coupon_id="MINE")

    assert saved.discount is not None and saved.discount["coupon"]["id"] == "MINE"
    assert MemoryStore.get_subscription(store, sub_id) == saved
    assert store.get_coupon("MINE").times_redeemed == 1
    assert store.get_coupon("THEIRS").times_redeemed == 1
    assert _discount_events(world) == [("customer.discount.created", "THEIRS"), ("customer.discount.updated", "MINE")]
    replaced = world.publisher.of_type("customer.discount.updated")[0]
    assert replaced.previous_attributes["coupon"]["coupon"]["id"] == "THEIRS"
    updates = _discount_updates(world)
    assert [u.previous_attributes["discount"] is None for u in updates] == [True, False]
    assert updates[1].previous_attributes["discount"]["coupon"]["id"] == "THEIRS"
