"""Dummy SQS consumer of `other`: records what it got and when (virtual time)."""

from kassa.adapters.clock import current

SEEN: list[tuple[str, str]] = []


def lambda_handler(event, context):
    for record in event["Records"]:
        SEEN.append((record["body"], current().now().isoformat()))
    return {"batchItemFailures": []}
