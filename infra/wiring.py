"""The one declaration of kassa's wiring.

Which function runs on which route, queue or schedule, with which batch size, timeout, memory
and environment, and which resources exist. Both the CDK app (``infra/``) and the local stack
(``kassa_local``) read this module; ``tests/infra`` holds the synthesized template against it.

Pure data: importing this module must never import aws_cdk, boto3 or stripe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str
    # ALL | KEYS_ONLY: a keys-only index is written only when its keys change (a doc change costs it nothing)
    projection: str = "ALL"


@dataclass(frozen=True)
class Table:
    name: str  # logical name; the physical name is derived (CDK) or prefixed (local)
    partition_key: str
    sort_key: str
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class Queue:
    name: str
    visibility_timeout_s: int
    max_receive_count: int  # receives before a message is moved to the queue's DLQ
    retention_days: int = 4


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ANY
    path: str  # API Gateway resource path, e.g. /v1/{proxy+}


@dataclass(frozen=True)
class QueueTrigger:
    queue: str
    batch_size: int
    max_batching_window_s: int = 0
    max_concurrency: int | None = None  # caps the fan-out toward Stripe's rate limit


@dataclass(frozen=True)
class Schedule:
    name: str
    every_minutes: int  # rate(N minutes) on EventBridge Scheduler; the virtual clock fires the same ticks


@dataclass(frozen=True)
class EventRoute:
    """An EventBridge rule on the kassa bus: events of these detail-types (source ``kassa``) go to a queue
    (no detail-types: every kassa event)."""

    name: str
    detail_types: tuple[str, ...]
    queue: str
    # kept at runtime (PutRule by the functions that ``put_rules`` it) to what the outbound webhook
    # endpoints subscribe to; deployed with the pattern below, under the fixed name ``rule_name``
    managed: bool = False

    @property
    def rule_name(self) -> str:
        return f"{SERVICE_NAME}-{self.name}"

    def pattern(self) -> dict[str, list[str]]:
        """The rule's event pattern as deployed (CDK and the local stack put the same one)."""
        if not self.detail_types:
            return {"source": [EVENT_SOURCE]}
        return {"source": [EVENT_SOURCE], "detail-type": list(self.detail_types)}


@dataclass(frozen=True)
class KeyPrefixes:
    """The items of a table a function may touch, by the leading (partition) key: IAM
    ``dynamodb:LeadingKeys`` conditions. A prefix ends in ``#`` (``WHEVT#`` = every ``WHEVT#<id>``) or
    is a whole key (``COUNTER``). Index queries are matched on the index's partition key, so the
    index partitions a function queries (``DUE#``, ``CUS#`` …) are listed too."""

    read: tuple[str, ...]
    write: tuple[str, ...] = ()
    # items that may only be created (PutItem, never UpdateItem or DeleteItem): the audit trail
    append: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bucket:
    """A private, encrypted S3 bucket; what lives in it is kept under the key prefixes below."""

    name: str  # logical name; the physical name is derived (CDK) or the logical one (local)
    # key prefix -> days after which its objects expire (a lifecycle rule; no entry: kept)
    expire_days: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Function:
    name: str  # folder under functions/
    description: str
    timeout_s: int
    memory_mb: int = 256
    routes: tuple[Route, ...] = ()
    queue_trigger: QueueTrigger | None = None
    schedule: Schedule | None = None
    # env var -> logical resource; the value is filled with the physical name/URL
    tables_read: tuple[str, ...] = ()
    tables_write: tuple[str, ...] = ()
    queues_send: tuple[str, ...] = ()
    publishes_events: bool = False
    # event routes (``EventRoute.managed``) whose rule it puts: events:PutRule on that rule only,
    # its name and bus in WEBHOOKS_RULE_NAME / WEBHOOKS_RULE_BUS
    puts_rules: tuple[str, ...] = ()
    sends_email: bool = False  # SES SendEmail from the sender identity (KASSA_EMAIL_FROM)
    public_url: bool = False  # given the API's public URL (KASSA_PUBLIC_URL), for links in emails
    secrets: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    # table -> the partition keys it may read / write (least privilege, rendered as IAM conditions)
    table_key_prefixes: dict[str, KeyPrefixes] = field(default_factory=dict)
    # bucket -> the object key prefixes it may read / write (``documents/``): IAM resources per prefix
    buckets: dict[str, KeyPrefixes] = field(default_factory=dict)

    @property
    def handler(self) -> str:
        return "handler.lambda_handler"


