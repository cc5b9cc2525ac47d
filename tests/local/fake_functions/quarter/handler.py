"""Dummy scheduled function (every 45 min): only records its calls."""

from kassa.adapters.clock import current

CALLS: list[tuple[str, str]] = []


def lambda_handler(event, context):
    CALLS.append((event["time"], current().now().isoformat()))
    return {"ok": True}
