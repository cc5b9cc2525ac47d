"""Ports: the small typed interfaces services use to reach storage, Stripe, the bus and the clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the ports only name these types; importing the models here would slow cold starts
    from kassa.domain.audit import AuditEvent, PendingAudit
    from kassa.domain.catalog import Price, Product
    from kassa.domain.credit_notes import CreditNote
    from kassa.domain.customer import Address, Customer, PaymentMethodSummary
    from kassa.domain.dashboard import DashboardUser, Session
    from kassa.domain.discounts import Coupon, PromotionCode
    from kassa.domain.events import DomainEvent
    from kassa.domain.experiments import Experiment
    from kassa.domain.invoice import Invoice
    from kassa.domain.money import Money
    from kassa.domain.settings import MerchantSettings
    from kassa.domain.subscription import Subscription
    from kassa.domain.usage import Aggregation, Meter, MeterEvent, UsageState
    from kassa.domain.webhooks import Delivery, RouteState, WebhookEndpoint


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool


def every_item(fetch: Callable[[str | None], Page]) -> Iterator[Any]:
    """Every item of a cursor listing: ``fetch(starting_after)`` page after page (the cursor is the
    last item's id) until a page says there is no more."""
    starting_after = None
    while True:
        page = fetch(starting_after)
        yield from page.items
        if not page.has_more or not page.items:
            return
        starting_after = page.items[-1].id


@dataclass(frozen=True)
class ListQuery:
    """A merchant-wide listing (``GET /v1/customers|subscriptions|invoices``), checked by
    ``kassa.services.listing``: newest first by ``<created, whole seconds>#<id>``; ``starting_after``
    pages to older objects, ``ending_before`` to newer ones (positions: the cursor object need not match
    the filters). ``statuses`` None means every status; ``created_gte``/``created_lte`` are inclusive."""

    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    statuses: frozenset[str] | None = None
    customer: str | None = None
    price: str | None = None  # subscriptions with an item on this price, invoices with a line on it
    email: str | None = None  # customers: exact, case-insensitive
    name: str | None = None  # customers: a part of the name, case-insensitive
    subscription: str | None = None  # invoices of this subscription
    total_gte: int | None = None  # invoices: total at least (minor units of the invoice's currency)
    total_lte: int | None = None  # invoices: total at most
    created_gte: datetime | None = None
    created_lte: datetime | None = None


@dataclass(frozen=True)
class WebhookRecord:
    id: str
    type: str
    status: str  # received | processed | ignored | rejected
    payload: str  # the raw body; "" when it is kept in the FileStore under ``payload_key``
    received_at: datetime
    note: str | None = None
    payload_key: str | None = None  # a body too large for the record: its FileStore key (webhooks/<id>.json)


@dataclass(frozen=True)
class UsageKey:
    """One aggregate: a subscription's usage of one meter in the period starting at ``period_start``."""

    subscription: str
    meter: str
    period_start: datetime


@dataclass(frozen=True)
class UsageWrite:
    """One validated event to record once (by customer and identifier) into its aggregate.
    ``expires_at``: until when its identifier is remembered (past the end of its period)."""

    event: MeterEvent
    key: UsageKey
    aggregation: Aggregation
    expires_at: datetime


class UsageOutcome(StrEnum):
    ACCEPTED = "accepted"  # counted in its period's aggregate
    DUPLICATE = "duplicate"  # its identifier was recorded before: counted once already
    LATE = "late"  # counted, but its period was invoiced: the next invoice adjusts it


class BillingStore(Protocol):
    """Persistence with the atomic units of work billing needs. Conflicts raise domain.errors.Conflict."""

    # catalog
    def put_product(self, product: Product) -> None: ...
    def get_product(self, product_id: str) -> Product: ...
    def list_products(self, limit: int, starting_after: str | None) -> Page: ...
    def put_price(self, price: Price) -> None: ...
    def get_price(self, price_id: str) -> Price: ...
    def list_prices(self, limit: int, starting_after: str | None) -> Page: ...
    def save_product(self, product: Product) -> Product: ...
    def save_price(self, price: Price) -> Price: ...

    # coupons and promotion codes
    def put_coupon(self, coupon: Coupon) -> None: ...
    def get_coupon(self, coupon_id: str) -> Coupon: ...
    def put_promotion_code(self, code: PromotionCode) -> None: ...
    def get_promotion_code(self, code: str) -> PromotionCode: ...
    def count_redemption(
        self, coupon: Coupon, code: PromotionCode | None, sub: Subscription | None = None
    ) -> Subscription | None:
        """Store the coupon (and code) with one more redemption, conditional on the count and version
        read (Conflict otherwise, nothing written). With ``sub``: the subscription carrying the
        discount is saved in the same write under its version (optimistic lock; Conflict when it
        changed or is not stored, and then nothing is counted either) and returned with version + 1;
        None without one."""
        ...

    def save_coupon(self, coupon: Coupon) -> Coupon:
        """A merchant's change (deletion): Conflict when its version or times_redeemed changed."""
        ...

    def get_promotion_code_by_id(self, promotion_code_id: str) -> PromotionCode: ...
    def save_promotion_code(self, code: PromotionCode) -> PromotionCode:
        """A merchant's change (active): Conflict when its version or times_redeemed changed."""
        ...

    def list_coupons(self, limit: int, starting_after: str | None) -> Page: ...
    def list_promotion_codes(self, limit: int, starting_after: str | None) -> Page: ...

    # credit notes
    def list_credit_notes(self, invoice_id: str) -> list[CreditNote]: ...
    def get_credit_note(self, credit_note_id: str) -> CreditNote:
        """A credit note by its id; NotFound naming ``credit_note`` when there is none."""
        ...

    def issue_credit_note(self, note: CreditNote, invoice: Invoice, customer: Customer | None) -> Invoice: ...
    def credit_notes_by_tax_date(self, start: date, end: date) -> list[CreditNote]:
        """Credit notes (issued and void) whose ``tax_date`` is in [start, end], by tax date then id
        (gsi3 ``TAXMONTH#<month>``, sort key ``CN#<tax date>#<id>``; notes without a tax date are not there)."""
        ...

    # customers
    def create_customer(self, customer: Customer) -> None: ...
    def get_customer(self, customer_id: str) -> Customer: ...
    def find_customer_by_email(self, email: str) -> Customer | None: ...
    def save_customer(self, customer: Customer) -> Customer: ...
    def change_customer_email(self, customer: Customer, previous_email: str) -> Customer:
        """Save the customer (optimistic lock) with its new email and move the email lookup to it, in
        one write: AlreadyExists (param ``email``) when another customer has the new email."""
        ...

    # subscriptions and invoices
    def create_subscription(self, sub: Subscription, invoice: Invoice | None, invoice_prefix: str) -> Invoice | None:
        """Atomically store a new subscription and its first invoice: a draft is finalized (numbered);
        an invoice already open (a checkout's, numbered when paid) is stored as it is."""
        ...

    def get_subscription(self, subscription_id: str) -> Subscription: ...
    def save_subscription(self, sub: Subscription) -> Subscription: ...
    def get_invoice(self, invoice_id: str) -> Invoice: ...
    def find_invoice(self, invoice_id: str) -> Invoice | None: ...
    def find_invoice_by_payment_intent(self, payment_intent: str) -> Invoice | None:
        """The paid invoice whose payment is ``payment_intent`` (refunds, disputes, fraud warnings)."""
        ...

    def save_invoice(self, invoice: Invoice) -> Invoice: ...
    def save_invoice_and_subscription(
        self, invoice: Invoice, sub: Subscription | None
    ) -> tuple[Invoice, Subscription | None]: ...

    def renew(
        self, sub: Subscription, invoice: Invoice, invoice_prefix: str, customer: Customer | None = None
    ) -> tuple[Subscription, Invoice]:
        """Atomically: advance the subscription (optimistic lock), create its period's invoice
        (once — AlreadyExists if it is there) and finalize it with the next gapless number. The usage
        its lines bill (``InvoiceLine.usage``) is recorded as billed in the same write, each aggregate
        only if it did not change since it was read (its ``seq``): Conflict otherwise."""
        ...

    def finalize_invoice(
        self, invoice: Invoice, invoice_prefix: str, sub: Subscription | None = None
    ) -> tuple[Invoice, Subscription | None]:
        """Atomically: store ``invoice`` (a new state of a stored, unnumbered, non-draft invoice —
        just finalized, or a checkout's first invoice just paid) under its version with the next
        gapless number, and ``sub`` under its version. Conflict when either changed; then the counter
        has not moved."""
        ...

    def list_customer_invoices(self, customer_id: str, limit: int, starting_after: str | None) -> Page: ...
    def list_customer_subscriptions(self, customer_id: str) -> list[Subscription]: ...
    def invoices_by_tax_date(self, start: date, end: date) -> list[Invoice]: ...

    # merchant-wide listings and search (from indexes, never a Scan; see docs/data-model.md)
    def list_customers(self, query: ListQuery) -> Page: ...
    def list_subscriptions(self, query: ListQuery) -> Page: ...
    def list_invoices(self, query: ListQuery) -> Page: ...

    # due work
    def due_subscriptions(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]: ...
    def next_due_after(self, now: datetime) -> datetime | None: ...

    # dunning: invoices being dunned, customers whose card expires, timers (one index, sharded)
    def due_dunning(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]: ...
    def next_dunning_after(self, now: datetime) -> datetime | None: ...
    def put_timer(self, key: str, at: datetime) -> None: ...
    def delete_timer(self, key: str) -> None: ...
    def list_open_invoices(self, customer_id: str) -> list[Invoice]: ...

    # settings
    def get_settings(self) -> MerchantSettings: ...
    def put_settings(self, settings: MerchantSettings) -> None: ...

    # price experiments (kassa.domain.experiments): at most one running per product
    def put_experiment(self, experiment: Experiment) -> None:
        """Store a new running experiment with its product's lookup; AlreadyExists (param ``product``)
        when the product has a running one."""
        ...

    def get_experiment(self, experiment_id: str) -> Experiment: ...
    def running_experiment(self, product_id: str) -> Experiment | None: ...
    def stop_experiment(self, experiment: Experiment) -> Experiment:
        """Save the stopped experiment (under its version) and release its product, in one write."""
        ...

    def list_experiments(self, limit: int, starting_after: str | None) -> Page: ...

    # usage: meters, aggregates (docs/usage.md)
    def put_meter(self, meter: Meter) -> None:
        """Store a new meter; AlreadyExists (param ``event_name``) when its event name has one."""
        ...

    def get_meter(self, meter_id: str) -> Meter: ...
    def find_meter(self, event_name: str) -> Meter | None: ...
    def save_meter(self, meter: Meter) -> Meter: ...
    def list_meters(self, limit: int, starting_after: str | None) -> Page: ...
    def record_usage(self, writes: list[UsageWrite]) -> list[UsageOutcome]:
        """Record each event once (its customer and identifier, kept until ``expires_at``) into its
        aggregate, atomically with its dedupe record: one outcome per write, in order. An event whose
        period was closed (invoiced) is recorded there and its period listed as late."""
        ...

    def get_usage(self, key: UsageKey) -> UsageState: ...
    def late_usage(self, subscription_id: str, meter_id: str) -> list[datetime]:
        """The closed periods that received late events not invoiced yet (period starts, oldest first)."""
        ...

    # webhook events
    def record_webhook(self, record: WebhookRecord) -> WebhookRecord | None:
        """Store a received event once; returns None when new, the stored record when a duplicate."""
        ...

    def get_webhook(self, event_id: str) -> WebhookRecord | None: ...
    def mark_webhook(self, event_id: str, status: str, note: str | None = None) -> bool:
        """Set the final status once; False when it was already processed."""
        ...

    # once-only markers (a portal session link exchanged, a retention offer made)
    def claim_once(self, key: str, expires_at: datetime) -> bool:
        """Record ``key`` if it is new (a conditional write): True for the first caller, False for
        every later one. The marker may be forgotten after ``expires_at`` (a TTL)."""
        ...

    def is_claimed(self, key: str) -> bool:
        """Whether ``key`` was claimed (a strongly consistent read; claims nothing)."""
        ...

    def release_claim(self, key: str) -> None:
        """Forget the claim of ``key`` (the work it guarded failed): the next ``claim_once`` wins again."""
        ...


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    DECLINED = "declined"


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    payment_intent: str | None
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    client_secret: str | None = None
    attempt: int | None = None  # kassa's attempt number (PaymentIntent metadata), when known


@dataclass(frozen=True)
class SetupIntentInfo:
    id: str
    client_secret: str | None
    status: str
    payment_method: str | None
    customer: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    payment_method_types: tuple[str, ...] = ("card",)
    mandate: str | None = None  # the Mandate (mandate_…) a bank debit's confirmation created


@dataclass(frozen=True)
class MandateAcceptance:
    """How the customer accepted a bank-debit mandate online (Stripe's
    ``customer_acceptance.online``): the browser's IP address and user agent, as the page saw them."""

    ip_address: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class GeneratedSepaDebit:
    """A first payment by iDEAL or Bancontact saved for later (``setup_future_usage: off_session``):
    the ``sepa_debit`` PaymentMethod and mandate it generated, which renewals debit."""

    payment_method: str
    mandate: str | None
    source_type: str  # ideal | bancontact


@dataclass(frozen=True)
class PaymentIntentInfo:
    """A PaymentIntent as the gateway reads it back (``get_payment_intent``): its outcome as a
    ChargeResult, the kassa invoice it pays and the client secret Stripe.js confirms it with."""

    id: str
    status: str  # Stripe's: requires_action | requires_payment_method | processing | succeeded | …
    client_secret: str | None
    invoice: str | None  # the ``kassa_invoice`` metadata; None: not kassa's
    customer: str | None
    payment_method: str | None
    result: ChargeResult
    # where the customer authorises a redirect payment (iDEAL, Bancontact): next_action.redirect_to_url.url
    redirect_url: str | None = None

    @property
    def awaiting_customer(self) -> bool:
        """Stripe waits for the customer to authenticate (3-D Secure) before it charges: an
        on-session ``requires_action``, or an off-session ``authentication_required`` that left the
        PaymentIntent ``requires_payment_method`` with its card still named."""
        if self.status in ("requires_action", "requires_confirmation"):
            return True
        return self.status == "requires_payment_method" and self.result.code == "authentication_required"


@dataclass(frozen=True)
class RefundInfo:
    """A refund as Stripe answered it."""

    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    amount: int


class PaymentGateway(Protocol):
    @property
    def publishable_key(self) -> str: ...

    def create_customer(self, *, email: str, name: str | None, address: Address, kassa_id: str) -> str: ...
    def create_setup_intent(
        self, *, customer: str, metadata: dict[str, str], payment_method_types: Sequence[str] = ("card",)
    ) -> SetupIntentInfo:
        """A SetupIntent for future off-session payments offering ``payment_method_types``
        (card, sepa_debit, us_bank_account)."""
        ...

    def get_setup_intent(self, setup_intent_id: str) -> SetupIntentInfo: ...
    def attach_payment_method(
        self, *, payment_method: str, customer: str, mandate: str | None = None
    ) -> PaymentMethodSummary:
        """Attach and make it the Stripe customer's default; the summary of a card or bank account
        (a bank account's with its mandate reference, read from ``mandate`` when Stripe made one)."""
        ...

    def kassa_customer_of(self, customer: str) -> str | None: ...
    def update_customer(
        self,
        *,
        customer: str,
        email: str,
        name: str | None,
        address: Address,
        preferred_locale: str,
        kassa_id: str,
    ) -> None: ...
    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount: Money,
        invoice_id: str,
        attempt: int,
        description: str,
        off_session: bool = True,
        payment_method_type: str = "card",
        mandate: str | None = None,
    ) -> ChargeResult:
        """One PaymentIntent per (invoice, attempt), confirmed at once. A bank debit
        (``payment_method_type`` sepa_debit, us_bank_account, under its ``mandate``) answers
        ``processing``: it settles days later by webhook. ``off_session`` (renewals,
        dunning, merchant actions): the customer is away, a card that needs 3-D Secure fails with
        ``authentication_required``. On-session (checkout, the card page): the customer is there, a
        card that needs 3-D Secure answers ``requires_action`` with the client secret to confirm."""
        ...

    def get_payment_intent(self, payment_intent: str) -> PaymentIntentInfo:
        """Read a PaymentIntent back (after Stripe.js confirmed it); NotFound for an unknown id."""
        ...

    def refund(self, *, payment_intent: str, amount: Money, credit_note_id: str) -> str: ...
    def create_refund(
        self, *, payment_intent: str, amount: Money, credit_note_id: str, reason: str | None = None
    ) -> RefundInfo:
        """Refund part or all of a payment, keyed on the credit note (a retry refunds once)."""
        ...

    def invoice_of_payment_intent(self, payment_intent: str) -> str | None:
        """The kassa invoice a PaymentIntent pays (its ``kassa_invoice`` metadata); None: not kassa's."""
        ...

    def create_redirect_payment(
        self,
        *,
        customer: str,
        source_type: str,
        amount: Money,
        invoice_id: str,
        attempt: int,
        return_url: str,
    ) -> PaymentIntentInfo:
        """A first payment by a redirect method (``ideal``, ``bancontact``) saved for later SEPA debits
        (``setup_future_usage: off_session``); the customer authorises it at their bank
        (``next_action.redirect_to_url``)."""
        ...

    def generated_sepa_debit(self, payment_intent: str) -> GeneratedSepaDebit | None:
        """The ``sepa_debit`` PaymentMethod a succeeded iDEAL / Bancontact payment generated (None: none)."""
        ...


