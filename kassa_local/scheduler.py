"""Fires the wiring's schedules from the virtual clock.

EventBridge Scheduler runs ``rate(N minutes)`` schedules; locally nothing fires on its own: time only
moves when ``advance`` is called, and every tick that falls in ``(now, target]`` fires on the way,
in time order across all schedules, each followed by a drain of the queues, so that everything a
tick causes happens at that tick's virtual time.

Ticks are aligned to the Unix epoch: a schedule of every N minutes ticks at every multiple of N
minutes since 1970-01-01T00:00:00Z (hourly on the hour, daily at midnight UTC).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from infra import wiring
from kassa.adapters.clock import VirtualClock

log = logging.getLogger("kassa_local.scheduler")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

class Timer(Protocol):
    """Something due at a virtual time (a queue consumer's held delayed messages)."""

    def next_due(self) -> datetime | None: ...
    def release(self, now: datetime) -> int: ...


IdleProbe = Callable[[datetime], datetime | None]
"""``probe(now)`` → the earliest time at which the schedule's handler would find work, or None if
none is known. Ticks before that time are skipped (the handler would have found nothing due)."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``"35d"``, ``"90m"``, ``"1w2d"``, ``"1.5h"`` → timedelta (units s, m, h, d, w)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, e.g. 35d")
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """ISO-8601 → aware UTC datetime (``Z`` accepted; a naive time is taken as UTC)."""
    when = datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def first_tick_after(when: datetime, period: timedelta) -> datetime:
    """The first epoch-aligned tick strictly after ``when``."""
    return EPOCH + ((when - EPOCH) // period + 1) * period


def first_tick_at_or_after(when: datetime, period: timedelta) -> datetime:
    k, rest = divmod(when - EPOCH, period)
    return EPOCH + (k if rest == timedelta(0) else k + 1) * period


@dataclass(frozen=True)
class ScheduledFunction:
    function: wiring.Function
    schedule: wiring.Schedule

    @property
    def period(self) -> timedelta:
        return timedelta(minutes=self.schedule.every_minutes)


@dataclass(frozen=True)
class FiredTick:
    schedule: str
    function: str
    at: datetime
    ok: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "function": self.function, "at": iso(self.at), "ok": self.ok}


def scheduler_event(schedule: wiring.Schedule, at: datetime) -> dict[str, Any]:
    """What EventBridge Scheduler sends to a Lambda target (with the default input)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": iso(at),
        "region": "us-east-1",
        "resources": [f"arn:aws:scheduler:us-east-1:123456789012:schedule/default/{schedule.name}"],
        "detail": {},
    }