SERVICE_NAME = "kassa"
BUS_NAME = "kassa-events"
EVENT_SOURCE = "kassa"  # the source of every domain event on the bus (kassa.adapters.eventbridge)

# Secrets (names in Secrets Manager, JSON values); read with Powertools Parameters.
STRIPE_SECRET = "kassa/stripe"  # {"secret_key", "publishable_key", "webhook_secret"}
API_SECRET = "kassa/api"  # {"keys": [{"id", "secret", "role", "expires_at"?}]} (or the old {"secret_key"})
LINKS_SECRET = "kassa/links"  # {"keys": [{"id", "secret"}]}: signs customers' links, the first key signs
SECRETS = (STRIPE_SECRET, API_SECRET, LINKS_SECRET)

BILLING_TABLE = Table(
    name="billing",
    partition_key="pk",
    sort_key="sk",
    indexes=(
        # due work, sharded: renewals, trial ends, incomplete expiry (gsi1pk = DUE#<shard>); dunning: invoices
        # being dunned, expiring cards, timers (gsi1pk = DUN#<shard>)
        Index(name="gsi1", partition_key="gsi1pk", sort_key="gsi1sk"),
        # a customer's subscriptions and invoices: gsi2pk = CUS#<id>
        Index(name="gsi2", partition_key="gsi2pk", sort_key="gsi2sk"),
        # finalized invoices by tax month (tax reports): gsi3pk = TAXMONTH#<YYYY-MM>; emails: OUTBOX#<YYYY-MM>
        Index(name="gsi3", partition_key="gsi3pk", sort_key="gsi3sk"),
        # merchant-wide listings, keys only (entries are thin; a renewal that keeps the status writes nothing
        # here): LIST#CUSTOMER, SUBSTATUS#<status>, INVSTATUS#<status>, SUBPRICE#<price> / <created>#<id>
        Index(name="gsi4", partition_key="gsi4pk", sort_key="gsi4sk", projection="KEYS_ONLY"),
    ),
    ttl_attribute="expires_at",
)
TABLES = (BILLING_TABLE,)

# Files: invoice and credit-note documents (PDF, UBL) and the payloads of Stripe events too large
# for a DynamoDB item; private, encrypted (kassa.adapters.s3, infra/data.py)
DOCUMENTS_PREFIX = "documents/"  # documents/<invoice or credit note id>/<file>
WEBHOOK_PAYLOADS_PREFIX = "webhooks/"  # webhooks/<event id>.json
# large event payloads outlive their records (30 days, kassa.adapters.dynamodb WEBHOOK_RETENTION) by a day
FILES_BUCKET = Bucket(name="files", expire_days={WEBHOOK_PAYLOADS_PREFIX: 31})
BUCKETS = (FILES_BUCKET,)
DOCUMENTS_ACCESS = KeyPrefixes(read=(DOCUMENTS_PREFIX,), write=(DOCUMENTS_PREFIX,))
# events too large for a DynamoDB item: ingest writes them (once, If-None-Match), the processor reads them
WEBHOOK_PAYLOADS_ACCESS = KeyPrefixes(read=(WEBHOOK_PAYLOADS_PREFIX,), write=(WEBHOOK_PAYLOADS_PREFIX,))