class EventPublisher(Protocol):
    def publish(self, events: list[DomainEvent]) -> None: ...


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered customer email. ``key`` names what it is about (e.g. ``<invoice>:payment_failed:1``);
    an email with a key that was already claimed is never sent again."""

    key: str
    template: str
    to: str
    customer: str | None
    locale: str
    subject: str
    html: str
    text: str
    created: datetime
    reply_to: str | None = None


@dataclass(frozen=True)
class OutboxRecord:
    email: OutgoingEmail
    status: str  # pending (claimed, not yet accepted by SES) | sent | failed
    message_id: str | None = None
    sent_at: datetime | None = None
    error: str | None = None


class Outbox(Protocol):
    """Every customer email is recorded here before it is sent, keyed on ``OutgoingEmail.key``."""

    def claim(self, email: OutgoingEmail) -> OutboxRecord | None:
        """Record ``email`` as pending, once. None when the key is new; the stored record otherwise."""
        ...

    def mark_sent(self, key: str, message_id: str, sent_at: datetime) -> None: ...
    def mark_failed(self, key: str, error: str) -> None: ...
    def get(self, key: str) -> OutboxRecord | None: ...
    def list_customer(self, customer_id: str, limit: int = 100) -> list[OutboxRecord]:
        """A customer's emails, newest first."""
        ...

    def list_month(self, month: str, limit: int = 100) -> list[OutboxRecord]:
        """Emails created in ``month`` (YYYY-MM), newest first."""
        ...


