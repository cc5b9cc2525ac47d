"""The list filters the dashboard reads, checked by kassa.services.listing before any store read:
``name`` on customers, ``subscription``, ``price`` and ``total[gte|lte]`` on invoices."""

from __future__ import annotations

import pytest

from kassa.adapters.memory import MemoryStore
from kassa.domain.errors import InvalidInput
from kassa.services import listing


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"total[gte]": "12.50"}, "total[gte]"),
        ({"total[lte]": "-5"}, "total[lte]"),
        ({"total[gte]": "²"}, "total[gte]"),  # a digit to str.isdigit, not a number
        ({"total[gte]": "9" * 5000}, "total[gte]"),
        ({"total[gte]": "500", "total[lte]": "499"}, "total[gte]"),
        ({"subscription": "  "}, "subscription"),
        ({"price": ""}, "price"),
    ],
)
def test_a_bad_invoice_filter_is_refused_naming_it(params, param):
    with pytest.raises(InvalidInput) as refused:
        listing.list_invoices(MemoryStore(), params, 10)
    assert refused.value.param == param


def test_the_filters_reach_the_store_query():
    seen = []

    class Recording(MemoryStore):
        def list_invoices(self, query):  # type: ignore[no-untyped-def]
            seen.append(query)
            return super().list_invoices(query)

        def list_customers(self, query):  # type: ignore[no-untyped-def]
            seen.append(query)
            return super().list_customers(query)

    store = Recording()
    params = {"subscription": "sub_1", "price": "price_1", "total[gte]": "0", "total[lte]": "2500"}
    listing.list_invoices(store, params, 10)
    listing.list_customers(store, {"name": " Ada "}, 10)

    invoices, customers = seen
    assert (invoices.subscription, invoices.price, invoices.total_gte, invoices.total_lte) == (
        "sub_1",
        "price_1",
        0,
        2500,
    )
    assert customers.name == "Ada"
    with pytest.raises(InvalidInput) as empty:
        listing.list_customers(store, {"name": ""}, 10)
    assert empty.value.param == "name"