WEBHOOK_QUEUE = Queue(name="webhook-events", visibility_timeout_s=180, max_receive_count=5)
RENEWAL_QUEUE = Queue(name="renewals", visibility_timeout_s=360, max_receive_count=5)
# domain events that concern the customer (emails, dunning), routed from the bus by NOTIFICATION_ROUTE
NOTIFICATION_QUEUE = Queue(name="notifications", visibility_timeout_s=720, max_receive_count=5)  # 6x dunning timeout
# outbound webhooks: every domain event (WEBHOOKS_ROUTE) and each attempt, retries sent back with their delay
WEBHOOK_DELIVERY_QUEUE = Queue(name="webhook-deliveries", visibility_timeout_s=720, max_receive_count=5)  # 6x120 s
# domain events that change what is billed (subscriptions, invoices), routed by ANALYTICS_ROUTE
ANALYTICS_QUEUE = Queue(name="analytics", visibility_timeout_s=360, max_receive_count=5)  # 6x analytics timeout
QUEUES = (WEBHOOK_QUEUE, RENEWAL_QUEUE, NOTIFICATION_QUEUE, ANALYTICS_QUEUE, WEBHOOK_DELIVERY_QUEUE)

NOTIFICATION_ROUTE = EventRoute(
    name="notifications",
    detail_types=(
        "invoice.paid",
        "invoice.voided",  # a failed invoice written off: the overdue ladder steps back
        "invoice.marked_uncollectible",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.upcoming",
        "customer.subscription.trial_will_end",
        "customer.subscription.deleted",
        # a customer asked for a sign-in link to the portal (kassa.services.portal.request_login)
        "billing_portal.login_requested",
        # the merchant is emailed about disputes (docs/payments.md)
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ),
    queue="notifications",
)
# the subscription analytics (docs/analytics.md): an event only names the customer whose figures are recomputed
ANALYTICS_ROUTE = EventRoute(
    name="analytics",
    detail_types=(
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.updated",
        "invoice.voided",
        "invoice.marked_uncollectible",
    ),
    queue="analytics",
)
# the kassa events some enabled outbound webhook endpoint subscribes to go to their queue: deployed
# with every event, the api and the delivery function put the endpoints' detail-types (PutRule) and
# disable it when none is enabled; the delivery function matches the endpoints
WEBHOOK_ROUTE_CHECK_MINUTES = 10  # at most this long an endpoint change whose rule put never came misses events
WEBHOOKS_ROUTE = EventRoute(name="webhooks", detail_types=(), queue="webhook-deliveries", managed=True)
EVENT_ROUTES = (NOTIFICATION_ROUTE, ANALYTICS_ROUTE, WEBHOOKS_ROUTE)

# the sender of customer emails: an SES identity verified in the merchant's account
EMAIL_FROM_ENV = "KASSA_EMAIL_FROM"
DEFAULT_EMAIL_FROM = "billing@example.com"
PUBLIC_URL_ENV = "KASSA_PUBLIC_URL"

