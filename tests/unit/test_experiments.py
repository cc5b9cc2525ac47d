"""Price experiments: the domain rules (weights, sticky deterministic assignment, figures, the
z-test) and the use case over the in-memory world (checkout charges the variant)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.domain.catalog import Recurring
from kassa.domain.errors import AlreadyExists, InvalidInput, NotFound
from kassa.domain.experiments import (
    Experiment,
    ExperimentStatus,
    assign,
    bucket,
    experiment_figures,
    monthly_recurring,
    new_experiment,
    sticky_variant,
    two_proportion_p_value,
)
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.periods import Interval
from kassa.domain.proration import ProrationBehavior
from kassa.domain.subscription import Status
from kassa.services import experiments
from kassa.services.catalog import create_price
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.plan_changes import change_plan
from tests.unit.fakes import START, World, make_world


def two_prices(world: World, a: int = 1000, b: int = 1200):
    product, control = world.catalog(a)
    variant = create_price(world.billing, product.id, "eur", b, Recurring(interval=Interval.MONTH))
    return product, control, variant


def experiment_of(weights: tuple[int, ...]) -> Experiment:
    world = make_world()
    product, *_ = two_prices(world)
    prices = [create_price(world.billing, product.id, "eur", 1000 + i, Recurring(interval=Interval.MONTH))
              for i in range(len(weights))]  # fmt: skip
    return new_experiment(
        name="t",
        product=product.id,
        variants=[(None, p.id, w) for p, w in zip(prices, weights, strict=True)],
        prices={p.id: p for p in prices},
        now=START,
        experiment_id="exp_t",
    )


# ------------------------------------------------------------------ weights


@pytest.mark.parametrize(
    ("weights", "param"),
    [((50, 40), "variants"), ((60, 50), "variants"), ((100,), "variants"), ((0, 100), "variants[0].weight")],
)
def test_weights_are_whole_percent_summing_to_100(weights: tuple[int, ...], param: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        experiment_of(weights)
    assert raised.value.param == param


def test_variants_are_distinct_active_prices_of_the_product_in_one_currency() -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    _, other = world.catalog(900)
    usd = create_price(world.billing, product.id, "usd", 900, Recurring(interval=Interval.MONTH))
    prices = {p.id: p for p in (control, variant, other, usd)}

    def build(*ids: str) -> None:
        new_experiment(name="t", product=product.id, variants=[(None, i, 50) for i in ids], prices=prices, now=START)

    for ids, param in [
        ((control.id, control.id), "variants[1].price"),
        ((control.id, other.id), "variants[1].price"),
        ((control.id, usd.id), "variants[1].price"),
        ((control.id, "price_nope"), "variants[1].price"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            build(*ids)
        assert raised.value.param == param
    build(control.id, variant.id)


# ------------------------------------------------------------------ assignment


@settings(max_examples=200, deadline=None)
@given(
    email=st.emails(),
    upper=st.booleans(),
    spaces=st.booleans(),
    weights=st.sampled_from([(50, 50), (10, 90), (1, 99), (34, 33, 33), (25, 25, 25, 25)]),
)
def test_the_same_customer_always_sees_the_same_variant(
    email: str, upper: bool, spaces: bool, weights: tuple[int, ...]
) -> None:
    experiment = EXPERIMENTS[weights]
    seen = email.upper() if upper else email
    seen = f"  {seen} " if spaces else seen
    assert assign(experiment, seen) == assign(experiment, email) == assign(experiment.model_copy(), email)
    assert 0 <= bucket(experiment.id, email) < 10_000


EXPERIMENTS = {w: experiment_of(w) for w in [(50, 50), (10, 90), (1, 99), (34, 33, 33), (25, 25, 25, 25)]}


def test_assignment_follows_the_weights() -> None:
    """10 000 visitors on 20/80: within 2 points of the weights (the hash is uniform)."""
    experiment = experiment_of((20, 80))
    counts = Counter(assign(experiment, f"visitor{i}@example.com").id for i in range(10_000))
    assert abs(counts["a"] - 2000) < 200 and abs(counts["b"] - 8000) < 200


def test_another_experiment_shuffles_the_customers() -> None:
    one, other = experiment_of((50, 50)), experiment_of((50, 50)).model_copy(update={"id": "exp_other"})
    emails = [f"v{i}@example.com" for i in range(200)]
    assert [assign(one, e).id for e in emails] != [assign(other, e).id for e in emails]


# ------------------------------------------------------------------ figures


def test_the_p_value_is_the_pooled_two_proportion_z_test() -> None:
    """40/100 against 55/100: pooled 0.475, se = √(0.475 · 0.525 · 0.02) = 0.070623, z = 2.1240,
    p = erfc(z/√2) = 0.03367."""
    assert two_proportion_p_value(40, 100, 55, 100) == pytest.approx(0.03367, abs=5e-5)
    assert two_proportion_p_value(0, 10, 0, 10) is None
    assert two_proportion_p_value(1, 0, 1, 10) is None
    assert two_proportion_p_value(5, 10, 5, 10) == pytest.approx(1.0)


def test_figures_over_a_hand_built_history() -> None:
    """Control A (10.00): 4 checkouts, 2 paid, 1 of them canceled; B (12.00): 4 checkouts, all
    paid, one at 50 % off. MRR (the analytics' definition, from the invoices): A 10.00; B 12.00 × 3
    + 6.00 = 42.00."""
    world = make_world()
    product, control, variant = two_prices(world)
    base = world.checkout(control, email="base@example.com")  # before the experiment: A's price
    assert base.invoice is not None
    experiment = experiments.create(
        world.billing,
        name="Coffee +20%",
        product=product.id,
        variants=[("ten", control.id, 50), ("twelve", variant.id, 50)],
    )

    def paid_invoice(sub_id: str, amount: int, price_id: str):
        assert base.invoice is not None
        line = base.invoice.lines[0].model_copy(update={"amount": amount, "price": price_id, "tax_amount": 0})
        return base.invoice.model_copy(update={"id": f"in_{sub_id}", "subscription": sub_id,
                                               "status": InvoiceStatus.PAID, "lines": [line]})  # fmt: skip

    rows = []
    for i in range(4):
        tag = {"id": experiment.id, "variant": "a"}
        status = [Status.ACTIVE, Status.CANCELED, Status.INCOMPLETE, Status.INCOMPLETE_EXPIRED][i]
        update = {"id": f"sub_a{i}", "experiment": tag, "status": status}
        if status is Status.CANCELED:
            update["ended_at"] = update["canceled_at"] = START + timedelta(days=3)
        rows.append((base.subscription.model_copy(update=update),
                     [paid_invoice(f"sub_a{i}", 1000, control.id)] if i < 2 else []))  # fmt: skip
    for i in range(4):
        tag = {"id": experiment.id, "variant": "b"}
        sub = base.subscription.model_copy(update={"id": f"sub_b{i}", "experiment": tag, "status": Status.ACTIVE})
        rows.append((sub, [paid_invoice(f"sub_b{i}", 600 if i == 3 else 1200, variant.id)]))
    other = base.subscription.model_copy(update={"id": "sub_other", "experiment": None, "status": Status.ACTIVE})
    rows.append((other, [paid_invoice("sub_other", 1000, control.id)]))
    a, b = experiment_figures(experiment, rows)
    assert (a.started, a.converted, a.churned, a.mrr) == (4, 2, 1, 1000)
    assert (b.started, b.converted, b.churned, b.mrr) == (4, 4, 0, 4200)
    assert a.conversion == Fraction(1, 2) and b.conversion == 1 and a.churn == Fraction(1, 2) and b.churn == 0
    assert a.p_value is None
    # 2/4 against 4/4: pooled 0.75, se = √(0.75 · 0.25 · 0.5) = 0.30619, z = 1.63299, p = 0.10247
    assert b.p_value == pytest.approx(0.10247, abs=5e-5)


def test_mrr_is_the_analytics_figure_of_the_subscriptions_invoices() -> None:
    world = make_world()
    _, yearly = world.catalog(12_000, interval="year")
    sub = world.active_subscription(yearly).subscription
    active = world.store.get_subscription(sub.id)
    invoices = world.store.list_customer_invoices(active.customer, 10, None).items
    assert monthly_recurring(active, invoices) == 1000  # 120.00 a year
    assert monthly_recurring(active, []) == 0


# ------------------------------------------------------------------ the use case


def test_a_checkout_is_charged_the_customers_variant_by_email_and_by_id() -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    for n in range(12):
        email = f"buyer{n}@example.com"
        expected = assign(experiment, email)
        shown = experiments.assignment(world.billing, product.id, email=email)
        assert shown is not None and shown.variant == expected
        result = world.checkout(control, email=email)  # asks for the control: charged the variant
        assert result.invoice is not None
        assert result.invoice.lines[0].price == expected.price
        assert result.invoice.total == (1000 if expected.id == "a" else 1200)
        assert result.subscription.experiment == {"id": experiment.id, "variant": expected.id}
        # the same customer by id (a returning customer), even after changing their email
        customer = world.store.get_customer(result.customer.id)
        world.store.change_customer_email(customer.model_copy(update={"email": f"new{n}@example.org"}), email)
        by_id = experiments.assignment(world.billing, product.id, customer_id=customer.id)
        assert by_id is not None and by_id.variant == expected
        again = world.checkout(variant, email=f"new{n}@example.org")
        assert again.subscription.items[0].price == expected.price


def test_one_running_experiment_per_product_and_stopping() -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    variants = [(None, control.id, 50), (None, variant.id, 50)]
    experiment = experiments.create(world.billing, name="t", product=product.id, variants=variants)
    with pytest.raises(AlreadyExists) as raised:
        experiments.create(world.billing, name="t2", product=product.id, variants=variants)
    assert raised.value.param == "product"
    world.clock.advance(timedelta(days=1))
    stopped = experiments.stop(world.billing, experiment.id)
    assert stopped.status is ExperimentStatus.STOPPED and stopped.stopped_at == world.clock.now()
    assert experiments.stop(world.billing, experiment.id) == stopped  # again: the same
    assert experiments.assignment(world.billing, product.id, email="x@example.com") is None
    result = world.checkout(variant, email="late@example.com")
    assert result.subscription.items[0].price == variant.id and result.subscription.experiment is None
    experiments.create(world.billing, name="t3", product=product.id, variants=variants)  # the product is free
    with pytest.raises(NotFound) as missing:
        experiments.create(world.billing, name="t4", product="prod_nope", variants=variants)
    assert missing.value.param == "product"


def test_the_report_counts_checkouts_and_payments_of_the_store() -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    emails = [f"r{n}@example.com" for n in range(8)]
    for n, email in enumerate(emails):
        result = world.checkout(control, email=email)
        if n % 2 == 0:
            complete_checkout(world.billing, result.subscription.id, result.setup_intent.id)
    _, figures = experiments.report(world.billing, experiment.id)
    by_variant = {f.variant.id: f for f in figures}
    expected = Counter(assign(experiment, e).id for e in emails)
    paid = Counter(assign(experiment, e).id for e in emails[::2])
    assert {k: f.started for k, f in by_variant.items()} == {"a": expected["a"], "b": expected["b"]}
    assert {k: f.converted for k, f in by_variant.items()} == {"a": paid["a"], "b": paid["b"]}
    assert by_variant["a"].mrr == 1000 * paid["a"] and by_variant["b"].mrr == 1200 * paid["b"]


def test_sticky_variant_prefers_the_subscription_already_in_the_experiment() -> None:
    experiment = EXPERIMENTS[(50, 50)]
    email = next(f"s{i}@example.com" for i in range(100) if assign(experiment, f"s{i}@example.com").id == "a")
    world = make_world()
    _, price = world.catalog()
    sub = world.checkout(price).subscription.model_copy(update={"experiment": {"id": experiment.id, "variant": "b"}})
    assert sticky_variant(experiment, email, [sub]).id == "b"
    assert sticky_variant(experiment, email, []).id == "a"
    assert math.isclose(sum(v.weight for v in experiment.variants), 100)


def _spy(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[object]:
    """Record what ``target.name`` answers (each call's result) while still calling it."""
    real = getattr(target, name)
    answers: list[object] = []

    def spy(*args: object, **kwargs: object) -> object:
        answer = real(*args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(target, name, spy)
    return answers


def test_the_report_reads_only_subscriptions_created_since_the_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    for n in range(3):  # on the control's price, before the experiment
        world.active_subscription(control, email=f"before{n}@example.com")
        world.clock.advance(timedelta(hours=1))
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    world.clock.advance(timedelta(minutes=5))
    emails = [f"during{n}@example.com" for n in range(4)]
    for email in emails:
        world.active_subscription(control, email=email)
    pages = _spy(monkeypatch, world.store, "list_subscriptions")
    _, figures = experiments.report(world.billing, experiment.id)
    read = [sub for page in pages for sub in page.items]  # type: ignore[attr-defined]
    assert read and all(sub.created >= experiment.created for sub in read)
    assert sum(f.started for f in figures) == sum(f.converted for f in figures) == 4


def test_a_subscription_that_moved_to_another_price_stays_in_its_variant() -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    other = create_price(world.billing, product.id, "eur", 2500, Recurring(interval=Interval.MONTH))
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    result = world.active_subscription(control, email="mover@example.com")
    assigned = result.subscription.experiment
    assert assigned is not None
    world.clock.advance(timedelta(days=3))
    change_plan(world.billing, result.subscription.id, price_id=other.id, behavior=ProrationBehavior.ALWAYS_INVOICE)
    moved = world.store.get_subscription(result.subscription.id)
    assert moved.items[0].price == other.id and moved.experiment == assigned
    invoices = world.store.list_customer_invoices(moved.customer, 100, None).items
    _, figures = experiments.report(world.billing, experiment.id)
    by_variant = {f.variant.id: f for f in figures}
    assert (by_variant[assigned["variant"]].started, by_variant[assigned["variant"]].converted) == (1, 1)
    assert by_variant[assigned["variant"]].mrr == monthly_recurring(moved, invoices)
    assert sum(f.started for f in figures) == 1


def test_two_concurrent_stops_answer_the_same_and_publish_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the running experiment before either writes: the second's versioned write loses."""
    world = make_world()
    product, control, variant = two_prices(world)
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    world.clock.advance(timedelta(hours=1))
    read_before_the_first_stop = world.store.get_experiment(experiment.id)
    first = experiments.stop(world.billing, experiment.id)
    world.clock.advance(timedelta(seconds=1))
    real_get = world.store.get_experiment
    stale = iter([read_before_the_first_stop])
    monkeypatch.setattr(world.store, "get_experiment", lambda exp_id: next(stale, None) or real_get(exp_id))
    second = experiments.stop(world.billing, experiment.id)
    assert second == first and second.status is ExperimentStatus.STOPPED
    assert len({event.id for event in world.publisher.of_type("experiment.stopped")}) == 1  # one event, one id


def test_a_stop_that_crashed_before_publishing_is_published_by_the_next_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    real_emit = world.billing.emit

    def crash(event: Any) -> None:
        raise RuntimeError("the function died after its write")

    monkeypatch.setattr(world.billing, "emit", crash)
    with pytest.raises(RuntimeError):
        experiments.stop(world.billing, experiment.id)
    assert world.store.get_experiment(experiment.id).status is ExperimentStatus.STOPPED
    assert world.publisher.of_type("experiment.stopped") == []
    monkeypatch.setattr(world.billing, "emit", real_emit)
    again = experiments.stop(world.billing, experiment.id)
    published = world.publisher.of_type("experiment.stopped")
    assert [event.data["id"] for event in published] == [experiment.id] and again.status is ExperimentStatus.STOPPED


def test_a_checkout_by_customer_id_reads_the_customer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world()
    product, control, variant = two_prices(world)
    experiment = experiments.create(
        world.billing, name="t", product=product.id, variants=[(None, control.id, 50), (None, variant.id, 50)]
    )
    first = world.active_subscription(control, email="again@example.com")
    reads = _spy(monkeypatch, world.store, "get_customer")
    again = start_checkout(world.billing, price_id=control.id, customer_id=first.customer.id)
    assert len(reads) == 1
    assert again.subscription.experiment == {"id": experiment.id, "variant": assign(experiment, "again@example.com").id}
