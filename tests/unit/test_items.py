"""Subscription items (kassa.domain.items): Stripe's items list (add, change, delete), its rules, the
per-item prorations (proration.change_items), and the services over several items on the in-memory
world — checkout, the one-price documents stored before items, coupons, tax, credit notes, trials,
pauses, cancellation, entitlements and the upcoming-renewal email."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from fakes import FakeMailer, FakeOutbox, World, make_world

from kassa.domain.cancellation import CancellationDetails
from kassa.domain.catalog import Price, Recurring
from kassa.domain.credit_notes import CreditNoteLine, CreditNoteLineType, CreditNoteRequest
from kassa.domain.customer import Address
from kassa.domain.errors import CurrencyMismatch, InvalidInput, NotFound
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.items import MAX_ITEMS, ItemChange, SubscriptionItem, apply_item_changes
from kassa.domain.periods import Interval, Period
from kassa.domain.pricing import BillingScheme, PriceTerms, Tier, TiersMode
from kassa.domain.proration import LineKind, ProrationBehavior, change_items
from kassa.domain.settings import EmailSettings, MerchantSettings
from kassa.domain.subscription import Status, Subscription
from kassa.domain.trials import MissingPaymentMethod
from kassa.services.cancellation import cancel, entitlements_of
from kassa.services.catalog import create_price, create_product, update_price
from kassa.services.checkout import CheckoutResult, complete_checkout, start_checkout
from kassa.services.coupons import create_coupon
from kassa.services.credit_notes import credit_invoice
from kassa.services.dunning import Dunning
from kassa.services.pausing import PauseBehavior, pause_collection, resume, resume_collection
from kassa.services.plan_changes import change_plan
from kassa.services.renewals import process_due

T0 = datetime(2025, 3, 1, tzinfo=UTC)
OREGON = Address(country="US", state="OR")  # no tax: the seller (NL) is not registered there
GRADUATED = PriceTerms(
    billing_scheme=BillingScheme.TIERED,
    tiers_mode=TiersMode.GRADUATED,
    tiers=(Tier(up_to=5, unit_amount=700), Tier(up_to=10, unit_amount=650), Tier(up_to=None, unit_amount=600)),
)


# ====================================================================== domain: apply_item_changes
def price(
    price_id: str,
    unit_amount: int = 1000,
    currency: str = "EUR",
    interval: Interval = Interval.MONTH,
    active: bool = True,
) -> Price:
    return Price(
        id=price_id,
        product=f"prod_{price_id}",
        currency=currency,
        unit_amount=unit_amount,
        recurring=Recurring(interval=interval),
        active=active,
        created=T0,
    )


def item(price_id: str, quantity: int = 1, **kwargs: Any) -> SubscriptionItem:
    return SubscriptionItem.from_price(price(price_id, **kwargs), quantity, item_id=f"si_{price_id}")


PRICES = {p.id: p for p in [price("a"), price("b", 500), price("c", 2000), price("old", active=False)]}
PRICES |= {"usd": price("usd", currency="USD"), "yearly": price("yearly", interval=Interval.YEAR)}


def apply(items: list[SubscriptionItem], *changes: ItemChange) -> list[SubscriptionItem]:
    return apply_item_changes(items, list(changes), PRICES, "si_new_")


def test_add_an_item_with_its_price_terms_and_a_new_id() -> None:
    result = apply([item("a")], ItemChange(price="b", quantity=3))
    assert [(i.id, i.price, i.quantity, i.unit_amount) for i in result] == [
        ("si_a", "a", 1, 1000),
        ("si_new_01", "b", 3, 500),
    ]
    assert result[1].product == "prod_b" and result[1].amount.amount == 1500
    two = apply([item("a")], ItemChange(price="b"), ItemChange(price="c"))
    assert [i.id for i in two] == ["si_a", "si_new_01", "si_new_02"] and two[1].quantity == 1


def test_change_the_quantity_or_the_price_of_an_item_keeps_its_id() -> None:
    items = [item("a", 2), item("b")]
    more = apply(items, ItemChange(id="si_a", quantity=5))
    assert more[0] == items[0].model_copy(update={"quantity": 5}) and more[1] == items[1]
    switched = apply(items, ItemChange(id="si_a", price="c"))
    assert (switched[0].id, switched[0].price, switched[0].quantity, switched[0].unit_amount) == ("si_a", "c", 2, 2000)
    both = apply(items, ItemChange(id="si_b", price="c", quantity=7))
    assert (both[1].id, both[1].price, both[1].quantity) == ("si_b", "c", 7)
    same = apply(items, ItemChange(id="si_a", price="a"))  # naming its own price changes nothing
    assert same == items


def test_delete_an_item_but_never_the_last() -> None:
    assert apply([item("a"), item("b")], ItemChange(id="si_a", deleted=True)) == [item("b")]
    with pytest.raises(InvalidInput) as error:
        apply([item("a")], ItemChange(id="si_a", deleted=True))
    assert error.value.param == "items[0].deleted"
    with pytest.raises(InvalidInput) as error:  # the second deletion would remove the last one
        apply([item("a"), item("b")], ItemChange(id="si_a", deleted=True), ItemChange(id="si_b", deleted=True))
    assert error.value.param == "items[1].deleted"
    with pytest.raises(InvalidInput) as error:
        apply([item("a"), item("b")], ItemChange(id="si_a", deleted=True, quantity=2))
    assert error.value.param == "items[0].deleted"
    with pytest.raises(InvalidInput) as error:
        apply([item("a"), item("b")], ItemChange(deleted=True))
    assert error.value.param == "items[0].id"


def test_unknown_item_and_unknown_or_archived_prices_name_the_entry() -> None:
    with pytest.raises(NotFound) as missing:
        apply([item("a")], ItemChange(id="si_a", quantity=2), ItemChange(id="si_nope", quantity=2))
    assert missing.value.param == "items[1].id"
    with pytest.raises(NotFound) as no_price:
        apply([item("a")], ItemChange(price="price_nope"))
    assert no_price.value.param == "items[0].price"
    with pytest.raises(InvalidInput) as archived:
        apply([item("a")], ItemChange(id="si_a", quantity=2), ItemChange(price="old"))
    assert archived.value.param == "items[1].price" and "archived" in archived.value.message
    with pytest.raises(InvalidInput) as no_price_given:
        apply([item("a")], ItemChange(quantity=2))
    assert no_price_given.value.param == "items[0].price"
    # an item already on an archived price keeps it (a quantity change is fine)
    assert apply([item("old", active=False)], ItemChange(id="si_old", quantity=4))[0].quantity == 4


def test_compatibility_errors_name_the_request_entry_not_the_resulting_position() -> None:
    items = [item("a"), item("b")]
    with pytest.raises(InvalidInput) as twice:  # a price once per subscription
        apply(items, ItemChange(price="a"))
    assert twice.value.param == "items[0].price" and "already on another item" in twice.value.message
    with pytest.raises(InvalidInput) as twice_by_change:
        apply(items, ItemChange(id="si_b", quantity=2), ItemChange(id="si_a", price="b"))
    assert twice_by_change.value.param == "items[1].price"
    with pytest.raises(CurrencyMismatch) as currency:
        apply(items, ItemChange(id="si_b", quantity=3), ItemChange(price="usd"))
    assert currency.value.param == "items[1].price"
    with pytest.raises(CurrencyMismatch) as first_changed:  # the untouched item clashes with the changed one
        apply(items, ItemChange(id="si_a", price="usd"))
    assert first_changed.value.param == "items[0].price"
    with pytest.raises(InvalidInput) as interval:
        apply(items, ItemChange(price="yearly"))
    assert interval.value.param == "items[0].price" and "billing interval" in interval.value.message
    # one item may switch its interval (the anchor resets): only items of one subscription must agree
    assert apply([item("a")], ItemChange(id="si_a", price="yearly"))[0].interval is Interval.YEAR


def test_at_most_twenty_items() -> None:
    many = {f"p{i}": price(f"p{i}", 100 + i) for i in range(MAX_ITEMS + 1)}
    twenty = apply_item_changes([], [ItemChange(price=f"p{i}") for i in range(MAX_ITEMS)], many, "si_n")
    assert len(twenty) == MAX_ITEMS
    with pytest.raises(InvalidInput) as error:
        apply_item_changes(twenty, [ItemChange(price=f"p{MAX_ITEMS}")], many, "si_m")
    assert error.value.param == "items" and "at most 20" in error.value.message


# ====================================================================== domain: change_items
PERIOD = Period(datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))  # 30 days
MIDDLE = datetime(2025, 4, 16, tzinfo=UTC)  # half of it left


def test_each_item_is_prorated_on_its_own() -> None:
    old = [item("a", 2), item("b", 1), item("c", 1)]
    new = [old[0].model_copy(update={"quantity": 3}), old[1], item("d", 1, unit_amount=400)]  # c removed
    result = change_items(old, new, period=PERIOD, anchor=PERIOD.start, t=MIDDLE)
    by_item = {(line.subscription_item, line.kind): line.amount for line in result.lines}
    assert by_item == {
        ("si_a", LineKind.UNUSED_TIME): -1000,  # quantity 2 → 3: the old quantity credited…
        ("si_a", LineKind.REMAINING_TIME): 1500,  # …and the new one charged
        ("si_c", LineKind.UNUSED_TIME): -500,  # removed: one credit
        ("si_d", LineKind.REMAINING_TIME): 200,  # added: one charge
    }  # b, unchanged, makes no line
    assert all(line.fraction == Fraction(1, 2) for line in result.lines)
    assert result.pending and not result.invoice_now and result.anchor == PERIOD.start
    assert result.items == tuple(new) and result.period == PERIOD
    now = change_items(
        old, new, period=PERIOD, anchor=PERIOD.start, t=MIDDLE, behavior=ProrationBehavior.ALWAYS_INVOICE
    )
    assert now.invoice_now and not now.pending and now.lines == result.lines
    free = change_items(old, new, period=PERIOD, anchor=PERIOD.start, t=MIDDLE, behavior=ProrationBehavior.NONE)
    assert free.lines == () and not free.pending and not free.invoice_now and free.items == tuple(new)
    nothing = change_items(old, old, period=PERIOD, anchor=PERIOD.start, t=MIDDLE)
    assert nothing.lines == () and not nothing.pending


def test_switching_the_interval_of_every_item_resets_the_anchor_and_invoices_now() -> None:
    old = [item("a", 2), item("b", 1)]
    new = [item("a", 2, interval=Interval.YEAR), item("b", 1, interval=Interval.YEAR)]
    result = change_items(old, new, period=PERIOD, anchor=PERIOD.start, t=MIDDLE)
    assert result.anchor_reset and result.invoice_now and not result.pending
    assert result.anchor == MIDDLE and result.period == Period(MIDDLE, datetime(2026, 4, 16, tzinfo=UTC))
    assert [(line.subscription_item, line.kind, line.amount) for line in result.lines] == [
        ("si_a", LineKind.UNUSED_TIME, -1000),
        ("si_b", LineKind.UNUSED_TIME, -500),
        ("si_a", LineKind.FULL_PERIOD, 2000),
        ("si_b", LineKind.FULL_PERIOD, 1000),
    ]


# ====================================================================== services on the world
def tiered_price(world: World, name: str = "Seats", **recurring: Any) -> Price:
    product = create_product(world.billing, name)
    return create_price(
        world.billing, product.id, "eur", GRADUATED, Recurring(**({"interval": Interval.MONTH} | recurring))
    )


def per_unit(world: World, name: str, amount: int, tax_code: str | None = None, **recurring: Any) -> Price:
    product = create_product(world.billing, name, tax_code=tax_code)
    return create_price(
        world.billing, product.id, "eur", amount, Recurring(**({"interval": Interval.MONTH} | recurring))
    )


def subscribe(
    world: World,
    items: list[tuple[Price, int]],
    *,
    address: Address = OREGON,
    pay: bool = True,
    email: str = "ada@example.com",
    **kwargs: Any,
) -> CheckoutResult:
    result = start_checkout(
        world.billing,
        items=[(p.id, q) for p, q in items],
        email=email,
        name="Ada",
        address=address,
        **kwargs,
    )
    if pay:
        complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    return result


def renew(world: World, sub_id: str) -> str:
    sub = world.store.get_subscription(sub_id)
    world.clock.set(sub.current_period_end)
    return process_due(world.billing, sub_id)


def latest(world: World, sub_id: str) -> Any:
    sub = world.store.get_subscription(sub_id)
    assert sub.latest_invoice is not None
    return world.store.get_invoice(sub.latest_invoice)


def test_a_three_item_checkout_bills_one_line_per_item_with_the_tier_breakdown() -> None:
    world = make_world(T0)
    base, seats, addon = per_unit(world, "Base", 2900), tiered_price(world), per_unit(world, "Backups", 300)
    result = subscribe(world, [(base, 1), (seats, 12), (addon, 2)])
    invoice = result.invoice
    assert invoice is not None and latest(world, result.subscription.id).number == "KASSA-0001"  # numbered when paid
    assert [(line.price, line.quantity, line.amount) for line in invoice.lines] == [
        (base.id, 1, 2900),
        (seats.id, 12, 5 * 700 + 5 * 650 + 2 * 600),
        (addon.id, 2, 600),
    ]
    assert [line.subscription_item for line in invoice.lines] == [i.id for i in result.subscription.items]
    assert invoice.lines[0].tiers is None and invoice.lines[1].unit_amount is None
    assert invoice.lines[1].tiers == [
        {"tier": 1, "up_to": 5, "quantity": 5, "unit_amount": 700, "flat_amount": 0, "amount": 3500},
        {"tier": 2, "up_to": 10, "quantity": 5, "unit_amount": 650, "flat_amount": 0, "amount": 3250},
        {"tier": 3, "up_to": None, "quantity": 2, "unit_amount": 600, "flat_amount": 0, "amount": 1200},
    ]
    assert "Seats" in invoice.lines[1].description and "12 ×" in invoice.lines[1].description
    assert invoice.subtotal == invoice.amount_due == 2900 + 7950 + 600
    sub = world.store.get_subscription(result.subscription.id)
    assert sub.status is Status.ACTIVE and len(sub.items) == 3
    assert renew(world, sub.id) == "paid"
    assert [line.amount for line in latest(world, sub.id).lines] == [2900, 7950, 600]


def test_checkout_refuses_mixed_currencies_intervals_and_a_price_twice() -> None:
    world = make_world(T0)
    base = per_unit(world, "Base", 2900)
    yearly = per_unit(world, "Yearly", 29000, interval=Interval.YEAR)
    _, usd = world.catalog(700, "usd")
    for items, error, param in [
        ([(base, 1), (usd, 1)], CurrencyMismatch, "items[1].price"),
        ([(base, 1), (yearly, 1)], InvalidInput, "items[1].price"),
        ([(base, 1), (base, 2)], InvalidInput, "items[1].price"),
    ]:
        with pytest.raises(error) as raised:
            subscribe(world, items)
        assert raised.value.param == param
    assert world.store.subscriptions == {} and world.store.customers == {}  # validated before anything is written


def test_a_subscription_stored_before_items_renews_as_one_item_with_the_same_amount() -> None:
    world = make_world(T0)
    owner = world.active_subscription(world.catalog(100)[1])  # a customer with a card
    _, old_price = world.catalog(1250)
    doc = {  # the one-price shape written before items existed: no ``items``
        "id": "sub_legacy",
        "customer": owner.customer.id,
        "price": old_price.id,
        "quantity": 3,
        "unit_amount": 1250,
        "tax_behavior": "exclusive",
        "currency": "EUR",
        "interval": "month",
        "interval_count": 1,
        "status": "active",
        "billing_cycle_anchor": "2025-02-10T00:00:00+00:00",
        "current_period_start": "2025-02-10T00:00:00+00:00",
        "current_period_end": "2025-03-10T00:00:00+00:00",
        "created": "2025-02-10T00:00:00+00:00",
    }
    legacy = Subscription.model_validate(doc)
    assert [(i.price, i.quantity, i.unit_amount, i.amount.amount) for i in legacy.items] == [
        (old_price.id, 3, 1250, 3750)
    ]
    assert legacy.items[0].id == Subscription.model_validate(doc).items[0].id  # a stable item id across reads
    assert (legacy.price, legacy.quantity, legacy.unit_amount) == (old_price.id, 3, 1250)
    world.store.subscriptions[legacy.id] = legacy
    assert renew(world, legacy.id) == "paid"
    invoice = latest(world, legacy.id)
    assert [(line.price, line.quantity, line.amount, line.subscription_item) for line in invoice.lines] == [
        (old_price.id, 3, 3750, legacy.items[0].id)
    ]
    assert invoice.amount_due == 3750 and invoice.status is InvoiceStatus.PAID
    entitled = [e for e in entitlements_of(world.billing, owner.customer.id) if e.subscription == legacy.id]
    assert [(e.product, e.quantity) for e in entitled] == [(old_price.product, 3)]
    # the one-price shorthand still changes it
    changed = change_plan(world.billing, legacy.id, quantity=4, behavior=ProrationBehavior.NONE)
    assert changed.subscription.quantity == 4 and len(changed.subscription.items) == 1


def test_change_plan_names_the_request_entry_of_a_bad_item() -> None:
    world = make_world(T0)
    base, addon, retired = per_unit(world, "Base", 2900), per_unit(world, "Backups", 300), per_unit(world, "Old", 100)
    _, usd = world.catalog(700, "usd")
    update_price(world.billing, retired.id, active=False)
    sub = subscribe(world, [(base, 1), (addon, 1)]).subscription
    for change, error, param in [
        (ItemChange(price=usd.id), CurrencyMismatch, "items[0].price"),
        (ItemChange(price=base.id), InvalidInput, "items[0].price"),
        (ItemChange(price=retired.id), InvalidInput, "items[0].price"),
        (ItemChange(id="si_nope", quantity=2), NotFound, "items[0].id"),
    ]:
        with pytest.raises(error) as raised:
            change_plan(world.billing, sub.id, items=[change])
        assert raised.value.param == param
    with pytest.raises(InvalidInput) as several:  # the one-price shorthand needs a one-item subscription
        change_plan(world.billing, sub.id, quantity=2)
    assert several.value.param == "items"
    assert world.store.get_subscription(sub.id).items == sub.items


def test_a_coupon_for_one_product_discounts_only_its_line() -> None:
    world = make_world(T0)
    base, addon = per_unit(world, "Base", 3000), per_unit(world, "Backups", 800)
    coupon = create_coupon(world.billing, percent_off=50, duration="forever", applies_to=(addon.product,))
    result = subscribe(world, [(base, 1), (addon, 2)], coupon=coupon.id)
    invoice = result.invoice
    assert invoice is not None
    assert [(line.price, line.amount, line.discount_amount) for line in invoice.lines] == [
        (base.id, 3000, 0),
        (addon.id, 800, 800),
    ]
    assert invoice.total_discount == 800 and invoice.amount_due == 3800
    renew(world, result.subscription.id)  # forever: the renewal too
    assert [line.discount_amount for line in latest(world, result.subscription.id).lines] == [0, 800]


def test_each_line_is_taxed_with_its_own_products_tax_code() -> None:
    world = make_world(T0)
    saas = per_unit(world, "Software", 10000, tax_code="txcd_10000000")
    donation = per_unit(world, "Donation", 500, tax_code="txcd_00000000")
    result = subscribe(world, [(saas, 1), (donation, 2)], address=Address(country="NL"))  # domestic: Dutch VAT
    invoice = result.invoice
    assert invoice is not None
    assert [(line.tax_code, line.tax_rate, line.tax_amount) for line in invoice.lines] == [
        ("txcd_10000000", "21", 2100),
        ("txcd_00000000", "0", 0),
    ]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (11000, 2100, 13100)


def test_a_credit_note_credits_a_single_line_of_a_multi_item_invoice() -> None:
    world = make_world(T0)
    base, addon = per_unit(world, "Base", 3000), per_unit(world, "Backups", 800)
    result = subscribe(world, [(base, 1), (addon, 1)])
    world.gateway.will_decline("pm_card_visa")
    renew(world, result.subscription.id)
    invoice = latest(world, result.subscription.id)  # the renewal, declined: open and numbered
    assert invoice.status is InvoiceStatus.OPEN and invoice.number is not None
    line = CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=800, invoice_line=1)
    note, credited = credit_invoice(world.billing, invoice.id, CreditNoteRequest(lines=(line,)))
    assert note.total == 800 and [(n.type, n.amount, n.invoice_line) for n in note.lines] == [(line.type, 800, 1)]
    assert credited.amount_due == 3000 and credited.pre_payment_credit_notes_amount == 800
    more = CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=1, invoice_line=1)
    with pytest.raises(InvalidInput):  # that line is fully credited: no more of it
        credit_invoice(world.billing, invoice.id, CreditNoteRequest(lines=(more,)))
    other = CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=3000, invoice_line=0)
    _, settled = credit_invoice(world.billing, invoice.id, CreditNoteRequest(lines=(other,)))
    assert settled.amount_due == 0  # the other line still could be
    # a paid invoice: one line credited to the customer's balance
    first = world.store.get_invoice(result.invoice.id)  # type: ignore[union-attr]
    assert first.status is InvoiceStatus.PAID
    request = CreditNoteRequest(
        lines=(CreditNoteLine(type=CreditNoteLineType.INVOICE_LINE_ITEM, amount=800, invoice_line=1),),
        credit_amount=800,
    )
    paid_note, _ = credit_invoice(world.billing, first.id, request)
    assert paid_note.credit_amount == 800 and world.store.get_customer(first.customer).balance == -800


def test_a_trial_with_several_items_invoices_every_item_at_its_end() -> None:
    world = make_world(T0)
    base, seats, addon = per_unit(world, "Base", 2900), tiered_price(world), per_unit(world, "Backups", 300)
    result = subscribe(world, [(base, 1), (seats, 6)], trial_days=14)
    assert result.invoice is None and result.subscription.status is Status.TRIALING
    world.clock.advance(days=3)
    changed = change_plan(world.billing, result.subscription.id, items=[ItemChange(price=addon.id, quantity=2)])
    assert changed.invoice is None and len(changed.subscription.items) == 3  # nothing billed in a trial
    assert changed.subscription.pending_lines == []
    world.clock.set(result.subscription.trial_end)  # type: ignore[arg-type]
    outcomes = [process_due(world.billing, result.subscription.id) for _ in range(3)]
    assert "paid" in outcomes, outcomes  # the trial-will-end notice may come first
    invoice = latest(world, result.subscription.id)
    assert [(line.price, line.amount) for line in invoice.lines] == [(base.id, 2900), (seats.id, 4150), (addon.id, 600)]
    assert world.store.get_subscription(result.subscription.id).status is Status.ACTIVE


def test_pausing_collection_and_resuming_cover_every_item() -> None:
    world = make_world(T0)
    base, addon = per_unit(world, "Base", 2900), per_unit(world, "Backups", 300)
    sub_id = subscribe(world, [(base, 1), (addon, 2)]).subscription.id
    pause_collection(world.billing, sub_id, PauseBehavior.VOID)
    assert renew(world, sub_id) == "paused:void"
    voided = latest(world, sub_id)
    assert voided.status is InvoiceStatus.VOID and voided.number is None and len(voided.lines) == 2
    resume_collection(world.billing, sub_id)
    assert renew(world, sub_id) == "paid"
    assert latest(world, sub_id).number == "KASSA-0002"  # the voided draft used no number
    # a full pause (a trial ending without a card) resumes with a full period of every item
    world.gateway.setup_payment_method = None
    trial = subscribe(
        world,
        [(base, 1), (addon, 2)],
        email="bob@example.com",
        pay=False,
        trial_days=7,
        missing_payment_method=MissingPaymentMethod.PAUSE,
    ).subscription
    world.clock.set(trial.trial_end)  # type: ignore[arg-type]
    outcomes = [process_due(world.billing, trial.id) for _ in range(3)]
    assert "paused" in outcomes, outcomes
    assert world.store.get_subscription(trial.id).status is Status.PAUSED
    world.clock.advance(days=5)
    card = world.store.get_customer(world.store.get_subscription(sub_id).customer).default_payment_method
    customer = world.store.get_customer(trial.customer)  # the customer adds a card, then resumes
    world.store.save_customer(customer.model_copy(update={"default_payment_method": card}))
    resumed = resume(world.billing, trial.id)
    assert resumed.invoice is not None
    assert [(line.price, line.amount, line.proration) for line in resumed.invoice.lines] == [
        (base.id, 2900, False),
        (addon.id, 600, False),
    ]
    assert (
        resumed.subscription.status is Status.ACTIVE
        and resumed.subscription.billing_cycle_anchor == world.billing.now()
    )


def test_cancel_now_with_prorate_credits_every_items_unused_time() -> None:
    world = make_world(datetime(2025, 4, 1, tzinfo=UTC))
    base, addon = per_unit(world, "Base", 3000), per_unit(world, "Backups", 1000)
    result = subscribe(world, [(base, 1), (addon, 2)])
    world.clock.set(datetime(2025, 4, 16, tzinfo=UTC))  # 15 of 30 days left
    canceled = cancel(
        world.billing, result.subscription.id, at_period_end=False, details=CancellationDetails(), prorate=True
    )
    assert canceled.status is Status.CANCELED
    final = latest(world, canceled.id)
    assert [(line.subscription_item, line.amount) for line in final.lines] == [
        (result.subscription.items[0].id, -1500),
        (result.subscription.items[1].id, -1000),
    ]
    assert final.amount_due == 0 and world.store.get_customer(result.customer.id).balance == -2500
    assert entitlements_of(world.billing, result.customer.id) == []


def test_entitlements_list_one_per_product_of_each_item() -> None:
    world = make_world(T0)
    base, seats = per_unit(world, "Base", 2900), tiered_price(world)
    result = subscribe(world, [(base, 1), (seats, 7)])
    found = entitlements_of(world.billing, result.customer.id)
    assert sorted((e.product, e.price, e.quantity) for e in found) == sorted(
        [(base.product, base.id, 1), (seats.product, seats.id, 7)]
    )
    assert {e.subscription for e in found} == {result.subscription.id}
    assert all(e.valid_until == result.subscription.current_period_end and e.renews for e in found)
    cancel(world.billing, result.subscription.id, at_period_end=True, details=CancellationDetails())
    assert {e.renews for e in entitlements_of(world.billing, result.customer.id)} == {False}


def test_the_upcoming_renewal_email_announces_the_next_invoices_true_amount() -> None:
    world = make_world(datetime(2025, 4, 1, tzinfo=UTC))
    world.store.settings = MerchantSettings(emails=EmailSettings(upcoming_renewal_days=7))
    saas = per_unit(world, "Software", 10000, tax_code="txcd_10000000")
    seats = tiered_price(world)
    coupon = create_coupon(world.billing, percent_off=10, duration="forever")
    result = subscribe(world, [(saas, 1), (seats, 3)], address=Address(country="NL"), coupon=coupon.id)
    sub_id = result.subscription.id
    world.clock.set(datetime(2025, 4, 16, tzinfo=UTC))
    change_plan(world.billing, sub_id, items=[ItemChange(id=result.subscription.items[1].id, quantity=8)])
    assert world.store.get_subscription(sub_id).pending_lines  # prorations wait for the renewal
    captured: list[dict[str, Any]] = []
    dunning = Dunning(
        world.billing, FakeOutbox(), FakeMailer(), sender="billing@example.com", link_secret="s", public_url="https://x"
    )
    real_send = dunning.send

    def send(template: str, customer: Any, context: dict[str, Any], key: str) -> Any:
        if template == "upcoming_renewal":
            captured.append(context)
        return real_send(template, customer, context, key)

    dunning.send = send  # type: ignore[method-assign]
    world.clock.set(datetime(2025, 4, 24, tzinfo=UTC))  # the reminder is due 7 days before 1 May
    assert process_due(world.billing, sub_id) == "upcoming"
    (event,) = world.publisher.of_type("invoice.upcoming")
    dunning.handle_event({"detail-type": event.type, "detail": event.model_dump(mode="json")})
    assert len(captured) == 1 and "upcoming_renewal" in dunning.mailer.templates()  # type: ignore[attr-defined]
    assert renew(world, sub_id) == "paid"
    invoice = latest(world, sub_id)
    assert invoice.tax > 0 and invoice.total_discount > 0 and any(line.proration for line in invoice.lines)
    assert captured[0]["amount"] == invoice.amount_due


def test_switching_the_only_item_to_another_currency_names_the_entry() -> None:
    world = make_world()
    _, eur = world.catalog(1000, "eur")
    _, usd = world.catalog(1000, "usd")
    sub = world.active_subscription(eur).subscription
    with pytest.raises(CurrencyMismatch) as error:
        change_plan(world.billing, sub.id, items=[ItemChange(id=sub.items[0].id, price=usd.id)])
    assert error.value.param == "items[0].price"
    assert world.store.get_subscription(sub.id).items == sub.items  # nothing changed
