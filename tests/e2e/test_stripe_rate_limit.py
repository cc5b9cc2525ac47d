"""On the local stack every function that calls Stripe takes its slots from the one token bucket on
the billing table (``RATELIMIT#stripe``), paced at test mode's budget, and the flows work through it."""

from __future__ import annotations

import time

import boto3

from kassa.adapters.stripe_gateway import STRIPE_BUDGETS
from kassa_local.client import Api


def test_a_checkout_takes_its_stripe_calls_from_the_shared_bucket(api: Api, stack_config) -> None:
    before = time.time()
    price = api.catalog()
    done = api.subscribe(price["id"], "rita.ratelimit@example.com")
    after = time.time()

    assert done["subscription"]["status"] == "active"
    db = boto3.client("dynamodb", endpoint_url=stack_config["aws_endpoint_url"], region_name="us-east-1")
    table = db.list_tables()["TableNames"][0]
    item = db.get_item(TableName=table, Key={"pk": {"S": "RATELIMIT#stripe"}, "sk": {"S": "BUCKET"}})["Item"]
    next_slot = int(item["tat"]["N"]) / 1_000_000  # the bucket's next free slot (seconds since the epoch)
    budget = STRIPE_BUDGETS["test"]  # localstripe is reached with a test key
    assert before < next_slot <= after + budget.burst / budget.rate