class DashboardAccounts(Protocol):
    """The merchant dashboard's users and sessions (``kassa.domain.dashboard``), on the billing table."""

    def add_user(self, user: DashboardUser, *, replace: bool = False) -> None:
        """Store a user; AlreadyExists (param ``email``) when the email has one and not ``replace``."""
        ...

    def get_user(self, email: str) -> DashboardUser | None: ...
    def remove_user(self, email: str) -> bool:
        """Delete the user of ``email``; False when there was none."""
        ...

    def put_session(self, session: Session) -> None: ...
    def get_session(self, session_id: str) -> Session | None: ...
    def delete_session(self, session_id: str) -> None: ...


class AuditLog(Protocol):
    """The audit trail (docs/audit.md): entries are appended once and never updated."""

    def append(self, event: AuditEvent) -> bool:
        """Write a new entry, once (a conditional put on its id): False when its id is there already
        (the stored entry is left as it is)."""
        ...

    def list(
        self, object_id: str | None, start: datetime, end: datetime, limit: int, starting_after: str | None
    ) -> Page:
        """Entries created in [start, end], oldest first (then by id), of one object or all of them;
        ``starting_after``: the id of the last entry of the previous page."""
        ...

    def hold(self, pending: PendingAudit) -> None:
        """Store (or replace) the pending record of a request being recorded (raises when it cannot)."""
        ...

    def release(self, key: str) -> None:
        """Remove a pending record: its entries are written (or its request changed nothing)."""
        ...

    def stale(self, until: datetime, limit: int) -> Sequence[PendingAudit]:
        """Pending records created up to ``until``, oldest first (those no request is still working on)."""
        ...


