"""``get_credit_note``: a credit note by its id alone (documents are asked for by note id), in both stores."""

from __future__ import annotations

import pytest

from contract.test_store_contract import created, credit_note, customer
from kassa.domain.errors import NotFound


def test_a_credit_note_is_found_by_its_id(store):
    store.create_customer(customer())
    _, invoice = created(store)
    first, second = credit_note(invoice, 1, amount=100), credit_note(invoice, 2, amount=50)
    credited = store.issue_credit_note(first, invoice, None)
    store.issue_credit_note(second, credited, None)

    assert store.get_credit_note(first.id) == first
    assert store.get_credit_note(second.id) == second


def test_an_unknown_credit_note_is_not_found_naming_credit_note(store):
    with pytest.raises(NotFound) as missing:
        store.get_credit_note("cn_missing")
    assert missing.value.param == "credit_note"
