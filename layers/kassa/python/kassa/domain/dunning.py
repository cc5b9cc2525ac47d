"""Dunning policy: when to retry a failed payment, what a decline means, how far an overdue account goes.

Pure: no I/O; every function gets ``now`` and the data it needs. Three independent pieces, all per
merchant and all validated when saved (``InvalidInput`` naming the field):

* **RetrySchedule** — *when* the next payment attempt happens. Stripe's recommended default is
  "8 tries within 2 weeks" (Smart Retries; windows of 1, 2, 3 weeks, 1 or 2 months). kassa has no
  machine learning, so a window is spread evenly (rounded to the hour), which also moves each retry
  to another time of day. Explicit day offsets (Kill Bill style) are accepted instead.
* **Decline classification** — *whether* to retry: hard declines (stolen card, closed account …)
  are never retried and the customer is asked for a new card (Stripe does not retry non-retryable
  decline codes or payments without a payment method; the card networks fine excessive retries);
  ``authentication_required`` needs the customer on-session, so an authentication link is sent
  instead of a blind retry; everything else, and every unknown code, is soft and follows the schedule.
* **OverdueLadder** — *what happens to the account* while an invoice stays unpaid, after Kill Bill's
  overdue model: states entered on conditions (days since the earliest unpaid invoice, optionally
  the number of unpaid invoices and the unpaid balance), each with actions (an email, blocking
  changes, disabling entitlements, one final action). Default: warning email at day 3, suspension
  at day 10, cancellation at day 21.

Plus the dunning figures: recovered invoices, recovered amounts per currency and recovery rates
per decline code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import Invoice, InvoiceStatus, PaymentError
from kassa.domain.money import Money, normalize_currency
from kassa.domain.payment_methods import BANK_RETURN_REASONS
from kassa.domain.periods import ensure_utc
from kassa.domain.subscription import Status, Subscription

# The email templates kassa ships (kassa.emails renders them; a test keeps both lists equal). A
# ladder may name another template only when the merchant supplies it (see OverdueLadder.validated).
EMAIL_TEMPLATES: frozenset[str] = frozenset(
    {
        "receipt",
        "upcoming_renewal",
        "trial_ending",
        "payment_failed",
        "authentication_required",
        "card_expiring",
        "subscription_canceled",
        "win_back",
        "payment_reminder",
        "account_suspended",
        "portal_login",  # the customer portal's sign-in link (kassa.services.portal)
    }
)


class FinalAction(StrEnum):
    """What happens to the subscription at the end (Stripe's three settings for exhausted retries)."""

    CANCEL = "cancel"  # canceled now; terminal
    MARK_UNPAID = "mark_unpaid"  # status unpaid: no new invoices are collected, paying reactivates
    LEAVE_PAST_DUE = "leave_past_due"  # nothing changes; the overdue ladder (or a person) decides


# ====================================================================== retry schedule
class RetryWindow(StrEnum):
    ONE_WEEK = "1_week"
    TWO_WEEKS = "2_weeks"
    THREE_WEEKS = "3_weeks"
    ONE_MONTH = "1_month"
    TWO_MONTHS = "2_months"


# A month is 30 days here: offsets are durations from the first failure, not calendar dates.
WINDOW_DAYS: dict[RetryWindow, int] = {
    RetryWindow.ONE_WEEK: 7,
    RetryWindow.TWO_WEEKS: 14,
    RetryWindow.THREE_WEEKS: 21,
    RetryWindow.ONE_MONTH: 30,
    RetryWindow.TWO_MONTHS: 60,
}
DEFAULT_WINDOW = RetryWindow.TWO_WEEKS  # Stripe's recommendation: 8 tries within 2 weeks
DEFAULT_TRIES = 8
MAX_TRIES = 8  # Stripe's Smart Retries allow up to 8; well inside Visa's limit on reattempts in 30 days
MAX_OFFSET_DAYS = 60  # the longest Stripe window (2 months)


class DeclineClass(StrEnum):
    HARD = "hard"  # never retried: ask the customer for another card
    SOFT = "soft"  # retried on the schedule
    ACTION_REQUIRED = "action_required"  # the customer must authenticate: send a link, no blind retry


_DECLINE_CODE = re.compile(r"[a-z0-9_]{1,64}")


class RetrySchedule(BaseModel):
    """When failed payments are retried, counted from the first failed attempt of an invoice.

    Give a ``window`` and a number of ``tries`` (retries after the first failed attempt, so an
    invoice sees at most ``tries + 1`` charges), or explicit ``offset_days`` — never both. Nothing
    given: 8 tries within 2 weeks. ``on_exhausted`` applies when the last retry fails (or, for a
    hard decline or a pending authentication, when the window has passed); the default leaves the
    subscription past_due so that the overdue ladder decides. ``decline_overrides`` re-classifies
    decline codes for this merchant (``{"do_not_honor": "soft"}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: RetryWindow | None = None
    tries: int | None = None
    offset_days: tuple[int, ...] | None = None
    on_exhausted: FinalAction = FinalAction.LEAVE_PAST_DUE
    decline_overrides: dict[str, DeclineClass] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # spell the default out, so a stored schedule keeps meaning what it meant when saved
        if isinstance(data, dict) and data.get("offset_days") is None:
            data = {**data}
            if data.get("window") is None:
                data["window"] = DEFAULT_WINDOW
            if data.get("tries") is None:
                data["tries"] = DEFAULT_TRIES
        return data

    @model_validator(mode="after")
    def _check(self) -> RetrySchedule:
        if self.offset_days is not None:
            if self.window is not None or self.tries is not None:
                raise InvalidInput("give either offset_days or a window with tries, not both", param="offset_days")
            _check_offsets(self.offset_days)
        elif self.tries is not None and not 1 <= self.tries <= MAX_TRIES:
            raise InvalidInput(f"tries must be between 1 and {MAX_TRIES}", param="tries")
        for code in self.decline_overrides:
            if not _DECLINE_CODE.fullmatch(code):
                raise InvalidInput(
                    f"decline code {code!r} must be lower-case letters, digits and _",
                    param=f"decline_overrides.{code}",
                )
        return self

    @classmethod
    def smart(cls, window: RetryWindow = DEFAULT_WINDOW, tries: int = DEFAULT_TRIES, **kwargs: Any) -> RetrySchedule:
        return cls(window=window, tries=tries, **kwargs)

    @classmethod
    def days(cls, offset_days: Sequence[int], **kwargs: Any) -> RetrySchedule:
        """Explicit offsets in days after the first failure, e.g. ``[1, 3, 5, 7]``."""
        return cls(offset_days=tuple(offset_days), **kwargs)

    @classmethod
    def from_intervals(cls, interval_days: Sequence[int], **kwargs: Any) -> RetrySchedule:
        """Kill Bill's form (days after the *previous* attempt, e.g. ``[1, 8, 4, 7]``) as offsets
        after the first failure (``[1, 9, 13, 20]``)."""
        offsets: list[int] = []
        for i, days in enumerate(interval_days):
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise InvalidInput("intervals are whole days of at least 1", param=f"interval_days[{i}]")
            offsets.append((offsets[-1] if offsets else 0) + days)
        return cls.days(offsets, **kwargs)

    @property
    def offsets(self) -> tuple[timedelta, ...]:
        """Each retry's delay after the first failed attempt, in order."""
        if self.offset_days is not None:
            return tuple(timedelta(days=d) for d in self.offset_days)
        return window_offsets(self.window or DEFAULT_WINDOW, self.tries or DEFAULT_TRIES)

    @property
    def last_offset(self) -> timedelta:
        return self.offsets[-1]


def _check_offsets(offsets: Sequence[int]) -> None:
    if not offsets:
        raise InvalidInput("offset_days needs at least one retry", param="offset_days")
    if len(offsets) > MAX_TRIES:
        raise InvalidInput(f"at most {MAX_TRIES} retries", param="offset_days")
    previous = 0
    for i, days in enumerate(offsets):
        param = f"offset_days[{i}]"
        if isinstance(days, bool) or not isinstance(days, int):
            raise InvalidInput("offsets are whole days", param=param)
        if days < 1:
            raise InvalidInput("offsets must be positive (days after the first failure)", param=param)
        if days > MAX_OFFSET_DAYS:
            raise InvalidInput(f"offsets must be at most {MAX_OFFSET_DAYS} days", param=param)
        if days <= previous:
            raise InvalidInput("offsets must be strictly increasing", param=param)
        previous = days


def window_offsets(window: RetryWindow, tries: int) -> tuple[timedelta, ...]:
    """``tries`` retries spread evenly over the window, the last one at its end, each rounded to
    the hour (half up), exactly, with integers. 2 weeks / 8 tries: every 42 hours."""
    if not 1 <= tries <= MAX_TRIES:
        raise InvalidInput(f"tries must be between 1 and {MAX_TRIES}", param="tries")
    hours = WINDOW_DAYS[window] * 24
    return tuple(timedelta(hours=(2 * hours * i + tries) // (2 * tries)) for i in range(1, tries + 1))


def next_retry_at(schedule: RetrySchedule, first_failure_at: datetime, attempts_made: int) -> datetime | None:
    """When to make the next attempt, or None when the schedule is used up.

    ``attempts_made`` counts every attempt on the invoice, the first (failed) one included — the
    invoice's ``attempt_count``. Retries are anchored on the first failure, never chained, so a
    late retry does not push the later ones back. The answer may lie in the past: retry at once.
    """
    if isinstance(attempts_made, bool) or not isinstance(attempts_made, int) or attempts_made < 1:
        raise InvalidInput("attempts_made counts the first failed attempt: at least 1", param="attempts_made")
    offsets = schedule.offsets
    index = attempts_made - 1
    if index >= len(offsets):
        return None
    return ensure_utc(first_failure_at) + offsets[index]


# ====================================================================== decline classification
_HARD = (
    # the card is gone or must not be used again (Visa category 1, Mastercard MAC 03/21)
    "stolen_card",
    "lost_card",
    "pickup_card",
    "fraudulent",
    "merchant_blacklist",
    "restricted_card",
    "security_violation",
    "revocation_of_authorization",
    "revocation_of_all_authorizations",
    "stop_payment_order",
    "do_not_try_again",
    "invalid_account",
    "account_closed",
    "new_account_information_available",  # the account updater may already know the new card
    # the issuer said no and gave no reason that time would fix (kassa's choice, see docs/dunning.md)
    "do_not_honor",
    # the card cannot do this charge
    "card_not_supported",
    "currency_not_supported",
    "transaction_not_allowed",
    "not_permitted",
    "service_not_allowed",
    "invalid_amount",
    # the card details are wrong or out of date
    "expired_card",
    "incorrect_number",
    "invalid_number",
    "incorrect_cvc",
    "invalid_cvc",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "incorrect_zip",
    # card-present only; an off-session retry cannot fix them
    "incorrect_pin",
    "invalid_pin",
    "pin_try_exceeded",
    "offline_pin_required",
    "online_or_offline_pin_required",
    # a test card used in live mode
    "testmode_decline",
    # kassa's own code: nothing to charge (Stripe does not retry without a payment method)
    "no_payment_method",
)
_SOFT = (
    "insufficient_funds",
    "processing_error",
    "try_again_later",
    "generic_decline",
    "card_declined",  # Stripe's error code when only a decline_code says more
    "card_velocity_exceeded",
    "withdrawal_count_limit_exceeded",
    "issuer_not_available",
    "reenter_transaction",
    "approve_with_id",
    "call_issuer",
    "no_action_taken",
    "duplicate_transaction",
    "card_decline_rate_limit_exceeded",
    "rate_limit",
)
_ACTION_REQUIRED = (
    "authentication_required",
    "payment_intent_authentication_failure",  # the customer failed or abandoned 3-D Secure
)
#: error codes that mean the customer must authenticate (3-D Secure) rather than that the card was
#: declined: a charge that fails with one waits for the customer (``requires_action``)
AUTHENTICATION_CODES: frozenset[str] = frozenset(_ACTION_REQUIRED)

DECLINE_TABLE: Mapping[str, DeclineClass] = {
    # bank debits' return reasons (SEPA, ACH): kassa.domain.payment_methods keeps that table
    **{code: DeclineClass(cls) for code, cls in BANK_RETURN_REASONS.items()},
    **{code: DeclineClass.HARD for code in _HARD},
    **{code: DeclineClass.SOFT for code in _SOFT},
    **{code: DeclineClass.ACTION_REQUIRED for code in _ACTION_REQUIRED},
}
UNKNOWN_DECLINE = DeclineClass.SOFT  # an unknown code is retried: the schedule caps the cost
NO_PAYMENT_METHOD = "no_payment_method"


def classify(
    code: str | None, decline_code: str | None, overrides: Mapping[str, DeclineClass] | None = None
) -> DeclineClass:
    """The class of a failed payment: the decline code (the issuer's reason) wins over the error
    code (Stripe's category, usually ``card_declined``); merchant overrides win over the table;
    unknown → soft."""
    table: list[Mapping[str, DeclineClass]] = [overrides or {}, DECLINE_TABLE]
    for raw in (decline_code, code):
        key = (raw or "").strip().lower()
        if not key:
            continue
        for source in table:
            if key in source:
                return source[key]
    return UNKNOWN_DECLINE


# ====================================================================== one dunning step
class DunningAction(StrEnum):
    WAIT = "wait"  # nothing to decide: never charged, an attempt in flight, or processing
    RETRY = "retry"  # charge again at ``at`` (now, when ``at`` has passed)
    ASK_FOR_CARD = "ask_for_card"  # hard decline or no card: no retry, email a card-update link
    SEND_AUTH_LINK = "send_auth_link"  # authentication required: email a link, no blind retry
    STOP = "stop"  # paid (or void / uncollectible): nothing more to collect
    # a checkout's first payment failed: not dunned (no retry: the checkout expires after 23 h);
    # the customer is asked once to complete the payment before ``until``
    COMPLETE_CHECKOUT = "complete_checkout"
    EXHAUSTED = "exhausted"  # the schedule is used up: apply ``final_action``


@dataclass(frozen=True)
class InvoiceDunningState:
    """What dunning needs to know about one invoice (built from the invoice and two more facts)."""

    invoice_id: str
    status: InvoiceStatus
    attempt_count: int
    attempt_outcome: str | None  # None (in flight) / succeeded / processing / declined / requires_action
    last_error: PaymentError | None
    first_failure_at: datetime | None  # when attempt 1 (or the first failed attempt) failed
    has_payment_method: bool = True
    # the invoice is the first one of a checkout still incomplete: when the checkout expires
    checkout_expires_at: datetime | None = None

    @classmethod
    def of(
        cls,
        invoice: Invoice,
        *,
        first_failure_at: datetime | None,
        has_payment_method: bool,
        checkout_expires_at: datetime | None = None,
    ) -> InvoiceDunningState:
        return cls(
            invoice_id=invoice.id,
            status=invoice.status,
            attempt_count=invoice.attempt_count,
            attempt_outcome=invoice.attempt_outcome,
            last_error=invoice.last_payment_error,
            first_failure_at=first_failure_at,
            has_payment_method=has_payment_method,
            checkout_expires_at=checkout_expires_at,
        )


def checkout_deadline(sub: Subscription | None, invoice_id: str) -> datetime | None:
    """When the checkout that ``invoice_id`` belongs to expires, if it is that checkout's first
    invoice and the subscription is still ``incomplete`` (None otherwise: the invoice is dunned).

    Such an invoice is not dunned: Stripe does not retry an incomplete subscription's first payment,
    and the checkout expires (→ ``incomplete_expired``, the invoice voided) long before any retry."""
    if sub is None or sub.status is not Status.INCOMPLETE or sub.latest_invoice != invoice_id:
        return None
    return sub.incomplete_expires_at


@dataclass(frozen=True)
class DunningDecision:
    action: DunningAction
    reason: str  # the decline (or error) code, "paid", "void", "in_flight", "no_payment_method" …
    at: datetime | None = None  # RETRY: when to charge
    until: datetime | None = None  # ASK_FOR_CARD / SEND_AUTH_LINK: when the schedule gives up
    decline_class: DeclineClass | None = None
    final_action: FinalAction | None = None  # EXHAUSTED
    email: str | None = None  # the template to send with this decision, once per ``key``
    key: str = ""  # stable for one (invoice, attempt, action): dedupe emails and scheduled retries

    def due(self, now: datetime) -> bool:
        """A retry whose time has come (or passed)."""
        return self.action is DunningAction.RETRY and self.at is not None and self.at <= now


_CLOSED_REASON = {InvoiceStatus.VOID: "void", InvoiceStatus.UNCOLLECTIBLE: "uncollectible", InvoiceStatus.PAID: "paid"}


def dunning_step(state: InvoiceDunningState, schedule: RetrySchedule, now: datetime) -> DunningDecision:
    """What to do next about one invoice. A pure function of its state: evaluating it twice gives
    the same decision with the same ``key``, so a redelivered message sends no second email.

    * paid / void / uncollectible → STOP;
    * never charged, attempt in flight or processing → WAIT;
    * the first invoice of a checkout still incomplete → COMPLETE_CHECKOUT: no retry, and while the
      checkout has not expired, one ``payment_failed`` email asking to complete the payment before
      ``until`` (the expiry; there is no retry date to promise);
    * no payment method or a hard decline → ASK_FOR_CARD (email ``payment_failed`` once per failed
      attempt) until the window has passed, then EXHAUSTED;
    * authentication required → SEND_AUTH_LINK (email ``authentication_required`` once per attempt)
      until the window has passed, then EXHAUSTED;
    * soft decline → RETRY at the next offset (the first failure also emails ``payment_failed``),
      or EXHAUSTED after the last one.
    """
    now = ensure_utc(now)
    invoice = state.invoice_id
    attempt = state.attempt_count
    if state.status in _CLOSED_REASON:
        reason = _CLOSED_REASON[state.status]
        return DunningDecision(DunningAction.STOP, reason, key=f"{invoice}:stop:{reason}")
    if state.status is InvoiceStatus.DRAFT or attempt < 1:
        return DunningDecision(DunningAction.WAIT, "not_attempted", key=f"{invoice}:wait:0")
    if state.attempt_outcome in (None, "processing", "succeeded"):
        reason = state.attempt_outcome or "in_flight"
        return DunningDecision(DunningAction.WAIT, reason, key=f"{invoice}:wait:{attempt}")
    if state.checkout_expires_at is not None:
        expires = ensure_utc(state.checkout_expires_at)
        error = state.last_error
        return DunningDecision(
            DunningAction.COMPLETE_CHECKOUT,
            (error.decline_code or error.code) if error else "unknown",
            until=expires,
            email="payment_failed" if now < expires else None,
            key=f"{invoice}:checkout",
        )
    if state.first_failure_at is None:
        raise InvalidInput("a failed invoice needs the time of its first failure", param="first_failure_at")
    first = ensure_utc(state.first_failure_at)
    error = state.last_error
    code = error.code if error else None
    decline_code = error.decline_code if error else None
    reason = decline_code or code or "unknown"
    if not state.has_payment_method or code == NO_PAYMENT_METHOD:
        cls, reason = DeclineClass.HARD, NO_PAYMENT_METHOD
    elif state.attempt_outcome == "requires_action":
        cls = DeclineClass.ACTION_REQUIRED
    else:
        cls = classify(code, decline_code, schedule.decline_overrides)
    window_end = first + schedule.last_offset

    def exhausted() -> DunningDecision:
        return DunningDecision(
            DunningAction.EXHAUSTED,
            reason,
            decline_class=cls,
            final_action=schedule.on_exhausted,
            key=f"{invoice}:exhausted",
        )

    if cls is DeclineClass.SOFT:
        retry_at = next_retry_at(schedule, first, attempt)
        if retry_at is None:
            return exhausted()
        return DunningDecision(
            DunningAction.RETRY,
            reason,
            at=retry_at,
            decline_class=cls,
            email="payment_failed" if attempt == 1 else None,
            key=f"{invoice}:retry:{attempt}",
        )
    if now >= window_end:
        return exhausted()
    if cls is DeclineClass.ACTION_REQUIRED:
        return DunningDecision(
            DunningAction.SEND_AUTH_LINK,
            reason,
            until=window_end,
            decline_class=cls,
            email="authentication_required",
            key=f"{invoice}:auth:{attempt}",
        )
    return DunningDecision(
        DunningAction.ASK_FOR_CARD,
        reason,
        until=window_end,
        decline_class=cls,
        email="payment_failed",
        key=f"{invoice}:card:{attempt}",
    )


# ====================================================================== overdue ladder
_STATE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_OVERDUE_DAYS = 365


class OverdueState(BaseModel):
    """One rung of the ladder: entered when every condition it sets holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    after_days: int  # whole days since the earliest unpaid invoice fell due
    min_unpaid_invoices: int | None = None
    min_unpaid_amount: dict[str, int] | None = None  # currency → minor units; any currency reaching it
    email: str | None = None  # template sent on entering this state
    block_changes: bool = False  # no plan changes, quantity changes or new subscriptions
    disable_entitlements: bool = False  # suspension: the storefront is told to cut access
    final_action: FinalAction | None = None

    def matches(self, days: int, unpaid_invoices: int, unpaid_amounts: Mapping[str, int]) -> bool:
        if days < self.after_days:
            return False
        if self.min_unpaid_invoices is not None and unpaid_invoices < self.min_unpaid_invoices:
            return False
        if self.min_unpaid_amount is not None:
            return any(unpaid_amounts.get(cur, 0) >= floor for cur, floor in self.min_unpaid_amount.items())
        return True


class OverdueLadder(BaseModel):
    """Overdue states in increasing severity (strictly increasing ``after_days``); at most one
    final state, and it comes last. Email templates must be known: the built-in ones, or the names
    passed to :meth:`validated` (templates the merchant supplies). An empty ladder turns it off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    states: tuple[OverdueState, ...] = ()

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> OverdueLadder:
        context = info.context if isinstance(info.context, dict) else {}
        templates = frozenset(context.get("templates", ())) | EMAIL_TEMPLATES
        names: set[str] = set()
        previous: int | None = None
        for i, state in enumerate(self.states):
            at = f"states[{i}]"
            if not _STATE_NAME.fullmatch(state.name):
                raise InvalidInput("state names are 1–40 lower-case letters, digits or _", param=f"{at}.name")
            if state.name in names:
                raise InvalidInput(f"state name {state.name!r} is used twice", param=f"{at}.name")
            names.add(state.name)
            if not 0 <= state.after_days <= MAX_OVERDUE_DAYS:
                raise InvalidInput(f"after_days must be between 0 and {MAX_OVERDUE_DAYS}", param=f"{at}.after_days")
            if previous is not None and state.after_days <= previous:
                raise InvalidInput("after_days must increase from one state to the next", param=f"{at}.after_days")
            previous = state.after_days
            if state.min_unpaid_invoices is not None and state.min_unpaid_invoices < 1:
                raise InvalidInput("min_unpaid_invoices must be at least 1", param=f"{at}.min_unpaid_invoices")
            for currency, amount in (state.min_unpaid_amount or {}).items():
                try:
                    ok = normalize_currency(currency) == currency
                except InvalidInput:
                    ok = False
                if not ok:
                    raise InvalidInput(
                        f"{currency!r} is not a supported upper-case currency code",
                        param=f"{at}.min_unpaid_amount.{currency}",
                    )
                if amount < 1:
                    raise InvalidInput(
                        "amounts are positive integers in minor units", param=f"{at}.min_unpaid_amount.{currency}"
                    )
            if state.min_unpaid_amount is not None and not state.min_unpaid_amount:
                raise InvalidInput("min_unpaid_amount needs at least one currency", param=f"{at}.min_unpaid_amount")
            if state.email is not None and state.email not in templates:
                raise InvalidInput(f"unknown email template {state.email!r}", param=f"{at}.email")
            if state.final_action is not None and i != len(self.states) - 1:
                raise InvalidInput("only the last state can have a final action", param=f"{at}.final_action")
        return self

    @classmethod
    def validated(cls, data: Mapping[str, Any], templates: Iterable[str] = ()) -> OverdueLadder:
        """Validate a ladder as saved by a merchant who supplies ``templates`` of their own."""
        return cls.model_validate(dict(data), context={"templates": frozenset(templates)})

    def index(self, name: str | None) -> int:
        """Severity of a state: -1 for none, its position otherwise (-2: no longer in the ladder)."""
        if name is None:
            return -1
        for i, state in enumerate(self.states):
            if state.name == name:
                return i
        return -2

    def state(self, name: str | None) -> OverdueState | None:
        i = self.index(name)
        return self.states[i] if i >= 0 else None


@cache
def default_ladder() -> OverdueLadder:
    """Stripe's recommended ladder, built on first use (a model instance at import would build the
    models' validators on every cold start)."""
    return OverdueLadder(
        states=(
            OverdueState(name="warning", after_days=3, email="payment_reminder"),
            OverdueState(
                name="suspended",
                after_days=10,
                email="account_suspended",
                block_changes=True,
                disable_entitlements=True,
            ),
            OverdueState(
                name="canceled",
                after_days=21,
                email="subscription_canceled",
                block_changes=True,
                disable_entitlements=True,
                final_action=FinalAction.CANCEL,
            ),
        )
    )


def days_overdue(earliest_unpaid_at: datetime, now: datetime) -> int:
    """Whole days elapsed (day 3 starts 72 hours after the invoice fell due); negative → 0."""
    elapsed = ensure_utc(now) - ensure_utc(earliest_unpaid_at)
    return max(elapsed // timedelta(days=1), 0)


def overdue_state(
    ladder: OverdueLadder,
    earliest_unpaid_at: datetime | None,
    now: datetime,
    *,
    unpaid_invoices: int = 1,
    unpaid_amounts: Mapping[str, int] | None = None,
) -> OverdueState | None:
    """The most severe state whose conditions all hold, or None (nothing unpaid, or not overdue
    enough). ``earliest_unpaid_at``: when the oldest unpaid invoice fell due (its first failed
    payment); ``unpaid_amounts``: the unpaid balance per currency, in minor units."""
    if earliest_unpaid_at is None or unpaid_invoices < 1 or ensure_utc(now) < ensure_utc(earliest_unpaid_at):
        return None
    days = days_overdue(earliest_unpaid_at, now)
    amounts = dict(unpaid_amounts or {})
    for state in reversed(ladder.states):
        if state.matches(days, unpaid_invoices, amounts):
            return state
    return None


@dataclass(frozen=True)
class OverdueTransition:
    """What to do between two evaluations. ``email`` and ``final_action`` are edges (fire once, on
    entering a more severe state); ``block_changes`` and ``disable_entitlements`` are levels (set
    them, idempotently, to these values); ``entitlements_changed`` says the storefront must be told."""

    previous: str | None
    current: str | None
    email: str | None = None
    final_action: FinalAction | None = None
    block_changes: bool = False
    disable_entitlements: bool = False
    entitlements_changed: bool = False

    @property
    def changed(self) -> bool:
        return self.previous != self.current

    @property
    def key(self) -> str:
        """Stable id of this transition; prefix it with the subscription and the overdue episode
        (the earliest unpaid invoice) to dedupe the email it sends."""
        return f"overdue:{self.previous or '-'}>{self.current or '-'}"


def overdue_transition(ladder: OverdueLadder, previous: str | None, current: str | None) -> OverdueTransition:
    """The effects of moving from state ``previous`` (stored after the last evaluation) to
    ``current`` (just evaluated). A pure function of the two: evaluating twice stores ``current``
    the first time, and the second evaluation (``previous == current``) fires nothing.

    * worse: the new state's email and final action fire; skipped states send nothing;
    * better (paid, or fewer unpaid invoices): no email; blocks and suspension follow the new state;
    * a state with final action ``cancel`` is terminal: leaving it undoes nothing;
    * a ``previous`` no longer in the ladder (the ladder was edited) counts as no state, and the
      storefront is told the entitlement level again.
    """
    before_i, after_i = ladder.index(previous), ladder.index(current)
    if after_i == -2:
        raise InvalidInput(f"state {current!r} is not in the ladder", param="current")
    before, after = ladder.state(previous), ladder.state(current)
    if before is not None and before.final_action is FinalAction.CANCEL and after_i != before_i:
        return OverdueTransition(
            previous, previous, block_changes=before.block_changes, disable_entitlements=before.disable_entitlements
        )
    block = after.block_changes if after else False
    disable = after.disable_entitlements if after else False
    was_disabled = before.disable_entitlements if before else False
    entitlements_changed = disable != was_disabled or before_i == -2
    if after is None or after_i <= before_i:
        return OverdueTransition(
            previous,
            current,
            block_changes=block,
            disable_entitlements=disable,
            entitlements_changed=entitlements_changed,
        )
    return OverdueTransition(
        previous,
        current,
        email=after.email,
        final_action=after.final_action,
        block_changes=block,
        disable_entitlements=disable,
        entitlements_changed=entitlements_changed,
    )


def evaluate_overdue(
    ladder: OverdueLadder,
    previous: str | None,
    earliest_unpaid_at: datetime | None,
    now: datetime,
    *,
    unpaid_invoices: int = 1,
    unpaid_amounts: Mapping[str, int] | None = None,
) -> OverdueTransition:
    """``overdue_state`` then ``overdue_transition`` from the stored ``previous`` state."""
    state = overdue_state(
        ladder, earliest_unpaid_at, now, unpaid_invoices=unpaid_invoices, unpaid_amounts=unpaid_amounts
    )
    return overdue_transition(ladder, previous, state.name if state else None)


# ====================================================================== figures
class DunningResult(StrEnum):
    RECOVERED = "recovered"  # paid after at least one failed attempt
    LOST = "lost"  # void or uncollectible (or written off by the caller)
    PENDING = "pending"  # still being dunned


@dataclass(frozen=True)
class DunningOutcome:
    """One invoice that entered dunning. ``decline_code``: the code of its *first* failure (the
    figures ask "how often do we recover an insufficient_funds?")."""

    invoice_id: str
    amount: Money  # the amount dunning tried to collect
    decline_code: str
    result: DunningResult
    attempts: int = 1

    @classmethod
    def of_invoice(cls, invoice: Invoice, decline_code: str) -> DunningOutcome:
        if invoice.status is InvoiceStatus.PAID:
            result, amount = DunningResult.RECOVERED, invoice.amount_paid
        elif invoice.status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
            result, amount = DunningResult.LOST, invoice.amount_due
        else:
            result, amount = DunningResult.PENDING, invoice.amount_due
        return cls(invoice.id, Money(amount, invoice.currency), decline_code, result, invoice.attempt_count)


@dataclass(frozen=True)
class RecoveryRate:
    recovered: int = 0
    lost: int = 0
    pending: int = 0

    @property
    def decided(self) -> int:
        return self.recovered + self.lost

    @property
    def rate(self) -> Fraction | None:
        """Recovered among the decided ones (pending invoices are not counted); None when none decided."""
        return Fraction(self.recovered, self.decided) if self.decided else None

    def add(self, result: DunningResult) -> RecoveryRate:
        return RecoveryRate(
            self.recovered + (result is DunningResult.RECOVERED),
            self.lost + (result is DunningResult.LOST),
            self.pending + (result is DunningResult.PENDING),
        )


@dataclass(frozen=True)
class DunningFigures:
    invoices: int = 0
    recovered: int = 0
    lost: int = 0
    pending: int = 0
    amount_recovered: dict[str, int] = field(default_factory=dict)  # currency → minor units
    amount_lost: dict[str, int] = field(default_factory=dict)
    amount_pending: dict[str, int] = field(default_factory=dict)
    overall: RecoveryRate = RecoveryRate()
    by_decline_code: dict[str, RecoveryRate] = field(default_factory=dict)
    by_decline_class: dict[DeclineClass, RecoveryRate] = field(default_factory=dict)
    attempts_to_recover: dict[int, int] = field(default_factory=dict)  # attempts → recovered invoices


def dunning_figures(
    outcomes: Iterable[DunningOutcome], overrides: Mapping[str, DeclineClass] | None = None
) -> DunningFigures:
    """Aggregate dunning outcomes. Amounts are summed per currency, never across currencies; one
    invoice counted twice is an error (``InvalidInput``)."""
    seen: set[str] = set()
    counts = {result: 0 for result in DunningResult}
    amounts: dict[DunningResult, dict[str, int]] = {result: {} for result in DunningResult}
    overall = RecoveryRate()
    by_code: dict[str, RecoveryRate] = {}
    by_class: dict[DeclineClass, RecoveryRate] = {}
    attempts: dict[int, int] = {}
    for outcome in outcomes:
        if outcome.invoice_id in seen:
            raise InvalidInput(f"invoice {outcome.invoice_id} is counted twice", param="outcomes")
        seen.add(outcome.invoice_id)
        result = outcome.result
        counts[result] += 1
        bucket = amounts[result]
        bucket[outcome.amount.currency] = bucket.get(outcome.amount.currency, 0) + outcome.amount.amount
        overall = overall.add(result)
        code = outcome.decline_code.strip().lower() or "unknown"
        by_code[code] = by_code.get(code, RecoveryRate()).add(result)
        cls = classify(None, code, overrides)
        by_class[cls] = by_class.get(cls, RecoveryRate()).add(result)
        if result is DunningResult.RECOVERED:
            attempts[outcome.attempts] = attempts.get(outcome.attempts, 0) + 1
    return DunningFigures(
        invoices=len(seen),
        recovered=counts[DunningResult.RECOVERED],
        lost=counts[DunningResult.LOST],
        pending=counts[DunningResult.PENDING],
        amount_recovered=dict(sorted(amounts[DunningResult.RECOVERED].items())),
        amount_lost=dict(sorted(amounts[DunningResult.LOST].items())),
        amount_pending=dict(sorted(amounts[DunningResult.PENDING].items())),
        overall=overall,
        by_decline_code=dict(sorted(by_code.items())),
        by_decline_class=by_class,
        attempts_to_recover=dict(sorted(attempts.items())),
    )
