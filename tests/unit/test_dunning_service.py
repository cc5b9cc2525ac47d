"""The dunning service on the in-memory world: retries at the schedule's offsets, the overdue
ladder, card-update links, the account updater and each email exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import FakeMailer, FakeOutbox, Outcome, World, make_world, stripe_event, stripe_object

from infra.wiring import NOTIFICATION_ROUTE
from kassa.api.shapes import figures_json
from kassa.domain.cancellation import CancellationDetails
from kassa.domain.credit_notes import CreditNoteLine, CreditNoteLineType, CreditNoteRequest
from kassa.domain.customer import CardSummary
from kassa.domain.dunning import RetrySchedule
from kassa.domain.errors import IllegalTransition, InvalidInput, Unavailable
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.links import LinkExpired, LinkRefused, verify_link
from kassa.domain.settings import MerchantSettings
from kassa.domain.subscription import Status
from kassa.services.cancellation import cancel, entitlements_of
from kassa.services.checkout import complete_checkout
from kassa.services.collection import update_card
from kassa.services.credit_notes import credit_invoice
from kassa.services.customers import card_setup_intent
from kassa.services.dunning import Dunning, recovery_figures
from kassa.services.invoice_actions import mark_uncollectible, void
from kassa.services.plan_changes import change_plan
from kassa.services.renewals import process_due
from kassa.services.stripe_events import apply_stripe_event

SECRET = "sk_test_links"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Desk:
    """The world plus the dunning service, with the bus routing of the notifications queue."""

    def __init__(self, settings: MerchantSettings | None = None) -> None:
        self.w: World = make_world(START)
        if settings is not None:
            self.w.store.settings = settings
        self.outbox = FakeOutbox()
        self.mailer = FakeMailer()
        self.delivered = 0

    def dunning(self) -> Dunning:  # one per invocation, as in the Lambda
        return Dunning(
            self.w.billing,
            self.outbox,
            self.mailer,
            sender="billing@example.com",
            link_secret=SECRET,
            public_url="https://pay.example/prod",
        )

    def deliver(self, twice: bool = False) -> None:
        events = self.w.publisher.events[self.delivered :]
        self.delivered += len(events)
        for event in events:
            if event.type in NOTIFICATION_ROUTE.detail_types:
                envelope = {"detail-type": event.type, "detail": event.model_dump(mode="json")}
                for _ in range(2 if twice else 1):
                    self.dunning().handle_event(envelope)
        if self.delivered < len(self.w.publisher.events):
            self.deliver(twice)

    def run_until(self, when: datetime, twice: bool = False) -> None:
        """Hourly ticks of the renewal and dunning sweeps up to ``when``, delivering events after each."""
        t = self.w.clock.now()
        while t < when:
            t = min(t + timedelta(hours=1), when)
            self.w.clock.set(t)
            for sub_id in self.w.store.all_due(t):
                process_due(self.w.billing, sub_id)
            self.deliver(twice)
            for _ in range(2 if twice else 1):
                self.dunning().sweep(4)
            self.deliver(twice)

    def subscribe(self, pm: str = "pm_card_visa", email: str = "ada@example.com", locale: str = "en") -> Any:
        _, price = self.w.catalog(1500, "eur")
        self.w.gateway.setup_payment_method = pm
        result = self.w.checkout(price, email=email, locale=locale)
        complete_checkout(self.w.billing, result.subscription.id, result.setup_intent.id)
        self.deliver()
        return result

    def invoice(self, sub_id: str) -> Invoice:
        sub = self.w.store.get_subscription(sub_id)
        assert sub.latest_invoice
        return self.w.store.get_invoice(sub.latest_invoice)

    def templates(self, customer: str | None = None) -> list[str]:
        return self.mailer.templates(customer)


def decline_renewals(desk: Desk, pm: str = "pm_card_visa", decline_code: str = "insufficient_funds") -> None:
    desk.w.gateway.will(pm, Outcome("decline", "card_declined", decline_code, "declined"))


def test_a_soft_decline_is_retried_at_the_configured_offsets_and_emails_once() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1, 3, 5, 7])))
    sub = desk.subscribe()
    assert desk.templates() == ["receipt"]
    decline_renewals(desk)
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(days=8), twice=True)
    invoice = desk.invoice(sub.subscription.id)
    calls = [c for c in desk.w.gateway.charge_calls if c.invoice_id == invoice.id]
    attempts = sorted({c.attempt for c in calls})
    assert attempts == [1, 2, 3, 4, 5]  # the renewal and the four retries, each charged under its own attempt
    assert invoice.first_failed_at is not None
    first = invoice.first_failed_at
    assert first == renewal_at  # the renewal's hourly tick falls on the period end here
    assert invoice.attempt_count == 5 and invoice.status is InvoiceStatus.OPEN
    assert invoice.next_dunning_at is not None  # the overdue ladder still watches it
    # payment_failed once (after the first failure), with a signed card link; no email per retry
    assert desk.templates().count("payment_failed") == 1
    failed = next(e for e, _ in desk.mailer.sent if e.template == "payment_failed")
    assert "https://pay.example/prod/portal/card?token=" in failed.text


def test_retries_happen_at_the_offsets_and_not_before() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1, 3])))
    sub = desk.subscribe()
    decline_renewals(desk)
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(days=1) - timedelta(hours=1))
    assert desk.invoice(sub.subscription.id).attempt_count == 1
    desk.run_until(renewal_at + timedelta(days=1))
    assert desk.invoice(sub.subscription.id).attempt_count == 2
    desk.run_until(renewal_at + timedelta(days=3) - timedelta(hours=1))
    assert desk.invoice(sub.subscription.id).attempt_count == 2
    desk.run_until(renewal_at + timedelta(days=3))
    assert desk.invoice(sub.subscription.id).attempt_count == 3
    desk.run_until(renewal_at + timedelta(days=6))
    assert desk.invoice(sub.subscription.id).attempt_count == 3  # the schedule is used up


def test_a_new_card_pays_the_open_invoice_at_once_and_the_retries_stop() -> None:
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk)
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(hours=2))
    invoice = desk.invoice(sub.subscription.id)
    assert invoice.status is InvoiceStatus.OPEN
    # the customer follows the link and saves a new card (Stripe.js confirms the SetupIntent)
    intent = card_setup_intent(desk.w.billing, sub.customer.id, "card_update")
    desk.w.gateway.confirm_setup_intent(intent.id, "pm_card_mastercard")
    customer, results = update_card(desk.w.billing, sub.customer.id, intent.id)
    assert customer.default_payment_method is not None
    assert customer.default_payment_method.payment_method_id == "pm_card_mastercard"
    assert [r.invoice.status for r in results if r.invoice] == [InvoiceStatus.PAID]
    desk.deliver()
    paid = desk.invoice(sub.subscription.id)
    assert paid.status is InvoiceStatus.PAID and paid.next_dunning_at is None
    assert desk.w.store.get_subscription(sub.subscription.id).status is Status.ACTIVE
    charges = len(desk.w.gateway.charge_calls)
    desk.run_until(renewal_at + timedelta(days=14))
    assert len(desk.w.gateway.charge_calls) == charges  # no retry after the payment
    assert desk.templates() == ["receipt", "payment_failed", "receipt"]
    # the same SetupIntent again (the webhook after the page): nothing charged twice
    update_card(desk.w.billing, sub.customer.id, intent.id)
    assert len(desk.w.gateway.charge_calls) == charges


@pytest.mark.parametrize("decline_code", ["lost_card", "stolen_card", "do_not_honor", "fraudulent"])
def test_a_hard_decline_is_not_retried_and_asks_for_a_card(decline_code: str) -> None:
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk, decline_code=decline_code)
    desk.run_until(sub.subscription.current_period_end + timedelta(days=13), twice=True)
    invoice = desk.invoice(sub.subscription.id)
    assert invoice.attempt_count == 1  # never retried blindly
    assert invoice.first_payment_error is not None and invoice.first_payment_error.decline_code == decline_code
    assert desk.templates().count("payment_failed") == 1


def test_authentication_required_sends_a_link_instead_of_retrying() -> None:
    desk = Desk()
    sub = desk.subscribe()
    desk.w.gateway.will_require_action("pm_card_visa")
    desk.run_until(sub.subscription.current_period_end + timedelta(days=5))
    invoice = desk.invoice(sub.subscription.id)
    assert invoice.attempt_count == 1
    assert desk.templates().count("authentication_required") == 1
    auth = next(e for e, _ in desk.mailer.sent if e.template == "authentication_required")
    token = auth.text.split("token=")[1].split()[0]
    link = verify_link(SECRET, token, desk.w.clock.now())
    assert link.purpose == "authenticate" and link.customer == sub.customer.id and link.invoice == invoice.id


def test_the_overdue_ladder_warns_suspends_and_cancels_once_each() -> None:
    desk = Desk()
    sub = desk.subscribe(locale="de")
    decline_renewals(desk)
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(days=3, hours=1), twice=True)
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.overdue_state == "warning" and not state.entitlements_suspended
    assert entitlements_of(desk.w.billing, sub.customer.id)  # still has access while warned
    desk.run_until(renewal_at + timedelta(days=10, hours=1), twice=True)
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.overdue_state == "suspended" and state.entitlements_suspended and state.changes_blocked
    assert entitlements_of(desk.w.billing, sub.customer.id) == []
    with pytest.raises(IllegalTransition):
        change_plan(desk.w.billing, sub.subscription.id, quantity=2)
    desk.run_until(renewal_at + timedelta(days=22), twice=True)
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.status is Status.CANCELED and state.overdue_state == "canceled"
    assert state.cancellation_details == {"reason": "payment_failed"}
    assert desk.invoice(sub.subscription.id).status is InvoiceStatus.UNCOLLECTIBLE
    assert desk.templates() == [
        "receipt",
        "payment_failed",
        "payment_reminder",
        "account_suspended",
        "subscription_canceled",
    ]
    assert {e.locale for e, _ in desk.mailer.sent} == {"de"}
    types = desk.w.publisher.types()
    assert types.count("entitlements.active_entitlement_summary.updated") == 1
    assert types.count("customer.subscription.deleted") == 1


def test_paying_while_suspended_restores_access_at_once() -> None:
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(days=11))
    assert entitlements_of(desk.w.billing, sub.customer.id) == []
    intent = card_setup_intent(desk.w.billing, sub.customer.id, "card_update")
    desk.w.gateway.confirm_setup_intent(intent.id, "pm_card_mastercard")
    update_card(desk.w.billing, sub.customer.id, intent.id)
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.status is Status.ACTIVE and state.overdue_state is None and not state.entitlements_suspended
    assert len(entitlements_of(desk.w.billing, sub.customer.id)) == 1
    assert desk.w.publisher.types().count("entitlements.active_entitlement_summary.updated") == 2
    desk.deliver()
    desk.run_until(sub.subscription.current_period_end + timedelta(days=25))
    assert desk.w.store.get_subscription(sub.subscription.id).status is Status.ACTIVE


@pytest.mark.parametrize("write_off", [void, mark_uncollectible])
def test_writing_off_the_overdue_invoice_steps_the_ladder_back_at_once(write_off: Any) -> None:
    """The merchant voids or writes off the only failed invoice of a suspended subscription: the
    notifications queue carries it to dunning, which evaluates the ladder again (access returns)."""
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(days=11))
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.overdue_state == "suspended" and state.entitlements_suspended
    write_off(desk.w.billing, desk.invoice(sub.subscription.id).id)
    desk.deliver(twice=True)  # a duplicate delivery changes nothing more
    state = desk.w.store.get_subscription(sub.subscription.id)
    assert state.overdue_state is None and not state.entitlements_suspended and not state.changes_blocked
    assert len(entitlements_of(desk.w.billing, sub.customer.id)) == 1
    assert desk.w.publisher.types().count("entitlements.active_entitlement_summary.updated") == 2
    desk.run_until(sub.subscription.current_period_end + timedelta(days=25))  # nothing left to cancel for
    assert desk.w.store.get_subscription(sub.subscription.id).status is not Status.CANCELED


def test_a_mail_service_outage_is_retried_and_sends_once() -> None:
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.mailer.fail_with = Unavailable("SES throttled")
    desk.w.clock.set(sub.subscription.current_period_end)
    process_due(desk.w.billing, sub.subscription.id)
    failed_event = desk.w.publisher.of_type("invoice.payment_failed")[-1]
    envelope = {"detail-type": failed_event.type, "detail": failed_event.model_dump(mode="json")}
    with pytest.raises(Unavailable):
        desk.dunning().handle_event(envelope)
    desk.dunning().handle_event(envelope)  # SQS redelivers
    desk.dunning().handle_event(envelope)
    assert desk.templates().count("payment_failed") == 1


def test_the_account_updater_refreshes_the_card_and_an_expiring_one_is_announced() -> None:
    desk = Desk()
    sub = desk.subscribe()
    customer = desk.w.store.get_customer(sub.customer.id)
    assert customer.default_payment_method is not None
    pm = customer.default_payment_method.payment_method_id
    obj = stripe_object(
        "payment_method",
        id=pm,
        customer=customer.stripe_customer_id,
        card={
            **stripe_object("payment_method")["card"],
            "brand": "visa",
            "last4": "1881",
            "exp_month": 4,
            "exp_year": 2026,
        },
    )
    outcome = apply_stripe_event(desk.w.billing, stripe_event("payment_method.automatically_updated", obj))
    assert outcome == "applied"
    card = desk.w.store.get_customer(sub.customer.id).default_payment_method
    assert card == CardSummary(payment_method_id=pm, brand="visa", last4="1881", exp_month=4, exp_year=2026)
    desk.run_until(START + timedelta(hours=2), twice=True)
    assert desk.templates().count("card_expiring") == 1
    email = next(e for e, _ in desk.mailer.sent if e.template == "card_expiring")
    assert "1881" in email.text
    # a card that is not the default is left alone
    other = {**obj, "id": "pm_other"}
    assert apply_stripe_event(desk.w.billing, stripe_event("payment_method.updated", other, "evt_2")).startswith(
        "ignored"
    )


def test_receipts_trial_and_cancellation_emails_and_win_back() -> None:
    desk = Desk(MerchantSettings(emails={"win_back_days": 14, "win_back_coupon": "COMEBACK"}))
    sub = desk.subscribe()
    cancel(desk.w.billing, sub.subscription.id, at_period_end=False, details=CancellationDetails())
    desk.deliver(twice=True)
    desk.run_until(START + timedelta(days=15), twice=True)
    assert desk.templates() == ["receipt", "subscription_canceled", "win_back"]
    win_back = next(e for e, _ in desk.mailer.sent if e.template == "win_back")
    assert "COMEBACK" in win_back.text


def test_the_upcoming_renewal_reminder_comes_n_days_before() -> None:
    desk = Desk(MerchantSettings(emails={"upcoming_renewal_days": 7}))
    sub = desk.subscribe()
    end = sub.subscription.current_period_end
    desk.run_until(end - timedelta(days=7) - timedelta(hours=1))
    assert "upcoming_renewal" not in desk.templates()
    desk.run_until(end - timedelta(days=7) + timedelta(hours=1), twice=True)
    assert desk.templates().count("upcoming_renewal") == 1
    desk.run_until(end + timedelta(hours=1))
    assert desk.templates().count("receipt") == 2  # renewed as usual after the reminder


def test_figures_count_recovered_and_lost_by_decline_code() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1])))
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(hours=2))
    intent = card_setup_intent(desk.w.billing, sub.customer.id, "card_update")
    desk.w.gateway.confirm_setup_intent(intent.id, "pm_card_mastercard")
    update_card(desk.w.billing, sub.customer.id, intent.id)
    figures = figures_json(desk.dunning().figures(START.date(), (START + timedelta(days=60)).date()))
    assert figures["invoices"] == 1 and figures["recovered"] == 1
    assert figures["amount_recovered"] == {"EUR": desk.invoice(sub.subscription.id).amount_paid}
    assert figures["by_decline_code"]["insufficient_funds"]["rate"] == "1.0000"
    assert figures["attempts_to_recover"] == {"2": 1}


def test_links_are_signed_single_customer_and_expire() -> None:
    desk = Desk()
    sub = desk.subscribe()
    customer = desk.w.store.get_customer(sub.customer.id)
    url = desk.dunning().card_link(customer, "card_update")
    token = url.split("token=")[1]
    now = desk.w.clock.now()
    assert verify_link(SECRET, token, now).customer == customer.id
    payload, signature = token.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    with pytest.raises(LinkRefused):
        verify_link(SECRET, tampered, now)
    with pytest.raises(LinkRefused):
        verify_link("another secret", token, now)
    with pytest.raises(LinkExpired):
        verify_link(SECRET, token, now + timedelta(days=7))
    assert verify_link(SECRET, token, now + timedelta(days=7) - timedelta(seconds=1)).purpose == "card_update"


def test_settings_validate_the_ladder_and_email_settings() -> None:
    with pytest.raises(InvalidInput) as error:
        MerchantSettings.model_validate({"overdue_ladder": {"states": [{"name": "w", "after_days": 3, "email": "x"}]}})
    assert error.value.param == "overdue_ladder.states[0].email"
    custom = MerchantSettings.model_validate(
        {
            "overdue_ladder": {"states": [{"name": "w", "after_days": 3, "email": "final_notice"}]},
            "emails": {"templates": {"final_notice.subject.j2": "Pay", "final_notice.txt.j2": "x"}},
        }
    )
    assert custom.overdue_ladder.states[0].email == "final_notice"
    with pytest.raises(ValueError, match="colour"):
        MerchantSettings.model_validate({"emails": {"colour": "red"}})
    with pytest.raises(ValueError, match="receipt.subject.j2', line 1"):  # a syntax error is caught when saved
        MerchantSettings.model_validate({"emails": {"templates": {"receipt.subject.j2": "{{ oops"}}})


def test_a_retry_whose_outcome_was_lost_is_sent_again_under_the_same_attempt() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1, 3])))
    sub = desk.subscribe()
    # renewal declines; the day-1 retry reaches Stripe's outage (nothing charged); then the card works
    desk.w.gateway.will(
        "pm_card_visa",
        Outcome("decline", "card_declined", "insufficient_funds", "declined"),
        Outcome("error"),
        Outcome("succeed"),
    )
    renewal_at = sub.subscription.current_period_end
    desk.run_until(renewal_at + timedelta(days=1, hours=2))
    invoice = desk.invoice(sub.subscription.id)
    assert invoice.status is InvoiceStatus.PAID and invoice.attempt_count == 2
    attempts = [c.attempt for c in desk.w.gateway.charge_calls if c.invoice_id == invoice.id]
    assert attempts == [1, 2, 2]  # the lost attempt 2 re-sent with its own number, not a third attempt


def test_a_merchant_template_that_fails_to_render_falls_back_to_kassas_own() -> None:
    desk = Desk(MerchantSettings(emails={"templates": {"receipt.subject.j2": "{{ no_such_variable }}"}}))
    desk.subscribe()
    assert desk.templates() == ["receipt"]
    receipt = desk.mailer.sent[0][0]
    assert receipt.subject and "no_such_variable" not in receipt.subject


def test_one_failing_entity_does_not_stop_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk()
    first, second = desk.subscribe(), desk.subscribe(email="bob@example.com")
    decline_renewals(desk)
    desk.w.clock.set(first.subscription.current_period_end)
    for sub_id in desk.w.store.all_due(desk.w.clock.now()):
        process_due(desk.w.billing, sub_id)
    broken = desk.invoice(first.subscription.id).id
    real = desk.w.store.find_invoice

    def find_invoice(invoice_id: str) -> Invoice | None:
        if invoice_id == broken:
            raise RuntimeError("a corrupt item")
        return real(invoice_id)

    monkeypatch.setattr(desk.w.store, "find_invoice", find_invoice)
    outcomes = desk.dunning().sweep(4)
    assert outcomes["failed"] == 1 and outcomes["retry"] == 1
    assert desk.templates(second.customer.id).count("payment_failed") == 1
    assert desk.w.store.invoices[broken].next_dunning_at is not None  # still due: taken again next time


def test_a_late_upcoming_renewal_event_announces_nothing() -> None:
    desk = Desk(MerchantSettings(emails={"upcoming_renewal_days": 7}))
    sub = desk.subscribe()
    end = sub.subscription.current_period_end
    desk.run_until(end - timedelta(days=6))
    late = desk.w.publisher.of_type("invoice.upcoming")[-1]
    desk.run_until(end + timedelta(hours=1))  # renewed: a new period
    outcome = desk.dunning().handle_event({"detail-type": late.type, "detail": late.model_dump(mode="json")})
    assert outcome == "ignored:renewed since"
    assert desk.templates().count("upcoming_renewal") == 1


def test_recovery_figures_need_only_the_store() -> None:
    desk = Desk(MerchantSettings(retry_schedule=RetrySchedule.days([1])))
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(days=3))
    figures = recovery_figures(desk.w.store, START.date(), (START + timedelta(days=60)).date())
    assert (figures.invoices, figures.recovered, figures.pending) == (1, 0, 1)
    assert figures.amount_pending == {"EUR": desk.invoice(sub.subscription.id).amount_due}


def test_a_credit_note_on_an_invoice_that_dunning_just_rescheduled_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    desk = Desk()
    sub = desk.subscribe()
    decline_renewals(desk)
    desk.run_until(sub.subscription.current_period_end + timedelta(hours=1))
    invoice = desk.invoice(sub.subscription.id)
    real = desk.w.store.issue_credit_note
    raced: list[bool] = []

    def issue_after_a_dunning_write(note: Any, updated: Invoice, customer: Any) -> Invoice:
        if not raced:  # the dunning sweep files the invoice under its next wake-up meanwhile
            raced.append(True)
            current = desk.w.store.get_invoice(updated.id)
            desk.w.store.save_invoice(current.model_copy(update={"next_dunning_at": current.next_dunning_at}))
        return real(note, updated, customer)

    monkeypatch.setattr(desk.w.store, "issue_credit_note", issue_after_a_dunning_write)
    request = CreditNoteRequest(
        lines=[CreditNoteLine(type=CreditNoteLineType.CUSTOM_LINE_ITEM, amount=500, description="goodwill")]
    )
    note, credited = credit_invoice(desk.w.billing, invoice.id, request)
    assert raced == [True]
    assert credited.amount_due == invoice.amount_due - 500 and credited.status is InvoiceStatus.OPEN
    assert desk.w.store.list_credit_notes(invoice.id) == [note]  # one note, not two


def test_a_paid_invoices_pdf_is_made_as_its_receipt_goes_out_and_only_once() -> None:
    from kassa.adapters.memory import MemoryFileStore

    desk = Desk()
    files = MemoryFileStore()
    desk.dunning = lambda: Dunning(  # type: ignore[method-assign]
        desk.w.billing,
        desk.outbox,
        desk.mailer,
        sender="billing@example.com",
        link_secret=SECRET,
        public_url="https://pay.example/prod",
        files=files,
    )
    _, price = desk.w.catalog(1500, "eur")
    result = desk.w.checkout(price)
    complete_checkout(desk.w.billing, result.subscription.id, result.setup_intent.id)
    desk.deliver(twice=True)  # invoice.paid delivered twice
    invoice = desk.invoice(result.subscription.id)
    assert desk.templates() == ["receipt"]
    pdfs = [key for key in files.objects if key.startswith(f"documents/{invoice.id}/") and key.endswith(".pdf")]
    assert len(pdfs) == 1 and pdfs[0].split("/")[-1].startswith("paid-")
    assert files.objects[pdfs[0]][0].startswith(b"%PDF")
