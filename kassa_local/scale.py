"""``kassa bench --scenario scale``: a cohort of subscriptions due in the same hour, renewed by a pool
of workers against a rate-limited fake Stripe, in virtual time (seconds of simulated wall time cost
milliseconds), in one process.

What runs is kassa's own code: the renewal sweep (``renewals.sweep``) over the in-memory store, the
renewal use case (``renewals.process_due``) per message, ``StripeGateway`` with the stripe SDK, its
429 retries and the shared token bucket (``MemoryTokenBucket``, the in-memory twin of the DynamoDB
bucket every Lambda instance shares). Only the network is simulated: ``FakeStripe`` is a stripe
``HTTPClient`` that answers in process, lets at most ``limit`` requests through in each second of
virtual time and answers the others 429 (Stripe's ``rate_limit`` error), and takes ``latency``
virtual seconds per answer.

Workers are simulated one after the other in order of when they are free (a discrete-event
simulation): each takes a batch of up to 10 messages (the SQS batch size) and renews them one by
one; its Stripe calls happen at its own virtual time. Workers interleave at batch boundaries, so
requests reach the fake Stripe slightly out of time order; the per-second figures below are counted
afterwards over the exact request times.
"""

from __future__ import annotations

import heapq
import json
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import stripe

from kassa.adapters import usage
from kassa.adapters.memory import MemoryStore
from kassa.adapters.ratelimit import MemoryTokenBucket, Rate
from kassa.adapters.stripe_gateway import STRIPE_BUDGETS, STRIPE_RATE_LIMITS, StripeGateway
from kassa.domain.customer import Address
from kassa.domain.errors import Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.periods import Interval
from kassa.services import renewals
from kassa.services.catalog import create_price, create_product
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.context import BillingContext

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # the cohort falls due between 09:00 and 10:00
BATCH_SIZE = 10


class VirtualTime:
    """Seconds since the epoch that move only when something sleeps (or a worker is resumed)."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class VirtualClock:
    """kassa's clock port on the virtual time."""

    def __init__(self, vt: VirtualTime) -> None:
        self._vt = vt

    def now(self) -> datetime:
        return self._vt.datetime()


