"""The hosted invoice page's Pay button with a SEPA bank account, through the api function's routes in
process: the session offers a bank account (``payment_method_types``, the mandate in the customer's
language, who holds the account) only where the merchant offers SEPA Direct Debit; paying records the
browser that accepted the mandate (IP address, user agent) and answers the debit as processing; while
it is with the bank the invoice has nothing more to pay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import Outcome, World, make_world

from kassa.domain.customer import Address
from kassa.domain.invoice import Invoice, InvoiceStatus
from kassa.domain.links import sign_link
from kassa.domain.payment_methods import PaymentMethodKind
from kassa.domain.settings import BankDebitSettings, MerchantSettings
from kassa.services.checkout import complete_checkout, start_checkout
from kassa.services.hosted_invoice import pay_with_new_card
from kassa.services.ports import MandateAcceptance

SECRET = "hosted-invoice-secret"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEPA_PM = "pm_sepa_de0001"
CREDITOR = "DE98ZZZ09999999999"
BROWSER_IP, BROWSER_UA = "203.0.113.9", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"


def _world(types: tuple[str, ...]) -> World:
    world = make_world(NOW)
    world.store.settings = MerchantSettings(
        seller_name="Koffie Club BV",
        payment_method_types=types,
        bank_debits=BankDebitSettings(sepa_creditor_id=CREDITOR),
    )
    return world


def _open_invoice(world: World) -> Invoice:
    """A German customer whose card declined their first invoice: open, on the hosted page."""
    _, price = world.catalog(1500, "eur")
    world.gateway.setup_payment_method = "pm_declines"
    world.gateway.will_decline("pm_declines")
    started = start_checkout(
        world.billing,
        price_id=price.id,
        email="jana@example.de",
        name="Jana Schmidt",
        address=Address(country="DE"),
        locale="de",
    )
    complete_checkout(world.billing, started.subscription.id, started.setup_intent.id)
    invoice = world.store.get_invoice(started.subscription.latest_invoice or "")
    assert invoice.status is InvoiceStatus.OPEN
    return invoice


class _Routes:
    """POST /portal/invoices/… as API Gateway hands it over, from a browser at BROWSER_IP."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        from kassa.adapters import container

        monkeypatch.setattr(container, "billing", lambda with_gateway=True: world.billing)
        monkeypatch.setattr(container, "store", lambda: world.store)
        monkeypatch.setattr(container, "link_keys", lambda: (SECRET,))
        monkeypatch.setattr(container, "now", world.billing.now)

    def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from kassa.api.app import app

        headers = {"Host": "billing.shop.example", "Content-Type": "application/json", "User-Agent": BROWSER_UA}
        event = {
            "resource": "/portal/{proxy+}",
            "path": path,
            "httpMethod": "POST",
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "requestContext": {"stage": "$default", "identity": {"sourceIp": BROWSER_IP, "userAgent": "apigw"}},
            "body": json.dumps(body),
            "isBase64Encoded": False,
        }
        answer = app.resolve(event, None)
        assert answer["statusCode"] == 200, answer["body"]
        return json.loads(answer["body"])


def _token(invoice: Invoice) -> str:
    token, _ = sign_link(SECRET, invoice.customer, "invoice", NOW, timedelta(days=30), invoice.id)
    return token


def test_a_card_only_merchants_session_offers_no_bank_account(monkeypatch: pytest.MonkeyPatch) -> None:
    world = _world(("card",))
    invoice = _open_invoice(world)
    session = _Routes(world, monkeypatch)("/portal/invoices/session", {"token": _token(invoice)})
    assert session["mode"] == "pay" and session["setup_intent_id"]
    assert not {"payment_method_types", "mandate", "customer"} & set(session)
    create = [args for name, args in world.gateway.calls if name == "create_setup_intent"][-1]
    assert create["payment_method_types"] == ["card"]


