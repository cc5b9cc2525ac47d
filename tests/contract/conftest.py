"""The ``store`` fixture of the BillingStore contract: each test runs once per implementation.

* ``memory``: a fresh ``kassa.adapters.memory.MemoryStore`` (no AWS at all: ``-k memory`` runs
  without starting anything).
* ``dynamodb``: a ``DynamoStore`` on a private table of the integration tests' moto server (the
  local stack of ``tests/integration/conftest.py``, one per process), with the billing table's
  schema from ``infra/wiring.py``, dropped after the test.

``tests`` is not a package: pytest puts ``tests/`` on ``sys.path`` for the packages ``contract`` and
``integration``, so the integration fixtures are imported as ``integration.conftest`` (the very
module pytest loads as that directory's conftest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from integration import conftest as integration
from integration.conftest import ddb, stack, uid  # noqa: F401 - fixtures, re-registered for tests/contract

from infra import wiring
from kassa.adapters.dynamodb import DynamoStore
from kassa.adapters.memory import MemoryStore
from kassa_local.aws import create_table

HERE = Path(__file__).resolve().parent

STORES = [pytest.param("memory", id="memory"), pytest.param("dynamodb", id="dynamodb", marks=pytest.mark.integration)]


@contextmanager
def billing_table(request: pytest.FixtureRequest, name: str) -> Iterator[tuple[Any, str]]:
    """(client, table name): a private table with the billing table's schema on the integration tests'
    moto server (started only when a DynamoDB test runs), dropped afterwards."""
    client = request.getfixturevalue("ddb")
    table = dataclasses.replace(wiring.BILLING_TABLE, name=name)
    create_table(client, table)
    try:
        yield client, table.name
    finally:
        client.delete_table(TableName=table.name)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, uid: str) -> Iterator[Any]:  # noqa: F811 - the fixture above
    if request.param == "memory":
        yield MemoryStore(due_shards=wiring.DUE_SHARDS)
        return
    with billing_table(request, f"contract-{uid}") as (client, table):
        yield DynamoStore(client, table, wiring.DUE_SHARDS)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the local stack right after the last contract test, as tests/integration does for its
    own (other directories start stacks of their own; ``stop`` is idempotent)."""
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        for running in list(integration._running):
            running.stop()