class Mailer(Protocol):
    def send(self, email: OutgoingEmail, sender: str) -> str:
        """Hand the email to the mail service; returns its message id. Raises
        ``kassa.domain.errors.Unavailable`` when it may be retried, ``InvalidInput`` when it never will."""
        ...


class FileStore(Protocol):
    """Objects by key in a private, encrypted store (invoice documents, large event payloads).

    ``put`` with ``only_if_absent`` writes nothing when the key exists and returns False: the first
    writer wins, so a document made twice is stored once."""

    def put(self, key: str, data: bytes, content_type: str, *, only_if_absent: bool = False) -> bool: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...


class WorkQueue(Protocol):
    def send(self, messages: list[dict[str, Any]]) -> None: ...


def charge_result_from_intent(intent: Any) -> ChargeResult:
    """Map a PaymentIntent (object or webhook dict) to a ChargeResult."""
    status = intent.get("status")
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        result = ChargeStatus.SUCCEEDED
    elif status == "processing":
        result = ChargeStatus.PROCESSING
    elif status in ("requires_action", "requires_confirmation"):
        result = ChargeStatus.REQUIRES_ACTION
    else:
        result = ChargeStatus.DECLINED
    code = error.get("code")
    if result is ChargeStatus.REQUIRES_ACTION and not code:
        code = "authentication_required"  # waiting for 3-D Secure: no error yet, but that is why
    decline_code = error.get("decline_code") or (code if code == "card_declined" else None)
    charge = intent.get("latest_charge")
    if result is ChargeStatus.DECLINED and isinstance(charge, dict) and charge.get("failure_code"):
        # a bank debit that failed days later: the bank's return reason is the charge's failure_code
        # (insufficient_funds, account_closed, debit_not_authorized …), more precise than the intent's
        decline_code = error.get("decline_code") or charge.get("failure_code")
        code = code or charge.get("failure_code")
    return ChargeResult(
        status=result,
        payment_intent=intent.get("id"),
        code=code,
        decline_code=decline_code,
        message=error.get("message") or (charge.get("failure_message") if isinstance(charge, dict) else None),
        client_secret=intent.get("client_secret"),
        attempt=_attempt_of(intent),
    )


