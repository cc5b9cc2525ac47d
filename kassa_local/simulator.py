"""``kassa simulate``: years of billing in seconds — the deployed services in one process, no servers.

The very code the Lambda functions run — the renewal sweep and worker's ``kassa.services.renewals``,
``kassa.services.dunning`` (sweep and notifications), ``kassa.services.webhooks`` (ingest and
processing of Stripe events), ``kassa.services.checkout`` and ``kassa.services.cancellation`` — over
the in-memory store (``kassa.adapters.memory.MemoryStore``), an in-memory Stripe
(``kassa_local.memory_gateway``) and the virtual clock. The wiring's schedules fire from the clock
through the local stack's ``Scheduler`` (every hourly tick on which something is due, in order);
messages go through in-memory queues with SQS's semantics (at-least-once, a failed record is
delivered again, up to the queue's ``max_receive_count``, then kept as a dead letter); domain events
go through an in-memory bus that routes ``wiring.EVENT_ROUTES`` to the notifications queue, as
EventBridge does; Stripe's webhooks go through ``webhooks.ingest`` and the webhook queue.

With ``faults`` on, every boundary fails the way AWS and Stripe do (``kassa_local.faults``), from
the seed. Afterwards the invariants are computed from Stripe's record (the gateway's charges) and
the store, never from the services' own counters (``kassa_local.sim_invariants``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

from infra import wiring
from kassa.adapters.analytics import MemoryAnalytics
from kassa.adapters.clock import VirtualClock
from kassa.adapters.memory import MemoryOutbox, MemoryStore
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.catalog import Price, Recurring
from kassa.domain.customer import SUPPORTED_LOCALES, Address
from kassa.domain.events import DomainEvent
from kassa.domain.periods import Interval
from kassa.domain.pricing import PriceTerms
from kassa.domain.subscription import Status, Subscription
from kassa.services.context import BillingContext
from kassa.services.ports import OutgoingEmail
from kassa.services.tax import TaxQuoter, engine_quoter
from kassa_local.faults import FaultPlan, FaultyGateway, FaultyStore
from kassa_local.memory_gateway import DeclineModel, MemoryGateway, uniform
from kassa_local.scheduler import Scheduler, parse_instant

DEFAULT_SCENARIO = Path(__file__).with_name("scenarios") / "default.json"
WEBHOOK_SECRET = "whsec_simulator"
LINK_SECRET = "simulator-link-key"
PUBLIC_URL = "http://127.0.0.1:8000"
MAX_TRIES = 6  # a storefront call that failed is tried again this many times (the customer clicks again)
STRIPE_RETRY = timedelta(hours=1)  # a webhook that was not taken (5xx) is sent again (Stripe backs off)
WEBHOOK_DELAY_MAX_S = 6 * 3600  # a delayed webhook arrives up to six hours late


# ---------------------------------------------------------------------------------------- scenario
@dataclass(frozen=True)
class Plan:
    product: str
    currency: str
    terms: PriceTerms
    interval: Interval
    interval_count: int
    weight: float
    quantity: tuple[int, int]


@dataclass(frozen=True)
class Country:
    country: str
    state: str | None
    currency: str
    locale: str
    weight: float


@dataclass(frozen=True)
class Scenario:
    name: str
    start: datetime
    signup_days: int
    plans: tuple[Plan, ...]
    countries: tuple[Country, ...]

    @classmethod
    def load(cls, path: Path | str | None = None) -> Scenario:
        """A scenario file, or a stack's ``kassa export --history`` file (``scenario_of_history``)."""
        source = Path(path) if path is not None else DEFAULT_SCENARIO
        raw = json.loads(source.read_text())
        if isinstance(raw, dict) and raw.get("object") == HISTORY_OBJECT:
            return cls.parse(scenario_of_history(raw, name=source.stem))
        if not isinstance(raw, dict):
            raise ValueError("scenario: a JSON object is expected")
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Scenario:
        """A scenario from its JSON (docs/simulator.md); a mistake is a ValueError naming the field."""

        def need(obj: dict[str, Any], key: str, where: str) -> Any:
            if key not in obj:
                raise ValueError(f"scenario: {where}.{key} is missing")
            return obj[key]

        plans = []
        for i, p in enumerate(need(raw, "plans", "scenario")):
            where = f"plans[{i}]"
            terms_raw = {k: p[k] for k in TERMS if p.get(k) is not None}
            try:
                terms = PriceTerms.model_validate(terms_raw)
            except Exception as error:
                raise ValueError(f"scenario: {where} has invalid price terms: {error}") from None
            qty = p.get("quantity", 1)
            low, high = (qty, qty) if isinstance(qty, int) else (int(qty[0]), int(qty[1]))
            if not 1 <= low <= high:
                raise ValueError(f"scenario: {where}.quantity must be n or [low, high] with 1 <= low <= high")
            plans.append(
                Plan(
                    product=str(need(p, "product", where)),
                    currency=str(need(p, "currency", where)).upper(),
                    terms=terms,
                    interval=Interval(p.get("interval", "month")),
                    interval_count=int(p.get("interval_count", 1)),
                    weight=float(p.get("weight", 1)),
                    quantity=(low, high),
                )
            )
        countries = []
        for i, c in enumerate(need(raw, "countries", "scenario")):
            where = f"countries[{i}]"
            countries.append(
                Country(
                    country=str(need(c, "country", where)).upper(),
                    state=c.get("state"),
                    currency=str(need(c, "currency", where)).upper(),
                    locale=str(c.get("locale", "en")),
                    weight=float(c.get("weight", 1)),
                )
            )
        for i, c in enumerate(countries):
            if c.locale not in SUPPORTED_LOCALES:
                raise ValueError(f"scenario: countries[{i}].locale must be one of {', '.join(SUPPORTED_LOCALES)}")
        currencies = {p.currency for p in plans}
        for i, c in enumerate(countries):
            if c.currency not in currencies:
                raise ValueError(f"scenario: countries[{i}].currency {c.currency} has no plan")
        if not plans or not countries:
            raise ValueError("scenario: at least one plan and one country")
        return cls(
            name=str(raw.get("name", "scenario")),
            start=parse_instant(str(raw.get("start", "2026-01-31T09:00:00Z"))),
            signup_days=int(raw.get("signup_days", 28)),
            plans=tuple(plans),
            countries=tuple(countries),
        )


