"""EventPublisher on an EventBridge bus: source ``kassa``, detail-type = the event name."""

from __future__ import annotations

import json
from typing import Any

from kassa.adapters import usage
from kassa.domain.events import DomainEvent

SOURCE = "kassa"


class EventBridgePublisher:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(self, events: list[DomainEvent]) -> None:
        for start in range(0, len(events), 10):  # PutEvents takes at most 10 entries
            chunk = events[start : start + 10]
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": event.type,
                    "Detail": json.dumps(event.model_dump(mode="json"), separators=(",", ":")),
                    "EventBusName": self._bus,
                    "Time": event.created,
                }
                for event in chunk
            ]
            response = self._client.put_events(Entries=entries)
            usage.count("events.put_events")
            usage.count("events.entries", len(entries))
            if response.get("FailedEntryCount"):
                failed = [e for e in response.get("Entries", []) if e.get("ErrorCode")]
                # raising makes the caller's message retry; event ids are deterministic, so
                # consumers dedupe the ones that did go through
                raise RuntimeError(f"EventBridge refused {len(failed)} events: {failed[:3]}")


class NullPublisher:
    """For functions that publish nothing (their wiring grants no PutEvents)."""

    def publish(self, events: list[DomainEvent]) -> None:
        if events:
            raise RuntimeError("this function is not wired to publish events")