def charge_result_from_card_error(error: Any, attempt: int | None = None) -> ChargeResult:
    """Map a card error (the ``error`` of Stripe's answer: ``code``, ``decline_code``, ``message``
    and the ``payment_intent`` it left) to a ChargeResult: declined, or waiting for the customer when
    the code asks for authentication (an off-session card that needs 3-D Secure)."""
    from kassa.domain.dunning import AUTHENTICATION_CODES  # here: the ports import no domain models

    pi = error.get("payment_intent") or {}
    if not isinstance(pi, dict):
        pi = {}
    code = error.get("code") or "card_declined"
    return ChargeResult(
        status=ChargeStatus.REQUIRES_ACTION if code in AUTHENTICATION_CODES else ChargeStatus.DECLINED,
        payment_intent=pi.get("id"),
        code=code,
        decline_code=error.get("decline_code") or (code if code == "card_declined" else None),
        message=error.get("message"),
        client_secret=pi.get("client_secret"),
        attempt=attempt,
    )


def intent_status(result: ChargeStatus, *, off_session: bool) -> str:
    """The status Stripe leaves a PaymentIntent in after a charge with this outcome (the other way
    round from ``charge_result_from_intent``): on-session, a card that needs 3-D Secure waits for it
    (``requires_action``); off-session its confirmation failed with ``authentication_required`` and,
    like a declined one, the intent waits for a payment method."""
    if result is ChargeStatus.SUCCEEDED:
        return "succeeded"
    if result is ChargeStatus.PROCESSING:
        return "processing"
    if result is ChargeStatus.REQUIRES_ACTION and not off_session:
        return "requires_action"
    return "requires_payment_method"


