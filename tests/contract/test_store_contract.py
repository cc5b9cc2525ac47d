"""The BillingStore contract (kassa.services.ports), run against every implementation.

Each test runs once on ``MemoryStore`` (the unit tests' FakeStore) and once on ``DynamoStore`` over a
private moto table (see conftest.py), so both start empty: the invoice counter at 0, no due work.
Everything asserted here is what the services rely on; how an implementation gets there (DynamoDB
capacity, the counter item, index attributes, concurrency of the counter) is tested next to it, in
tests/integration/test_dynamodb_store.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from integration.conftest import START

from kassa.adapters.dynamodb import shard_of as adapter_shard_of
from kassa.domain.catalog import Price, Product, Recurring
from kassa.domain.credit_notes import (
    CreditNote,
    CreditNoteLine,
    CreditNoteLineType,
    CreditNoteType,
    credit_note_id,
    credit_note_number,
)
from kassa.domain.customer import Address, CardSummary, Customer, card_expiry_notice_at
from kassa.domain.discounts import Coupon, Duration, PromotionCode
from kassa.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from kassa.domain.invoice import BillingReason, Invoice, InvoiceStatus, build_subscription_invoice, checkout_invoice
from kassa.domain.periods import Interval
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status, Subscription, start_subscription
from kassa.services.ports import WebhookRecord

NOW = START
PREFIX = "CTEST"
SHARDS = 4  # infra.wiring.DUE_SHARDS, which both stores are built with


def shard_of(entity_id: str) -> int:
    return adapter_shard_of(entity_id, SHARDS)


# ----------------------------------------------------------------------------- builders


def product(n: int = 0, created: datetime = NOW) -> Product:
    return Product(id=f"prod_c{n}", name="Coffee club", created=created)


def price(n: int = 0, created: datetime = NOW) -> Price:
    return Price(
        id=f"price_c{n}", product="prod_c0", currency="EUR", unit_amount=1500,
        recurring=Recurring(interval=Interval.MONTH), created=created,
    )  # fmt: skip


def customer(n: int = 0, email: str | None = None, created: datetime = NOW) -> Customer:
    return Customer(
        id=f"cus_c{n}", email=email or f"contract-{n}@example.com", name="Contract", address=Address(country="NL"),
        stripe_customer_id=f"cus_stripe_c{n}", created=created,
    )  # fmt: skip


def new_subscription(n: int = 0, now: datetime = NOW, cus: int = 0) -> tuple[Subscription, Invoice]:
    """An incomplete subscription and its draft first invoice, as checkout builds them."""
    sub = start_subscription(customer=f"cus_c{cus}", price=price(), quantity=1, now=now, subscription_id=f"sub_c{n}")
    invoice = build_subscription_invoice(sub, sub.period, now, BillingReason.SUBSCRIPTION_CREATE, "Coffee club")
    return sub.model_copy(update={"latest_invoice": invoice.id}), invoice


def created(store: Any, n: int = 0, now: datetime = NOW, cus: int = 0) -> tuple[Subscription, Invoice]:
    """A subscription stored with its first invoice (numbered)."""
    sub, draft = new_subscription(n, now, cus)
    final = store.create_subscription(sub, draft, PREFIX)
    assert final is not None
    return store.get_subscription(sub.id), final


def active_due_at(n: int, due: datetime) -> Subscription:
    """An active subscription whose current period ends (falls due) at ``due``."""
    sub, _ = new_subscription(n, now=due - timedelta(days=30))
    return sub.model_copy(update={"status": Status.ACTIVE, "incomplete_expires_at": None, "current_period_end": due})


def cycle(sub: Subscription) -> tuple[Subscription, Invoice]:
    """The subscription moved to its next period and that period's draft invoice."""
    period = sub.next_period()
    return sub.with_period(period), build_subscription_invoice(sub, period, NOW, BillingReason.SUBSCRIPTION_CYCLE)


def next_number(store: Any, n: int) -> str | None:
    """Which number the next finalized invoice gets (it creates subscription ``n``)."""
    sub, draft = new_subscription(n)
    final = store.create_subscription(sub, draft, PREFIX)
    return final.number if final is not None else None


def invoice_for(cus: int, n: int, when: datetime, status: InvoiceStatus = InvoiceStatus.OPEN, **fields: Any) -> Invoice:
    """A loose invoice of customer ``cus`` created at ``when`` (stored with save_invoice)."""
    sub, draft = new_subscription(1000 + n, now=when, cus=cus)
    return draft.model_copy(update={"id": f"in_c{cus}_{n}", "status": status, **fields})


def credit_note(invoice: Invoice, sequence: int, amount: int = 100) -> CreditNote:
    assert invoice.number is not None
    return CreditNote(
        id=credit_note_id(invoice.id, sequence), number=credit_note_number(invoice.number, sequence),
        invoice=invoice.id, customer=invoice.customer, currency=invoice.currency, type=CreditNoteType.PRE_PAYMENT,
        lines=(CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, amount=amount, description="goodwill"),),
        total=amount, created=NOW,
    )  # fmt: skip


def card(exp_month: int = 6, exp_year: int = 2026) -> CardSummary:
    return CardSummary(payment_method_id="pm_c", brand="visa", last4="4242", exp_month=exp_month, exp_year=exp_year)


# ----------------------------------------------------------------------------- catalog


def test_products_and_prices_round_trip_and_are_written_once(store):
    store.put_product(product())
    store.put_price(price())

    assert store.get_product("prod_c0") == product()
    assert store.get_price("price_c0") == price()
    with pytest.raises(AlreadyExists):
        store.put_product(product().model_copy(update={"name": "Other"}))
    with pytest.raises(AlreadyExists):
        store.put_price(price().model_copy(update={"unit_amount": 1}))
    assert store.get_product("prod_c0").name == "Coffee club"  # the first write stands
    assert store.get_price("price_c0").unit_amount == 1500


