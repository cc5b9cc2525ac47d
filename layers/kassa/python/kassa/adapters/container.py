"""Composition root: builds the services a handler needs from its (validated) environment.

Cached per environment, so a warm Lambda builds its clients once, and a process that runs several
local stacks one after the other (tests) gets fresh ones for each.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kassa.adapters import clock as clocks

if TYPE_CHECKING:  # the adapters are imported lazily: a handler pays only for what it uses
    from kassa.adapters.analytics import DynamoAnalytics
    from kassa.adapters.audit import DynamoAuditLog
    from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts
    from kassa.adapters.dynamodb import DynamoStore
    from kassa.adapters.eventbridge import EventBridgePublisher, NullPublisher
    from kassa.adapters.outbox import DynamoOutbox
    from kassa.adapters.s3 import S3FileStore
    from kassa.adapters.ses import SesMailer
    from kassa.adapters.sqs import SqsQueue
    from kassa.adapters.stripe_gateway import StripeGateway
    from kassa.domain.api_keys import ApiKey
    from kassa.services.context import BillingContext
    from kassa.services.dunning import Dunning
    from kassa.services.outbound_webhooks import Webhooks
    from kassa.services.tax import TaxQuoter

DEFAULT_EMAIL_FROM = "billing@example.com"  # as infra/wiring.py's DEFAULT_EMAIL_FROM
DEFAULT_STRIPE_JS_URL = "https://js.stripe.com/v3/"


@dataclass(frozen=True)
class Env:
    """The environment a function may be given (names from infra/wiring.py).

    A dataclass rather than a pydantic model: it is built at every cold start, and importing and
    building models there costs tens of milliseconds (see docs/benchmarks.md).
    """

    billing_table: str | None = None
    event_bus_name: str | None = None
    stripe_secret_name: str | None = None
    api_secret_name: str | None = None
    links_secret_name: str | None = None  # kassa/links: the keys that sign customers' links
    webhook_queue_url: str | None = None
    files_bucket: str | None = None  # documents and large event payloads (kassa.adapters.s3)
    renewal_queue_url: str | None = None
    due_shards: int = 4
    sweep_limit: int = 4000  # what one renewal sweep enqueues at most (infra/wiring.py RENEWALS_PER_SWEEP)
    stripe_api_base: str | None = None
    aws_endpoint_url: str | None = None
    tax_provider: str | None = None  # "kassa" (default) or "stripe" (Stripe Tax, optional)
    vies_url: str | None = None  # unset: no online VIES check (format and check digit only)
    email_from: str = DEFAULT_EMAIL_FROM  # the sender of customer emails (a verified SES identity)
    public_url: str | None = None  # the API's public base URL, no trailing slash (links in emails)
    stripe_js_url: str = DEFAULT_STRIPE_JS_URL  # Stripe.js, loaded by the pages kassa serves
    webhook_deliveries_queue_url: str | None = None  # outbound webhooks' attempts (kassa.adapters.webhooks)
    webhook_mode: str = "aws"  # aws: public https endpoints only; local: any URL (the local stack)
    webhook_timeout_s: float = 10.0
    sqs_max_delay_s: int = 900  # the local stack sets 0: its pollers hold delayed messages in virtual time
    webhooks_rule_name: str | None = None  # the outbound webhooks' EventBridge rule, put by kassa
    webhooks_rule_bus: str | None = None

    def require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise RuntimeError(f"this function is not wired with {_ALIASES[name]}")
        return str(value)


_ALIASES = {
    "billing_table": "BILLING_TABLE",
    "event_bus_name": "EVENT_BUS_NAME",
    "stripe_secret_name": "STRIPE_SECRET_NAME",
    "api_secret_name": "API_SECRET_NAME",
    "links_secret_name": "LINKS_SECRET_NAME",
    "webhook_queue_url": "WEBHOOK_EVENTS_QUEUE_URL",
    "files_bucket": "FILES_BUCKET",
    "renewal_queue_url": "RENEWALS_QUEUE_URL",
    "due_shards": "KASSA_DUE_SHARDS",
    "sweep_limit": "KASSA_SWEEP_LIMIT",
    "stripe_api_base": "STRIPE_API_BASE",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "tax_provider": "KASSA_TAX_PROVIDER",
    "vies_url": "KASSA_VIES_URL",
    "email_from": "KASSA_EMAIL_FROM",
    "public_url": "KASSA_PUBLIC_URL",
    "stripe_js_url": "KASSA_STRIPE_JS_URL",
    "webhook_deliveries_queue_url": "WEBHOOK_DELIVERIES_QUEUE_URL",
    "webhook_mode": "KASSA_WEBHOOK_MODE",
    "webhook_timeout_s": "KASSA_WEBHOOK_TIMEOUT_S",
    "sqs_max_delay_s": "KASSA_SQS_MAX_DELAY_S",
    "webhooks_rule_name": "WEBHOOKS_RULE_NAME",
    "webhooks_rule_bus": "WEBHOOKS_RULE_BUS",
}


def env() -> Env:
    return _env(tuple((k, os.environ.get(k)) for k in _ALIASES.values()))


@lru_cache(maxsize=8)
def _env(items: tuple[tuple[str, str | None], ...]) -> Env:
    values = dict(items)
    fields: dict[str, Any] = {name: values.get(alias) or None for name, alias in _ALIASES.items()}
    shards = fields.pop("due_shards") or "4"
    if not shards.isdigit() or not 1 <= int(shards) <= 64:  # a deployment mistake: fail loudly at cold start
        raise RuntimeError(f"invalid function environment: KASSA_DUE_SHARDS={shards!r} (1–64)")
    limit = fields.pop("sweep_limit") or "4000"
    if not limit.isdigit() or int(limit) < 1:
        raise RuntimeError(f"invalid function environment: KASSA_SWEEP_LIMIT={limit!r} (a positive integer)")
    if fields["tax_provider"] not in (None, "kassa", "stripe"):
        raise RuntimeError(f"invalid function environment: KASSA_TAX_PROVIDER={fields['tax_provider']!r}")
    fields["email_from"] = fields["email_from"] or DEFAULT_EMAIL_FROM
    fields["stripe_js_url"] = fields["stripe_js_url"] or DEFAULT_STRIPE_JS_URL
    if fields["public_url"]:
        fields["public_url"] = fields["public_url"].rstrip("/")
    fields["webhook_mode"] = fields["webhook_mode"] or "aws"
    if fields["webhook_mode"] not in ("aws", "local"):
        raise RuntimeError(f"invalid function environment: KASSA_WEBHOOK_MODE={fields['webhook_mode']!r}")
    try:
        fields["webhook_timeout_s"] = float(fields["webhook_timeout_s"] or 10)
        fields["sqs_max_delay_s"] = int(fields["sqs_max_delay_s"] or 900)
    except ValueError as error:
        raise RuntimeError(f"invalid function environment: {error}") from None
    return Env(due_shards=int(shards), sweep_limit=int(limit), **fields)


@lru_cache(maxsize=32)
def _client(service: str, endpoint: str | None) -> Any:
    import boto3  # lazily: not every handler needs every client

    return boto3.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


def client(service: str) -> Any:
    return _client(service, env().aws_endpoint_url)


def secret(name: str) -> dict[str, Any]:
    """A JSON secret, read through Powertools Parameters (cached 5 minutes)."""

    provider = _secrets_provider(env().aws_endpoint_url)
    value = provider.get(name, transform="json", max_age=300)
    if not isinstance(value, dict):
        raise RuntimeError(f"secret {name} is not a JSON object")
    return value


@lru_cache(maxsize=8)
def _secrets_provider(endpoint: str | None) -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=_client("secretsmanager", endpoint))


def store() -> DynamoStore:
    from kassa.adapters.dynamodb import DynamoStore

    e = env()
    return DynamoStore(client("dynamodb"), e.require("billing_table"), e.due_shards)


def gateway() -> StripeGateway:

    e = env()
    keys = secret(e.require("stripe_secret_name"))
    return _gateway(
        keys["secret_key"], keys.get("publishable_key", ""), e.stripe_api_base, e.billing_table, e.aws_endpoint_url
    )


@lru_cache(maxsize=8)
def _gateway(
    secret_key: str, publishable_key: str, api_base: str | None, table: str | None, endpoint: str | None
) -> StripeGateway:
    """The gateway, its calls paced by the token bucket every function shares on the billing table
    (the rate of the key's mode, kassa.adapters.stripe_gateway STRIPE_BUDGETS)."""
    from kassa.adapters.ratelimit import DynamoTokenBucket
    from kassa.adapters.stripe_gateway import STRIPE_BUDGETS, StripeGateway, key_mode

    budget = STRIPE_BUDGETS[key_mode(secret_key)]
    limiter = DynamoTokenBucket(_client("dynamodb", endpoint), table, budget) if table else None
    return StripeGateway(secret_key, publishable_key, api_base, limiter=limiter)


def publisher() -> EventBridgePublisher | NullPublisher:
    from kassa.adapters.eventbridge import EventBridgePublisher, NullPublisher

    bus = env().event_bus_name
    return EventBridgePublisher(client("events"), bus) if bus else NullPublisher()


def queue(name: str) -> SqsQueue:
    from kassa.adapters.sqs import SqsQueue

    return SqsQueue(client("sqs"), env().require(name))


def files() -> S3FileStore:
    """The private bucket of documents and large event payloads (``FILES_BUCKET``)."""
    from kassa.adapters.s3 import S3FileStore

    return S3FileStore(lambda: client("s3"), env().require("files_bucket"))


def outbox() -> DynamoOutbox:
    """The outbox of customer emails, on the billing table."""
    from kassa.adapters.outbox import DynamoOutbox

    return DynamoOutbox(client("dynamodb"), env().require("billing_table"))


def audit_log() -> DynamoAuditLog:
    """The audit trail, on the billing table (docs/audit.md)."""
    from kassa.adapters.audit import DynamoAuditLog

    return DynamoAuditLog(client("dynamodb"), env().require("billing_table"))


def dashboard_accounts() -> DynamoDashboardAccounts:
    """The dashboard's users and sessions, on the billing table."""
    from kassa.adapters.dashboard_accounts import DynamoDashboardAccounts

    return DynamoDashboardAccounts(client("dynamodb"), env().require("billing_table"))


def analytics() -> DynamoAnalytics:
    """The subscription analytics' aggregates, on the billing table."""
    from kassa.adapters.analytics import DynamoAnalytics

    return DynamoAnalytics(client("dynamodb"), env().require("billing_table"))


def mailer() -> SesMailer:
    from kassa.adapters.ses import SesMailer

    return SesMailer(client("ses"))


def email_sender() -> str:
    """The From address of customer emails (``KASSA_EMAIL_FROM``)."""
    return env().email_from


def now() -> datetime:
    """The clock port's time, to the second (as the services use it)."""
    return clocks.current().now().replace(microsecond=0)


def billing(with_gateway: bool = True) -> BillingContext:
    """The billing use cases' shared context for this invocation, built from the function's environment."""
    from kassa.services.context import BillingContext

    return BillingContext(store(), gateway() if with_gateway else None, publisher(), clocks.current(), tax_quoter())


def tax_quoter() -> TaxQuoter:
    """kassa's tax engine (with the VIES checker when KASSA_VIES_URL is set), or Stripe Tax when
    KASSA_TAX_PROVIDER=stripe — falling back to the engine when Stripe Tax is unavailable."""
    e = env()
    return _tax_quoter(e.tax_provider, e.vies_url, e.billing_table, e.aws_endpoint_url, e.stripe_secret_name)


@lru_cache(maxsize=8)
def _tax_quoter(
    provider: str | None, vies_url: str | None, table: str | None, endpoint: str | None, stripe_secret: str | None
) -> Any:
    from kassa.services.tax import engine_quoter

    checker = None
    if vies_url:
        from kassa.adapters.vies import DynamoViesCache, ViesClient

        cache = DynamoViesCache(_client("dynamodb", endpoint), table) if table else None
        checker = ViesClient(vies_url, timeout_s=3.0, cache=cache)
    engine = engine_quoter(checker)
    if provider != "stripe" or not stripe_secret:
        return engine
    from kassa.adapters.stripe_tax import StripeTaxProvider
    from kassa.domain.errors import PaymentProviderError

    stripe_tax = StripeTaxProvider(secret(stripe_secret)["secret_key"], env().stripe_api_base)

    def quote(lines: Any, **kwargs: Any) -> Any:
        try:
            return stripe_tax.quote(lines, **kwargs)
        except PaymentProviderError:
            logging.getLogger(__name__).warning("Stripe Tax unavailable; kassa's engine computed the tax")
            return engine(lines, **kwargs)

    return quote


def webhook_secret() -> str:
    return str(secret(env().require("stripe_secret_name"))["webhook_secret"])


def api_keys() -> tuple[ApiKey, ...]:
    """The valid and rolling API keys of ``kassa/api`` (``{"keys": [...]}`` or the old ``{"secret_key"}``)."""
    from kassa.domain.api_keys import parse_api_keys

    return parse_api_keys(secret(env().require("api_secret_name")))


def api_secret_key() -> str:
    """The first API key's secret (the current full key of a rotation)."""
    return api_keys()[0].secret


def link_keys() -> tuple[str, ...]:
    """The keys of customers' card-update links (``kassa/links``), the signing one first; the previous
    one still verifies the links it signed. Separate from the API keys: rolling those kills no link."""
    from kassa.domain.api_keys import parse_link_keys

    return parse_link_keys(secret(env().require("links_secret_name")))


def link_secret() -> str:
    """The key that signs new customer links (the first of ``link_keys()``)."""
    return link_keys()[0]


def webhooks(with_delivery: bool = True) -> Webhooks:
    """Outbound webhooks over the billing table; ``with_delivery``: its sender, delivery queue and the
    merchant email of a disabled endpoint (the delivery function), else endpoints only (the API)."""
    from kassa.adapters.eventbridge import SOURCE
    from kassa.adapters.webhooks import (
        DynamoWebhookStore,
        EventBridgeWebhookRule,
        HttpWebhookSender,
        SqsDelayedQueue,
        resolve_host,
    )
    from kassa.services.outbound_webhooks import Notify, Webhooks

    e = env()
    public_only = e.webhook_mode == "aws"
    endpoints = DynamoWebhookStore(client("dynamodb"), e.require("billing_table"))
    queue = (
        SqsDelayedQueue(client("sqs"), e.webhook_deliveries_queue_url, e.sqs_max_delay_s)
        if e.webhook_deliveries_queue_url
        else None
    )
    route = (
        EventBridgeWebhookRule(client("events"), e.webhooks_rule_bus, e.webhooks_rule_name, SOURCE)
        if e.webhooks_rule_name and e.webhooks_rule_bus
        else None
    )
    if not with_delivery:
        return Webhooks(endpoints, clocks.current(), queue=queue, public_only=public_only, resolve=resolve_host,
                        route=route)  # fmt: skip
    sender = HttpWebhookSender(public_only=public_only, timeout_s=e.webhook_timeout_s)
    billing_store = store()  # the merchant's address: settings.support_email
    notify = Notify(outbox(), mailer(), email_sender(), lambda: billing_store.get_settings().support_email)
    return Webhooks(endpoints, clocks.current(), sender=sender, queue=queue, public_only=public_only,
                    resolve=resolve_host, notify=notify, route=route)  # fmt: skip


def dunning() -> Dunning:
    """The Dunning service: retries, overdue ladder and emails, over this function's Billing."""
    from kassa.services.dunning import Dunning

    e = env()
    return Dunning(
        billing(),
        outbox(),
        mailer(),
        sender=email_sender(),
        link_secret=link_secret(),
        public_url=e.require("public_url"),
        files=files() if e.files_bucket else None,
    )