def payment_intent_info(intent: Any) -> PaymentIntentInfo:
    """Map a PaymentIntent (object or dict) to what ``get_payment_intent`` answers."""
    metadata = intent.get("metadata") or {}
    invoice = metadata.get("kassa_invoice")
    pm = intent.get("payment_method")
    if pm is not None and not isinstance(pm, str):
        pm = pm.get("id")
    if pm is None:  # an off-session authentication failure names the card on the error
        error_pm = (intent.get("last_payment_error") or {}).get("payment_method")
        pm = error_pm if isinstance(error_pm, str) or error_pm is None else error_pm.get("id")
    action = intent.get("next_action") or {}
    redirect = action.get("redirect_to_url") if action.get("type") == "redirect_to_url" else None
    url = redirect.get("url") if isinstance(redirect, dict) else None
    return PaymentIntentInfo(
        id=str(intent.get("id")),
        status=str(intent.get("status")),
        client_secret=intent.get("client_secret"),
        invoice=invoice if isinstance(invoice, str) and invoice else None,
        customer=intent.get("customer"),
        payment_method=pm,
        result=charge_result_from_intent(intent),
        redirect_url=url if isinstance(url, str) and url else None,
    )


def _attempt_of(intent: Any) -> int | None:
    raw = (intent.get("metadata") or {}).get("kassa_attempt")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