def test_products_and_prices_are_listed_newest_first_with_a_cursor(store):
    for n in range(3):
        store.put_product(product(n, created=NOW + timedelta(minutes=n)))
        store.put_price(price(n, created=NOW + timedelta(minutes=n)))

    for listing, kind in ((store.list_products, "prod"), (store.list_prices, "price")):
        first = listing(2, None)
        assert [p.id for p in first.items] == [f"{kind}_c2", f"{kind}_c1"] and first.has_more
        rest = listing(2, first.items[-1].id)
        assert [p.id for p in rest.items] == [f"{kind}_c0"] and not rest.has_more
        assert not listing(10, None).has_more
    with pytest.raises(InvalidInput) as raised:  # a known object from another list
        store.list_products(2, "price_c0")
    assert raised.value.param == "starting_after"


@pytest.mark.parametrize(
    ("read", "param"),
    [
        (lambda s: s.get_product("prod_missing"), "product"),
        (lambda s: s.get_price("price_missing"), "price_id"),
        (lambda s: s.get_customer("cus_missing"), "customer_id"),
        (lambda s: s.get_subscription("sub_missing"), "subscription"),
        (lambda s: s.get_invoice("in_missing"), "invoice"),
        (lambda s: s.get_coupon("missing"), "coupon"),
        (lambda s: s.get_promotion_code("MISSING"), "promotion_code"),
        (lambda s: s.list_products(10, "prod_missing"), "starting_after"),
        (lambda s: s.list_customer_invoices("cus_c0", 10, "in_missing"), "starting_after"),
    ],
    ids=["product", "price", "customer", "subscription", "invoice", "coupon", "promotion_code", "cursor", "inv-cursor"],
)
def test_a_missing_object_is_not_found_naming_the_param(store, read, param):
    with pytest.raises(NotFound) as raised:
        read(store)
    assert raised.value.param == param
    assert "missing" in raised.value.message.lower()


def test_find_invoice_answers_none_for_a_missing_invoice(store):
    assert store.find_invoice("in_missing") is None


# ----------------------------------------------------------------------------- coupons


def test_coupons_and_promotion_codes_round_trip_and_are_written_once(store):
    coupon = Coupon(id="co_c", percent_off="25", duration=Duration.ONCE, max_redemptions=2, created=NOW)
    code = PromotionCode(id="promo_c", code="Spring-25", coupon=coupon)
    store.put_coupon(coupon)
    store.put_promotion_code(code)

    assert store.get_coupon("co_c") == coupon
    assert store.get_promotion_code("SPRING-25") == code  # codes are case-insensitive
    assert store.get_promotion_code("spring-25") == code
    with pytest.raises(AlreadyExists):
        store.put_coupon(coupon.model_copy(update={"name": "Other"}))
    with pytest.raises(AlreadyExists) as taken:
        store.put_promotion_code(code.model_copy(update={"id": "promo_other", "code": "SPRING-25"}))
    assert taken.value.param == "code"  # the 409 names the field


def test_a_redemption_is_counted_on_the_count_read(store):
    coupon = Coupon(id="co_c", percent_off="25", duration=Duration.ONCE, max_redemptions=2, created=NOW)
    code = PromotionCode(id="promo_c", code="SPRING", coupon=coupon)
    store.put_coupon(coupon)
    store.put_promotion_code(code)
    once = coupon.model_copy(update={"times_redeemed": 1})
    code_once = code.model_copy(update={"times_redeemed": 1})

    store.count_redemption(once, code_once)

    assert store.get_coupon("co_c").times_redeemed == 1
    assert store.get_promotion_code("SPRING").times_redeemed == 1
    with pytest.raises(Conflict):  # a racing checkout counted from the same read
        store.count_redemption(once, code_once)
    with pytest.raises(Conflict):  # the code's count is stale: the coupon is not counted either
        store.count_redemption(once.model_copy(update={"times_redeemed": 2}), code_once)
    assert store.get_coupon("co_c").times_redeemed == 1
    store.count_redemption(once.model_copy(update={"times_redeemed": 2}), None)
    assert store.get_coupon("co_c").times_redeemed == 2


def test_a_redemption_with_its_subscription_is_one_write(store):
    """``count_redemption`` with the subscription carrying the discount: both or neither."""
    store.create_customer(customer(0))
    sub, _ = created(store)
    coupon = Coupon(id="co_c", percent_off="25", duration=Duration.FOREVER, max_redemptions=5, created=NOW)
    code = PromotionCode(id="promo_c", code="SPRING", coupon=coupon)
    store.put_coupon(coupon)
    store.put_promotion_code(code)
    once = coupon.model_copy(update={"times_redeemed": 1})
    code_once = code.model_copy(update={"times_redeemed": 1, "coupon": once})
    discounted = sub.model_copy(update={"discount": {"id": "di_c", "coupon": once.model_dump(mode="json")}})

    saved = store.count_redemption(once, code_once, discounted)

    assert saved is not None and saved.version == sub.version + 1
    assert store.get_subscription(sub.id) == saved and saved.discount == discounted.discount
    assert store.get_coupon("co_c").times_redeemed == 1
    assert store.get_promotion_code("SPRING").times_redeemed == 1

    twice = once.model_copy(update={"times_redeemed": 2})
    with pytest.raises(Conflict):  # the subscription changed since it was read: nothing is counted
        store.count_redemption(twice, None, discounted)
    assert store.get_coupon("co_c").times_redeemed == 1
    assert store.get_subscription(sub.id) == saved
    with pytest.raises(Conflict):  # the coupon's count is stale: the subscription is not written
        store.count_redemption(once, None, saved.model_copy(update={"discount": None}))
    assert store.get_subscription(sub.id) == saved
    missing = saved.model_copy(update={"id": "sub_missing"})
    with pytest.raises(Conflict):  # only a stored subscription is written
        store.count_redemption(twice, None, missing)
    assert store.get_coupon("co_c").times_redeemed == 1
    with pytest.raises(NotFound):
        store.get_subscription("sub_missing")

    again = store.count_redemption(twice, None, saved.model_copy(update={"discount": None}))
    assert again is not None and again.version == saved.version + 1 and again.discount is None
    assert store.get_coupon("co_c").times_redeemed == 2
    assert store.get_promotion_code("SPRING").times_redeemed == 1


