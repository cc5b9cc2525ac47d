"""The virtual-clock scheduler: tick alignment and order, drains per tick, idle probes, monotonic time."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from local_stack_support import Probe

from infra import wiring
from kassa.adapters.clock import VirtualClock
from kassa_local.scheduler import (
    Scheduler,
    first_tick_after,
    first_tick_at_or_after,
    iso,
    parse_duration,
    parse_instant,
)
from kassa_local.stack import LocalStack

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _fn(name: str, minutes: int) -> wiring.Function:
    return wiring.Function(
        name=name, description="", timeout_s=1, schedule=wiring.Schedule(name=name, every_minutes=minutes)
    )


def expected_ticks(start: datetime, end: datetime, schedules: list[tuple[str, int]]) -> list[tuple[datetime, str]]:
    """Brute force, minute by minute: every epoch-aligned tick in (start, end], in the declared order."""
    out = []
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= end:
        minute = int(t.timestamp()) // 60
        out.extend((t, name) for name, every in schedules if minute % every == 0)
        t += timedelta(minutes=1)
    return out


class Recorder:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.log: list[tuple[str, Any]] = []

    def invoke(self, fn: wiring.Function, event: dict[str, Any]) -> None:
        assert event["time"] == iso(self.clock.now())
        assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
        self.log.append(("invoke", (self.clock.now(), fn.name)))

    def drain(self) -> None:
        self.log.append(("drain", self.clock.now()))


# -- pure --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("35d", 35 * 86400), ("90m", 5400), ("1w2d", 9 * 86400), ("1.5h", 5400), ("10s", 10), (" 2 h ", 7200)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "35", "d", "3x", "1d-2h", "soon"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_instant() -> None:
    assert parse_instant("2027-01-01T00:00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_instant("2027-01-01T01:00:00+01:00") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_instant("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)


def test_ticks_are_aligned_to_the_epoch() -> None:
    hour = timedelta(hours=1)
    assert first_tick_after(T0, hour) == T0 + hour
    assert first_tick_after(T0 + timedelta(minutes=1), hour) == T0 + hour
    assert first_tick_at_or_after(T0, hour) == T0
    assert first_tick_after(T0, timedelta(minutes=45)) == T0 + timedelta(minutes=45)  # 2030-01-01 is a multiple


def test_ticks_fire_in_time_order_across_schedules_each_followed_by_a_drain() -> None:
    clock = VirtualClock(T0 + timedelta(minutes=7))
    rec = Recorder(clock)
    sched = Scheduler(clock, [_fn("hourly", 60), _fn("q45", 45)], rec.invoke, rec.drain)
    fired = sched.advance(by=timedelta(hours=5))
    want = expected_ticks(T0 + timedelta(minutes=7), T0 + timedelta(hours=5, minutes=7), [("hourly", 60), ("q45", 45)])
    assert [(f.at, f.schedule) for f in fired] == want
    invokes = [v for k, v in rec.log if k == "invoke"]
    assert invokes == want
    # every invoke is directly followed by a drain at the same virtual time
    for i, (kind, value) in enumerate(rec.log):
        if kind == "invoke":
            assert rec.log[i + 1] == ("drain", value[0])
    assert clock.now() == T0 + timedelta(hours=5, minutes=7)


def test_consecutive_advances_fire_each_tick_once() -> None:
    clock = VirtualClock(T0)
    rec = Recorder(clock)
    sched = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain)
    first = sched.advance(by=timedelta(hours=2))
    second = sched.advance(to=T0 + timedelta(hours=4))
    assert [f.at for f in first + second] == [T0 + timedelta(hours=h) for h in (1, 2, 3, 4)]
    assert sched.advance(by=timedelta(0)) == []


def test_clock_never_goes_backwards() -> None:
    clock = VirtualClock(T0)
    rec = Recorder(clock)
    sched = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain)
    with pytest.raises(ValueError, match="backwards"):
        sched.advance(to=T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="backwards"):
        sched.advance(by=timedelta(seconds=-1))
    with pytest.raises(ValueError):
        sched.advance()
    assert clock.now() == T0 and rec.log == []


def test_idle_probe_skips_ticks_before_the_earliest_work() -> None:
    clock = VirtualClock(T0)
    rec = Recorder(clock)
    due = T0 + timedelta(hours=5, minutes=30)
    asked: list[datetime] = []

    def probe(now: datetime) -> datetime | None:
        asked.append(now)
        return due

    sched = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain, idle_probes={"hourly": probe})
    fired = sched.advance(by=timedelta(hours=8))
    assert [f.at for f in fired] == [T0 + timedelta(hours=h) for h in (6, 7, 8)]
    assert asked[0] == T0 and len(asked) == 4  # once at the start, again after each fired tick
    assert sched.skipped == 5


def test_idle_probe_without_work_fires_nothing_and_a_failing_probe_skips_nothing() -> None:
    clock = VirtualClock(T0)
    rec = Recorder(clock)
    sched = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain, idle_probes={"hourly": lambda now: None})
    assert sched.advance(by=timedelta(days=30)) == []
    assert clock.now() == T0 + timedelta(days=30)

    def broken(now: datetime) -> datetime | None:
        raise RuntimeError("probe down")

    sched = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain, idle_probes={"hourly": broken})
    assert len(sched.advance(by=timedelta(hours=3))) == 3


def test_work_created_by_another_schedule_is_picked_up_after_re_probing() -> None:
    clock = VirtualClock(T0)
    created: list[datetime] = []

    def invoke(fn: wiring.Function, event: dict[str, Any]) -> None:
        if fn.name == "q45":
            created.append(clock.now())

    sched = Scheduler(
        clock,
        [_fn("hourly", 60), _fn("q45", 45)],
        invoke,
        lambda: None,
        idle_probes={"hourly": lambda now: created[0] if created else None},
    )
    fired = sched.advance(by=timedelta(hours=2))
    # q45 fires at 00:45 and creates work; hourly wakes at its first tick after that, 01:00
    assert [(f.at, f.schedule) for f in fired] == [
        (T0 + timedelta(minutes=45), "q45"),
        (T0 + timedelta(hours=1), "hourly"),
        (T0 + timedelta(minutes=90), "q45"),
        (T0 + timedelta(hours=2), "hourly"),
    ]


def test_work_found_late_never_fires_a_tick_in_the_past() -> None:
    clock = VirtualClock(T0)
    found: list[datetime] = []

    def invoke(fn: wiring.Function, event: dict[str, Any]) -> None:
        if fn.name == "q45" and clock.now() >= T0 + timedelta(minutes=90):
            found.append(T0 + timedelta(minutes=10))  # work that was due long ago

    sched = Scheduler(
        clock,
        [_fn("hourly", 60), _fn("q45", 45)],
        invoke,
        lambda: None,
        idle_probes={"hourly": lambda now: found[0] if found else None},
    )
    fired = sched.advance(by=timedelta(hours=3))
    hourly = [f.at for f in fired if f.schedule == "hourly"]
    # hourly's 01:00 tick was skipped; the overdue work is picked up at the next tick, 02:00
    assert hourly == [T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
    assert [f.at for f in fired] == sorted(f.at for f in fired)


def test_a_failing_scheduled_handler_is_reported_and_the_advance_goes_on() -> None:
    clock = VirtualClock(T0)

    def invoke(fn: wiring.Function, event: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    sched = Scheduler(clock, [_fn("hourly", 60)], invoke, lambda: None)
    fired = sched.advance(by=timedelta(hours=2))
    assert [f.ok for f in fired] == [False, False]
    assert clock.now() == T0 + timedelta(hours=2)


def test_unknown_probe_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown schedules"):
        Scheduler(
            VirtualClock(T0), [_fn("hourly", 60)], lambda f, e: None, lambda: None, idle_probes={"x": lambda n: None}
        )


# -- on the stack ------------------------------------------------------------------------------------


def test_advance_drains_queues_at_each_tick_time(fresh: LocalStack) -> None:
    start = fresh.clock.now()
    fired = fresh.advance("3h")
    hourly = [f.at for f in fired if f.schedule == "hourly"]
    assert hourly == [t for t, name in expected_ticks(start, start + timedelta(hours=3), [("hourly", 60)])]
    assert [f.at for f in fired] == sorted(f.at for f in fired)
    assert fresh.clock.now() == start + timedelta(hours=3)
    # hourly → jobs → worker (chain) → other → worker2, all at the tick's virtual time
    seen = [(json.loads(body)["chained"]["tick"], at) for body, at in fresh.modules["worker2"].SEEN]
    assert seen == [(iso(t), t.isoformat()) for t in hourly]
    assert [now for _, now in fresh.modules["quarter"].CALLS] == [
        f.at.isoformat() for f in fired if f.schedule == "every-45"
    ]
    # the event tap saw the kassa events and not the others
    ticks = fresh.events(type="tick.fired")
    assert [e["detail"]["tick"] for e in ticks] == [iso(t) for t in hourly]
    assert all(e["source"].startswith("kassa") for e in fresh.events())
    body = requests.get(f"{fresh.api_url}/_local/events", params={"type": "tick.fired"}).json()
    assert body["count"] == len(hourly)


def test_idle_probe_on_the_stack(fresh: LocalStack, probe: Probe) -> None:
    start = fresh.clock.now()
    due = start + timedelta(hours=2, minutes=10)
    probe.fn = lambda now: due
    fired = fresh.advance("4h")
    hourly = [f.at for f in fired if f.schedule == "hourly"]
    assert hourly and all(t >= due for t in hourly)
    assert hourly == [t for t, _ in expected_ticks(due, start + timedelta(hours=4), [("hourly", 60)])]
    assert any(f.schedule == "every-45" for f in fired)  # other schedules are not affected

    probe.fn = lambda now: None
    assert [f for f in fresh.advance("3h") if f.schedule == "hourly"] == []


def test_advance_over_http_and_backwards_refused(fresh: LocalStack) -> None:
    before = fresh.clock.now()
    resp = requests.post(f"{fresh.api_url}/_local/clock/advance", json={"by": "2h"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["now"] == iso(before + timedelta(hours=2))
    assert {f["schedule"] for f in body["fired"]} <= {"hourly", "every-45"}
    assert all(set(f) >= {"schedule", "at"} for f in body["fired"])

    target = iso(before + timedelta(hours=5, minutes=30))
    assert requests.post(f"{fresh.api_url}/_local/clock/advance", json={"to": target}).json()["now"] == target
    back = requests.post(f"{fresh.api_url}/_local/clock/advance", json={"to": iso(before)})
    assert back.status_code == 400 and "backwards" in back.json()["error"]["message"]
    assert fresh.clock.now() == before + timedelta(hours=5, minutes=30)


def test_concurrent_advances_are_serialised(fresh: LocalStack) -> None:
    start = fresh.clock.now()
    results: list[list[Any]] = []

    def run() -> None:
        results.append(fresh.advance("2h"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fresh.clock.now() == start + timedelta(hours=4)
    all_ticks = [(f.at, f.schedule) for r in results for f in r]
    assert len(all_ticks) == len(set(all_ticks))
    assert sorted(all_ticks) == sorted(
        expected_ticks(start, start + timedelta(hours=4), [("hourly", 60), ("every-45", 45)])
    )


# -- held delayed messages (timers) --------------------------------------------------------------------


class HeldMessages:
    """A timer as a queue consumer is one: messages due at virtual times, released by the scheduler."""

    def __init__(self, clock: VirtualClock, due: list[datetime], log: list[tuple[str, Any]]) -> None:
        self.clock, self.due, self.log = clock, sorted(due), log

    def next_due(self) -> datetime | None:
        return self.due[0] if self.due else None

    def release(self, now: datetime) -> int:
        assert now == self.clock.now()
        ready = [d for d in self.due if d <= now]
        self.due = [d for d in self.due if d > now]
        self.log.append(("release", (now, len(ready))))
        if ready and now < T0 + timedelta(minutes=50):  # a released message may schedule another
            self.due = sorted([*self.due, now + timedelta(minutes=20)])
        return len(ready)


def test_held_messages_are_released_at_their_time_in_order_with_the_ticks() -> None:
    clock = VirtualClock(T0)
    rec = Recorder(clock)
    held = HeldMessages(clock, [T0 + timedelta(minutes=1), T0 + timedelta(minutes=61)], rec.log)
    scheduler = Scheduler(clock, [_fn("hourly", 60)], rec.invoke, rec.drain, timers=[held])
    scheduler.advance(by=timedelta(hours=2))
    releases = [entry for kind, entry in rec.log if kind == "release"]
    ticks = [entry for kind, entry in rec.log if kind == "invoke"]
    # released at their own times (not at the next tick); one released at 1 min scheduled one at 21 and 41
    assert releases == [(T0 + timedelta(minutes=m), n) for m, n in ((1, 1), (21, 1), (41, 1), (61, 2))]
    assert ticks == [(T0 + timedelta(hours=1), "hourly"), (T0 + timedelta(hours=2), "hourly")]
    order = [at for kind, entry in rec.log if kind in ("release", "invoke") for at in [entry[0]]]
    assert order == sorted(order)  # one timeline: held messages and ticks interleaved by time
    drains = [entry for kind, entry in rec.log if kind == "drain"]
    assert {at for at, _ in releases} <= set(drains)  # each release is drained at its virtual time
    assert clock.now() == T0 + timedelta(hours=2) and held.next_due() is None
