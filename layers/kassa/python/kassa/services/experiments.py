"""Use case: price experiments — create, list, get, stop; the variant a customer sees (and a
checkout is charged); the report per variant. The rules are ``kassa.domain.experiments``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from kassa.domain.catalog import Price
from kassa.domain.customer import Customer
from kassa.domain.errors import Conflict, InvalidInput, NotFound
from kassa.domain.events import DomainEvent
from kassa.domain.experiments import (
    Experiment,
    Variant,
    VariantFigures,
    ensure_running,
    experiment_figures,
    new_experiment,
    normalize_email,
    sticky_variant,
    stop_experiment,
)
from kassa.domain.invoice import Invoice
from kassa.domain.subscription import Subscription
from kassa.services.context import BillingContext
from kassa.services.ports import ListQuery, Page, every_item

PAGE = 100


def create(
    ctx: BillingContext, *, name: str, product: str, variants: Sequence[tuple[str | None, str, int]]
) -> Experiment:
    """A running experiment over existing prices of ``product``; 409 when the product has one."""
    if ctx.product(product) is None:
        raise NotFound(f"no such product: {product}", param="product")
    prices: dict[str, Price] = {}
    for i, (_, price_id, _) in enumerate(variants):
        try:
            prices[price_id] = ctx.price(price_id, fresh=True)
        except NotFound as error:
            raise InvalidInput(error.message, param=f"variants[{i}].price") from None
    now = ctx.now()
    experiment = new_experiment(name=name, product=product, variants=variants, prices=prices, now=now)
    ctx.store.put_experiment(experiment)
    ctx.emit(DomainEvent.of("experiment.created", experiment, now, cause="create"))
    return experiment


def get(ctx: BillingContext, experiment_id: str) -> Experiment:
    return ctx.store.get_experiment(experiment_id)


def list_page(ctx: BillingContext, limit: int, starting_after: str | None) -> Page:
    return ctx.store.list_experiments(limit, starting_after)


def stop(ctx: BillingContext, experiment_id: str) -> Experiment:
    """Stopped (new checkouts get the price they ask for); asking again answers the same experiment.
    Of two concurrent stops the one whose versioned write loses reads the winner's experiment back
    and answers it. Every answer publishes experiment.stopped under its one deterministic id, so a
    stop that crashed between its write and the publish is completed by the next stop, and a
    consumer sees one event however many stops were asked."""
    experiment = ctx.store.get_experiment(experiment_id)
    stopped = stop_experiment(experiment, ctx.now())
    if stopped is experiment:
        return _stopped(ctx, experiment)
    try:
        saved = ctx.store.stop_experiment(stopped)
    except Conflict:
        current = ctx.store.get_experiment(experiment_id)
        if stop_experiment(current, ctx.now()) is current:  # stopped meanwhile: the same answer
            return _stopped(ctx, current)
        raise
    return _stopped(ctx, saved)


def _stopped(ctx: BillingContext, experiment: Experiment) -> Experiment:
    ctx.emit(DomainEvent.of("experiment.stopped", experiment, experiment.stopped_at or ctx.now(), cause="stop"))
    return experiment


@dataclass(frozen=True)
class Assignment:
    experiment: Experiment
    variant: Variant


def assignment(
    ctx: BillingContext, product: str, *, email: str | None = None, customer_id: str | None = None
) -> Assignment | None:
    """The variant of ``product``'s running experiment the customer (by email, or by id) sees; None
    when the product has no running experiment."""
    experiment = ctx.store.running_experiment(product)
    if experiment is None:
        return None
    return Assignment(experiment, _variant(ctx, experiment, email, customer_id))


def _variant(
    ctx: BillingContext,
    experiment: Experiment,
    email: str | None,
    customer_id: str | None,
    customer: Customer | None = None,
) -> Variant:
    """``customer``: the customer of ``customer_id`` when the caller has read it already."""
    ensure_running(experiment)
    subscriptions: list[Subscription] = []
    if customer is None and customer_id is not None:
        try:
            customer = ctx.store.get_customer(customer_id)
        except NotFound as error:
            raise NotFound(error.message, param="customer") from None
    if customer is not None:
        email = customer.email
        subscriptions = ctx.store.list_customer_subscriptions(customer.id)
    if not email:
        raise InvalidInput("give the customer's email or id", param="email")
    return sticky_variant(experiment, normalize_email(email), subscriptions)


def checkout_prices(
    ctx: BillingContext, prices: list[Price], *, email: str | None, customer: Customer | None
) -> tuple[list[Price], dict[str, str] | None]:
    """The prices a checkout charges: an item on a variant of its product's running experiment is
    charged at the variant the customer (the checkout's, already read; else by ``email``) is
    assigned, whatever variant was asked for, and the subscription is tagged with it. Other items,
    and products without an experiment, are unchanged."""
    tag: dict[str, str] | None = None
    charged = list(prices)
    if not email and customer is None:  # the checkout itself answers the missing customer
        return charged, tag
    for i, price in enumerate(prices):
        experiment = ctx.store.running_experiment(price.product)
        if experiment is None or experiment.variant_of_price(price.id) is None or tag is not None:
            continue
        variant = _variant(ctx, experiment, email, None, customer)
        chosen = ctx.price(variant.price, fresh=True)
        if not chosen.active:  # archived since the experiment began: the asked price, untagged
            continue
        charged[i] = chosen
        tag = {"id": experiment.id, "variant": variant.id}
    return charged, tag


def report(ctx: BillingContext, experiment_id: str) -> tuple[Experiment, list[VariantFigures]]:
    """Started, converted, churned and MRR per variant over the subscriptions its checkouts made,
    with the conversion p-value. They are found among the subscriptions created since the
    experiment was (the merchant listing's created range; never a Scan), by their tag: a
    subscription that later moved to another price stays in its variant."""
    experiment = ctx.store.get_experiment(experiment_id)
    window = ListQuery(limit=PAGE, created_gte=experiment.created)
    found: dict[str, Subscription] = {}

    def created_meanwhile(after: str | None) -> Page:
        return ctx.store.list_subscriptions(replace(window, starting_after=after))

    for sub in every_item(created_meanwhile):
        if (sub.experiment or {}).get("id") == experiment.id:
            found[sub.id] = sub
    invoices: dict[str, list[Invoice]] = {sub_id: [] for sub_id in found}
    for customer in sorted({sub.customer for sub in found.values()}):

        def of_customer(after: str | None, customer: str = customer) -> Page:
            return ctx.store.list_customer_invoices(customer, PAGE, after)

        for invoice in every_item(of_customer):
            if invoice.subscription in invoices:
                invoices[invoice.subscription].append(invoice)
    return experiment, experiment_figures(experiment, [(sub, invoices[sub.id]) for sub in found.values()])