# ----------------------------------------------------------------------------- customers


def test_customers_round_trip_and_are_found_by_email_case_insensitively(store):
    ada = customer(email="Ada.Lovelace@Example.com")
    store.create_customer(ada)

    assert store.get_customer(ada.id) == ada
    assert store.find_customer_by_email(" ada.lovelace@EXAMPLE.com ") == ada
    assert store.find_customer_by_email("someone-else@example.com") is None


def test_a_second_customer_with_the_same_email_already_exists(store):
    first = customer(0, email="Dup@Example.com")
    store.create_customer(first)
    second = customer(1, email="  dup@example.com ")

    with pytest.raises(AlreadyExists) as raised:
        store.create_customer(second)

    assert raised.value.param == "customer.email"
    assert store.find_customer_by_email("DUP@example.com") == first
    with pytest.raises(NotFound):  # nothing of the second one was written
        store.get_customer(second.id)


def test_saving_a_customer_with_a_stale_version_is_a_conflict(store):
    original = customer()
    store.create_customer(original)
    saved = store.save_customer(original.model_copy(update={"default_payment_method": card(12, 2034)}))
    assert saved.version == original.version + 1
    assert store.get_customer(original.id) == saved

    with pytest.raises(Conflict) as raised:
        store.save_customer(original.model_copy(update={"name": "Lost update"}))

    assert not isinstance(raised.value, AlreadyExists)
    assert store.get_customer(original.id) == saved
    assert store.save_customer(saved.model_copy(update={"name": "Next"})).version == original.version + 2


def test_saving_a_subscription_with_a_stale_version_is_a_conflict(store):
    sub, _ = created(store)
    saved = store.save_subscription(sub.model_copy(update={"quantity": 2}))
    assert saved.version == sub.version + 1
    assert store.get_subscription(sub.id) == saved

    with pytest.raises(Conflict):
        store.save_subscription(sub.model_copy(update={"quantity": 3}))

    assert store.get_subscription(sub.id) == saved
    assert store.save_subscription(saved).version == sub.version + 2


def test_saving_an_invoice_with_a_stale_version_is_a_conflict(store):
    _, invoice = created(store)
    paid = store.save_invoice(invoice.transition(InvoiceStatus.PAID, NOW))
    assert paid.version == invoice.version + 1
    assert store.get_invoice(invoice.id) == paid

    with pytest.raises(Conflict):
        store.save_invoice(invoice.transition(InvoiceStatus.VOID, NOW))

    assert store.get_invoice(invoice.id) == paid
    assert store.find_invoice(invoice.id) == paid


# ----------------------------------------------------------------------------- create_subscription


def test_create_subscription_finalizes_its_invoice_with_the_next_gapless_number(store):
    sub, draft = new_subscription(0)

    final = store.create_subscription(sub, draft, PREFIX)

    assert final is not None
    assert final.number == f"{PREFIX}-0001" and final.status is InvoiceStatus.OPEN and final.finalized_at == NOW
    assert final == draft.finalize(f"{PREFIX}-0001", NOW)
    assert store.get_invoice(draft.id) == final
    assert store.get_subscription(sub.id) == sub
    assert next_number(store, 1) == f"{PREFIX}-0002"
    assert next_number(store, 2) == f"{PREFIX}-0003"


def test_create_subscription_without_an_invoice_takes_no_number(store):
    sub = active_due_at(0, NOW + timedelta(days=3))

    assert store.create_subscription(sub, None, PREFIX) is None

    assert store.get_subscription(sub.id) == sub
    assert next_number(store, 1) == f"{PREFIX}-0001"


def test_creating_the_same_subscription_twice_already_exists_and_takes_no_number(store):
    sub, draft = new_subscription(0)
    store.create_subscription(sub, draft, PREFIX)

    with pytest.raises(AlreadyExists):
        store.create_subscription(sub, draft, PREFIX)
    with pytest.raises(AlreadyExists):  # with another first invoice, too
        store.create_subscription(sub, draft.model_copy(update={"id": "in_other"}), PREFIX)

    assert store.find_invoice("in_other") is None
    assert next_number(store, 1) == f"{PREFIX}-0002"


def test_a_new_subscription_whose_first_invoice_exists_is_a_conflict_and_writes_nothing(store):
    _, first = created(store, 0)
    sub, _ = new_subscription(1)

    with pytest.raises(Conflict) as raised:
        store.create_subscription(sub, first.model_copy(update={"status": InvoiceStatus.DRAFT, "number": None}), PREFIX)

    assert not isinstance(raised.value, AlreadyExists)
    with pytest.raises(NotFound):
        store.get_subscription(sub.id)
    assert store.get_invoice(first.id) == first
    assert next_number(store, 2) == f"{PREFIX}-0002"