# Partition keys of the billing table (kassa.adapters.dynamodb, outbox, vies) and of its indexes.
WEBHOOK_KEYS = ("WHEVT#",)  # raw Stripe events, written once
ENTITY_KEYS = (
    "PRODUCT#", "PRICE#", "COUPON#", "PROMO#", "PROMOID#", "CUS#", "EMAIL#", "SUB#", "INV#",
    "COUNTER", "SETTINGS", "TIMER#", "MAIL#", "VIES#", "METER#", "METERNAME#", "USAGE#", "CLAIM#",
    "RATELIMIT#",  # the token bucket every Stripe caller shares (kassa.adapters.ratelimit)
)  # fmt: skip
# usage ingestion: meter events' dedupe records (MEVT#<customer>#<identifier>, TTL past their period)
USAGE_EVENT_KEYS = ("MEVT#",)
# subscription analytics (kassa.adapters.analytics): each customer's applied contribution, the monthly
# aggregates (AN#<kind>#<currency>) and the list of their currencies
ANALYTICS_KEYS = ("ANCUS#", "AN#", "ANMETA")
INDEX_KEYS = (
    "DUE#", "DUN#", "PI#", "CATALOG#", "TAXMONTH#", "OUTBOX#",
    "LIST#", "SUBSTATUS#", "INVSTATUS#", "SUBPRICE#", "CN#",
)  # fmt: skip
# outbound webhooks (kassa.adapters.webhooks): the endpoints (one partition), deliveries and their log index
OUTBOUND_WEBHOOK_KEYS = ("WHEP", "WHD#")
OUTBOUND_WEBHOOK_ACCESS = KeyPrefixes(read=(*OUTBOUND_WEBHOOK_KEYS, "WHDLOG#"), write=OUTBOUND_WEBHOOK_KEYS)
BILLING_KEYS = ENTITY_KEYS + INDEX_KEYS  # what the billing use cases touch: everything but webhook records
BILLING_ACCESS = KeyPrefixes(read=BILLING_KEYS, write=ENTITY_KEYS)
# the merchant dashboard's users and sessions: only the api function (which serves /dashboard) touches them
DASHBOARD_KEYS = ("DASHUSER#", "SESSION#")
# the audit trail (docs/audit.md): entries AUDIT#<id>, listed by object (gsi2) and by month (gsi3);
# the API only ever puts new entries (a conditional put), never updates nor deletes one
AUDIT_KEYS = ("AUDIT#",)
AUDIT_INDEX_KEYS = ("AUDITOBJ#", "AUDITMONTH#")
# a request's pending audit record (written before it runs, removed once its entries are: the durable
# path of docs/audit.md), listed through gsi3 PENDAUDIT#ALL; not an entry, so it may be deleted
AUDIT_PENDING_KEYS = ("PENDAUDIT#",)
API_ACCESS = KeyPrefixes(
    read=(*BILLING_KEYS, *ANALYTICS_KEYS, *DASHBOARD_KEYS, *AUDIT_KEYS, *AUDIT_INDEX_KEYS, *AUDIT_PENDING_KEYS),
    write=(*ENTITY_KEYS, *DASHBOARD_KEYS, *AUDIT_PENDING_KEYS),
    append=AUDIT_KEYS,
)

DUE_SHARDS = 4  # partitions of the due index; the sweep queries each (never a Scan)

# ---------------------------------------------------------------- renewals at scale (docs/operations.md)
# Stripe's rate limit (requests/s) and what kassa's shared token bucket allows itself of it (rate +
# burst within the limit over any second; as kassa.adapters.stripe_gateway STRIPE_BUDGETS, which a
# tests/infra check holds equal)
STRIPE_RATE_LIMIT = {"live": 100, "test": 25}
STRIPE_BUDGET = {"live": (90, 10), "test": (20, 5)}  # (rate, burst)
# one renewal's wall time in a worker, mostly the PaymentIntent call (a 300–500 ms Stripe answer, the
# writes around it)
RENEWAL_SECONDS = 0.5
RENEWAL_STRIPE_CALLS = 1  # a renewal of a customer with a card on file: one PaymentIntent
# numbered invoices the table commits a second: the gapless counter is read, then written in the
# renewal's transaction under a condition, one commit per round trip (~25 ms; docs/operations.md)
INVOICE_NUMBERS_PER_S = 40
SWEEP_EVERY_MINUTES = 60


def renewals_per_s(stripe_rate: float = STRIPE_BUDGET["live"][0]) -> float:
    """What renewals can reach: the Stripe bucket's rate or the invoice counter's, the lower."""
    return min(stripe_rate / RENEWAL_STRIPE_CALLS, INVOICE_NUMBERS_PER_S)


def renewal_concurrency(rate: float | None = None, seconds: float = RENEWAL_SECONDS) -> int:
    """Workers that keep ``rate`` renewals a second going (Little's law, 25 % headroom for waits on
    the bucket and the counter), rounded up to 5. More would only wait or conflict."""
    target = renewals_per_s() if rate is None else rate
    return max(5, math.ceil(target * seconds * 1.25 / 5) * 5)


