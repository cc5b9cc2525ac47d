"""Read-modify-writes under a concurrent write slipped in between the read and the write (a
MemoryStore that lets another writer win once), and late ``setup_intent.succeeded`` deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fakes import make_world, stripe_event, stripe_object
from test_dunning_service import Desk, decline_renewals

from kassa.adapters.memory import MemoryStore
from kassa.domain.dunning import RetrySchedule
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Subscription
from kassa.services.collection import update_card
from kassa.services.coupons import apply_subscription_discount, create_coupon, remove_subscription_discount
from kassa.services.customers import card_setup_intent
from kassa.services.invoicing import add_invoice_item
from kassa.services.stripe_events import apply_stripe_event


def _racing(world: Any, slip: Any) -> None:
    """Make the next save_subscription lose once to ``slip(store)``, run just before it."""
    store = world.store
    original = store.save_subscription
    fired: list[bool] = []

    def save_subscription(sub: Subscription) -> Subscription:
        if not fired:
            fired.append(True)
            slip(store, original)
        return original(sub)

    store.save_subscription = save_subscription


def test_a_one_off_item_written_concurrently_is_kept() -> None:
    world = make_world()
    _, price = world.catalog()
    sub = world.active_subscription(price).subscription

    def slip(store: MemoryStore, save: Any) -> None:
        current = store.get_subscription(sub.id)
        line = {**current.pending_lines[0], "description": "other"} if current.pending_lines else None
        assert line is None
        add = {"description": "concurrent", "amount": 300, "quantity": 1, "unit_amount": 300}
        add |= {"period_start": world.clock.now().isoformat(), "period_end": world.clock.now().isoformat()}
        save(current.model_copy(update={"pending_lines": [*current.pending_lines, add]}))

    _racing(world, slip)
    saved = add_invoice_item(world.billing, sub.id, amount=500, description="mine")
    assert sorted(line["description"] for line in saved.pending_lines) == ["concurrent", "mine"]


def test_removing_a_discount_replaced_meanwhile_names_the_removed_one() -> None:
    world = make_world()
    _, price = world.catalog()
    sub = world.active_subscription(price).subscription
    first = create_coupon(world.billing, percent_off=10, duration="forever")
    second = create_coupon(world.billing, percent_off=20, duration="forever")
    apply_subscription_discount(world.billing, sub.id, coupon_id=first.id)
    replaced: list[Any] = []

    def slip(store: MemoryStore, save: Any) -> None:
        store.save_subscription = save  # the concurrent request writes normally
        replaced.append(apply_subscription_discount(world.billing, sub.id, coupon_id=second.id))

    _racing(world, slip)
    remove_subscription_discount(world.billing, sub.id)
    assert world.store.get_subscription(sub.id).discount is None
    deleted = [e for e in world.publisher.events if e.type == "customer.discount.deleted"]
    assert deleted[-1].data["coupon"]["id"] == second.id


def _late_event(desk: Desk, intent_id: str, customer_id: str, created: int, event_id: str) -> dict[str, Any]:
    obj = stripe_object(
        "setup_intent",
        id=intent_id,
        status="succeeded",
        payment_method="pm_card_visa",
        created=created,
        metadata={"kassa_customer": customer_id, "kassa_purpose": "card_update"},
    )
    return stripe_event("setup_intent.succeeded", obj, event_id=event_id)


def test_a_late_setup_intent_succeeded_neither_charges_nor_moves_the_retry_schedule() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1, 3, 5, 7])))
    sub = desk.subscribe()
    decline_renewals(desk)
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(hours=2))
    # the customer confirms a card (which declines too) long before: one attempt with that SetupIntent
    created = int(desk.w.clock.now().timestamp())
    intent = card_setup_intent(desk.w.billing, sub.customer.id, "card_update")
    desk.w.gateway.confirm_setup_intent(intent.id, "pm_card_visa")
    update_card(desk.w.billing, sub.customer.id, intent.id)
    desk.run_until(renewal_at + timedelta(days=4))  # a dunning retry is the last attempt now
    before = desk.invoice(sub.subscription.id)
    assert before.attempt_trigger != intent.id and before.next_dunning_at is not None
    charges = len(desk.w.gateway.charge_calls)
    event = _late_event(desk, intent.id, sub.customer.id, created, "evt_late_seti")
    assert apply_stripe_event(desk.w.billing, event) == "ignored:stale setup intent"
    after = desk.invoice(sub.subscription.id)
    assert len(desk.w.gateway.charge_calls) == charges
    assert (after.attempt_count, after.next_dunning_at) == (before.attempt_count, before.next_dunning_at)


def test_a_setup_intent_already_used_as_the_trigger_is_stale() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1, 3, 5, 7])))
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(hours=2))
    intent = card_setup_intent(desk.w.billing, sub.customer.id, "card_update")
    desk.w.gateway.confirm_setup_intent(intent.id, "pm_card_visa")
    update_card(desk.w.billing, sub.customer.id, intent.id)
    event = _late_event(desk, intent.id, sub.customer.id, int(desk.w.clock.now().timestamp()) + 60, "evt_again")
    assert apply_stripe_event(desk.w.billing, event) == "ignored:stale setup intent"