def test_create_subscription_stores_a_checkouts_open_invoice_unnumbered(store):
    sub, draft = new_subscription(0)
    opened = checkout_invoice(draft, NOW)

    final = store.create_subscription(sub, opened, PREFIX)

    assert final == opened and final is not None and final.number is None and final.status is InvoiceStatus.OPEN
    assert store.get_invoice(draft.id) == opened
    assert next_number(store, 1) == f"{PREFIX}-0001"  # the counter did not move


# ----------------------------------------------------------------------------- finalize_invoice


def test_finalize_invoice_numbers_and_saves_the_invoice_and_subscription_atomically(store):
    sub, draft = new_subscription(0)
    store.create_subscription(sub, checkout_invoice(draft, NOW), PREFIX)
    stored_sub = store.get_subscription(sub.id)
    paid = store.get_invoice(draft.id).transition(InvoiceStatus.PAID, NOW)
    active = stored_sub.transition(Status.ACTIVE, NOW)

    final, saved_sub = store.finalize_invoice(paid, PREFIX, active)

    assert final.number == f"{PREFIX}-0001" and final.status is InvoiceStatus.PAID
    assert final.version == paid.version + 1 and store.get_invoice(draft.id) == final
    assert saved_sub is not None and saved_sub.version == active.version + 1
    assert store.get_subscription(sub.id) == saved_sub
    assert next_number(store, 1) == f"{PREFIX}-0002"


def test_finalize_invoice_of_a_kept_draft_without_a_subscription(store):
    sub, draft = new_subscription(0)
    store.create_subscription(sub, None, PREFIX)
    kept = store.save_invoice(draft.model_copy(update={"keep_as_draft": True}))

    final, saved_sub = store.finalize_invoice(kept.opened(NOW), PREFIX)

    assert saved_sub is None
    assert (final.number, final.status, final.finalized_at, final.keep_as_draft) == (
        f"{PREFIX}-0001", InvoiceStatus.OPEN, NOW, False,
    )  # fmt: skip
    assert store.get_invoice(draft.id) == final


def test_finalize_invoice_with_a_stale_invoice_or_subscription_writes_nothing_and_takes_no_number(store):
    sub, draft = new_subscription(0)
    store.create_subscription(sub, checkout_invoice(draft, NOW), PREFIX)
    stored = store.get_invoice(draft.id)
    store.save_invoice(stored)  # a concurrent writer: the invoice moved on
    with pytest.raises(Conflict):
        store.finalize_invoice(stored.transition(InvoiceStatus.PAID, NOW), PREFIX)
    current = store.get_invoice(draft.id)
    stale_sub = store.get_subscription(sub.id)
    store.save_subscription(stale_sub)
    with pytest.raises(Conflict):
        store.finalize_invoice(current.transition(InvoiceStatus.PAID, NOW), PREFIX, stale_sub)

    assert store.get_invoice(draft.id) == current and current.number is None
    assert next_number(store, 1) == f"{PREFIX}-0001"


# ----------------------------------------------------------------------------- renew


def test_renew_numbers_a_draft_and_advances_the_subscription(store):
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)

    renewed, invoice = store.renew(moved, draft, PREFIX)

    assert invoice.number == f"{PREFIX}-0002" and invoice.status is InvoiceStatus.OPEN
    assert invoice == draft.finalize(f"{PREFIX}-0002", draft.created)
    assert renewed.version == active.version + 1 and renewed.latest_invoice == draft.id
    assert renewed.current_period_start == moved.current_period_start
    assert store.get_subscription(sub.id) == renewed
    assert store.get_invoice(draft.id) == invoice


@pytest.mark.parametrize("kind", ["keep_as_draft", "void"])
def test_renew_stores_a_kept_or_void_invoice_without_a_number(store, kind):
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)
    unnumbered = (
        draft.model_copy(update={"keep_as_draft": True})
        if kind == "keep_as_draft"
        else draft.transition(InvoiceStatus.VOID, NOW)
    )
    assert not unnumbered.gets_number_when_stored and draft.gets_number_when_stored

    renewed, invoice = store.renew(moved, unnumbered, PREFIX)

    assert invoice == unnumbered and invoice.number is None
    assert store.get_invoice(draft.id) == unnumbered
    assert renewed.latest_invoice == draft.id
    assert next_number(store, 1) == f"{PREFIX}-0002"  # the counter did not move


def test_renewing_the_same_period_twice_already_exists_and_the_counter_does_not_move(store):
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)
    renewed, _ = store.renew(moved, draft, PREFIX)

    with pytest.raises(AlreadyExists):  # a redelivered renewal, from the same (now stale) subscription …
        store.renew(moved, draft, PREFIX)
    with pytest.raises(AlreadyExists):  # … or from the current one
        store.renew(renewed, draft, PREFIX)

    assert store.get_subscription(sub.id) == renewed
    later, third = cycle(renewed)
    assert store.renew(later, third, PREFIX)[1].number == f"{PREFIX}-0003"  # no gap


def test_renewing_a_stale_subscription_is_a_conflict_and_writes_nothing(store):
    sub, _ = created(store)
    current = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(sub.transition(Status.ACTIVE, NOW))  # from the version before the save

    with pytest.raises(Conflict) as raised:
        store.renew(moved, draft, PREFIX)

    assert not isinstance(raised.value, AlreadyExists)
    assert store.get_subscription(sub.id) == current
    assert store.find_invoice(draft.id) is None
    assert next_number(store, 1) == f"{PREFIX}-0002"


def test_renew_saves_the_customer_passed_in_in_the_same_write(store):
    ada = customer()
    store.create_customer(ada)
    sub, _ = created(store)
    moved, draft = cycle(store.save_subscription(sub.transition(Status.ACTIVE, NOW)))
    credited = ada.model_copy(update={"balance": -500, "balance_currency": "EUR"})

    store.renew(moved, draft, PREFIX, credited)

    assert store.get_customer(ada.id) == credited.model_copy(update={"version": ada.version + 1})