def renewals_per_sweep(rate: float | None = None, minutes: int = SWEEP_EVERY_MINUTES) -> int:
    """What one sweep enqueues at most: 80 % of what renews before the next sweep, so a tick's
    messages are done before the next tick looks (the rest waits in the index, oldest first)."""
    target = renewals_per_s() if rate is None else rate
    return int(target * 60 * minutes * 0.8)


RENEWAL_CONCURRENCY = renewal_concurrency()  # 25: SQS event source maximum concurrency of the worker
RENEWALS_PER_SWEEP = renewals_per_sweep()  # 115,200 a tick at 40 renewals/s (a 100,000 cohort fits)

COMMON_ENV = {
    "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    "POWERTOOLS_METRICS_NAMESPACE": "Kassa",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "KASSA_DUE_SHARDS": str(DUE_SHARDS),
    # pydantic scans installed entry points for plugins at import (~15 ms of cold start); kassa uses none
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}

FUNCTIONS = (
    Function(
        name="api",
        description="The merchant REST API (catalog, customers, checkout, subscriptions, invoices) and card page",
        timeout_s=29,
        memory_mb=512,
        routes=(
            Route("ANY", "/v1/{proxy+}"),
            Route("GET", "/openapi.json"),
            Route("GET", "/docs"),
            # the customer's card-update page (signed link, no login) and its two calls
            Route("ANY", "/portal/{proxy+}"),
            # the merchant dashboard (kassa.api.dashboard): its page, assets and sign-in
            Route("GET", "/dashboard"),
            Route("ANY", "/dashboard/{proxy+}"),
        ),
        tables_read=("billing",),
        tables_write=("billing",),
        queues_send=("webhook-deliveries",),  # manual redelivery of outbound webhooks
        publishes_events=True,
        puts_rules=("webhooks",),  # the outbound webhooks' rule follows the endpoints' enabled_events
        secrets=(STRIPE_SECRET, API_SECRET, LINKS_SECRET),
        # the billing use cases, the analytics aggregates its reports read (/v1/reports/…), the
        # dashboard's users and sessions, the audit trail (appended only), and the outbound webhooks'
        # endpoints and deliveries
        table_key_prefixes={
            "billing": KeyPrefixes(
                read=(*API_ACCESS.read, *OUTBOUND_WEBHOOK_ACCESS.read),
                write=(*API_ACCESS.write, *OUTBOUND_WEBHOOK_ACCESS.write),
                append=API_ACCESS.append,
            )
        },
        buckets={"files": DOCUMENTS_ACCESS},
    ),
    Function(
        name="webhook_ingest",
        description="Verifies Stripe webhooks, records them once and enqueues them",
        timeout_s=10,
        routes=(Route("POST", "/webhooks/stripe"),),
        tables_read=("billing",),
        tables_write=("billing",),
        queues_send=("webhook-events",),
        secrets=(STRIPE_SECRET,),
        # internet-facing: its webhook records, and the invoice already_settled reads (INV#<id>)
        table_key_prefixes={"billing": KeyPrefixes(read=(*WEBHOOK_KEYS, "INV#"), write=WEBHOOK_KEYS)},
        buckets={"files": WEBHOOK_PAYLOADS_ACCESS},  # webhooks/<event id>.json: payloads too large for a record
    ),
    Function(
        name="webhook_processor",
        description="Applies Stripe events to invoices and subscriptions",
        timeout_s=30,
        queue_trigger=QueueTrigger(queue="webhook-events", batch_size=10),
        tables_read=("billing",),
        tables_write=("billing",),
        publishes_events=True,
        secrets=(STRIPE_SECRET,),
        table_key_prefixes={
            "billing": KeyPrefixes(read=(*WEBHOOK_KEYS, *BILLING_KEYS), write=(*WEBHOOK_KEYS, *ENTITY_KEYS))
        },
        buckets={"files": KeyPrefixes(read=(WEBHOOK_PAYLOADS_PREFIX,))},  # the payloads ingest put there
    ),
    Function(
        name="tax",
        description="Tax quotes and tax reports (per jurisdiction, EU OSS quarterly return)",
        timeout_s=29,
        memory_mb=512,
        routes=(Route("ANY", "/v1/tax/{proxy+}"),),
        tables_read=("billing",),
        secrets=(API_SECRET,),
        table_key_prefixes={"billing": KeyPrefixes(read=BILLING_KEYS)},
    ),
    Function(
        name="meter_ingest",
        description="Usage events (one or a batch of 100): validated, each recorded once into its aggregate",
        timeout_s=15,
        memory_mb=512,
        # more specific than the api function's /v1/{proxy+}: API Gateway routes these here
        routes=(Route("POST", "/v1/meter_events"), Route("POST", "/v1/meter_events/batch")),
        tables_read=("billing",),
        tables_write=("billing",),
        queues_send=("renewals",),  # a subscription past its usage threshold is invoiced by the worker
        publishes_events=True,
        secrets=(API_SECRET,),
        # meters, customers and their subscriptions (the CUS# partition of gsi2) to validate and place an
        # event; it writes only usage aggregates and dedupe records
        table_key_prefixes={
            "billing": KeyPrefixes(
                read=("METERNAME#", "METER#", "CUS#", "SUB#", "USAGE#", *USAGE_EVENT_KEYS),
                write=("USAGE#", *USAGE_EVENT_KEYS),
            )
        },
    ),
    Function(
        name="renewal_sweep",
        description="Finds due subscriptions through the due index and enqueues them",
        # 100,000 due: ~200 index pages and 10,000 SQS batch sends (8 at a time): well under a minute
        timeout_s=300,
        memory_mb=512,
        schedule=Schedule(name="renewal-sweep", every_minutes=SWEEP_EVERY_MINUTES),
        tables_read=("billing",),
        queues_send=("renewals",),
        environment={"KASSA_SWEEP_LIMIT": str(RENEWALS_PER_SWEEP)},
        table_key_prefixes={"billing": KeyPrefixes(read=("DUE#",))},
    ),
    Function(
        name="renewal_worker",
        description="Invoices, charges and advances one due subscription",
        timeout_s=60,
        # batches of 10, RENEWAL_CONCURRENCY at once: the shared bucket, not Lambda, paces Stripe
        queue_trigger=QueueTrigger(queue="renewals", batch_size=10, max_concurrency=RENEWAL_CONCURRENCY),
        tables_read=("billing",),
        tables_write=("billing",),
        publishes_events=True,
        secrets=(STRIPE_SECRET,),
        table_key_prefixes={"billing": BILLING_ACCESS},
    ),
    Function(
        name="dunning",
        description="Payment retries, overdue ladder and customer emails (SES, once each through an outbox)",
        timeout_s=120,
        schedule=Schedule(name="dunning-sweep", every_minutes=60),
        queue_trigger=QueueTrigger(queue="notifications", batch_size=10, max_concurrency=5),
        tables_read=("billing",),
        tables_write=("billing",),
        publishes_events=True,
        sends_email=True,
        public_url=True,
        secrets=(STRIPE_SECRET, LINKS_SECRET),  # signs links with the link key; holds no API key
        environment={EMAIL_FROM_ENV: DEFAULT_EMAIL_FROM},
        table_key_prefixes={"billing": BILLING_ACCESS},
        buckets={"files": DOCUMENTS_ACCESS},  # the receipt's invoice PDF is made when it is sent
    ),
    Function(
        name="analytics",
        description="Subscription analytics: monthly MRR movements, cohorts and trials, recomputed per customer",
        timeout_s=60,
        queue_trigger=QueueTrigger(queue="analytics", batch_size=10, max_concurrency=2),
        tables_read=("billing",),
        tables_write=("billing",),
        # reads customers (and, through gsi2's CUS# partition, their subscriptions and invoices, and the
        # listing's LIST# for a rebuild); writes only the analytics items
        table_key_prefixes={
            "billing": KeyPrefixes(read=("CUS#", "SUB#", "INV#", "LIST#", *ANALYTICS_KEYS), write=ANALYTICS_KEYS)
        },
    ),
    Function(
        name="webhook_delivery",
        description="Outbound webhooks: fans kassa events out to the merchant's endpoints; signed POSTs, retried",
        timeout_s=120,  # a batch of 10 attempts of at most 10 s each
        queue_trigger=QueueTrigger(queue="webhook-deliveries", batch_size=10),
        # puts the rule when an endpoint change was written but its put never came (one read otherwise)
        schedule=Schedule(name="webhook-route", every_minutes=WEBHOOK_ROUTE_CHECK_MINUTES),
        tables_read=("billing",),
        tables_write=("billing",),
        queues_send=("webhook-deliveries",),  # the retries, with their delay
        # narrowed when an endpoint is disabled or an event nobody wants arrives; put by the schedule
        puts_rules=("webhooks",),
        sends_email=True,  # the merchant is told when an endpoint is disabled after 3 days of failures
        environment={EMAIL_FROM_ENV: DEFAULT_EMAIL_FROM},
        table_key_prefixes={
            "billing": KeyPrefixes(
                read=(*OUTBOUND_WEBHOOK_ACCESS.read, "SETTINGS", "MAIL#"),
                write=(*OUTBOUND_WEBHOOK_ACCESS.write, "MAIL#"),
            )
        },
    ),
)


