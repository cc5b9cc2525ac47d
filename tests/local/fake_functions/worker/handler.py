"""Dummy SQS consumer of `jobs`: fails bodies containing "fail", raises on "raise", forwards "chain"."""

import json
import os

import boto3

from kassa.adapters.clock import current

BATCHES: list[list[dict]] = []
SEEN: list[tuple[str, str]] = []  # (body, virtual time)


def lambda_handler(event, context):
    records = event["Records"]
    BATCHES.append(records)
    failures = []
    for record in records:
        body = record["body"]
        SEEN.append((body, current().now().isoformat()))
        if "raise" in body:
            raise RuntimeError("the whole batch fails")
        if "fail" in body:
            failures.append({"itemIdentifier": record["messageId"]})
        if "chain" in body:
            boto3.client("sqs").send_message(
                QueueUrl=os.environ["OTHER_QUEUE_URL"], MessageBody=json.dumps({"chained": json.loads(body)})
            )
    return {"batchItemFailures": failures}
