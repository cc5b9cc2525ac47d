"""WorkQueue on SQS."""

from __future__ import annotations

import json
from typing import Any

from kassa.adapters import usage


class SqsQueue:
    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self._url = url

    def send(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(m, separators=(",", ":"))} for i, m in enumerate(chunk)
                ],
            )
            usage.count("sqs.send_message_batch")
            if response.get("Failed"):
                raise RuntimeError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][:3]}")
