"""Use case: applying one verified Stripe event (delivered by the webhook processor) — payments,
confirmed cards, account-updater changes. Duplicates and out-of-order deliveries have one effect."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kassa.domain.errors import IllegalTransition, InvalidInput, NotFound
from kassa.domain.invoice import payment_unretried
from kassa.domain.payment_methods import ASYNC_SETTLEMENT, SEPA_GENERATING
from kassa.services.checkout import complete_checkout
from kassa.services.collection import (
    adopt_generated_sepa_debit,
    apply_charge_result,
    stale_setup_intent,
    update_card,
)
from kassa.services.context import BillingContext
from kassa.services.customers import card_updated
from kassa.services.payments import HANDLED as PAYMENT_EVENTS
from kassa.services.payments import apply_payment_event
from kassa.services.ports import ChargeStatus, charge_result_from_intent

HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.processing",
        "payment_intent.payment_failed",
        "setup_intent.succeeded",
        "payment_method.updated",
        "payment_method.automatically_updated",
    }
    | PAYMENT_EVENTS  # refunds, disputes, early fraud warnings (kassa.services.payments)
)


def _created(obj: dict[str, Any]) -> datetime | None:
    """When Stripe created the object (``created``, epoch seconds)."""
    created = obj.get("created")
    if isinstance(created, int) and not isinstance(created, bool):
        return datetime.fromtimestamp(created, UTC)
    return None


def _generates_sepa_debit(intent: dict[str, Any]) -> bool:
    """An iDEAL or Bancontact payment saved for later (``setup_future_usage``): it left a SEPA mandate."""
    types = intent.get("payment_method_types") or []
    return (
        isinstance(types, list)
        and any(t in SEPA_GENERATING for t in types)
        and intent.get("setup_future_usage") in ("off_session", "on_session")
    )


def _bank_debit(intent: dict[str, Any]) -> bool:
    """A PaymentIntent that debits a bank account (SEPA, ACH): its failure reason is the bank's."""
    types = intent.get("payment_method_types") or []
    return isinstance(types, list) and any(t in ASYNC_SETTLEMENT for t in types)


def apply_stripe_event(ctx: BillingContext, event: dict[str, Any]) -> str:
    """Apply one verified Stripe event. Returns what happened: applied / ignored:<why>."""
    if not isinstance(event, dict):
        raise InvalidInput("a Stripe event is a JSON object", param="body")
    etype = event.get("type", "")
    if etype not in HANDLED_EVENTS:
        return "ignored:unhandled type"
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
        raise InvalidInput("data.object and its metadata must be objects", param="data.object")
    if etype in PAYMENT_EVENTS:
        return apply_payment_event(ctx, event, obj)
    if etype in ("payment_intent.succeeded", "payment_intent.processing", "payment_intent.payment_failed"):
        invoice_id = (obj.get("metadata") or {}).get("kassa_invoice")
        if not invoice_id:
            return "ignored:not a kassa payment"
        invoice = ctx.store.find_invoice(invoice_id)
        if invoice is None:
            return f"ignored:unknown invoice {invoice_id}"
        result = charge_result_from_intent(obj)
        if etype == "payment_intent.payment_failed" and result.status is ChargeStatus.SUCCEEDED:
            return "ignored:inconsistent"
        if etype == "payment_intent.processing" and result.status is not ChargeStatus.PROCESSING:
            return "ignored:inconsistent"
        if etype == "payment_intent.payment_failed" and result.decline_code is None and _bank_debit(obj):
            # the bank's return reason is on the charge, which the event names only by id: read it
            result = replace(ctx.gateway.get_payment_intent(str(obj["id"])).result, attempt=result.attempt)
        # a payment no run retries: its events go out again, should the run that paid it have died
        apply_charge_result(ctx, invoice_id, result, republish=payment_unretried(invoice))
        if etype == "payment_intent.succeeded" and _generates_sepa_debit(obj):
            adopt_generated_sepa_debit(ctx, invoice_id, str(obj["id"]))
        return "applied"
    if etype in ("payment_method.updated", "payment_method.automatically_updated"):
        return card_updated(ctx, obj, str(event.get("id")))
    if etype == "setup_intent.succeeded":
        # a card confirmed on the card-update page (kassa_purpose) or at checkout: the same work as
        # the page's own call, whichever comes first
        metadata = obj.get("metadata") or {}
        kind, key = (
            ("customer", "kassa_customer") if metadata.get("kassa_purpose") else ("subscription", "kassa_subscription")
        )
        target = metadata.get(key)
        if not isinstance(target, str) or not target:
            return "ignored:not a kassa setup"
        try:
            if kind == "customer":
                if stale_setup_intent(ctx.store.list_open_invoices(target), obj["id"], _created(obj)):
                    return "ignored:stale setup intent"
                update_card(ctx, target, obj["id"])
            else:
                complete_checkout(ctx, target, obj["id"])
        except NotFound:
            return f"ignored:unknown {kind} {target}"
        except (InvalidInput, IllegalTransition) as error:
            return f"ignored:{error.message}"
        return "applied"
    return "ignored:unhandled type"