def test_renewing_with_a_stale_customer_is_a_conflict_and_writes_nothing(store):
    ada = customer()
    store.create_customer(ada)
    current = store.save_customer(ada.model_copy(update={"name": "Changed meanwhile"}))
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)

    with pytest.raises(Conflict):
        store.renew(moved, draft, PREFIX, ada.model_copy(update={"balance": -500, "balance_currency": "EUR"}))

    assert store.get_customer(ada.id) == current
    assert store.get_subscription(sub.id) == active
    assert store.find_invoice(draft.id) is None
    assert next_number(store, 1) == f"{PREFIX}-0002"


# ----------------------------------------------------------------------------- settle


def test_saving_invoice_and_subscription_is_atomic(store):
    sub, invoice = created(store)
    stale_sub = sub
    store.save_subscription(stale_sub.model_copy(update={"quantity": 2}))
    paid = invoice.transition(InvoiceStatus.PAID, NOW)

    with pytest.raises(Conflict):  # the subscription is stale: the invoice is not written either
        store.save_invoice_and_subscription(paid, stale_sub.transition(Status.ACTIVE, NOW))
    assert store.get_invoice(invoice.id).status is InvoiceStatus.OPEN
    assert store.get_subscription(sub.id).status is Status.INCOMPLETE

    fresh = store.get_subscription(sub.id)
    store.save_invoice(invoice.model_copy(update={"attempt_count": 1}))
    with pytest.raises(Conflict):  # the invoice is stale: the subscription is not written either
        store.save_invoice_and_subscription(paid, fresh.transition(Status.ACTIVE, NOW))
    assert store.get_subscription(sub.id) == fresh

    current = store.get_invoice(invoice.id)
    inv2, sub2 = store.save_invoice_and_subscription(
        current.transition(InvoiceStatus.PAID, NOW), fresh.transition(Status.ACTIVE, NOW)
    )
    assert (inv2.version, sub2.version) == (current.version + 1, fresh.version + 1)
    assert store.get_invoice(invoice.id) == inv2 and store.get_subscription(sub.id) == sub2


def test_saving_an_invoice_without_a_subscription(store):
    _, invoice = created(store)

    saved, none = store.save_invoice_and_subscription(invoice.transition(InvoiceStatus.PAID, NOW), None)

    assert none is None and saved.version == invoice.version + 1
    assert store.get_invoice(invoice.id) == saved


# ----------------------------------------------------------------------------- listing


def test_customer_invoices_are_listed_newest_first_with_a_cursor(store):
    ids = []
    for n in range(3):
        inv = invoice_for(0, n, NOW + timedelta(minutes=n))
        store.save_invoice(inv)
        ids.append(inv.id)
    store.save_invoice(invoice_for(1, 0, NOW))  # another customer's
    newest_first = ids[::-1]

    page = store.list_customer_invoices("cus_c0", 2, None)
    assert [i.id for i in page.items] == newest_first[:2] and page.has_more
    rest = store.list_customer_invoices("cus_c0", 2, page.items[-1].id)
    assert [i.id for i in rest.items] == newest_first[2:] and not rest.has_more
    everything = store.list_customer_invoices("cus_c0", 3, None)
    assert [i.id for i in everything.items] == newest_first and not everything.has_more
    assert store.list_customer_invoices("cus_c0", 10, newest_first[-1]).items == []
    assert store.list_customer_invoices("cus_nobody", 10, None).items == []
    with pytest.raises(NotFound) as missing:
        store.list_customer_invoices("cus_c0", 2, "in_nope")
    assert missing.value.param == "starting_after"
    with pytest.raises(InvalidInput) as foreign:  # another customer's invoice is no cursor for this list
        store.list_customer_invoices("cus_c0", 2, "in_c1_0")
    assert foreign.value.param == "starting_after"


def test_lists_order_within_one_second_by_id(store):
    """The index keys hold whole seconds: objects created within one second are listed by id."""
    store.save_invoice(invoice_for(0, 1, NOW + timedelta(microseconds=900)))
    store.save_invoice(invoice_for(0, 2, NOW + timedelta(microseconds=100)))

    assert [i.id for i in store.list_customer_invoices("cus_c0", 10, None).items] == ["in_c0_2", "in_c0_1"]
    assert [i.id for i in store.list_open_invoices("cus_c0")] == ["in_c0_1", "in_c0_2"]


def test_customer_subscriptions_are_listed_newest_first(store):
    for n in range(3):
        created(store, n, now=NOW + timedelta(minutes=n))
    created(store, 3, cus=1)  # another customer's

    assert [s.id for s in store.list_customer_subscriptions("cus_c0")] == ["sub_c2", "sub_c1", "sub_c0"]
    assert store.list_customer_subscriptions("cus_c0")[0] == store.get_subscription("sub_c2")
    assert store.list_customer_subscriptions("cus_nobody") == []


def test_open_invoices_are_the_open_and_uncollectible_ones_oldest_first(store):
    statuses = [
        InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID, InvoiceStatus.OPEN, InvoiceStatus.VOID, InvoiceStatus.DRAFT,
    ]  # fmt: skip
    for n, status in enumerate(statuses):
        store.save_invoice(invoice_for(0, n, NOW + timedelta(hours=n), status))
    store.save_invoice(invoice_for(1, 9, NOW))  # another customer's

    assert [i.id for i in store.list_open_invoices("cus_c0")] == ["in_c0_0", "in_c0_2"]
    assert store.list_open_invoices("cus_c0")[1] == store.get_invoice("in_c0_2")
    assert store.list_open_invoices("cus_nobody") == []


