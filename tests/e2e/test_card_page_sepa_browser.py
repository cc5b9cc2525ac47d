"""A customer of a SEPA-enabled merchant opens their card-update link in chromium, switches to a bank
account, reads the SEPA mandate in their language (German: the merchant's name and creditor identifier
filled in), types an IBAN into the page (localstripe's Stripe.js shim, ``confirmSepaDebitSetup``),
accepts the mandate and saves: the bank account with its mandate becomes the default payment method and
the open invoice is debited (processing, then paid when the bank settles)."""

from __future__ import annotations

import os
import shutil

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def test_a_customer_switches_to_a_bank_account_accepts_the_mandate_and_the_invoice_is_debited(
    api: Api, stack, sepa_merchant, past_due, csp_page, tmp_path
):
    # a German customer whose card declined the first renewal: one open invoice
    sub_id, customer, invoice = past_due("iban-page@example.de")

    link = api.post(f"/v1/customers/{customer}/card_update_link", {}, expect=201)["url"]
    page, violations = csp_page()
    page.goto(link)
    page.wait_for_selector("#methods:not([hidden])")
    assert page.locator("#iban-box").is_hidden()
    page.check("input[name=method][value=sepa_debit]")
    assert page.locator("#iban-box").is_visible() and page.locator("#card").is_hidden()
    assert page.text_content("#save") == "Bankkonto speichern"  # the page in the customer's language

    # the rulebook's mandate in the customer's language, naming the merchant and its creditor identifier
    mandate = page.text_content("#mandate-text") or ""
    assert f"Ich ermächtige Koffie Club BV (Gläubiger-Identifikationsnummer {sepa_merchant})" in mandate
    assert "Zugleich weise ich mein Kreditinstitut an" in mandate and "innerhalb von acht Wochen" in mandate
    assert "mindestens 14 Tage vorher" in mandate
    assert page.get_attribute("#mandate-text", "lang") == "de"
    assert page.text_content("#mandate-accept-text") == "Ich erteile dieses SEPA-Lastschriftmandat."
    assert page.input_value("#account-holder") == "iban-page"  # the customer's name, editable

    page.fill("#iban", "DE89 3704 0044 0532 0130 00")
    page.fill("#account-holder", "Jana Schmidt")
    page.check("#mandate-ok")
    shot = tmp_path / "card-page-iban.png"
    page.screenshot(path=str(shot), full_page=True)
    page.click("#save")
    # a selector, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses evaluated strings
    page.wait_for_selector("#message[class]:not([class=''])", timeout=30_000)
    message = page.text_content("#message") or ""
    page.screenshot(path=str(tmp_path / "card-page-iban-saved.png"), full_page=True)
    if os.environ.get("KASSA_SCREENSHOT_DIR"):
        for name in ("card-page-iban.png", "card-page-iban-saved.png"):
            shutil.copy(tmp_path / name, os.path.join(os.environ["KASSA_SCREENSHOT_DIR"], name))
    assert page.get_attribute("#message", "class") == "ok", message
    assert "Bankkonto gespeichert: •••• 3000 (Mandat " in message, message
    assert f"Ihre Bank bucht {invoice['number']} ab" in message, message
    assert not violations, violations

    account = api.get(f"/v1/customers/{customer}")["default_payment_method"]
    assert (account["type"], account["last4"], account["country"]) == ("sepa_debit", "3000", "DE")
    assert account["mandate"]["reference"] and account["mandate"]["reference"] in message
    assert account["mandate"]["accepted_at"] and account["mandate"]["ip_address"] == "127.0.0.1"
    assert "Chrome" in (account["mandate"]["user_agent"] or "")
    assert api.get(f"/v1/invoices/{invoice['id']}")["attempt_outcome"] == "processing"
    stack.drain()  # the bank settles: payment_intent.succeeded
    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    page.close()
