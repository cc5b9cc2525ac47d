"""The BillingStore contract for price experiments: one running experiment per product, found by
its product; stopping saves under the version and frees the product; listed newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kassa.domain.errors import AlreadyExists, Conflict, NotFound
from kassa.domain.experiments import Experiment, ExperimentStatus, Variant, stop_experiment

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def experiment(n: int, product: str = "prod_x") -> Experiment:
    return Experiment(
        id=f"exp_c{n}",
        name=f"test {n}",
        product=product,
        currency="EUR",
        variants=(
            Variant(id="a", name="A", price="price_a", weight=50),
            Variant(id="b", name="B", price="price_b", weight=50),
        ),
        created=T0 + timedelta(seconds=n),
    )


def test_one_running_experiment_per_product(store: Any) -> None:
    assert store.running_experiment("prod_x") is None
    store.put_experiment(experiment(0))
    assert store.get_experiment("exp_c0") == experiment(0)
    assert store.running_experiment("prod_x") == experiment(0)
    with pytest.raises(AlreadyExists) as raised:
        store.put_experiment(experiment(1))
    assert raised.value.param == "product"
    store.put_experiment(experiment(2, product="prod_y"))
    assert store.running_experiment("prod_y") == experiment(2, product="prod_y")
    with pytest.raises(NotFound):
        store.get_experiment("exp_nope")


def test_stopping_frees_the_product_under_the_version(store: Any) -> None:
    store.put_experiment(experiment(0))
    stored = store.get_experiment("exp_c0")
    saved = store.stop_experiment(stop_experiment(stored, T0 + timedelta(days=1)))
    assert saved.status is ExperimentStatus.STOPPED and saved.version == stored.version + 1
    assert store.get_experiment("exp_c0") == saved
    assert store.running_experiment("prod_x") is None
    with pytest.raises(Conflict):
        store.stop_experiment(stop_experiment(stored, T0 + timedelta(days=2)))  # a stale version
    store.put_experiment(experiment(1))
    assert store.running_experiment("prod_x") == experiment(1)


def test_experiments_are_listed_newest_first(store: Any) -> None:
    for n in range(3):
        store.put_experiment(experiment(n, product=f"prod_{n}"))
    first = store.list_experiments(2, None)
    assert [e.id for e in first.items] == ["exp_c2", "exp_c1"] and first.has_more
    rest = store.list_experiments(2, "exp_c1")
    assert [e.id for e in rest.items] == ["exp_c0"] and not rest.has_more