@dataclass(frozen=True)
class CustomerAnalytics:
    """What the analytics last applied for one customer: its share of every aggregate
    (``kassa.domain.analytics.Contribution``) under an optimistic version."""

    customer: str
    contribution: dict[tuple[str, str, str], dict[str, int]]
    version: int = 0


class AnalyticsStore(Protocol):
    """Monthly analytics aggregates (docs/analytics.md): counters per (kind, currency, key), each
    customer's applied contribution, written together so that applying a customer's change is atomic."""

    def customer_state(self, customer_id: str) -> CustomerAnalytics | None: ...
    def apply(
        self,
        previous: CustomerAnalytics,
        contribution: dict[tuple[str, str, str], dict[str, int]],
        delta: dict[tuple[str, str, str], dict[str, int]],
    ) -> None:
        """Store the customer's new contribution (condition: ``previous``'s version, 0 for a customer not
        stored yet) and add ``delta``
        to the aggregates, in one transaction; a lost race raises ``Conflict``."""
        ...

    def aggregates(self, kind: str, currency: str, low: str = "", high: str = "~") -> dict[str, dict[str, int]]:
        """The counters of one kind and currency whose key is in [low, high] (one Query)."""
        ...

    def currencies(self) -> list[str]: ...
    def replace_all(
        self,
        customers: dict[str, dict[tuple[str, str, str], dict[str, int]]],
        totals: dict[tuple[str, str, str], dict[str, int]],
    ) -> None:
        """A rebuild: every customer's contribution and every aggregate written anew, stale ones removed."""
        ...


