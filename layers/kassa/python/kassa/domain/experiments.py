"""Price experiments: new checkouts of a product split between price variants by weight.

A customer is assigned by hashing their normalized email with the experiment id
(``sha256(experiment \\x1f email)``, the first 8 bytes modulo 10,000 basis points) and walking the
variants' cumulative weights: deterministic, so the same customer sees the same variant on every
visit, by email before they exist and by id afterwards (the service reads their email, and a
subscription already in the experiment keeps its variant even if the email changed). The report
counts, per variant, checkouts started (subscriptions created in the experiment), converted (one of
their invoices paid), MRR now (``kassa.domain.analytics``' definition, from their invoices) and
churn (converted subscriptions that ended); each variant's conversion is compared with the first
variant (the control) by a two-sided two-proportion z-test (pooled), whose p-value is the
``significance`` figure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kassa.domain.analytics import subscription_steps
from kassa.domain.catalog import Price
from kassa.domain.errors import Conflict, InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.subscription import Status, Subscription

MIN_VARIANTS, MAX_VARIANTS = 2, 10
BASIS_POINTS = 10_000  # weights are whole percent; customers are bucketed in 1/100 of a percent
ENDED_STATUSES = frozenset({Status.CANCELED, Status.UNPAID, Status.INCOMPLETE_EXPIRED})


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # "a", "b", … in the order given
    name: str
    price: str
    weight: StrictInt = Field(ge=1, le=100)  # percent of new checkouts


class Experiment(BaseModel):
    id: str
    name: str
    product: str
    currency: str  # the variants' (MRR is in its minor unit)
    status: ExperimentStatus = ExperimentStatus.RUNNING
    variants: tuple[Variant, ...]
    created: datetime
    stopped_at: datetime | None = None
    version: int = 0

    def variant(self, variant_id: str) -> Variant:
        return next(v for v in self.variants if v.id == variant_id)

    def variant_of_price(self, price_id: str) -> Variant | None:
        return next((v for v in self.variants if v.price == price_id), None)


def new_experiment(
    *,
    name: str,
    product: str,
    variants: Sequence[tuple[str | None, str, int]],
    prices: Mapping[str, Price],
    now: datetime,
    experiment_id: str | None = None,
) -> Experiment:
    """An experiment over ``variants`` (name, price id, weight in percent): 2 to 10 distinct, active
    prices of ``product`` with the same currency and interval, weights summing to 100."""
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise InvalidInput(f"an experiment has {MIN_VARIANTS} to {MAX_VARIANTS} variants", param="variants")
    seen: set[str] = set()
    first: Price | None = None
    built = []
    for i, (variant_name, price_id, weight) in enumerate(variants):
        param = f"variants[{i}]"
        if price_id in seen:
            raise InvalidInput(f"price {price_id} is in two variants", param=f"{param}.price")
        seen.add(price_id)
        price = prices.get(price_id)
        if price is None:
            raise InvalidInput(f"no such price: {price_id}", param=f"{param}.price")
        if price.product != product:
            raise InvalidInput(f"price {price_id} is not a price of {product}", param=f"{param}.price")
        if not price.active:
            raise InvalidInput(f"price {price_id} is not active", param=f"{param}.price")
        if price.metered:
            raise InvalidInput(f"price {price_id} is metered: variants are licensed prices", param=f"{param}.price")
        first = first or price
        if (price.currency, price.recurring.interval, price.recurring.interval_count) != (
            first.currency,
            first.recurring.interval,
            first.recurring.interval_count,
        ):
            raise InvalidInput("every variant has the first one's currency and interval", param=f"{param}.price")
        if not 1 <= weight <= 100:
            raise InvalidInput("a weight is a whole percent from 1 to 100", param=f"{param}.weight")
        variant_id = chr(ord("a") + i)
        built.append(Variant(id=variant_id, name=variant_name or variant_id.upper(), price=price_id, weight=weight))
    total = sum(v.weight for v in built)
    if total != 100:
        raise InvalidInput(f"the variants' weights sum to {total}, not 100", param="variants")
    assert first is not None  # at least two variants were checked
    return Experiment(
        id=experiment_id or derived_id("exp", product, name, now.isoformat()),
        name=name,
        product=product,
        currency=first.currency,
        variants=tuple(built),
        created=now,
    )


def stop_experiment(experiment: Experiment, now: datetime) -> Experiment:
    """Stopped: new checkouts get the price they ask for; the report stays. Stopping twice is a no-op."""
    if experiment.status is ExperimentStatus.STOPPED:
        return experiment
    return experiment.model_copy(update={"status": ExperimentStatus.STOPPED, "stopped_at": now})


def ensure_running(experiment: Experiment) -> None:
    if experiment.status is not ExperimentStatus.RUNNING:
        raise Conflict(f"experiment {experiment.id} is {experiment.status.value}", param="experiment")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def bucket(experiment_id: str, email: str) -> int:
    """The customer's place in [0, 10 000): the same experiment and email always give the same one."""
    digest = hashlib.sha256(f"{experiment_id}\x1f{normalize_email(email)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BASIS_POINTS


def assign(experiment: Experiment, email: str) -> Variant:
    """The variant a customer sees: the first whose cumulative weight passes their bucket."""
    point = bucket(experiment.id, email)
    edge = 0
    for variant in experiment.variants:
        edge += variant.weight * (BASIS_POINTS // 100)
        if point < edge:
            return variant
    return experiment.variants[-1]  # unreachable: the weights sum to 100


def sticky_variant(experiment: Experiment, email: str, subscriptions: Iterable[Subscription]) -> Variant:
    """The customer's variant: the one a subscription of theirs already has in this experiment (so a
    changed email keeps it), else the hash of their email."""
    for sub in subscriptions:
        tag = sub.experiment or {}
        if tag.get("id") == experiment.id and any(v.id == tag.get("variant") for v in experiment.variants):
            return experiment.variant(str(tag["variant"]))
    return assign(experiment, email)


def monthly_recurring(sub: Subscription, invoices: Sequence[Invoice]) -> int:
    """A subscription's MRR now, by the analytics' definition (``analytics.subscription_steps``: its
    billed periods' recurring lines net of discount and tax, normalized to a month; nothing once it
    ended, in a trial or before its first invoice is paid)."""
    steps = subscription_steps(sub, invoices)
    return steps[-1].mrr if steps else 0


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of x1/n1 against x2/n2 (None when a
    group is empty or nobody — or everybody — converted, where the test says nothing)."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class VariantFigures:
    variant: Variant
    started: int
    converted: int
    churned: int
    mrr: int  # minor units of the experiment's currency (each subscription's rounded half-up)
    p_value: float | None  # conversion against the control (None for the control itself)

    @property
    def conversion(self) -> Fraction | None:
        return Fraction(self.converted, self.started) if self.started else None

    @property
    def churn(self) -> Fraction | None:
        return Fraction(self.churned, self.converted) if self.converted else None


def converted(invoices: Iterable[Invoice]) -> bool:
    return any(invoice.status is InvoiceStatus.PAID for invoice in invoices)


def experiment_figures(
    experiment: Experiment, subscriptions: Iterable[tuple[Subscription, Sequence[Invoice]]]
) -> list[VariantFigures]:
    """Per variant: started, converted, churned and MRR of the experiment's subscriptions (each with
    its invoices), and the p-value of its conversion against the first variant's."""
    tallies = {v.id: _Tally() for v in experiment.variants}
    for sub, invoices in subscriptions:
        tag = sub.experiment or {}
        tally = tallies.get(str(tag.get("variant"))) if tag.get("id") == experiment.id else None
        if tally is None:
            continue
        tally.started += 1
        if converted(invoices):
            tally.converted += 1
            if sub.status in ENDED_STATUSES or sub.ended_at is not None:
                tally.churned += 1
        tally.mrr += monthly_recurring(sub, invoices)
    control = tallies[experiment.variants[0].id]
    figures = []
    for i, v in enumerate(experiment.variants):
        t = tallies[v.id]
        p = None if i == 0 else two_proportion_p_value(control.converted, control.started, t.converted, t.started)
        figures.append(VariantFigures(v, t.started, t.converted, t.churned, t.mrr, p))
    return figures


@dataclass
class _Tally:
    started: int = 0
    converted: int = 0
    churned: int = 0
    mrr: int = 0