def test_invoices_by_tax_date_are_the_finalized_ones_in_the_period(store):
    def taxed(n: int, tax_date: date, number: str | None = "X-1") -> Invoice:
        return invoice_for(0, n, NOW, number=number, tax_date=tax_date)

    store.save_invoice(taxed(1, date(2026, 3, 31)))
    store.save_invoice(taxed(2, date(2026, 2, 1)))
    store.save_invoice(taxed(3, date(2026, 2, 28)))
    store.save_invoice(taxed(4, date(2026, 1, 31)))  # before the period
    store.save_invoice(taxed(5, date(2026, 4, 1)))  # after it
    store.save_invoice(taxed(6, date(2026, 3, 1), number=None))  # not finalized

    found = store.invoices_by_tax_date(date(2026, 2, 1), date(2026, 3, 31))

    assert [i.id for i in found] == ["in_c0_2", "in_c0_3", "in_c0_1"]  # by tax date
    assert found[0] == store.get_invoice("in_c0_2")
    assert [i.id for i in store.invoices_by_tax_date(date(2026, 2, 28), date(2026, 2, 28))] == ["in_c0_3"]
    with pytest.raises(InvalidInput):
        store.invoices_by_tax_date(date(2026, 3, 1), date(2026, 2, 1))


# ----------------------------------------------------------------------------- due index


def test_the_due_index_finds_due_subscriptions_in_their_shard(store):
    due = active_due_at(1, NOW - timedelta(hours=2))
    later = active_due_at(2, NOW + timedelta(days=3))
    for s in (due, later):
        store.create_subscription(s, None, PREFIX)
    shard = shard_of(due.id)

    assert store.due_subscriptions(shard, NOW, 100) == [(due.id, NOW - timedelta(hours=2))]
    for other in set(range(SHARDS)) - {shard}:
        assert due.id not in [s for s, _ in store.due_subscriptions(other, NOW, 100)]
    later_shard = shard_of(later.id)
    assert later.id not in [s for s, _ in store.due_subscriptions(later_shard, NOW, 100)]
    assert later.id in [s for s, _ in store.due_subscriptions(later_shard, later.current_period_end, 100)]
    assert store.next_due_after(NOW) == NOW - timedelta(hours=2)  # the earliest entry, overdue ones included


def test_the_due_index_keys_on_whole_seconds(store):
    sub = active_due_at(1, NOW + timedelta(microseconds=700_000))
    store.create_subscription(sub, None, PREFIX)

    assert store.due_subscriptions(shard_of(sub.id), NOW, 10) == [(sub.id, NOW)]
    assert store.next_due_after(NOW) == NOW


def test_a_finished_subscription_leaves_the_due_index(store):
    sub = active_due_at(1, NOW - timedelta(days=1))
    store.create_subscription(sub, None, PREFIX)
    store.create_subscription(active_due_at(2, NOW + timedelta(days=9)), None, PREFIX)
    assert store.next_due_after(NOW) == NOW - timedelta(days=1)

    store.save_subscription(store.get_subscription(sub.id).transition(Status.CANCELED, NOW))

    assert sub.id not in [s for s, _ in store.due_subscriptions(shard_of(sub.id), NOW, 100)]
    assert store.next_due_after(NOW) == NOW + timedelta(days=9)


def test_due_subscriptions_are_oldest_first_up_to_the_limit(store):
    ids = []
    for n in range(24):
        s = active_due_at(n, NOW - timedelta(minutes=n + 1))
        store.create_subscription(s, None, PREFIX)
        ids.append(s.id)
    by_shard: dict[int, set[str]] = {}
    for i in ids:
        by_shard.setdefault(shard_of(i), set()).add(i)

    for shard in range(SHARDS):
        everything = store.due_subscriptions(shard, NOW, 1000)
        assert {s for s, _ in everything} == by_shard.get(shard, set())
        assert [d for _, d in everything] == sorted(d for _, d in everything)
        assert store.due_subscriptions(shard, NOW, 2) == everything[:2]


def test_an_empty_store_has_no_due_work(store):
    assert store.next_due_after(NOW) is None
    assert store.next_dunning_after(NOW) is None
    assert all(store.due_subscriptions(shard, NOW, 10) == [] for shard in range(SHARDS))
    assert all(store.due_dunning(shard, NOW, 10) == [] for shard in range(SHARDS))


# ----------------------------------------------------------------------------- dunning index


def test_the_dunning_index_holds_dunned_invoices_expiring_cards_and_timers(store):
    retry = NOW - timedelta(hours=1)
    store.save_invoice(invoice_for(0, 1, NOW, next_dunning_at=retry))
    store.save_invoice(invoice_for(0, 2, NOW, InvoiceStatus.UNCOLLECTIBLE, next_dunning_at=retry))
    store.save_invoice(invoice_for(0, 3, NOW, InvoiceStatus.PAID, next_dunning_at=retry))  # paid: not dunned
    store.save_invoice(invoice_for(0, 4, NOW))  # open, not being dunned
    store.save_invoice(invoice_for(0, 5, NOW, next_dunning_at=NOW + timedelta(days=2)))  # later
    ada = customer(0).model_copy(update={"default_payment_method": card(exp_month=4, exp_year=2026)})
    notice = card_expiry_notice_at(ada)
    assert notice is not None and notice < NOW
    store.create_customer(ada)
    store.create_customer(customer(1))  # no card
    store.put_timer("timer:win_back:sub_c9", NOW - timedelta(minutes=5))

    due = {entity: at for shard in range(SHARDS) for entity, at in store.due_dunning(shard, NOW, 100)}

    assert due == {
        "in_c0_1": retry,
        "in_c0_2": retry,
        "cus_c0": notice,
        "timer:win_back:sub_c9": NOW - timedelta(minutes=5),
    }
    for entity in due:
        assert entity in [e for e, _ in store.due_dunning(shard_of(entity), NOW, 100)]
    assert store.next_dunning_after(NOW) == notice  # the earliest entry
    later = [e for shard in range(SHARDS) for e, _ in store.due_dunning(shard, NOW + timedelta(days=2), 100)]
    assert "in_c0_5" in later


