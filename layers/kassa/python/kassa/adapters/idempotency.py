"""Idempotency records of the merchant API on the billing table (Powertools' DynamoDB persistence layer).

One item per key: ``pk`` = ``IDEMP#<prefix>#<sha256 of (account, Idempotency-Key)>``, ``sk`` =
``IDEMP``, with Powertools' attributes renamed to the table's: ``expires_at`` (the table's TTL
attribute, epoch seconds), ``in_progress_expires_at`` (epoch milliseconds: the invocation's
deadline), ``status`` (``INPROGRESS`` | ``COMPLETED``), ``response`` (the stored response, JSON) and
``request_hash`` (sha256 of route + body). See docs/data-model.md.

Imported only by a request that carries an ``Idempotency-Key`` (the utility adds ~4 ms to an import of
the resolver and boto3), so a cold start without one pays nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from kassa.adapters import container

RECORD_PREFIX = "IDEMP#"
RECORD_SK = "IDEMP"


class BillingTablePersistence(DynamoDBPersistenceLayer):
    """Powertools' layer with one partition per key.

    With a sort key, Powertools' composite key is ``{pk: static value, sk: key}`` — every record of
    the API under one partition key. The billing table keys each entity by its own ``pk`` (as
    ``WHEVT#<id>`` / ``EVENT``), so the key goes into ``pk`` and ``sk`` is a constant. Every read and
    write of the layer (get, conditional put, update, delete) builds its key here."""

    def _get_key(self, idempotency_key: str) -> dict[str, Any]:
        return {self.key_attr: {"S": f"{RECORD_PREFIX}{idempotency_key}"}, str(self.sort_key_attr): {"S": RECORD_SK}}


def persistence() -> BillingTablePersistence:
    env = container.env()
    return _persistence(env.require("billing_table"), env.aws_endpoint_url)


@lru_cache(maxsize=8)
def _persistence(table: str, endpoint: str | None) -> BillingTablePersistence:
    # cached: each layer registers a user-agent hook on the (shared, cached) DynamoDB client
    return BillingTablePersistence(
        table_name=table,
        key_attr="pk",
        sort_key_attr="sk",
        expiry_attr="expires_at",
        in_progress_expiry_attr="in_progress_expires_at",
        status_attr="status",
        data_attr="response",
        validation_key_attr="request_hash",
        boto3_client=container.client("dynamodb"),
    )
