"""Customer credit balance: applying it to invoices and folding its ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kassa.domain.balance import (
    BalanceTransactionType,
    CustomerBalanceTransaction,
    adjustment,
    apply_balance,
    ledger_balance,
    running_balances,
    unique_transactions,
)
from kassa.domain.errors import Conflict, CurrencyMismatch, InvalidInput
from kassa.domain.money import Money

NOW = datetime(2025, 4, 1, tzinfo=UTC)
T = BalanceTransactionType


def eur(amount: int) -> Money:
    return Money(amount, "EUR")


def entry(id: str, amount: int, currency: str = "EUR", customer: str = "cus_1") -> CustomerBalanceTransaction:
    return CustomerBalanceTransaction(
        id=id, customer=customer, amount=amount, currency=currency, type=T.ADJUSTMENT, created=NOW
    )


@pytest.mark.parametrize(
    ("total", "balance", "due", "after", "applied"),
    [
        (1000, -300, 700, 0, 300),  # credit consumed
        (200, -500, 0, -300, 200),  # credit partly consumed, the rest kept
        (-500, 0, 0, -500, -500),  # negative total (prorations): the excess becomes credit
        (-500, -100, 0, -600, -500),
        (1000, 200, 1200, 0, -200),  # a positive balance is owed: added to the invoice
        (-300, 100, 0, -200, -300),
        (0, 0, 0, 0, 0),
    ],
)
def test_apply_balance(total: int, balance: int, due: int, after: int, applied: int) -> None:
    amount_due, balance_after, moved = apply_balance(eur(total), eur(balance))
    assert (amount_due, balance_after, moved) == (eur(due), eur(after), eur(applied))
    assert total + balance == due + after  # nothing created, nothing lost


def test_apply_balance_refuses_mixed_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        apply_balance(eur(100), Money(-100, "USD"))


def test_ledger_refuses_mixed_currencies_and_customers() -> None:
    with pytest.raises(CurrencyMismatch):
        ledger_balance([entry("a", -100), entry("b", -100, "USD")])
    with pytest.raises(CurrencyMismatch):
        ledger_balance([entry("a", -100)], currency="JPY")
    with pytest.raises(InvalidInput) as error:
        ledger_balance([entry("a", -100), entry("b", -100, customer="cus_2")], customer="cus_1")
    assert error.value.param == "customer"


def test_ledger_counts_a_redelivered_entry_once_and_refuses_a_conflicting_one() -> None:
    assert ledger_balance([entry("a", -100), entry("a", -100), entry("b", 30)]) == eur(-70)
    with pytest.raises(Conflict):
        unique_transactions([entry("a", -100), entry("a", -99)])


def test_empty_ledger_needs_its_currency() -> None:
    assert ledger_balance([], currency="kwd") == Money(0, "KWD")
    with pytest.raises(InvalidInput):
        ledger_balance([])


def test_entries_are_integers_and_never_zero() -> None:
    with pytest.raises(ValidationError):
        entry("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        entry("a", 0)


def test_adjustments_and_running_balances() -> None:
    first = adjustment(customer="cus_1", amount=eur(-2500), now=NOW, reference="req_1", description="goodwill")
    assert first == adjustment(customer="cus_1", amount=eur(-2500), now=NOW, reference="req_1", description="goodwill")
    second = entry("b", 1000)
    assert running_balances([first, second, first]) == [(first.id, -2500), ("b", -1500)]


# ------------------------------------------------------------------ property: never lost, never double-spent
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("invoice"), st.integers(min_value=-50_000, max_value=50_000)),
        st.tuples(st.just("credit"), st.integers(min_value=1, max_value=50_000)),
    ),
    max_size=30,
)


@given(events=EVENTS, currency=st.sampled_from(["EUR", "JPY", "KWD"]), redeliver=st.booleans())
def test_credits_are_never_lost_or_double_spent(events: list[tuple[str, int]], currency: str, redeliver: bool) -> None:
    balance = Money(0, currency)
    ledger: list[CustomerBalanceTransaction] = []
    granted = consumed = totals = due = 0
    for i, (kind, amount) in enumerate(events):
        now = NOW + timedelta(hours=i)
        if kind == "credit":
            txn = adjustment(customer="cus_1", amount=Money(-amount, currency), now=now, reference=f"r{i}")
            balance, granted = balance + txn.money, granted + amount
        else:
            total = Money(amount, currency)
            application = apply_balance(total, balance)
            assert application.amount_due.amount >= 0  # never a negative amount due
            assert application.balance_after.amount <= 0
            # never more credit used than there was
            assert application.applied.amount <= max(0, -balance.amount)
            txn_or_none = (
                adjustment(customer="cus_1", amount=application.applied, now=now, reference=f"in_{i}")
                if application.applied.amount
                else None
            )
            balance = application.balance_after
            totals, due = totals + amount, due + application.amount_due.amount
            if amount < 0:
                granted -= amount
            consumed += max(0, application.applied.amount)
            if txn_or_none is None:
                continue
            txn = txn_or_none
        ledger.append(txn)
        if redeliver:
            ledger.append(txn)  # at-least-once delivery
        assert ledger_balance(ledger, currency) == balance
    # every credit is either still on the balance or was consumed by an invoice, exactly once
    assert granted == consumed + (-balance.amount)
    # and the invoices collected exactly their totals, less the credit they used, plus nothing else
    credits = sum(a for k, a in events if k == "credit")
    assert due == totals - balance.amount - credits