def test_entries_leave_the_dunning_index(store):
    dunned = store.save_invoice(invoice_for(0, 1, NOW, next_dunning_at=NOW - timedelta(hours=1)))
    ada = customer(0).model_copy(update={"default_payment_method": card(exp_month=4, exp_year=2026)})
    store.create_customer(ada)
    store.put_timer("timer:win_back:sub_c9", NOW - timedelta(days=9))
    store.put_timer("timer:win_back:sub_c9", NOW + timedelta(days=9))  # moved: one entry per key

    def due() -> set[str]:
        return {entity for shard in range(SHARDS) for entity, _ in store.due_dunning(shard, NOW, 100)}

    assert due() == {"in_c0_1", "cus_c0"}
    assert store.next_dunning_after(NOW) == card_expiry_notice_at(ada)

    store.save_invoice(dunned.transition(InvoiceStatus.PAID, NOW))
    store.save_customer(ada.model_copy(update={"card_expiring_notified": "pm_c:2026-04"}))
    assert due() == set()
    assert store.next_dunning_after(NOW) == NOW + timedelta(days=9)

    store.delete_timer("timer:win_back:sub_c9")
    store.delete_timer("timer:never_set")  # deleting an unknown timer is fine
    assert store.next_dunning_after(NOW) is None


def test_due_dunning_respects_the_limit_oldest_first(store):
    for n in range(12):
        store.put_timer(f"timer:t:{n:02d}", NOW - timedelta(minutes=n))
    for shard in range(SHARDS):
        everything = store.due_dunning(shard, NOW, 100)
        assert [at for _, at in everything] == sorted(at for _, at in everything)
        assert store.due_dunning(shard, NOW, 1) == everything[:1]
    assert sum(len(store.due_dunning(shard, NOW, 100)) for shard in range(SHARDS)) == 12


# ----------------------------------------------------------------------------- credit notes


def test_a_credit_note_is_issued_once_and_notes_are_listed_in_order(store):
    ada = customer()
    store.create_customer(ada)
    _, invoice = created(store)
    first = credit_note(invoice, 1, amount=100)

    credited = store.issue_credit_note(first, invoice, None)

    assert credited.version == invoice.version + 1 and store.get_invoice(invoice.id) == credited
    with pytest.raises(Conflict):  # the same note again (a retried request)
        store.issue_credit_note(first, credited, None)
    assert store.get_invoice(invoice.id) == credited
    second = credit_note(invoice, 2, amount=200)
    with_balance = ada.model_copy(update={"balance": -200, "balance_currency": "EUR"})
    again = store.issue_credit_note(second, credited, with_balance)
    assert store.get_customer(ada.id) == with_balance.model_copy(update={"version": ada.version + 1})
    assert store.get_invoice(invoice.id) == again
    assert store.list_credit_notes(invoice.id) == [first, second]
    assert store.list_credit_notes("in_other") == []


def test_credit_notes_by_tax_date_are_the_notes_of_the_period_apart_from_the_invoices(store):
    store.create_customer(customer())
    _, invoice = created(store)
    dated = [date(2026, 3, 31), date(2026, 2, 1), date(2026, 4, 1), None]  # the last: stored before notes had one
    current = invoice
    for sequence, tax_date in enumerate(dated, start=1):
        note = credit_note(invoice, sequence).model_copy(update={"tax_date": tax_date})
        current = store.issue_credit_note(note, current, None)
    store.save_invoice(invoice_for(0, 1, NOW, number="X-1", tax_date=date(2026, 2, 1)))

    found = store.credit_notes_by_tax_date(date(2026, 2, 1), date(2026, 3, 31))

    assert [n.tax_date for n in found] == [date(2026, 2, 1), date(2026, 3, 31)]  # by tax date
    listed = store.list_credit_notes(invoice.id)  # by number: the notes dated 2026-03-31, 2026-02-01, …
    assert found == [listed[1], listed[0]]
    assert [i.id for i in store.invoices_by_tax_date(date(2026, 2, 1), date(2026, 3, 31))] == ["in_c0_1"]
    assert store.credit_notes_by_tax_date(date(2026, 1, 1), date(2026, 1, 31)) == []
    with pytest.raises(InvalidInput):
        store.credit_notes_by_tax_date(date(2026, 3, 1), date(2026, 2, 1))


def test_a_credit_note_on_a_stale_invoice_or_customer_writes_nothing(store):
    ada = customer()
    store.create_customer(ada)
    _, invoice = created(store)
    current = store.save_invoice(invoice.model_copy(update={"attempt_count": 1}))

    with pytest.raises(Conflict):
        store.issue_credit_note(credit_note(invoice, 1), invoice, None)
    changed = store.save_customer(ada.model_copy(update={"name": "Changed meanwhile"}))
    with pytest.raises(Conflict):
        store.issue_credit_note(credit_note(invoice, 1), current, ada.model_copy(update={"balance": -100}))

    assert store.list_credit_notes(invoice.id) == []
    assert store.get_invoice(invoice.id) == current
    assert store.get_customer(ada.id) == changed


# ----------------------------------------------------------------------------- settings