class CountedStore(MemoryStore):
    """The in-memory store with DynamoDB's one serial point modelled: the gapless invoice-number
    counter. A renewal's transaction reads the counter and writes it conditionally, so the table
    commits one numbered invoice per round trip (GetItem + TransactWriteItems, ~25 ms): at most
    ``counter_rate`` a second, whatever the number of workers. The wait is virtual time."""

    def __init__(self, counter: MemoryTokenBucket | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counter = counter

    def renew(self, *args: Any, **kwargs: Any) -> Any:
        if self._counter is not None:
            self._counter.acquire()
        return super().renew(*args, **kwargs)


class CountingPublisher:
    def __init__(self) -> None:
        self.types: Counter[str] = Counter()

    def publish(self, events: list[DomainEvent]) -> None:
        self.types.update(e.type for e in events)


class FakeStripe(stripe.HTTPClient):  # type: ignore[misc]
    """Stripe in process: canned objects for the calls a checkout and a renewal make, ``limit``
    requests a second (of virtual time) at most, 429 ``rate_limit`` for the rest."""

    name = "kassa-fake-stripe"

    def __init__(self, vt: VirtualTime, limit: int, latency: float = 0.3) -> None:
        super().__init__()
        self._vt = vt
        self.limit = limit
        self.latency = latency
        self._windows: Counter[int] = Counter()
        self.accepted: list[float] = []  # virtual times of the requests let through
        self.rejected = 0
        self._seq = 0

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_sim{self._seq:07d}"

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        now = self._vt.time()
        window = int(now)
        if self._windows[window] >= self.limit:
            self.rejected += 1
            self._vt.sleep(0.01)
            error = {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}
            return json.dumps({"error": error}), 429, {"request-id": "req_sim"}
        self._windows[window] += 1
        self.accepted.append(now)
        self._vt.sleep(self.latency)
        path = urlsplit(url).path
        form = parse_qs(post_data.decode() if isinstance(post_data, bytes) else (post_data or ""))
        return json.dumps(self._answer(method.upper(), path, form)), 200, {"request-id": "req_sim"}

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - kassa never streams
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _answer(self, method: str, path: str, form: dict[str, list[str]]) -> dict[str, Any]:
        parts = path.strip("/").split("/")  # v1, resource, [id], [action]
        resource = parts[1] if len(parts) > 1 else ""
        if resource == "customers":
            return {"id": parts[2] if len(parts) > 2 else self._id("cus"), "object": "customer", "metadata": {}}
        if resource == "setup_intents":
            intent_id = parts[2] if len(parts) > 2 else self._id("seti")
            return {
                "id": intent_id,
                "object": "setup_intent",
                "client_secret": f"{intent_id}_secret",
                "status": "succeeded",
                "payment_method": "pm_card_visa",
                "payment_method_types": ["card"],
                "metadata": {},
            }
        if resource == "payment_methods":
            card = {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}
            return {"id": parts[2], "object": "payment_method", "type": "card", "card": card}
        if resource == "payment_intents":
            metadata = {k[9:-1]: v[0] for k, v in form.items() if k.startswith("metadata[")}
            return {
                "id": self._id("pi"),
                "object": "payment_intent",
                "status": "succeeded",
                "amount": int(form.get("amount", ["0"])[0]),
                "currency": form.get("currency", ["eur"])[0],
                "metadata": metadata,
            }
        raise ValueError(f"the fake Stripe has no {method} {path}")

    def busiest_second(self) -> int:
        """The most requests let through in any one-second window (sliding, exact times)."""
        times = sorted(self.accepted)
        return max((bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


@dataclass
class Figures:
    subscriptions: int
    workers: int
    stripe_limit: int
    bucket: str
    renewed: int = 0
    virtual_seconds: float = 0.0
    sweeps: int = 0
    enqueued: int = 0
    enqueued_twice: int = 0
    redelivered: int = 0
    failed_payments: int = 0
    dunning_steps: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def report(self, stripe_fake: FakeStripe, counts: dict[str, float], cpu_seconds: float) -> dict[str, Any]:
        return {
            "subscriptions": self.subscriptions,
            "workers": self.workers,
            "stripe_limit_per_s": self.stripe_limit,
            "kassa_bucket": self.bucket,
            "renewed": self.renewed,
            "outcomes": dict(self.outcomes),
            "virtual_minutes_to_renew_all": round(self.virtual_seconds / 60, 1),
            "renewals_per_s": round(self.renewed / self.virtual_seconds, 1) if self.virtual_seconds else 0.0,
            "max_stripe_requests_in_one_s": stripe_fake.busiest_second(),
            "stripe_requests": len(stripe_fake.accepted),
            "stripe_429s": stripe_fake.rejected,
            "kassa_retries_after_429": int(counts.get("calls.stripe.retries", 0)),
            "sweeps": self.sweeps,
            "enqueued": self.enqueued,
            "enqueued_twice": self.enqueued_twice,
            "redelivered_after_unavailable": self.redelivered,
            "failed_payments": self.failed_payments,
            "dunning_steps": self.dunning_steps,
            "cpu_seconds": round(cpu_seconds, 1),
        }


def _cohort(ctx: BillingContext, store: CountedStore, vt: VirtualTime, n: int) -> list[str]:
    """One subscription through the checkout (against the fake Stripe), then ``n - 1`` copies of it
    and its customer under new ids, all due in the hour after START."""
    product = create_product(ctx, "Scale box")
    from kassa.domain.catalog import Recurring

    price = create_price(ctx, product.id, "eur", 1999, Recurring(interval=Interval.MONTH))
    started = start_checkout(
        ctx, price_id=price.id, email="scale-0@example.com", name="Scale", address=Address(country="NL")
    )
    assert started.setup_intent is not None
    complete_checkout(ctx, started.subscription.id, started.setup_intent.id)
    first = store.get_subscription(started.subscription.id)
    customer = store.get_customer(first.customer)
    due = first.current_period_end
    ids = [first.id]
    for i in range(1, n):
        cus = customer.model_copy(update={"id": f"cus_scale{i:07d}", "email": f"scale-{i}@example.com"})
        store.create_customer(cus)
        sub_id = f"sub_scale{i:07d}"
        # spread over the hour the first one falls due in (whole seconds, as the due index keeps them)
        offset = timedelta(seconds=(i * 3599 // max(1, n - 1)))
        period = {"current_period_end": due + offset, "billing_cycle_anchor": first.billing_cycle_anchor + offset}
        store.create_subscription(first.model_copy(update={"id": sub_id, "customer": cus.id, **period}), None, "KASSA")
        ids.append(sub_id)
    vt.now = (due + timedelta(hours=1)).timestamp()  # the sweep at the top of the next hour
    return ids


def simulate(
    n: int = 100_000,
    *,
    workers: int = 25,
    mode: str = "live",
    use_bucket: bool = True,
    latency: float = 0.3,
    kassa_seconds: float = 0.05,
    sweep_limit: int | None = None,
    duplicate_every: int = 0,
    shards: int = 4,
    max_sweeps: int = 48,
    counter_rate: float | None = 40.0,
) -> tuple[dict[str, Any], CountedStore]:
    """Renew a cohort of ``n`` subscriptions due in the same hour; answer the figures and the store.

    ``workers``: renewal workers at once (the SQS event source's maximum concurrency).
    ``use_bucket``: pace Stripe calls through the shared token bucket (False: only 429 retries).
    ``kassa_seconds``: virtual seconds of kassa's own work per renewal (its DynamoDB writes).
    ``duplicate_every``: deliver every k-th message twice (SQS at-least-once).
    ``counter_rate``: numbered invoices the table commits a second (``CountedStore``; None: no limit).
    """
    from infra import wiring

    cpu = time.process_time()
    vt = VirtualTime(START)
    limit = STRIPE_RATE_LIMITS[mode]
    fake = FakeStripe(vt, limit, latency)
    bucket = MemoryTokenBucket(STRIPE_BUDGETS[mode], clock=vt.time, sleep=vt.sleep, max_wait=10.0)
    gateway = StripeGateway(
        f"sk_{mode}_simulated",
        "pk_simulated",
        "https://stripe.simulated",
        local=False,
        limiter=bucket if use_bucket else None,
        sleep=vt.sleep,
        http_client=fake,
    )
    counter = (
        MemoryTokenBucket(Rate(rate=counter_rate), clock=vt.time, sleep=vt.sleep, max_wait=3600.0)
        if counter_rate
        else None
    )
    store = CountedStore(counter, due_shards=shards)
    publisher = CountingPublisher()
    ctx = BillingContext(store, gateway, publisher, VirtualClock(vt))
    _cohort(ctx, store, vt, n)
    usage.reset()
    publisher.types.clear()
    fake.accepted.clear()
    fake.rejected = 0
    budget: Rate = STRIPE_BUDGETS[mode]
    figures = Figures(
        n, workers, limit, f"{budget.rate:g}/s, burst {budget.burst}" if use_bucket else "none (429 retries only)"
    )
    limit_per_sweep = sweep_limit or wiring.renewals_per_sweep(min(budget.rate, counter_rate or budget.rate))
    queue: deque[dict[str, Any]] = deque()
    seen: Counter[str] = Counter()
    start = vt.now
    next_sweep = vt.now
    free: list[tuple[float, int]] = [(vt.now, w) for w in range(workers)]
    heapq.heapify(free)

    def sweep() -> None:
        sent: list[dict[str, Any]] = []

        class Collect:
            def send(self, messages: list[dict[str, Any]]) -> None:
                sent.extend(messages)

        figures.sweeps += 1
        renewals.sweep(ctx, Collect(), shards, limit_per_sweep)
        for k, message in enumerate(sent):
            seen[message["subscription"]] += 1
            queue.append(message)
            if duplicate_every and k % duplicate_every == 0:
                queue.append(message)
        figures.enqueued += len(sent)

    batches: dict[int, deque[dict[str, Any]]] = {w: deque() for w in range(workers)}
    while True:
        at, worker = heapq.heappop(free)
        if at >= next_sweep:
            vt.now = next_sweep
            sweep()
            next_sweep += wiring.SWEEP_EVERY_MINUTES * 60
        batch = batches[worker]
        if not batch:
            if not queue:
                # every message taken is done or in a worker's batch: finished, or idle until the next sweep
                if any(batches.values()):
                    heapq.heappush(free, (at + 1.0, worker))
                    continue
                if not store.all_due(vt.datetime()) or figures.sweeps >= max_sweeps:
                    break
                heapq.heappush(free, (next_sweep, worker))
                continue
            batch.extend(queue.popleft() for _ in range(min(BATCH_SIZE, len(queue))))
        # one renewal per turn, so that workers' Stripe calls reach the bucket nearly in time order
        vt.now = at
        message = batch.popleft()
        try:
            outcome = renewals.process_due(ctx, message["subscription"])
        except Unavailable:  # back on the queue, delivered again after its visibility timeout
            figures.redelivered += 1
            queue.append(message)
            vt.sleep(1.0)
        else:
            figures.outcomes[outcome] += 1
            vt.sleep(kassa_seconds)
        heapq.heappush(free, (vt.now, worker))
        figures.virtual_seconds = max(figures.virtual_seconds, vt.now - start)
    invoices = [i for i in store.invoices.values() if i.created.timestamp() >= start]
    figures.renewed = sum(1 for i in invoices if i.status is InvoiceStatus.PAID)
    figures.failed_payments = sum(1 for i in invoices if i.attempt_count > 0 and i.status is not InvoiceStatus.PAID)
    figures.dunning_steps = publisher.types["invoice.payment_failed"]
    figures.enqueued_twice = sum(1 for c in seen.values() if c > 1)
    report = figures.report(fake, usage.snapshot(), time.process_time() - cpu)
    report["invoice_numbers_per_s_at_most"] = counter_rate
    return report, store
