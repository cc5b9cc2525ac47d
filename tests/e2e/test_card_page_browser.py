"""A customer whose renewal declined opens the card-update link in a real browser (Debian's chromium
driven by Playwright), types 4242… into localstripe's Stripe.js shim, and the open invoice is paid."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kassa_local.client import Api

pytestmark = pytest.mark.e2e


def test_a_customer_saves_a_new_card_on_the_linked_page_and_the_invoice_is_paid(api: Api, stack, browser, tmp_path):
    price = api.catalog(currency="EUR", amount=2500, trial_days=3)
    started = api.subscribe(price["id"], "browser-dunning@example.de", card="4000000000000341", locale="de")
    sub_id, customer = started["subscription"]["id"], started["subscription"]["customer"]
    trial_end = datetime.fromisoformat(started["subscription"]["trial_end"].replace("Z", "+00:00"))
    api.advance(to=(trial_end + timedelta(hours=1)).isoformat())
    sub = api.get(f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "past_due"
    invoice = api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert invoice["status"] == "open"

    # the link from the payment_failed email
    email = next(e for e in stack.outbox(customer) if e["template"] == "payment_failed")
    link = next(word for word in email["text"].split() if "/portal/card?token=" in word)

    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    response = page.goto(link)
    # the page runs under its CSP (Stripe.js from the local Stripe origin): nothing it needs is blocked
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    # in the customer's language (preferred_locale de), the words its script shows too
    assert page.get_attribute("html", "lang") == "de" and page.text_content("#title") == "Karte aktualisieren"
    page.wait_for_selector("#invoices:not([hidden])")
    assert invoice["number"] in (page.text_content("#invoices") or "")
    card_inputs = page.locator("#card input")
    card_inputs.first.wait_for()
    for index, value in enumerate(["4242424242424242", "12", "34", "123", "10115"]):
        card_inputs.nth(index).fill(value)
    page.click("#save")
    # a selector, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses evaluated strings
    page.wait_for_selector("#message[class]:not([class=''])", timeout=30_000)
    message = page.text_content("#message") or ""
    page.screenshot(path=str(tmp_path / "card-page.png"), full_page=True)
    assert "Karte gespeichert" in message and invoice["number"] in message, message
    assert not violations, violations

    assert api.get(f"/v1/invoices/{invoice['id']}")["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    assert api.get(f"/v1/customers/{customer}")["default_payment_method"]["last4"] == "4242"


def test_the_authentication_email_confirms_the_open_payment_intent_on_the_page(
    api: Api, stack, browser, past_due, tmp_path
):
    """A card that always asks for 3-D Secure: the renewal (off-session) needs authentication; the
    email's link opens the page in authentication mode, which confirms the renewal's own
    PaymentIntent — no new card, no new SetupIntent, no second charge."""
    sub_id, customer, invoice = past_due("browser-3ds@example.de", locale=None, card="4000002760003184")
    payment_intent = invoice["payment_intent"]
    assert payment_intent

    email = next(e for e in stack.outbox(customer) if e["template"] == "authentication_required")
    link = next(word for word in email["text"].split() if "/portal/card?token=" in word)
    page = browser.new_page()
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url.split("?", 1)[0]) if r.method == "POST" else None)
    page.goto(link)
    page.wait_for_selector("#form:not([hidden])")
    assert "Confirm your payment" in (page.text_content("#title") or "")
    assert page.locator("#card").is_hidden()  # no card to type
    page.click("#save")
    page.get_by_role("button", name="Complete authentication").click(timeout=30_000)
    page.wait_for_selector("#message[class]:not([class=''])", timeout=30_000)  # no evaluated strings under the CSP
    message = page.text_content("#message") or ""
    page.screenshot(path=str(tmp_path / "card-page-3ds.png"), full_page=True)
    assert "Payment confirmed" in message and invoice["number"] in message, message

    paid = api.get(f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["payment_intent"]) == ("paid", payment_intent)  # the open intent, confirmed
    assert api.get(f"/v1/subscriptions/{sub_id}")["status"] == "active"
    assert not any("setup_intents" in url for url in posted)  # no new SetupIntent confirmed
    assert [url.rsplit("/", 1)[-1] for url in posted if "/portal/" in url] == ["session", "confirm_payment"]