def test_a_sepa_merchants_session_offers_a_bank_account_with_the_mandate_in_the_customers_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _world(("card", "sepa_debit"))
    invoice = _open_invoice(world)
    session = _Routes(world, monkeypatch)("/portal/invoices/session", {"token": _token(invoice)})
    assert session["mode"] == "pay"
    assert session["payment_method_types"] == ["card", "sepa_debit"]
    mandate = session["mandate"]
    assert mandate["language"] == "de"
    assert f"Ich ermächtige Koffie Club BV (Gläubiger-Identifikationsnummer {CREDITOR})" in mandate["sepa_debit"]
    assert mandate["sepa_debit_accept"] == "Ich erteile dieses SEPA-Lastschriftmandat."
    assert session["customer"] == {"name": "Jana Schmidt", "email": "jana@example.de"}
    # the SetupIntent the page confirms takes a bank account too
    create = [args for name, args in world.gateway.calls if name == "create_setup_intent"][-1]
    assert create["payment_method_types"] == ["card", "sepa_debit"]


def test_the_session_reads_the_customer_and_their_subscriptions_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SetupIntent is created for the offered types the answer shows: neither read twice."""
    world = _world(("card", "sepa_debit"))
    invoice = _open_invoice(world)
    reads: list[str] = []
    for name in ("get_customer", "list_customer_subscriptions"):
        original = getattr(world.store, name)
        monkeypatch.setattr(world.store, name, lambda *a, _o=original, _n=name, **k: (reads.append(_n), _o(*a, **k))[1])
    session = _Routes(world, monkeypatch)("/portal/invoices/session", {"token": _token(invoice)})
    assert session["payment_method_types"] == ["card", "sepa_debit"]
    assert reads.count("get_customer") == 1 and reads.count("list_customer_subscriptions") == 1


def test_paying_by_bank_account_records_the_browsers_mandate_acceptance_and_answers_processing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _world(("card", "sepa_debit"))
    invoice = _open_invoice(world)
    routes = _Routes(world, monkeypatch)
    token = _token(invoice)
    world.gateway.setup_payment_method = SEPA_PM  # Stripe.js confirmed the SetupIntent with the IBAN
    world.gateway.will(SEPA_PM, Outcome("processing"))
    session = routes("/portal/invoices/session", {"token": token})
    done = routes("/portal/invoices/pay", {"token": token, "setup_intent_id": session["setup_intent_id"]})

    [row] = done["invoices"]
    assert (row["id"], row["status"], row.get("processing")) == (invoice.id, "open", True)
    assert "requires_action" not in row
    account = world.store.get_customer(invoice.customer).default_payment_method
    assert account is not None and account.type is PaymentMethodKind.SEPA_DEBIT
    assert account.mandate is not None and account.mandate.stripe_mandate == f"mandate_{SEPA_PM}"
    assert (account.mandate.ip_address, account.mandate.user_agent) == (BROWSER_IP, BROWSER_UA)
    assert account.mandate.accepted_at == world.clock.now()
    charges = [c for c in world.gateway.charge_calls if c.invoice_id == invoice.id and c.payment_method == SEPA_PM]
    assert len(charges) == 1 and charges[0].payment_method_type == "sepa_debit"

    # with the bank: nothing more to pay on the page (no new SetupIntent), nothing charged again
    again = routes("/portal/invoices/session", {"token": token})
    assert again["mode"] == "open" and "setup_intent_id" not in again
    routes("/portal/invoices/pay", {"token": token, "setup_intent_id": session["setup_intent_id"]})
    assert len([c for c in world.gateway.charge_calls if c.invoice_id == invoice.id]) == len(charges) + 1


def test_the_use_case_keeps_the_acceptance_it_is_given() -> None:
    world = _world(("card", "sepa_debit"))
    invoice = _open_invoice(world)
    world.gateway.setup_payment_method = SEPA_PM
    world.gateway.will(SEPA_PM, Outcome("processing"))
    from kassa.services.customers import card_setup_intent

    setup = card_setup_intent(world.billing, invoice.customer, "invoice")
    acceptance = MandateAcceptance(ip_address="198.51.100.4", user_agent="Firefox/133.0")
    result = pay_with_new_card(world.billing, invoice.customer, invoice.id, setup.id, acceptance=acceptance)
    assert result.invoice is not None and result.invoice.attempt_outcome == "processing"
    mandate = world.store.get_customer(invoice.customer).default_payment_method.mandate  # type: ignore[union-attr]
    assert mandate is not None and (mandate.ip_address, mandate.user_agent) == ("198.51.100.4", "Firefox/133.0")
