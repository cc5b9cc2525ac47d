"""Counts of billable calls made by this process (read by the benchmark and the handlers' metrics)."""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_units: dict[str, float] = {}


def count(name: str, n: int = 1) -> None:
    with _lock:
        _counts[name] += n


def units(kind: str, value: float) -> None:
    with _lock:
        _units[kind] = _units.get(kind, 0.0) + value


def snapshot() -> dict[str, float]:
    with _lock:
        return {
            **{f"calls.{k}": float(v) for k, v in _counts.items()},
            **{f"units.{k}": float(v) for k, v in _units.items()},
        }


def reset() -> None:
    with _lock:
        _counts.clear()
        _units.clear()
