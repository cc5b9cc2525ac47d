"""Dunning and customer communication: retries, the overdue ladder, card links and every customer email.

The policy is pure (``kassa.domain.dunning``); this service reads the state, asks the policy and
acts: it charges again (through ``collection.collect``, one PaymentIntent per attempt), stores the
overdue state with the subscription's version condition before acting on it, and sends each email
once through the outbox. Everything here is safe to run twice: the dunning sweep (a schedule) and
the notification queue (EventBridge → SQS) both deliver at least once and in any order.

Work arrives in two ways:

- ``sweep``: the dunning index (``gsi1``, ``DUN#<shard>``) holds what falls due — invoices being
  dunned (until ``next_dunning_at``), customers whose card expires (the month before), and timers
  (win-back emails);
- ``handle_event``: domain events routed from the bus — a payment failed or needs authentication
  (decide now rather than at the next sweep), an invoice was paid (receipt, overdue state cleared),
  a trial ends soon, a renewal is upcoming, a subscription was canceled.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kassa.domain.cancellation import CancellationDetails, CancellationReason
from kassa.domain.customer import Customer, PaymentMethodSummary, card_expiry_key
from kassa.domain.dunning import (
    DunningAction,
    DunningDecision,
    DunningFigures,
    DunningOutcome,
    FinalAction,
    InvoiceDunningState,
    checkout_deadline,
    dunning_figures,
    dunning_step,
    evaluate_overdue,
)
from kassa.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from kassa.domain.events import DomainEvent
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.links import signed_url
from kassa.domain.payment_methods import PaymentMethodKind
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import TERMINAL, Status, Subscription
from kassa.services.collection import collect, entitlements_event
from kassa.services.context import BillingContext
from kassa.services.invoicing import known_products, upcoming_invoice
from kassa.services.ports import BillingStore, FileStore, Mailer, Outbox, OutgoingEmail

log = logging.getLogger(__name__)

IN_FLIGHT_RECHECK = timedelta(hours=1)  # an attempt without an outcome yet is looked at again after this
MAX_STEPS = 4  # a due retry is followed by the decision on its outcome, within one call
WIN_BACK_TIMER = "timer:win_back:"


@dataclass(frozen=True)
class Sent:
    key: str
    outcome: str  # sent | duplicate | disabled | rejected


def method_context(method: PaymentMethodSummary | None) -> dict[str, Any]:
    """How an email names the payment method: a card by brand and last 4, a bank account as such
    (its type in ``card_brand``: "bank account ending in 3000")."""
    if method is None:
        return {"card_brand": None, "card_last4": None}
    return {"card_brand": method.type.value if method.is_bank_account else method.brand, "card_last4": method.last4}


class Dunning:
    def __init__(
        self,
        billing: BillingContext,
        outbox: Outbox,
        mailer: Mailer,
        *,
        sender: str,
        link_secret: str,
        public_url: str,
        files: FileStore | None = None,
    ) -> None:
        self.billing = billing
        # where the receipt's invoice PDF is stored (made as the receipt goes out); None: not made here
        self.files = files
        self.store = billing.store
        self.outbox = outbox
        self.mailer = mailer
        self.sender = sender
        self.link_secret = link_secret
        self.public_url = public_url.rstrip("/")
        self._settings: MerchantSettings | None = None

    def now(self) -> datetime:
        return self.billing.now()

    @property
    def settings(self) -> MerchantSettings:
        if self._settings is None:  # once per invocation
            self._settings = self.store.get_settings()
        return self._settings

    # ------------------------------------------------------------------ the sweep
    def sweep(self, shards: int, limit: int = 500) -> dict[str, int]:
        """Everything due in the dunning index now. One entity failing does not stop the others: it
        stays due and is taken again at the next sweep."""
        now = self.now()
        outcomes: Counter[str] = Counter()
        for shard in range(shards):
            for entity_id, _ in self.store.due_dunning(shard, now, limit):
                try:
                    outcomes[self.process(entity_id)] += 1
                except (Conflict, Unavailable) as error:
                    log.warning("dunning of %s deferred: %s", entity_id, error)
                    outcomes["deferred"] += 1
                except Exception:  # a bug or bad data in one entity must not stop everyone else's dunning
                    log.exception("dunning of %s failed; it stays due and is tried again at the next sweep", entity_id)
                    outcomes["failed"] += 1
        return dict(outcomes)

    def process(self, entity_id: str) -> str:
        if entity_id.startswith(WIN_BACK_TIMER):
            return self._win_back(entity_id)
        if entity_id.startswith("cus_"):
            return self._card_expiring(entity_id)
        return self.process_invoice(entity_id)

    # ------------------------------------------------------------------ one invoice
    def process_invoice(self, invoice_id: str) -> str:
        """Decide and act on one invoice: email, retry when due, the schedule's final action, the
        subscription's overdue state; then file the invoice under its next wake-up."""
        invoice = self.store.find_invoice(invoice_id)
        if invoice is None:
            return "unknown"
        settings = self.settings
        now = self.now()
        decision: DunningDecision | None = None
        for _ in range(MAX_STEPS):
            if not invoice.collectable or invoice.first_failed_at is None:
                decision = None
                break
            customer = self.store.get_customer(invoice.customer)
            state = InvoiceDunningState.of(
                invoice,
                first_failure_at=invoice.first_failed_at,
                has_payment_method=customer.default_payment_method is not None,
                checkout_expires_at=checkout_deadline(self._sub(invoice.subscription), invoice.id),
            )
            decision = dunning_step(state, settings.retry_schedule, now)
            if decision.action is DunningAction.WAIT and invoice.attempt_pending:
                # an attempt claimed but without an outcome (a crash, Stripe unreachable): send it
                # again under the same attempt number; Stripe's idempotency key replays the answer
                result = collect(self.billing, invoice, customer)
                invoice = result.invoice or self.store.get_invoice(invoice_id)
                continue
            if decision.email:
                self._dunning_email(decision, invoice, customer)
            if not decision.due(now):
                break
            # one attempt per scheduled retry: the trigger names it, so a redelivery charges nothing
            result = collect(self.billing, invoice, customer, trigger=f"dunning:{invoice.attempt_count}")
            invoice = result.invoice or self.store.get_invoice(invoice_id)
        next_at: datetime | None = None
        if decision is not None:
            if decision.action is DunningAction.RETRY:
                next_at = decision.at
            elif decision.action in (DunningAction.ASK_FOR_CARD, DunningAction.SEND_AUTH_LINK):
                next_at = decision.until
            elif decision.action is DunningAction.WAIT:
                next_at = now + IN_FLIGHT_RECHECK
            elif decision.action is DunningAction.EXHAUSTED:
                self._exhausted(invoice, decision.final_action)
        # a checkout's first invoice is not dunned: no retry, no overdue ladder (the checkout expires)
        checkout = decision is not None and decision.action is DunningAction.COMPLETE_CHECKOUT
        overdue_at = self.evaluate_overdue(invoice.subscription) if invoice.subscription and not checkout else None
        wake = min((t for t in (next_at, overdue_at) if t is not None), default=None)
        invoice = self.store.get_invoice(invoice_id)
        if not invoice.collectable:
            wake = None
        if wake != invoice.next_dunning_at:
            self.store.save_invoice(invoice.model_copy(update={"next_dunning_at": wake}))
        return decision.action.value if decision else f"stop:{invoice.status.value}"

    def _exhausted(self, invoice: Invoice, action: FinalAction | None) -> None:
        """The retry schedule is used up: Stripe's three choices (default: leave it to the ladder)."""
        if action is None or action is FinalAction.LEAVE_PAST_DUE or invoice.subscription is None:
            return
        sub = self.store.get_subscription(invoice.subscription)
        if sub.status in TERMINAL:
            return
        if action is FinalAction.CANCEL:
            self._cancel(sub, invoice)
        elif action is FinalAction.MARK_UNPAID and sub.status is Status.PAST_DUE:
            now = self.now()
            unpaid = self.store.save_subscription(sub.transition(Status.UNPAID, now))
            self.billing.emit(
                DomainEvent.of(
                    "customer.subscription.updated",
                    unpaid,
                    now,
                    cause="dunning:unpaid",
                    previous={"status": "past_due"},
                )
            )

    def _cancel(self, sub: Subscription, invoice: Invoice | None) -> None:
        """Cancel for non-payment (Stripe's reason ``payment_failed``); the unpaid invoices are
        written off as uncollectible, which ends their dunning."""
        now = self.now()
        details = CancellationDetails(reason=CancellationReason.PAYMENT_FAILED)
        canceled = self.store.save_subscription(
            sub.transition(Status.CANCELED, now).model_copy(
                update={"cancellation_details": details.model_dump(mode="json", exclude_none=True)}
            )
        )
        events = [DomainEvent.of("customer.subscription.deleted", canceled, now, cause="dunning")]
        for open_invoice in self.store.list_open_invoices(sub.customer):
            if open_invoice.subscription == sub.id and open_invoice.status is InvoiceStatus.OPEN:
                written_off = self.store.save_invoice(
                    open_invoice.transition(InvoiceStatus.UNCOLLECTIBLE, now).model_copy(
                        update={"next_dunning_at": None}
                    )
                )
                events.append(DomainEvent.of("invoice.marked_uncollectible", written_off, now, cause="dunning"))
        self.billing.emit(*events)

    # ------------------------------------------------------------------ the overdue ladder
    def evaluate_overdue(self, subscription_id: str) -> datetime | None:
        """Move the subscription along the overdue ladder; returns when the next state falls due.

        The new state is written (version condition) before its actions run, so of two concurrent
        evaluations only one acts; the email is also deduplicated through the outbox."""
        try:
            sub = self.store.get_subscription(subscription_id)
        except NotFound:
            return None
        if sub.status in TERMINAL:
            return None
        ladder = self.settings.overdue_ladder
        now = self.now()
        unpaid = sorted(
            (
                i
                for i in self.store.list_open_invoices(sub.customer)
                if i.subscription == sub.id and i.status is InvoiceStatus.OPEN and i.first_failed_at is not None
            ),
            key=lambda i: (i.first_failed_at, i.id),
        )
        earliest = unpaid[0] if unpaid else None
        amounts: dict[str, int] = {}
        for i in unpaid:
            amounts[i.currency] = amounts.get(i.currency, 0) + i.amount_due
        since = earliest.first_failed_at if earliest else None
        transition = evaluate_overdue(
            ladder, sub.overdue_state, since, now, unpaid_invoices=len(unpaid), unpaid_amounts=amounts
        )
        levels = (transition.current, transition.disable_entitlements, transition.block_changes)
        if levels != (sub.overdue_state, sub.entitlements_suspended, sub.changes_blocked):
            saved = self.store.save_subscription(
                sub.model_copy(
                    update={
                        "overdue_state": transition.current,
                        "entitlements_suspended": transition.disable_entitlements,
                        "changes_blocked": transition.block_changes,
                    }
                )
            )
            cause = f"overdue:{transition.previous}>{transition.current}:{earliest.id if earliest else '-'}"
            events = [
                DomainEvent.of(
                    "customer.subscription.updated",
                    saved,
                    now,
                    cause=cause,
                    previous={"overdue_state": sub.overdue_state},
                )
            ]
            if transition.entitlements_changed or saved.entitlements_suspended != sub.entitlements_suspended:
                events.append(entitlements_event(saved, now, cause=cause))
            self.billing.emit(*events)
            sub = saved
            if transition.email and earliest is not None:
                self._overdue_email(transition.email, sub, earliest, unpaid, f"{sub.id}:{earliest.id}:{transition.key}")
            if transition.final_action is FinalAction.CANCEL:
                self._cancel(sub, earliest)
                return None
            if transition.final_action is FinalAction.MARK_UNPAID and earliest is not None:
                self._exhausted(earliest, FinalAction.MARK_UNPAID)
        if since is None:
            return None
        following = [s for s in ladder.states if ladder.index(s.name) > ladder.index(transition.current)]
        return since + timedelta(days=following[0].after_days) if following else None

    # ------------------------------------------------------------------ events from the bus
    def handle_event(self, envelope: dict[str, Any]) -> str:
        """One EventBridge event (as delivered through SQS): ``detail-type`` and a DomainEvent ``detail``."""
        detail = envelope.get("detail")
        kind = envelope.get("detail-type")
        if not isinstance(detail, dict) or not isinstance(detail.get("data"), dict) or not isinstance(kind, str):
            raise InvalidInput("an EventBridge event with a kassa domain event as detail is expected", param="detail")
        data = detail["data"]
        obj_id = data.get("id")
        if not isinstance(obj_id, str):
            raise InvalidInput("the event's object has no id", param="detail.data.id")
        if kind in ("invoice.payment_failed", "invoice.payment_action_required"):
            return self.process_invoice(obj_id)
        if kind == "invoice.paid":
            return self._paid(obj_id, data)
        if kind in ("invoice.voided", "invoice.marked_uncollectible"):
            return self._written_off(obj_id)
        if kind == "invoice.upcoming":
            return self._upcoming(obj_id, data)
        if kind == "customer.subscription.trial_will_end":
            return self._trial_ending(obj_id)
        if kind == "customer.subscription.deleted":
            return self._canceled(obj_id)
        if kind.startswith("charge.dispute."):
            return self.dispute_email(kind, data).outcome
        if kind == "billing_portal.login_requested":
            return self._portal_login(obj_id, str(data.get("window") or ""))
        return f"ignored:{kind}"

    def _portal_login(self, customer_id: str, window: str) -> str:
        """The customer portal's sign-in email: a session link (``kassa.services.portal.login_link``),
        once per customer and window."""
        from kassa.services.portal import login_link

        if not window.isdigit():
            raise InvalidInput("a sign-in request names its window", param="detail.data.window")
        try:
            customer = self.store.get_customer(customer_id)
        except NotFound:
            return "ignored:no customer"
        url, expires = login_link(self.billing, self.link_secret, self.public_url, customer.id, window)
        context = {**self._customer_context(customer), "portal_url": url, "expires_at": expires}
        return self.send("portal_login", customer, context, f"{customer.id}:portal_login:{window}").outcome

    def dispute_email(self, kind: str, data: dict[str, Any]) -> Sent:
        """Tell the merchant about a dispute (``settings.disputes.notify_email``, else the support
        address): once per dispute and status, through the outbox like every email."""
        from html import escape

        from kassa.domain.money import Money

        settings = self.settings
        key = f"{data['id']}:{kind}:{data.get('status')}"
        if not settings.emails.enabled:
            return Sent(key, "disabled")
        to = settings.disputes.notify_email or settings.support_email
        amount = Money(int(data.get("amount") or 0), str(data.get("currency") or settings.default_currency))
        what = {"charge.dispute.created": "opened", "charge.dispute.closed": "closed"}.get(kind, "updated")
        subject = f"Dispute {what}: {amount.format()} on invoice {data.get('invoice_number') or data.get('invoice')}"
        lines = [
            f"A customer's bank {'opened' if what == 'opened' else 'updated'} a dispute on a payment.",
            f"Dispute: {data['id']} ({data.get('status')}, reason {data.get('reason') or 'unknown'})",
            f"Invoice: {data.get('invoice_number') or ''} {data.get('invoice')}; customer {data.get('customer')}",
            f"Amount: {amount.format()}",
        ]
        if data.get("contestable") is False and data.get("payment_method_type") == "sepa_debit":
            lines.append(
                "SEPA Direct Debit: the customer asked their bank for a refund within 8 weeks of the debit, "
                "which the SEPA rules grant without questions; it cannot be contested. Contact the customer."
            )
        elif data.get("contestable") is False:
            lines.append(f"Bank debit ({data.get('payment_method_type')}): this return cannot be contested.")
        elif data.get("evidence_due_by") and what != "closed":
            lines.append(f"Evidence due by: {data['evidence_due_by']} (respond in the Stripe dashboard)")
        if data.get("amount_lost"):
            lines.append(f"Lost: {Money(int(data['amount_lost']), amount.currency).format()}")
        lines.append(f"Access: {'suspended' if data.get('access') == 'suspend' else 'kept'} (settings.disputes.access)")
        text = "\n".join(lines) + "\n"
        html = "".join(f"<p>{escape(line)}</p>" for line in lines)
        email = OutgoingEmail(
            key=key,
            template="dispute_notice",
            to=to,
            customer=None,
            locale="en",
            subject=subject,
            html=html,
            text=text,
            created=self.now(),
        )
        claimed = self.outbox.claim(email)
        if claimed is not None and claimed.status == "sent":
            return Sent(key, "duplicate")
        try:
            message_id = self.mailer.send(email, self.sender)
        except InvalidInput as error:
            self.outbox.mark_failed(key, error.message)
            return Sent(key, "rejected")
        except Unavailable as error:
            self.outbox.mark_failed(key, error.message)
            raise
        self.outbox.mark_sent(key, message_id, self.now())
        return Sent(key, "sent")

    def _paid(self, invoice_id: str, data: dict[str, Any]) -> str:
        # the event carries the invoice as it was paid (a paid invoice never changes again): no read
        try:
            invoice: Invoice | None = Invoice.model_validate(data)
        except ValidationError:
            invoice = self.store.find_invoice(invoice_id)
        if invoice is None:
            return "unknown"
        outcome = "no_receipt"
        if invoice.status is InvoiceStatus.PAID:
            self._make_pdf(invoice)
        if self.settings.emails.receipts and invoice.amount_paid > 0 and invoice.status is InvoiceStatus.PAID:
            customer = self.store.get_customer(invoice.customer)
            sub = self._sub(invoice.subscription)
            method = customer.default_payment_method
            context = {
                **self._customer_context(customer),
                "invoice_number": invoice.number or invoice.id,
                "amount_paid": invoice.amount_paid,
                "currency": invoice.currency,
                "paid_at": invoice.paid_at or self.now(),
                "plan_name": self._plan_name(sub) if sub else None,
                "period_start": invoice.period_start,
                "period_end": invoice.period_end,
                **method_context(method),
                "mandate_reference": method.mandate.reference if method and method.mandate else None,
                "invoice_url": self.invoice_link(invoice),
            }
            outcome = self.send("receipt", customer, context, f"{invoice.id}:receipt").outcome
        if invoice.first_failed_at is not None and invoice.subscription:
            self.evaluate_overdue(invoice.subscription)  # recovered: the ladder steps back
        return f"paid:{outcome}"

    def _written_off(self, invoice_id: str) -> str:
        """A failed invoice voided or written off as uncollectible no longer counts as unpaid: the
        subscription's overdue state is evaluated again at once (it steps back when nothing else is
        overdue), rather than staying suspended with no invoice left to wake it."""
        invoice = self.store.find_invoice(invoice_id)
        if invoice is None:
            return "unknown"
        if invoice.first_failed_at is None or not invoice.subscription or invoice.status is InvoiceStatus.OPEN:
            return "written_off:not_overdue"
        self.evaluate_overdue(invoice.subscription)
        return "written_off:reevaluated"

    def _make_pdf(self, invoice: Invoice) -> None:
        """A paid invoice's PDF is made and stored as it is paid, before the receipt links it (once:
        ``invoice_pdf`` keeps the first file of each state). A store that is unavailable raises, so
        the event is taken again; an invoice that has no document (unnumbered) is skipped."""
        if self.files is None or invoice.number is None:
            return
        from kassa.services.documents import invoice_pdf  # fpdf2 is loaded only when a PDF is made

        try:
            invoice_pdf(self.billing, self.files, invoice.id)
        except (InvalidInput, NotFound) as error:
            log.warning("no PDF for invoice %s: %s", invoice.id, error)

    def _upcoming(self, sub_id: str, data: dict[str, Any]) -> str:
        sub = self._sub(sub_id)
        if sub is None or sub.status in TERMINAL or sub.cancel_at_period_end:
            return "ignored:not renewing"
        announced = data.get("current_period_end")
        if not isinstance(announced, str) or datetime.fromisoformat(announced) != sub.current_period_end:
            return "ignored:renewed since"  # a late reminder must not announce the following period
        customer = self.store.get_customer(sub.customer)
        method = customer.default_payment_method
        context = {
            **self._customer_context(customer),
            "plan_name": self._plan_name(sub),
            # the next invoice exactly as the renewal will make it (the preview's code)
            "amount": upcoming_invoice(self.billing, sub).amount_due,
            "currency": sub.currency,
            "renews_at": sub.current_period_end,
            **method_context(method),
        }
        if method is not None and method.type is PaymentMethodKind.SEPA_DEBIT and self.settings.emails.pre_notification:
            # SEPA pre-notification: the debit's amount and date, the mandate and the creditor
            context.update(
                pre_notification=True,
                mandate_reference=method.mandate.reference if method.mandate else None,
                creditor_id=self.settings.bank_debits.sepa_creditor_id,
            )
        key = f"{sub.id}:upcoming:{sub.current_period_end.isoformat()}"
        return self.send("upcoming_renewal", customer, context, key).outcome

    def _trial_ending(self, sub_id: str) -> str:
        sub = self._sub(sub_id)
        if sub is None or sub.status is not Status.TRIALING or sub.trial_end is None:
            return "ignored:not trialing"
        customer = self.store.get_customer(sub.customer)
        has_card = customer.default_payment_method is not None
        context = {
            **self._customer_context(customer),
            "plan_name": self._plan_name(sub),
            "trial_end": sub.trial_end,
            "amount": upcoming_invoice(self.billing, sub).amount_due,
            "currency": sub.currency,
            "has_payment_method": has_card,
            "update_card_url": None if has_card else self.card_link(customer, "card_update"),
        }
        return self.send("trial_ending", customer, context, f"{sub.id}:trial_ending").outcome

    def _canceled(self, sub_id: str) -> str:
        sub = self._sub(sub_id)
        if sub is None or sub.status is not Status.CANCELED:
            return "ignored:not canceled"
        customer = self.store.get_customer(sub.customer)
        details = sub.cancellation_details or {}
        context = {
            **self._customer_context(customer),
            "plan_name": self._plan_name(sub),
            "canceled_at": sub.canceled_at or sub.ended_at or self.now(),
            "ends_at": sub.ended_at,
            "reason": details.get("reason"),
        }
        outcome = self.send("subscription_canceled", customer, context, f"{sub.id}:subscription_canceled").outcome
        days = self.settings.emails.win_back_days
        if days is not None and sub.ended_at is not None:
            self.store.put_timer(f"{WIN_BACK_TIMER}{sub.id}", sub.ended_at + timedelta(days=days))
        return outcome

    def _win_back(self, timer: str) -> str:
        sub = self._sub(timer.removeprefix(WIN_BACK_TIMER))
        outcome = "ignored:unknown subscription"
        if sub is not None and sub.status is Status.CANCELED and sub.ended_at is not None:
            customer = self.store.get_customer(sub.customer)
            resubscribed = any(
                s.status not in TERMINAL and s.id != sub.id for s in self.store.list_customer_subscriptions(customer.id)
            )
            if resubscribed:
                outcome = "ignored:resubscribed"
            else:
                context = {
                    **self._customer_context(customer),
                    "plan_name": self._plan_name(sub),
                    "ended_at": sub.ended_at,
                    "resubscribe_url": f"{self.public_url}/storefront",
                    "coupon_code": self.settings.emails.win_back_coupon,
                }
                outcome = self.send("win_back", customer, context, f"{sub.id}:win_back").outcome
        self.store.delete_timer(timer)
        return outcome

    def _card_expiring(self, customer_id: str) -> str:
        """The month before the card on file expires (and when the account updater reports a card
        that expires that soon): one email per card and expiry date."""
        try:
            customer = self.store.get_customer(customer_id)
        except NotFound:
            return "unknown"
        card = customer.default_payment_method
        key = card_expiry_key(card)
        if card is None or key is None or key == customer.card_expiring_notified:
            return "ignored:no expiring card"
        assert card.exp_month is not None and card.exp_year is not None
        today = self.now().date()
        end_of_expiry_month = date(card.exp_year + (card.exp_month == 12), card.exp_month % 12 + 1, 1)
        outcome = "ignored:already expired"
        if today < end_of_expiry_month:
            context = {
                **self._customer_context(customer),
                "card_brand": card.brand,
                "card_last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "update_card_url": self.card_link(customer, "card_update"),
            }
            outcome = self.send("card_expiring", customer, context, f"{customer.id}:card_expiring:{key}").outcome
        # marking it drops the customer out of the index (a version conflict is retried by the caller)
        self.store.save_customer(customer.model_copy(update={"card_expiring_notified": key}))
        return outcome

    # ------------------------------------------------------------------ emails
    def _dunning_email(self, decision: DunningDecision, invoice: Invoice, customer: Customer) -> None:
        assert decision.email is not None
        card = customer.default_payment_method
        shown = method_context(card)
        context: dict[str, Any] = {
            **self._customer_context(customer),
            "invoice_number": invoice.number or invoice.id,
            "amount_due": invoice.amount_due,
            "currency": invoice.currency,
        }
        if decision.email == "authentication_required":
            context["authentication_url"] = self.card_link(customer, "authenticate", invoice.id)
        elif decision.action is DunningAction.COMPLETE_CHECKOUT:  # no retry date: complete it before it expires
            context.update(
                update_card_url=self.card_link(customer, "card_update", invoice.id),
                **shown,
                complete_by=decision.until,
                plan_name=self._plan_name(sub) if (sub := self._sub(invoice.subscription)) else None,
                invoice_url=self.invoice_link(invoice),
            )
        else:
            context.update(
                update_card_url=self.card_link(customer, "card_update", invoice.id),
                **shown,
                next_retry_at=decision.at,
                invoice_url=self.invoice_link(invoice),
            )
        self.send(decision.email, customer, context, f"{decision.key}:{decision.email}")

    def _overdue_email(
        self, template: str, sub: Subscription, earliest: Invoice, unpaid: list[Invoice], key: str
    ) -> None:
        customer = self.store.get_customer(sub.customer)
        ladder = self.settings.overdue_ladder
        since = earliest.first_failed_at
        assert since is not None

        def at(predicate: Any) -> datetime | None:
            found = [s for s in ladder.states if predicate(s)]
            return since + timedelta(days=found[0].after_days) if found else None

        current = ladder.index(sub.overdue_state)
        later = [s for s in ladder.states if ladder.index(s.name) > current]
        same_currency = [i for i in unpaid if i.currency == earliest.currency]
        context: dict[str, Any] = {
            **self._customer_context(customer),
            "invoice_number": earliest.number or earliest.id,
            "amount_due": sum(i.amount_due for i in same_currency),
            "currency": earliest.currency,
            "unpaid_since": earliest.first_failed_at,
            "update_card_url": self.card_link(customer, "card_update", earliest.id),
            "invoice_url": self.invoice_link(earliest),
            "suspend_at": at(lambda s: s.disable_entitlements and s in later),
            "cancel_at": at(lambda s: s.final_action is FinalAction.CANCEL and s in later),
            "plan_name": self._plan_name(sub),
            "canceled_at": self.now(),
            "reason": CancellationReason.PAYMENT_FAILED.value,
        }
        if template == "subscription_canceled":
            key = f"{sub.id}:subscription_canceled"  # the same email as the cancellation event's
        self.send(template, customer, context, key)

    def send(self, template: str, customer: Customer, context: dict[str, Any], key: str) -> Sent:
        """Render and send one email, once per ``key``: claimed in the outbox first, then handed to
        SES. A claim left pending or failed by an earlier run is sent again; a sent one never is."""
        from jinja2 import TemplateError  # Jinja2 and babel: only when emailing

        from kassa.emails.render import TEMPLATES, Branding, render

        emails = self.settings.emails
        if not emails.enabled:
            return Sent(key, "disabled")
        spec = TEMPLATES.get(template)
        if "manage_url" not in context and self.settings.portal.enabled:
            # the customer portal's sign-in page (docs/portal.md): a plain page, no key in the email
            context = {**context, "manage_url": f"{self.public_url}/portal/login"}
        known = set(spec.required + spec.optional) if spec is not None else None
        values = {k: v for k, v in context.items() if known is None or k in known}
        branding = Branding.from_settings(self.settings, colour=emails.colour, logo_url=emails.logo_url)
        try:
            rendered = render(template, customer.preferred_locale, values, branding, overrides=emails.templates or None)
        except (ValueError, TemplateError) as error:  # EmailTemplateError is a ValueError
            if not emails.templates or spec is None:
                raise
            # the merchant's template does not render: the customer still gets kassa's own one
            log.error("the merchant's %s template failed (%s); sent kassa's built-in one", template, error)
            rendered = render(template, customer.preferred_locale, values, branding)
        email = OutgoingEmail(
            key=key,
            template=template,
            to=customer.email,
            customer=customer.id,
            locale=rendered.locale,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            created=self.now(),
            reply_to=self.settings.support_email,
        )
        claimed = self.outbox.claim(email)  # the conditional put answers "already claimed?" too
        if claimed is not None:
            if claimed.status == "sent":
                return Sent(key, "duplicate")
            email = claimed.email  # left pending or failed by an earlier run: send what was claimed
        try:
            message_id = self.mailer.send(email, self.sender)
        except InvalidInput as error:  # never deliverable (unverified sender, bad address): recorded, not retried
            self.outbox.mark_failed(key, error.message)
            log.warning("email %s rejected: %s", key, error.message)
            return Sent(key, "rejected")
        except Unavailable as error:
            self.outbox.mark_failed(key, error.message)
            raise  # retried with the message
        self.outbox.mark_sent(key, message_id, self.now())
        return Sent(key, "sent")

    # ------------------------------------------------------------------ links and helpers
    def card_link(self, customer: Customer, purpose: str, invoice: str | None = None) -> str:
        """The signed, expiring page where the customer enters a new card (or authenticates)."""
        days = self.settings.emails.card_link_days
        url, _ = signed_url(
            self.link_secret, self.public_url, customer.id, purpose, self.now(), timedelta(days=days), invoice
        )
        return url

    def invoice_link(self, invoice: Invoice) -> str:
        """The signed, expiring hosted invoice page (the emails' "View invoice": the invoice, its PDF and,
        while it is open, a Pay button), valid ``emails.invoice_link_days``."""
        days = self.settings.emails.invoice_link_days
        url, _ = signed_url(
            self.link_secret, self.public_url, invoice.customer, "invoice", self.now(), timedelta(days=days), invoice.id
        )
        return url

    @staticmethod
    def _customer_context(customer: Customer) -> dict[str, Any]:
        return {"customer_name": customer.name}

    def _sub(self, sub_id: str | None) -> Subscription | None:
        if not sub_id:
            return None
        try:
            return self.store.get_subscription(sub_id)
        except NotFound:
            return None

    def _plan_name(self, sub: Subscription) -> str:
        names = []
        for item in sub.items:
            if item.name:  # the price's nickname, copied onto the item
                names.append(item.name)
                continue
            product_id = self.billing.product_id(item.price, known_products(sub))
            product = self.billing.product(product_id)
            names.append(product.name if product else product_id)
        return " + ".join(names)

    # ------------------------------------------------------------------ figures
    def figures(self, start: date, end: date) -> DunningFigures:
        return recovery_figures(self.store, start, end)


def recovery_figures(store: BillingStore, start: date, end: date) -> DunningFigures:
    """Recovery figures of the invoices that failed at least once, among those with a tax point in
    [start, end]: recovered, lost, pending, amounts per currency, rates by decline code. Needs only
    the store (the REST API serves it without the dunning function's mail and link settings)."""
    outcomes = [
        DunningOutcome.of_invoice(
            invoice,
            (invoice.first_payment_error.decline_code or invoice.first_payment_error.code)
            if invoice.first_payment_error
            else "unknown",
        )
        for invoice in store.invoices_by_tax_date(start, end)
        if invoice.first_failed_at is not None
    ]
    return dunning_figures(outcomes, store.get_settings().retry_schedule.decline_overrides)


__all__ = ["Dunning", "Sent", "recovery_figures"]