class Scheduler:
    """Advances the virtual clock tick by tick.

    ``invoke(function, event)`` runs a handler; ``drain()`` delivers every queued message
    synchronously; ``exclusive`` is held for the whole advance (the stack passes the lock that
    pauses the background pollers), and concurrent advances wait for each other.
    """

    def __init__(
        self,
        clock: VirtualClock,
        functions: Sequence[wiring.Function],
        invoke: Callable[[wiring.Function, dict[str, Any]], Any],
        drain: Callable[[], object],
        *,
        idle_probes: Mapping[str, IdleProbe] | None = None,
        exclusive: Callable[[], Any] | None = None,
        timers: Sequence[Timer] = (),
    ) -> None:
        """``timers``: held delayed messages (``QueueConsumer``), released when their time comes."""
        self.clock = clock
        self.timers = tuple(timers)
        self.scheduled = [ScheduledFunction(fn, fn.schedule) for fn in functions if fn.schedule is not None]
        names = [s.schedule.name for s in self.scheduled]
        unknown = set(idle_probes or {}) - set(names)
        if unknown:
            raise ValueError(f"idle probes for unknown schedules: {sorted(unknown)}")
        self.idle_probes = dict(idle_probes or {})
        self._invoke = invoke
        self._drain = drain
        self._exclusive = exclusive
        self._lock = threading.Lock()
        self.skipped = 0  # ticks in advanced windows not fired thanks to idle probes (cumulative)

    def next_ticks(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [
            {
                "schedule": s.schedule.name,
                "function": s.function.name,
                "every_minutes": s.schedule.every_minutes,
                "next": iso(first_tick_after(now, s.period)),
            }
            for s in self.scheduled
        ]

    def advance(self, by: timedelta | None = None, to: datetime | None = None, deliveries: int = 1) -> list[FiredTick]:
        """``deliveries`` > 1 fires every tick that many times with the same event (EventBridge
        Scheduler delivers at least once): the handlers must do their work once."""
        if (by is None) == (to is None):
            raise ValueError("advance needs exactly one of by= or to=")
        if not 1 <= deliveries <= 5:
            raise ValueError("deliveries must be between 1 and 5")
        with self._lock:
            if self._exclusive is not None:
                with self._exclusive():
                    return self._advance(by, to, deliveries)
            return self._advance(by, to, deliveries)

    def _next_timer(self, target: datetime) -> tuple[datetime, Timer] | None:
        """The earliest held message due by ``target``, with its timer."""
        found: tuple[datetime, Timer] | None = None
        for timer in self.timers:
            due = timer.next_due()
            if due is not None and due <= target and (found is None or due < found[0]):
                found = (due, timer)
        return found

    def _probe(self, s: ScheduledFunction) -> tuple[bool, datetime | None]:
        """(skip allowed, earliest due) for a schedule; a failing probe disables skipping."""
        probe = self.idle_probes.get(s.schedule.name)
        if probe is None:
            return False, None
        try:
            return True, probe(self.clock.now())
        except Exception:
            log.exception("idle probe for %s failed; firing every tick", s.schedule.name)
            return False, None

    def _advance(self, by: timedelta | None, to: datetime | None, deliveries: int = 1) -> list[FiredTick]:
        start = self.clock.now()
        if to is None:
            assert by is not None
            if by < timedelta(0):
                raise ValueError("the virtual clock never goes backwards")
            target = start + by
        else:
            if to.tzinfo is None:
                raise ValueError("advance(to=...) needs an aware datetime")
            target = to.astimezone(UTC)
            if target < start:
                raise ValueError(f"the virtual clock never goes backwards (now {iso(start)}, to {iso(target)})")
        # the next tick of each schedule not fired yet; ticks at or before `start` belong to the past
        pending = {s.schedule.name: first_tick_after(start, s.period) for s in self.scheduled}
        probes: dict[str, tuple[bool, datetime | None]] = {}
        fired: list[FiredTick] = []
        while True:
            best: tuple[datetime, int, ScheduledFunction] | None = None
            now = self.clock.now()
            for order, s in enumerate(self.scheduled):
                # ticks skipped before the current time stay in the past, even if work shows up
                tick = max(pending[s.schedule.name], first_tick_at_or_after(now, s.period))
                if s.schedule.name not in probes:
                    probes[s.schedule.name] = self._probe(s)
                skip, due = probes[s.schedule.name]
                if skip:
                    if due is None:
                        continue  # nothing due as far as the probe knows: no tick of it fires
                    tick = max(tick, first_tick_at_or_after(due, s.period))
                if tick <= target and (best is None or (tick, order) < best[:2]):
                    best = (tick, order, s)
            timer = self._next_timer(target)
            if timer is not None and (best is None or timer[0] <= best[0]):
                self.clock.set(max(timer[0], now))
                timer[1].release(self.clock.now())
                self._drain()
                probes.clear()
                continue
            if best is None:
                break
            tick, _, s = best
            skipped = (tick - pending[s.schedule.name]) // s.period
            self.skipped += skipped
            self.clock.set(tick)
            ok = True
            event = scheduler_event(s.schedule, tick)
            for _ in range(deliveries):
                try:
                    self._invoke(s.function, event)
                except Exception:
                    ok = False
                    log.exception("scheduled handler %s failed at %s", s.function.name, iso(tick))
                self._drain()
            fired.append(FiredTick(s.schedule.name, s.function.name, tick, ok))
            pending[s.schedule.name] = tick + s.period
            probes.clear()  # the fired tick may have created or done work: ask again
        for s in self.scheduled:  # ticks left unfired at the end were skipped too
            tick = pending[s.schedule.name]
            if tick <= target:
                self.skipped += (target - tick) // s.period + 1
        if target > self.clock.now():
            self.clock.set(target)
        return fired