def test_settings_default_until_stored_and_round_trip(store):
    assert store.get_settings() == MerchantSettings()

    settings = MerchantSettings(seller_name="Kaffeehaus GmbH", invoice_prefix="KAFFEE", default_currency="CHF")
    store.put_settings(settings)
    assert store.get_settings() == settings

    store.put_settings(settings.model_copy(update={"seller_name": "Kaffeehaus AG"}))
    assert store.get_settings().seller_name == "Kaffeehaus AG"


# ----------------------------------------------------------------------------- webhook events


def _record(event_id: str, status: str = "received", payload: str = '{"id": "x"}', note: str | None = None):
    return WebhookRecord(
        id=event_id, type="customer.created", status=status, payload=payload, received_at=NOW, note=note
    )


def test_record_webhook_stores_an_event_once(store):
    first = _record("evt_c1", payload='{"first": true}', note="received first")

    assert store.record_webhook(first) is None
    again = store.record_webhook(_record("evt_c1", status="processed", payload='{"second": true}'))

    assert again == first
    assert store.get_webhook("evt_c1") == first
    assert store.get_webhook("evt_unknown") is None


def test_a_webhook_record_keeps_its_time_in_whole_seconds(store):
    store.record_webhook(replace(_record("evt_c1"), received_at=NOW + timedelta(microseconds=5)))

    stored = store.get_webhook("evt_c1")
    assert stored is not None and stored.received_at == NOW


def test_mark_webhook_sets_the_final_status_once(store):
    store.record_webhook(_record("evt_c1", note="first"))

    assert store.mark_webhook("evt_c1", "ignored") is True  # not final: the note stays
    assert store.get_webhook("evt_c1").note == "first"
    assert store.mark_webhook("evt_c1", "processed", "applied") is True
    assert store.mark_webhook("evt_c1", "processed", "again") is False
    assert store.mark_webhook("evt_c1", "ignored", "late") is False

    stored = store.get_webhook("evt_c1")
    assert stored is not None and (stored.status, stored.note) == ("processed", "applied")
    assert stored.payload == '{"id": "x"}'
    assert store.mark_webhook("evt_unknown", "processed") is False  # nothing is created
    assert store.get_webhook("evt_unknown") is None


def test_a_webhook_note_is_cut_at_1000_characters(store):
    store.record_webhook(_record("evt_c1"))

    store.mark_webhook("evt_c1", "rejected", "x" * 1500)

    stored = store.get_webhook("evt_c1")
    assert stored is not None and stored.note == "x" * 1000


def test_a_webhook_record_of_a_large_payload_keeps_only_its_file_key(store):
    pointer = replace(_record("evt_c1", payload=""), payload_key="webhooks/evt_c1.json")

    assert store.record_webhook(pointer) is None
    store.mark_webhook("evt_c1", "processed", "applied")

    stored = store.get_webhook("evt_c1")
    assert stored is not None and (stored.payload, stored.payload_key) == ("", "webhooks/evt_c1.json")
    assert stored.status == "processed"
    store.record_webhook(_record("evt_c2"))
    assert store.get_webhook("evt_c2").payload_key is None


# ----------------------------------------------------------------------------- payments (docs/payments.md)


def test_a_paid_invoice_is_found_by_its_payment_intent_with_its_refunds_and_disputes(store, uid):
    from kassa.domain.payments import InvoiceDispute, InvoiceRefund

    _, invoice = created(store)
    intent = f"pi_contract_{uid}"
    assert store.find_invoice_by_payment_intent(intent) is None
    opened = store.save_invoice(invoice.model_copy(update={"payment_intent": intent}))
    assert store.find_invoice_by_payment_intent(intent) is None  # only paid invoices are found by their payment
    paid = store.save_invoice(
        opened.transition(InvoiceStatus.PAID, NOW).model_copy(
            update={
                "refunds": [InvoiceRefund(id="re_1", amount=100, currency=invoice.currency, source="stripe")],
                "amount_refunded": 100,
                "disputes": [
                    InvoiceDispute(id="dp_1", amount=50, currency=invoice.currency, status="lost", amount_lost=50)
                ],  # fmt: skip
            }
        )
    )
    found = store.find_invoice_by_payment_intent(intent)
    assert found == paid and found.refunds[0].id == "re_1" and found.disputes[0].amount_lost == 50
    assert store.find_invoice_by_payment_intent(f"pi_other_{uid}") is None


def test_claim_once_lets_the_first_caller_through_only(store):
    """The portal's once-only markers (a session link exchanged, a retention offer made)."""
    assert store.claim_once("portal_session:bps_1", NOW + timedelta(days=1)) is True
    assert store.claim_once("portal_session:bps_1", NOW + timedelta(days=2)) is False
    assert store.claim_once("portal_session:bps_2", NOW + timedelta(days=1)) is True


def test_is_claimed_reads_a_claim_without_making_one(store):
    """A portal session signed out, a retention offer shown: read without claiming."""
    assert store.is_claimed("portal_signed_out:bps_3") is False
    assert store.is_claimed("portal_signed_out:bps_3") is False  # reading claims nothing
    assert store.claim_once("portal_signed_out:bps_3", NOW + timedelta(days=1)) is True
    assert store.is_claimed("portal_signed_out:bps_3") is True
    assert store.is_claimed("portal_signed_out:bps_4") is False


def test_a_released_claim_can_be_claimed_again(store):
    """The retention offer's answer, when applying its coupon failed: released, the offer stands."""
    assert store.claim_once("portal_retention_answered:sub_5", NOW + timedelta(days=1)) is True
    store.release_claim("portal_retention_answered:sub_5")
    assert store.is_claimed("portal_retention_answered:sub_5") is False
    assert store.claim_once("portal_retention_answered:sub_5", NOW + timedelta(days=1)) is True
    store.release_claim("portal_retention_answered:sub_6")  # none: nothing
