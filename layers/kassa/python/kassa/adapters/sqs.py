"""WorkQueue on SQS: batches of 10 (SendMessageBatch), several batches in flight at once when there
are many (the renewal sweep of a large cohort: 100,000 messages are 10,000 calls)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kassa.adapters import usage

SENDERS = 8  # SendMessageBatch calls in flight (boto3 clients are thread-safe)


class SqsQueue:
    def __init__(self, client: Any, url: str, senders: int = SENDERS) -> None:
        self._client = client
        self._url = url
        self._senders = senders

    def send(self, messages: list[dict[str, Any]]) -> None:
        chunks = [messages[start : start + 10] for start in range(0, len(messages), 10)]
        if len(chunks) <= 1 or self._senders <= 1:
            for chunk in chunks:
                self._send(chunk)
            return
        with ThreadPoolExecutor(max_workers=min(self._senders, len(chunks))) as pool:
            list(pool.map(self._send, chunks))  # the first failure is raised here

    def _send(self, chunk: list[dict[str, Any]]) -> None:
        response = self._client.send_message_batch(
            QueueUrl=self._url,
            Entries=[{"Id": str(i), "MessageBody": json.dumps(m, separators=(",", ":"))} for i, m in enumerate(chunk)],
        )
        usage.count("sqs.send_message_batch")
        if response.get("Failed"):
            raise RuntimeError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][:3]}")
