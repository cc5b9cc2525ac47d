"""The BillingStore contract for merchant-wide listings (``list_customers``, ``list_subscriptions``,
``list_invoices`` over a ``ListQuery``), run on MemoryStore and on DynamoStore over a private moto
table (the ``store`` fixture of conftest.py): pages across pages both ways, each filter, combinations,
nothing matching, ordering ties, cursors, and (DynamoDB) the one-time backfill of items stored before
the listing index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from contract.test_store_contract import NOW, PREFIX, created, customer, cycle, price
from kassa.adapters.dynamodb import DynamoStore
from kassa.domain.discounts import Coupon, Duration
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.invoice import BillingReason, InvoiceStatus, build_subscription_invoice
from kassa.domain.subscription import Status, start_subscription
from kassa.services.ports import ListQuery

MINUTE = timedelta(minutes=1)


def ids(page: Any) -> list[str]:
    return [m.id for m in page.items]


def customers(store: Any, count: int, step: timedelta = MINUTE) -> list[str]:
    for n in range(count):
        store.create_customer(customer(n, created=NOW + n * step))
    return [f"cus_c{n}" for n in range(count)]


def two_item_subscription(store: Any, n: int, prices: tuple[int, ...], cus: int = 0) -> Any:
    sub = start_subscription(
        customer=f"cus_c{cus}", items=[(price(p), 1) for p in prices], now=NOW + n * MINUTE, subscription_id=f"sub_c{n}"
    )
    invoice = build_subscription_invoice(sub, sub.period, sub.created, BillingReason.SUBSCRIPTION_CREATE, "Coffee")
    store.create_subscription(sub.model_copy(update={"latest_invoice": invoice.id}), invoice, PREFIX)
    return store.get_subscription(sub.id)


# ----------------------------------------------------------------------------- pagination and order


def test_customers_page_newest_first_across_pages_and_back(store):
    customers(store, 5)

    first = store.list_customers(ListQuery(limit=2))
    second = store.list_customers(ListQuery(limit=2, starting_after=first.items[-1].id))
    third = store.list_customers(ListQuery(limit=2, starting_after=second.items[-1].id))

    assert (ids(first), first.has_more) == (["cus_c4", "cus_c3"], True)
    assert (ids(second), second.has_more) == (["cus_c2", "cus_c1"], True)
    assert (ids(third), third.has_more) == (["cus_c0"], False)
    back = store.list_customers(ListQuery(limit=2, ending_before="cus_c1"))
    assert (ids(back), back.has_more) == (["cus_c3", "cus_c2"], True)
    assert ids(store.list_customers(ListQuery(limit=2, ending_before="cus_c3"))) == ["cus_c4"]
    assert store.list_customers(ListQuery(limit=2, ending_before="cus_c3")).has_more is False


def test_objects_created_in_the_same_second_are_ordered_by_id_descending(store):
    customers(store, 4, step=timedelta(0))

    first = store.list_customers(ListQuery(limit=3))
    rest = store.list_customers(ListQuery(limit=3, starting_after=first.items[-1].id))

    assert ids(first) + ids(rest) == ["cus_c3", "cus_c2", "cus_c1", "cus_c0"] and not rest.has_more


def test_a_cursor_must_be_a_stored_object_of_the_listed_kind(store):
    customers(store, 1)

    with pytest.raises(NotFound) as missing:
        store.list_customers(ListQuery(starting_after="cus_nothere"))
    with pytest.raises(InvalidInput) as wrong_kind:
        store.list_subscriptions(ListQuery(starting_after="cus_c0"))

    assert missing.value.param == "starting_after" and wrong_kind.value.param == "starting_after"


# ----------------------------------------------------------------------------- customers


def test_customers_by_email_match_exactly_ignoring_case(store):
    customers(store, 3)

    found = store.list_customers(ListQuery(email="CONTRACT-1@example.com"))

    assert ids(found) == ["cus_c1"] and not found.has_more
    assert ids(store.list_customers(ListQuery(email="contract-1@example"))) == []
    assert ids(store.list_customers(ListQuery(email="nobody@example.com"))) == []


def test_customers_by_creation_time(store):
    customers(store, 5)

    window = ListQuery(created_gte=NOW + MINUTE, created_lte=NOW + 3 * MINUTE, limit=2)
    first = store.list_customers(window)
    second = store.list_customers(ListQuery(**{**window.__dict__, "starting_after": "cus_c2"}))

    assert (ids(first), first.has_more) == (["cus_c3", "cus_c2"], True)
    assert (ids(second), second.has_more) == (["cus_c1"], False)
    assert ids(store.list_customers(ListQuery(created_gte=NOW + timedelta(days=1)))) == []


# ----------------------------------------------------------------------------- subscriptions


def _statuses(store: Any) -> None:
    """sub_c0 incomplete, sub_c1 active, sub_c2 canceled, sub_c3 active, sub_c4 past_due."""
    store.create_customer(customer(0))
    for n in range(5):
        created(store, n, NOW + n * MINUTE)
    for n, target in ((1, Status.ACTIVE), (2, Status.CANCELED), (3, Status.ACTIVE), (4, Status.ACTIVE)):
        store.save_subscription(store.get_subscription(f"sub_c{n}").transition(target, NOW))
    store.save_subscription(store.get_subscription("sub_c4").transition(Status.PAST_DUE, NOW))


def test_subscriptions_by_status_across_pages(store):
    _statuses(store)

    every = store.list_subscriptions(ListQuery(limit=10))
    active = store.list_subscriptions(ListQuery(statuses=frozenset({"active"}), limit=1))
    more = store.list_subscriptions(ListQuery(statuses=frozenset({"active"}), limit=1, starting_after="sub_c3"))
    live = store.list_subscriptions(
        ListQuery(statuses=frozenset({"active", "past_due", "incomplete"}), limit=2, starting_after="sub_c4")
    )

    assert ids(every) == ["sub_c4", "sub_c3", "sub_c2", "sub_c1", "sub_c0"] and not every.has_more
    assert (ids(active), active.has_more, ids(more), more.has_more) == (["sub_c3"], True, ["sub_c1"], False)
    assert (ids(live), live.has_more) == (["sub_c3", "sub_c1"], True)
    assert ids(store.list_subscriptions(ListQuery(statuses=frozenset({"unpaid"})))) == []
    # the cursor is a position: it need not match the filter (sub_c2 is canceled)
    after_canceled = store.list_subscriptions(ListQuery(statuses=frozenset({"active"}), starting_after="sub_c2"))
    assert ids(after_canceled) == ["sub_c1"]


def test_subscriptions_by_price_follow_their_items(store):
    store.create_customer(customer(0))
    two_item_subscription(store, 0, (1, 2))
    two_item_subscription(store, 1, (1,))
    two_item_subscription(store, 2, (2, 3))

    assert ids(store.list_subscriptions(ListQuery(price="price_c2"))) == ["sub_c2", "sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c1", limit=1))) == ["sub_c1"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c9"))) == []

    sub = store.get_subscription("sub_c0")  # price_c2 is replaced by price_c4
    changed = sub.model_copy(update={"items": [sub.items[0], sub.items[1].model_copy(update={"price": "price_c4"})]})
    saved = store.save_subscription(changed)

    assert ids(store.list_subscriptions(ListQuery(price="price_c2"))) == ["sub_c2"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c4"))) == ["sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c1"))) == ["sub_c1", "sub_c0"]
    # the next write with the same prices keeps them listed
    store.save_subscription(saved.transition(Status.ACTIVE, NOW))
    assert ids(store.list_subscriptions(ListQuery(price="price_c4", statuses=frozenset({"active"})))) == ["sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c4", statuses=frozenset({"incomplete"})))) == []


def test_a_renewal_with_a_scheduled_price_change_moves_the_price_listing(store):
    store.create_customer(customer(0))
    sub, _ = created(store)
    active = store.save_subscription(sub.transition(Status.ACTIVE, NOW))
    moved, draft = cycle(active)
    switched = moved.model_copy(update={"items": [moved.items[0].model_copy(update={"price": "price_c7"})]})

    store.renew(switched, draft, PREFIX)

    assert ids(store.list_subscriptions(ListQuery(price="price_c7"))) == ["sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c0"))) == []


def test_subscriptions_of_a_customer_combined_with_status_and_price(store):
    store.create_customer(customer(0))
    store.create_customer(customer(1))
    two_item_subscription(store, 0, (1,), cus=0)
    two_item_subscription(store, 1, (1, 2), cus=1)
    two_item_subscription(store, 2, (2,), cus=1)
    store.save_subscription(store.get_subscription("sub_c2").transition(Status.ACTIVE, NOW))

    mine = ListQuery(customer="cus_c1")
    assert ids(store.list_subscriptions(mine)) == ["sub_c2", "sub_c1"]
    assert ids(store.list_subscriptions(ListQuery(customer="cus_c1", price="price_c1"))) == ["sub_c1"]
    assert ids(store.list_subscriptions(ListQuery(customer="cus_c1", statuses=frozenset({"active"})))) == ["sub_c2"]
    assert ids(store.list_subscriptions(ListQuery(customer="cus_c0", price="price_c2"))) == []
    assert ids(store.list_subscriptions(ListQuery(customer="cus_nobody"))) == []
    page = store.list_subscriptions(ListQuery(customer="cus_c1", limit=1))
    assert (ids(page), page.has_more) == (["sub_c2"], True)


# ----------------------------------------------------------------------------- invoices


def _invoices(store: Any) -> None:
    """Invoices of sub_c0..3 (cus_c0, cus_c1, cus_c0, cus_c1), one a minute; the second one paid."""
    for c in range(2):
        store.create_customer(customer(c))
    for n in range(4):
        created(store, n, NOW + n * MINUTE, cus=n % 2)
    paid = store.list_invoices(ListQuery(customer="cus_c1", limit=1, starting_after=None)).items[0]
    assert paid.subscription == "sub_c3"
    store.save_invoice(paid.model_copy(update={"status": InvoiceStatus.PAID, "amount_paid": paid.amount_due}))


def test_invoices_by_status_customer_and_creation_time(store):
    _invoices(store)
    subs = lambda page: [i.subscription for i in page.items]  # noqa: E731

    every = store.list_invoices(ListQuery(limit=3))
    assert (subs(every), every.has_more) == (["sub_c3", "sub_c2", "sub_c1"], True)
    rest = store.list_invoices(ListQuery(limit=3, starting_after=every.items[-1].id))
    assert (subs(rest), rest.has_more) == (["sub_c0"], False)
    assert subs(store.list_invoices(ListQuery(statuses=frozenset({"open"})))) == ["sub_c2", "sub_c1", "sub_c0"]
    assert subs(store.list_invoices(ListQuery(statuses=frozenset({"paid"})))) == ["sub_c3"]
    assert subs(store.list_invoices(ListQuery(customer="cus_c1", statuses=frozenset({"open"})))) == ["sub_c1"]
    window = ListQuery(created_gte=NOW + MINUTE, created_lte=NOW + 2 * MINUTE)
    assert subs(store.list_invoices(window)) == ["sub_c2", "sub_c1"]
    both = ListQuery(customer="cus_c0", created_gte=NOW + MINUTE, statuses=frozenset({"open"}))
    assert subs(store.list_invoices(both)) == ["sub_c2"]
    assert subs(store.list_invoices(ListQuery(statuses=frozenset({"void"})))) == []
    assert subs(store.list_invoices(ListQuery(created_lte=NOW - MINUTE))) == []


# ----------------------------------------------------------------------------- items stored before the index


def test_items_stored_before_the_listing_index_are_listed_after_the_backfill(store):
    if not isinstance(store, DynamoStore):
        pytest.skip("the index attributes are DynamoDB's")
    store.create_customer(customer(0))
    two_item_subscription(store, 0, (1, 2))
    db, table = store._db, store._table
    for pk, sk in (("CUS#cus_c0", "CUSTOMER"), ("SUB#sub_c0", "SUBSCRIPTION")):  # as stored before
        db.update_item(
            TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, UpdateExpression="REMOVE gsi4pk, gsi4sk, ph"
        )
    for p in (1, 2):
        db.delete_item(TableName=table, Key={"pk": {"S": "SUB#sub_c0"}, "sk": {"S": f"PRICE#price_c{p}"}})
    invoice = store.list_invoices(ListQuery()).items[0]
    db.update_item(TableName=table, Key={"pk": {"S": f"INV#{invoice.id}"}, "sk": {"S": "INVOICE"}},
                   UpdateExpression="REMOVE gsi4pk, gsi4sk")  # fmt: skip
    assert ids(store.list_customers(ListQuery())) == []
    assert ids(store.list_subscriptions(ListQuery(price="price_c1"))) == []

    assert store.backfill_list_index() == 3
    assert store.backfill_list_index() == 0

    assert ids(store.list_customers(ListQuery())) == ["cus_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c2"))) == ["sub_c0"]
    assert ids(store.list_invoices(ListQuery(statuses=frozenset({"open"})))) == [invoice.id]


def _stored_before_price_entries(store):
    """A two-item subscription as stored before price entries existed (no ``ph``, no PRICE# items)."""
    if not isinstance(store, DynamoStore):
        pytest.skip("the index attributes are DynamoDB's")
    store.create_customer(customer(0))
    sub = two_item_subscription(store, 0, (1, 2))
    db, table = store._db, store._table
    db.update_item(TableName=table, Key={"pk": {"S": "SUB#sub_c0"}, "sk": {"S": "SUBSCRIPTION"}},
                   UpdateExpression="REMOVE ph")  # fmt: skip
    for p in (1, 2):
        db.delete_item(TableName=table, Key={"pk": {"S": "SUB#sub_c0"}, "sk": {"S": f"PRICE#price_c{p}"}})
    return sub


def test_a_subscription_stored_before_price_entries_gets_them_on_its_next_write(store):
    sub = _stored_before_price_entries(store)

    store.save_subscription(sub.transition(Status.ACTIVE, NOW))

    assert ids(store.list_subscriptions(ListQuery(price="price_c1"))) == ["sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c2"))) == ["sub_c0"]