HISTORY_OBJECT = "kassa_history"  # what `kassa export --history` writes (kassa_local/export.py)
TERMS = ("unit_amount", "unit_amount_decimal", "billing_scheme", "tiers_mode", "tiers", "transform_quantity")
#: a customer's email language from their country (the export has no locale: no personal data)
COUNTRY_LOCALES = {
    "DE": "de", "AT": "de", "CH": "de", "LI": "de", "FR": "fr", "LU": "fr", "MC": "fr", "NL": "nl", "BE": "nl",
    "ES": "es", "IT": "it", "SM": "it", "PL": "pl", "SE": "sv",
}  # fmt: skip


def scenario_of_history(raw: dict[str, Any], name: str = "export") -> dict[str, Any]:
    """A stack's history export as a scenario (its JSON, for ``Scenario.parse``): the merchant's own
    catalog and mix. Plans: the recurring licensed prices, weighted by the subscriptions whose first
    item is on them, each drawing its quantity between the least and the most bought (with no
    subscription at all: every active price, alike). Countries: the customers' countries and
    currencies, weighted by their number, in the country's email language (the export keeps no
    locale, state or address). Signups start at the first subscription's creation and spread over
    the days to the last (1–365). Metered prices and customers without a country, or in a currency
    no plan has, are left out."""
    products = {p.get("id"): p.get("name") or p.get("id") for p in raw.get("products", [])}
    prices = {
        p["id"]: p
        for p in raw.get("prices", [])
        if isinstance(p, dict) and "id" in p and (p.get("recurring") or {}).get("usage_type", "licensed") == "licensed"
    }
    bought: dict[str, list[int]] = {}
    created = []
    for sub in raw.get("subscriptions", []):
        items = sub.get("items") or []
        items = items.get("data", []) if isinstance(items, dict) else items
        if items and items[0].get("price") in prices:
            bought.setdefault(items[0]["price"], []).append(max(int(items[0].get("quantity") or 1), 1))
        if sub.get("created"):
            created.append(parse_instant(str(sub["created"])))
    chosen = list(bought) or [i for i, p in prices.items() if p.get("active", True)]
    plans = []
    for price_id in chosen:
        price, quantities = prices[price_id], bought.get(price_id, [1])
        recurring = price.get("recurring") or {}
        plans.append(
            {
                "product": str(products.get(price.get("product")) or price.get("product") or price_id),
                "currency": str(price.get("currency", "")).upper(),
                "interval": recurring.get("interval", "month"),
                "interval_count": recurring.get("interval_count", 1),
                "weight": len(bought.get(price_id, [1])),
                "quantity": [min(quantities), max(quantities)],
                **{k: price[k] for k in TERMS if price.get(k) is not None},
            }
        )
    currencies = {p["currency"] for p in plans}
    counted: dict[tuple[str, str], int] = {}
    for customer in raw.get("customers", []):
        country, currency = customer.get("country"), str(customer.get("currency") or "").upper()
        if country and currency in currencies:
            key = (str(country).upper(), currency)
            counted[key] = counted.get(key, 0) + 1
    countries = [
        {"country": c, "currency": cur, "locale": COUNTRY_LOCALES.get(c, "en"), "weight": n}
        for (c, cur), n in sorted(counted.items())
    ]
    if not plans:
        raise ValueError("scenario: the export has no recurring licensed price to sell (plans)")
    if not countries:
        raise ValueError(
            "scenario: the export has no customer with a country paying in a plan's currency "
            f"({', '.join(sorted(currencies))}) (countries)"
        )
    start = min(created) if created else parse_instant(str(raw.get("from", "2026-01-31T09:00:00Z")))
    span = (max(created) - start).days if created else 28
    return {
        "name": f"{name} (a stack's history, as of {str(raw.get('as_of') or raw.get('to') or '')[:10]})",
        "start": start.isoformat(),
        "signup_days": min(max(span, 1), 365),
        "plans": plans,
        "countries": countries,
    }


