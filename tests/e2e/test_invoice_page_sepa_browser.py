"""A customer of a SEPA-enabled merchant pays a failed invoice on its hosted page in chromium with a bank
account: the page offers card or bank account, shows the SEPA mandate in the customer's language (the
merchant's name and creditor identifier filled in), checks the IBAN and wants the mandate accepted;
Stripe.js (localstripe's shim, ``confirmSepaDebitSetup``) confirms the SetupIntent and the page says the
payment is processing — not paid — until the bank settles. The bank account with its mandate (this
browser's IP address and user agent) becomes the customer's default."""

from __future__ import annotations

import os
import shutil

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e

IBAN = "DE89 3704 0044 0532 0130 00"  # localstripe: a debit that succeeds


def test_a_failed_invoice_is_paid_by_bank_account_on_its_page_and_is_processing(
    api: Api, stack, sepa_merchant, past_due, csp_page, tmp_path
):
    # a German customer whose card declined the first renewal: one open invoice
    sub_id, customer, invoice = past_due("rechnung-iban@example.de")

    page, violations = csp_page(viewport={"width": 1100, "height": 1000})
    page.goto(invoice["hosted_invoice_url"])
    page.wait_for_selector("#methods:not([hidden])")
    assert page.locator("#iban-box").is_hidden() and page.locator("#card").is_visible()
    assert "Bezahlen Sie per Karte oder von Ihrem Bankkonto" in (page.text_content("#pay-intro") or "")
    page.check("input[name=method][value=sepa_debit]")
    assert page.locator("#iban-box").is_visible() and page.locator("#card").is_hidden()

    # the rulebook's mandate in the customer's language, naming the merchant and its creditor identifier
    mandate = page.text_content("#mandate-text") or ""
    assert f"Ich ermächtige Koffie Club BV (Gläubiger-Identifikationsnummer {sepa_merchant})" in mandate
    assert page.get_attribute("#mandate-text", "lang") == "de"
    assert page.text_content("#mandate-accept-text") == "Ich erteile dieses SEPA-Lastschriftmandat."
    assert page.input_value("#account-holder") == "rechnung-iban"  # the customer's name, editable

    # the IBAN is checked on the page, and the mandate must be accepted: nothing is sent before
    page.fill("#iban", "DE89 3704 0044 0532 0130 01")
    page.click("#pay-button")
    assert "Die IBAN ist ungültig" in (page.text_content("#message") or "")
    page.fill("#iban", IBAN)
    page.click("#pay-button")
    assert "Erteilen Sie das SEPA-Lastschriftmandat" in (page.text_content("#message") or "")
    assert api.get(f"/v1/customers/{customer}")["default_payment_method"]["type"] == "card"

    page.fill("#account-holder", "Jana Schmidt")
    page.check("#mandate-ok")
    page.screenshot(path=str(tmp_path / "invoice-iban.png"), full_page=True)
    page.click("#pay-button")
    # a selector, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses evaluated strings
    page.wait_for_selector("#message.ok, #message.error", timeout=30_000)
    message = page.text_content("#message") or ""
    page.screenshot(path=str(tmp_path / "invoice-iban-processing.png"), full_page=True)
    assert page.get_attribute("#message", "class") == "ok", message
    assert message == "Zahlung übermittelt. Ihre Bank bucht diese Rechnung ab: Das dauert einige Werktage."
    assert page.locator("#form").is_hidden() and page.locator("#pay-intro").is_hidden()
    assert not violations, violations

    account = api.get(f"/v1/customers/{customer}")["default_payment_method"]
    assert (account["type"], account["last4"], account["country"]) == ("sepa_debit", "3000", "DE")
    assert account["mandate"]["reference"] and account["mandate"]["accepted_at"]
    assert account["mandate"]["ip_address"] == "127.0.0.1"
    assert "Chrome" in (account["mandate"]["user_agent"] or "")
    debiting = api.get(f"/v1/invoices/{invoice['id']}")
    assert (debiting["status"], debiting["attempt_outcome"]) == ("open", "processing")

    # opened again while the bank debits: said by the page, no Pay button
    page.reload()
    assert "Ihre Bank bucht diese Rechnung ab" in (page.text_content("#subline") or "")
    assert (page.text_content("#status") or "").strip() == "In Bearbeitung"
    assert page.locator("#pay-button").count() == 0
    page.screenshot(path=str(tmp_path / "invoice-iban-reopened.png"), full_page=True)
    if os.environ.get("KASSA_SCREENSHOT_DIR"):
        for name in ("invoice-iban.png", "invoice-iban-processing.png", "invoice-iban-reopened.png"):
            shutil.copy(tmp_path / name, os.path.join(os.environ["KASSA_SCREENSHOT_DIR"], name))

    stack.drain()  # the bank settles: payment_intent.succeeded
    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    page.reload()
    assert (page.text_content("#status") or "").strip() == "Bezahlt"
    page.close()
