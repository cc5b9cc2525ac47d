"""Signed links by purpose: an invoice link opens only the hosted invoice page, a card link only the
card page; both expire and refuse tampering. The emails carry the invoice link (receipt, payment
failed, payment reminder) and paying on the hosted page charges that invoice once, on-session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeMailer, FakeOutbox, make_world

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import InvoiceStatus
from kassa.domain.links import (
    CARD_PURPOSES,
    INVOICE_PURPOSES,
    LinkExpired,
    LinkRefused,
    link_url,
    sign_link,
    signed_url,
    verify_link,
)
from kassa.domain.settings import EmailSettings, MerchantSettings
from kassa.services.checkout import complete_checkout
from kassa.services.customers import card_setup_intent
from kassa.services.dunning import Dunning
from kassa.services.hosted_invoice import pay_with_new_card
from kassa.services.invoice_actions import mark_uncollectible

SECRET = "link-key-1"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _token(purpose: str, invoice: str | None = None, days: int = 30) -> str:
    token, _ = sign_link(SECRET, "cus_1", purpose, NOW, timedelta(days=days), invoice)
    return token


def test_an_invoice_link_names_its_customer_and_invoice_and_opens_only_the_invoice_page() -> None:
    token = _token("invoice", "in_1")
    link = verify_link(SECRET, token, NOW + timedelta(days=29), INVOICE_PURPOSES)
    assert (link.customer, link.purpose, link.invoice) == ("cus_1", "invoice", "in_1")
    assert link.expires_at == NOW + timedelta(days=30)
    with pytest.raises(LinkRefused) as refused:  # the card page refuses it
        verify_link(SECRET, token, NOW, CARD_PURPOSES)
    assert refused.value.code == "link_invalid"


@pytest.mark.parametrize("purpose", CARD_PURPOSES)
def test_a_card_link_does_not_open_an_invoice_page(purpose: str) -> None:
    token = _token(purpose, "in_1")  # an authenticate link names an invoice too
    assert verify_link(SECRET, token, NOW, CARD_PURPOSES).purpose == purpose
    with pytest.raises(LinkRefused) as refused:
        verify_link(SECRET, token, NOW, INVOICE_PURPOSES)
    assert refused.value.code == "link_invalid"


def test_an_invoice_link_expires() -> None:
    token = _token("invoice", "in_1", days=30)
    with pytest.raises(LinkExpired) as expired:
        verify_link(SECRET, token, NOW + timedelta(days=30), INVOICE_PURPOSES)
    assert expired.value.code == "link_expired"


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_a_tampered_invoice_link_is_refused(where: str) -> None:
    token = _token("invoice", "in_1")
    payload, signature = token.split(".")
    if where == "payload":  # another invoice id under the same signature
        forged, _ = sign_link(SECRET, "cus_1", "invoice", NOW, timedelta(days=30), "in_2")
        tampered = f"{forged.split('.')[0]}.{signature}"
    else:
        tampered = f"{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"
    with pytest.raises(LinkRefused):
        verify_link(SECRET, tampered, NOW, INVOICE_PURPOSES)
    with pytest.raises(LinkRefused):  # another key's signature
        verify_link("another-key", token, NOW, INVOICE_PURPOSES)


def test_an_invoice_link_without_its_invoice_is_refused_and_cannot_be_made() -> None:
    token = _token("invoice")
    with pytest.raises(LinkRefused):
        verify_link(SECRET, token, NOW)
    with pytest.raises(ValueError):
        signed_url(SECRET, "https://pay.example", "cus_1", "invoice", NOW, timedelta(days=1))


def test_link_urls_by_purpose() -> None:
    assert link_url("https://pay.example/prod/", "invoice", "a.b") == "https://pay.example/prod/portal/invoices/a.b"
    assert (
        link_url("https://pay.example/prod", "card_update", "a.b") == "https://pay.example/prod/portal/card?token=a.b"
    )
    url, expires = signed_url(SECRET, "https://pay.example", "cus_1", "invoice", NOW, timedelta(days=30), "in_9")
    token = url.rsplit("/", 1)[1]
    assert verify_link(SECRET, token, NOW, INVOICE_PURPOSES).invoice == "in_9"
    assert expires == NOW + timedelta(days=30)


def test_the_invoice_link_validity_is_a_setting() -> None:
    assert EmailSettings().invoice_link_days == 30
    assert EmailSettings(invoice_link_days=365).invoice_link_days == 365
    with pytest.raises(ValueError):
        EmailSettings(invoice_link_days=0)


# ---------------------------------------------------------------------------------- emails and paying
def _dunning(world) -> Dunning:  # type: ignore[no-untyped-def]
    return Dunning(
        world.billing,
        FakeOutbox(),
        FakeMailer(),
        sender="billing@example.com",
        link_secret=SECRET,
        public_url="https://pay.example/prod",
    )


def _deliver(w, desk: Dunning, kind: str) -> None:  # type: ignore[no-untyped-def]
    for event in w.publisher.events:
        if event.type == kind:
            desk.handle_event({"detail-type": event.type, "detail": event.model_dump(mode="json")})


def _invoice_token(text: str) -> str:
    url = next(word for word in text.split() if "/portal/invoices/" in word)
    assert url.startswith("https://pay.example/prod/portal/invoices/")
    return url.rsplit("/", 1)[1]


def test_the_receipt_links_the_hosted_invoice_page() -> None:
    w = make_world(NOW)
    _, price = w.catalog(1500, "eur")
    result = w.active_subscription(price)
    invoice = w.store.get_invoice(result.subscription.latest_invoice or "")
    desk = _dunning(w)
    _deliver(w, desk, "invoice.paid")
    receipt = next(e for e, _ in desk.mailer.sent if e.template == "receipt")
    link = verify_link(SECRET, _invoice_token(receipt.text), w.clock.now(), INVOICE_PURPOSES)
    assert (link.invoice, link.customer) == (invoice.id, invoice.customer)
    assert link.expires_at == w.clock.now() + timedelta(days=30)
    assert "/portal/invoices/" in receipt.html


def test_payment_failed_and_reminder_emails_link_the_invoice_next_to_the_card_link() -> None:
    w = make_world(NOW)
    w.store.settings = MerchantSettings(emails=EmailSettings(invoice_link_days=45))
    _, price = w.catalog(1500, "eur")
    w.gateway.setup_payment_method = "pm_declines"
    w.gateway.will_decline("pm_declines")
    result = w.checkout(price, trial_days=3)
    complete_checkout(w.billing, result.subscription.id, result.setup_intent.id)
    desk = _dunning(w)
    from kassa.services.renewals import process_due

    w.clock.set(result.subscription.trial_end + timedelta(minutes=1))  # type: ignore[operator]
    for sub_id in w.store.all_due(w.clock.now()):
        process_due(w.billing, sub_id)
    _deliver(w, desk, "invoice.payment_failed")
    failed = next(e for e, _ in desk.mailer.sent if e.template == "payment_failed")
    assert "/portal/card?token=" in failed.text  # the card link stays
    link = verify_link(SECRET, _invoice_token(failed.text), w.clock.now(), INVOICE_PURPOSES)
    assert link.expires_at == w.clock.now() + timedelta(days=45)
    invoice = w.store.get_invoice(link.invoice or "")
    assert invoice.status is InvoiceStatus.OPEN
    w.clock.set(w.clock.now() + timedelta(days=3, hours=1))
    desk.sweep(4)
    reminder = next(e for e, _ in desk.mailer.sent if e.template == "payment_reminder")
    assert verify_link(SECRET, _invoice_token(reminder.text), w.clock.now(), INVOICE_PURPOSES).invoice == invoice.id


def _open_invoice(w):  # type: ignore[no-untyped-def]
    _, price = w.catalog(1500, "eur")
    w.gateway.setup_payment_method = "pm_declines"
    w.gateway.will_decline("pm_declines")
    result = w.checkout(price)
    complete_checkout(w.billing, result.subscription.id, result.setup_intent.id)
    invoice = w.store.get_invoice(result.subscription.latest_invoice or "")
    assert invoice.status is InvoiceStatus.OPEN
    w.gateway.setup_payment_method = "pm_card_visa"
    return result, invoice


def test_paying_on_the_hosted_page_saves_the_card_and_charges_that_invoice_once_on_session() -> None:
    w = make_world(NOW)
    result, invoice = _open_invoice(w)
    setup = card_setup_intent(w.billing, invoice.customer, "invoice")
    paid = pay_with_new_card(w.billing, invoice.customer, invoice.id, setup.id)
    assert paid.invoice is not None and paid.invoice.status is InvoiceStatus.PAID
    assert w.store.get_customer(invoice.customer).default_payment_method.payment_method_id == "pm_card_visa"  # type: ignore[union-attr]
    charges = [c for c in w.gateway.charge_calls if c.invoice_id == invoice.id and c.payment_method == "pm_card_visa"]
    assert len(charges) == 1 and charges[0].off_session is False
    again = pay_with_new_card(w.billing, invoice.customer, invoice.id, setup.id)  # a second click: nothing more
    assert again.invoice is not None and again.invoice.status is InvoiceStatus.PAID
    assert len([c for c in w.gateway.charge_calls if c.invoice_id == invoice.id]) == len(charges) + 1


def test_the_hosted_page_pays_a_written_off_invoice_and_refuses_another_customers() -> None:
    w = make_world(NOW)
    _, invoice = _open_invoice(w)
    mark_uncollectible(w.billing, invoice.id)
    setup = card_setup_intent(w.billing, invoice.customer, "invoice")
    with pytest.raises(InvalidInput):
        pay_with_new_card(w.billing, "cus_someone_else", invoice.id, setup.id)
    paid = pay_with_new_card(w.billing, invoice.customer, invoice.id, setup.id)
    assert paid.invoice is not None and paid.invoice.status is InvoiceStatus.PAID