def env_name_for_table(table: str) -> str:
    return f"{table.upper()}_TABLE"


def env_name_for_queue(queue: str) -> str:
    return f"{queue.upper().replace('-', '_')}_QUEUE_URL"


def env_name_for_bucket(bucket: str) -> str:
    return f"{bucket.upper()}_BUCKET"


def env_name_for_secret(secret: str) -> str:
    return f"{secret.split('/')[-1].upper()}_SECRET_NAME"


BUS_ENV = "EVENT_BUS_NAME"
RULE_NAME_ENV = "WEBHOOKS_RULE_NAME"
RULE_BUS_ENV = "WEBHOOKS_RULE_BUS"


def function(name: str) -> Function:
    for fn in FUNCTIONS:
        if fn.name == name:
            return fn
    raise KeyError(name)


def event_route(name: str) -> EventRoute:
    for route in EVENT_ROUTES:
        if route.name == name:
            return route
    raise KeyError(name)


def queue(name: str) -> Queue:
    for q in QUEUES:
        if q.name == name:
            return q
    raise KeyError(name)


def function_environment(fn: Function, resolve: Resolver) -> dict[str, str]:
    """The full environment of a function, with physical names filled in by ``resolve``."""
    env = dict(COMMON_ENV)
    env["POWERTOOLS_SERVICE_NAME"] = f"{SERVICE_NAME}-{fn.name}"
    for t in sorted(set(fn.tables_read) | set(fn.tables_write)):
        env[env_name_for_table(t)] = resolve.table(t)
    for q in fn.queues_send:
        env[env_name_for_queue(q)] = resolve.queue_url(q)
    for b in sorted(fn.buckets):
        env[env_name_for_bucket(b)] = resolve.bucket(b)
    for s in fn.secrets:
        env[env_name_for_secret(s)] = resolve.secret(s)
    if fn.publishes_events:
        env[BUS_ENV] = resolve.bus()
    for name in fn.puts_rules:
        env[RULE_NAME_ENV] = event_route(name).rule_name
        env[RULE_BUS_ENV] = resolve.bus()
    if fn.public_url:
        env[PUBLIC_URL_ENV] = resolve.public_url()
    env.update(fn.environment)
    return env


class Resolver:
    """Maps logical resource names to physical ones (CDK tokens or local names)."""

    def table(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def queue_url(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def secret(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def bus(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def bucket(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def public_url(self) -> str:  # pragma: no cover - interface
        """The API's public base URL (no trailing slash), where /portal/... pages are served."""
        raise NotImplementedError
