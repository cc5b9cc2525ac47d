"""Dummy scheduled function (every 60 min): enqueues a chained job and publishes a domain event."""

import json
import os

import boto3

from kassa.adapters.clock import current

CALLS: list[tuple[str, str]] = []  # (event time, virtual now)


def lambda_handler(event, context):
    now = current().now().isoformat()
    CALLS.append((event["time"], now))
    boto3.client("sqs").send_message(
        QueueUrl=os.environ["JOBS_QUEUE_URL"], MessageBody=json.dumps({"chain": True, "tick": event["time"]})
    )
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "kassa.test",
                "DetailType": "tick.fired",
                "Detail": json.dumps({"type": "tick.fired", "tick": event["time"]}),
                "EventBusName": os.environ["EVENT_BUS_NAME"],
            },
            {
                "Source": "other.app",
                "DetailType": "ignored",
                "Detail": "{}",
                "EventBusName": os.environ["EVENT_BUS_NAME"],
            },
        ]
    )
