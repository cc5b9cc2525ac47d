"""Dummy API handler: echoes the proxy event it received (or misbehaves on request)."""

import base64
import json

from kassa.adapters.clock import current

EVENTS: list[dict] = []


def lambda_handler(event, context):
    EVENTS.append(event)
    path = event["path"]
    if path == "/v1/boom":
        raise RuntimeError("boom")
    if path == "/v1/binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream"},
            "body": base64.b64encode(b"\x00\xff\x10").decode(),
            "isBase64Encoded": True,
        }
    body = {
        "event": event,
        "now": current().now().isoformat(),
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "aws_request_id": context.aws_request_id,
        },
    }
    return {
        "statusCode": 201 if event["httpMethod"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "X-Single": "one"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
