"""What happens to an invoice's payment after it was paid (Stripe's semantics): refunds, disputes and
early fraud warnings, as pure functions over the invoice.

- **Refunds** are kept on the invoice by Stripe refund id (``re_…``), whoever made them: kassa (a
  refund or a post-payment credit note, through the gateway) or the merchant in the Stripe dashboard
  (``charge.refunded``, ``refund.created``, ``charge.refund.updated``). Recording the same refund
  twice, or its news in any order, has one effect: a refund's status never goes back from a final
  one (succeeded, failed, canceled) to a pending one. ``amount_refunded`` is the sum of the refunds
  that are not failed or canceled — or the charge's own ``amount_refunded`` when Stripe reported a
  larger figure than the refunds kassa knows individually (a ``charge.refunded`` without its refunds
  list); both only grow with refunds, so a late, older report changes nothing.
- **Disputes** (``charge.dispute.*``) are kept by dispute id. A closed status (won, lost,
  warning_closed, prevented) is final; otherwise the news of the later event wins (Stripe's
  ``created`` timestamp), so a ``closed`` delivered before ``created`` stays closed. A lost dispute
  records the amount lost (Stripe takes the disputed amount back).
- **Early fraud warnings** (``radar.early_fraud_warning.created``) are kept by id, with what kassa did.

Amounts are integers in the invoice currency's minor unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kassa.domain.errors import InvalidInput
from kassa.domain.ids import derived_id
from kassa.domain.payment_methods import dispute_contestable

if TYPE_CHECKING:  # kassa.domain.invoice imports this module
    from kassa.domain.invoice import Invoice


class RefundReason(StrEnum):
    """The reasons a merchant gives for a refund (Stripe's ``refund.reason``)."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    REQUESTED_BY_CUSTOMER = "requested_by_customer"


#: refund statuses that no later news can change, and those whose amount is not refunded
FINAL_REFUND_STATUSES = frozenset({"succeeded", "failed", "canceled"})
UNREFUNDED_STATUSES = frozenset({"failed", "canceled"})

#: dispute statuses after which nothing changes (Stripe: a closed dispute stays closed)
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
#: dispute statuses that give access back (the money stayed with the merchant)
MERCHANT_KEPT = frozenset({"won", "warning_closed", "prevented"})


class InvoiceRefund(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # Stripe's refund id (re_…)
    amount: StrictInt = Field(ge=0)
    currency: str
    reason: str | None = None  # duplicate | fraudulent | requested_by_customer | expired_uncaptured_charge
    status: str = "succeeded"  # pending | requires_action | succeeded | failed | canceled
    source: str = "stripe"  # kassa: made through kassa's API; stripe: made elsewhere (the dashboard)
    credit_note: str | None = None  # the credit note it belongs to (kassa's refunds)
    request_key: str | None = None  # the API request's idempotency key
    created: datetime | None = None

    @property
    def counts(self) -> bool:
        return self.status not in UNREFUNDED_STATUSES


class InvoiceDispute(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # dp_…
    charge: str | None = None
    amount: StrictInt = Field(ge=0)
    currency: str
    reason: str | None = None  # fraudulent, product_not_received, general…
    status: str  # warning_needs_response, warning_under_review, warning_closed, needs_response, under_review, won…
    evidence_due_by: datetime | None = None
    amount_lost: StrictInt = 0  # the disputed amount, once the dispute is lost
    # Stripe's dispute fee, from the dispute's balance transactions (0: not carried by the event);
    # fee_returned: the part of it Stripe gave back with the funds of a won dispute
    fee: StrictInt = Field(default=0, ge=0)
    fee_returned: StrictInt = Field(default=0, ge=0)
    created: datetime | None = None
    updated_at: datetime | None = None  # the Stripe event that brought the current status
    # card, sepa_debit, us_bank_account (Stripe's payment_method_details.type); a SEPA debtor's refund
    # request within 8 weeks, or an ACH return, cannot be contested (kassa.domain.payment_methods)
    payment_method_type: str | None = None
    contestable: bool = True

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_DISPUTE_STATUSES


class FraudWarning(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # issfr_…
    charge: str | None = None
    fraud_type: str | None = None
    actionable: bool = True
    action: str  # refunded_and_canceled | flagged
    created: datetime | None = None


def refund_request_key(invoice_id: str, key: str) -> str:
    """The credit note id of a refund requested with an idempotency key: the same key on the same
    invoice always gives the same note (and so the same Stripe idempotency key)."""
    if not key or len(key) > 255:
        raise InvalidInput("an idempotency key has 1 to 255 characters", param="Idempotency-Key")
    return derived_id("cn", invoice_id, "refund", key)


def merge_refund(refunds: Iterable[InvoiceRefund], news: InvoiceRefund) -> tuple[InvoiceRefund, ...]:
    """``refunds`` with ``news`` about one refund: added once, updated without going back from a final
    status, and keeping what kassa knew about its own refunds (source, credit note, request key)."""
    result: list[InvoiceRefund] = []
    found = False
    for known in refunds:
        if known.id != news.id:
            result.append(known)
            continue
        found = True
        status = known.status if known.status in FINAL_REFUND_STATUSES else news.status
        result.append(
            known.model_copy(
                update={
                    "status": status,
                    "amount": news.amount or known.amount,
                    "reason": known.reason or news.reason,
                    "source": "kassa" if "kassa" in (known.source, news.source) else known.source,
                    "credit_note": known.credit_note or news.credit_note,
                    "request_key": known.request_key or news.request_key,
                    "created": known.created or news.created,
                }
            )
        )
    if not found:
        result.append(news)
    return tuple(result)


def amount_refunded(refunds: Iterable[InvoiceRefund], reported: int = 0) -> int:
    """What was refunded: the refunds that count, or Stripe's charge figure when it is larger."""
    return max(sum(r.amount for r in refunds if r.counts), reported)


def with_refund(invoice: Invoice, refund: InvoiceRefund, reported: int | None = None) -> Invoice:
    """``invoice`` with the news about one refund (and the charge's own ``amount_refunded``, if given)."""
    refunds = merge_refund(invoice.refunds, refund)
    charge_figure = max(invoice.charge_amount_refunded, reported or 0)
    return invoice.model_copy(
        update={
            "refunds": list(refunds),
            "charge_amount_refunded": charge_figure,
            "amount_refunded": amount_refunded(refunds, charge_figure),
        }
    )


def refunded_before_note(refunds: Iterable[InvoiceRefund], reported: int, noted: int, credit_note_id: str) -> int:
    """What was refunded before the credit note ``credit_note_id``, for its refund limit: the earlier
    notes' refunds (``noted``) plus refunds made outside kassa — never the note's own refund, even when
    its webhook was applied before the note was written."""
    own = sum(r.amount for r in refunds if r.counts and r.credit_note == credit_note_id)
    outside = sum(r.amount for r in refunds if r.counts and r.credit_note is None)
    return max(noted + outside, amount_refunded(refunds, reported) - own)


def merge_dispute(disputes: Iterable[InvoiceDispute], news: InvoiceDispute) -> tuple[tuple[InvoiceDispute, ...], bool]:
    """``disputes`` with ``news`` about one dispute, and whether it changed anything. A closed dispute
    stays closed; otherwise the later event's status wins."""
    result: list[InvoiceDispute] = []
    found = changed = False
    for known in disputes:
        if known.id != news.id:
            result.append(known)
            continue
        found = True
        newer = known.updated_at is None or (news.updated_at is not None and news.updated_at >= known.updated_at)
        if known.closed or (not news.closed and not newer):
            merged = known.model_copy(update={"reason": known.reason or news.reason})
        else:
            merged = news.model_copy(
                update={
                    "created": known.created or news.created,
                    "fee": news.fee or known.fee,
                    "fee_returned": news.fee_returned or known.fee_returned,
                }
            )
        changed = merged != known
        result.append(merged)
    if not found:
        result.append(news)
        changed = True
    return tuple(result), changed


def from_timestamp(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def dispute_of(
    obj: dict[str, Any], event_created: datetime | None, currency: str, debited_at: datetime | None = None
) -> InvoiceDispute:
    """A Stripe dispute object as kassa keeps it (``debited_at``: when the disputed payment was made)."""
    status = str(obj.get("status") or "needs_response")
    amount = int(obj.get("amount") or 0)
    due = (obj.get("evidence_details") or {}).get("due_by")
    details = obj.get("payment_method_details")
    kind = details.get("type") if isinstance(details, dict) and isinstance(details.get("type"), str) else None
    created = from_timestamp(obj["created"]) if isinstance(obj.get("created"), int) else event_created
    fee, fee_returned = _dispute_fees(obj.get("balance_transactions"))
    return InvoiceDispute(
        fee=fee,
        fee_returned=fee_returned,
        payment_method_type=kind,
        contestable=dispute_contestable(kind, debited_at, created),
        id=str(obj["id"]),
        charge=obj.get("charge") if isinstance(obj.get("charge"), str) else None,
        amount=amount,
        currency=str(obj.get("currency") or currency).upper(),
        reason=obj.get("reason"),
        status=status,
        evidence_due_by=from_timestamp(due) if isinstance(due, int) else None,
        amount_lost=amount if status == "lost" else 0,
        created=from_timestamp(obj["created"]) if isinstance(obj.get("created"), int) else None,
        updated_at=event_created,
    )


def _dispute_fees(transactions: Any) -> tuple[int, int]:
    """(fee charged, fee returned) from a dispute's ``balance_transactions`` (expanded objects: the
    withdrawal carries the fee, a won dispute's reinstatement a negative fee when Stripe returns it)."""
    charged = returned = 0
    for txn in transactions if isinstance(transactions, list) else []:
        fee = txn.get("fee") if isinstance(txn, dict) else None
        if isinstance(fee, int) and not isinstance(fee, bool):
            charged, returned = (charged + fee, returned) if fee > 0 else (charged, returned - fee)
    return charged, returned


def refund_of(obj: dict[str, Any], currency: str) -> InvoiceRefund:
    """A Stripe refund object as kassa keeps it (its metadata names kassa's credit note)."""
    metadata = obj.get("metadata") or {}
    note = metadata.get("kassa_credit_note") if isinstance(metadata, dict) else None
    return InvoiceRefund(
        id=str(obj["id"]),
        amount=int(obj.get("amount") or 0),
        currency=str(obj.get("currency") or currency).upper(),
        reason=obj.get("reason"),
        status=str(obj.get("status") or "pending"),
        source="kassa" if note else "stripe",
        credit_note=note if isinstance(note, str) and note else None,
        created=from_timestamp(obj["created"]) if isinstance(obj.get("created"), int) else None,
    )
