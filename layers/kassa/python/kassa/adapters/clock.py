"""The clock port's adapters: the system clock in AWS, a virtual clock on the local stack and in tests.

The domain never reads the time itself; services get ``now`` from the clock returned by ``current()``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("the virtual clock needs an aware datetime (UTC)")
        self._now = start.astimezone(UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("the virtual clock needs an aware datetime (UTC)")
        with self._lock:
            if when < self._now:
                raise ValueError("the virtual clock never goes backwards")
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            if delta < timedelta(0):
                raise ValueError("the virtual clock never goes backwards")
            self._now = self._now + delta
            return self._now


_installed: SystemClock | VirtualClock = SystemClock()


def current() -> SystemClock | VirtualClock:
    """The process-wide clock. The local stack installs its virtual clock with ``install``."""
    return _installed


def install(clock: SystemClock | VirtualClock) -> None:
    global _installed
    _installed = clock