def _pick(items: tuple[Any, ...], u: float) -> Any:
    total = sum(i.weight for i in items)
    pick = u * total
    for item in items:
        pick -= item.weight
        if pick < 0:
            return item
    return items[-1]


# ---------------------------------------------------------------------------------------- transport
RecordHandler = Callable[[dict[str, Any], int], object]  # (body, receives before this one) -> outcome


@dataclass
class SimQueue:
    """An SQS queue and its Lambda event source mapping, in memory: batches of ``batch_size`` (the
    function's trigger in ``infra/wiring.py``), each one invocation of the function; a record that
    raises is delivered again until ``max_receive_count`` receives, then kept in ``dead``."""

    name: str
    handler: Callable[[], RecordHandler]  # one invocation: the record handler of one batch
    faults: FaultPlan
    max_receive_count: int = 5
    batch_size: int = 10
    messages: deque[tuple[dict[str, Any], int]] = field(default_factory=deque)
    dead: list[dict[str, Any]] = field(default_factory=list)
    redriven: int = 0
    delivered: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def send(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend((m, 0) for m in messages)

    def redrive(self) -> int:
        """Move the dead letters back (the operator's "Start DLQ redrive" after the alarm)."""
        moved, self.dead = self.dead, []
        self.redriven += len(moved)
        self.send(moved)
        return len(moved)

    def deliver(self) -> int:
        """Deliver one batch; returns its size."""
        batch = [self.messages.popleft() for _ in range(min(self.batch_size, len(self.messages)))]
        if not batch:
            return 0
        if self.faults.roll("sqs.reorder"):
            self.faults.rng.shuffle(batch)
        handler = self.handler()
        for body, receives in batch:
            self.delivered += 1
            try:
                handler(body, receives)
            except Exception as error:  # the record is reported failed (batchItemFailures)
                self.failures[type(error).__name__] += 1
                if receives + 1 >= self.max_receive_count:
                    self.dead.append(body)
                else:
                    self.messages.append((body, receives + 1))
                continue
            if self.faults.roll("sqs.redelivery"):  # at-least-once: delivered again
                self.messages.append((body, receives + 1))
        return len(batch)


class SimBus:
    """The EventBridge bus: counts every domain event and routes the customer-facing ones
    (``wiring.EVENT_ROUTES``) to their queue as EventBridge envelopes."""

    def __init__(self, queues: dict[str, SimQueue], faults: FaultPlan) -> None:
        self.queues = queues
        self.faults = faults
        self.routes: dict[str, list[str]] = {}  # an event type may go to several queues (rules)
        for route in wiring.EVENT_ROUTES:
            for detail_type in route.detail_types:
                self.routes.setdefault(detail_type, []).append(route.queue)
        self.counts: Counter[str] = Counter()

    def publish(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.counts[event.type] += 1
            queues = self.routes.get(event.type, [])
            if not queues:
                continue
            envelope = {
                "version": "0",
                "id": event.id,
                "detail-type": event.type,
                "source": "kassa",
                "time": event.created.isoformat(),
                "detail": event.model_dump(mode="json"),
            }
            for queue in queues:
                if queue not in self.queues:  # a consumer the simulator does not run
                    continue
                copies = 2 if self.faults.roll("eventbridge.duplicate") else 1
                self.queues[queue].send([envelope] * copies)


@dataclass
class CountingMailer:
    """SES, in memory: counts what was handed over by template."""

    sent: Counter[str] = field(default_factory=Counter)

    def send(self, email: OutgoingEmail, sender: str) -> str:
        self.sent[email.template] += 1
        return f"sim-{sum(self.sent.values())}"


def _verify(payload: str, header: str | None, secret: str) -> dict[str, Any]:
    """Signatures are not simulated (``kassa.adapters.stripe_webhooks`` verifies them in AWS)."""
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("not an object")
    return event


# ---------------------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class SimOptions:
    subscriptions: int = 100
    months: int = 12
    seed: int = 1
    decline_rate: float = 0.05
    churn_rate: float = 0.03
    faults: bool = False
    fault_scale: float = 1.0  # every fault's chance (kassa_local.faults.DEFAULT_RATES) times this
    scenario: Scenario | None = None


class Progress:
    """A one-line progress bar on a terminal (nothing when ``out`` is None)."""

    def __init__(self, out: TextIO | None, start: datetime, end: datetime) -> None:
        self.out, self.start, self.end = out, start, end
        self._last = 0.0

    def show(self, now: datetime, renewals: int, force: bool = False) -> None:
        if self.out is None:
            return
        tick = time.perf_counter()
        if not force and tick - self._last < 0.2:
            return
        self._last = tick
        share = min(1.0, (now - self.start) / (self.end - self.start)) if self.end > self.start else 1.0
        bar = "#" * int(share * 30)
        self.out.write(f"\r  [{bar:<30}] {share:4.0%} {now:%Y-%m-%d}  renewals {renewals:,}")
        self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Reproducible ids (``kassa.domain.ids.new_id`` draws from a seeded generator) and no wall-clock
    sleeps between retries of a contended write (the simulated process does not wait)."""
    from kassa.domain import ids
    from kassa.services import analytics, context

    saved_secrets, saved_pauses = ids.secrets, (context.retry_pause, analytics.retry_pause)
    ids.secrets = SimpleNamespace(choice=random.Random(f"ids:{seed}").choice)  # type: ignore[assignment]
    context.retry_pause = analytics.retry_pause = lambda attempt: None  # type: ignore[assignment]
    try:
        yield
    finally:
        ids.secrets = saved_secrets  # type: ignore[assignment]
        context.retry_pause, analytics.retry_pause = saved_pauses  # type: ignore[assignment]


class Simulation:
    def __init__(self, options: SimOptions, progress: TextIO | None = None) -> None:
        self.options = options
        self.scenario = options.scenario or Scenario.load()
        seed = options.seed
        self.start = self.scenario.start
        self.end = _add_months(self.start, options.months)
        self.clock = VirtualClock(self.start)
        self.memory = MemoryStore(due_shards=wiring_due_shards())
        self.stripe = MemoryGateway(seed=seed, declines=DeclineModel(rate=options.decline_rate, seed=seed))
        self.faults = FaultPlan(seed=seed, enabled=options.faults)
        self.faults.rates = {k: min(1.0, v * options.fault_scale) for k, v in self.faults.rates.items()}
        self.store: Any = FaultyStore(self.memory, self.faults) if options.faults else self.memory
        self.gateway: Any = FaultyGateway(self.stripe, self.faults) if options.faults else self.stripe
        self.tax: TaxQuoter = engine_quoter()
        self.outbox = MemoryOutbox()
        self.analytics = MemoryAnalytics()  # the analytics function's aggregates (docs/analytics.md)
        self.mailer = CountingMailer()
        # the queues whose consumer the simulator runs (outbound merchant webhooks have no endpoint here)
        handlers = {q.name: (q, self._handler(q.name)) for q in wiring.QUEUES}
        self.queues = {
            name: SimQueue(name, handler, self.faults, q.max_receive_count, batch_size=_batch_size(name))
            for name, (q, handler) in handlers.items()
            if handler is not None
        }
        self.bus = SimBus(self.queues, self.faults)
        self.webhooks: list[tuple[datetime, int, str]] = []  # (due, order, payload): on their way from Stripe
        self._order = 0
        self.outcomes: Counter[str] = Counter()  # what the handlers answered (for the report, not the invariants)
        self.errors: Counter[str] = Counter()  # storefront calls and sweeps that raised, by exception
        self.checkouts = Counter[str]()
        self.prices: list[Price] = []
        self.progress = Progress(progress, self.start, self.end)
        functions = [f for f in wiring.FUNCTIONS if f.schedule is not None]
        self.scheduler = Scheduler(
            self.clock,
            functions,
            self._invoke,
            self.drain,
            idle_probes={
                "renewal-sweep": self.memory.next_due_after,
                "dunning-sweep": self.memory.next_dunning_after,
                "webhook-route": lambda now: None,  # no merchant endpoint here: the route is never behind
            },
        )

    # --------------------------------------------------------------- the functions, in process
    def billing(self, with_gateway: bool = True) -> BillingContext:
        """One context per invocation, as ``kassa.adapters.container.billing`` builds in a Lambda."""
        return BillingContext(self.store, self.gateway if with_gateway else None, self.bus, self.clock, self.tax)

    def dunning(self) -> Any:
        from kassa.services.dunning import Dunning

        return Dunning(
            self.billing(), self.outbox, self.mailer, sender=wiring.DEFAULT_EMAIL_FROM, link_secret=LINK_SECRET,
            public_url=PUBLIC_URL,
        )  # fmt: skip

    def _handler(self, queue: str) -> Callable[[], RecordHandler] | None:
        """The queue's function: for each invocation (a batch), its record handler."""
        from kassa.services import analytics as service
        from kassa.services import renewals, webhooks

        def renewal(body: dict[str, Any], receives: int) -> object:
            outcome = renewals.process_due(self.billing(), body["subscription"], redelivered=receives > 0)
            self.outcomes[f"renewal:{outcome}"] += 1
            return outcome

        def webhook(body: dict[str, Any], receives: int) -> object:
            outcome = webhooks.process_recorded_event(body, self.billing())
            self.outcomes[f"webhook:{outcome.split(':')[0]}"] += 1
            return outcome

        def notification(body: dict[str, Any], receives: int) -> object:
            outcome = self.dunning().handle_event(body)
            self.outcomes[f"notification:{str(outcome).split(':')[0]}"] += 1
            return outcome

        def analytics() -> RecordHandler:  # functions/analytics/handler.py: one Batch per invocation
            batch = service.Batch(self.store, self.analytics)

            def record(body: dict[str, Any], receives: int) -> object:
                outcome = batch.handle(body)
                self.outcomes[f"analytics:{outcome.split(':')[0]}"] += 1
                return outcome

            return record

        def same(handler: RecordHandler) -> Callable[[], RecordHandler]:
            return lambda: handler

        return {
            wiring.RENEWAL_QUEUE.name: same(renewal),
            wiring.WEBHOOK_QUEUE.name: same(webhook),
            wiring.NOTIFICATION_QUEUE.name: same(notification),
            wiring.ANALYTICS_QUEUE.name: analytics,
        }.get(queue)

    def _invoke(self, fn: wiring.Function, event: dict[str, Any]) -> object:
        """A scheduled function; one that fails is counted (the next tick finds the work still due)."""
        try:
            return self._scheduled(fn)
        except Exception as error:
            self.errors[f"{fn.name}:{type(error).__name__}"] += 1
            return None

    def _scheduled(self, fn: wiring.Function) -> object:
        from kassa.services import renewals

        shards = wiring_due_shards()
        if fn.name == "renewal_sweep":  # functions/renewal_sweep/handler.py
            ctx = self.billing(with_gateway=False)
            for shard in range(shards):
                messages = renewals.due_work(ctx, shard)
                if messages:
                    self.queues[wiring.RENEWAL_QUEUE.name].send(messages)
            return None
        if fn.name == "dunning":  # functions/dunning/handler.py, the schedule's branch
            for outcome, count in self.dunning().sweep(shards).items():
                self.outcomes[f"dunning:{outcome.split(':')[0]}"] += count
            return None
        if fn.name == "webhook_delivery":  # the webhook-route check: no merchant endpoint here
            return None
        raise RuntimeError(f"the simulator does not run the {fn.name} schedule")

    # --------------------------------------------------------------- Stripe's webhooks
    def _take_webhooks(self) -> None:
        now = self.clock.now()
        for event in self.stripe.take_webhooks():
            payload = json.dumps(event, separators=(",", ":"))
            due = now
            if self.faults.roll("webhook.delay"):
                due = now + timedelta(seconds=self.faults.rng.randrange(60, WEBHOOK_DELAY_MAX_S))
            self._schedule_webhook(due, payload)
            if self.faults.roll("webhook.duplicate"):
                self._schedule_webhook(due + timedelta(seconds=self.faults.rng.randrange(0, 3600)), payload)

    def _schedule_webhook(self, due: datetime, payload: str) -> None:
        self._order += 1
        self.webhooks.append((due, self._order, payload))

    def _deliver_webhooks(self, flush: bool = False) -> int:
        """POST every webhook that is due to the webhook_ingest function's service."""
        from kassa.services import webhooks

        self._take_webhooks()
        now = self.clock.now()
        due = [w for w in self.webhooks if flush or w[0] <= now]
        if not due:
            return 0
        self.webhooks = [w for w in self.webhooks if not (flush or w[0] <= now)]
        due.sort(key=lambda w: (w[0], w[1]))
        if self.faults.roll("webhook.reorder"):
            self.faults.rng.shuffle(due)
        queue = self.queues[wiring.WEBHOOK_QUEUE.name]
        for _, _, payload in due:
            try:
                outcome = webhooks.ingest(
                    payload, "t=0,v1=simulated", store=self.store, queue=queue, secret=WEBHOOK_SECRET,
                    clock=self.clock, verify=_verify,
                )  # fmt: skip
                retry = not outcome.accepted and outcome.http_status >= 500
            except Exception as error:  # a 5xx to Stripe
                self.errors[f"webhook_ingest:{type(error).__name__}"] += 1
                retry = True
            if retry:  # Stripe sends it again later
                self._schedule_webhook(now + STRIPE_RETRY, payload)
        return len(due)

    def drain(self) -> None:
        """Deliver until nothing is left to deliver now (what a tick causes happens at its time)."""
        for _ in range(100_000):
            moved = self._deliver_webhooks()
            for queue in self.queues.values():
                while queue.messages:
                    moved += queue.deliver()
            if not moved and not self.stripe.outgoing:
                break
        self.progress.show(self.clock.now(), self.memory_renewals())

    def memory_renewals(self) -> int:
        return self.outcomes["renewal:paid"] + self.outcomes["renewal:open"]

    # --------------------------------------------------------------- the storefront and the customers
    def _try(self, what: str, call: Callable[[], Any]) -> Any:
        """A storefront request, tried again when it fails (the customer clicks again)."""
        for _ in range(MAX_TRIES):
            try:
                return call()
            except Exception as error:
                self.errors[f"{what}:{type(error).__name__}"] += 1
                self.drain()  # what the failed request did publish still travels
        return None

    def create_catalog(self) -> list[Price]:
        from kassa.services.catalog import create_price, create_product

        ctx = self.billing()
        products: dict[str, str] = {}
        prices = []
        for plan in self.scenario.plans:
            if plan.product not in products:
                products[plan.product] = create_product(ctx, plan.product).id
            recurring = Recurring(interval=plan.interval, interval_count=plan.interval_count)
            prices.append(create_price(ctx, products[plan.product], plan.currency, plan.terms, recurring))
        self.prices = prices  # in the scenario's order of plans
        return prices

    def signup(self, n: int, prices: list[Price]) -> None:
        from kassa.services.checkout import complete_checkout, start_checkout

        seed = self.options.seed
        country = _pick(self.scenario.countries, uniform(seed, "country", n))
        choices = tuple(p for p in self.scenario.plans if p.currency == country.currency)
        plan = _pick(choices, uniform(seed, "plan", n))
        price = prices[self.scenario.plans.index(plan)]
        low, high = plan.quantity
        quantity = low + int(uniform(seed, "quantity", n) * (high - low + 1))
        email = f"customer{n}@sim.example"
        address = Address(country=country.country, state=country.state)

        def start() -> Any:
            ctx = self.billing()
            known = self.memory.find_customer_by_email(email)
            if known is not None:  # a retry after the customer was created: the storefront passes its id
                return start_checkout(ctx, price_id=price.id, quantity=quantity, customer_id=known.id)
            return start_checkout(
                ctx, price_id=price.id, quantity=quantity, email=email, name=f"Customer {n}", address=address,
                locale=country.locale,
            )  # fmt: skip

        started = self._try("checkout", start)
        self.drain()
        if started is None:
            self.checkouts["failed"] += 1
            return
        # Stripe.js confirms the card in the browser; the storefront then completes the checkout, and
        # Stripe's setup_intent.succeeded webhook does the same — whichever comes first
        self.stripe.confirm_setup_intent(started.setup_intent.id)
        completed = self._try(
            "checkout_complete",
            lambda: complete_checkout(self.billing(), started.subscription.id, started.setup_intent.id),
        )
        self.drain()
        self.checkouts["completed" if completed is not None else "not_completed"] += 1

    def redrive(self) -> None:
        """The DLQ alarm fired and the operator redrives (docs/operations.md): monthly, and at the end."""
        if any(q.redrive() for q in self.queues.values()):
            self.drain()

    def churn(self, month: int) -> None:
        """Each live subscription cancels at its period end with ``churn_rate``."""
        for sub in sorted(self.memory.subscriptions.values(), key=lambda s: s.id):
            live = sub.status in (Status.ACTIVE, Status.PAST_DUE) and not sub.cancel_at_period_end
            if live and uniform(self.options.seed, "churn", sub.id, month) < self.options.churn_rate:
                done = self._try("cancel", partial(self._cancel, sub.id))
                self.outcomes["cancel:requested" if done is not None else "cancel:failed"] += 1
        self.drain()

    def _cancel(self, subscription_id: str) -> Subscription:
        from kassa.services.cancellation import cancel

        return cancel(self.billing(), subscription_id, at_period_end=True, details=CancellationDetails())

    # --------------------------------------------------------------- main
    def run(self) -> dict[str, Any]:
        from kassa_local.sim_invariants import check

        t0, c0 = time.perf_counter(), time.process_time()
        with _deterministic(self.options.seed):
            self.faults.active = False  # the merchant's catalog is set up before the customers come
            prices = self.create_catalog()
            self.faults.active = True
            seed, spread = self.options.seed, self.scenario.signup_days * 86400
            signups = sorted(
                (self.start + timedelta(seconds=int(uniform(seed, "signup", n) * spread)), n)
                for n in range(self.options.subscriptions)
            )
            marks = [(_add_months(self.start, k), -k) for k in range(1, self.options.months + 1)]
            for when, what in sorted(signups + marks):
                if when > self.clock.now():
                    self.scheduler.advance(to=when)
                if what >= 0:
                    self.signup(what, prices)
                else:
                    self.redrive()
                    if -what < self.options.months:
                        self.churn(-what)
            if self.end > self.clock.now():
                self.scheduler.advance(to=self.end)
            self._deliver_webhooks(flush=True)  # what Stripe still had on its way arrives
            self.drain()
            self.redrive()
        self.progress.show(self.clock.now(), self.memory_renewals(), force=True)
        self.progress.done()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return self.report(check(self.memory, self.stripe, self.clock.now(), outbox=self.outbox), wall, cpu)

    def report(self, invariants: dict[str, Any], wall: float, cpu: float) -> dict[str, Any]:
        invoices = [i for i in self.memory.invoices.values() if i.number is not None]
        renewals = [i for i in invoices if i.billing_reason.value == "subscription_cycle"]
        charges = self.stripe.succeeded()
        revenue: Counter[str] = Counter()
        for inv in invoices:
            if inv.status.value == "paid":
                revenue[inv.currency] += inv.amount_paid
        failed = [i for i in invoices if i.first_failed_at is not None]
        recovered = [i for i in failed if i.status.value == "paid"]
        statuses = Counter(s.status.value for s in self.memory.subscriptions.values())
        months = analytics_months(self.analytics, self.clock.now())
        consistent = months == mrr_by_month(self.memory, self.clock.now())
        return {
            "seed": self.options.seed,
            "scenario": self.scenario.name,
            "subscriptions": self.options.subscriptions,
            "months": self.options.months,
            "faults": self.options.faults,
            "decline_rate": self.options.decline_rate,
            "churn_rate": self.options.churn_rate,
            "renewals": len(renewals),
            "invoices": len(invoices),
            "invoices_paid": sum(1 for i in invoices if i.status.value == "paid"),
            "charges_succeeded": len(charges),
            "charges_declined": sum(1 for c in self.stripe.intents.values() if c.status != "succeeded"),
            "revenue": dict(sorted(revenue.items())),
            "dunning": {
                "invoices_failed": len(failed),
                "recovered": len(recovered),
                "recovery_rate": round(len(recovered) / len(failed), 3) if failed else None,
                "emails": dict(sorted(self.mailer.sent.items())),
            },
            "mrr_by_month": months,
            # the analytics function's incremental aggregates, batch by batch, against a rebuild from the store
            "analytics_consistent": consistent,
            "subscription_statuses": dict(sorted(statuses.items())),
            "checkouts": dict(self.checkouts),
            "events_published": sum(self.bus.counts.values()),
            "dead_letters": {name: len(q.dead) for name, q in self.queues.items()},
            "redriven": {name: q.redriven for name, q in self.queues.items()},
            "record_failures": {name: dict(q.failures) for name, q in self.queues.items() if q.failures},
            "errors": dict(sorted(self.errors.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "faults_injected": dict(sorted(self.faults.injected.items())),
            **invariants,
            "ok": invariants["ok"] and consistent,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),  # the process's CPU time: what the figure is on an idle machine
            "renewals_per_s": round(len(renewals) / wall, 1) if wall > 0 else None,
        }


def _batch_size(queue: str) -> int:
    """The batch size of the function the queue triggers (``wiring.FUNCTIONS``' queue triggers)."""
    for fn in wiring.FUNCTIONS:
        if fn.queue_trigger is not None and fn.queue_trigger.queue == queue:
            return fn.queue_trigger.batch_size
    raise KeyError(f"no function is triggered by the {queue} queue")


def wiring_due_shards() -> int:
    """The due and dunning indexes' shards, as a function without ``KASSA_DUE_SHARDS`` has them."""
    from kassa.adapters.container import Env

    return Env().due_shards


def _add_months(when: datetime, months: int) -> datetime:
    from kassa.domain.periods import boundary

    return boundary(when, Interval.MONTH, 1, months)


def analytics_months(analytics: MemoryAnalytics, until: datetime) -> list[dict[str, Any]]:
    """MRR at each month's end and its movements, per currency, as the analytics function keeps them."""
    per_currency = {currency: analytics.aggregates("mrr", currency) for currency in analytics.currencies()}
    return _month_rows({c: months for c, months in per_currency.items() if months}, until)


def _month_rows(per_currency: dict[str, dict[str, dict[str, int]]], until: datetime) -> list[dict[str, Any]]:
    from kassa.domain.analytics import month_of, mrr_months

    rows: dict[str, dict[str, Any]] = {}
    for currency, months in sorted(per_currency.items()):
        for row in mrr_months(months, month_of(until)):
            entry = rows.setdefault(row.month, {"month": row.month, "mrr": {}, "movements": {}})
            entry["mrr"][currency] = row.mrr
            entry["movements"][currency] = {k: v for k, v in row.as_row().items() if k not in ("month", "mrr")}
    return [rows[month] for month in sorted(rows)]


def mrr_by_month(store: MemoryStore, until: datetime) -> list[dict[str, Any]]:
    """The same, rebuilt from the store by kassa's analytics rules (``kassa.domain.analytics``: what
    the invoices bill, normalized to a month, net of tax)."""
    from kassa.domain.analytics import customer_contributions, total

    aggregates = total(
        customer_contributions(store.subscriptions.of(customer), store.invoices.of(customer))
        for customer in sorted(store.customers)
    )
    per_currency: dict[str, dict[str, dict[str, int]]] = {}
    for (kind, currency, month), counters in aggregates.items():
        if kind == "mrr":
            per_currency.setdefault(currency, {})[month] = counters
    return _month_rows(per_currency, until)


def summary(report: dict[str, Any]) -> str:
    """The human-readable report ``kassa simulate`` prints."""
    lines = [
        f"simulated {report['subscriptions']:,} subscriptions × {report['months']} months "
        f"(seed {report['seed']}, faults {'on' if report['faults'] else 'off'}) in {report['wall_s']} s "
        f"(CPU {report['cpu_s']} s, {report['renewals_per_s']} renewals/s)",
        f"  renewals {report['renewals']:,}  invoices {report['invoices']:,} (paid {report['invoices_paid']:,})  "
        f"charges succeeded {report['charges_succeeded']:,}, declined {report['charges_declined']:,}",
        "  revenue: " + ", ".join(f"{c} {v:,}" for c, v in report["revenue"].items()) + " (minor units)",
        f"  dunning: {report['dunning']['invoices_failed']:,} invoices failed, "
        f"{report['dunning']['recovered']:,} recovered (rate {report['dunning']['recovery_rate']})",
        "  MRR by month:",
    ]
    for row in report["mrr_by_month"]:
        lines.append(f"    {row['month']}  " + ", ".join(f"{c} {v:,}" for c, v in row["mrr"].items()))
    if report["faults"]:
        lines.append("  faults injected: " + ", ".join(f"{k} {v}" for k, v in report["faults_injected"].items()))
    lines.append(
        f"  invariants: double charges {report['double_charges']}, lost invoices {report['lost_invoices']}, "
        f"duplicate invoices {report['duplicate_invoices']}, number gaps {report['number_gaps']}, "
        f"unmatched paid {report['unmatched_paid_invoices']}, unmatched charges {report['unmatched_charges']}, "
        f"stuck {report['stuck_invoices']}, receipts missing {report['receipts_missing']}, "
        f"ledger balanced {report['ledger_balanced']}, analytics consistent {report['analytics_consistent']}"
    )
    lines.append("  OK" if report["ok"] else f"  FAILED — replay with --seed {report['seed']}")
    return "\n".join(lines)


def run(options: SimOptions, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    return Simulation(options, progress).run()


# ---------------------------------------------------------------------------------------- the command
SIMULATE_DESCRIPTION = """\
Two modes, chosen by the options given (the options of one mode cannot be combined with the
other's):

the simulator (the default): months of billing of a generated scenario in one process: checkouts,
renewals, declines and dunning, churn, webhooks and emails, the real services over the in-memory
store, an in-memory Stripe and the virtual clock, with the invariants checked (docs/simulator.md):

  kassa simulate --subscriptions 1000 --months 12 --seed 1 --faults

the pricing what-if (--history and --price-book): a history exported with `kassa export --history`
billed again under a proposed price book; it reads that file only and writes nothing to any stack
(docs/whatif.md):

  kassa simulate --history history.json --price-book new.json --elasticity 0.1
"""

# the simulator's options, dest → default (the parser's defaults are None, so that an option given
# can be told from one left out: a what-if given one of them is an error, never silently ignored)
SIMULATOR_DEFAULTS: dict[str, Any] = {
    "subscriptions": 1000, "months": 12, "seed": 1, "decline_rate": 0.05, "churn_rate": 0.03,
    "faults": False, "fault_scale": 1.0, "scenario": None, "json": None, "no_progress": False,
}  # fmt: skip


def add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="the billing simulator (months of billing in one process) or the pricing what-if (--history)",
        description=SIMULATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim = p.add_argument_group("simulator", "a generated scenario billed in process (docs/simulator.md)")
    sim.add_argument("--subscriptions", metavar="N", type=_positive, help="customers who check out (default 1000)")
    sim.add_argument("--months", metavar="M", type=_positive, help="months simulated (default 12)")
    sim.add_argument("--seed", metavar="S", type=int, help="everything random derives from it (default 1)")
    sim.add_argument("--decline-rate", metavar="R", type=_share, help="share of first charges declined (default 0.05)")
    sim.add_argument("--churn-rate", metavar="R", type=_share, help="monthly share of cancellations (default 0.03)")
    sim.add_argument(
        "--faults", action="store_true", default=None, help="inject AWS and Stripe faults at every boundary"
    )
    sim.add_argument("--fault-scale", metavar="X", type=float, help="multiply every fault's chance (default 1)")
    sim.add_argument(
        "--scenario", metavar="FILE", help="scenario JSON: catalog, countries, plan mix (default: the one shipped)"
    )
    sim.add_argument("--json", metavar="FILE", help="write the full report as JSON ('-' for stdout)")
    sim.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    from kassa_local import whatif  # --history / --price-book: the pricing what-if (docs/whatif.md)

    whatif.add_arguments(
        p.add_argument_group("pricing what-if", "an exported history billed again under a price book (docs/whatif.md)")
    )
    p.set_defaults(func=lambda args: cmd_simulate(args, p))


def check_modes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An argparse error (exit 2) naming the options when both modes' options are given."""
    from kassa_local import whatif

    simulator = [_option(dest) for dest in SIMULATOR_DEFAULTS if getattr(args, dest, None) is not None]
    what_if = whatif.given(args)
    if simulator and what_if:
        parser.error(
            f"{', '.join(what_if)} (the pricing what-if) cannot be combined with {', '.join(simulator)} "
            "(the simulator): give the options of one mode"
        )


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def cmd_simulate(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    from kassa_local import whatif

    if parser is not None:
        check_modes(parser, args)
    if whatif.wanted(args):
        return whatif.run(args)
    for dest, default in SIMULATOR_DEFAULTS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, default)
    try:
        scenario = Scenario.load(args.scenario)
    except (OSError, ValueError) as error:
        raise SystemExit(f"kassa simulate: {error}") from None
    options = SimOptions(
        subscriptions=args.subscriptions,
        months=args.months,
        seed=args.seed,
        decline_rate=args.decline_rate,
        churn_rate=args.churn_rate,
        faults=args.faults,
        fault_scale=args.fault_scale,
        scenario=scenario,
    )
    kassa_log = logging.getLogger("kassa")
    level = kassa_log.level
    kassa_log.setLevel(logging.CRITICAL)  # the services' warnings about injected faults are expected
    try:
        report = run(options, progress=None if args.no_progress or not sys.stderr.isatty() else sys.stderr)
    finally:
        kassa_log.setLevel(level)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1
