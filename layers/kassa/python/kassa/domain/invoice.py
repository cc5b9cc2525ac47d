"""Invoices: lines, totals, statuses, gapless numbering at finalization."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kassa.domain.catalog import TaxBehavior
from kassa.domain.errors import IllegalTransition
from kassa.domain.ids import derived_id
from kassa.domain.parties import Party
from kassa.domain.payments import FraudWarning, InvoiceDispute, InvoiceRefund
from kassa.domain.periods import Period
from kassa.domain.subscription import Subscription

if TYPE_CHECKING:
    from kassa.domain.items import SubscriptionItem


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.OPEN: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}


#: the statuses in which an invoice can still be charged (a written-off invoice can still be paid)
COLLECTABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


class InvoiceAction(StrEnum):
    """What a merchant can do to an invoice (Stripe's invoice actions)."""

    FINALIZE = "finalize"
    PAY = "pay"
    VOID = "void"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


#: each action's target status and the statuses it may start from (Stripe: a draft is finalized,
#: an open or uncollectible invoice is paid or voided, an open one is marked uncollectible; a paid
#: or void invoice never changes again)
INVOICE_ACTIONS: dict[InvoiceAction, tuple[InvoiceStatus, frozenset[InvoiceStatus]]] = {
    InvoiceAction.FINALIZE: (InvoiceStatus.OPEN, frozenset({InvoiceStatus.DRAFT})),
    InvoiceAction.PAY: (InvoiceStatus.PAID, frozenset(COLLECTABLE)),
    InvoiceAction.VOID: (InvoiceStatus.VOID, frozenset(COLLECTABLE)),
    InvoiceAction.MARK_UNCOLLECTIBLE: (InvoiceStatus.UNCOLLECTIBLE, frozenset({InvoiceStatus.OPEN})),
}


def action_needed(invoice: Invoice, action: InvoiceAction) -> bool:
    """Whether ``action`` changes ``invoice``: False when it is already done (asking again answers the
    same invoice); an action the status does not allow is an IllegalTransition naming both statuses."""
    target, sources = INVOICE_ACTIONS[action]
    if invoice.status is target:
        return False
    if invoice.status not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        raise IllegalTransition(
            f"invoice {invoice.id} cannot go from {invoice.status.value} to {target.value}: "
            f"{action.value} needs an invoice that is {allowed}",
            param="status",
        )
    return True


class BillingReason(StrEnum):
    SUBSCRIPTION_CREATE = "subscription_create"
    SUBSCRIPTION_CYCLE = "subscription_cycle"
    SUBSCRIPTION_UPDATE = "subscription_update"
    SUBSCRIPTION_THRESHOLD = "subscription_threshold"  # usage passed billing_thresholds.amount_gte
    MANUAL = "manual"


class PaymentError(BaseModel):
    code: str
    decline_code: str | None = None
    message: str | None = None
    attempt: int | None = None
    payment_intent: str | None = None


class InvoiceLine(BaseModel):
    description: str
    amount: int  # minor units, before tax for exclusive prices, tax included for inclusive ones
    quantity: int
    unit_amount: int | None = None  # per unit; None for a tiered price (see ``tiers``)
    unit_amount_decimal: str | None = None  # a sub-unit price per unit (metered prices); the amount is rounded once
    price: str | None = None
    subscription_item: str | None = None  # si_…: the item this line bills
    proration: bool = False  # a prorated part of a period (a change, a partial first period)
    # a tiered price's breakdown (kassa.domain.pricing.TierLine): tier, up_to, quantity, unit and flat amounts
    tiers: list[dict[str, Any]] | None = None
    period_start: datetime
    period_end: datetime
    tax_behavior: TaxBehavior = TaxBehavior.EXCLUSIVE
    tax_amount: int = 0
    tax_rate: str | None = None  # effective percentage, "21", "14.975"
    tax_jurisdiction: str | None = None
    tax_code: str | None = None
    tax_details: dict[str, Any] | None = None  # the tax engine's LineTax: components, rule, sources (reports)
    discount_amount: int = 0  # already taken off ``amount`` (tax applies to the discounted amount)
    # a metered item's usage billed in arrears (kassa.domain.usage.UsageRef: meter, period_start, quantity,
    # seq, close, late): the store records it with the invoice, atomically
    usage: dict[str, Any] | None = None


class Invoice(BaseModel):
    id: str
    number: str | None = None
    customer: str
    subscription: str | None = None
    status: InvoiceStatus
    currency: str
    lines: list[InvoiceLine]
    subtotal: int
    tax: int
    total: int
    amount_due: int
    amount_paid: int = 0
    keep_as_draft: bool = False  # generated while collection was paused with keep_as_draft: not finalized
    paid_out_of_band: bool = False  # marked paid by the merchant (POST /v1/invoices/{id}/pay), nothing charged
    total_discount: int = 0  # the coupon's part, already taken off the lines
    discount: str | None = None  # the coupon and how its amounts were computed and rounded
    pre_payment_credit_notes_amount: int = 0
    post_payment_credit_notes_amount: int = 0
    starting_balance: int = 0  # the customer's balance applied (negative: credit used)
    ending_balance: int | None = None  # the balance left after this invoice (None: untouched)
    attempt_count: int = 0
    # outcome of attempt ``attempt_count``: None while in flight (or lost), then succeeded /
    # processing / declined / requires_action
    attempt_outcome: str | None = None
    attempt_trigger: str | None = None  # what started the last attempt (a SetupIntent id, "renewal", …)
    attempted_at: datetime | None = None  # when the last claimed attempt started (None: at finalization)
    billing_reason: BillingReason
    period_start: datetime
    period_end: datetime
    created: datetime
    finalized_at: datetime | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    payment_intent: str | None = None
    last_payment_error: PaymentError | None = None
    # dunning (kassa.services.dunning): the first failure anchors the retry schedule and the overdue
    # clock, and its decline code is what the recovery figures are counted by; ``next_dunning_at``
    # puts the invoice in the dunning index until it is paid, voided or given up
    first_failed_at: datetime | None = None
    first_payment_error: PaymentError | None = None
    next_dunning_at: datetime | None = None
    # tax, filled in before finalization (kassa.services.tax)
    tax_date: date | None = None  # the tax point the rates were taken at
    tax_breakdown: list[dict[str, Any]] = Field(default_factory=list)  # per jurisdiction, tax type, rate
    tax_rule: str | None = None  # the rule that decided, e.g. "eu_oss_b2c"
    tax_note: str | None = None  # legal mention (reverse charge)
    customer_tax_id: str | None = None
    customer_country: str | None = None
    # who sold and who bought, frozen when the invoice was made (kassa.domain.parties); None on an
    # invoice stored before parties were recorded. ``locale``: the customer's language for its documents
    seller: Party | None = None
    buyer: Party | None = None
    locale: str | None = None
    # after payment (kassa.domain.payments, docs/payments.md): refunds by whoever made them, disputes,
    # early fraud warnings; ``charge`` is the Stripe charge of ``payment_intent`` once an event named it
    charge: str | None = None
    amount_refunded: int = 0
    charge_amount_refunded: int = 0  # the charge's own figure (charge.refunded), when Stripe reported one
    refunds: list[InvoiceRefund] = Field(default_factory=list)
    disputes: list[InvoiceDispute] = Field(default_factory=list)
    amount_disputed_lost: int = 0  # what lost disputes took back
    fraud_warnings: list[FraudWarning] = Field(default_factory=list)
    version: int = 0

    def transition(self, target: InvoiceStatus, now: datetime) -> Invoice:
        if target == self.status:
            return self
        if target not in INVOICE_TRANSITIONS[self.status]:
            raise IllegalTransition(f"invoice {self.id} cannot go from {self.status.value} to {target.value}")
        changes: dict[str, object] = {"status": target}
        if target is InvoiceStatus.PAID:
            changes.update(paid_at=now, amount_paid=self.amount_due, last_payment_error=None, next_dunning_at=None)
        elif target is InvoiceStatus.VOID:
            changes.update(voided_at=now, next_dunning_at=None)
        elif target is InvoiceStatus.UNCOLLECTIBLE:  # written off: its dunning ends
            changes.update(next_dunning_at=None)
        return self.model_copy(update=changes)

    @property
    def collectable(self) -> bool:
        return self.status in COLLECTABLE

    @property
    def attempt_pending(self) -> bool:
        """An attempt was claimed but its outcome never recorded (to be re-sent under the same number)."""
        return self.attempt_count > 0 and self.attempt_outcome is None

    @property
    def gets_number_when_stored(self) -> bool:
        """A draft is finalized (numbered) as it is first stored, unless collection is paused with
        ``keep_as_draft``; an invoice stored void or uncollectible keeps no number."""
        return self.status is InvoiceStatus.DRAFT and not self.keep_as_draft

    @property
    def retried_on_new_card(self) -> bool:
        """A card the customer saves (card page, ``setup_intent.succeeded``) pays the open invoices
        only: a written-off (uncollectible) invoice stays written off (the merchant can still
        ``/pay`` it), drafts and void invoices are not due."""
        return self.status is InvoiceStatus.OPEN

    @property
    def dunned_on_failure(self) -> bool:
        """Whether a failed charge puts the invoice into dunning: an open one; a written-off invoice
        charged by the merchant (``/pay``) that declines stays written off, without retries."""
        return self.status is InvoiceStatus.OPEN

    @property
    def charge_description(self) -> str:
        """The PaymentIntent's description (a checkout's first invoice has no number before it is paid)."""
        return f"Invoice {self.number}" if self.number else "Subscription creation"

    def opened(self, now: datetime) -> Invoice:
        """draft → open without a number yet: the store numbers it (``finalize_invoice``), or it is
        a checkout's first invoice, numbered when it is paid (see :func:`checkout_invoice`)."""
        if self.status is not InvoiceStatus.DRAFT:
            raise IllegalTransition(f"invoice {self.id} is {self.status.value}; only a draft is finalized")
        opened = self.transition(InvoiceStatus.OPEN, now)
        return opened.model_copy(update={"finalized_at": now, "keep_as_draft": False})

    def with_number(self, number: str) -> Invoice:
        """The invoice with its number (handed out by the store's gapless counter, once)."""
        if self.number is not None:
            raise IllegalTransition(f"invoice {self.id} is already numbered {self.number}")
        if self.status is InvoiceStatus.DRAFT:
            raise IllegalTransition(f"invoice {self.id} is a draft; it is numbered as it is finalized")
        return self.model_copy(update={"number": number})

    @property
    def gets_number_when_paid(self) -> bool:
        """An invoice paid without a number (a checkout's first invoice) takes the next number in the
        write that marks it paid: a number is only ever used by an invoice that is kept."""
        return self.number is None and self.status is InvoiceStatus.PAID

    def finalize(self, number: str, now: datetime) -> Invoice:
        """draft → open with its number. Numbers are only handed out here, so there are no gaps."""
        return self.opened(now).with_number(number)


def checkout_invoice(draft: Invoice, now: datetime) -> Invoice:
    """A checkout's first invoice: open at once (it can be charged) but numbered only when it is paid.
    A checkout whose payment fails and expires (incomplete → incomplete_expired) voids it unnumbered,
    so a failed attempt uses up no number and the sequence has no gap."""
    return draft.opened(now)


def payment_unretried(invoice: Invoice) -> bool:
    """Whether the run that paid ``invoice`` is never run again should it die between the write and
    the publish of ``invoice.paid``: a dunning retry (a schedule: no message is delivered again), the
    merchant's ``pay``, a resumption, a card update's retry of open invoices. Those have only
    Stripe's ``payment_intent.succeeded`` to publish what the run may have lost. The renewal worker
    (its message comes again) and a checkout's completion (the storefront's call and Stripe's
    ``setup_intent.succeeded`` both complete it) are run again."""
    trigger = invoice.attempt_trigger or ""
    card_update = trigger.startswith("seti_") and invoice.billing_reason is not BillingReason.SUBSCRIPTION_CREATE
    return trigger.startswith(("dunning:", "pay:", "resume:")) or card_update


def invoice_id_for(subscription_id: str, period_start: datetime) -> str:
    """Exactly one invoice per subscription period: its id is derived from both."""
    return derived_id("in", subscription_id, period_start.isoformat())


def format_number(prefix: str, sequence: int) -> str:
    return f"{prefix}-{sequence:04d}"


def period_lines(sub: Subscription, period: Period, names: Mapping[str, str] | str | None = None) -> list[InvoiceLine]:
    """One line per item for a whole ``period``: its price's charge for the item's quantity, with a
    tiered price's breakdown. ``names``: the product name per price id (or one name for all)."""
    from kassa.domain.pricing import tier_dicts

    lines = []
    for item in sub.items:
        if item.metered:  # billed in arrears from its usage (kassa.domain.usage)
            continue
        priced = item.priced()
        label = (names if isinstance(names, str) else (names or {}).get(item.price)) or item.name or item.price
        description = f"{item.quantity} × {label} ({period_span(period)})"
        lines.append(item_line(item, period, description, priced.amount, item.quantity, tier_dicts(priced)))
    return lines


def period_span(period: Period) -> str:
    """A period as a line's description shows it: ``2026-04-01 – 2026-05-01``."""
    return f"{period.start.date().isoformat()} – {period.end.date().isoformat()}"


def item_line(
    item: SubscriptionItem,
    period: Period,
    description: str,
    amount: int,
    quantity: int,
    tiers: list[dict[str, Any]] | None,
    **extra: Any,
) -> InvoiceLine:
    """A line charging a subscription item over ``period`` (its fixed fee, or its usage in arrears)."""
    return InvoiceLine(
        description=description,
        amount=amount,
        quantity=quantity,
        unit_amount=item.unit_amount,
        price=item.price,
        subscription_item=item.id,
        tiers=tiers,
        period_start=period.start,
        period_end=period.end,
        tax_behavior=item.tax_behavior,
        **extra,
    )


def build_subscription_invoice(
    sub: Subscription,
    period: Period,
    now: datetime,
    reason: BillingReason,
    product_name: Mapping[str, str] | str | None = None,
) -> Invoice:
    """A draft invoice for one period of a subscription (tax is added by the tax capability)."""
    return from_lines(
        invoice_id_for(sub.id, period.start),
        sub.customer,
        sub.id,
        sub.currency,
        period_lines(sub, period, product_name),
        period,
        now,
        reason,
    )


def from_lines(
    invoice_id: str,
    customer: str,
    subscription: str | None,
    currency: str,
    lines: list[InvoiceLine],
    period: Period,
    now: datetime,
    reason: BillingReason,
) -> Invoice:
    subtotal = sum(line.amount for line in lines)
    tax = sum(line.tax_amount for line in lines)
    exclusive_tax = sum(line.tax_amount for line in lines if line.tax_behavior is TaxBehavior.EXCLUSIVE)
    total = subtotal + exclusive_tax
    return Invoice(
        id=invoice_id,
        customer=customer,
        subscription=subscription,
        status=InvoiceStatus.DRAFT,
        currency=currency,
        lines=lines,
        subtotal=subtotal,
        tax=tax,
        total=total,
        amount_due=max(total, 0),
        billing_reason=reason,
        period_start=period.start,
        period_end=period.end,
        created=now,
    )
