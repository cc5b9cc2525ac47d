"""The API's idempotency records on the billing table (``kassa.adapters.idempotency``).

The merchant API's ``Idempotency-Key`` (``kassa.api.idempotency``) stores its records through
Powertools' persistence-layer interface (``save_inprogress`` = the claim, ``save_success`` = the
completion, ``get_record``, ``delete_record`` = the release of a 5xx), implemented by
``BillingTablePersistence`` on the billing table. The API only ever runs on DynamoDB (there is no
in-memory API container), so this contract runs on a private moto table with the billing table's
schema from ``infra/wiring.py``: the record's key and TTL attribute are the table's, a claim is
conditional, a completed record replays, other parameters are refused, a released key runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyValidationError,
)

from infra import wiring
from kassa.adapters import container
from kassa.adapters import idempotency as records
from kassa.api import idempotency as api_idempotency
from kassa_local.aws import create_table

pytestmark = pytest.mark.integration


@pytest.fixture
def billing(ddb: Any, uid: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, Any]]:
    table = dataclasses.replace(wiring.BILLING_TABLE, name=f"contract-idem-{uid}")
    create_table(ddb, table)
    monkeypatch.setattr(container, "client", lambda service: ddb)
    layer = records._persistence.__wrapped__(table.name, None)  # the layer the API builds, uncached
    layer.configure(
        IdempotencyConfig(
            event_key_jmespath="[account, key]",
            payload_validation_jmespath="[route, body]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=api_idempotency.TTL_S,
            hash_function="sha256",
        ),
        function_name=api_idempotency.KEY_PREFIX,
        key_prefix=api_idempotency.KEY_PREFIX,
    )
    try:
        yield layer, table.name, ddb
    finally:
        ddb.delete_table(TableName=table.name)


def request(key: str, body: Any = None, route: str = "POST /v1/checkout") -> dict[str, Any]:
    return {"account": hashlib.sha256(b"Bearer ksk_test").hexdigest(), "key": key, "route": route, "body": body}


def items(ddb: Any, table: str) -> list[dict[str, Any]]:
    return list(ddb.scan(TableName=table, ConsistentRead=True)["Items"])  # a private test table


def test_a_claim_is_one_item_keyed_and_expiring_as_the_table_declares(billing: tuple[Any, str, Any]) -> None:
    layer, table, ddb = billing
    layer.save_inprogress(request("k1", {"price": "price_1"}), remaining_time_in_millis=30_000)
    [item] = items(ddb, table)
    assert item["pk"]["S"].startswith(f"{records.RECORD_PREFIX}{api_idempotency.KEY_PREFIX}#")
    assert item["sk"]["S"] == records.RECORD_SK
    assert item["status"]["S"] == "INPROGRESS"
    ttl = wiring.BILLING_TABLE.ttl_attribute
    assert ttl is not None and ttl in item
    assert abs(int(item[ttl]["N"]) - (time.time() + api_idempotency.TTL_S)) < 120  # epoch seconds, 24 h
    assert int(item["in_progress_expires_at"]["N"]) > time.time() * 1000  # epoch ms: the invocation deadline
    # the key hashes (account, Idempotency-Key): the same key under another API key is another record
    other = {**request("k1", {"price": "price_1"}), "account": "0" * 64}
    layer.save_inprogress(other, remaining_time_in_millis=30_000)
    assert len(items(ddb, table)) == 2


def test_a_second_claim_of_a_key_in_progress_is_refused(billing: tuple[Any, str, Any]) -> None:
    layer, _, _ = billing
    layer.save_inprogress(request("k2", {"a": 1}), remaining_time_in_millis=30_000)
    with pytest.raises(IdempotencyItemAlreadyExistsError):
        layer.save_inprogress(request("k2", {"a": 1}), remaining_time_in_millis=30_000)


def test_a_completed_record_replays_and_refuses_other_parameters(billing: tuple[Any, str, Any]) -> None:
    layer, _, _ = billing
    first = request("k3", {"price": "price_1"})
    layer.save_inprogress(first, remaining_time_in_millis=30_000)
    answer = {"status": 201, "content_type": "application/json", "headers": {}, "body": '{"id": "sub_1"}'}
    layer.save_success(first, answer)
    with pytest.raises(IdempotencyItemAlreadyExistsError):  # completed: no second claim
        layer.save_inprogress(first, remaining_time_in_millis=30_000)
    record = layer.get_record(first)
    assert record is not None and record.status == "COMPLETED"
    assert record.response_json_as_dict() == answer
    with pytest.raises(IdempotencyValidationError):  # another body under the key
        layer.get_record(request("k3", {"price": "price_2"}))
    with pytest.raises(IdempotencyValidationError):  # another route under the key
        layer.get_record(request("k3", {"price": "price_1"}, route="POST /v1/customers"))


def test_a_released_key_runs_again(billing: tuple[Any, str, Any]) -> None:
    layer, table, ddb = billing
    data = request("k4", {"x": 1})
    layer.save_inprogress(data, remaining_time_in_millis=30_000)
    layer.delete_record(data, RuntimeError("a 5xx: not stored"))
    assert items(ddb, table) == []
    with pytest.raises(IdempotencyItemNotFoundError):
        layer.get_record(data)
    layer.save_inprogress(data, remaining_time_in_millis=30_000)  # the retry claims it afresh
