"""The customer credit balance and its ledger (Stripe's customer balance).

Sign convention (Stripe's): a **negative** balance is credit the customer has; a positive balance is
an amount the customer owes and is added to the next invoice.

Applying the balance to an invoice whose total is ``total``::

    amount_due    = max(0, total + balance)
    balance_after = min(0, total + balance)
    applied       = balance_after − balance      (the ledger entry; negative = credit granted)

so ``total + balance == amount_due + balance_after`` always (nothing is created or lost), no amount
due is ever negative, and the excess of a negative total (proration credits) becomes credit.
Negative prorations are never refunded automatically (Stripe); a refund goes through a credit note.

The ledger is a list of :class:`CustomerBalanceTransaction`; the balance is their sum. Entries have
deterministic ids, so a redelivered message that records the same entry twice counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, CurrencyMismatch, InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.invoice import Invoice
from kassa.domain.money import Money, normalize_currency


class BalanceTransactionType(StrEnum):
    PRORATION_CREDIT = "proration_credit"  # a negative invoice total moved to the balance
    CREDIT_NOTE = "credit_note"  # a credit note's credit_amount (or its reversal when voided)
    APPLIED_TO_INVOICE = "applied_to_invoice"  # balance consumed by (or debt added to) an invoice
    ADJUSTMENT = "adjustment"  # a manual correction by the merchant


class CustomerBalanceTransaction(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    customer: str
    amount: StrictInt  # negative = credit to the customer
    currency: str
    type: BalanceTransactionType
    invoice: str | None = None
    credit_note: str | None = None
    description: str | None = None
    created: datetime

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    def model_post_init(self, __context: object) -> None:
        if self.amount == 0:
            raise InvalidInput("a balance transaction moves a non-zero amount", param="amount")

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class BalanceApplication(NamedTuple):
    amount_due: Money
    balance_after: Money
    applied: Money  # balance_after − balance: positive = credit consumed, negative = credit granted


def apply_balance(total: Money, balance: Money) -> BalanceApplication:
    """Apply the customer ``balance`` to an invoice ``total``: ``(amount_due, balance_after, applied)``."""
    net = total + balance  # refuses mixed currencies
    amount_due = Money(max(0, net.amount), net.currency)
    balance_after = Money(min(0, net.amount), net.currency)
    return BalanceApplication(amount_due, balance_after, balance_after - balance)


def with_balance(invoice: Invoice, customer: Customer) -> tuple[Invoice, Customer | None]:
    """Apply the customer's balance to the invoice (the last step: after discount and tax); a negative
    total becomes credit. Returns the customer with its new balance when it moved (to be saved with
    the invoice in one write); a balance in another currency is left alone."""
    currency = invoice.currency
    if customer.balance_currency not in (None, currency) or (customer.balance == 0 and invoice.total >= 0):
        return invoice, None
    applied = apply_balance(Money(invoice.total, currency), Money(customer.balance, currency))
    after = applied.balance_after.amount
    updated = invoice.model_copy(
        update={"amount_due": applied.amount_due.amount, "starting_balance": customer.balance, "ending_balance": after}
    )
    return updated, customer.model_copy(update={"balance": after, "balance_currency": currency if after else None})


def adjustment(
    *, customer: str, amount: Money, now: datetime, reference: str, description: str | None = None
) -> CustomerBalanceTransaction:
    """A manual adjustment; ``reference`` (e.g. a request id) makes it idempotent."""
    return CustomerBalanceTransaction(
        id=derived_id("cbtxn", customer, "adjustment", reference),
        customer=customer,
        amount=amount.amount,
        currency=amount.currency,
        type=BalanceTransactionType.ADJUSTMENT,
        description=description,
        created=now,
    )


def unique_transactions(transactions: Iterable[CustomerBalanceTransaction]) -> list[CustomerBalanceTransaction]:
    """The ledger with duplicate deliveries removed (same id, same content); a different entry
    under a known id is a :class:`Conflict`."""
    seen: dict[str, CustomerBalanceTransaction] = {}
    for entry in transactions:
        known = seen.get(entry.id)
        if known is None:
            seen[entry.id] = entry
        elif known != entry:
            raise Conflict(f"balance transaction {entry.id} was recorded twice with different contents")
    return list(seen.values())


def ledger_balance(
    transactions: Iterable[CustomerBalanceTransaction],
    currency: str | None = None,
    customer: str | None = None,
) -> Money:
    """The balance a ledger adds up to. One currency and one customer per ledger: anything else is refused.

    ``currency`` is needed for an empty ledger and checked against every entry otherwise.
    """
    entries = unique_transactions(transactions)
    code = normalize_currency(currency) if currency is not None else (entries[0].currency if entries else None)
    if code is None:
        raise InvalidInput("the currency of an empty ledger must be given", param="currency")
    total = 0
    for entry in entries:
        if entry.currency != code:
            raise CurrencyMismatch(
                f"a customer balance is kept in one currency: {entry.id} is {entry.currency}, not {code}",
                param="currency",
            )
        if customer is not None and entry.customer != customer:
            raise InvalidInput(f"{entry.id} belongs to {entry.customer}, not {customer}", param="customer")
        total += entry.amount
    return Money(total, code)


def running_balances(transactions: Iterable[CustomerBalanceTransaction]) -> list[tuple[str, int]]:
    """Each entry's ``ending_balance`` (Stripe shows one per transaction), in ledger order."""
    result: list[tuple[str, int]] = []
    running = 0
    entries = unique_transactions(transactions)
    if entries:
        ledger_balance(entries)  # one currency
    for entry in entries:
        running += entry.amount
        result.append((entry.id, running))
    return result