# ---------------------------------------------------------------- outbound webhooks (docs/webhooks.md)
@dataclass(frozen=True)
class WebhookResponse:
    """What one POST to an endpoint got: the status (None: no answer), time taken, why it failed."""

    status: int | None
    latency_ms: int
    error: str | None = None


class WebhookStore(Protocol):
    """Endpoints and their delivery log (one entry per event and endpoint, with the payload sent)."""

    def add_endpoint(self, endpoint: WebhookEndpoint, limit: int = ...) -> None:
        """Create it, counted atomically with the write: ``EndpointLimitReached`` when ``limit``
        endpoints exist (concurrent creates never pass it), AlreadyExists for a known id. Counts as
        a route change (``route_state``)."""
        ...

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        """Raises NotFound naming ``id``."""
        ...

    def list_endpoints(self) -> list[WebhookEndpoint]:
        """Every endpoint, oldest first (at most ``MAX_ENDPOINTS``)."""
        ...

    def save_endpoint(self, endpoint: WebhookEndpoint, *, reroutes: bool = False) -> WebhookEndpoint:
        """Write under ``endpoint.version`` (Conflict when it changed); returns it with version + 1.
        ``reroutes``: the write changes what is subscribed (``enabled_events``, ``status``): counted
        as a route change, atomically with it."""
        ...

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete it and free its place under the limit, atomically (nothing when it is gone); a
        route change."""
        ...

    def route_state(self) -> RouteState:
        """The route changes counted and the one the route was last put for (a consistent read)."""
        ...

    def mark_route_synced(self, changes: int) -> None:
        """The route was put with the endpoints as listed after ``changes`` (never lowered)."""
        ...

    def claim_delivery(self, delivery: Delivery, body: bytes) -> Delivery | None:
        """Record a delivery once: None when it is new, the stored one otherwise."""
        ...

    def get_delivery(self, endpoint_id: str, event_id: str) -> Delivery | None: ...
    def load_delivery(self, endpoint_id: str, event_id: str) -> tuple[Delivery, bytes] | None:
        """The delivery and the payload it sends, in one read."""
        ...

    def save_delivery(self, delivery: Delivery) -> Delivery:
        """Write under ``delivery.version`` (Conflict when it changed); returns it with version + 1."""
        ...

    def list_deliveries(
        self, endpoint_id: str, limit: int, since: datetime | None = None, until: datetime | None = None
    ) -> list[Delivery]:
        """An endpoint's deliveries by event time, newest first, events created in [since, until]."""
        ...

    def pending_deliveries(self, limit: int) -> list[Delivery]:
        """Every endpoint's deliveries still to be attempted (``pending``, ``retrying``), the
        earliest ``next_attempt_at`` first (may scan: for resuming them, not for a request)."""
        ...


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        """One POST, no redirects followed; never raises for the endpoint's failures (timeouts,
        refused connections, refused addresses): they are in the response."""
        ...


class DelayedQueue(Protocol):
    def send_at(self, messages: list[tuple[dict[str, Any], datetime]], now: datetime) -> None:
        """Send each message to be received at (or, past the queue's longest delay, before) its time."""
        ...


class WebhookRoute(Protocol):
    def route(self, subscribed: list[str], *, cached: bool = False) -> None:
        """Let only these events reach the delivery queue (``kassa.domain.webhooks.subscribed``:
        ``[]`` none, ``["*"]`` all, else event types and ``prefix.*`` wildcards). Raises Unavailable.
        ``cached``: the same route put by this process a moment ago may be skipped."""
        ...
