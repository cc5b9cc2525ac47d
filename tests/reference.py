"""Stripe's own example objects (shared/reference/stripe-fixtures3.json) as bases for events."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

CANDIDATES = [
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "stripe-fixtures3.json",
    Path(__file__).resolve().parent / "fixtures" / "stripe-fixtures3.json",
]


@cache
def _fixtures() -> dict[str, Any]:
    for path in CANDIDATES:
        if path.exists():
            return json.loads(path.read_text())["resources"]
    raise FileNotFoundError("stripe-fixtures3.json not found")


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_fixtures()[kind])
    obj.update(overrides)
    return obj


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str, created: int = 1_700_000_000) -> dict[str, Any]:
    event = copy.deepcopy(_fixtures()["event"])
    event.update(id=event_id, type=event_type, created=created, data={"object": obj})
    return event
