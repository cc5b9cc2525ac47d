"""Fault injection for the simulator: wrappers around the store and the gateway that fail the way
DynamoDB and Stripe really do, raising what the real adapters raise (``kassa.adapters.dynamodb``,
``kassa.adapters.stripe_gateway``), seeded and reproducible.

DynamoDB (every BillingStore call):
* throttling — ``Unavailable`` before the call (botocore's own retries were used up);
* a conditional-check conflict — ``Conflict`` before the write (a concurrent writer won);
* a timeout after the write committed — the write happens, then ``Conflict``: botocore retries
  the timed-out request and the retry of the already committed conditional write fails its condition;
* a crash between two writes — the write happens, then ``SimulatedCrash`` (the function died: out
  of memory, its timeout): nothing after it runs and the message is delivered again.

Stripe (every PaymentGateway call):
* a timeout, a 5xx, a 429 — ``PaymentProviderError`` before the call (nothing was charged);
* a lost response after the charge succeeded — the charge happens, then ``PaymentProviderError``.

The queues, the bus and webhooks (redelivery, reordering, duplicates, delays) are faulted by the
simulator itself (``kassa_local.simulator``) from the same ``FaultPlan``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kassa.domain.errors import Conflict, PaymentProviderError, Unavailable


class SimulatedCrash(Exception):  # noqa: N818 - a crash, not an error kassa could handle
    """The function died between two writes (out of memory, timed out): not a domain error, so no
    service catches it; the invocation ends and its message is delivered again."""


#: the chance of each fault at each opportunity (a store call, a gateway call, a delivery)
DEFAULT_RATES: dict[str, float] = {
    "dynamodb.throttle": 0.004,
    "dynamodb.conflict": 0.004,
    "dynamodb.timeout_after_commit": 0.003,
    "crash_between_writes": 0.003,
    "stripe.timeout": 0.005,
    "stripe.5xx": 0.004,
    "stripe.429": 0.004,
    "stripe.lost_response": 0.01,
    "sqs.redelivery": 0.03,
    "sqs.reorder": 0.5,  # a batch is taken in another order than it was sent
    "eventbridge.duplicate": 0.03,
    "webhook.duplicate": 0.05,
    "webhook.delay": 0.05,
    "webhook.reorder": 0.5,
}


@dataclass
class FaultPlan:
    """Which faults to inject, from one seed: ``roll(kind)`` says whether this opportunity fails.
    Faults fire only while ``active`` (the simulator turns it off for its own reads)."""

    seed: int
    enabled: bool = False
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    injected: Counter[str] = field(default_factory=Counter)
    active: bool = True

    def __post_init__(self) -> None:
        self.rng = random.Random(f"faults:{self.seed}")

    def roll(self, kind: str) -> bool:
        if not (self.enabled and self.active):
            return False
        if self.rng.random() < self.rates.get(kind, 0.0):
            self.injected[kind] += 1
            return True
        return False


#: BillingStore methods that read only (throttling is all that can happen to them)
_STORE_READS = frozenset(
    {
        "get_product", "list_products", "get_price", "list_prices", "get_coupon", "get_promotion_code",
        "get_promotion_code_by_id", "list_coupons", "list_promotion_codes", "list_credit_notes", "get_credit_note",
        "credit_notes_by_tax_date", "get_customer", "find_customer_by_email", "get_subscription", "get_invoice",
        "find_invoice", "find_invoice_by_payment_intent", "list_customer_invoices", "list_customer_subscriptions",
        "invoices_by_tax_date", "list_customers", "list_subscriptions", "list_invoices", "due_subscriptions",
        "next_due_after", "due_dunning", "next_dunning_after", "list_open_invoices", "get_settings", "get_meter",
        "find_meter", "list_meters", "get_usage", "late_usage", "get_webhook",
    }
)  # fmt: skip


class FaultyStore:
    """A BillingStore that fails like DynamoDB (see the module) around the store it wraps."""

    def __init__(self, store: Any, plan: FaultPlan) -> None:
        self._store = store
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name.startswith("_") or not callable(target):
            return target
        plan, writes = self._plan, name not in _STORE_READS

        def call(*args: Any, **kwargs: Any) -> Any:
            if plan.roll("dynamodb.throttle"):
                raise Unavailable("storage is throttling; retry")
            if not writes:
                return target(*args, **kwargs)
            if plan.roll("dynamodb.conflict"):
                raise Conflict("the item changed or already exists")
            result = target(*args, **kwargs)
            if plan.roll("dynamodb.timeout_after_commit"):
                raise Conflict("the item changed or already exists")  # the retried request's condition failed
            if plan.roll("crash_between_writes"):
                raise SimulatedCrash(f"the function died after {name}")
            return result

        setattr(self, name, call)  # built once per method
        return call


#: the gateway calls that move money: a response can be lost after Stripe did the work
_GATEWAY_EFFECTS = frozenset({"charge", "create_refund", "refund"})


class FaultyGateway:
    """A PaymentGateway that fails like Stripe's API (see the module) around the gateway it wraps."""

    def __init__(self, gateway: Any, plan: FaultPlan) -> None:
        self._gateway = gateway
        self._plan = plan

    @property
    def publishable_key(self) -> str:
        return str(self._gateway.publishable_key)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._gateway, name)
        if name.startswith("_") or not callable(target):
            return target
        plan = self._plan

        def call(*args: Any, **kwargs: Any) -> Any:
            for kind, text in (
                ("stripe.timeout", "Stripe unavailable: Request timed out"),
                ("stripe.5xx", "Stripe unavailable: (500) An unexpected error occurred"),
                ("stripe.429", "Stripe unavailable: Too many requests"),
            ):
                if plan.roll(kind):
                    raise PaymentProviderError(text)
            result = target(*args, **kwargs)
            if name in _GATEWAY_EFFECTS and plan.roll("stripe.lost_response"):
                raise PaymentProviderError("Stripe unavailable: read timeout")  # done at Stripe, answer lost
            return result

        setattr(self, name, call)
        return call