def test_a_subscription_stored_before_price_entries_gets_them_with_a_redemption(store):
    sub = _stored_before_price_entries(store)
    coupon = Coupon(id="co_l", percent_off="10", duration=Duration.FOREVER, created=NOW)
    store.put_coupon(coupon)

    counted = coupon.model_copy(update={"times_redeemed": 1})
    discounted = sub.model_copy(update={"discount": {"coupon": counted.model_dump(mode="json")}})
    store.count_redemption(counted, None, discounted)

    assert store.get_coupon("co_l").times_redeemed == 1
    assert store.get_subscription("sub_c0").discount is not None
    assert ids(store.list_subscriptions(ListQuery(price="price_c1"))) == ["sub_c0"]
    assert ids(store.list_subscriptions(ListQuery(price="price_c2"))) == ["sub_c0"]
    with pytest.raises(Conflict):  # a stale read still conflicts (the entries are not what failed)
        store.count_redemption(counted.model_copy(update={"times_redeemed": 2}), None, sub)
    assert store.get_coupon("co_l").times_redeemed == 1


# ----------------------------------------------------------------------------- the dashboard's search and filters


def test_customers_by_a_part_of_the_name_case_insensitive_across_pages(store):
    names = ["Ada Lovelace", "Grace Hopper", "ada king", "Alan Turing", "Adalbert Stifter"]
    for n, name in enumerate(names):
        store.create_customer(customer(n, created=NOW + n * MINUTE).model_copy(update={"name": name}))

    first = store.list_customers(ListQuery(name="ADA", limit=2))
    rest = store.list_customers(ListQuery(name="ADA", limit=2, starting_after=first.items[-1].id))

    assert (ids(first), first.has_more) == (["cus_c4", "cus_c2"], True)
    assert (ids(rest), rest.has_more) == (["cus_c0"], False)
    assert ids(store.list_customers(ListQuery(name="hopp"))) == ["cus_c1"]
    assert ids(store.list_customers(ListQuery(name="Nobody"))) == []
    both = ListQuery(name="ada", email="contract-2@example.com")
    assert ids(store.list_customers(both)) == ["cus_c2"]


def test_invoices_by_subscription_price_and_total(store):
    _invoices(store)
    subs = lambda page: [i.subscription for i in page.items]  # noqa: E731
    total = store.list_invoices(ListQuery(limit=1)).items[0].total
    assert total > 0

    assert subs(store.list_invoices(ListQuery(subscription="sub_c2"))) == ["sub_c2"]
    assert subs(store.list_invoices(ListQuery(price="price_c0", limit=2))) == ["sub_c3", "sub_c2"]
    assert subs(store.list_invoices(ListQuery(price="price_other"))) == []
    assert len(store.list_invoices(ListQuery(total_gte=total, total_lte=total)).items) == 4
    assert store.list_invoices(ListQuery(total_gte=total + 1)).items == []
    assert store.list_invoices(ListQuery(total_lte=total - 1)).items == []
    paid = ListQuery(statuses=frozenset({"paid"}), total_gte=total, price="price_c0")
    assert subs(store.list_invoices(paid)) == ["sub_c3"]
